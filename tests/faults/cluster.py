"""One fault test's punchclock: real ``dramatiq app.actors`` workers and ``periodiq app.actors`` clocks on the
private nodes, driven through the CLI, and the checks every fault case ends with.

"Exactly once" is checked on what the actors themselves recorded (``probe(record=...)``), not only on the run
rows: every run in a final state, each attempt executed at most once, no two executions of one run alive at the
same time (an execution whose process was killed on purpose ended when it was killed), and never more
executions of a run than attempts recorded for it — so an execution that ended and was recorded is never
repeated. An execution whose worker died after the actor returned but before its end was recorded is repeated
as the next attempt (its attempt is ``lost``): at-least-once is all a crash there allows, and the attempt rows
say so.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.e2e.processes import Process, clock, punchclock, query, wait_for, worker
from tests.faults.executions import Executions, read_executions

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "missed")


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    record: Path
    processes: list[Process] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # pid -> when it was SIGKILLed on purpose

    @property
    def url(self) -> str:
        return self.env["PUNCHCLOCK_DATABASE_URL"]

    def worker(self, name: str = "worker", threads: int = 4) -> Process:
        process = worker(self.env, self.logs / f"{name}.log", threads=threads)
        self.processes.append(process)
        wait_for(lambda: "Worker process is ready" in process.output(), 60, f"{name} to boot")
        return process

    def clock(self, name: str = "clock") -> Process:
        process = clock(self.env, self.logs / f"{name}.log")
        self.processes.append(process)
        wait_for(lambda: "Starting Periodiq" in process.output(), 60, f"{name} to start")
        return process

    def kill(self, process: Process) -> None:
        """SIGKILL a process and its children; their unfinished executions ended now."""
        children = worker_pids(process)
        process.stop(signal.SIGKILL)
        now = time.time()
        for pid in (process.popen.pid, *children):
            self.killed[pid] = now

    def cli(self, *args: str) -> str:
        result = punchclock(*args, env=self.env)
        assert result.returncode == 0, f"punchclock {' '.join(args)}: {result.stderr}"
        return result.stdout

    def add(self, name: str, *flags: str, cron: str = "0 0 1 1 *", **args: Any) -> None:
        payload = json.dumps({**args, "record": str(self.record)})
        self.cli("schedules", "add", name, "--actor", "probe", "--cron", cron, "--args", payload, *flags)

    def trigger(self, name: str, times: int = 1) -> list[int]:
        ids = []
        for _ in range(times):
            before = self.query("SELECT coalesce(max(id), 0) AS id FROM runs")[0]["id"]
            self.cli("schedules", "trigger", name)
            ids.append(int(self.query("SELECT min(id) AS id FROM runs WHERE id > $1", before)[0]["id"]))
        return ids

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return query(self.url, sql, *args)

    def states(self, run_ids: Iterable[int]) -> dict[int, str]:
        rows = self.query("SELECT id, state FROM runs WHERE id = ANY($1::bigint[])", list(run_ids))
        return {row["id"]: row["state"] for row in rows}

    def wait_states(self, run_ids: list[int], states: tuple[str, ...], timeout: float, what: str) -> None:
        wait_for(lambda: all(s in states for s in self.states(run_ids).values()), timeout, what)

    def wait_final(self, run_ids: list[int] | None = None, timeout: float = 120) -> float:
        """Wait until the runs (all runs when None) and their attempts are final; the seconds it took."""
        started = time.monotonic()

        def settled() -> bool:
            ids = run_ids if run_ids is not None else [r["id"] for r in self.query("SELECT id FROM runs")]
            in_flight = self.query(
                "SELECT 1 FROM runs WHERE id = ANY($1::bigint[]) AND state <> ALL($2::text[])"
                " UNION ALL SELECT 1 FROM run_attempts WHERE run_id = ANY($1::bigint[]) AND state = 'running'",
                ids,
                list(FINAL),
            )
            return not in_flight

        wait_for(settled, timeout, "every run and attempt to reach a final state", interval=0.5)
        return time.monotonic() - started

    def executions(self) -> Executions:
        return read_executions(self.record)

    def logs_of_all(self) -> str:
        return "\n".join(process.output() for process in self.processes)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                process.stop(signal.SIGKILL)


def worker_pids(process: Process) -> list[int]:
    """The worker processes a ``dramatiq`` main process forked (they run the actors)."""
    try:
        children = Path(f"/proc/{process.popen.pid}/task/{process.popen.pid}/children").read_text().split()
    except OSError:
        return []
    return [int(pid) for pid in children]


@dataclass(frozen=True)
class Verdict:
    runs: int
    lost: list[int]
    double: list[str]


def check_exactly_once(cluster: Cluster, run_ids: list[int] | None = None) -> Verdict:
    """The fault tier's definition of exactly once, on the rows and on the actors' own records."""
    rows = cluster.query("SELECT id, state, attempts FROM runs ORDER BY id")
    if run_ids is not None:
        rows = [r for r in rows if r["id"] in set(run_ids)]
    attempts = {
        (a["run_id"], a["attempt"]): a["state"]
        for a in cluster.query("SELECT run_id, attempt, state FROM run_attempts")
    }
    executions = cluster.executions()
    by_run = executions.by_run()
    lost = [r["id"] for r in rows if r["state"] not in FINAL]
    lost += [r["id"] for r in rows if r["state"] == "succeeded" and not by_run.get(r["id"])]
    double: list[str] = []
    for (run_id, attempt), repeated in executions.attempts_executed_more_than_once().items():
        double.append(f"run {run_id} attempt {attempt} executed {len(repeated)} times")
    for first, second in executions.overlapping(killed=cluster.killed):
        double.append(f"run {first.run_id}: attempts {first.attempt} and {second.attempt} overlapped")
    for row in rows:
        ran = by_run.get(row["id"], [])
        if len(ran) > row["attempts"]:
            double.append(f"run {row['id']}: {len(ran)} executions for {row['attempts']} attempts")
        for execution in ran:
            if (row["id"], execution.attempt) not in attempts:
                double.append(f"run {row['id']}: execution of attempt {execution.attempt}, which has no row")
    return Verdict(runs=len(rows), lost=lost, double=double)


def assert_exactly_once(cluster: Cluster, run_ids: list[int] | None = None) -> Verdict:
    verdict = check_exactly_once(cluster, run_ids)
    assert verdict.lost == [], f"lost runs: {verdict.lost}"
    assert verdict.double == [], f"double executions: {verdict.double}"
    return verdict


def wait_log(processes: Callable[[], str], needle: str, timeout: float) -> None:
    wait_for(lambda: needle in processes(), timeout, f"the log line {needle!r}")
