"""AWS Signature Version 4 for S3 requests (pure: no clock, no environment, no I/O; the caller passes ``now``).

    canonical request = method \\n canonical URI \\n canonical query \\n canonical headers \\n signed headers \\n
                        payload hash
    string to sign    = AWS4-HMAC-SHA256 \\n amz date \\n date/region/service/aws4_request \\n sha256(request)
    signing key       = HMAC chain "AWS4"+secret → date → region → service → "aws4_request"

S3's rules are followed: the path is URI-encoded once (other services encode it twice, which S3 does not), and
every request carries ``x-amz-content-sha256``. Only what the S3 source sends is supported: a URL whose query the
caller built, the host, and a few ``x-amz-*`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# sha256 of no bytes: the payload hash of every GET
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)  # temporary credentials (STS) carry one


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to send with the request: ``headers``, plus ``x-amz-date``, ``x-amz-content-sha256``,
    ``x-amz-security-token`` (temporary credentials only) and ``Authorization``.

    Every header passed in is signed, and so is ``host``, which is taken from ``url`` as an HTTP client sends
    it (the port only when it is not the scheme's default). ``now`` must be aware.
    """
    if now.tzinfo is None:
        raise ValueError(f"now={now.isoformat()}: must be timezone-aware")
    when = now.astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{when:%Y%m%d}/{region}/{service}/aws4_request"

    sent = dict(headers)
    sent["x-amz-date"] = amz_date
    sent["x-amz-content-sha256"] = payload_hash
    if credentials.session_token is not None:
        sent["x-amz-security-token"] = credentials.session_token

    parts = urlsplit(url)
    signed = {name.lower(): " ".join(value.split()) for name, value in sent.items()}
    signed["host"] = host_header(url)
    names = sorted(signed)
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(credentials.secret_key, when.strftime("%Y%m%d"), region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    sent["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )
    return sent


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets in the Host header
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """AWS's UriEncode: every byte but the unreserved ``A-Z a-z 0-9 - . _ ~`` as %XX, upper-case hex."""
    return quote(value, safe="/" if keep_slash else "")


def canonical_uri(path: str) -> str:
    # Decoded then encoded once: the same canonical form whether the caller's URL was encoded or not.
    return uri_encode(unquote(path or "/"), keep_slash=True)


def canonical_query(query: str) -> str:
    """Each name and value decoded then encoded the AWS way, sorted by name then value; ``a`` as ``a=``."""
    pairs: list[tuple[str, str]] = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        # unquote, not unquote_plus: a "+" in an S3 query is a literal plus sign, and the caller encodes spaces
        pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))
