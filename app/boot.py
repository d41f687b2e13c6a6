"""What a process does once its database pool is open: migrate, then sync ``schedules.py`` (its ``SCHEDULES`` and
``KNOWLEDGE_BASES``).

Both are safe when several workers boot at once: migrations hold an advisory lock, and the sync is one
transaction of idempotent upserts.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from app.actor_args import KnownActors
from app.ai.config import LLMConfig
from app.ai.dify import DifyApp
from app.db.migrate import migrate
from app.db.queries import sql
from app.errors import ConfigurationError, InvalidInput
from app.kb.definition import KnowledgeBase
from app.kb.registry import check_unique, embedder_identity, sync_code_kbs
from app.notify.targets import parse_target
from app.redaction import register_secrets
from app.schedule import Schedule
from app.schedule_store import sync_code_schedules

if TYPE_CHECKING:
    from app.db.pool import Pool


def load_code_schedules(
    module_name: str, known_actors: KnownActors, *, allow_link_local: bool = False
) -> list[Schedule]:
    """The validated ``SCHEDULES`` list of ``module_name`` (empty name: none). Invalid entries raise at import
    time, before any worker starts, as a :class:`ConfigurationError` with the schedule's name in the message."""
    if not module_name:
        return []
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigurationError(
            f'schedules module "{module_name}" not found: run from the project directory,'
            " or set PUNCHCLOCK_SCHEDULES_MODULE (empty for none)"
        ) from None
    declared = getattr(module, "SCHEDULES", None)
    if not isinstance(declared, list | tuple) or not all(isinstance(s, Schedule) for s in declared):
        raise ConfigurationError(f"{module_name}.SCHEDULES must be a list of app.schedule.Schedule")
    try:
        return [schedule.validated(known_actors, allow_link_local=allow_link_local) for schedule in declared]
    except InvalidInput as exc:
        # A configuration error: no process of this deployment starts with it (nor should it).
        raise ConfigurationError(f"{module_name}.py: {exc}") from None


def load_dify_apps(module_name: str, environ: Mapping[str, str] | None = None) -> dict[str, DifyApp]:
    """The Dify apps ``module_name`` declares in an optional ``DIFY_APPS`` list, by name (keys stay in the
    environment: each app names the variable that holds its key). The keys set in ``environ`` (default: this
    process's environment) are registered for redaction now, at boot."""
    if not module_name:
        return {}
    declared = getattr(importlib.import_module(module_name), "DIFY_APPS", [])
    if not isinstance(declared, list | tuple) or not all(isinstance(a, DifyApp) for a in declared):
        raise ConfigurationError(f"{module_name}.DIFY_APPS must be a list of app.ai.dify.DifyApp")
    for app in declared:
        app.validate()
    env = os.environ if environ is None else environ
    register_secrets(env.get(app.key_env) for app in declared)
    return {app.name: app for app in declared}


def load_code_kbs(module_name: str, config: LLMConfig, *, allow_link_local: bool = False) -> list[KnowledgeBase]:
    """The knowledge bases ``module_name`` declares in an optional ``KNOWLEDGE_BASES`` list, checked now (unique
    names, notify targets, an embedder that can be built here), so a bad one stops the boot naming itself."""
    if not module_name:
        return []
    declared = getattr(importlib.import_module(module_name), "KNOWLEDGE_BASES", [])
    if not isinstance(declared, list | tuple) or not all(isinstance(kb, KnowledgeBase) for kb in declared):
        raise ConfigurationError(f"{module_name}.KNOWLEDGE_BASES must be a list of app.kb.definition.KnowledgeBase")
    try:
        for kb in declared:
            # The definition accepts any link-local target (one read back must load); the boot applies the rule.
            for entry in kb.notify:
                parse_target(entry, allow_link_local=allow_link_local)
            embedder_identity(kb, config)
        return check_unique(declared)
    except InvalidInput as exc:
        raise ConfigurationError(f"{module_name}.py: {exc}") from None


async def prepare_database(
    pool: Pool,
    schedules: Sequence[Schedule] | None,
    known_actors: KnownActors,
    *,
    allow_link_local: bool = False,
    kbs: Sequence[KnowledgeBase] | None = None,
    llm_config: LLMConfig | None = None,
) -> None:
    """Migrate; then, when ``schedules`` is given, make the code schedules in the database match it, and when
    ``kbs`` is, the code knowledge bases."""
    async with pool.acquire() as conn:
        await migrate(conn)
        if schedules is not None:
            now = await conn.fetchval(sql("db_now"))
            await sync_code_schedules(conn, schedules, known_actors, now=now, allow_link_local=allow_link_local)
        if kbs is not None:
            if llm_config is None:
                raise ValueError("syncing knowledge bases needs the llm_config their embedders are read from")
            await sync_code_kbs(conn, kbs, llm_config)
