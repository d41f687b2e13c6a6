"""Notification rows: one per target of a run's event, ``pending → sent | failed``.

A row stores the target *masked* (an ``env:`` target as its variable's name) and its error redacted; the full
entry (a webhook URL is a credential) is looked up again on the schedule when the row is delivered: the schedule
entry that masks to the row's target, the n-th one when several mask alike (the rows were created in the
schedule's order). A schedule edited in between may no longer have it: the row then fails, saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from app.db.queries import sql
from app.errors import InvalidInput, NotFound
from app.notify.bodies import EVENTS, Event, RunEvent
from app.notify.targets import Target, parse_target
from app.redaction import redact

if TYPE_CHECKING:
    from app.db.pool import Executor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    """A notification row with its run's event. ``target`` is masked; ``entry`` is the schedule's unmasked
    target, or None when the schedule (or that entry) is gone."""

    id: int
    run_id: int
    target: str
    state: str
    attempts: int
    event: RunEvent
    entry: Target | None


async def create_notifications(conn: Executor, run_id: int, event: str, targets: Sequence[str]) -> list[int]:
    """Add one pending row per target (schedule ``notify`` entries, in the schedule's order); their ids.

    Idempotent per ``(run_id, event)``: a second call returns the first call's ids and adds nothing. An entry
    that does not parse (it should have been rejected when the schedule was defined) is logged and skipped.
    """
    if event not in EVENTS:
        raise InvalidInput(f'invalid notification event "{event}": use one of {", ".join(EVENTS)}')
    masked: list[str] = []
    for entry in targets:
        try:
            masked.append(parse_target(entry, allow_link_local=True).masked)
        except InvalidInput as exc:
            logger.warning(str(exc), extra={"action": "notification_target_invalid", "run_id": run_id})
    if not masked:
        return []
    rows = await conn.fetch(sql("notification_create"), run_id, event, masked)
    return [int(row["id"]) for row in rows]


async def load_notification(conn: Executor, notification_id: int) -> Notification:
    """The row, its run's event and its unmasked target; :class:`NotFound` when there is no such row."""
    row = await conn.fetchrow(sql("notification_load"), notification_id)
    if row is None:
        raise NotFound(f"no notification with id {notification_id}")
    started, finished = row["started_at"], row["finished_at"]
    event = RunEvent(
        schedule=row["schedule_name"] or "(deleted schedule)",
        run_id=row["run_id"],
        state=row["run_state"],
        error=row["run_error"],
        attempts=row["run_attempts"],
        duration_seconds=(finished - started).total_seconds() if started and finished else None,
        trace_id=row["trace_id"],
        scheduled_for=row["scheduled_for"],
        event=cast(Event, row["event"]),
    )
    return Notification(
        id=row["id"],
        run_id=row["run_id"],
        target=row["target"],
        state=row["state"],
        attempts=row["attempts"],
        event=event,
        entry=_schedule_entry(row["notify"], row["target"], row["same_target_before"]),
    )


async def claim(conn: Executor, notification_id: int, hold: timedelta) -> bool:
    """Take the row for a delivery lasting at most ``hold``; False when it is not pending or another delivery
    holds it, so two deliveries of one notification never run at once."""
    return await conn.fetchval(sql("notification_claim"), notification_id, hold) is not None


async def mark_sent(conn: Executor, notification_id: int, attempts: int) -> None:
    """``attempts``: the delivery attempts this time, added to the row's count."""
    await conn.execute(sql("notification_finish"), notification_id, "sent", attempts, None)


async def mark_failed(conn: Executor, notification_id: int, attempts: int, error: str) -> None:
    """``error`` is stored redacted (:func:`app.redaction.redact`), whatever the channel already masked."""
    await conn.execute(sql("notification_finish"), notification_id, "failed", attempts, redact(error))


def _schedule_entry(notify: Sequence[str], masked: str, same_target_before: int) -> Target | None:
    matches = []
    for entry in notify:
        try:
            target = parse_target(entry, allow_link_local=True)
        except InvalidInput:
            continue
        if target.masked == masked:
            matches.append(target)
    return matches[same_target_before] if same_target_before < len(matches) else None
