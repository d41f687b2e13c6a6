"""Notify targets naming an environment variable (``slack:env:VAR``), and link-local hosts refused."""

from __future__ import annotations

import pytest

from app.errors import ConfigurationError, InvalidInput
from app.notify.targets import Target, TargetKind, is_link_local, parse_target
from app.redaction import MASK, redact

SLACK = "https://hooks.slack.com/services/T0001/B0001/lowercase-words-secret"


@pytest.mark.parametrize("kind", ["webhook", "slack", "feishu", "dingtalk", "wecom"])
def test_every_webhook_kind_takes_an_env_form_and_stores_only_the_name(kind: str) -> None:
    target = parse_target(f" {kind.upper()}:env:MY_HOOK_1 ")
    assert target == Target(TargetKind(kind), "", "MY_HOOK_1")
    assert target.entry == target.masked == f"{kind}:env:MY_HOOK_1"  # what the schedule and the rows store
    assert parse_target(target.entry) == target


def test_resolving_reads_the_variable_and_registers_the_url() -> None:
    target = parse_target("slack:env:SLACK_WEBHOOK_URL")
    resolved = target.resolve({"SLACK_WEBHOOK_URL": f" {SLACK} "})
    assert (resolved.address, resolved.entry, resolved.masked) == (
        SLACK,
        "slack:env:SLACK_WEBHOOK_URL",
        "slack:env:SLACK_WEBHOOK_URL",
    )
    # a path the URL rule would keep (plain words) is masked now that it is known
    assert redact(f"POST {SLACK} failed") == f"POST https://hooks.slack.com/{MASK} failed"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "slack:env:SLACK_WEBHOOK_URL: the environment variable SLACK_WEBHOOK_URL is not set in this worker"),
        ({"SLACK_WEBHOOK_URL": "  "}, "SLACK_WEBHOOK_URL is not set in this worker; set it to the slack webhook URL"),
        ({"SLACK_WEBHOOK_URL": "ftp://hooks/T1/secret-value"}, "the value of SLACK_WEBHOOK_URL is not an http(s) URL"),
    ],
)
def test_resolving_fails_naming_the_variable_never_its_value(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_target("slack:env:SLACK_WEBHOOK_URL").resolve(environ)
    assert message in str(info.value)
    assert "secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("mailto:env:OPS_MAIL", "mailto takes the addresses themselves (mailto:ops@example.com); env: is for webhook"),
        ("slack:env:", '"" is not an environment variable name'),
        ("slack:env:1HOOK", '"1HOOK" is not an environment variable name'),
        ("wecom:env:MY-HOOK", "e.g. wecom:env:WECOM_WEBHOOK_URL"),
        (f"slack:env:{SLACK}", "is not an environment variable name"),
    ],
)
def test_env_forms_are_checked_when_defined(entry: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_target(entry)
    assert message in str(info.value)
    assert "lowercase-words-secret" not in str(info.value)  # a URL pasted after env: is still not shown


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1:8080/hook",
        "http://[fe80::1]/hook",
        "http://[fe80::a9fe:a9fe%25eth0]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://2852039166/hook",  # 169.254.169.254 as one number
        "http://0xa9.0xfe.0xa9.0xfe/hook",
    ],
)
def test_link_local_hosts_are_refused_when_defined_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_target(f"webhook:{url}")
    assert "is a link-local address, where cloud metadata services answer" in str(info.value)
    assert "set PUNCHCLOCK_NOTIFY_ALLOW_LINK_LOCAL=true to allow it" in str(info.value)
    assert parse_target(f"webhook:{url}", allow_link_local=True).address == url


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.1", "169.253.255.255", "169.255.0.1", "::1", "fec0::1", "hooks.slack.com", "1"]
)
def test_other_hosts_are_not_link_local(host: str) -> None:
    assert not is_link_local(host)
