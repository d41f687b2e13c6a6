"""The worker process's one ``httpx.AsyncClient`` (notifications now; LLM, Dify and sources later).

Opened on first use on Dramatiq's event loop thread and closed at worker shutdown, never at import; one
client per process so connections are pooled. Sits below ``AsyncIO`` in the stack, like DatabasePool, so it
closes before the loop stops.
"""

from __future__ import annotations

import threading

import dramatiq
import httpx
from dramatiq.asyncio import get_event_loop_thread

from app.errors import ConfigurationError

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# httpx's default pool (100 connections) would cap a workflow that fans LLM calls out with asyncio.gather;
# a worker process is allowed a few hundred calls in flight.
LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=64)


class HttpClient(dramatiq.Middleware):
    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.AsyncClient:
        with self._lock:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False)
            return self._client

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            thread = get_event_loop_thread()
            if thread is None:
                raise ConfigurationError("HttpClient needs Dramatiq's AsyncIO middleware earlier in the stack")
            thread.run_coroutine(client.aclose())
