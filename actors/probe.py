"""``probe``: a diagnostic actor for checking a deployment end to end (and the tests' workload).

``probe(url="http://svc/health", seconds=2, fail_times=1, output={"ok": true})``, in this order:

1. GETs ``url`` when given and raises ``httpx.HTTPStatusError`` on a non-2xx answer, so a deployment check
   reaches a service and tests drive HTTP failures (a 503 or 429 is retried, honouring Retry-After; a 404 is not);
2. sleeps ``seconds``, in slices of at most 0.1 s: Dramatiq's ``TimeLimit`` stops an actor with an exception
   raised in its thread, which cannot interrupt one long C-level ``time.sleep``;
3. fails on its first ``fail_times`` attempts: transiently (``ProbeFailure``, retried) or, with
   ``permanent=True``, with a ``PermanentError`` that fails the run at once;
4. returns ``output`` as the run's output.

As a dependent schedule (``after=[...]``) it receives its upstream runs' outputs as ``upstream`` and, when it
has no ``output`` of its own, passes them on as its output.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import httpx
from dramatiq.middleware import CurrentMessage

from app.transient import PermanentError, TransientError

SLEEP_SLICE = 0.1


class ProbeFailure(TransientError):
    """The transient failure probe raises on purpose; punchclock's Retries retries it."""


@dramatiq.actor(actor_name="probe")
def probe(
    seconds: float = 0,
    fail_times: int = 0,
    output: Any = None,
    url: str | None = None,
    permanent: bool = False,
    upstream: dict[str, Any] | None = None,
) -> Any:
    message = CurrentMessage.get_current_message()
    attempt = 1 + (message.options.get("retries", 0) if message is not None else 0)
    if url is not None:
        httpx.get(url).raise_for_status()
    deadline = time.monotonic() + float(seconds)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, SLEEP_SLICE))
    if attempt <= int(fail_times):
        failure = PermanentError if permanent else ProbeFailure
        raise failure(f"probe failing on purpose: attempt {attempt} of the first {fail_times}")
    return upstream if output is None and upstream is not None else output
