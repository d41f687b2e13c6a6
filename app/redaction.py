"""Redaction: the one way text reaches a log line, a span, a stored row (run, attempt, step and notification
errors) or a run output. Every secret becomes :data:`MASK`, whatever the sink.

:func:`redact` applies three rules to free text, in this order:

1. **Known secrets.** Values the process was given (API keys, the SMTP password, the passwords in the database
   and broker URLs, Dify app keys, webhook URLs read from the environment) are registered once where they are
   read (:func:`register_settings`, :func:`register_secret`) and replaced wherever they appear, percent-encoded
   forms too. Values shorter than :data:`MIN_SECRET_CHARS` are not registered: masking ``guest`` or ``1234``
   everywhere would mangle ordinary words, and a URL's password is masked by rule 2 anyway.
2. **URLs** (``scheme://…``), rewritten by :func:`redact_url`: the password masked (a plain user name stays,
   it tells which account failed; one that looks like a token is dropped), query values masked (names kept),
   fragment dropped, and each path segment that looks like a token masked (the rule below).
3. **Key/value shapes**: the value after ``token``, ``access_token``, ``api_key``, ``app_key``, ``secret``,
   ``client_secret``, ``password``, ``passwd`` (any key *ending* in one of these, any case) followed by ``=`` or
   ``:`` (quoted keys and values too, as in a dict's repr or JSON), after ``Authorization:`` (with its scheme
   word: ``Bearer``, ``Basic``, ``Token``…), and after a lone ``Bearer``.

**Which path segments are tokens.** A segment (percent-decoded) stays readable when it is empty, only digits,
or made of *words* joined by ``-``, ``_``, ``.`` or ``~``, where a word is digits, or letters in natural
casing (``chat``, ``Beijing``, ``sendMessage``) followed by at most three digits (``v1``, ``oauth2``,
``sha256``), or a version tag (``v1beta``). Anything else is masked: capitals in a row, letters after digits,
other characters. Also masked whatever its shape: a UUID, 16 or more hex digits with a letter among them, and a
word of 24 or more characters.

    segment                               kept?   why
    ────────────────────────────────────  ──────  ──────────────────────────────────────────
    v1, chat, completions, open-apis      kept    plain words
    42, 2026-03-01, 1234567890123456789   kept    numbers
    sendMessage, IncomingWebhook, Beijing kept    natural casing
    index.html, utf-8, x86_64, sha256     kept    words and short digit suffixes
    v1beta, v2alpha1                      kept    version tags
    PATHSECRET-888                        masked  capitals in a row
    T00000000, B00000000 (Slack)          masked  digits after a capital
    XXXXXXXXXXXXXXXXXXXXXXXX (Slack)      masked  capitals in a row
    3f1c0e9a-77aa-4c2b-9d5e-0a1b2c3d4e5f  masked  a UUID (Feishu hooks; WeCom keys are query values)
    0123456789abcdef…, abcdefabcdefabcd   masked  16+ hex digits
    README, API                           masked  capitals in a row (the price of catching ids)

A lowercase secret that reads like words (``/hooks/my-secret-123``) cannot be told from a path: keep such a
URL in the environment (``slack:env:VAR``), where rule 1 knows it.

**Outputs** (:func:`redact_json`) get rule 1 only: a run's output is data that dependents and users read, and
masking the links or ``token`` fields it legitimately holds would lose them; a known secret in it is never
legitimate.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from app.settings import Settings

MASK = "***"
MIN_SECRET_CHARS = 6

_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_TRAILING = ".,;:!?"
_CLOSERS = {")": "(", "]": "[", "}": "{"}

_WORD = re.compile(r"\d+|[A-Z]?[a-z]+(?:[A-Z][a-z]+)*\d{0,3}|v\d+(?:alpha|beta|rc)\d*")
_SEPARATORS = re.compile(r"[-_.~]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_LONG_WORD = 24

_SECRET_KEY = r"[\w-]*?(?:token|api[_-]?key|apikey|app[_-]?key|secret|password|passwd)"
_QUOTED_OR_BARE = r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&'\"}\])]+)"
_KEY_VALUE = re.compile(
    rf"(?<![\w-])(?P<key>{_SECRET_KEY})(?![\w-])(?P<sep>['\"]?\s*[:=]\s*)(?P<value>{_QUOTED_OR_BARE})",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"(?P<head>\bauthorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic|token|digest|bot)\s+)?)(?P<value>[^\s'\",;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<value>[^\s'\",;]+)")


class _Secrets:
    """The process's known secret values, longest first (so a secret containing another is masked whole)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            known = set(self.values)
            for value in values:
                known.update(form for form in (value, quote(value, safe=""), quote(value)) if form)
            self.values = tuple(sorted(known, key=len, reverse=True))


