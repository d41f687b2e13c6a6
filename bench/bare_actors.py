"""The bare side of ``bench/pipeline.py``: one no-op actor on a RabbitMQ broker with Dramatiq's default middleware
and nothing of punchclock's, run as ``dramatiq bench.bare_actors --processes 1 --threads 8``.

The broker URL comes from ``PUNCHCLOCK_BROKER_URL`` (the bench points it at its own vhost). The actor's name and
queue, ``noop`` on ``bench``, are the ones ``bench/pipeline.py`` sends to.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from app.settings import DEFAULT_BROKER_URL

broker = RabbitmqBroker(url=os.environ.get("PUNCHCLOCK_BROKER_URL", DEFAULT_BROKER_URL))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop() -> None:
    """Nothing: what the bench measures is the broker and the worker around the actor."""
