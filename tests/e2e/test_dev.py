"""``make dev``: the embedded stack in one process, driven by the CLI from another, stopped with Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.processes import Process, punchclock, query, wait_for

pytestmark = pytest.mark.e2e


def test_make_dev_runs_the_example_schedules_and_stops_cleanly(punchclock_env: dict[str, str], tmp_path: Path) -> None:
    # The test's own database, the shipped schedules.py, and the in-memory broker that dev mode uses.
    env = {**punchclock_env, "PUNCHCLOCK_SCHEDULES_MODULE": "schedules", "PUNCHCLOCK_DATA_DIR": str(tmp_path)}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    dev = Process(["make", "--no-print-directory", "dev"], env, tmp_path / "dev.log")
    try:
        wait_for(lambda: "punchclock dev: running" in dev.output(), 120, "dev mode to start")
        out = dev.output()
        assert "in-memory broker" in out and "heartbeat, nightly-check" in out

        # A second terminal with no broker set: the CLI sees dev running and leaves the run to dev's ticker.
        triggered = punchclock("schedules", "trigger", "heartbeat", env=env, unset=("PUNCHCLOCK_BROKER_URL",))
        assert triggered.returncode == 0, triggered.stderr
        assert "punchclock dev" in triggered.stdout + triggered.stderr
        wait_for(
            lambda: query(url, "SELECT 1 FROM runs WHERE trigger = 'manual' AND state = 'succeeded'"),
            30,
            "the triggered run to succeed in dev mode",
        )
        assert query(url, "SELECT output FROM runs WHERE trigger = 'manual'")[0]["output"] == '{"ok": true}'
        wait_for(lambda: "action=run_succeeded" in dev.output(), 10, "the run to be logged")
    finally:
        code = dev.stop(signal.SIGINT, timeout=60)
    assert "punchclock dev: stopped" in dev.output(), dev.output()
    # Ctrl-C reaches make too, which dies of it once punchclock has stopped; a hang or a crash would differ.
    assert code in (0, 2, -signal.SIGINT), dev.output()
