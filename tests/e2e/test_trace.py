"""One trace from the tick to the LLM call, exported over OTLP/HTTP by a real worker to a loopback receiver."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.conftest import purge_queues
from tests.e2e.processes import punchclock, query, wait_for, worker
from tests.e2e.test_workflows import API_KEY
from tests.fakes.openai_server import Answer, FakeOpenAI
from tests.fakes.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def traced(punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path) -> Iterator[tuple[Any, ...]]:
    with OtlpReceiver() as receiver, FakeOpenAI() as llm:
        env = {
            **punchclock_env,
            "PUNCHCLOCK_SCHEDULES_MODULE": "tests.e2e.workflow_schedules",
            "PUNCHCLOCK_OTLP_ENDPOINT": receiver.endpoint,
            "PUNCHCLOCK_LLM_BASE_URL": llm.base_url,
            "PUNCHCLOCK_LLM_MODEL": "brief-model",
            "PUNCHCLOCK_LLM_API_KEY": API_KEY,
        }
        process = worker(env, tmp_path / "worker.log")
        try:
            wait_for(lambda: "Worker process is ready" in process.output(), 60, "the worker to boot")
            yield env, receiver, llm, process
        finally:
            process.stop(signal.SIGKILL)
            purge_queues(clean_queues)


def send_tick(url: str) -> None:
    """What periodiq sends every minute (without its scheduled_at: a tick sent by hand is never dropped)."""
    broker = RabbitmqBroker(url=url, middleware=[])
    try:
        broker.enqueue(dramatiq.Message(queue_name="clock", actor_name="tick", args=(), kwargs={}, options={}))
    finally:
        broker.close()


def test_one_trace_from_the_tick_to_the_llm_call(traced: tuple[Any, ...], sales: str) -> None:
    env, receiver, llm, _ = traced
    url = env["PUNCHCLOCK_DATABASE_URL"]
    llm.enqueue(Answer("Up.\nSuggestion: keep going", input_tokens=50, output_tokens=9))
    args = json.dumps({"workflow": "daily_brief", "source": sales})
    result = punchclock(
        "schedules", "add", "brief", "--actor", "run_workflow", "--cron", "* * * * *", "--args", args, env=env
    )
    assert result.returncode == 0, result.stderr
    query(url, "UPDATE schedules SET next_fire_at = date_trunc('minute', now())")  # due now
    send_tick(env["PUNCHCLOCK_BROKER_URL"])
    run = wait_for(lambda: query(url, "SELECT * FROM runs WHERE state = 'succeeded'"), 60, "the run")[0]

    def complete() -> dict[str, dict[str, Any]] | None:
        spans = {s["name"]: s for s in receiver.spans()}
        wanted = ("tick", "fire brief", "run run_workflow", "step write", "chat brief-model")
        return spans if all(name in spans for name in wanted) else None

    spans = wait_for(complete, 30, "the spans to be exported", interval=0.5)
    tick, fire, attempt = spans["tick"], spans["fire brief"], spans["run run_workflow"]
    step, chat = spans["step write"], spans["chat brief-model"]
    assert len({s["trace_id"] for s in (tick, fire, attempt, step, chat)}) == 1
    assert run["trace_id"] == tick["trace_id"]
    assert fire["parent_span_id"] == tick["span_id"]
    assert attempt["parent_span_id"] == fire["span_id"]
    assert step["parent_span_id"] == attempt["span_id"]
    assert chat["parent_span_id"] == step["span_id"]
    assert chat["attributes"]["gen_ai.request.model"] == "brief-model"
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 50
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == 9
    exported = b"".join(receiver.bodies)
    assert API_KEY.encode() not in exported
    assert b"sales analyst" not in exported and b"Suggestion: keep going" not in exported  # no content by default

    shown = punchclock("runs", "show", str(run["id"]), env=env)
    assert f"http://localhost:16686/trace/{run['trace_id']}" in shown.stdout


def test_a_dependency_run_continues_its_upstreams_trace(traced: tuple[Any, ...]) -> None:
    env, receiver, _, _ = traced
    url = env["PUNCHCLOCK_DATABASE_URL"]
    for args in (
        ("schedules", "add", "upstream", "--actor", "probe", "--cron", "0 0 1 1 *", "--args", '{"output": 1}'),
        ("schedules", "add", "downstream", "--actor", "probe", "--after", "upstream"),
    ):
        assert punchclock(*args, env=env).returncode == 0
    assert punchclock("schedules", "trigger", "upstream", env=env).returncode == 0
    runs = wait_for(
        lambda: (
            (rows := query(url, "SELECT * FROM runs WHERE state = 'succeeded' ORDER BY id")) and len(rows) == 2 and rows
        ),
        60,
        "both runs",
    )
    up, down = runs
    assert down["trigger"] == "dependency" and down["trace_id"] == up["trace_id"]

    def complete() -> list[dict[str, Any]] | None:
        spans = [s for s in receiver.spans() if s["trace_id"] == up["trace_id"]]
        return spans if len([s for s in spans if s["name"] == "run probe"]) == 2 else None

    spans = wait_for(complete, 30, "both run spans to be exported", interval=0.5)
    by_run = {s["attributes"]["punchclock.run_id"]: s for s in spans if s["name"] == "run probe"}
    fire = next(s for s in spans if s["name"] == "fire downstream")
    assert fire["parent_span_id"] == by_run[up["id"]]["span_id"]
    assert by_run[down["id"]]["parent_span_id"] == fire["span_id"]
