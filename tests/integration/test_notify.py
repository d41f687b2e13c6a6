"""Notifications end to end on a real PostgreSQL, a loopback webhook receiver and a loopback SMTP server
(aiosmtpd): the production client code runs unchanged against real sockets."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from tenacity import wait_none

from app.notify.sender import ATTEMPTS, deliver
from app.notify.store import create_notifications, load_notification, mark_failed
from app.settings import Settings

SCHEDULED_FOR = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
# what each chat service answers to an accepted message
ANSWERS: dict[str, Any] = {
    "slack": "ok",
    "feishu": {"code": 0, "msg": "success", "data": {}},
    "dingtalk": {"errcode": 0, "errmsg": "ok"},
    "wecom": {"errcode": 0, "errmsg": "ok"},
    "webhook": "",
}
# what the "leaky" service answers (HTTP 400): a rejection echoing secrets of every shape
LEAKY_ANSWER = (
    "rejected: token=tok-3a2b1c Authorization: Bearer bearer-9z8y7x"
    " see https://hooks.example.com/services/PATHSECRET-888?key=query-6q5q4q password: pw-1a2b3c"
)
LEAKED = ("tok-3a2b1c", "bearer-9z8y7x", "PATHSECRET-888", "query-6q5q4q", "pw-1a2b3c")


@dataclass
class Receiver:
    """A loopback webhook receiver: records ``(path with query, JSON body)`` of each POST."""

    base: str
    requests: list[tuple[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    requests: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            service = self.path.strip("/").split("/")[0]
            answer = ANSWERS.get(service)
            status = 200 if answer is not None else 400 if service == "leaky" else 404
            answer = LEAKY_ANSWER if service == "leaky" else "no_service" if answer is None else answer
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", requests)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def free_port() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def failed_run(pool: asyncpg.Pool[Any], notify: list[str], *, name: str = "nightly-report") -> int:
    """A schedule with ``notify`` targets and a run of it that failed after 3 attempts; the run id."""
    schedule_id = await pool.fetchval(
        "INSERT INTO schedules (name, actor, cron, notify) VALUES ($1, 'probe', '0 2 * * *', $2) RETURNING id",
        name,
        notify,
    )
    run_id: int = await pool.fetchval(
        """
        INSERT INTO runs (schedule_id, schedule_name, actor, scheduled_for, trigger, state, attempts,
                          started_at, finished_at, error, trace_id)
        VALUES ($1, $2, 'probe', $3, 'cron', 'failed', 3, $4, $5, 'RuntimeError: probe failed', 'trace-abc')
        RETURNING id
        """,
        schedule_id,
        name,
        SCHEDULED_FOR,
        SCHEDULED_FOR,
        SCHEDULED_FOR + timedelta(seconds=90),
    )
    return run_id


async def test_each_webhook_kind_gets_exactly_one_message_with_its_body(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    base = receiver.base
    targets = [
        f"webhook:{base}/webhook/hook",
        f"slack:{base}/slack/services/T1/B1/secretA",
        f"slack:{base}/slack/services/T1/B2/secretB",  # masks like the one above: must still reach its own URL
        f"feishu:{base}/feishu/open-apis/bot/v2/hook/feishu-secret",
        f"dingtalk:{base}/dingtalk/robot/send?access_token=ding-secret",
        f"wecom:{base}/wecom/cgi-bin/webhook/send?key=wecom-secret",
    ]
    run_id = await failed_run(pool, targets)
    ids = await create_notifications(pool, run_id, "failure", targets)
    assert len(ids) == len(targets)
    assert await create_notifications(pool, run_id, "failure", targets) == ids  # a redelivered call adds nothing
    stored = await pool.fetch("SELECT target, state FROM notifications WHERE run_id = $1 ORDER BY id", run_id)
    assert [row["target"] for row in stored] == [
        f"webhook:{base}/***",
        f"slack:{base}/***",
        f"slack:{base}/***",
        f"feishu:{base}/***",
        f"dingtalk:{base}/***?access_token=***",
        f"wecom:{base}/***?key=***",
    ]
    assert {row["state"] for row in stored} == {"pending"}

    caplog.set_level(logging.INFO, logger="app.notify")
    settings = Settings()
    for notification_id in ids:
        await deliver(pool, notification_id, settings=settings, http=http, wait=wait_none())
    for notification_id in ids:  # redelivered messages: the rows are no longer pending, nothing is sent again
        await deliver(pool, notification_id, settings=settings, http=http, wait=wait_none())

    paths = [path for path, _ in receiver.requests]
    assert paths == [
        "/webhook/hook",
        "/slack/services/T1/B1/secretA",
        "/slack/services/T1/B2/secretB",
        "/feishu/open-apis/bot/v2/hook/feishu-secret",
        "/dingtalk/robot/send?access_token=ding-secret",
        "/wecom/cgi-bin/webhook/send?key=wecom-secret",
    ]
    bodies = [body for _, body in receiver.requests]
    text = bodies[1]["text"]
    for needle in ('"nightly-report" failed', f"run id: {run_id}", "state: failed", "attempts: 3", "duration: 1m30s"):
        assert needle in text
    assert "trace id: trace-abc" in text and "error: RuntimeError: probe failed" in text
    assert bodies[0] == {
        "event": "failure",
        "schedule": "nightly-report",
        "run_id": run_id,
        "state": "failed",
        "error": "RuntimeError: probe failed",
        "attempts": 3,
        "duration_seconds": 90.0,
        "trace_id": "trace-abc",
        "scheduled_for": "2026-05-01T02:00:00.000Z",
        "subject": f'[punchclock] schedule "nightly-report" failed: run {run_id}',
        "text": text,
    }
    assert bodies[1:] == [
        {"text": text},
        {"text": text},
        {"msg_type": "text", "content": {"text": text}},
        {"msgtype": "text", "text": {"content": text}},
        {"msgtype": "text", "text": {"content": text}},
    ]

    rows = await pool.fetch("SELECT state, attempts, error, sent_at FROM notifications WHERE run_id = $1", run_id)
    assert all((r["state"], r["attempts"], r["error"]) == ("sent", 1, None) and r["sent_at"] for r in rows)
    sent = [r for r in caplog.records if getattr(r, "action", None) == "notification_sent"]
    assert len(sent) == len(targets)
    assert not any(secret in r.getMessage() for r in caplog.records for secret in ("secretA", "ding-secret"))
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", run_id) == "failed"


async def test_mail_reaches_the_smtp_server(
    pool: asyncpg.Pool[Any], mailbox: tuple[Mailbox, int], http: httpx.AsyncClient
) -> None:
    box, port = mailbox
    target = "mailto:ops@example.com,oncall@example.com"
    run_id = await failed_run(pool, [target])
    [notification_id] = await create_notifications(pool, run_id, "failure", [target])
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_from="punchclock@example.com")

    await deliver(pool, notification_id, settings=settings, http=http, wait=wait_none())

    [(recipients, mail)] = box.messages
    assert recipients == ["ops@example.com", "oncall@example.com"]
    assert mail["Subject"] == f'[punchclock] schedule "nightly-report" failed: run {run_id}'
    assert mail["From"] == "punchclock@example.com"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert f"run id: {run_id}" in body.decode() and "schedule: nightly-report" in body.decode()
    row = await pool.fetchrow("SELECT state, target FROM notifications WHERE id = $1", notification_id)
    assert (row["state"], row["target"]) == ("sent", target)


async def test_a_dead_webhook_is_recorded_failed_without_its_secret(
    pool: asyncpg.Pool[Any], http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"slack:http://127.0.0.1:{free_port()}/services/T1/B1/very-secret-token"
    run_id = await failed_run(pool, [target])
    [notification_id] = await create_notifications(pool, run_id, "failure", [target])
    caplog.set_level(logging.INFO, logger="app.notify")

    await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none())  # does not raise

    row = await pool.fetchrow(
        "SELECT state, attempts, error, sent_at FROM notifications WHERE id = $1", notification_id
    )
    assert (row["state"], row["attempts"], row["sent_at"]) == ("failed", ATTEMPTS, None)
    assert "ConnectError" in row["error"] and "/***" in row["error"]
    assert "very-secret-token" not in row["error"] and "/services" not in row["error"]
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("notification_retrying") == ATTEMPTS - 1
    assert actions.count("notification_failed") == 1
    assert not any(
        "very-secret-token" in r.getMessage() or "very-secret-token" in str(r.__dict__) for r in caplog.records
    )
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", run_id) == "failed"


async def test_permanent_failures_are_not_retried(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient
) -> None:
    targets = [f"wecom:{receiver.base}/unknown/send?key=k", "mailto:ops@example.com"]
    run_id = await failed_run(pool, targets)
    ids = await create_notifications(pool, run_id, "failure", targets)
    for notification_id in ids:  # the receiver answers 404 on /unknown; SMTP is not configured
        await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none())
    rows = await pool.fetch("SELECT state, attempts, error FROM notifications WHERE run_id = $1 ORDER BY id", run_id)
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 1), ("failed", 1)]
    assert rows[0]["error"] == f"wecom:{receiver.base}/***?key=***: HTTP 404: no_service"
    assert rows[1]["error"] == "mailto:ops@example.com: PUNCHCLOCK_SMTP_HOST is not set; set it to send mail"
    assert len(receiver.requests) == 1


async def test_an_entry_removed_from_the_schedule_fails_saying_so(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient
) -> None:
    target = f"webhook:{receiver.base}/webhook/old"
    run_id = await failed_run(pool, [target])
    [notification_id] = await create_notifications(pool, run_id, "recovery", [target])
    await pool.execute("UPDATE schedules SET notify = '{}'")
    notification = await load_notification(pool, notification_id)
    assert (notification.entry, notification.event.event) == (None, "recovery")

    await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none())

    assert receiver.requests == []
    row = await pool.fetchrow("SELECT state, error FROM notifications WHERE id = $1", notification_id)
    assert row["state"] == "failed"
    assert row["error"] == f'webhook:{receiver.base}/***: no longer a notify target of schedule "nightly-report"'

    await pool.execute("DELETE FROM runs")  # its notifications go with it: a late message for one does nothing
    await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none())


async def test_no_login_in_clear_when_starttls_is_wanted(
    pool: asyncpg.Pool[Any], mailbox: tuple[Mailbox, int], http: httpx.AsyncClient
) -> None:
    box, port = mailbox  # aiosmtpd without a TLS context does not offer STARTTLS
    run_id = await failed_run(pool, ["mailto:ops@example.com"])
    [notification_id] = await create_notifications(pool, run_id, "failure", ["mailto:ops@example.com"])
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_user="punchclock", smtp_password="hunter2-pw")

    await deliver(pool, notification_id, settings=settings, http=http, wait=wait_none())

    assert box.messages == []
    row = await pool.fetchrow("SELECT state, attempts, error FROM notifications WHERE id = $1", notification_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert "does not offer STARTTLS" in row["error"] and "hunter2-pw" not in row["error"]


async def test_an_env_target_stores_only_its_name_and_reads_the_url_when_sent(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient
) -> None:
    target = "slack:env:TEST_SLACK_WEBHOOK_URL"
    run_id = await failed_run(pool, [target])
    [notification_id] = await create_notifications(pool, run_id, "failure", [target])
    assert await pool.fetchval("SELECT notify FROM schedules") == [target]  # the schedule: the name only
    assert await pool.fetchval("SELECT target FROM notifications WHERE id = $1", notification_id) == target
    environ = {"TEST_SLACK_WEBHOOK_URL": f"{receiver.base}/slack/services/T1/B1/lowercase-words-secret"}

    await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none(), environ=environ)

    assert [path for path, _ in receiver.requests] == ["/slack/services/T1/B1/lowercase-words-secret"]
    row = await pool.fetchrow("SELECT state, target FROM notifications WHERE id = $1", notification_id)
    assert (row["state"], row["target"]) == ("sent", target)


async def test_an_unset_variable_fails_that_notification_naming_it_and_never_the_run(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient
) -> None:
    targets = ["wecom:env:TEST_WECOM_WEBHOOK_URL", f"webhook:{receiver.base}/webhook/hook"]
    run_id = await failed_run(pool, targets)
    ids = await create_notifications(pool, run_id, "failure", targets)
    for notification_id in ids:
        await deliver(pool, notification_id, settings=Settings(), http=http, wait=wait_none(), environ={})
    rows = await pool.fetch("SELECT state, attempts, error FROM notifications WHERE run_id = $1 ORDER BY id", run_id)
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 0), ("sent", 1)]
    assert rows[0]["error"] == (
        "wecom:env:TEST_WECOM_WEBHOOK_URL: the environment variable TEST_WECOM_WEBHOOK_URL is not set in this"
        " worker; set it to the wecom webhook URL"
    )
    assert await pool.fetchval("SELECT state FROM runs WHERE id = $1", run_id) == "failed"


async def test_notification_errors_are_stored_and_logged_redacted(
    pool: asyncpg.Pool[Any], receiver: Receiver, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The service's answer echoes secrets of every shape; a dead env: target's plain-word path is known."""
    dead = f"http://127.0.0.1:{free_port()}/services/T1/B1/lowercase-words-secret"
    targets = [f"webhook:{receiver.base}/leaky/hook", "slack:env:TEST_DEAD_WEBHOOK_URL"]
    run_id = await failed_run(pool, targets)
    ids = await create_notifications(pool, run_id, "failure", targets)
    caplog.set_level(logging.INFO, logger="app.notify")
    for notification_id in ids:
        await deliver(
            pool,
            notification_id,
            settings=Settings(),
            http=http,
            wait=wait_none(),
            environ={"TEST_DEAD_WEBHOOK_URL": dead},
        )

    leaky, dead_row = await pool.fetch("SELECT error FROM notifications WHERE run_id = $1 ORDER BY id", run_id)
    assert leaky["error"] == (
        f"webhook:{receiver.base}/***: HTTP 400: rejected: token=*** Authorization: Bearer ***"
        " see https://hooks.example.com/services/***?key=*** password: ***"
    )
    assert dead_row["error"].startswith("slack:env:TEST_DEAD_WEBHOOK_URL: ConnectError")
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (*LEAKED, "lowercase-words-secret"):
        assert secret not in leaky["error"] + dead_row["error"]
        assert secret not in logged


async def test_the_notifications_table_never_stores_an_unredacted_error(pool: asyncpg.Pool[Any]) -> None:
    """The last line of defence: whatever a channel forgot to mask, the row gets redacted."""
    run_id = await failed_run(pool, ["webhook:https://hooks.example.com/x"])
    [notification_id] = await create_notifications(pool, run_id, "failure", ["webhook:https://hooks.example.com/x"])
    await mark_failed(pool, notification_id, 1, f"boom: {LEAKY_ANSWER}")
    error = await pool.fetchval("SELECT error FROM notifications WHERE id = $1", notification_id)
    assert error == (
        "boom: rejected: token=*** Authorization: Bearer ***"
        " see https://hooks.example.com/services/***?key=*** password: ***"
    )
