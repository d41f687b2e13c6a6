"""The README's "Add an actor and a schedule" and "AI workflows" examples, run as written.

The code blocks that name their file in a first comment (``# actors/greet.py``, ``# schedules.py, in
SCHEDULES``) are written into a scratch copy of the project: actor modules as new files, schedule entries into
the ``SCHEDULES`` list. The copy must pass the project's ruff check and format; then a real ``dramatiq
app.actors`` worker boots in it (syncing its ``schedules.py``), the CLI triggers both schedules, and the runs'
outputs, steps and the prompts the loopback LLM received are checked. A README edit that breaks an example, or a
change that makes adding an actor touch a second file, fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import purge_queues
from tests.e2e.processes import BIN, Process, punchclock, query, wait_for, worker
from tests.fakes.openai_server import Answer, FakeOpenAI
from tests.services import ROOT

pytestmark = pytest.mark.e2e
BLOCK = re.compile(
    r"^```python\n# (?P<target>actors/\w+\.py|schedules\.py, in SCHEDULES)\n(?P<code>.*?)^```", re.M | re.S
)
MAX_ACTOR_LINES = 20  # what a developer writes to get locks, backoff, timeouts, alerts, tracing and history


def readme_blocks() -> list[tuple[str, str]]:
    """(target, code) of each README block that names its file, in order."""
    return [(m["target"], m["code"]) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def scratch_project(into: Path) -> Path:
    """A copy of the project with the README's examples applied as a developer would apply them."""
    project = into / "project"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("app", "actors"):
        shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    for file in ("schedules.py", "pyproject.toml"):
        shutil.copy(ROOT / file, project / file)
    entries = []
    for target, code in readme_blocks():
        if target.startswith("actors/"):
            assert not (project / target).exists(), f"the README's {target} would overwrite a shipped module"
            (project / target).write_text(f"# {target}\n{code}")
        else:
            entries.append("".join(f"    {line}" if line.strip() else line for line in code.splitlines(True)))
    schedules = project / "schedules.py"
    text = schedules.read_text()
    assert text.endswith("\n]\n"), "schedules.py must end with the SCHEDULES list, where the README adds entries"
    schedules.write_text(text[: -len("]\n")] + "".join(entries) + "]\n")
    return project


def ruff(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ruff"), *args], cwd=project, capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return scratch_project(tmp_path)


def test_the_readme_shows_an_actor_a_workflow_and_their_schedules() -> None:
    targets = [target for target, _ in readme_blocks()]
    assert targets == [
        "actors/greet.py",
        "schedules.py, in SCHEDULES",
        "actors/report.py",
        "schedules.py, in SCHEDULES",
    ]
    actor = readme_blocks()[0][1]
    assert len(actor.splitlines()) + 1 <= MAX_ACTOR_LINES


def test_the_examples_pass_the_projects_lint_as_pasted(project: Path) -> None:
    files = ["actors", "schedules.py"]
    check = ruff(project, "check", *files)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff(project, "format", "--check", *files)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.fixture
def stack(
    project: Path, punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], FakeOpenAI]]:
    """A worker booted in the scratch project (its app/, actors/ and schedules.py come first on the path)."""
    with FakeOpenAI() as llm:
        env = {
            **punchclock_env,
            "PYTHONPATH": str(project),
            "PUNCHCLOCK_SCHEDULES_MODULE": "schedules",
            "PUNCHCLOCK_LLM_BASE_URL": llm.base_url,
            "PUNCHCLOCK_LLM_MODEL": "report-model",
        }
        process: Process = worker(env, tmp_path / "worker.log", cwd=project)
        try:
            wait_for(lambda: "Worker process is ready" in process.output(), 60, "the worker to boot")
            yield env, llm
        finally:
            process.stop(signal.SIGKILL)
            purge_queues(clean_queues)


