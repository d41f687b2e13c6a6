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

``record``, a file path, makes every execution leave its own trace, written from inside the actor: a JSON line
``{"event": "start", "run_id": ..., "attempt": ..., "pid": ..., "thread": ..., "time": ...}`` when it begins and
one with ``"event": "end"`` when it returns or raises (none when its process dies first). The run's row says how a
run ended, not how many times its code ran: this is how the fault tests catch a second execution (a redelivery
after a broker restart, a worker killed mid-run) even when the row looks right, and two executions of one run
overlapping in time. Each line is one ``os.write`` to a file opened with ``O_APPEND``, so lines from several
processes never interleave, and is fsynced before the probe goes on, so a SIGKILL right after keeps it.
"""

from __future__ import annotations

import json
import os
import threading
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
    record: str | None = None,
) -> Any:
    message = CurrentMessage.get_current_message()
    # The attempt number the database gave this execution (a takeover after a crash counts too).
    options = message.options if message is not None else {}
    attempt = int(options.get("attempt") or 1 + options.get("retries", 0))
    run_id = options.get("run_id")
    if record is not None:
        _record(record, "start", run_id, attempt)
    try:
        if url is not None:
            httpx.get(url).raise_for_status()
        deadline = time.monotonic() + float(seconds)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, SLEEP_SLICE))
        if attempt <= int(fail_times):
            failure = PermanentError if permanent else ProbeFailure
            raise failure(f"probe failing on purpose: attempt {attempt} of the first {fail_times}")
        return upstream if output is None and upstream is not None else output
    finally:
        if record is not None:
            _record(record, "end", run_id, attempt)


def _record(path: str, event: str, run_id: Any, attempt: int) -> None:
    """Append one execution event to ``path``: a single write on an O_APPEND descriptor (atomic with respect to
    other writers), fsynced so that it survives the process being killed a moment later."""
    line = {
        "event": event,
        "run_id": run_id,
        "attempt": attempt,
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "time": time.time(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
