"""``punchclock``: the command line. Parses, reads the settings once, dispatches, maps errors to exit codes.

Exit codes: 0 ok; 2 bad input (a value rejected, a schedule or run not found, a usage error); 1 any other
failure (settings that cannot work, PostgreSQL or RabbitMQ unreachable); 141 the reader of its output went away
(``punchclock runs list | head``), quietly, as a process killed by SIGPIPE. Errors go to stderr as
``punchclock: error: <message>``, redacted (:func:`app.redaction.redact`, the settings' secrets registered as
soon as they are read).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace

from app.broker import MEMORY_BROKER
from app.cli import db, kb, runs, schedules, stats
from app.cli.database import Database, run_with_database
from app.dev_lock import dev_pid
from app.errors import InvalidInput, NotFound, PunchclockError
from app.logs import quiet_root_logging
from app.redaction import redact, register_settings
from app.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]

# 128 + SIGPIPE: what a shell reports for a writer whose reader went away (`yes | head`), so `set -o pipefail`
# scripts see from punchclock what they see from any other command.
EXIT_READER_GONE = 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="punchclock", description="Scheduled AI workflows on Dramatiq, RabbitMQ and PostgreSQL."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(handler=migrate_command)
    schedules.register(commands.add_parser("schedules", help="add, list, show, pause, trigger … schedules"))
    runs.register(commands.add_parser("runs", help="the run history; cancel or retry a run"))
    stats.register(commands.add_parser("stats", help="per schedule: runs by state, success rate, p50/p95 duration"))
    kb.register(commands.add_parser("kb", help="knowledge bases: list, show, reindex, search, generations, rollback"))
    db.register(commands.add_parser("db", help="the embedded PostgreSQL: status, stop"))
    commands.add_parser(
        "dev", help="the whole stack in one process: embedded PostgreSQL, in-memory broker, a ticker"
    ).set_defaults(handler=dev_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Like `dramatiq app.actors` and `periodiq app.actors` (whose --path defaults to "."), find the project's
    # schedules and actors modules from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    quiet_root_logging()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    try:
        code = handler(args, cli_settings())
        sys.stdout.flush()  # here, where a reader gone away is caught, rather than at the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (InvalidInput, NotFound) as exc:
        return _fail(exc, 2)
    except PunchclockError as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt:
        return 130


def cli_settings() -> Settings:
    """The environment's settings; while ``punchclock dev`` runs on this data directory and no broker is set
    explicitly, the in-memory broker, so a triggered run is left for dev's ticker rather than sent to a
    RabbitMQ that no dev worker reads."""
    settings = Settings.from_env()
    register_settings(settings)
    if "PUNCHCLOCK_BROKER_URL" not in os.environ and dev_pid(settings.data_dir) is not None:
        return replace(settings, broker_url=MEMORY_BROKER)
    return settings


def _reader_gone() -> int:
    """The reader of stdout closed it (``| head``): what it did not read is not wanted, and is no error. Python
    would print a traceback, and flushing stdout at exit would fail again: point stdout at /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (a test's capture): nothing will flush it at exit
        pass
    return EXIT_READER_GONE


def _fail(error: Exception, code: int) -> int:
    print(f"punchclock: error: {redact(str(error))}", file=sys.stderr)
    return code


def migrate_command(args: argparse.Namespace, settings: Settings) -> int:
    async def applied(db: Database) -> list[str]:
        return db.migrated  # the session migrates before any command runs

    names = run_with_database(settings, applied, create=True)
    for name in names:
        print(f"applied {name}")
    print(f"applied {len(names)} migration(s)" if names else "database is up to date")
    return 0


def dev_command(args: argparse.Namespace, settings: Settings) -> int:
    from app.dev import run_dev  # reads its own settings: it forces the in-memory broker

    return run_dev()
