"""The user guide (docs/guide/*.md) reads as pages for users, not walls:

- no paragraph of more than 150 words (a list item counts as a paragraph of
  its own; code blocks, tables and headings are not prose);
- no project talk: the words "target", "missed" and "NUMA lab" belong to the
  Development pages (docs/testing.md, docs/development/benchmarks.md), not to
  the guide, nor (tables included) to the landing, getting-started and
  Performance pages. Code (fenced blocks and inline spans) is left out, so
  ``threading.Thread(target=...)`` is fine.

Applies to every guide page, whoever adds it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
PAGES = sorted(GUIDE.glob("*.md"))
MAX_WORDS = 150
PROJECT_TALK = re.compile(r"\b(targets?|missed|NUMA lab)\b", re.I)
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def prose_paragraphs(text: str) -> list[str]:
    """The paragraphs of a Markdown page: runs of non-blank lines outside code
    fences, each list item on its own, headings, tables and directives left
    out, inline code removed."""
    text = re.sub(r"^(```|~~~|:::).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines() + [""]:
        if not line.strip() or line.startswith(("#", "|")) or LIST_ITEM.match(line):
            if current:
                paragraphs.append(current)
            current = [LIST_ITEM.sub("", line)] if LIST_ITEM.match(line) else []
            continue
        current.append(line)
    return [re.sub(r"`[^`]*`", "", " ".join(p)) for p in paragraphs]


def words(paragraph: str) -> int:
    return len(paragraph.split())


def test_the_guide_has_pages():
    assert len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_paragraph_is_a_wall(page):
    walls = [p[:80] for p in prose_paragraphs(page.read_text()) if words(p) > MAX_WORDS]
    assert not walls, f"{page.name}: paragraphs over {MAX_WORDS} words: {walls}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_project_talk_in_the_guide(page):
    found = [
        m.group(0) for p in prose_paragraphs(page.read_text()) for m in PROJECT_TALK.finditer(p)
    ]
    assert not found, f"{page.name} speaks of {found}: that belongs to docs/testing.md"


DOCS = GUIDE.parent
# Pages a user reads outside the guide: their tables count too (the project's
# targets and their misses are in docs/development/benchmarks.md).
USER_PAGES = [
    DOCS / "index.md",
    DOCS / "performance.md",
    *sorted((DOCS / "getting-started").glob("*.md")),
]
TABLE_TALK = re.compile(r"\b(targets?|miss(?:ed|es)?|MET|goals?|NUMA lab)\b", re.I)


def without_code(text: str) -> str:
    text = re.sub(r"^(```|~~~|:::).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`]*`", "", text)


@pytest.mark.parametrize("page", USER_PAGES, ids=[p.name for p in USER_PAGES])
def test_no_project_talk_on_the_other_pages_users_read(page):
    found = TABLE_TALK.findall(without_code(page.read_text()))
    assert not found, f"{page.name} speaks of {found}: that belongs to docs/development/"


def test_the_checks_find_what_they_look_for():
    wall = " ".join(["word"] * (MAX_WORDS + 1))
    page = (
        f"# Title\n\n{wall}\n\n```python\n{wall}\nThread(target=f)\n```\n\n"
        "- a short item\n- another, in the NUMA lab\n\n| a table | target |\n\n"
        "Uses `Thread(target=f)`; the target was missed.\n"
    )
    paragraphs = prose_paragraphs(page)
    assert [words(p) for p in paragraphs] == [MAX_WORDS + 1, 3, 5, 6]
    talk = [m.group(0) for p in paragraphs for m in PROJECT_TALK.finditer(p)]
    assert talk == ["NUMA lab", "target", "missed"]
    table = "| case | ratio | target |\n|---|---|---|\n| `a` | 0.7x miss | MET |\n"
    assert TABLE_TALK.findall(without_code(table)) == ["target", "miss", "MET"]
