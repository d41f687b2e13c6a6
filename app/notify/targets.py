"""Notify targets: the ``notify`` entries of a schedule, parsed, normalised and masked.

A webhook URL is a credential (whoever knows it can post to the channel), so only :attr:`Target.masked` may be
stored in the notifications table or written to a log; the full entry stays on the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from app.errors import InvalidInput


class TargetKind(StrEnum):
    WEBHOOK = "webhook"  # generic JSON
    SLACK = "slack"
    FEISHU = "feishu"
    DINGTALK = "dingtalk"
    WECOM = "wecom"
    MAILTO = "mailto"


ACCEPTED_FORMS = (
    "webhook:https://… (generic JSON), slack:https://hooks.slack.com/services/…, "
    "feishu:https://open.feishu.cn/open-apis/bot/v2/hook/…, "
    "dingtalk:https://oapi.dingtalk.com/robot/send?access_token=…, "
    "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…, mailto:ops@example.com[,other@example.com]"
)
_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
MASK = "***"


@dataclass(frozen=True)
class Target:
    """One parsed entry. ``address`` is the URL for the webhook kinds, the comma-separated recipients for mailto."""

    kind: TargetKind
    address: str

    @property
    def entry(self) -> str:
        """The normalised entry, secrets included: what the schedule stores."""
        return f"{self.kind}:{self.address}"

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(self.address.split(",")) if self.kind is TargetKind.MAILTO else ()

    @property
    def masked(self) -> str:
        """The entry with its secrets hidden: URL path and query values, any user:password; mail addresses stay."""
        if self.kind is TargetKind.MAILTO:
            return self.entry
        return f"{self.kind}:{mask_url(self.address)}"

    def scrub(self, text: str) -> str:
        """``text`` with every secret part of this target replaced by ``***`` (for error messages from libraries)."""
        if self.kind is TargetKind.MAILTO:
            return text
        text = text.replace(self.address, mask_url(self.address))
        parts = urlsplit(self.address)
        secrets = [parts.path, parts.query, parts.fragment, parts.password or ""]
        secrets += [value for _, value in parse_qsl(parts.query)]
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) > 1:
                text = text.replace(secret, MASK)
        return text


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T/B/X`` → ``https://hooks.slack.com/***``; query values become ``***``."""
    parts = urlsplit(url)
    masked = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # host[:port], without any user:password
    if parts.path not in ("", "/"):
        masked += f"/{MASK}"
    if parts.query:
        masked += "?" + "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return masked


def parse_target(entry: str) -> Target:
    """Parse one ``notify`` entry, or raise :class:`InvalidInput` naming it and listing the accepted forms.

    Any http(s) URL is accepted for the webhook kinds (a proxy or a self-hosted gateway may stand in for the
    service); the body sent is the one of the kind named.
    """
    kind_text, sep, rest = entry.strip().partition(":")
    rest = rest.strip()
    # the entry as shown in errors: a mistyped kind must not print a valid webhook URL into a log
    shown = f"{kind_text}:{_masked_or_hidden(rest)}" if rest.startswith(("http://", "https://")) else entry
    try:
        kind = TargetKind(kind_text.strip().lower())
    except ValueError:
        kind = None
    if not sep or kind is None:
        raise InvalidInput(f'invalid notify target "{shown}": use one of {ACCEPTED_FORMS}')
    if kind is TargetKind.MAILTO:
        recipients = [address.strip() for address in rest.split(",")]
        bad = [address for address in recipients if not _ADDRESS.match(address)]
        if bad:
            raise InvalidInput(
                f'invalid notify target "{entry}": "{bad[0]}" is not a mail address; use {ACCEPTED_FORMS}'
            )
        return Target(kind, ",".join(recipients))
    try:
        parts = urlsplit(rest)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in rest:
        raise InvalidInput(f'invalid notify target "{shown}": {kind} needs an http(s) URL; use {ACCEPTED_FORMS}')
    return Target(kind, rest)


def _masked_or_hidden(url: str) -> str:
    try:
        return mask_url(url)
    except ValueError:  # not even splittable (a bad IPv6 literal): show nothing of it
        return MASK
