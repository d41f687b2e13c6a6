"""RabbitMQ through Dramatiq, minus one hazard: acknowledging a message with a stale delivery tag.

When a worker's connection drops, RabbitMQ requeues every message that consumer had not acknowledged, and the
consumer Dramatiq opens next numbers its deliveries from 1 again. An actor that was running across the drop
finishes later and Dramatiq acknowledges it on the *new* channel with the *old* tag (its ``known_tags`` check
passes whenever the new channel has delivered that many messages): that acknowledges some other message, which
is then lost if its worker dies before finishing it; or RabbitMQ closes the channel for an unknown tag. Both the
Java and the .NET clients ignore stale tags after a recovery for this reason.

:class:`FencedRabbitmqBroker` remembers which consumer delivered each message and acknowledges (or rejects) it
only through that consumer. A message delivered by a consumer since closed is left alone: RabbitMQ already
requeued it, and its redelivery is a duplicate that punchclock's start check defers or drops.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer

logger = logging.getLogger(__name__)

# Set on each message proxy the consumer returns: the consumer that delivered it.
_DELIVERED_BY = "_punchclock_delivered_by"


class _FencedConsumer(_RabbitmqConsumer):
    def __next__(self) -> Any:
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            setattr(message, _DELIVERED_BY, self)
        return message

    def ack(self, message: Any) -> None:
        if self._stale(message, "ack"):
            return
        super().ack(message)  # type: ignore[no-untyped-call]

    def nack(self, message: Any) -> None:
        if self._stale(message, "nack"):
            return
        super().nack(message)  # type: ignore[no-untyped-call]

    def _stale(self, message: Any, what: str) -> bool:
        delivered_by = getattr(message, _DELIVERED_BY, self)
        if delivered_by is self:
            return False
        logger.info(
            f"not sending an {what} for a message from a closed connection: RabbitMQ requeued it already",
            extra={"action": "stale_delivery_ignored", "message_id": message.message_id},
        )
        return True


class FencedRabbitmqBroker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _FencedConsumer
