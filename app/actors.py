"""The one entry point: ``dramatiq app.actors`` (workers) and ``periodiq app.actors`` (the clock) load it.

In this order: settings from the environment, logging, our middleware, the broker with the whole stack, the
engine's actors (``tick``, ``notify``), every module under ``actors/`` (found, not listed), then the validated
schedules of ``schedules.py``. Nothing opens a connection here: the database pool and the HTTP client open on first use
in a worker, pika connects on first use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from app import clock
from app.actor_args import ActorParams
from app.ai.config import LLMConfig
from app.ai.dify import DifyClient
from app.ai.llm import LLM
from app.boot import load_code_kbs, load_code_schedules, load_dify_apps, prepare_database
from app.broker import ClockActor, build_broker
from app.db.pool import database_url
from app.discovery import import_modules, workflows_in
from app.errors import ConfigurationError
from app.kb.service import reindex_kb, report_json, searcher
from app.logs import configure_logging
from app.middleware.database import DatabasePool
from app.middleware.heartbeat import RunHeartbeat
from app.middleware.http_client import HttpClient
from app.middleware.run_lifecycle import RunLifecycle
from app.middleware.tracing import Tracing
from app.notify.sender import deliver
from app.notify.store import create_notifications
from app.publisher import Publisher
from app.recovery import Sweep
from app.redaction import register_settings
from app.settings import Settings
from app.tracing import setup_tracing
from app.workflows.builtin import BUILTIN_WORKFLOWS
from app.workflows.definition import WorkflowRegistry
from app.workflows.runner import execute, run_on_loop

if TYPE_CHECKING:
    from app.db.pool import Pool

settings = Settings.from_env()
register_settings(settings)  # its secrets are masked in every log line, span, row and output from here on
configure_logging(settings.log_level, settings.log_format)
tracer_provider = setup_tracing(settings)
lock_ttl = timedelta(seconds=settings.lock_ttl_seconds)
llm_config = LLMConfig.from_settings(settings)


async def _on_database_ready(pool: Pool) -> None:
    await prepare_database(
        pool,
        schedules,
        runnable_actors,
        allow_link_local=settings.notify_allow_link_local,
        kbs=knowledge_bases,
        llm_config=llm_config,
    )


publisher: Publisher  # set below, once the broker exists; the lambdas read it late


def _send_notification(notification_id: int) -> None:
    notify.send(notification_id)


database = DatabasePool(lambda: database_url(settings), settings.db_pool_size, _on_database_ready)
http = HttpClient()
# Beat well inside the lease, and often enough that `runs cancel` lands within about a second.
heartbeat = RunHeartbeat(database, lock_ttl=lock_ttl, interval=min(lock_ttl / 3, timedelta(seconds=1)))
lifecycle = RunLifecycle(
    database,
    heartbeat,
    publish_pending=lambda pool: clock.publish_unpublished(pool, publisher),
    lock_ttl=lock_ttl,
    create_notifications=create_notifications,
    send_notification=_send_notification,
)
recovery = Sweep(
    republish_after=timedelta(seconds=settings.republish_after_seconds),
    create_notifications=create_notifications,
    send_notification=_send_notification,
    retention=settings.retention,
)
broker = build_broker(
    settings,
    tracing=Tracing(tracer_provider),
    database=database,
    http=http,
    lifecycle=lifecycle,
    heartbeat=heartbeat,
)
dramatiq.set_broker(broker)
publisher = Publisher(broker, threads=settings.publish_threads)


# The tick only fans out and sweeps: never retried (periodiq drops late ticks anyway, and the next tick catches
# up), on its own queue so a backlog of runs never delays it. Sent by periodiq through ClockActor, which
# survives a broker outage.
@dramatiq.actor(
    periodic=cron("* * * * *"), queue_name="clock", max_retries=0, time_limit=55_000, actor_class=ClockActor
)
def tick() -> None:
    database.run(lambda pool: clock.tick(pool, publisher, batch=settings.tick_batch, recovery=recovery))


def _run(flow_name: str, params: dict[str, Any]) -> Any:
    """Run a workflow for the current message's run, on the event loop where the pool and HTTP client live."""
    flow = workflows.get(flow_name)
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    pool = database.pool()
    return run_on_loop(
        lambda: execute(
            flow,
            params,
            run_id=options.get("run_id"),
            attempt=options.get("attempt") or 1 + options.get("retries", 0),
            pool=pool,
            http=http.client,
            llm=lambda: LLM(http.client, llm_config, tracer_provider=tracer_provider),
            dify=lambda: DifyClient(http.client, dify_apps, os.environ, tracer_provider=tracer_provider),
            kb=searcher(pool, lambda: http.client, llm_config),
        )
    )


