"""RunHeartbeat: while attempts run in this worker process, prove they are alive, and stop the ones that must stop.

One daemon thread per process, one round trip per beat for all of the process's running attempts, and none
while nothing runs. Each beat renews every attempt's ``alive_until`` and its overlap lease by ``lock_ttl``, every
``interval`` (well under ``lock_ttl``), so only a dead worker's attempts expire. An attempt is stopped — an
exception raised asynchronously in its thread, the way Dramatiq's own TimeLimit stops an actor, landing when the
thread next runs Python code — when:

- ``punchclock runs cancel`` asked it to stop: :class:`RunCancelled`, and the run ends ``cancelled``;
- it is no longer its run's running attempt (superseded): this worker could not reach the database for longer
  than ``lock_ttl``, the attempt was declared lost and taken over elsewhere: :class:`RunSuperseded`, so the run
  does not go on executing twice.

``RunLifecycle`` tells it which attempts run (:meth:`track` after a start is recorded, :meth:`untrack` before
the end is), so a beat never stops a thread that has moved on to another message.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import dramatiq
from dramatiq.threading import raise_thread_exception

from app.db.queries import sql
from app.middleware.database import DatabasePool
from app.transient import RunCancelled, RunSuperseded

logger = logging.getLogger(__name__)


class RunHeartbeat(dramatiq.Middleware):
    def __init__(self, database: DatabasePool, *, lock_ttl: timedelta, interval: timedelta) -> None:
        self.database = database
        self.lock_ttl = lock_ttl
        self.interval = interval
        self._running: dict[int, tuple[int, int]] = {}  # run id -> (attempt, id of the worker thread running it)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="punchclock-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def track(self, run_id: int, attempt: int) -> None:
        """Attempt ``attempt`` of ``run_id`` runs on the calling thread from now on."""
        with self._lock:
            self._running[run_id] = (attempt, threading.get_ident())

    def untrack(self, run_id: int) -> None:
        with self._lock:
            self._running.pop(run_id, None)

    def running(self) -> dict[int, tuple[int, int]]:
        with self._lock:
            return dict(self._running)

    def beat(self) -> list[int]:
        """One beat: keep the running attempts alive, stop those that must stop; the run ids stopped."""
        running = self.running()
        if not running:
            return []
        ids = list(running)
        attempts = [running[run_id][0] for run_id in ids]
        rows = self.database.run(lambda pool: pool.fetch(sql("heartbeat"), ids, attempts, self.lock_ttl))
        stopped = []
        for row in rows:
            interrupt = RunSuperseded if row["superseded"] else RunCancelled
            with self._lock:
                # Only the thread still running that very attempt: it may have finished since the beat began.
                if self._running.get(row["id"], (None, None))[0] != row["attempt"]:
                    continue
                _, thread_id = self._running.pop(row["id"])
                action = "run_superseded" if row["superseded"] else "run_cancel_delivered"
                logger.warning(
                    "stopping an attempt that must not go on",
                    extra={"action": action, "run_id": row["id"], "attempt": row["attempt"]},
                )
                raise_thread_exception(thread_id, interrupt)  # type: ignore[no-untyped-call]
            stopped.append(row["id"])
        return stopped

    def _beat(self) -> None:
        while not self._stop.wait(self.interval.total_seconds()):
            try:
                self.beat()
            except Exception as exc:  # the next beat tries again; an attempt outlives a few missed beats
                logger.warning("heartbeat failed", extra={"action": "heartbeat_failed", "error": str(exc)})
