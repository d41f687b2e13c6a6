"""``punchclock kb reindex``'s progress line: files scanned, chunks embedded, an ETA from the last reindex's
count of documents; redrawn on a terminal, a line every few seconds elsewhere, and one at the end."""

from __future__ import annotations

import pytest

from app.cli.kb import ProgressLine
from app.kb.reindex import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_comes_from_the_documents_the_last_reindex_knew() -> None:
    clock = Clock()
    line = ProgressLine("docs", tty=False, clock=clock)
    clock.now += 10
    assert line.text(Progress(scanned=25, embedded=40, expected=100)) == (
        "docs: 25 files scanned, 40 chunks embedded (25/100, ETA 30s)"
    )
    # more documents than last time, or a first reindex: no guess
    assert line.text(Progress(scanned=120, embedded=40, expected=100)) == "docs: 120 files scanned, 40 chunks embedded"
    assert line.text(Progress(scanned=3, embedded=0, expected=0)) == "docs: 3 files scanned, 0 chunks embedded"


def test_off_a_terminal_a_line_every_few_seconds_and_one_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    line = ProgressLine("docs", tty=False, clock=clock)
    for scanned in range(1, 5):
        line(Progress(scanned=scanned, embedded=scanned, expected=0))
        clock.now += 2
    line.done()
    assert capsys.readouterr().err.splitlines() == [
        "docs: 1 files scanned, 1 chunks embedded",
        "docs: 4 files scanned, 4 chunks embedded",  # 6 s after the first
        "docs: 4 files scanned, 4 chunks embedded",  # the end
    ]


def test_on_a_terminal_the_line_is_redrawn_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    line = ProgressLine("docs", tty=True, clock=clock)
    line(Progress(scanned=1, embedded=2, expected=0))
    line.done()
    err = capsys.readouterr().err
    assert err == "\r\033[Kdocs: 1 files scanned, 2 chunks embedded" * 2 + "\n"
