"""Notify targets, message bodies and the services' answers: pure functions and ``httpx.MockTransport``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.errors import InvalidInput
from app.notify.bodies import RunEvent, message_text, webhook_body
from app.notify.delivery_error import DeliveryError
from app.notify.targets import Target, TargetKind, parse_target
from app.notify.webhook import post_webhook
from app.redaction import MASK, redact
from app.schedule import Schedule

EVENT = RunEvent(
    schedule="nightly-report",
    run_id=42,
    state="failed",
    error="ValueError: boom",
    attempts=3,
    duration_seconds=12.5,
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    scheduled_for=datetime(2024, 5, 1, 2, 0, tzinfo=UTC),
    event="failure",
)
SLACK = "https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX"
DINGTALK = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef"


def test_message_text_names_everything() -> None:
    subject, text = message_text(EVENT)
    assert subject == '[punchclock] schedule "nightly-report" failed: run 42'
    assert text.splitlines() == [
        'punchclock: schedule "nightly-report" failed: run 42',
        "schedule: nightly-report",
        "run id: 42",
        "state: failed",
        "attempts: 3",
        "duration: 12s500ms",
        "scheduled for: 2024-05-01T02:00:00Z",
        "trace id: 4bf92f3577b34da6a3ce929d0e0e4736",
        "error: ValueError: boom",
    ]


def test_message_text_for_timeouts_recoveries_and_long_errors() -> None:
    timed_out = RunEvent(**{**EVENT.__dict__, "state": "timed_out", "duration_seconds": None, "trace_id": None})
    subject, text = message_text(timed_out)
    assert subject == '[punchclock] schedule "nightly-report" timed out: run 42'
    assert "duration: n/a" in text and "trace id: none" in text
    recovered = RunEvent(**{**EVENT.__dict__, "state": "succeeded", "error": None, "event": "recovery"})
    assert message_text(recovered)[0] == '[punchclock] schedule "nightly-report" recovered: run 42 succeeded'
    long_error = RunEvent(**{**EVENT.__dict__, "error": "x" * 5000})
    text = message_text(long_error)[1]
    assert "x" * 500 + "…" in text and "x" * 501 not in text
    # WeCom rejects a text above 2048 bytes
    assert len(webhook_body(TargetKind.WECOM, long_error)["text"]["content"].encode()) <= 2048


def test_webhook_bodies() -> None:
    _, text = message_text(EVENT)
    assert webhook_body(TargetKind.WEBHOOK, EVENT) == {
        "event": "failure",
        "schedule": "nightly-report",
        "run_id": 42,
        "state": "failed",
        "error": "ValueError: boom",
        "attempts": 3,
        "duration_seconds": 12.5,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "scheduled_for": "2024-05-01T02:00:00.000Z",
        "subject": '[punchclock] schedule "nightly-report" failed: run 42',
        "text": text,
    }
    assert webhook_body(TargetKind.SLACK, EVENT) == {"text": text}
    assert webhook_body(TargetKind.FEISHU, EVENT) == {"msg_type": "text", "content": {"text": text}}
    assert webhook_body(TargetKind.DINGTALK, EVENT) == {"msgtype": "text", "text": {"content": text}}
    assert webhook_body(TargetKind.WECOM, EVENT) == {"msgtype": "text", "text": {"content": text}}
    with pytest.raises(ValueError, match="mailto"):
        webhook_body(TargetKind.MAILTO, EVENT)


def test_slack_text_is_escaped() -> None:
    event = RunEvent(**{**EVENT.__dict__, "error": "a < b && c > d"})
    assert "error: a &lt; b &amp;&amp; c &gt; d" in webhook_body(TargetKind.SLACK, event)["text"]


@pytest.mark.parametrize(
    ("entry", "kind", "masked"),
    [
        (f"slack:{SLACK}", TargetKind.SLACK, "slack:https://hooks.slack.com/***"),
        (f"dingtalk:{DINGTALK}", TargetKind.DINGTALK, "dingtalk:https://oapi.dingtalk.com/***?access_token=***"),
        (
            "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
            TargetKind.WECOM,
            "wecom:https://qyapi.weixin.qq.com/***?key=***",
        ),
        (
            "feishu:https://open.feishu.cn/open-apis/bot/v2/hook/1b7c0c7e-xxxx",
            TargetKind.FEISHU,
            "feishu:https://open.feishu.cn/***",
        ),
        (
            "webhook:http://user:secret@127.0.0.1:8080/hook/abc",
            TargetKind.WEBHOOK,
            "webhook:http://user:***@127.0.0.1:8080/***",
        ),
        ("webhook:https://example.com", TargetKind.WEBHOOK, "webhook:https://example.com"),
        (" MailTo: a@b.co , ops@example.com ", TargetKind.MAILTO, "mailto:a@b.co,ops@example.com"),
    ],
)
def test_parse_and_mask(entry: str, kind: TargetKind, masked: str) -> None:
    target = parse_target(entry)
    assert target.kind is kind
    assert target.masked == masked
    assert parse_target(target.entry) == target  # the normalised entry parses to itself


def test_mailto_recipients() -> None:
    assert parse_target("mailto:a@b.co,ops@example.com").recipients == ("a@b.co", "ops@example.com")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("slak:" + SLACK, 'invalid notify target "slak:https://hooks.slack.com/***": use one of webhook:https://'),
        ("https://example.com/hook", 'invalid notify target "https://example.com/hook": use one of'),
        ("slack:ftp://example.com/x", "slack needs an http(s) URL"),
        ("webhook:not a url", "webhook needs an http(s) URL"),
        ("webhook:http://host:99999/x", "webhook needs an http(s) URL"),
        ("webhook:http://[::1/x", "webhook needs an http(s) URL"),
        ("slak:http://[::1/secret", 'invalid notify target "slak:***": use one of'),
        ("mailto:nobody", '"nobody" is not a mail address'),
        ("mailto:a@b.co,", '"" is not a mail address'),
        ("", "use one of"),
    ],
)
def test_parse_errors(entry: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_target(entry)
    assert message in str(info.value)
    assert "mailto:ops@example.com" in str(info.value)  # lists the accepted forms
    assert "XXXXXXXX" not in str(info.value)  # never prints a webhook's secret


def test_a_resolved_literal_target_registers_every_secret_part() -> None:
    slack = parse_target(f"slack:{SLACK}")
    assert slack.resolve({}) is slack
    text = redact(f"POST {SLACK}; path /services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX")
    assert text == f"POST https://hooks.slack.com/{MASK}; path /{MASK}"
    parse_target(f"dingtalk:{DINGTALK}").resolve({})
    assert redact("token 0123456789abcdef at /robot/send") == f"token {MASK} at /robot/send"  # its path is no secret


def test_schedule_validation_normalises_notify() -> None:
    schedule = Schedule(name="s", actor="probe", cron="* * * * *", notify=(f" SLACK:{SLACK} ", "mailto: a@b.co"))
    assert schedule.validated({"probe"}).notify == (f"slack:{SLACK}", "mailto:a@b.co")
    with pytest.raises(InvalidInput, match="invalid notify target"):
        Schedule(name="s", actor="probe", cron="* * * * *", notify=("teams:https://x.y/z",)).validated({"probe"})


def answering(status: int, body: object) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("kind", "status", "answer", "transient"),
    [
        (TargetKind.DINGTALK, 200, {"errcode": 310000, "errmsg": "keywords not in content"}, False),
        (TargetKind.DINGTALK, 200, {"errcode": 130101, "errmsg": "send too fast"}, True),
        (TargetKind.WECOM, 200, {"errcode": 93000, "errmsg": "invalid webhook url"}, False),
        (TargetKind.FEISHU, 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}, False),
        (TargetKind.FEISHU, 200, {"StatusCode": 9499, "StatusMessage": "Bad Request"}, False),
        (TargetKind.SLACK, 404, "no_service", False),
        (TargetKind.SLACK, 429, "rate_limited", True),
        (TargetKind.WEBHOOK, 503, "down for maintenance", True),
        (TargetKind.WEBHOOK, 408, "", True),
    ],
)
async def test_service_answers_that_are_failures(
    kind: TargetKind, status: int, answer: object, transient: bool
) -> None:
    target = Target(kind, "https://hooks.example.com/secret-path/abc?token=s3cr3t-value")
    async with answering(status, answer) as http:
        with pytest.raises(DeliveryError) as info:
            await post_webhook(http, target, EVENT)
    assert info.value.transient is transient
    message = str(info.value)
    assert message.startswith(f"{target.masked}: HTTP {status}")
    assert "secret-path" not in message and "s3cr3t-value" not in message


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (TargetKind.DINGTALK, {"errcode": 0, "errmsg": "ok"}),
        (TargetKind.WECOM, {"errcode": 0, "errmsg": "ok"}),
        (TargetKind.FEISHU, {"code": 0, "msg": "success", "data": {}}),
        (TargetKind.FEISHU, {"StatusCode": 0, "StatusMessage": "success"}),
        (TargetKind.SLACK, "ok"),
        (TargetKind.WEBHOOK, ""),
    ],
)
async def test_service_answers_that_are_success(kind: TargetKind, answer: object) -> None:
    async with answering(200, answer) as http:
        await post_webhook(http, Target(kind, "https://hooks.example.com/x"), EVENT)


async def test_connection_errors_are_transient_and_scrubbed() -> None:
    url = "https://hooks.example.com/secret-path?token=s3cr3t-value"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {url}", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(DeliveryError) as info:
            await post_webhook(http, Target(TargetKind.WEBHOOK, url), EVENT)
    assert info.value.transient
    assert "ConnectError" in str(info.value)
    assert "secret-path" not in str(info.value) and "s3cr3t-value" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_duration_in_minutes() -> None:
    event = RunEvent(**{**EVENT.__dict__, "duration_seconds": timedelta(minutes=3, seconds=2).total_seconds()})
    assert "duration: 3m2s" in message_text(event)[1]
