"""app.logs: one format for every record of a process (ours and libraries'), each with an ``action``, redacted and
bounded. The root logger is set up as Dramatiq's CLI leaves it (``logging.basicConfig`` on a stream) and put back
afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker

from app.logs import MAX_CHARS, Guard, bounded, configure_logging, derived_action, quiet_root_logging
from app.redaction import register_secret

SECRET = "s3cr3t-t0ken-value"
URL = f"https://oapi.example.com/robot/send?access_token={SECRET}"
PATH_SECRET = "PATHSECRET-888"


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """The root logger with one stream handler, as ``logging.basicConfig`` leaves it in a Dramatiq worker; the
    root and ``app`` loggers are restored afterwards."""
    root, app_logger = logging.getLogger(), logging.getLogger("app")
    saved = (root.handlers[:], root.level, app_logger.handlers[:], app_logger.level, app_logger.propagate)
    stream = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(stream)]
    root.setLevel(logging.DEBUG)
    yield stream
    root.handlers[:], level, app_logger.handlers[:], app_level, app_logger.propagate = saved
    root.setLevel(level)
    app_logger.setLevel(app_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_library_records_come_out_as_ours_with_an_action(root_stream: io.StringIO) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("dramatiq.MainProcess").info("Dramatiq is booting up.")
    logging.getLogger("periodiq").info("Starting Periodiq.")
    logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', URL)
    logging.getLogger("pika.adapters.blocking_connection").warning("Connection workflow failed")
    logging.getLogger().warning("from the root")

    records = lines(root_stream)  # every line is one JSON object
    assert [(r["logger"], r["action"]) for r in records] == [
        ("dramatiq.MainProcess", "dramatiq_log"),
        ("periodiq", "periodiq_log"),
        ("httpx", "httpx_log"),
        ("pika.adapters.blocking_connection", "pika_log"),
        ("root", "root_log"),
    ]
    assert records[2]["message"] == (
        'HTTP Request: GET https://oapi.example.com/robot/send?access_token=*** "HTTP/1.1 200 OK"'
    )
    assert SECRET not in root_stream.getvalue()


def test_text_format_too(root_stream: io.StringIO) -> None:
    configure_logging("INFO", "text")
    logging.getLogger("dramatiq.worker.WorkerThread").warning("Failed on %s", f"https://x.example.com/{PATH_SECRET}")
    (line,) = root_stream.getvalue().splitlines()
    assert line.endswith("WARNING Failed on https://x.example.com/*** action=dramatiq_log")


def test_dramatiqs_skipped_line_is_demoted_to_debug(root_stream: io.StringIO) -> None:
    """RunLifecycle logs why it skips a message; Dramatiq's own "was skipped" warning repeated it for every try of
    every waiting backfill run."""
    configure_logging("INFO", "json")
    worker_thread = logging.getLogger("dramatiq.worker.WorkerThread")
    logging.getLogger().setLevel(logging.INFO)
    worker_thread.warning("Message %s was skipped.", "probe(seconds=1)")
    worker_thread.warning("Failed to process message %s with unhandled exception.", "probe(seconds=1)")
    assert [r["message"] for r in lines(root_stream)] == [
        "Failed to process message probe(seconds=1) with unhandled exception."
    ]

    logging.getLogger().setLevel(logging.DEBUG)
    worker_thread.warning("Message %s was skipped.", "probe(seconds=2)")
    assert [(r["level"], r["message"]) for r in lines(root_stream)][1:] == [
        ("DEBUG", "Message probe(seconds=2) was skipped.")
    ]


def test_dramatiqs_received_line_at_debug_keeps_urls_redacted(root_stream: io.StringIO) -> None:
    """The real ``Actor.__call__`` logs its arguments at DEBUG: a source URL with its token in the query."""
    configure_logging("DEBUG", "json")
    broker = StubBroker()
    fetch = dramatiq.actor(lambda **kwargs: None, actor_name="fetch", broker=broker)
    fetch(source=URL, api_key="sk-live-abcdef", hook=f"https://hooks.example.com/{PATH_SECRET}")

    (received, completed) = lines(root_stream)
    assert str(received["message"]).startswith("Received args=() kwargs=")
    assert "access_token=***" in str(received["message"]) and "'api_key': '***'" in str(received["message"])
    assert str(received["logger"]).endswith(".fetch")  # Dramatiq names an actor's logger after its module
    assert received["action"] == derived_action(str(received["logger"]))
    assert completed["message"] != ""
    for secret in (SECRET, "sk-live-abcdef", PATH_SECRET):
        assert secret not in root_stream.getvalue()


def test_tracebacks_and_extra_fields_are_redacted(root_stream: io.StringIO) -> None:
    configure_logging("INFO", "json")
    register_secret("sk-known-0123456789")
    request = httpx.Request("GET", URL)
    try:
        raise httpx.HTTPStatusError(
            f"Client error '404 Not Found' for url '{URL}'", request=request, response=httpx.Response(404)
        )
    except httpx.HTTPStatusError:
        logging.getLogger("dramatiq.worker.WorkerThread").exception("Failed to process message.")
    logging.getLogger("dramatiq.broker").warning(
        "sent", extra={"action": "notification_sent", "error": "key sk-known-0123456789", "detail": {"url": URL}}
    )

    failed, sent = lines(root_stream)
    assert "access_token=***" in str(failed["exception"]) and "HTTPStatusError" in str(failed["exception"])
    assert (sent["action"], sent["error"], sent["detail"]) == (
        "notification_sent",
        "key ***",
        {"url": "https://oapi.example.com/robot/send?access_token=***"},
    )
    assert SECRET not in root_stream.getvalue()


def test_app_records_keep_their_action_and_go_through_the_guard(
    root_stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("app.clock").info("fired %s", URL, extra={"action": "schedule_fired", "schedule": "s"})
    logging.getLogger("app.clock").info("no action given")
    first, second = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (first["action"], first["schedule"]) == ("schedule_fired", "s")
    assert first["message"] == "fired https://oapi.example.com/robot/send?access_token=***"
    assert second["action"] == "app_log"
    assert root_stream.getvalue() == ""  # the app logger does not propagate: one line per record


def test_a_huge_message_and_field_are_cut_saying_how_much(root_stream: io.StringIO) -> None:
    configure_logging("INFO", "json")
    huge = "x" * 10_000_000
    logging.getLogger("dramatiq").warning("payload %s end", huge, extra={"body": huge + URL})
    (line,) = root_stream.getvalue().splitlines()
    assert len(line) < 3 * MAX_CHARS
    record = json.loads(line)
    message = f"payload {huge} end"
    assert str(record["message"]) == f"{message[:MAX_CHARS]} [… {len(message) - MAX_CHARS:,} characters cut]"
    assert str(record["body"]) == f"{'x' * MAX_CHARS} [… {10_000_000 + len(URL) - MAX_CHARS:,} characters cut]"


def test_bounded() -> None:
    assert bounded("abc", 5) == "abc"
    assert bounded("abcdefgh", 5) == "abcde [… 3 characters cut]"
    assert bounded("abcdefgh", 5, keep="tail") == "[… 3 characters cut] defgh"


@pytest.mark.parametrize(
    ("logger", "action"),
    [("dramatiq.worker.WorkerThread", "dramatiq_log"), ("periodiq", "periodiq_log"), ("httpx", "httpx_log"),
     ("pika", "pika_log"), ("root", "root_log"), ("py.warnings", "py_log")],
)  # fmt: skip
def test_derived_action(logger: str, action: str) -> None:
    assert derived_action(logger) == action


def test_a_process_nobody_set_logging_up_for_gets_a_root_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dramatiq --skip-logging`` and the CLI: no root handler until we add one."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    app_logger = logging.getLogger("app")
    monkeypatch.setattr(app_logger, "handlers", [])
    quiet_root_logging()
    (handler,) = root.handlers
    assert root.level == logging.WARNING and any(isinstance(f, Guard) for f in handler.filters)
    quiet_root_logging()  # idempotent
    assert len(root.handlers) == 1

    monkeypatch.setattr(root, "handlers", [])
    configure_logging("DEBUG", "json")
    (handler,) = root.handlers
    assert root.level == logging.DEBUG and any(isinstance(f, Guard) for f in handler.filters)
