"""The CLI and the embedded PostgreSQL as a newcomer meets them: the same database from any folder, never a new
one made by a read command, the database in use named on stderr, and ``punchclock db status|stop``.

The real console script, run with no ``PUNCHCLOCK_DATABASE_URL``: these tests start embedded servers of their
own in temporary data directories (never the tests' shared one) and stop them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db.embedded import running_server, stop_server
from tests.services import ROOT

PUNCHCLOCK = Path(sys.executable).parent / "punchclock"


def punchclock(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("PUNCHCLOCK_")}
    return subprocess.run(
        [str(PUNCHCLOCK), *args],
        cwd=cwd,
        env={**clean, "PUNCHCLOCK_SCHEDULES_MODULE": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory of this test's own; its server, if the test started one, stopped afterwards."""
    path = tmp_path / "data"
    yield path
    stop_server(path / "pgdata")


def test_a_read_command_where_there_is_no_database_creates_none(tmp_path: Path) -> None:
    # Outside any checkout, with no PUNCHCLOCK_DATA_DIR: the per-user place, which holds no database yet.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    for command in (("runs", "show", "1"), ("runs", "list", "--json"), ("schedules", "list")):
        done = punchclock(*command, cwd=elsewhere, env=env)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert done.stdout == "", command
        assert f"no embedded database in {tmp_path / 'xdg' / 'punchclock' / 'pgdata'}" in done.stderr, done.stderr
        assert "punchclock migrate" in done.stderr and "make dev" in done.stderr, done.stderr
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "xdg" / "punchclock" / "pgdata").exists()


def test_from_a_subfolder_of_the_project_the_projects_data_directory(tmp_path: Path) -> None:
    done = punchclock("db", "status", cwd=ROOT / "actors", env={})
    assert done.returncode == 0, done.stderr
    assert f"data directory  {ROOT / '.punchclock'}\n" in done.stdout, done.stdout


def test_migrate_creates_the_database_commands_name_it_and_db_stop_stops_it(data_dir: Path, tmp_path: Path) -> None:
    env = {"PUNCHCLOCK_DATA_DIR": str(data_dir)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = punchclock("db", "status", cwd=elsewhere, env=env)
    assert "database        none yet" in status.stdout and "server          stopped" in status.stdout, status.stdout

    migrated = punchclock("migrate", cwd=elsewhere, env=env)
    assert migrated.returncode == 0, migrated.stderr
    pgdata = (data_dir / "pgdata").resolve()
    assert f"punchclock: embedded PostgreSQL in {pgdata}" in migrated.stderr

    # the same database from another folder; --json stdout stays JSON, the database is named on stderr
    listed = punchclock("runs", "list", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert f"embedded PostgreSQL in {pgdata}" in listed.stderr

    server = running_server(pgdata)
    assert server is not None  # it outlived the commands
    status = punchclock("db", "status", cwd=elsewhere, env=env)
    assert f"server          running, pid {server.pid}" in status.stdout, status.stdout

    stopped = punchclock("db", "stop", cwd=elsewhere, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded PostgreSQL in {pgdata} (pid {server.pid})" in stopped.stdout
    assert running_server(pgdata) is None
    again = punchclock("db", "stop", cwd=elsewhere, env=env)
    assert "is not running" in again.stdout, again.stdout

    # the next command that needs it starts it again, with the data kept
    listed = punchclock("runs", "list", "--json", cwd=elsewhere, env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert running_server(pgdata) is not None
