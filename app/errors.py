"""The one exception tree of punchclock.

    PunchclockError
     ├── InvalidInput        bad user input (cron, time zone, duration, JSON, names); CLI exit code 2
     │    └── InvalidCron
     ├── NotFound            a schedule or run that does not exist; CLI exit code 2
     └── ConfigurationError  settings that cannot work (bad URL, unreachable service); CLI exit code 1

Every message names the bad value and says how to fix it, e.g.
``invalid cron "61 * * * *": minute must be 0-59``.
"""

from __future__ import annotations


class PunchclockError(Exception):
    """Base of every error punchclock raises on purpose."""


class InvalidInput(PunchclockError):
    """The user gave a value that cannot be accepted; nothing was written."""


class InvalidCron(InvalidInput):
    """A cron expression that does not parse or has a field out of range."""


class NotFound(PunchclockError):
    """A named schedule or a run id that is not in the database."""


class ConfigurationError(PunchclockError):
    """Settings that cannot work, named with the variable to change."""
