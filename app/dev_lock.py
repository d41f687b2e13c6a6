"""One ``punchclock dev`` per data directory, and how the CLI in another terminal knows one runs.

dev holds an exclusive ``flock`` on ``<data dir>/dev.pid`` for its whole life, with its pid written inside. The
kernel releases the lock when the process ends, however it ends (a SIGKILL included), so a stale file never
blocks the next dev and a pid reused by another program is never taken for dev. The file is never deleted: a
dev starting while another unlinks it could lock a file nobody else sees, and two would run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from app.errors import ConfigurationError

DEV_MARKER = "dev.pid"


def dev_pid(data_dir: Path) -> int | None:
    """The pid of the ``punchclock dev`` holding ``data_dir``, or None when none does."""
    try:
        fd = os.open(data_dir / DEV_MARKER, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def claim(data_dir: Path) -> int:
    """Take ``data_dir`` for this process; the returned descriptor holds the lock until it is closed (or the
    process ends). Raises naming the pid of the dev that already holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / DEV_MARKER, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise ConfigurationError(
            f"punchclock dev is already running on {data_dir} (pid {pid}): use that one, or stop it first"
            f" (Ctrl-C in its terminal, or kill {pid}); to run a second one, give it its own PUNCHCLOCK_DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