_secrets = _Secrets()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in everything redacted from now on, in this process; None, blank and short values
    (under :data:`MIN_SECRET_CHARS`) are ignored."""
    register_secrets([value])


def register_secrets(values: Iterable[str | None]) -> None:
    _secrets.add(value.strip() for value in values if value and len(value.strip()) >= MIN_SECRET_CHARS)


def known_secrets() -> tuple[str, ...]:
    """What is registered (and its percent-encoded forms), longest first."""
    return _secrets.values


def forget_secrets() -> None:
    """Drop every registered secret (tests do, between cases)."""
    _secrets.values = ()


def register_settings(settings: Settings) -> None:
    """Register the secrets in ``settings``: the LLM and embedding API keys, the SMTP password, and the
    passwords in the database and broker URLs. Every entry point calls it once, right after reading them."""
    register_secrets(
        [
            settings.llm_api_key,
            settings.embedding_api_key,
            settings.smtp_password,
            url_password(settings.database_url),
            url_password(settings.broker_url),
        ]
    )


def url_password(url: str) -> str | None:
    """The password in ``url``'s user info (``scheme://user:PASSWORD@host``, the scheme optional), or None."""
    match = re.match(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?[^:/@\s]*:([^@/\s]*)@", url.strip())
    return unquote(match.group(1)) if match and match.group(1) else None


def redact(text: str, *, also: Iterable[str] = ()) -> str:
    """``text`` with the three rules of the module docstring applied; ``also``: more values to mask in this
    call only (a key at hand that may not be registered, as in a test). Idempotent."""
    extra = [value for value in also if value and len(value) >= MIN_SECRET_CHARS]
    text = _mask_known(text, extra)
    text = _URL_IN_TEXT.sub(_redact_url_match, text)
    text = _KEY_VALUE.sub(_mask_value, text)
    text = _AUTHORIZATION.sub(lambda m: m.group("head") + MASK, text)
    return _BEARER.sub(lambda m: m.group("head") + MASK, text)


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` without its password or fragment, query values masked (names kept unless they look like
    tokens), token-like path segments masked; a plain user name is kept (``postgresql://punchclock:***@db/x``).
    ``keep_path=False``: the whole path becomes ``/***`` (a webhook URL, where the path is the credential). A
    URL that cannot even be split becomes ``***``."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    netloc = _userinfo(parts.username, parts.password) + netloc
    if keep_path:
        path = "/".join(MASK if is_token_segment(segment) else segment for segment in parts.path.split("/"))
    else:
        path = "" if parts.path in ("", "/") else f"/{MASK}"
    query = "&".join(
        f"{MASK if is_token_segment(name) else name}={MASK}"
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _userinfo(user: str | None, password: str | None) -> str:
    """``user:***@`` / ``user@``: a plain user name helps tell which account failed; a password is always
    masked, and a user name that looks like a token (``https://ghp_…@github.com``) is dropped."""
    shown = user if user and not is_token_segment(user) else ""
    if password is not None:
        return f"{shown}:{MASK}@"
    return f"{shown}@" if shown else ""


def is_token_segment(segment: str) -> bool:
    """Whether a URL path segment (or a query parameter name) looks like a token: the rule and the table in
    the module docstring."""
    text = unquote(segment)
    if not text or text.isdigit():
        return False
    if _UUID.search(text) or (_HEX.fullmatch(text) and not text.isdigit()):
        return True
    return not all(not part or (len(part) < _LONG_WORD and _WORD.fullmatch(part)) for part in _SEPARATORS.split(text))


def redact_json(value: Any) -> Any:
    """A JSON value (a run's output) with every known secret masked in its strings, keys included; the rest
    (URLs, ``token`` fields) is the output's own data and stays. Anything that is not JSON is returned as is."""
    if isinstance(value, str):
        return _mask_known(value, ())
    if isinstance(value, dict):
        return {
            (_mask_known(key, ()) if isinstance(key, str) else key): redact_json(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    return value


def _mask_known(text: str, extra: Iterable[str]) -> str:
    values = _secrets.values
    extra = tuple(extra)
    if extra:
        values = tuple(sorted({*values, *extra}, key=len, reverse=True))
    for secret in values:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_url_match(match: re.Match[str]) -> str:
    url, tail = match.group(0), ""
    while url and (url[-1] in _TRAILING or (url[-1] in _CLOSERS and _CLOSERS[url[-1]] not in url)):
        url, tail = url[:-1], url[-1] + tail
    return redact_url(url) + tail


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    masked = f"{value[0]}{MASK}{value[0]}" if value[:1] in ("'", '"') else MASK
    return f"{match.group('key')}{match.group('sep')}{masked}"
