"""Deliver one notification row: what the ``notify`` actor does for each id.

::

    pending ──post / mail──▶ sent
       │  transient failure: up to 3 attempts, exponential wait 1-10 s
       └──────────────────▶ failed (error recorded, secrets masked)

A delivery failure is recorded on the row and logged, never raised: a notification never changes its run, and
Dramatiq has nothing to retry. Only database errors propagate; the ``notify`` actor is never retried by Dramatiq:
a notification still pending a minute later (its message lost, its delivery cut short by a crash or an outage)
is sent again by the tick's recovery sweep. A delivery claims its row first (``claimed_until``), so a re-send
never races a slow delivery; a row that is no longer pending (a redelivered message) is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from app.errors import ConfigurationError, NotFound
from app.notify.bodies import RunEvent
from app.notify.delivery_error import DeliveryError
from app.notify.email import send_mail
from app.notify.store import Notification, claim, load_notification, mark_failed, mark_sent
from app.notify.targets import Target, TargetKind
from app.notify.webhook import post_webhook
from app.redaction import redact
from app.settings import Settings

if TYPE_CHECKING:
    from tenacity.wait import WaitBaseT

    from app.db.pool import Executor

logger = logging.getLogger(__name__)

ATTEMPTS = 3
# A delivery's hold on its row: 3 tries of at most 30 s (SMTP's timeout) with waits up to 10 s fit well inside.
CLAIM = timedelta(minutes=5)
BACKOFF = wait_exponential(multiplier=1, min=1, max=10)


async def deliver(
    pool: Executor,
    notification_id: int,
    *,
    settings: Settings,
    http: httpx.AsyncClient,
    wait: WaitBaseT = BACKOFF,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send notification ``notification_id`` and record the outcome. ``wait``: tenacity's wait between attempts
    (tests pass ``wait_none()``); ``environ``: where ``env:`` targets are read (default: this process's
    environment, read at each delivery). Raises only database errors."""
    try:
        notification = await load_notification(pool, notification_id)
    except NotFound as exc:  # its run was deleted: nothing to send, nothing to retry
        logger.warning(str(exc), extra={"action": "notification_missing", "notification_id": notification_id})
        return
    if notification.state != "pending" or not await claim(pool, notification.id, CLAIM):
        return
    attempts = 0
    try:
        if notification.entry is None:
            raise DeliveryError(
                f'{notification.target}: no longer a notify target of schedule "{notification.event.schedule}"',
                transient=False,
            )
        try:
            target = notification.entry.resolve(os.environ if environ is None else environ)
        except ConfigurationError as exc:  # an env: target whose variable is unset or no URL: this one fails
            raise DeliveryError(str(exc), transient=False) from None
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, DeliveryError) and exc.transient),
            before_sleep=lambda state: _log_retry(notification, state),
            reraise=True,
        ):
            with attempt:
                attempts += 1
                await _send(target, notification.event, settings=settings, http=http)
    except DeliveryError as exc:
        await mark_failed(pool, notification.id, attempts, str(exc))
        logger.warning(
            f"notification {notification.id} failed after {attempts} attempt(s): {exc}",
            extra=_fields(notification, "notification_failed", attempts, error=str(exc)),
        )
        return
    await mark_sent(pool, notification.id, attempts)
    logger.info(
        f"notification {notification.id} sent to {notification.target}",
        extra=_fields(notification, "notification_sent", attempts),
    )


async def _send(target: Target, event: RunEvent, *, settings: Settings, http: httpx.AsyncClient) -> None:
    try:
        if target.kind is TargetKind.MAILTO:
            await asyncio.to_thread(send_mail, settings, target, event)
        else:
            await post_webhook(http, target, event)
    except DeliveryError:
        raise
    except Exception as exc:  # a bug or an unforeseen library error: recorded, not retried, secrets masked
        detail = redact(str(exc), also=[*target.secrets, settings.smtp_password])
        raise DeliveryError(f"{target.masked}: {type(exc).__name__}: {detail}", transient=False) from None


def _log_retry(notification: Notification, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    logger.info(
        f"notification {notification.id}: attempt {state.attempt_number} failed, retrying in {delay:.1f}s: {error}",
        extra=_fields(notification, "notification_retrying", state.attempt_number, error=str(error)),
    )


def _fields(notification: Notification, action: str, attempts: int, *, error: str | None = None) -> dict[str, object]:
    return {
        "action": action,
        "notification_id": notification.id,
        "run_id": notification.run_id,
        "target": notification.target,
        "event": notification.event.event,
        "attempts": attempts,
        "error": error,
    }
