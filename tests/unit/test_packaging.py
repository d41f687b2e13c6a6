"""The embedded PostgreSQL is an extra: the image and a plain ``pip install punchclock`` go without pgserver (an
x86_64-only wheel whose binaries a deployment never uses), ``make dev`` and ``make test`` install it, and a
process that needs it without it says which extra to install. Docker does not run here: these read the files."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def pip_installs(text: str) -> list[list[str]]:
    """The argument lists of every ``pip install`` in ``text`` (continuation lines joined, ``&&`` split)."""
    joined = text.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in joined.splitlines():
        for part in re.split(r"&&|;", line):
            words = shlex.split(part.removeprefix("RUN").strip()) if "pip" in part else []
            for at, word in enumerate(words):
                if word == "pip" and words[at + 1 : at + 2] == ["install"]:
                    commands.append(words[at + 2 :])
    return commands


def test_the_base_dependencies_do_not_pull_pgserver() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert "pgserver" not in requirement_names(project["dependencies"])
    assert "pgserver" in requirement_names(project["optional-dependencies"]["embedded"])


def test_the_dockerfile_installs_without_the_embedded_extra() -> None:
    installs = pip_installs((ROOT / "Dockerfile").read_text())
    assert installs, "no pip install in the Dockerfile"
    for arguments in installs:
        assert not any("embedded" in argument or "pgserver" in argument for argument in arguments), arguments


def test_make_installs_the_embedded_extra() -> None:
    installs = pip_installs((ROOT / "Makefile").read_text())
    assert any("-e" in arguments and ".[dev,embedded]" in arguments for arguments in installs), installs


def test_without_pgserver_the_error_names_the_extra(tmp_path: Path) -> None:
    # pgserver is installed here: the child process makes its import fail, as on a host without the extra.
    script = (
        "import sys; sys.modules['pgserver'] = None; sys.modules['pgserver.postgres_server'] = None\n"
        "from app.cli.main import main; sys.exit(main(['migrate']))"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PUNCHCLOCK_")}
    env["PUNCHCLOCK_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "pip install 'punchclock[embedded]'" in done.stderr
    assert "PUNCHCLOCK_DATABASE_URL" in done.stderr
    assert not (tmp_path / "pgdata").exists()  # nothing was created on the way
