"""Text extraction: a source file's bytes → its text, or the reason it was skipped (pure: no I/O).

    extension              format     how
    ─────────────────────  ─────────  ────────────────────────────────────────────────────────────────
    .md .markdown          markdown   UTF-8 (a BOM tolerated), kept as written
    .txt                   text       UTF-8 (a BOM tolerated)
    .html .htm             html       text only: script/style dropped, blocks → paragraphs, entities unescaped
    .pdf                   pdf        the text layer, via pypdf (a scan without one is skipped)
    anything else          sniffed    ``%PDF-`` → pdf; NUL bytes or not UTF-8 → skipped; ``<html`` → html; else text

A source that cannot give text is *skipped* with a reason rather than failing: one scanned PDF or stray image in a
folder must not stop a knowledge base's reindex, and the reason tells its owner what to fix.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import PurePosixPath

from pypdf import PdfReader


class Format(StrEnum):
    MARKDOWN = "markdown"
    TEXT = "text"
    HTML = "html"
    PDF = "pdf"


EXTENSIONS: dict[str, Format] = {
    ".md": Format.MARKDOWN,
    ".markdown": Format.MARKDOWN,
    ".txt": Format.TEXT,
    ".html": Format.HTML,
    ".htm": Format.HTML,
    ".pdf": Format.PDF,
}

NOT_UTF8 = "not UTF-8 text"
NO_TEXT_LAYER = "no text layer (scanned?)"
NO_TEXT = "no text"
NUL_BYTES = "binary content (NUL bytes): not text, or text in UTF-16; save it as UTF-8"


@dataclass(frozen=True)
class Extracted:
    """Exactly one of ``text`` (never blank) and ``skipped`` (why no text came out) is set. ``format`` is the
    format the bytes were read as, None when they were recognised as none."""

    text: str | None = None
    skipped: str | None = None
    format: Format | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.skipped is None):
            raise ValueError("Extracted holds either text or a skipped reason, not both or neither")


def extract_text(name: str, data: bytes) -> Extracted:
    """The text of the source ``name`` (a path, file name or URL: only its extension is read) whose content is
    ``data``."""
    if "://" in name:
        name = re.split(r"[?#]", name, maxsplit=1)[0]  # page.html?lang=zh#top is an .html page
    extension = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    known = EXTENSIONS.get(extension)
    if known is not None:
        return _extract(known, data)
    return _sniff(extension, data)


def _extract(kind: Format, data: bytes) -> Extracted:
    if kind is Format.PDF:
        return _pdf(data)
    if b"\x00" in data:
        return Extracted(skipped=NUL_BYTES, format=kind)
    if kind is Format.HTML:
        decoded = _decode_html(data)
        return _done(html_to_text(decoded), kind) if decoded is not None else Extracted(skipped=NOT_UTF8, format=kind)
    text = _decode_utf8(data)
    return _done(text, kind) if text is not None else Extracted(skipped=NOT_UTF8, format=kind)


def _sniff(extension: str, data: bytes) -> Extracted:
    if data.startswith(b"%PDF-"):
        return _pdf(data)
    shown = f'unknown extension "{extension}"' if extension else "no extension"
    if b"\x00" in data:
        return Extracted(skipped=f"binary content ({shown}, NUL bytes)")
    text = _decode_utf8(data)
    if text is None or _mostly_control(text):
        return Extracted(skipped=f"binary content ({shown}, {NOT_UTF8})")
    if _HTML_START.match(text):
        return _done(html_to_text(text), Format.HTML)
    return _done(text, Format.TEXT)


def _done(text: str, kind: Format) -> Extracted:
    # A blank source would only add empty chunks; saying so is more useful than indexing nothing silently.
    return Extracted(text=text, format=kind) if text.strip() else Extracted(skipped=NO_TEXT, format=kind)


def _decode_utf8(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig")  # utf-8-sig drops a leading BOM, which editors on Windows write
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")


def _mostly_control(text: str) -> bool:
    """Bytes that decode as UTF-8 by chance (short binary headers) still carry control characters text never has."""
    return len(_CONTROL.findall(text)) > max(1, len(text) // 100)


_HTML_START = re.compile(r"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode_html(data: bytes) -> str | None:
    """UTF-8, else the charset a ``<meta>`` declares (GBK pages are common in Chinese intranets), else None."""
    text = _decode_utf8(data)
    if text is not None:
        return text
    declared = _META_CHARSET.search(data[:4096])
    if declared is None:
        return None
    try:
        codec = codecs.lookup(declared.group(1).decode("ascii"))
        return data.decode(codec.name).replace("\r\n", "\n").replace("\r", "\n")
    except (LookupError, UnicodeDecodeError):
        return None


# Elements whose content is not text a reader sees.
_DROPPED = frozenset({"script", "style", "template", "noscript", "svg"})
# Elements that start and end a block: a paragraph break in the text, so chunking keeps them apart.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "title", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"[^\S\n]+")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities in text arrive unescaped in handle_data
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._dropped = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self._dropped += 1
        elif tag in _BLOCKS:
            self._break()
            if tag == "pre":
                self._pre += 1
        elif tag == "br":
            self._current.append("\n")
        elif tag in _CELLS:
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <script/> or <div/>: nothing opens, so nothing may stay open
        if tag == "br":
            self._current.append("\n")
        elif tag in _BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self._dropped = max(0, self._dropped - 1)
        elif tag in _BLOCKS:
            self._break()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._dropped:
            return
        # Outside <pre>, HTML collapses every run of whitespace, newlines included, to one space.
        self._current.append(data if self._pre else re.sub(r"\s+", " ", data))

    def _break(self) -> None:
        lines = (_SPACES.sub(" ", line).strip() for line in "".join(self._current).split("\n"))
        block = "\n".join(line for line in lines if line)
        if block:
            self.blocks.append(block)
        self._current = []

    def text(self) -> str:
        self.close()
        self._break()
        return "\n\n".join(self.blocks)


def html_to_text(html: str) -> str:
    """The text a reader sees in ``html``: blocks separated by blank lines, ``<br>`` as a line break."""
    parser = _TextParser()
    parser.feed(html)
    return parser.text()


def _pdf(data: bytes) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return Extracted(skipped="encrypted PDF: save a copy without a password", format=Format.PDF)
        pages = [page.extract_text() or "" for page in reader.pages]
    # pypdf raises many types (PdfReadError, ValueError, KeyError, …) on a damaged file, and one bad source must be
    # skipped, not fail the reindex of the whole knowledge base.
    except Exception as error:
        reason = str(error).strip() or type(error).__name__
        return Extracted(skipped=f"broken PDF: {reason[:200]}", format=Format.PDF)
    # PostgreSQL text cannot hold NUL, which some PDF fonts map characters to.
    text = "\n\n".join(page.replace("\x00", "").strip() for page in pages if page.strip())
    if not text.strip():
        return Extracted(skipped=NO_TEXT_LAYER, format=Format.PDF)
    return Extracted(text=text, format=Format.PDF)
