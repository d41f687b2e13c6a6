"""Start and stop punchclock's real processes (dramatiq, periodiq, the CLI) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import asyncpg

from tests.services import ROOT

BIN = Path(sys.executable).parent


class Process:
    """A subprocess in its own session (so the whole tree can be signalled) logging to a file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.args = args
        self.log_path = log
        self._log: IO[bytes] = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop with ``signum``. SIGKILL and SIGINT go to the whole group, as a crash and a terminal's Ctrl-C do;
        SIGTERM only to the main process, as a supervisor sends it: dramatiq forwards it to its worker processes,
        which hang when the group gives them a second one."""
        if signum in (signal.SIGKILL, signal.SIGINT):
            self.send_signal(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signum)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            code = self.popen.wait(10)
        self._log.close()
        return code


def worker(env: Mapping[str, str], log: Path, threads: int = 4, cwd: Path = ROOT) -> Process:
    args = [str(BIN / "dramatiq"), "app.actors", "--processes", "1", "--threads", str(threads)]
    return Process(args, env, log, cwd)


def clock(env: Mapping[str, str], log: Path) -> Process:
    return Process([str(BIN / "periodiq"), "app.actors"], env, log)


def punchclock(
    *args: str, env: Mapping[str, str], unset: tuple[str, ...] = (), cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    merged = {key: value for key, value in {**os.environ, **env}.items() if key not in unset}
    return subprocess.run(
        [str(BIN / "punchclock"), *args], cwd=cwd, env=merged, capture_output=True, text=True, timeout=60
    )


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """One statement on a fresh connection (the tests' view of the database the processes use)."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
