"""Text extraction of knowledge base sources: each format's text, and a reason for what gives none (pure)."""

from __future__ import annotations

import struct
import zlib

import pytest
from fpdf import FPDF

from app.kb.formats import NO_TEXT_LAYER, NOT_UTF8, NUL_BYTES, Extracted, Format, extract_text, html_to_text


def pdf_with_text(*lines: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in lines:
        pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def png(width: int = 4, height: int = 4) -> bytes:
    """A grey PNG, built by hand: a scanned page stands in as an image with no text over it."""

    def part(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + part(b"IHDR", header) + part(b"IDAT", zlib.compress(rows)) + part(b"IEND", b"")


def pdf_with_image_only(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    image = tmp_path_factory.mktemp("scan") / "page.png"
    image.write_bytes(png())
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(image), x=10, y=10, w=100)
    return bytes(pdf.output())


def test_markdown_is_kept_as_written() -> None:
    data = "# 知识库\n\nPunchclock **re-indexes** nightly.\n".encode()
    assert extract_text("docs/guide.md", data) == Extracted(
        text="# 知识库\n\nPunchclock **re-indexes** nightly.\n", format=Format.MARKDOWN
    )
    assert extract_text("GUIDE.MARKDOWN", data).format is Format.MARKDOWN


def test_plain_text_tolerates_a_bom_and_windows_line_ends() -> None:
    extracted = extract_text("notes.txt", "\ufeff第一行\r\nsecond line\r\n".encode())
    assert extracted == Extracted(text="第一行\nsecond line\n", format=Format.TEXT)


def test_text_that_is_not_utf8_is_skipped() -> None:
    extracted = extract_text("notes.txt", "中文".encode("gbk"))
    assert extracted == Extracted(skipped=NOT_UTF8, format=Format.TEXT)
    assert extracted.text is None


def test_utf16_text_is_skipped_as_binary_with_the_fix() -> None:
    extracted = extract_text("notes.txt", "hello".encode("utf-16"))
    assert extracted.skipped == NUL_BYTES
    assert "save it as UTF-8" in NUL_BYTES


def test_a_blank_file_is_skipped_as_without_text() -> None:
    assert extract_text("empty.md", b" \n\n ").skipped == "no text"


HTML = """<!DOCTYPE html>
<html><head><title>Reindex &amp; gate</title>
<style>body { color: red; }</style>
<script>var secret = "do not index";</script>
</head>
<body>
  <h1>Knowledge   bases</h1>
  <p>Sources become
     chunks&nbsp;then vectors &lt;fast&gt;.</p>
  <div>第一段<br>第二行</div>
  <ul><li>one</li><li>two</li></ul>
  <script type="module">import "x";</script>
  <p>Caf&eacute; &#x4e2d;&#25991;</p>
</body></html>"""


def test_html_keeps_only_visible_text_with_blocks_as_paragraphs() -> None:
    extracted = extract_text("site/index.html", HTML.encode())
    assert extracted.format is Format.HTML
    assert extracted.text == (
        "Reindex & gate\n\n"
        "Knowledge bases\n\n"
        "Sources become chunks then vectors <fast>.\n\n"  # &nbsp; is a space to a reader
        "第一段\n第二行\n\n"
        "one\n\n"
        "two\n\n"
        "Café 中文"
    )


def test_a_url_is_read_by_the_extension_of_its_path() -> None:
    page = b"<p>Hello</p>"
    assert extract_text("https://example.com/docs/page.HTML?lang=zh#top", page).format is Format.HTML
    assert extract_text(r"C:\docs\notes.txt", page).format is Format.TEXT  # Windows paths too


def test_html_with_only_scripts_has_no_text() -> None:
    assert extract_text("app.htm", b"<html><script>alert(1)</script><style>p{}</style></html>").skipped == "no text"


def test_html_in_a_declared_legacy_charset_is_decoded() -> None:
    page = '<html><head><meta charset="gbk"></head><body><p>知识库</p></body></html>'.encode("gbk")
    assert extract_text("intranet.html", page).text == "知识库"


def test_html_table_cells_and_pre_lines() -> None:
    assert html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table><pre>x = 1\ny = 2</pre>") == (
        "a b\n\nc\n\nx = 1\ny = 2"
    )


def test_a_pdf_gives_its_text_layer() -> None:
    extracted = extract_text("manual.pdf", pdf_with_text("Punchclock fires schedules once.", "Second line 42."))
    assert extracted.format is Format.PDF
    assert extracted.text is not None
    assert "Punchclock fires schedules once." in extracted.text
    assert "Second line 42." in extracted.text


def test_a_pdf_with_only_an_image_has_no_text_layer(tmp_path_factory: pytest.TempPathFactory) -> None:
    extracted = extract_text("scan.pdf", pdf_with_image_only(tmp_path_factory))
    assert extracted == Extracted(skipped=NO_TEXT_LAYER, format=Format.PDF)
    assert NO_TEXT_LAYER == "no text layer (scanned?)"


def test_a_broken_pdf_is_skipped_with_the_reason() -> None:
    whole = pdf_with_text("cut short")
    extracted = extract_text("broken.pdf", whole[: len(whole) // 3])
    assert extracted.text is None
    assert extracted.skipped is not None
    assert extracted.skipped.startswith("broken PDF: ")
    assert len(extracted.skipped) > len("broken PDF: ")


def test_a_pdf_without_its_extension_is_sniffed() -> None:
    extracted = extract_text("download", pdf_with_text("sniffed"))
    assert extracted.format is Format.PDF
    assert extracted.text is not None
    assert "sniffed" in extracted.text


def test_binary_files_are_skipped() -> None:
    assert extract_text("logo.png", png()) == Extracted(skipped='binary content (unknown extension ".png", NUL bytes)')
    assert extract_text("blob", b"\xff\xd8\xff\xe0JFIF") == Extracted(
        skipped=f"binary content (no extension, {NOT_UTF8})"
    )
    # text-looking bytes full of control characters: UTF-8 by accident, not text
    assert extract_text("data.bin", bytes(range(1, 32)) * 4).skipped == (
        f'binary content (unknown extension ".bin", {NOT_UTF8})'
    )


def test_a_markdown_file_with_nul_bytes_is_binary() -> None:
    assert extract_text("weird.md", b"abc\x00def") == Extracted(skipped=NUL_BYTES, format=Format.MARKDOWN)


def test_unknown_extensions_that_are_text_or_html_are_sniffed() -> None:
    assert extract_text("README", "说明\nusage".encode()) == Extracted(text="说明\nusage", format=Format.TEXT)
    assert extract_text("page.php", b"<!-- gen -->\n<!doctype html><p>Hi</p>") == Extracted(
        text="Hi", format=Format.HTML
    )
    assert extract_text("config.rst", b"<p>not sniffed as html</p>").format is Format.TEXT


def test_extracted_holds_exactly_one_of_text_and_reason() -> None:
    with pytest.raises(ValueError, match="either text or a skipped reason"):
        Extracted()
    with pytest.raises(ValueError, match="either text or a skipped reason"):
        Extracted(text="a", skipped="b")
