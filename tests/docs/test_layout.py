"""The layout page (docs/layout.md, "Layout of the source") names every module,
one line each."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "numa_numpy"


def layout_block() -> str:
    text = (ROOT / "docs" / "layout.md").read_text()
    return re.findall(r"```\n(.*?)```", text, re.S)[0]


def modules() -> list[str]:
    found = [p.name for p in PACKAGE.glob("*.py")]
    found += [f"testing/{p.name}" for p in (PACKAGE / "testing").glob("*.py")]
    found += [p.name for p in (PACKAGE / "_csrc").glob("*.c")]
    return sorted(found)


def test_every_module_has_a_line_in_the_readme_layout():
    described = {}
    for line in layout_block().splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2:
            described[words[0]] = words[1]
    missing = [m for m in modules() if not described.get(m, "").strip()]
    assert not missing, f"docs/layout.md has no line for {missing}"


def test_each_module_is_listed_once():
    names = [line.split()[0] for line in layout_block().splitlines() if line.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"listed more than once: {repeated}"
