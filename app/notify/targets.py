"""Notify targets: the ``notify`` entries of a schedule, parsed, normalised and masked.

A webhook URL is a credential (whoever knows it can post to the channel). It can be written two ways:

- ``slack:https://hooks.slack.com/services/…``: the literal URL is stored in full on the schedule (the only
  copy), and masked everywhere else: :attr:`Target.masked` (``slack:https://hooks.slack.com/***``) is what the
  notifications table, the CLI and the logs show;
- ``slack:env:SLACK_WEBHOOK_URL``: the schedule stores only the variable's name; the URL is read from the
  worker's environment when a notification is sent (:meth:`Target.resolve`) and registered as a secret there.

Every webhook kind takes both forms; ``mailto:`` takes addresses only (recipients are no secret). Link-local
hosts (``169.254.0.0/16``, where cloud metadata services answer, and ``fe80::/10``) are refused when a target
is defined, unless the caller allows them (``allow_link_local``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from app.errors import ConfigurationError, InvalidInput
from app.redaction import redact, redact_url, register_secrets
from app.settings import ENV_NAME


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
    "wecom:https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…, "
    "any of these as KIND:env:VARIABLE (the URL read from the worker's environment), "
    "mailto:ops@example.com[,other@example.com]"
)
ENV_PREFIX = "env:"
ALLOW_LINK_LOCAL_SETTING = "PUNCHCLOCK_NOTIFY_ALLOW_LINK_LOCAL"
_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


@dataclass(frozen=True)
class Target:
    """One parsed entry. ``address`` is the URL for the webhook kinds (empty for an ``env:`` entry not yet
    resolved), the comma-separated recipients for mailto; ``variable`` names the environment variable of an
    ``env:`` entry."""

    kind: TargetKind
    address: str
    variable: str | None = None

    @property
    def entry(self) -> str:
        """The normalised entry: what the schedule stores (a literal URL in full; an ``env:`` form's name)."""
        if self.variable is not None:
            return f"{self.kind}:{ENV_PREFIX}{self.variable}"
        return f"{self.kind}:{self.address}"

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(self.address.split(",")) if self.kind is TargetKind.MAILTO else ()

    @property
    def masked(self) -> str:
        """The entry with its secrets hidden: a literal URL's path (the credential of Slack and Feishu) and
        query values, any user:password; an ``env:`` entry and mail addresses show as they are."""
        if self.kind is TargetKind.MAILTO or self.variable is not None:
            return self.entry
        return f"{self.kind}:{redact_url(self.address, keep_path=False)}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The parts of the URL that are its credential, to register with :mod:`app.redaction`: the query
        values, fragment and password, and the path (without its leading ``/``) unless the kind keeps its
        credential in the query (DingTalk, WeCom). The URL itself then shows as ``https://host/***``."""
        if self.kind is TargetKind.MAILTO or not self.address:
            return ()
        parts = urlsplit(self.address)
        values = [parts.fragment, parts.password or "", *(value for _, value in parse_qsl(parts.query))]
        if self.kind not in (TargetKind.DINGTALK, TargetKind.WECOM):
            values.append(parts.path.lstrip("/"))
        return tuple(value for value in values if value)

    def resolve(self, environ: Mapping[str, str]) -> Target:
        """This target ready to send, its secrets registered with :mod:`app.redaction` (so no log line, span
        or error of this process shows them): a literal URL as it is; an ``env:`` one read from ``environ``.
        :class:`ConfigurationError` naming the variable (never its value) when it is unset or not an http(s)
        URL."""
        if self.variable is None:
            register_secrets(self.secrets)
            return self
        value = environ.get(self.variable, "").strip()
        if not value:
            raise ConfigurationError(
                f"{self.entry}: the environment variable {self.variable} is not set in this worker;"
                f" set it to the {self.kind} webhook URL"
            )
        register_secrets(Target(self.kind, value).secrets)
        if not _is_http_url(value):
            raise ConfigurationError(
                f"{self.entry}: the value of {self.variable} is not an http(s) URL; set it to the {self.kind}"
                " webhook URL"
            )
        return Target(self.kind, value, self.variable)


def parse_target(entry: str, *, allow_link_local: bool = False) -> Target:
    """Parse one ``notify`` entry, or raise :class:`InvalidInput` naming it and listing the accepted forms.

    Any http(s) URL is accepted for the webhook kinds (a proxy or a self-hosted gateway may stand in for the
    service); the body sent is the one of the kind named. A URL whose host is a link-local address is refused
    unless ``allow_link_local`` (``PUNCHCLOCK_NOTIFY_ALLOW_LINK_LOCAL``); entries read back from the database
    were judged when defined, so readers pass True.
    """
    kind_text, sep, rest = entry.strip().partition(":")
    rest = rest.strip()
    # the entry as shown in errors: a mistyped kind must not print a valid webhook URL into a log
    shown = f"{kind_text}:{redact_url(rest, keep_path=False)}" if rest.startswith(("http://", "https://")) else entry
    try:
        kind = TargetKind(kind_text.strip().lower())
    except ValueError:
        kind = None
    if not sep or kind is None:
        raise InvalidInput(f'invalid notify target "{shown}": use one of {ACCEPTED_FORMS}')
    if rest.lower().startswith(ENV_PREFIX):
        return _env_target(entry, kind, rest[len(ENV_PREFIX) :].strip())
    if kind is TargetKind.MAILTO:
        recipients = [address.strip() for address in rest.split(",")]
        bad = [address for address in recipients if not _ADDRESS.match(address)]
        if bad:
            raise InvalidInput(
                f'invalid notify target "{entry}": "{bad[0]}" is not a mail address; use {ACCEPTED_FORMS}'
            )
        return Target(kind, ",".join(recipients))
    if not _is_http_url(rest):
        raise InvalidInput(f'invalid notify target "{shown}": {kind} needs an http(s) URL; use {ACCEPTED_FORMS}')
    host = urlsplit(rest).hostname or ""
    if not allow_link_local and is_link_local(host):
        raise InvalidInput(
            f'invalid notify target "{shown}": {host} is a link-local address, where cloud metadata services'
            f" answer; use a routable host, or set {ALLOW_LINK_LOCAL_SETTING}=true to allow it"
        )
    return Target(kind, rest)


def is_link_local(host: str) -> bool:
    """Whether ``host`` is an IP address in ``169.254.0.0/16`` or ``fe80::/10``, in any spelling the resolver
    accepts (``169.254.169.254``, ``2852039166``, ``0xa9.0xfe.0xa9.0xfe``, ``[fe80::1%eth0]``, an IPv4-mapped
    IPv6 address). Host names are not resolved: a name is judged when the worker connects, not here."""
    host = host.strip("[]").split("%")[0]
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the legacy forms inet_aton takes: a bare number, hex or octal parts, fewer than four parts
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _LINK_LOCAL)


def _env_target(entry: str, kind: TargetKind, variable: str) -> Target:
    if kind is TargetKind.MAILTO:
        raise InvalidInput(
            f'invalid notify target "{entry}": mailto takes the addresses themselves (mailto:ops@example.com);'
            " env: is for webhook URLs, which are credentials, and recipients are not"
        )
    if not ENV_NAME.fullmatch(variable):
        # a webhook URL pasted after env: by mistake is a credential all the same
        shown = redact_url(variable, keep_path=False) if "://" in variable else redact(variable)
        raise InvalidInput(
            f'invalid notify target "{kind}:{ENV_PREFIX}{shown}": "{shown}" is not an environment variable name;'
            f" use letters, digits and _, not starting with a digit, e.g. {kind}:env:{kind.upper()}_WEBHOOK_URL"
        )
    return Target(kind, "", variable)


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in text
