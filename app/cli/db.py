"""``punchclock db status|stop``: the embedded PostgreSQL of the data directory, which outlives the commands.

The first punchclock process that needs the embedded database starts its server, and nothing stops it after
(app/db/embedded.py): a CLI call must never pull it out from under ``punchclock dev`` or a worker. ``db stop``
is how it ends; the next command that needs it starts it again. Neither command starts or creates anything.
"""

from __future__ import annotations

import argparse

from app.db.embedded import initialised, running_server, stop_server
from app.dev_lock import dev_pid
from app.errors import ConfigurationError
from app.settings import Settings


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    commands.add_parser(
        "status", help="where the embedded database is, whether it exists, whether its server and dev run"
    ).set_defaults(handler=status_command)
    commands.add_parser(
        "stop", help="stop the embedded PostgreSQL server (it keeps running after commands until then)"
    ).set_defaults(handler=stop_command)


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    pgdata = settings.pgdata
    server = running_server(pgdata)
    dev = dev_pid(settings.data_dir)
    print(f"data directory  {settings.data_dir}")
    if not initialised(pgdata):
        print(f"database        none yet in {pgdata} (punchclock migrate or make dev creates it)")
    else:
        print(f"database        {pgdata}")
    if server is None:
        print("server          stopped (the next command that needs it starts it)")
    else:
        # pgserver listens on a unix socket only; the port just names it
        where = f"socket {server.socket_dir}/.s.PGSQL.{server.port}" if server.socket_dir else f"port {server.port}"
        print(f"server          running, pid {server.pid}, {where} (punchclock db stop stops it)")
    print(f"punchclock dev  {'running, pid ' + str(dev) if dev is not None else 'not running'}")
    if settings.database_url:
        print("note            PUNCHCLOCK_DATABASE_URL is set: commands use that database, not this one")
    return 0


def stop_command(args: argparse.Namespace, settings: Settings) -> int:
    pgdata = settings.pgdata
    dev = dev_pid(settings.data_dir)
    if dev is not None:
        raise ConfigurationError(
            f"punchclock dev (pid {dev}) is using the embedded PostgreSQL in {pgdata}: stop dev first (Ctrl-C in"
            f" its terminal, or kill {dev})"
        )
    stopped = stop_server(pgdata)
    if stopped is None:
        print(f"the embedded PostgreSQL in {pgdata} is not running")
    else:
        print(f"stopped the embedded PostgreSQL in {pgdata} (pid {stopped.pid})")
    return 0
