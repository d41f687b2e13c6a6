"""Secrets and log format end to end: a real ``dramatiq app.actors`` worker with JSON logs at DEBUG, exporting
spans to a loopback OTLP receiver, runs probes whose arguments, errors and outputs carry secrets of every shape.
Every line it writes is one JSON object with an ``action``; no secret reaches a line, a span or a row."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import purge_queues
from tests.e2e.processes import BIN, Process, punchclock, query, wait_for
from tests.fakes.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-known-0123456789"  # PUNCHCLOCK_LLM_API_KEY: a known secret of the worker
PATH_SECRET = "PATHSECRET-888"  # a token in a URL path
QUERY_SECRET = "QUERYSECRET-777"  # a token in a URL query
SECRETS = (API_KEY, PATH_SECRET, QUERY_SECRET)
YEARLY = "0 0 1 1 *"


@pytest.fixture
def service() -> Iterator[str]:
    """A loopback HTTP server answering every GET with 404 (so a probe fetching it fails naming the URL)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def json_worker(
    punchclock_env: dict[str, str], clean_queues: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Process, OtlpReceiver]]:
    """``dramatiq app.actors --skip-logging``: without Dramatiq's own ``basicConfig`` its supervisor process, which
    never imports app.actors, writes nothing at INFO, and the worker process's root handler is ours."""
    with OtlpReceiver() as receiver:
        env = {
            **punchclock_env,
            "PUNCHCLOCK_LOG_FORMAT": "json",
            "PUNCHCLOCK_LOG_LEVEL": "DEBUG",
            "PUNCHCLOCK_LLM_API_KEY": API_KEY,
            "PUNCHCLOCK_OTLP_ENDPOINT": receiver.endpoint,
        }
        args = [str(BIN / "dramatiq"), "app.actors", "--processes", "1", "--threads", "2", "--skip-logging"]
        process = Process(args, env, tmp_path / "worker.log")
        try:
            wait_for(lambda: "Worker process is ready" in process.output(), 60, "the worker to boot")
            yield env, process, receiver
        finally:
            process.stop(signal.SIGKILL)
            purge_queues(clean_queues)


def cli(env: dict[str, str], *args: str) -> str:
    result = punchclock(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_line_is_json_with_an_action_and_no_secret_reaches_a_line_a_span_or_a_row(
    json_worker: tuple[dict[str, str], Process, OtlpReceiver], service: str
) -> None:
    env, process, receiver = json_worker
    url = env["PUNCHCLOCK_DATABASE_URL"]
    leaky_url = f"{service}/hooks/{PATH_SECRET}?token={QUERY_SECRET}"
    output = {"leak": f"key {API_KEY}", "link": "https://files.example.com/r?token=keep-me"}
    cli(
        env, "schedules", "add", "fetch", "--actor", "probe", "--cron", YEARLY, "--args", json.dumps({"url": leaky_url})
    )
    cli(
        env,
        "schedules",
        "add",
        "answer",
        "--actor",
        "probe",
        "--cron",
        YEARLY,
        "--args",
        json.dumps({"output": output}),
    )
    cli(env, "schedules", "trigger", "fetch")
    cli(env, "schedules", "trigger", "answer")
    runs = wait_for(
        lambda: (
            (rows := query(url, "SELECT * FROM runs WHERE state IN ('failed', 'succeeded') ORDER BY schedule_name"))
            and len(rows) == 2
            and rows
        ),
        60,
        "both runs to finish",
    )
    answer, fetch = runs
    receiver.wait_for(lambda spans: sum(s["name"] == "run probe" for s in spans) == 2, timeout=30)
    assert process.stop(signal.SIGTERM) == 0  # a clean shutdown writes its lines too

    # rows: the run's and the attempt's error, and the output
    expected_url = f"{service}/hooks/***?token=***"
    assert fetch["state"] == "failed" and expected_url in fetch["error"], fetch["error"]
    (attempt,) = query(url, "SELECT error FROM run_attempts WHERE run_id = $1", fetch["id"])
    assert expected_url in attempt["error"]
    assert json.loads(answer["output"]) == {"leak": "key ***", "link": output["link"]}  # the output's own link stays

    # every line: one JSON object with an action; the DEBUG line with the probe's arguments among them
    lines = process.output().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all(isinstance(r, dict) and r.get("action") for r in records), [r for r in records if not r.get("action")]
    actions = {r["action"] for r in records}
    assert {"dramatiq_log", "run_started", "run_failed", "run_succeeded"} <= actions, actions
    received = [r for r in records if str(r["message"]).startswith("Received args=")]
    assert any(f"{expected_url}'" in str(r["message"]) for r in received), received

    # nowhere a secret: log lines, exported spans, rows
    exported = b"".join(receiver.bodies)
    for secret in SECRETS:
        assert secret not in process.output()
        assert secret.encode() not in exported
        for row in (fetch, answer):
            assert secret not in f"{row['error']} {row['output']}"
    run_span = next(s for s in receiver.by_name("run probe") if s["status"]["code"] == "ERROR")
    assert expected_url in run_span["status"]["message"]
