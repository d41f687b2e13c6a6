"""The worker process's asyncpg pool, living on Dramatiq's event loop thread (the ``AsyncIO`` middleware).

Sync code on worker threads (middleware hooks, sync actors, the tick) reaches the database through
:meth:`DatabasePool.run`, which waits for a coroutine on that loop; async actors share the same loop and pool.
The pool is opened at worker boot and closed at shutdown, never at import. Must come after ``AsyncIO`` in the
stack so its shutdown hook runs while the loop is still alive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread

from app.db.pool import create_pool
from app.errors import ConfigurationError

logger = logging.getLogger(__name__)
T = TypeVar("T")

if TYPE_CHECKING:
    from app.db.pool import Pool


class DatabasePool(dramatiq.Middleware):
    """``url`` is a callable so that the embedded server starts in the worker, not at import.
    ``on_ready`` runs once per process after the pool opens (migrations, the schedules sync)."""

    def __init__(
        self, url: Callable[[], str], size: int, on_ready: Callable[[Pool], Awaitable[None]] | None = None
    ) -> None:
        self._url = url
        self._size = size
        self._on_ready = on_ready
        self._pool: Pool | None = None
        self._lock = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            self._ensure_pool()
        except Exception as exc:
            # Runs will fail their start and be retried by Dramatiq; nothing is lost while the database is away.
            logger.error(
                "database unavailable at boot; retrying on the next message",
                extra={"action": "database_unavailable", "error": str(exc)},
            )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            self._loop().run_coroutine(pool.close())

    def run(self, work: Callable[[Pool], Awaitable[T]]) -> T:
        """Run ``work(pool)`` on the event loop and wait for its result (from a sync thread only)."""
        return self._loop().run_coroutine(work(self._ensure_pool()))

    def _ensure_pool(self) -> Pool:
        with self._lock:
            if self._pool is None:
                pool = self._loop().run_coroutine(create_pool(self._url(), self._size))
                try:
                    if self._on_ready is not None:
                        self._loop().run_coroutine(self._on_ready(pool))
                except BaseException:
                    self._loop().run_coroutine(pool.close())
                    raise
                self._pool = pool
            return self._pool

    @staticmethod
    def _loop() -> EventLoopThread:
        thread = get_event_loop_thread()
        if thread is None:
            raise ConfigurationError("DatabasePool needs Dramatiq's AsyncIO middleware earlier in the stack")
        return thread
