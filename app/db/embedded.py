"""The embedded PostgreSQL 16 + pgvector (PyPI ``pgserver``, the ``embedded`` extra) used when no
``PUNCHCLOCK_DATABASE_URL`` is set.

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
# pgserver is the optional `embedded` extra: it ships x86_64 PostgreSQL binaries a real deployment never uses.
MISSING_EXTRA = (
    "PUNCHCLOCK_DATABASE_URL is not set and the embedded PostgreSQL is not installed:"
    " pip install 'punchclock[embedded]' (make dev and make test do), or set PUNCHCLOCK_DATABASE_URL"
    " to a PostgreSQL server (postgresql://user:pass@host:5432/db)"
)


def embedded_database_url(pgdata: Path, database: str = "postgres") -> str:
    """Start (or join) the embedded server in ``pgdata`` and return its URL for ``database``."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError:  # the embedded extra is not installed (the Docker image, an ARM host)
        raise ConfigurationError(MISSING_EXTRA) from None
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
