"""``probe``: a diagnostic actor for checking a deployment end to end (and the tests' workload).

``probe(seconds=2, fail_times=1, output={"ok": true})`` sleeps, fails transiently on its first ``fail_times``
attempts (so the retry path is exercised), then returns ``output`` as the run's output.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage


class ProbeFailure(Exception):
    """The transient failure probe raises on purpose; Dramatiq retries it."""


@dramatiq.actor(actor_name="probe")
def probe(seconds: float = 0, fail_times: int = 0, output: Any = None) -> Any:
    message = CurrentMessage.get_current_message()
    attempt = 1 + (message.options.get("retries", 0) if message is not None else 0)
    if seconds:
        time.sleep(float(seconds))
    if attempt <= int(fail_times):
        raise ProbeFailure(f"probe failing on purpose: attempt {attempt} of the first {fail_times}")
    return output
