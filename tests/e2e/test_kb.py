"""Knowledge bases end to end: a ``dramatiq app.actors`` worker syncs a code knowledge base, runs its reindex
schedule triggered from the CLI, and a workflow searches it; ``punchclock kb search`` finds the document."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import purge_queues
from tests.e2e.processes import punchclock, query, wait_for, worker

pytestmark = pytest.mark.e2e

BILLING = "# Billing\n\nA refund is paid back to the card that paid the invoice within ten working days.\n"
TRAVEL = "# Travel\n\nBook flights through the travel desk at least two weeks ahead.\n"


def cli(env: dict[str, str], *args: str) -> str:
    result = punchclock(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_scheduled_reindex_then_search_from_the_cli_and_a_workflow(
    punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "billing.md").write_text(BILLING, encoding="utf-8")
    (docs / "travel.md").write_text(TRAVEL, encoding="utf-8")
    env = {**punchclock_env, "PUNCHCLOCK_SCHEDULES_MODULE": "tests.e2e.kb_schedules", "TEST_KB_FOLDER": str(docs)}
    url = env["PUNCHCLOCK_DATABASE_URL"]
    process = worker(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: "Worker process is ready" in process.output(), 60, "the worker to boot")
        wait_for(lambda: query(url, "SELECT 1 FROM knowledge_bases WHERE name = 'docs'"), 60, "the kb sync")
        wait_for(lambda: query(url, "SELECT 1 FROM schedules WHERE name = 'docs-reindex'"), 60, "the schedule sync")

        cli(env, "schedules", "trigger", "docs-reindex")
        (run,) = wait_for(
            lambda: query(
                url,
                "SELECT * FROM runs WHERE schedule_name = 'docs-reindex' AND state IN ('succeeded', 'failed')",
            ),
            60,
            "the reindex run to finish",
        )
        assert run["state"] == "succeeded", run["error"]
        report = json.loads(run["output"])
        assert (report["generation"], report["activated"], report["fetched"]) == (1, True, 2)

        hits = json.loads(cli(env, "kb", "search", "docs", "when is my refund paid", "--json"))
        assert hits[0]["source"] == "billing.md"
        shown = cli(env, "kb", "show", "docs")
        assert re.search(r"^active generation:\s+1$", shown, re.M), shown
        assert re.search(rf"^last run:\s+#{run['id']} succeeded at ", shown, re.M), shown

        args = json.dumps({"workflow": "docs_search", "query": "flights travel desk"})
        cli(env, "schedules", "add", "search", "--actor", "run_workflow", "--cron", "0 4 * * *", "--args", args)
        cli(env, "schedules", "trigger", "search")
        (searched,) = wait_for(
            lambda: query(
                url, "SELECT * FROM runs WHERE schedule_name = 'search' AND state IN ('succeeded', 'failed')"
            ),
            60,
            "the workflow run to finish",
        )
        assert searched["state"] == "succeeded", searched["error"]
        assert json.loads(searched["output"])["hits"][0]["source"] == "travel.md"
        steps = query(url, "SELECT name, status FROM run_steps WHERE run_id = $1", searched["id"])
        assert [(s["name"], s["status"]) for s in steps] == [("kb docs", "ok")]
    finally:
        process.stop(signal.SIGKILL)
        purge_queues(clean_queues)
