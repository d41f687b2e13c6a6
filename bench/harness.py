"""What the benchmark scripts share: scratch databases, RabbitMQ vhosts and queues, worker processes, the summary.

Imported as ``bench.harness``. The scripts run as ``python bench/x.py``, which puts ``bench/`` on ``sys.path`` and
not the project, so each script adds the project root to ``sys.path`` once before importing this module.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pika  # type: ignore[import-untyped]

from app.db.embedded import embedded_database_url
from app.db.migrate import migrate
from app.db.pool import connect

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
"""The venv's ``bin``: the ``dramatiq``, ``periodiq`` and ``punchclock`` the benches start are the project's own."""
STOP_TIMEOUT_S = 30.0


# -- URLs ----------------------------------------------------------------------------------------------------------


def with_path(url: str, name: str) -> str:
    """``url`` pointing at database or vhost ``name`` (host and unix-socket URLs alike): each bench works in its
    own database and vhost next to the configured ones."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def redact(url: str) -> str:
    """``url`` without user and password, to print which server a bench talks to without leaking the secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


def admin_database_url(configured: str | None) -> str:
    """The server the benches create their scratch databases on: ``PUNCHCLOCK_DATABASE_URL`` when set, otherwise
    an embedded one in ``.punchclock/bench-pgdata`` (apart from the development server's data)."""
    return configured or embedded_database_url(ROOT / ".punchclock" / "bench-pgdata")


async def recreate_database(admin_url: str, database: str, *, track_functions: bool = False) -> None:
    """A fresh, migrated ``database``: no rows or statistics left over from an earlier (perhaps interrupted) run.

    ``track_functions``: count calls of PL/pgSQL functions (``pg_stat_user_functions``); superuser only, and only a
    detail, so a refusal is printed, not raised."""
    await drop_database(admin_url, database)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {database}")
        if track_functions:
            try:
                await admin.execute(f"ALTER DATABASE {database} SET track_functions = 'pl'")
            except asyncpg.InsufficientPrivilegeError:
                print("(not a superuser: no per-function call counts)")
    finally:
        await admin.close()
    conn = await connect(with_path(admin_url, database))
    try:
        await migrate(conn)
    finally:
        await conn.close()


EMPTY_TABLES = "TRUNCATE schedules, runs, run_locks RESTART IDENTITY CASCADE"
"""Empty the scratch database between phases, ids from 1 again. ``CASCADE`` empties whatever references runs and
schedules (run_attempts, notifications, run_steps...), so a migration adding such a table does not break a bench."""


async def drop_database(admin_url: str, database: str) -> None:
    """Drop ``database``, forcing off any connection a crashed worker may have left behind."""
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    finally:
        await admin.close()


# -- RabbitMQ ------------------------------------------------------------------------------------------------------


def ensure_vhost(broker_url: str) -> None:
    """Create the vhost ``broker_url`` names with ``rabbitmqctl`` when the broker refuses it (the usual case: it
    does not exist). A bench's own vhost keeps its queues apart from those of a test run in the default one."""
    try:
        pika.BlockingConnection(pika.URLParameters(broker_url)).close()
        return
    except pika.exceptions.AMQPConnectionError:
        pass
    parts = urlsplit(broker_url)
    vhost = unquote(parts.path[1:])
    user = parts.username or "guest"
    commands = [["rabbitmqctl", "add_vhost", vhost], ["rabbitmqctl", "set_permissions", "-p", vhost, user] + [".*"] * 3]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        shown = "; ".join(" ".join(f"'{part}'" if "*" in part else part for part in command) for command in commands)
        raise SystemExit(f"cannot reach vhost {vhost!r} nor create it ({exc}): run {shown}") from None
    print(f"created the RabbitMQ vhost {vhost!r} (rabbitmqctl add_vhost, set_permissions for {user!r})")


@contextmanager
def amqp_channel(broker_url: str) -> Iterator[Any]:
    """A channel on a connection of its own, closed on exit: the bench's probes never share Dramatiq's."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def queue_length(broker_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not those delivered and not yet acknowledged)."""
    with amqp_channel(broker_url) as channel:
        count: int = channel.queue_declare(queue, passive=True).method.message_count
        return count


def purge_queues(broker_url: str, queues: Iterable[str]) -> None:
    """Empty each of ``queues`` and its delay and dead-letter queues, so a phase starts from nothing."""
    _each_queue(broker_url, queues, "queue_purge")


def delete_queues(broker_url: str, queues: Iterable[str], *, vhost: str | None = None) -> None:
    """Delete each of ``queues`` and its delay and dead-letter queues; one not declared needs nothing.

    ``vhost``: refuse unless ``broker_url`` names it, where the queues share their names with real ones
    (``default``...) that only the bench's own vhost may lose."""
    if vhost is not None:
        assert urlsplit(broker_url).path == f"/{vhost}", f"{redact(broker_url)} is not the bench's vhost {vhost!r}"
    _each_queue(broker_url, queues, "queue_delete")


def _each_queue(broker_url: str, queues: Iterable[str], method: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in queues:
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                try:
                    getattr(channel, method)(name)
                except pika.exceptions.ChannelClosedByBroker:  # not declared: the broker closed the channel
                    channel = connection.channel()
    finally:
        connection.close()


# -- worker processes ----------------------------------------------------------------------------------------------


def dramatiq_command(*modules: str, threads: int) -> list[str]:
    """``dramatiq MODULE... --processes 1 --threads N``: one worker process, so that its CPU and threads are
    what a bench measures."""
    return [str(BIN / "dramatiq"), *modules, "--processes", "1", "--threads", str(threads)]


def start_process(command: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``command`` in the project root, its output in ``log``, in a session of its own: :func:`stop_process` can
    kill its whole group, and a Ctrl-C of the bench does not reach it twice."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(command), cwd=ROOT, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the main process only, as Ctrl-C or ``docker stop`` do: dramatiq forwards it once to its worker
    processes (a second SIGTERM, e.g. to the whole group, interrupts their graceful stop and leaves Dramatiq's
    event loop thread running). Killed, with its group, if it has not stopped within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        name = Path(str(process.args[0] if isinstance(process.args, list) else process.args)).name
        print(f"{name} (pid {process.pid}) did not stop within {timeout:.0f} s of SIGTERM: killed")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


# -- checks and summary --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Checks:
    """Correctness checks, printed as they pass or fail; the failed ones are kept for the summary and the exit
    status (a bench fails on a missing message or run, never on a missed aim)."""

    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``values``, interpolated between the two nearest (PostgreSQL's
    ``percentile_cont``); p95 of 200 timings is between the 190th and the 191st."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    below = math.floor(rank)
    if below == rank:
        return ordered[below]
    return ordered[below] + (rank - below) * (ordered[below + 1] - ordered[below])


def p50_p95(values: Sequence[float]) -> tuple[float, float]:
    return percentile(values, 0.5), percentile(values, 0.95)


async def relation_bytes(conn: asyncpg.Connection[Any], tables: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Per table: (bytes of its heap and TOAST, bytes of its indexes), as ``pg_total_relation_size`` splits them."""
    rows = await conn.fetch(
        "SELECT t, pg_table_size(t::regclass) AS heap, pg_indexes_size(t::regclass) AS indexes"
        " FROM unnest($1::text[]) AS t",
        list(tables),
    )
    return {row["t"]: (row["heap"], row["indexes"]) for row in rows}


def verdict(ok: bool, aim: str = "") -> str:
    """Whether an aim of the issue is met, in the words every summary uses."""
    return ("met" if ok else "NOT met") + (f" (aim {aim})" if aim else "")


def print_summary(rows: Sequence[tuple[str, str, str]]) -> None:
    """The ``== summary`` table: what, value (right-aligned), note; one layout for every bench."""
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    print("\n== summary")
    for what, value, note in rows:
        print(f"{what:<{width}}  {value:>{value_width}}  {note}".rstrip())
