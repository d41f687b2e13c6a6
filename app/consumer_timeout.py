"""RabbitMQ's consumer_timeout, and the bounds it puts on how long punchclock may hold a message.

RabbitMQ closes the channel of a consumer that holds a message unacknowledged longer than ``consumer_timeout``
(30 min by default) and redelivers the message behind our back. Dramatiq holds a running message
unacknowledged until the actor returns, and a delayed one (a retry's backoff, a run's jitter) until it is due.
So a schedule's ``timeout`` and ``max_backoff`` stay within :data:`CONSUMER_TIMEOUT`, and any delay a message
waits out stays within :data:`MAX_DELAY`, which keeps a margin for the time it then spends queued.

Both are fixed here rather than read from the broker: to go higher, raise ``consumer_timeout`` on the broker
first (``compose.yaml`` sets 1 h), then these.
"""

from __future__ import annotations

from datetime import timedelta

CONSUMER_TIMEOUT = timedelta(minutes=30)
MAX_DELAY = CONSUMER_TIMEOUT - timedelta(minutes=5)
