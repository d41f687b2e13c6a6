"""What the CLI needs from the deployment's wiring module, ``app.actors``, imported only when needed.

Importing ``app.actors`` reads the settings, builds the broker and imports every actor and ``schedules.py``
(no connection is opened), so commands that only read the database never pay for it or fail on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.actor_args import ActorParams
from app.ai.config import LLMConfig
from app.boot import load_code_kbs, load_code_schedules
from app.kb.definition import KnowledgeBase
from app.publisher import Publisher
from app.schedule import Schedule
from app.settings import Settings


def registered_actors() -> Mapping[str, ActorParams]:
    """The actors a schedule may target (registered on the broker, the engine's own excepted), by name, with
    their parameters."""
    import app.actors

    return app.actors.runnable_actors


def code_schedules(settings: Settings) -> list[Schedule]:
    """The validated schedules of this command's ``PUNCHCLOCK_SCHEDULES_MODULE`` (``schedules.py``; empty: none),
    read with the command's own settings rather than those ``app.actors`` was first imported with."""
    return load_code_schedules(
        settings.schedules_module, registered_actors(), allow_link_local=settings.notify_allow_link_local
    )


def code_kbs(settings: Settings) -> list[KnowledgeBase]:
    """The checked ``KNOWLEDGE_BASES`` of this command's schedules module (empty name or none declared: none)."""
    return load_code_kbs(
        settings.schedules_module, LLMConfig.from_settings(settings), allow_link_local=settings.notify_allow_link_local
    )


def publisher() -> Publisher:
    """The publisher on the deployment's broker (RabbitMQ; pika connects on first use)."""
    import app.actors

    return app.actors.publisher
