"""The embedded PostgreSQL 16 + pgvector (PyPI ``pgserver``, the ``embedded`` extra) used when no
``PUNCHCLOCK_DATABASE_URL`` is set.

Every punchclock process on the machine (workers, clock, CLI, tests) shares one server per data directory:
the first to arrive starts it and none stops it (``cleanup_mode=None``), so a CLI call never pulls the
database out from under a running worker. A file lock serialises the first start, which runs ``initdb``. The
server keeps running after the process that started it; ``punchclock db stop`` stops it (:func:`stop_server`),
and the next command that needs it starts it again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from app.errors import ConfigurationError

logger = logging.getLogger(__name__)
# pgserver is the optional `embedded` extra: it ships x86_64 PostgreSQL binaries a real deployment never uses.
MISSING_EXTRA = (
    "PUNCHCLOCK_DATABASE_URL is not set and the embedded PostgreSQL is not installed:"
    " pip install 'punchclock[embedded]' (make dev and make test do), or set PUNCHCLOCK_DATABASE_URL"
    " to a PostgreSQL server (postgresql://user:pass@host:5432/db)"
)


def embedded_database_url(pgdata: Path, database: str = "postgres", *, create: bool = True) -> str:
    """Start (or join) the embedded server in ``pgdata`` and return its URL for ``database``. Without ``create``,
    a ``pgdata`` that holds no database yet is an error saying how to create one, rather than a new empty
    database in the wrong place (the CLI's commands other than ``migrate``)."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError:  # the embedded extra is not installed (the Docker image, an ARM host)
        raise ConfigurationError(MISSING_EXTRA) from None
    pgdata = pgdata.resolve()
    if not create and not initialised(pgdata):
        raise ConfigurationError(
            f"no embedded database in {pgdata} yet: create it with `punchclock migrate` (or `make dev`) in the"
            " project, set PUNCHCLOCK_DATA_DIR to the directory that holds one, or set PUNCHCLOCK_DATABASE_URL"
        )
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with open(pgdata.parent / f".{pgdata.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            server = get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            raise ConfigurationError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc};"
                " remove the directory to start afresh, or set PUNCHCLOCK_DATABASE_URL"
            ) from exc
    url: str = server.get_uri(database)
    logger.debug("embedded postgres ready", extra={"action": "embedded_postgres_ready", "pgdata": str(pgdata)})
    return url


def initialised(pgdata: Path) -> bool:
    """Whether ``pgdata`` holds a database (``initdb`` writes ``PG_VERSION`` there)."""
    return (pgdata / "PG_VERSION").is_file()


@dataclass(frozen=True)
class Postmaster:
    """The embedded server that runs on ``pgdata``, read from its ``postmaster.pid``."""

    pid: int
    port: str
    socket_dir: str


def running_server(pgdata: Path) -> Postmaster | None:
    """The server running on ``pgdata``, or None (no ``postmaster.pid``, or its process is gone)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        os.kill(pid, 0)
    except PermissionError:  # alive, owned by another user (pgserver runs it as `pgserver` under root)
        pass
    except (OSError, ValueError, IndexError):
        return None
    return Postmaster(pid, lines[3] if len(lines) > 3 else "", lines[4] if len(lines) > 4 else "")


def stop_server(pgdata: Path, wait_seconds: float = 60) -> Postmaster | None:
    """Stop the server running on ``pgdata`` as ``pg_ctl stop -m fast`` does (SIGINT to the postmaster: clients
    are disconnected, the data is checkpointed); return it, or None when none ran. Raises when it outlives
    ``wait_seconds``."""
    server = running_server(pgdata)
    if server is None:
        return None
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + wait_seconds
    while running_server(pgdata) is not None:
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} (pid {server.pid}) did not stop within {wait_seconds:g} s;"
                f" try again, or kill {server.pid}"
            )
        time.sleep(0.1)
    logger.info("embedded postgres stopped", extra={"action": "embedded_postgres_stopped", "pgdata": str(pgdata)})
    return server
