"""Post a notification to a webhook target with the caller's ``httpx.AsyncClient`` (its timeouts apply).

The target must be resolved (:meth:`~app.notify.targets.Target.resolve`). Error messages name it masked and pass
whatever a library or the service said through :func:`app.redaction.redact`, the target's own secrets included.

Success is a 2xx answer; DingTalk, WeCom and Feishu also answer 200 to a rejected message, with an error code
in the JSON body (``errcode`` / ``code`` / ``StatusCode`` not 0), which counts as a failure too.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.notify.bodies import RunEvent, webhook_body
from app.notify.delivery_error import DeliveryError
from app.notify.targets import Target, TargetKind
from app.redaction import redact

EXCERPT_CHARS = 200
# "sending too fast" codes, worth another attempt: DingTalk 130101, WeCom 45009, Feishu 11232
RATE_LIMIT_CODES = frozenset({130101, 45009, 11232})


async def post_webhook(http: httpx.AsyncClient, target: Target, event: RunEvent) -> None:
    """POST ``event``'s body for ``target``'s kind; :class:`DeliveryError` (secrets scrubbed) when not accepted."""
    try:
        response = await http.post(target.address, json=webhook_body(target.kind, event))
    except httpx.TransportError as exc:  # connection refused, DNS, timeouts, protocol errors
        detail = redact(str(exc), also=target.secrets) or "no detail"
        # from None: the chained exception's request would carry the full URL into any traceback
        raise DeliveryError(f"{target.masked}: {type(exc).__name__}: {detail}", transient=True) from None
    status = response.status_code
    if not response.is_success:
        raise DeliveryError(
            f"{target.masked}: HTTP {status}: {_excerpt(target, response)}",
            transient=status in (408, 429) or status >= 500,
        )
    code = _service_error_code(target.kind, response)
    if code:
        raise DeliveryError(
            f"{target.masked}: HTTP {status} with error code {code}: {_excerpt(target, response)}",
            transient=code in RATE_LIMIT_CODES,
        )


def _service_error_code(kind: TargetKind, response: httpx.Response) -> int:
    """The error code a chat service put in a 200 answer; 0 when none (or the answer is not such JSON)."""
    if kind not in (TargetKind.DINGTALK, TargetKind.WECOM, TargetKind.FEISHU):
        return 0
    try:
        body: Any = response.json()
    except ValueError:
        return 0
    if not isinstance(body, dict):
        return 0
    for key in ("errcode", "code", "StatusCode"):
        value = body.get(key)
        if isinstance(value, int) and value != 0:
            return value
    return 0


def _excerpt(target: Target, response: httpx.Response) -> str:
    return redact(response.text[:EXCERPT_CHARS], also=target.secrets).strip() or "(empty body)"
