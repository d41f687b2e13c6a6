"""RunHeartbeat: while runs are running in this worker process, renew their overlap leases and stop the ones
that ``punchclock runs cancel`` asked to stop.

One daemon thread per process, one round trip per beat for all of the process's running runs, and none while
nothing runs. A lease is renewed every ``interval`` (well under ``lock_ttl``), so only a dead worker's lease
expires. A cancelled run's thread gets :class:`RunCancelled` raised asynchronously, the way Dramatiq's own
TimeLimit stops an actor; like TimeLimit it lands when the thread next runs Python code. Sits below
RunLifecycle in the stack: it tracks only runs that RunLifecycle actually started.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import dramatiq
from dramatiq.threading import raise_thread_exception

from app.db.queries import sql
from app.middleware.database import DatabasePool
from app.transient import RunCancelled

logger = logging.getLogger(__name__)


class RunHeartbeat(dramatiq.Middleware):
    def __init__(self, database: DatabasePool, *, lock_ttl: timedelta, interval: timedelta) -> None:
        self.database = database
        self.lock_ttl = lock_ttl
        self.interval = interval
        self._running: dict[int, int] = {}  # run id -> id of the worker thread running it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="punchclock-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        run_id = message.options.get("run_id")
        if run_id is not None:
            with self._lock:
                self._running[run_id] = threading.get_ident()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        run_id = message.options.get("run_id")
        if run_id is not None:
            with self._lock:
                self._running.pop(run_id, None)

    after_skip_message = after_process_message

    def running(self) -> dict[int, int]:
        with self._lock:
            return dict(self._running)

    def beat(self) -> list[int]:
        """One beat: renew the leases of the running runs, stop the cancelled ones; the ids stopped."""
        running = self.running()
        if not running:
            return []
        ids = list(running)
        cancelled: list[int] = [
            row["id"] for row in self.database.run(lambda pool: pool.fetch(sql("heartbeat"), ids, self.lock_ttl))
        ]
        for run_id in cancelled:
            with self._lock:
                thread_id = self._running.pop(run_id, None)
            if thread_id is not None:
                logger.info("stopping a cancelled run", extra={"action": "run_cancel_delivered", "run_id": run_id})
                raise_thread_exception(thread_id, RunCancelled)  # type: ignore[no-untyped-call]
        return cancelled

    def _beat(self) -> None:
        while not self._stop.wait(self.interval.total_seconds()):
            try:
                self.beat()
            except Exception as exc:  # the next beat tries again; a lease outlives a few missed beats
                logger.warning("heartbeat failed", extra={"action": "heartbeat_failed", "error": str(exc)})