def trigger(env: dict[str, str], project: Path, *args: str) -> asyncpg.Record:
    """Trigger a schedule through the CLI (run from the scratch project) and wait for its run to finish."""
    url = env["PUNCHCLOCK_DATABASE_URL"]
    before = query(url, "SELECT coalesce(max(id), 0) AS id FROM runs")[0]["id"]
    result = punchclock("schedules", "trigger", *args, env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    return wait_for(
        lambda: (
            (rows := query(url, "SELECT * FROM runs WHERE id > $1", before))
            and rows[0]["finished_at"] is not None
            and rows[0]
        ),
        60,
        f"the run of {args[0]} to finish",
    )


def test_the_examples_run_as_written(project: Path, stack: tuple[dict[str, str], FakeOpenAI], sales: str) -> None:
    env, llm = stack
    url = env["PUNCHCLOCK_DATABASE_URL"]
    synced = {row["name"]: row for row in query(url, "SELECT name, actor, timezone FROM schedules")}
    assert synced["morning-greeting"]["actor"] == "greet"
    assert synced["morning-greeting"]["timezone"] == "Europe/London"
    assert synced["weekly"]["actor"] == "run_workflow"

    greeting = trigger(env, project, "morning-greeting")
    assert greeting["state"] == "succeeded", greeting["error"]
    assert json.loads(greeting["output"]) == {"greeting": "Hello, team"}

    llm.enqueue(Answer("Orders are up: call the big accounts"), Answer("Still up: follow up"))
    args = json.dumps({"workflow": "weekly_report", "source": sales})
    first = trigger(env, project, "weekly", "--args", args)
    assert first["state"] == "succeeded", first["error"]
    assert json.loads(first["output"]) == {"report": "Orders are up: call the big accounts"}
    second = trigger(env, project, "weekly", "--args", args)
    assert json.loads(second["output"]) == {"report": "Still up: follow up"}
    prompts = [request.prompt for request in llm.requests]
    assert "'orders': 42" in prompts[0] and prompts[0].endswith("before: None")
    assert prompts[1].endswith("before: Orders are up: call the big accounts")  # ctx.memory kept it
    steps = query(url, "SELECT name, status FROM run_steps WHERE run_id = $1 ORDER BY seq", first["id"])
    assert [(s["name"], s["status"]) for s in steps] == [("fetch", "ok")]


def test_the_scratch_worker_loads_the_scratch_project(project: Path) -> None:
    """The worker in the test above must run the copy, or it proves nothing about the README: the same
    interpreter with the same PYTHONPATH imports app and actors from the scratch project."""
    probe = "import actors, app; print(actors.__file__); print(app.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert [Path(line).parent.parent for line in found.stdout.splitlines()] == [project, project]


# The CLI section ----------------------------------------------------------------------------------------------

RUN_ID = "42"  # the README's example run id; the test points it at the manual run the sequence triggered


def readme_cli_commands() -> list[list[str]]:
    """The commands of the README's CLI block, continuation lines joined and comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## CLI\n.*?^```sh\n(?P<code>.*?)^```", text, re.M | re.S)
    assert block, "the README has a CLI section with a sh block"
    joined = block["code"].replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def test_the_cli_sequence_runs_top_to_bottom(punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path) -> None:
    commands = readme_cli_commands()
    assert all(words[0] == "punchclock" for words in commands)
    assert commands[-1] == ["punchclock", "dev"]  # runs until Ctrl-C: tests/e2e/test_dev.py covers it
    url = punchclock_env["PUNCHCLOCK_DATABASE_URL"]
    manual: int | None = None
    for words in commands[:-1]:
        args = [str(manual) if word == RUN_ID and manual is not None else word for word in words[1:]]
        # `db status|stop` act on the embedded PostgreSQL: an empty data directory of this test's, never the
        # project's (the test database lives in the project's .punchclock/)
        env = {**punchclock_env, "PUNCHCLOCK_DATA_DIR": str(tmp_path)} if args[0] == "db" else punchclock_env
        result = punchclock(*args, env=env)
        assert result.returncode == 0, f"{shlex.join(words)}: {result.stderr}"
        if manual is None and args[:2] == ["schedules", "trigger"]:
            manual = query(url, "SELECT min(id) AS id FROM runs WHERE trigger = 'manual'")[0]["id"]
    assert manual is not None, "the sequence triggers a run before it shows one"
    assert query(url, "SELECT state FROM runs WHERE id = $1", manual)[0]["state"] == "cancelled"
