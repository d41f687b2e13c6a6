"""A list of URLs as a knowledge base's source: each fetched with a conditional GET, so an unchanged page costs
a 304 and no body.

    what the server answers                      outcome
    ───────────────────────────────────────────  ──────────────────────────────────────────────────────────
    304 Not Modified                             Unchanged: nothing downloaded, the previous state carried
    200, the same sha256 as the previous copy    Unchanged, with the new validators (they are often weak,
                                                 or missing, or change on every request)
    200, new or different content                Fetched
    404, 410, other 4xx                          Failed(transient=False), at once
    timeouts, connection errors, 408, 429, 5xx   retried (``attempts`` in all, Retry-After honoured up to a
                                                 bound), then Failed(transient=True)

The list is a complete listing by definition: a URL removed from the definition is gone (its chunks are
deleted at the next reindex); a URL that answers 404 is still listed, so it is Failed, never gone, and keeps its
previous chunks until its owner removes it from the definition.

The configured headers (an ``Authorization`` for an intranet wiki, say) are sent with every request to the URL's
origin and never logged: they may be secrets. Redirects are followed (at most :data:`MAX_REDIRECTS`), and the
configured headers go only to the URL's own origin (scheme, host, port), not to another a redirect points at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import httpx
from tenacity.wait import WaitBaseT

from app.errors import InvalidInput
from app.kb.sources.base import Failed, Outcome, Unchanged
from app.kb.sources.compare import carried, outcome_of_body
from app.kb.sources.retries import GaveUp, Retries
from app.kb.store import SourceState
from app.redaction import redact_url
from app.transient import PermanentError

DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 5


class HttpSource:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = 3,
        backoff: WaitBaseT | None = None,
        max_retry_after: float = 10.0,
    ) -> None:
        """``timeout`` (seconds) bounds each request; ``backoff`` is tenacity's wait between attempts (tests pass
        ``wait_none()``); a Retry-After longer than ``max_retry_after`` seconds is left to the next reindex."""
        if isinstance(urls, str):
            raise InvalidInput(f'urls="{redact_url(urls)}": give a list of URLs, not one string')
        if not urls:
            raise InvalidInput("urls=[]: an HTTP source needs at least one URL")
        seen: set[str] = set()
        for url in urls:
            validate_url(url)
            if url in seen:
                raise InvalidInput(f'URL "{redact_url(url)}" is listed twice: list each URL once')
            seen.add(url)
        if not timeout > 0:
            raise InvalidInput(f"timeout={timeout}: must be more than 0 seconds")
        self.urls = tuple(urls)
        self.headers = dict(headers or {})
        for name, value in self.headers.items():
            if not name or not isinstance(value, str):
                raise InvalidInput(f'header "{name}": needs a name and a string value')
        self.timeout = timeout
        retries = Retries(attempts=attempts, max_retry_after=max_retry_after)
        self.retries = dataclasses.replace(retries, backoff=backoff) if backoff is not None else retries

    def describe(self) -> str:
        shown = ", ".join(redact_url(url) for url in self.urls[:3])
        more = f" and {len(self.urls) - 3} more" if len(self.urls) > 3 else ""
        return f"http: {shown}{more}"

    async def scan(self, known: Mapping[str, SourceState], http: httpx.AsyncClient) -> AsyncIterator[Outcome]:
        """One outcome per URL, in the order the definition lists them."""
        for url in self.urls:
            yield await self._one(url, known.get(url), http)

    async def _one(self, url: str, previous: SourceState | None, http: httpx.AsyncClient) -> Outcome:
        conditional = conditional_headers(previous)

        async def get() -> httpx.Response:
            response = await self._get_following_redirects(url, conditional, http)
            if response.status_code != 304:
                response.raise_for_status()
            return response

        try:
            response = await self.retries.run(get, f"kb http source {redact_url(url)}")
        except GaveUp as gave_up:
            # Only the type and status are kept: an httpx error's message holds the URL, its request the headers.
            return Failed(url, gave_up.reason(), gave_up.transient)
        now = datetime.now(UTC)
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if response.status_code == 304:
            if previous is None:  # we sent no validator, so a 304 answers nothing we asked
                return Failed(url, "HTTP 304 to a request without validators: the server is misbehaving", False)
            # A 304 may send fresh validators; one that sends none leaves the previous ones valid.
            state = carried(previous, etag or previous.etag, last_modified or previous.last_modified, now)
            return Unchanged(url, state)
        return outcome_of_body(url, response.content, previous, etag, last_modified, now)

    async def _get_following_redirects(
        self, url: str, conditional: Mapping[str, str], http: httpx.AsyncClient
    ) -> httpx.Response:
        """Redirects are followed here, not by httpx: httpx drops only ``Authorization`` when a redirect leaves the
        origin, and the configured headers (an API key under any name) must not follow it to another host."""
        target = httpx.URL(url)
        origin = _origin(target)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {**(self.headers if _origin(target) == origin else {}), **conditional}
            response = await http.get(target, headers=headers, timeout=self.timeout, follow_redirects=False)
            location = response.headers.get("Location")
            if not response.is_redirect or location is None:
                return response
            await response.aclose()
            target = response.url.join(location)
            if target.scheme not in ("http", "https"):
                raise PermanentError(f"redirected to a {target.scheme}: URL, which is not http or https")
        raise PermanentError(f"more than {MAX_REDIRECTS} redirects")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def validate_url(url: str) -> None:
    """http or https with a host; :class:`InvalidInput` naming the URL otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise InvalidInput(f'URL "{redact_url(str(url))}" does not parse: write it as https://host/path') from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(f'URL "{redact_url(url)}": only http:// and https:// URLs with a host can be sources')


def conditional_headers(previous: SourceState | None) -> dict[str, str]:
    """The validators of the previous copy, sent back exactly as the server sent them."""
    headers: dict[str, str] = {}
    if previous is not None and previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous is not None and previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers
