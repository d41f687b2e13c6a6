"""What the CLI needs from the deployment's wiring module, ``app.actors``, imported only when needed.

Importing ``app.actors`` reads the settings, builds the broker and imports every actor and ``schedules.py``
(no connection is opened), so commands that only read the database never pay for it or fail on it.
"""

from __future__ import annotations

from app.publisher import Publisher
from app.schedule import Schedule


def registered_actors() -> frozenset[str]:
    """The actor names a schedule may target (registered on the broker, the clock's tick excepted)."""
    import app.actors

    return app.actors.runnable_actors


def code_schedules() -> list[Schedule]:
    """The validated schedules of ``PUNCHCLOCK_SCHEDULES_MODULE`` (``schedules.py``; empty name: none)."""
    import app.actors

    return app.actors.schedules


def publisher() -> Publisher:
    """The publisher on the deployment's broker (RabbitMQ; pika connects on first use)."""
    import app.actors

    return app.actors.publisher
