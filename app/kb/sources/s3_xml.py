"""S3's XML answers, read (pure): a ListObjectsV2 page and an error document.

Elements are matched by local name, so the 2006-03-01 namespace AWS sends and an S3-compatible server that
sends none (or another) read the same.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass


class UnreadableAnswer(ValueError):
    """The body is not the XML S3 sends; the message says what was expected."""


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str  # as listed, quotes included: compared, never interpreted (a multipart upload's is no md5)
    size: int
    last_modified: str | None


@dataclass(frozen=True)
class ListPage:
    objects: tuple[S3Object, ...]
    next_token: str | None  # None: the listing is complete


@dataclass(frozen=True)
class S3Error:
    code: str
    message: str


def parse_list_page(body: bytes) -> ListPage:
    root = _parse(body, "ListBucketResult")
    if _local(root.tag) != "ListBucketResult":
        raise UnreadableAnswer(f"expected a ListBucketResult, got <{_local(root.tag)}>")
    objects = []
    for item in _children(root, "Contents"):
        key = _text(item, "Key")
        if key is None:
            raise UnreadableAnswer("a <Contents> without a <Key>")
        size = _text(item, "Size") or "0"
        if not size.isdigit():
            raise UnreadableAnswer(f'object "{key}": <Size> "{size}" is not a number')
        objects.append(S3Object(key, _text(item, "ETag") or "", int(size), _text(item, "LastModified")))
    truncated = (_text(root, "IsTruncated") or "false").strip().lower() == "true"
    token = _text(root, "NextContinuationToken")
    if truncated and not token:
        # Asking again without a token would list the first page forever.
        raise UnreadableAnswer("<IsTruncated> is true but there is no <NextContinuationToken>")
    return ListPage(tuple(objects), token if truncated else None)


def parse_error(body: bytes) -> S3Error | None:
    """The code and message of an S3 ``<Error>``; None when the body is not one (a proxy's HTML page, or
    nothing, as a HEAD answers)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if _local(root.tag) != "Error":
        return None
    return S3Error(_text(root, "Code") or "", _text(root, "Message") or "")


def _parse(body: bytes, expected: str) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise UnreadableAnswer(f"expected a {expected} XML document: {exc}") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return found[0].text or "" if found else None
