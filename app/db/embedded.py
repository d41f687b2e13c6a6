"""The embedded PostgreSQL 16 + pgvector (PyPI ``pgserver``) used when no ``PUNCHCLOCK_DATABASE_URL`` is set.

Every punchclock process on the machine (workers, clock, CLI, tests) shares one server per data directory:
the first to arrive starts it and none stops it (``cleanup_mode=None``), so a CLI call never pulls the
database out from under a running worker. A file lock serialises the first start, which runs ``initdb``.
"""

from __future__ import annotations

import fcntl
import logging
import warnings
from pathlib import Path

from app.errors import ConfigurationError

logger = logging.getLogger(__name__)


def embedded_database_url(pgdata: Path, database: str = "postgres") -> str:
    """Start (or join) the embedded server in ``pgdata`` and return its URL for ``database``."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError:  # pragma: no cover - pgserver is a core dependency
        raise ConfigurationError(
            "the embedded PostgreSQL needs the pgserver package: pip install pgserver, or set PUNCHCLOCK_DATABASE_URL"
        ) from None
    pgdata = pgdata.resolve()
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
