"""What a notification says: the plain text and each service's incoming-webhook body. Pure functions.

Bodies follow each service's documented custom-bot format:

- generic ``webhook``: one JSON object with every field of :class:`RunEvent`, plus ``subject`` and ``text``;
- Slack incoming webhook: ``{"text": …}`` (``&``, ``<``, ``>`` escaped, as Slack asks);
- Feishu custom bot: ``{"msg_type": "text", "content": {"text": …}}``;
- DingTalk custom robot: ``{"msgtype": "text", "text": {"content": …}}``;
- WeCom group robot: ``{"msgtype": "text", "text": {"content": …}}`` (content at most 2048 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from app.durations import format_duration
from app.instants import format_instant
from app.notify.targets import TargetKind

Event = Literal["failure", "recovery"]
EVENTS: tuple[Event, ...] = ("failure", "recovery")
# The error in the text is cut here: WeCom rejects a text above 2048 bytes, and a chat message is no place for a
# whole traceback (the generic body and the run row keep it all).
TEXT_ERROR_CHARS = 500


@dataclass(frozen=True)
class RunEvent:
    """A run that ended in a way someone asked to hear about. ``duration_seconds`` is None when never started."""

    schedule: str
    run_id: int
    state: str
    error: str | None
    attempts: int
    duration_seconds: float | None
    trace_id: str | None
    scheduled_for: datetime
    event: Event


def message_text(event: RunEvent) -> tuple[str, str]:
    """``(subject, text)``: one line for a mail subject, and a short plain-text message naming everything."""
    if event.event == "recovery":
        headline = f'schedule "{event.schedule}" recovered: run {event.run_id} {event.state}'
    else:
        headline = f'schedule "{event.schedule}" {event.state.replace("_", " ")}: run {event.run_id}'
    error = event.error or "none"
    if len(error) > TEXT_ERROR_CHARS:
        error = error[:TEXT_ERROR_CHARS] + "…"
    duration = "n/a" if event.duration_seconds is None else format_duration(timedelta(seconds=event.duration_seconds))
    lines = [
        f"punchclock: {headline}",
        f"schedule: {event.schedule}",
        f"run id: {event.run_id}",
        f"state: {event.state}",
        f"attempts: {event.attempts}",
        f"duration: {duration}",
        f"scheduled for: {format_instant(event.scheduled_for)}",
        f"trace id: {event.trace_id or 'none'}",
        f"error: {error}",
    ]
    return f"[punchclock] {headline}", "\n".join(lines)


def webhook_body(kind: TargetKind, event: RunEvent) -> dict[str, Any]:
    """The JSON body to POST for a webhook target of ``kind`` (``mailto`` has none: ValueError)."""
    subject, text = message_text(event)
    if kind is TargetKind.WEBHOOK:
        return {
            "event": event.event,
            "schedule": event.schedule,
            "run_id": event.run_id,
            "state": event.state,
            "error": event.error,
            "attempts": event.attempts,
            "duration_seconds": event.duration_seconds,
            "trace_id": event.trace_id,
            "scheduled_for": format_instant(event.scheduled_for, milliseconds=True),  # as the CLI's JSON
            "subject": subject,
            "text": text,
        }
    if kind is TargetKind.SLACK:
        return {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}
    if kind is TargetKind.FEISHU:
        return {"msg_type": "text", "content": {"text": text}}
    if kind in (TargetKind.DINGTALK, TargetKind.WECOM):
        return {"msgtype": "text", "text": {"content": text}}
    raise ValueError(f"{kind} targets have no webhook body")
