"""app.redaction: which path segments are tokens, what URLs and free text keep, known secrets, outputs."""

from __future__ import annotations

import pytest

from app import redaction
from app.redaction import (
    MASK,
    is_token_segment,
    known_secrets,
    redact,
    redact_json,
    redact_url,
    register_secret,
    register_settings,
    url_password,
)
from app.settings import Settings


@pytest.mark.parametrize(
    ("segment", "token"),
    [
        # plain words, in any natural casing, joined by - _ . ~; versions; short digit suffixes
        ("v1", False),
        ("chat", False),
        ("completions", False),
        ("open-apis", False),
        ("cgi-bin", False),
        ("compatible-mode", False),
        ("sendMessage", False),
        ("IncomingWebhook", False),
        ("Beijing", False),
        ("index.html", False),
        ("utf-8", False),
        ("x86_64", False),
        ("sha256", False),
        ("v1beta", False),
        ("very-secret-token", False),  # reads as words: only the env: form (a known secret) hides it
        # numbers stay readable
        ("42", False),
        ("2026-03-01", False),
        ("1234567890123456789", False),
        ("", False),
        # tokens
        ("PATHSECRET-888", True),
        ("T00000000", True),  # Slack's team id
        ("B00000000", True),  # Slack's bot id
        ("T000", True),
        ("XXXXXXXXXXXXXXXXXXXXXXXX", True),  # Slack's secret
        ("3f1c0e9a-77aa-4c2b-9d5e-0a1b2c3d4e5f", True),  # a UUID: Feishu's hook key, WeCom's key
        ("abcdefab-cdef-4123-a123-abcdefabcdef", True),  # a UUID whose groups all read as words
        ("1b7c0c7e-xxxx", True),
        ("0123456789abcdef", True),  # hex
        ("abcdefabcdefabcd", True),  # hex, letters only
        ("secretA", True),
        ("sk-abc123def", True),
        ("bot123456:ABC-DEF1234ghIkl", True),  # Telegram
        ("abcdefghijklmnopqrstuvwxyz", True),  # no word is that long
        ("README", True),  # capitals in a row: the price of catching ids
        ("%2F", True),
        (MASK, True),
    ],
)
def test_token_segments(segment: str, token: bool) -> None:
    assert is_token_segment(segment) is token


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/chat/completions"),
        ("http://127.0.0.1:11434/api/embeddings", "http://127.0.0.1:11434/api/embeddings"),
        ("https://x.example.com/hooks/PATHSECRET-888", "https://x.example.com/hooks/***"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
         "https://hooks.slack.com/services/***/***/***"),
        ("https://open.feishu.cn/open-apis/bot/v2/hook/3f1c0e9a-77aa-4c2b-9d5e-0a1b2c3d4e5f",
         "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
        ("https://oapi.dingtalk.com/robot/send?access_token=abc123", "https://oapi.dingtalk.com/robot/send?access_token=***"),
        ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
         "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
        ("https://dify.example.com/v1/datasets/3f1c0e9a-77aa-4c2b-9d5e-0a1b2c3d4e5f/retrieve",
         "https://dify.example.com/v1/datasets/***/retrieve"),
        ("https://user:hunter2@example.com:8443/x?a=1&b=#frag", "https://user:***@example.com:8443/x?a=***&b=***"),
        ("https://ghp_abcDEF123456@github.com/o/r", "https://github.com/o/r"),  # a token as the user name
        ("postgresql://punchclock@127.0.0.1:1/nowhere", "postgresql://punchclock@127.0.0.1:1/nowhere"),
        ("https://example.com/cb?sk-abcdef123456", "https://example.com/cb?***=***"),  # a bare flag that is a token
        ("https://[::1]:8080/a", "https://[::1]:8080/a"),
        ("http://[::1/x", MASK),
    ],
)  # fmt: skip
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T1/B1/X", "https://hooks.slack.com/***"),
        ("https://oapi.dingtalk.com/robot/send?access_token=t", "https://oapi.dingtalk.com/***?access_token=***"),
        ("https://example.com/", "https://example.com"),
    ],
)
def test_redact_url_without_its_path(url: str, masked: str) -> None:
    assert redact_url(url, keep_path=False) == masked


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "Client error '401 Unauthorized' for url 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cr3t'",
            "Client error '401 Unauthorized' for url 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***'",
        ),
        (
            'HTTP Request: POST https://x.example.com/hooks/PATHSECRET-888 "HTTP/1.1 200 OK"',
            'HTTP Request: POST https://x.example.com/hooks/*** "HTTP/1.1 200 OK"',
        ),
        ("(see https://a.example.com/b?token=zz).", "(see https://a.example.com/b?token=***)."),
        (
            "Received args=() kwargs={'source': 'https://data.example.com/sales?token=QS-1'}.",
            "Received args=() kwargs={'source': 'https://data.example.com/sales?token=***'}.",
        ),
        ("token=abc123 next", "token=*** next"),
        ("access_token: abc123", "access_token: ***"),
        ("api_key: sk-live-1", "api_key: ***"),
        ("X-Api-Key=sk-live-1", "X-Api-Key=***"),
        ("password=hunter2; user=ops", "password=***; user=ops"),
        ("PUNCHCLOCK_SMTP_PASSWORD=hunter2", "PUNCHCLOCK_SMTP_PASSWORD=***"),
        ("secret=abc", "secret=***"),
        ("{'client_secret': 'abc', 'name': 'x'}", "{'client_secret': '***', 'name': 'x'}"),
        ('{"password": "p w", "app_key": "k"}', '{"password": "***", "app_key": "***"}'),
        ("Authorization: Bearer sk-abc.def", "Authorization: Bearer ***"),
        ("'authorization': 'Basic dXNlcjpwdw=='", "'authorization': 'Basic ***'"),
        ("sent Bearer sk-abc with it", "sent Bearer *** with it"),
        # what is no secret stays
        ("input_tokens=5 max_tokens: 3 token_type=bearer", "input_tokens=5 max_tokens: 3 token_type=bearer"),
        ("not sending the password in clear", "not sending the password in clear"),
        ("check PUNCHCLOCK_LLM_API_KEY)", "check PUNCHCLOCK_LLM_API_KEY)"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/***"),
    ],
)
def test_redact_free_text(text: str, redacted: str) -> None:
    assert redact(text) == redacted
    assert redact(redacted) == redacted  # idempotent


def test_known_secrets_are_masked_anywhere_once_registered() -> None:
    key = "sk-live-0123456789"
    text = f"the server said: bad key {key}, also token={key}"
    assert redact(text) == f"the server said: bad key {key}, also token={MASK}"  # only the key/value shape
    register_secret(key)
    assert redact(text) == f"the server said: bad key {MASK}, also token={MASK}"
    register_secret("pw!/é 1234")  # and in its percent-encoded forms, as it sits in a URL
    assert redact("plain pw!/é 1234, pw%21%2F%C3%A9%201234, pw%21/%C3%A9%201234") == f"plain {MASK}, {MASK}, {MASK}"


def test_short_or_blank_values_are_not_registered() -> None:
    register_secret("guest")
    register_secret("   ")
    register_secret(None)
    assert known_secrets() == ()
    assert redact("guest / guest") == "guest / guest"


def test_also_masks_for_one_call_only() -> None:
    assert redact("echo sk-unit-secret", also=["sk-unit-secret", ""]) == f"echo {MASK}"
    assert redact("echo sk-unit-secret") == "echo sk-unit-secret"


def test_settings_register_their_secrets() -> None:
    register_settings(
        Settings(
            database_url="postgresql://pc:db-pass-123@db:5432/pc",
            broker_url="amqp://pc:broker-pass-456@rabbit:5672/%2F",
            smtp_password="smtp-pass-789",
            llm_api_key="sk-llm-key-000",
            embedding_api_key="sk-embed-key-111",
        )
    )
    text = "db-pass-123 broker-pass-456 smtp-pass-789 sk-llm-key-000 sk-embed-key-111"
    assert redact(text) == " ".join([MASK] * 5)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://:hunter2-secret@127.0.0.1:6379/0", "hunter2-secret"),
        ("amqp://guest:guest@h/", "guest"),
        ("user:pw%40123456@host:5672", "pw@123456"),
        ("postgresql://punchclock@db/x", None),
        ("", None),
    ],
)
def test_url_password(url: str, password: str | None) -> None:
    assert url_password(url) == password


def test_outputs_keep_their_links_and_lose_known_secrets() -> None:
    register_secret("sk-live-0123456789")
    output = {
        "report": "https://files.example.com/r/3f1c0e9a-77aa-4c2b-9d5e-0a1b2c3d4e5f?token=download-token",
        "oops": ["key sk-live-0123456789", 3, None, {"sk-live-0123456789": True}],
        "n": 1.5,
    }
    assert redact_json(output) == {
        "report": output["report"],
        "oops": [f"key {MASK}", 3, None, {MASK: True}],
        "n": 1.5,
    }


def test_registry_is_process_wide_and_forgettable() -> None:
    register_secret("sk-live-0123456789")
    assert "sk-live-0123456789" in known_secrets()
    redaction.forget_secrets()
    assert known_secrets() == ()
