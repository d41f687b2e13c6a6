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
