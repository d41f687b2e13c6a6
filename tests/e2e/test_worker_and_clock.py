"""End to end: ``dramatiq app.actors`` and ``periodiq app.actors`` as subprocesses, driven by the CLI."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.processes import Process, clock, punchclock, query, wait_for, worker

pytestmark = pytest.mark.e2e
TICK = re.compile(r"\baction=tick\b.*?\bnow=(\S+)")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(signal.SIGKILL)


def cli_ok(*args: str, env: dict[str, str]) -> str:
    result = punchclock(*args, env=env)
    assert result.returncode == 0, f"punchclock {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def test_a_run_killed_with_its_worker_finishes_once_after_redelivery(
    punchclock_env: dict[str, str], clean_queues: str, processes: list[Process], tmp_path: Path
) -> None:
    # The redelivered message may take the run over only once the dead attempt's heartbeat has expired.
    env = {**punchclock_env, "PUNCHCLOCK_LOCK_TTL_SECONDS": "3"}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    cli_ok(
        "schedules",
        "add",
        "slow",
        "--actor",
        "probe",
        "--cron",
        "0 0 1 1 *",
        "--args",
        '{"seconds": 5, "output": "done"}',
        env=env,
    )
    first = worker(env, tmp_path / "worker-1.log")
    processes.append(first)
    cli_ok("schedules", "trigger", "slow", env=env)

    wait_for(lambda: query(url, "SELECT 1 FROM runs WHERE state = 'running'"), 60, "the run to start")
    first.stop(signal.SIGKILL)
    assert query(url, "SELECT state, attempts FROM runs")[0]["state"] == "running"

    second = worker(env, tmp_path / "worker-2.log")
    processes.append(second)
    run = wait_for(
        lambda: query(url, "SELECT * FROM runs WHERE state NOT IN ('running', 'enqueued')"),
        90,
        "the redelivered run to finish",
    )[0]
    assert run["state"] == "succeeded", second.output()
    assert run["output"] == '"done"'
    assert run["attempts"] == 2
    assert len(query(url, "SELECT id FROM runs")) == 1
    assert second.output().count("run_started") == 1
    assert "run_taken_over" in second.output()
    attempts = query(url, "SELECT state FROM run_attempts ORDER BY attempt")
    assert [a["state"] for a in attempts] == ["lost", "succeeded"]


def test_two_clocks_and_a_worker_fire_each_minute_once(
    punchclock_env: dict[str, str], clean_queues: str, processes: list[Process], tmp_path: Path
) -> None:
    """Two clocks send a tick each minute; the instant fires once. One minute boundary proves it (two ticks
    processed after the instant was due, one run for it): waiting for a second one only doubled the wait."""
    env = punchclock_env
    url = env["PUNCHCLOCK_DATABASE_URL"]
    cli_ok(
        "schedules",
        "add",
        "every-minute",
        "--actor",
        "probe",
        "--cron",
        "* * * * *",
        "--args",
        '{"output": {"ok": true}}',
        env=env,
    )
    # DEBUG: the worker logs each tick it processes with the database's now (action=tick now=...).
    working = worker({**env, "PUNCHCLOCK_LOG_LEVEL": "DEBUG"}, tmp_path / "worker.log")
    processes.append(working)
    processes.append(clock(env, tmp_path / "clock-1.log"))
    processes.append(clock(env, tmp_path / "clock-2.log"))

    def first_instant() -> datetime | None:
        rows = query(url, "SELECT min(scheduled_for) AS at FROM runs WHERE state = 'succeeded'")
        return rows[0]["at"] if rows else None

    instant = wait_for(first_instant, 90, "the first minute instant to succeed", interval=0.5)

    def ticks_since_instant() -> list[datetime]:
        ticks = [datetime.fromisoformat(now) for now in TICK.findall(working.output())]
        return [at for at in ticks if at >= instant]

    wait_for(lambda: len(ticks_since_instant()) >= 2, 60, "both clocks' ticks for that minute to be processed")
    runs = query(url, "SELECT scheduled_for, state, attempts, trigger, output FROM runs ORDER BY scheduled_for")
    done = [r for r in runs if r["state"] == "succeeded"]
    assert len({r["scheduled_for"] for r in runs}) == len(runs), "an instant ran twice"
    assert [r for r in runs if r["scheduled_for"] == instant] == [done[0]]
    assert all(r["trigger"] == "cron" and r["attempts"] == 1 for r in done)
    assert all(r["scheduled_for"].second == 0 and r["scheduled_for"].microsecond == 0 for r in runs)
    assert not [r for r in runs if r["state"] in ("failed", "missed")]
    for log in ("clock-1.log", "clock-2.log"):  # both clocks really sent ticks
        assert "Scheduling" in (tmp_path / log).read_text(), log
    listed = cli_ok("runs", "list", "--schedule", "every-minute", "--json", env=env)
    assert listed.count('"succeeded"') >= 1
