"""The repository stands on its own: every relative link in the README and docs/ resolves to a file (and an
anchor to a heading) in it, and nothing cites a document the repository does not hold."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.services import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
OUTSIDE = re.compile(r"\bDESIGN\.md\b|\bSTYLE\.md\b|\.\./shared\b")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or (anchor and anchor not in anchors(file.read_text())):
            broken.append(target)
    assert broken == [], f"{doc.name}: broken links {broken}"


def test_nothing_cites_documents_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    citing = [
        name
        for name in tracked.splitlines()
        if name.endswith((".py", ".md", ".sql", ".yaml", ".toml"))
        and name != "tests/unit/test_docs.py"
        and OUTSIDE.search((ROOT / name).read_text(errors="replace"))
    ]
    assert citing == []
