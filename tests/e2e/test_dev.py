"""``make dev``: the embedded stack in one process, driven by the CLI from another, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.processes import BIN, Process, punchclock, query, wait_for
from tests.services import ROOT

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

        # A second dev on the same data directory is refused, naming the first and the directory.
        pid = (tmp_path / "dev.pid").read_text()
        second = punchclock("dev", env=env)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"already running on {tmp_path} (pid {pid})" in second.stderr, second.stderr

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


def test_dev_stops_on_ctrl_c_when_its_stdout_is_gone(punchclock_env: dict[str, str], tmp_path: Path) -> None:
    # `make dev | tee dev.log`, then Ctrl-C: tee dies of it too, so dev's stop message meets a closed pipe. Here
    # the reader is `head`, which exits after dev's start-up lines, before the Ctrl-C.
    env = {**os.environ, **punchclock_env, "PUNCHCLOCK_DATA_DIR": str(tmp_path)}
    with open(tmp_path / "dev.err", "wb") as err, open(tmp_path / "head.out", "wb") as out:
        dev = subprocess.Popen([str(BIN / "punchclock"), "dev"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        assert dev.stdout is not None
        head = subprocess.Popen(["head", "-n", "6"], stdin=dev.stdout, stdout=out)
        dev.stdout.close()  # head holds the only reading end: once it exits, dev's writes fail with EPIPE
        try:
            wait_for(lambda: head.poll() is not None, 120, "dev's start-up lines to reach head, which then exits")
            assert "punchclock dev: running" in (tmp_path / "head.out").read_text()
            dev.send_signal(signal.SIGINT)
            try:
                code: int | None = dev.wait(60)
            except subprocess.TimeoutExpired:
                code = None  # the hang this test is about
        finally:
            if dev.poll() is None:
                dev.kill()
                dev.wait(10)
    log = (tmp_path / "dev.err").read_text(errors="replace")
    assert code == 0, log
    assert "action=dev_stopped" in log, log


def dev_process(env: dict[str, str], log: Path) -> Process:
    dev = Process([str(BIN / "punchclock"), "dev"], env, log)
    wait_for(lambda: "Ctrl-C to stop" in dev.output(), 120, "dev mode to start")
    return dev


def states(url: str) -> dict[str, str]:
    return {row["name"]: row["state"] for row in query(url, "SELECT schedule_name AS name, state FROM runs")}


def test_dev_takes_over_the_runs_of_a_dev_that_was_killed(punchclock_env: dict[str, str], tmp_path: Path) -> None:
    env = {**punchclock_env, "PUNCHCLOCK_DATA_DIR": str(tmp_path)}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    cli = {"env": env, "unset": ("PUNCHCLOCK_BROKER_URL",)}  # the CLI of a second terminal, as make dev's user has
    dev = dev_process(env, tmp_path / "dev.log")
    try:
        for name, seconds in (("cancelled", "120"), ("kept", "8")):
            added = punchclock(
                "schedules",
                "add",
                name,
                "--actor",
                "probe",
                "--cron",
                "0 0 1 1 *",
                "--args",
                f'{{"seconds": {seconds}}}',
                **cli,
            )
            assert added.returncode == 0, added.stderr
            assert punchclock("schedules", "trigger", name, **cli).returncode == 0
        wait_for(lambda: states(url) == {"kept": "running", "cancelled": "running"}, 60, "both runs to start")
    finally:
        dev.stop(signal.SIGKILL)
    assert states(url) == {"kept": "running", "cancelled": "running"}  # a hard kill: nobody finishes them
    cancel = punchclock(
        "runs", "cancel", str(query(url, "SELECT id FROM runs WHERE schedule_name = 'cancelled'")[0]["id"]), **cli
    )
    assert cancel.returncode == 0, cancel.stderr

    again = dev_process(env, tmp_path / "dev-again.log")
    try:
        assert "resumed    2 run(s)" in again.output(), again.output()
        wait_for(
            lambda: states(url) == {"kept": "succeeded", "cancelled": "cancelled"},
            60,
            "the next dev to finish the killed dev's run and the cancelled one",
        )
        lost = query(url, "SELECT count(*) AS n FROM run_attempts WHERE state = 'lost'")[0]["n"]
        assert lost == 1  # kept's first attempt; cancelled was ended as cancelled, its attempt with it
    finally:
        assert again.stop(signal.SIGINT, timeout=60) == 0, again.output()


def test_dev_hands_back_what_it_did_not_finish_at_ctrl_c(punchclock_env: dict[str, str], tmp_path: Path) -> None:
    env = {**punchclock_env, "PUNCHCLOCK_DATA_DIR": str(tmp_path)}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    cli = {"env": env, "unset": ("PUNCHCLOCK_BROKER_URL",)}
    dev = dev_process(env, tmp_path / "dev.log")
    try:
        args = ("--actor", "probe", "--cron", "0 0 1 1 *", "--args", '{"seconds": 12}')
        assert punchclock("schedules", "add", "slow", *args, **cli).returncode == 0
        # three instants, run one after the other: one running, two waiting in dev's in-memory queues
        backfill = punchclock(
            "schedules", "backfill", "slow", "--from", "2020-01-01T00:00Z", "--to", "2022-01-01T00:00Z", **cli
        )
        assert backfill.returncode == 0, backfill.stderr
        wait_for(
            lambda: sorted(states_of(url)) == ["enqueued", "enqueued", "running"],
            60,
            "one backfill run to start while the others wait in memory",
        )
    finally:
        code = dev.stop(signal.SIGINT, timeout=60)
    assert code == 0, dev.output()
    unfinished = [state for state in states_of(url) if state != "succeeded"]
    assert len(unfinished) >= 2, unfinished  # the two in memory at least (the running one may have finished)
    assert f"{len(unfinished)} run(s) not finished handed back" in dev.output(), dev.output()

    again = dev_process(env, tmp_path / "dev-again.log")
    try:
        wait_for(lambda: states_of(url) == ["succeeded"] * 3, 120, "the next dev to run the three instants")
    finally:
        assert again.stop(signal.SIGINT, timeout=60) == 0, again.output()


def states_of(url: str) -> list[str]:
    return [row["state"] for row in query(url, "SELECT state FROM runs ORDER BY scheduled_for")]


def test_a_second_ctrl_c_stops_dev_without_waiting(punchclock_env: dict[str, str], tmp_path: Path) -> None:
    env = {**punchclock_env, "PUNCHCLOCK_DATA_DIR": str(tmp_path)}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    cli = {"env": env, "unset": ("PUNCHCLOCK_BROKER_URL",)}
    dev = dev_process(env, tmp_path / "dev.log")
    try:
        args = ("--actor", "probe", "--cron", "0 0 1 1 *", "--args", '{"seconds": 120}')
        assert punchclock("schedules", "add", "long", *args, **cli).returncode == 0
        assert punchclock("schedules", "trigger", "long", **cli).returncode == 0
        wait_for(lambda: states_of(url) == ["running"], 60, "the long run to start")
        dev.popen.send_signal(signal.SIGINT)
        wait_for(lambda: "punchclock dev: stopping" in dev.output(), 30, "dev to wait for its running actor")
        dev.popen.send_signal(signal.SIGINT)
        code = dev.stop(signal.SIGINT, timeout=60)  # one more, as an impatient user sends it; then waits
    finally:
        if dev.popen.poll() is None:
            dev.stop(signal.SIGKILL)
    assert code == 128 + signal.SIGINT, dev.output()  # the forced exit, not the graceful 0 after the wait
    assert "SIGINT again, exiting now" in dev.output()
