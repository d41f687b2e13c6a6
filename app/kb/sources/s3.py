"""A bucket prefix as a knowledge base's source, over plain HTTP: ListObjectsV2 and GET Object, signed with
Signature V4 (:mod:`app.kb.sources.sigv4`), so any S3-compatible store works (AWS, MinIO, Ceph, OSS, COS...).

    the object, against what the last reindex saw   outcome
    ──────────────────────────────────────────────  ────────────────────────────────────────────────────────
    the same ETag and size                          Unchanged, without downloading it
    else, downloaded: the same sha256               Unchanged, with the new ETag (a copy or re-upload)
    else                                            Fetched
    its GET fails (after retries)                   Failed
    no longer listed                                gone: the reindex deletes it

Keys are ``s3://bucket/key``. The whole listing is read (every page, following continuation tokens) before any
object is fetched: a listing that fails raises (:class:`~app.transient.PermanentError` for a 403 or a missing
bucket, naming the S3 error code and what to check; :class:`~app.transient.TransientError` when it stayed
unavailable through the retries), so an outage never makes objects look deleted.

Only keys ending in one of ``suffixes`` (by default the extensions :mod:`app.kb.formats` reads, any case) are
part of the listing; ``suffixes=None`` takes every object. Keys ending in ``/`` (the "folders" consoles create)
never are.

Credentials are read from the environment variables the definition names, when a scan starts: they are never
stored, logged, or put in an error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from tenacity.wait import WaitBaseT

from app.errors import ConfigurationError, InvalidInput
from app.kb.formats import EXTENSIONS
from app.kb.sources.base import Failed, Outcome, Unchanged
from app.kb.sources.compare import carried, outcome_of_body
from app.kb.sources.http import validate_url
from app.kb.sources.retries import GaveUp, Retries
from app.kb.sources.s3_xml import ListPage, S3Object, UnreadableAnswer, parse_error, parse_list_page
from app.kb.sources.sigv4 import EMPTY_SHA256, Credentials, sign
from app.kb.store import SourceState
from app.redaction import redact_url, register_secret
from app.settings import ENV_NAME
from app.transient import PermanentError, TransientError, classify

DEFAULT_TIMEOUT = 30.0
DEFAULT_SUFFIXES: tuple[str, ...] = tuple(EXTENSIONS)
# S3's own limit per page; a smaller one only makes more requests (tests use 2 to cross pages)
MAX_KEYS = 1000

# S3's rules for bucket names (3-63 characters; lower-case letters, digits, dots and hyphens)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CREDENTIAL_ERRORS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)
_REGION_ERRORS = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"})


class S3Source:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_env: str = "AWS_ACCESS_KEY_ID",
        secret_key_env: str = "AWS_SECRET_ACCESS_KEY",
        session_token_env: str | None = None,
        suffixes: Collection[str] | None = DEFAULT_SUFFIXES,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = 3,
        backoff: WaitBaseT | None = None,
        max_retry_after: float = 10.0,
        max_keys: int = MAX_KEYS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``endpoint_url`` (an S3-compatible store, addressed path-style: ``{endpoint}/{bucket}/{key}``) or, when
        None, AWS in ``region``. ``environ`` is where the credential variables are read (``os.environ``, read
        at each scan, when None)."""
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise InvalidInput(
                f'bucket "{bucket}": not an S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)'
            )
        if prefix.startswith("/"):
            raise InvalidInput(f'prefix "{prefix}": S3 keys do not start with "/"; write "{prefix.lstrip("/")}"')
        if endpoint_url is not None:
            validate_url(endpoint_url)
            if "?" in endpoint_url or "#" in endpoint_url:
                raise InvalidInput(f'endpoint_url "{redact_url(endpoint_url)}": give the base URL only, no query')
        if not re.fullmatch(r"[a-z0-9-]+", region):
            raise InvalidInput(f'region "{region}": write an S3 region name such as us-east-1 or cn-north-1')
        for option, name in (
            ("access_key_env", access_key_env),
            ("secret_key_env", secret_key_env),
            ("session_token_env", session_token_env),
        ):
            if name is not None and not ENV_NAME.fullmatch(name):
                raise InvalidInput(f'{option}="{name}": name an environment variable (letters, digits, _)')
        if not timeout > 0:
            raise InvalidInput(f"timeout={timeout}: must be more than 0 seconds")
        if not 1 <= max_keys <= MAX_KEYS:
            raise InvalidInput(f"max_keys={max_keys}: must be 1 to {MAX_KEYS}")
        if isinstance(suffixes, str):
            raise InvalidInput(f'suffixes="{suffixes}": give a list of suffixes such as [".md", ".pdf"]')
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.access_key_env = access_key_env
        self.secret_key_env = secret_key_env
        self.session_token_env = session_token_env
        self.suffixes = tuple(s.lower() for s in suffixes) if suffixes is not None else None
        self.timeout = timeout
        self.max_keys = max_keys
        retries = Retries(attempts=attempts, max_retry_after=max_retry_after)
        self.retries = dataclasses.replace(retries, backoff=backoff) if backoff is not None else retries
        self._environ = environ
        self.base_url = bucket_url(bucket, region, endpoint_url)

    def describe(self) -> str:
        return f"s3: s3://{self.bucket}/{self.prefix} at {redact_url(self.base_url)}"

    async def scan(self, known: Mapping[str, SourceState], http: httpx.AsyncClient) -> AsyncIterator[Outcome]:
        """Every listed object, in S3's order (keys in UTF-8 binary order). Raises before yielding anything when
        the listing fails: :class:`ConfigurationError` for a credential variable not set, ``PermanentError`` or
        ``TransientError`` as the module docstring says."""
        credentials = self.credentials()
        listing = await self.list_objects(credentials, http)
        for item in listing:
            key = f"s3://{self.bucket}/{item.key}"
            previous = known.get(key)
            # An empty ETag (some S3-compatible stores list none) proves nothing: such objects are downloaded.
            if previous is not None and item.etag and previous.etag == item.etag and previous.size == item.size:
                yield Unchanged(key, carried(previous, item.etag, item.last_modified, datetime.now(UTC)))
            else:
                yield await self._fetch(key, item, previous, credentials, http)

    def credentials(self) -> Credentials:
        environ = os.environ if self._environ is None else self._environ
        where = f"S3 source s3://{self.bucket}/{self.prefix}"
        access_key = environ.get(self.access_key_env, "").strip()
        secret_key = environ.get(self.secret_key_env, "").strip()
        if not access_key:
            raise ConfigurationError(f"{where}: set {self.access_key_env} to the access key id")
        if not secret_key:
            raise ConfigurationError(f"{where}: set {self.secret_key_env} to the secret access key")
        token = None
        if self.session_token_env is not None:
            token = environ.get(self.session_token_env, "").strip()
            if not token:
                raise ConfigurationError(f"{where}: set {self.session_token_env} to the session token")
        for secret in (secret_key, token):
            register_secret(secret)  # masked wherever it might surface from now on
        return Credentials(access_key, secret_key, token)

    async def list_objects(self, credentials: Credentials, http: httpx.AsyncClient) -> list[S3Object]:
        """The complete listing under the prefix, every page read; raises as the module docstring says."""
        objects: list[S3Object] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = await self._list_page(credentials, http, token)
            objects.extend(item for item in page.objects if self._listed(item.key))
            if page.next_token is None:
                return objects
            if page.next_token in seen:
                raise PermanentError(f"{self._where()}: the listing repeats a continuation token; is it S3?")
            seen.add(page.next_token)
            token = page.next_token

    def _listed(self, key: str) -> bool:
        if key.endswith("/"):
            return False
        return self.suffixes is None or key.lower().endswith(self.suffixes)

    async def _list_page(self, credentials: Credentials, http: httpx.AsyncClient, token: str | None) -> ListPage:
        query = {"list-type": "2", "max-keys": str(self.max_keys), "prefix": self.prefix}
        if token is not None:
            query["continuation-token"] = token
        url = f"{self.base_url}?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())

        async def get() -> httpx.Response:
            response = await self._signed_get(url, credentials, http)
            try:
                response.raise_for_status()
            except httpx.HTTPStatusError as exc:
                if classify(exc, retry_timeouts=True).transient:
                    raise  # a 5xx, 408 or 429: retried
                raise PermanentError(self._listing_error(response)) from None
            return response

        try:
            response = await self.retries.run(get, f"kb s3 source {self._where()} listing")
        except GaveUp as gave_up:
            if isinstance(gave_up.last, PermanentError):
                raise gave_up.last from None
            if not gave_up.transient:
                reason = gave_up.reason()
                raise PermanentError(f"{self._where()}: listing failed: {reason}; check endpoint_url") from None
            raise TransientError(
                f"{self._where()}: listing failed: {gave_up.reason()}; nothing was changed, the next reindex tries"
                " again",
                retry_after=classify(gave_up.last, retry_timeouts=True).retry_after,
            ) from None
        try:
            return parse_list_page(response.content)
        except UnreadableAnswer as exc:
            where = self._where()
            raise PermanentError(f"{where}: the listing is not S3's answer ({exc}); check endpoint_url") from None

    def _listing_error(self, response: httpx.Response) -> str:
        error = parse_error(response.content)
        code = error.code if error is not None else ""
        said = f" {error.code}: {error.message}" if error is not None else ""
        if code == "NoSuchBucket" or (not code and response.status_code == 404):
            hint = "check the bucket name, and the endpoint_url or region it lives in"
        elif code in _CREDENTIAL_ERRORS or response.status_code == 403:
            hint = (
                f"check the credentials in {self.access_key_env} and {self.secret_key_env}, and that they may list"
                " the bucket (s3:ListBucket)"
            )
        elif code in _REGION_ERRORS or response.status_code == 301:
            hint = f'check region "{self.region}": the bucket may live in another'
        else:
            hint = "check the bucket, the endpoint_url and the credentials"
        return f"{self._where()}: listing refused, HTTP {response.status_code}{said}; {hint}. Nothing was changed."

    async def _fetch(
        self,
        key: str,
        item: S3Object,
        previous: SourceState | None,
        credentials: Credentials,
        http: httpx.AsyncClient,
    ) -> Outcome:
        if any(segment in (".", "..") for segment in item.key.split("/")):
            # HTTP clients resolve dot segments in a path, so such an object cannot be addressed by URL.
            return Failed(key, 'a "." or ".." path segment cannot be fetched over HTTP: rename the object', False)
        url = f"{self.base_url}/{quote(item.key, safe='/')}"

        async def get() -> httpx.Response:
            response = await self._signed_get(url, credentials, http)
            response.raise_for_status()
            return response

        try:
            response = await self.retries.run(get, f"kb s3 source {key}")
        except GaveUp as gave_up:
            return Failed(key, gave_up.reason(), gave_up.transient)
        # The GET's ETag describes the bytes downloaded, should the object have changed since it was listed.
        etag = response.headers.get("ETag") or item.etag
        return outcome_of_body(key, response.content, previous, etag, item.last_modified, datetime.now(UTC))

    async def _signed_get(self, url: str, credentials: Credentials, http: httpx.AsyncClient) -> httpx.Response:
        # Signed at each attempt: a signature is valid for 15 minutes around its x-amz-date.
        headers = sign("GET", url, {}, EMPTY_SHA256, credentials, self.region, "s3", datetime.now(UTC))
        return await http.get(url, headers=headers, timeout=self.timeout, follow_redirects=False)

    def _where(self) -> str:
        return f"S3 source s3://{self.bucket}/{self.prefix}"


def bucket_url(bucket: str, region: str, endpoint_url: str | None) -> str:
    """The bucket's base URL: path-style under ``endpoint_url``; virtual-hosted on AWS, except for a bucket name
    with dots, which would not match AWS's TLS certificate as a host name."""
    if endpoint_url is not None:
        return f"{endpoint_url.rstrip('/')}/{bucket}"
    host = f"s3.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else "")
    return f"https://{host}/{bucket}" if "." in bucket else f"https://{bucket}.{host}"
