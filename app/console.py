"""Lines for a person at a terminal that never fail the process: :func:`say` survives a closed stdout or stderr.

``make dev 2>&1 | tee dev.log`` then Ctrl-C: the terminal sends SIGINT to both, tee dies first, and every later
write to the pipe fails with EPIPE (Python ignores SIGPIPE, so it is a ``BrokenPipeError``). A message about
stopping must not be what keeps a process from stopping: once a stream is gone, its file descriptor is pointed at
``/dev/null``, so later lines (and the interpreter's flush at exit) are dropped quietly.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO


def say(text: str, *, err: bool = False) -> None:
    """Print ``text`` (and a newline) to stdout, or stderr with ``err``; nothing when that stream is gone."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):  # EPIPE, a revoked terminal, a full disk; ValueError: the stream was closed
        _silence(stream)


def _silence(stream: TextIO) -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
