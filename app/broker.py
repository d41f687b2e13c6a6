"""Building the Dramatiq broker and its middleware stack from settings, in one visible order.

``PUNCHCLOCK_BROKER_URL`` is an ``amqp://`` URL (RabbitMQ), or ``memory://`` for ``punchclock dev``: Dramatiq's
in-memory broker, same middleware, one process.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from app.errors import ConfigurationError
from app.middleware.database import DatabasePool
from app.middleware.heartbeat import RunHeartbeat
from app.middleware.http_client import HttpClient
from app.middleware.retries import Retries
from app.middleware.run_lifecycle import RunLifecycle
from app.middleware.tracing import Tracing
from app.rabbitmq import FencedRabbitmqBroker
from app.redaction import redact_url
from app.settings import Settings

logger = logging.getLogger(__name__)

MEMORY_BROKER = "memory://"
# Dramatiq's own defaults (20 retries, backoff up to 7 days) outlive RabbitMQ's 30-minute consumer_timeout;
# these apply to messages that carry no options of their own (a schedule's run always does).
DEFAULT_MAX_RETRIES = 3
DEFAULT_MIN_BACKOFF_MS = 10_000
DEFAULT_MAX_BACKOFF_MS = 300_000


def build_broker(
    settings: Settings,
    *,
    tracing: Tracing,
    database: DatabasePool,
    http: HttpClient,
    lifecycle: RunLifecycle,
    heartbeat: RunHeartbeat,
) -> dramatiq.Broker:
    """The broker with punchclock's stack, in this order. ``before_*`` hooks run top-down and ``after_*`` hooks
    bottom-up, so: Tracing's span is current for everything below it and ends last (after Retries decided),
    and its flush runs after every other shutdown hook; DatabasePool (below AsyncIO) closes its pool before the
    event loop stops; RunLifecycle decides whether a run starts (lease, idempotence) before anything below it
    sees the message, and records its end after Retries has chosen between retry and failure; RunHeartbeat
    tracks only started runs."""
    middleware: list[dramatiq.Middleware] = [
        tracing,
        AsyncIO(),
        database,
        http,
        PeriodiqMiddleware(skip_delay=30),
        AgeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        lifecycle,
        heartbeat,
        Retries(
            max_retries=DEFAULT_MAX_RETRIES, min_backoff=DEFAULT_MIN_BACKOFF_MS, max_backoff=DEFAULT_MAX_BACKOFF_MS
        ),
        TimeLimit(),
        CurrentMessage(),
    ]
    if settings.broker_url == MEMORY_BROKER:
        return StubBroker(middleware=middleware)
    if not settings.broker_url.startswith(("amqp://", "amqps://")):
        raise ConfigurationError(
            f'PUNCHCLOCK_BROKER_URL="{redact_url(settings.broker_url)}": use amqp://user:pass@host:5672/vhost,'
            " or memory://"
        )
    return FencedRabbitmqBroker(
        url=settings.broker_url, confirm_delivery=settings.confirm_delivery, middleware=middleware
    )


class ClockActor(dramatiq.Actor[..., Any]):
    """The tick's actor class. periodiq sends the tick from its own loop, and an exception from a send ends
    the whole clock process ("Unhandled error ... ConnectionClosed"); no cron run would fire until someone
    restarted it. A send the broker cannot take is logged and dropped instead: the next minute's tick fires
    whatever this one would have (the database knows what is due, by each schedule's misfire policy), so the
    clock outlives broker outages of any length and catches up when the broker returns."""

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: timedelta | int | None = None,
        **options: Any,
    ) -> dramatiq.Message[Any]:
        try:
            return super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        except BrokerConnectionError as exc:
            logger.error(
                "tick not sent: the broker is unreachable; the next tick catches up",
                extra={"action": "tick_not_sent", "error": str(exc)},
            )
            return self.message_with_options(args=args, kwargs=kwargs, **options)
