"""Read what ``probe(record=PATH)`` wrote: every execution of the actor, seen from inside it.

A run's row in the database says how the run ended, not how many times its code ran; a fault (a broker restart, a
worker killed mid-run, a lost acknowledgement) shows as a second execution of a run that still ends
``succeeded`` once. The probe appends a ``start`` line when an execution begins and an ``end`` line when it returns
or raises; this module pairs them up per process and thread and answers: how many times each run executed, which
runs (or attempts) executed more than once, and which executions of one run overlapped in time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RunId = Any  # the message's run_id option as the probe saw it: an int, or None outside punchclock


@dataclass(frozen=True)
class Execution:
    """One execution of the probe. ``ended`` is None when it never wrote its end line: its process died (or it
    is still running)."""

    run_id: RunId
    attempt: int
    pid: int
    thread: int
    started: float
    ended: float | None

    def overlaps(self, other: Execution, killed: Mapping[int, float] | None = None) -> bool:
        """Whether both were running at some instant: each started before the other ended. One that never ended
        runs forever, unless its process is in ``killed`` (pid: when it was killed), which ends it then."""
        return self.started < other._end(killed) and other.started < self._end(killed)

    def _end(self, killed: Mapping[int, float] | None) -> float:
        if self.ended is not None:
            return self.ended
        if killed is not None and self.pid in killed:
            return killed[self.pid]
        return float("inf")


@dataclass(frozen=True)
class Executions:
    """All executions a record file holds, in the order they started."""

    items: tuple[Execution, ...]

    def __iter__(self) -> Iterator[Execution]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def by_run(self) -> dict[RunId, list[Execution]]:
        """Executions per run id, each list in start order."""
        runs: dict[RunId, list[Execution]] = defaultdict(list)
        for execution in self.items:
            runs[execution.run_id].append(execution)
        return dict(runs)

    def counts(self) -> dict[RunId, int]:
        """How many times each run executed (every attempt counts)."""
        return {run_id: len(executions) for run_id, executions in self.by_run().items()}

    def runs_executed_more_than_once(self) -> dict[RunId, list[Execution]]:
        """Runs with more than one execution. Retries are executions too: a test with retries wants
        ``attempts_executed_more_than_once``."""
        return {run_id: executions for run_id, executions in self.by_run().items() if len(executions) > 1}

    def attempts_executed_more_than_once(self) -> dict[tuple[RunId, int], list[Execution]]:
        """(run id, attempt) pairs executed more than once: a redelivered message runs the same attempt again,
        a retry runs the next one."""
        attempts: dict[tuple[RunId, int], list[Execution]] = defaultdict(list)
        for execution in self.items:
            attempts[(execution.run_id, execution.attempt)].append(execution)
        return {key: executions for key, executions in attempts.items() if len(executions) > 1}

    def overlapping(self, killed: Mapping[int, float] | None = None) -> list[tuple[Execution, Execution]]:
        """Pairs of executions of one run that overlapped in time (see :meth:`Execution.overlaps`; a test that
        SIGKILLed a worker on purpose passes ``killed={pid: time.time() after the kill}``)."""
        pairs = []
        for executions in self.by_run().values():
            for i, first in enumerate(executions):
                pairs += [(first, second) for second in executions[i + 1 :] if first.overlaps(second, killed)]
        return pairs

    def unfinished(self) -> list[Execution]:
        """Executions that never wrote their end line."""
        return [execution for execution in self.items if execution.ended is None]


def parse(lines: Iterable[str], source: str = "record") -> Executions:
    """Pair start and end lines. An execution is sequential on its thread, so an end closes the open start of
    its (pid, thread); a start on a thread with one still open means the earlier never ended (its process was
    killed and the pid reused). An end with no start, or a line that is not a record, is an error: a harness
    that skipped what it cannot read would pass the very tests it exists to fail."""
    done: list[Execution] = []
    open_: dict[tuple[int, int], dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            kind, key = event["event"], (int(event["pid"]), int(event["thread"]))
            if kind not in ("start", "end"):
                raise ValueError(f"unknown event {kind!r}")
            event["time"], event["attempt"] = float(event["time"]), int(event["attempt"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{number}: not an execution record ({exc}): {line.strip()!r}") from None
        if kind == "start":
            if key in open_:
                done.append(_execution(open_.pop(key), None))
            open_[key] = event
            continue
        start = open_.pop(key, None)
        if start is None or (start["run_id"], start["attempt"]) != (event["run_id"], event["attempt"]):
            raise ValueError(f"{source}:{number}: an end with no start on its process and thread: {line.strip()!r}")
        done.append(_execution(start, event["time"]))
    done += [_execution(start, None) for start in open_.values()]
    return Executions(tuple(sorted(done, key=lambda execution: execution.started)))


def read_executions(path: Path | str) -> Executions:
    """The executions recorded in ``path``; none when it does not exist (nothing executed)."""
    path = Path(path)
    if not path.exists():
        return Executions(())
    with open(path) as lines:
        return parse(lines, str(path))


def _execution(start: Mapping[str, Any], ended: float | None) -> Execution:
    return Execution(
        run_id=start["run_id"],
        attempt=int(start["attempt"]),
        pid=int(start["pid"]),
        thread=int(start["thread"]),
        started=float(start["time"]),
        ended=ended,
    )