@dramatiq.actor(actor_name="run_workflow")
def run_workflow(workflow: str, **params: Any) -> Any:
    """Run the workflow ``workflow`` (see actors/ and app/workflows/builtin.py) with the schedule's args."""
    return _run(workflow, params)


@dramatiq.actor(actor_name="dify")
def dify(app: str, inputs: dict[str, Any] | None = None, **params: Any) -> Any:
    """Run the Dify workflow app ``app`` with ``inputs``; ``user`` is the schedule's name."""
    return _run("dify", {**params, "app": app, "inputs": inputs or {}})


# One reindex of a knowledge base at a time, whoever triggers it (the lease "reindex:{kb}"). A failed gate is a
# PermanentError: the run fails once, and the schedule's notify targets get the one failure notification. The
# knowledge base's own notify is not sent yet (README, "Knowledge bases").
@dramatiq.actor(actor_name="reindex", lock_key="reindex:{kb}")
def reindex(kb: str, full: bool = False) -> dict[str, Any]:
    """Reindex knowledge base ``kb`` (declared in KNOWLEDGE_BASES or added with ``punchclock kb add``); the run's
    output is the report. ``full`` re-reads and re-chunks every document."""
    message = CurrentMessage.get_current_message()
    run_id = message.options.get("run_id") if message is not None else None
    pool = database.pool()
    report = run_on_loop(
        lambda: reindex_kb(pool, kb, http=http.client, llm_config=llm_config, run_id=run_id, full=full)
    )
    return report_json(report)


# Notifications retry inside (tenacity) and record their own failure: the message itself is never retried,
# and a notification never changes its run.
@dramatiq.actor(queue_name="notify", max_retries=0)
def notify(notification_id: int) -> None:
    database.run(lambda pool: deliver(pool, notification_id, settings=settings, http=http.client))


import actors  # noqa: E402  (the package; its modules register their actors on the broker set above)

actor_modules = import_modules(actors)


def _check_actors_bound() -> None:
    """Actors imported before this module set the broker are bound to Dramatiq's default one and would never
    run here; say so instead of failing later with "unknown actor"."""
    stray = sorted(
        f"{module.__name__}.{name}"
        for module in list(sys.modules.values())
        if module is not None and (module.__name__ == "actors" or module.__name__.startswith("actors."))
        for name, value in vars(module).items()
        if isinstance(value, dramatiq.Actor) and value.broker is not broker
    )
    if stray:
        raise ConfigurationError(
            f"{', '.join(stray)} were imported before app.actors set up the broker: import app.actors first"
            " (dramatiq app.actors does), and do not import modules of actors/ from actors/__init__.py"
        )


_check_actors_bound()
workflows = WorkflowRegistry([*BUILTIN_WORKFLOWS, *workflows_in(actor_modules)])
dify_apps = load_dify_apps(settings.schedules_module)

# What a schedule may target: every actor but the engine's own, with its parameters, so args that do not fit
# are refused when a schedule is defined. Where an actor's args name a workflow or a Dify app, only this
# deployment's are accepted.
_choices: dict[str, dict[str, Collection[str]]] = {
    run_workflow.actor_name: {"workflow": frozenset(workflows.names())},
    dify.actor_name: {"app": frozenset(dify_apps)},
}
runnable_actors = {
    name: ActorParams.of(name, broker.get_actor(name).fn, broker.get_actor(name).options, _choices.get(name))
    for name in sorted(broker.actors)
    if name not in (tick.actor_name, notify.actor_name)
}
knowledge_bases = load_code_kbs(
    settings.schedules_module, llm_config, allow_link_local=settings.notify_allow_link_local
)
schedules = load_code_schedules(
    settings.schedules_module, runnable_actors, allow_link_local=settings.notify_allow_link_local
)

__all__ = [
    "actors",
    "broker",
    "database",
    "heartbeat",
    "http",
    "knowledge_bases",
    "lifecycle",
    "notify",
    "publisher",
    "recovery",
    "runnable_actors",
    "schedules",
    "settings",
    "tick",
]
