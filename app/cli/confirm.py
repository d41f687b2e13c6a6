"""Asking before a bulk change: on the terminal, yes or no; never of a script.

The question goes to stderr, so stdout stays the command's output. Only a terminal on stdin is asked: from a
script or a pipe there is nobody to answer, and reading the next line of its input as an answer would be a
guess, so a command that needs an answer refuses instead (``--yes``).
"""

from __future__ import annotations

import sys


def interactive() -> bool:
    return sys.stdin.isatty()


def ask(question: str) -> bool:
    """``question`` on the terminal; True for ``y`` or ``yes``, False for anything else and end of input."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")  # Ctrl-C: main's exit 130, nothing done
