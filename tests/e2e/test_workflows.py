"""Workflows end to end: ``daily_brief`` and the ``dify`` target run from schedules through the real RabbitMQ
and a ``dramatiq app.actors`` worker, against loopback OpenAI-compatible and Dify servers."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import purge_queues
from tests.e2e.processes import punchclock, query, wait_for, worker
from tests.fakes.dify_server import Fail, FakeDify, Succeed
from tests.fakes.openai_server import Answer, Error, FakeOpenAI, Hang

pytestmark = pytest.mark.e2e
API_KEY = "sk-test-0123456789abcdef"
DIFY_KEY = "app-test-weather-key"


@pytest.fixture
def stack(
    punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], FakeOpenAI, FakeDify]]:
    with FakeOpenAI() as llm, FakeDify(key=DIFY_KEY) as dify:
        env = {
            **punchclock_env,
            "PUNCHCLOCK_SCHEDULES_MODULE": "tests.e2e.workflow_schedules",
            "PUNCHCLOCK_LLM_BASE_URL": llm.base_url,
            "PUNCHCLOCK_LLM_MODEL": "brief-model",
            "PUNCHCLOCK_LLM_API_KEY": API_KEY,
            "PUNCHCLOCK_LLM_TIMEOUT_SECONDS": "1",
            "TEST_DIFY_BASE_URL": dify.base_url,
            "DIFY_WEATHER_KEY": DIFY_KEY,
        }
        process = worker(env, tmp_path / "worker.log")
        try:
            wait_for(lambda: "Worker process is ready" in process.output(), 60, "the worker to boot")
            yield env, llm, dify
        finally:
            process.stop(signal.SIGKILL)
            purge_queues(clean_queues)


def cli(env: dict[str, str], *args: str) -> str:
    result = punchclock(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def finished(url: str, name: str, count: int) -> list[asyncpg.Record]:
    return wait_for(
        lambda: (
            (rows := query(url, "SELECT * FROM runs WHERE schedule_name = $1 ORDER BY id", name))
            and len(rows) == count
            and all(r["state"] in ("succeeded", "failed") for r in rows)
            and rows
        ),
        60,
        f"{count} runs of {name} to finish",
    )


def test_daily_brief_remembers_yesterdays_suggestion(
    stack: tuple[dict[str, str], FakeOpenAI, FakeDify], sales: str
) -> None:
    env, llm, _ = stack
    url = env["PUNCHCLOCK_DATABASE_URL"]
    llm.enqueue(
        Answer("Orders are up.\nSuggestion: call the three biggest accounts", input_tokens=120, output_tokens=30),
        Answer("Still up.\nSuggestion: follow up on yesterday's calls", input_tokens=130, output_tokens=25),
    )
    args = json.dumps({"workflow": "daily_brief", "source": sales})
    cli(
        env,
        "schedules",
        "add",
        "brief",
        "--actor",
        "run_workflow",
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "Asia/Shanghai",
        "--args",
        args,
    )
    cli(env, "schedules", "trigger", "brief")
    first = finished(url, "brief", 1)[0]
    cli(env, "schedules", "trigger", "brief")
    second = finished(url, "brief", 2)[1]

    assert (first["state"], second["state"]) == ("succeeded", "succeeded"), (first["error"], second["error"])
    output = json.loads(first["output"])
    assert output["brief"].startswith("Orders are up.")
    assert output["suggestion"] == "call the three biggest accounts"
    assert (first["input_tokens"], first["output_tokens"]) == (120, 30)
    assert (second["input_tokens"], second["output_tokens"]) == (130, 25)
    # Run 2's prompt holds what run 1 remembered; both held the day's data and the calendar.
    prompts = [r.prompt for r in llm.requests]
    assert "call the three biggest accounts" not in prompts[0]
    assert "Yesterday's suggestion was: call the three biggest accounts" in prompts[1]
    assert '"orders": 42' in prompts[0] and "in China it is" in prompts[0]
    assert llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    steps = query(url, "SELECT name, status FROM run_steps WHERE run_id = $1 ORDER BY seq", first["id"])
    assert [(s["name"], s["status"]) for s in steps] == [
        ("fetch", "ok"),
        ("recall", "ok"),
        ("write", "ok"),
        ("remember", "ok"),
    ]
    for row in query(url, "SELECT error, output::text AS output FROM runs"):
        assert API_KEY not in f"{row['error']} {row['output']}"


def test_dify_schedules_send_their_own_inputs_and_map_the_reply(
    stack: tuple[dict[str, str], FakeOpenAI, FakeDify],
) -> None:
    env, _, dify = stack
    url = env["PUNCHCLOCK_DATABASE_URL"]
    dify.script(
        Succeed(outputs=lambda inputs: {"summary": f"weather in {inputs['city']}"}, total_tokens=77),
        Succeed(outputs=lambda inputs: {"summary": f"weather in {inputs['city']}"}, total_tokens=88),
        Fail("the weather API is down"),
    )
    for name, city, hour in (("weather-beijing", "Beijing", "2"), ("weather-shanghai", "Shanghai", "3")):
        cli(
            env,
            "schedules",
            "add",
            name,
            "--actor",
            "dify",
            "--cron",
            f"0 {hour} * * *",
            "--args",
            json.dumps({"app": "weather", "inputs": {"city": city}}),
        )
    cli(env, "schedules", "trigger", "weather-beijing")
    beijing = finished(url, "weather-beijing", 1)[0]
    cli(env, "schedules", "trigger", "weather-shanghai")
    shanghai = finished(url, "weather-shanghai", 1)[0]
    cli(env, "schedules", "trigger", "weather-beijing")
    failed = finished(url, "weather-beijing", 2)[1]

    assert [(r.inputs, r.user) for r in dify.requests] == [
        ({"city": "Beijing"}, "weather-beijing"),
        ({"city": "Shanghai"}, "weather-shanghai"),
        ({"city": "Beijing"}, "weather-beijing"),
    ]
    out = json.loads(beijing["output"])
    assert out["outputs"] == {"summary": "weather in Beijing"} and out["status"] == "succeeded"
    assert out["total_tokens"] == 77 and out["workflow_run_id"] == dify.answers[0][1]["workflow_run_id"]
    assert json.loads(shanghai["output"])["outputs"] == {"summary": "weather in Shanghai"}
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert "the weather API is down" in failed["error"]
    assert DIFY_KEY not in failed["error"]


def test_an_llm_400_fails_at_once_and_a_hanging_llm_is_retried_by_policy(
    stack: tuple[dict[str, str], FakeOpenAI, FakeDify],
) -> None:
    env, llm, _ = stack
    url = env["PUNCHCLOCK_DATABASE_URL"]
    args = json.dumps({"workflow": "daily_brief"})
    cli(env, "schedules", "add", "brief-400", "--actor", "run_workflow", "--cron", "0 9 * * *", "--args", args)
    llm.enqueue(Error(400, 'model "brief-model" does not exist'))
    cli(env, "schedules", "trigger", "brief-400")
    bad = finished(url, "brief-400", 1)[0]
    assert (bad["state"], bad["attempts"]) == ("failed", 1)
    assert 'LLM answered 400 Bad Request: model "brief-model" does not exist' in bad["error"]

    # Every request hangs past the 1 s timeout: the client's own tries time out, the run is retried once by
    # its schedule (max_retries 1), then fails; each attempt recorded as transient.
    cli(
        env,
        "schedules",
        "add",
        "brief-hang",
        "--actor",
        "run_workflow",
        "--cron",
        "0 9 * * *",
        "--args",
        args,
        "--max-retries",
        "1",
        "--min-backoff",
        "100ms",
        "--max-backoff",
        "200ms",
    )
    llm.respond = lambda request: Hang(5)
    cli(env, "schedules", "trigger", "brief-hang")
    hung = finished(url, "brief-hang", 1)[0]
    assert (hung["state"], hung["attempts"]) == ("failed", 2)
    attempts = query(url, "SELECT state, error FROM run_attempts WHERE run_id = $1 ORDER BY attempt", hung["id"])
    assert [a["state"] for a in attempts] == ["retrying", "failed"]
    assert all("TransientError" in a["error"] for a in attempts)
