"""The one entry point: ``dramatiq app.actors`` (workers) and ``periodiq app.actors`` (the clock) load it.

In this order: settings from the environment, logging, the broker with its middleware stack, the ``tick``
actor, the actors under ``actors/``, then the validated schedules of ``schedules.py``. Nothing opens a
connection here: the database pool opens at worker boot (``DatabasePool``), pika connects on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq
from periodiq import cron

from app import clock
from app.boot import load_code_schedules, prepare_database
from app.broker import build_broker
from app.db.pool import database_url
from app.logs import configure_logging
from app.middleware.database import DatabasePool
from app.publisher import Publisher
from app.settings import Settings

if TYPE_CHECKING:
    from app.db.pool import Pool

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)


async def _on_database_ready(pool: Pool) -> None:
    await prepare_database(pool, schedules, runnable_actors)


database = DatabasePool(lambda: database_url(settings), settings.db_pool_size, _on_database_ready)
broker = build_broker(settings, database)
dramatiq.set_broker(broker)
publisher = Publisher(broker, threads=settings.publish_threads)


# The tick only fans out: never retried (periodiq drops late ticks anyway, and the next tick catches up),
# on its own queue so a backlog of runs never delays it.
@dramatiq.actor(periodic=cron("* * * * *"), queue_name="clock", max_retries=0, time_limit=55_000)
def tick() -> None:
    database.run(lambda pool: clock.tick(pool, publisher, batch=settings.tick_batch))


import actors  # noqa: E402  (registers the actors on the broker set above)

# What a schedule may target: every actor but the clock's own tick.
runnable_actors = frozenset(broker.actors) - {tick.actor_name}
schedules = load_code_schedules(settings.schedules_module, runnable_actors)

__all__ = ["actors", "broker", "database", "publisher", "runnable_actors", "schedules", "settings", "tick"]
