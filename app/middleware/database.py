"""The worker process's database access: an asyncpg pool on Dramatiq's event loop thread, and a connection of
its own for each worker thread.

Sync code on worker threads (the tick, follow-ups, sync actors) reaches the pool through
:meth:`DatabasePool.run`, which waits for a coroutine on that loop; async actors share the same loop and pool.
The two statements every run makes (start, finish) go through :meth:`DatabasePool.run_here` instead: on the
calling thread's own connection and event loop, so the hot path never hands work to the shared loop thread
and back (which cost as much CPU as the statements themselves). Both are opened on first use in a worker and
closed at shutdown, never at import. Must come after ``AsyncIO`` in the stack so its shutdown hook runs while
the loop is still alive.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg
import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread

from app.db.outage import OUTAGE_ERRORS
from app.db.pool import connect, create_pool
from app.errors import ConfigurationError

logger = logging.getLogger(__name__)
T = TypeVar("T")
# After one of these the thread's connection is no use: dropped, so the next call opens a fresh one.
CLOSING_ERRORS: tuple[type[BaseException], ...] = (*OUTAGE_ERRORS, asyncpg.InternalClientError)

if TYPE_CHECKING:
    from app.db.pool import Connection, Pool


class DatabasePool(dramatiq.Middleware):
    """``url`` is a callable so that the embedded server starts in the worker, not at import.
    ``on_ready`` runs once per process after the pool opens (migrations, the schedules sync)."""

    def __init__(
        self, url: Callable[[], str], size: int, on_ready: Callable[[Pool], Awaitable[None]] | None = None
    ) -> None:
        self._url_factory = url
        self._url: str | None = None
        self._size = size
        self._on_ready = on_ready
        self._pool: Pool | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # per worker thread: its event loop and connection

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

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: object) -> None:
        self._close_local()

    def run_here(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work(conn)`` on this thread's own connection and event loop (opened on first use). A
        connection that fails is dropped, so the next call opens a fresh one."""
        self._ensure_pool()  # migrations done, URL known
        local = self._local
        if getattr(local, "loop", None) is None:
            local.loop = asyncio.new_event_loop()
        if getattr(local, "conn", None) is None or local.conn.is_closed():
            assert self._url is not None
            local.conn = local.loop.run_until_complete(connect(self._url))
        try:
            result: T = local.loop.run_until_complete(work(local.conn))
        except CLOSING_ERRORS:
            self._close_local()
            raise
        return result

    def _close_local(self) -> None:
        local = self._local
        conn, loop = getattr(local, "conn", None), getattr(local, "loop", None)
        local.conn = local.loop = None
        if loop is not None:
            if conn is not None:
                try:
                    loop.run_until_complete(conn.close(timeout=5))
                except CLOSING_ERRORS:
                    conn.terminate()  # the server is gone: nothing to close politely
            loop.close()

    def run(self, work: Callable[[Pool], Awaitable[T]]) -> T:
        """Run ``work(pool)`` on the event loop and wait for its result (from a sync thread only)."""
        return self._loop().run_coroutine(work(self._ensure_pool()))

    def pool(self) -> Pool:
        """The pool (opened on first use), for coroutines that will run on the event loop thread."""
        return self._ensure_pool()

    def _ensure_pool(self) -> Pool:
        with self._lock:
            if self._pool is None:
                self._url = self._url or self._url_factory()
                pool = self._loop().run_coroutine(create_pool(self._url, self._size))
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
