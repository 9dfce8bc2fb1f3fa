"""The layout page (docs/layout.md, "Layout of the source") draws the package as a
tree: every module, C file and layer folder has one line with what it holds, and
nothing is drawn that is not there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "numa_numpy"


def layout_block() -> str:
    text = (ROOT / "docs" / "layout.md").read_text()
    return re.findall(r"```\n(.*?)```", text, re.S)[0]


def drawn() -> dict[str, str]:
    """path under numa_numpy/ -> its description, read from the tree's indentation."""
    found: dict[str, str] = {}
    folders: list[tuple[int, str]] = []
    for line in layout_block().splitlines():
        words = line.split(maxsplit=1)
        if not words or line.startswith(" " * 20):  # empty, or a description continued
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = "/".join([f for _, f in folders] + [words[0].rstrip("/")])
        found[path] = words[1] if len(words) == 2 else ""
        if words[0].endswith("/"):
            folders.append((indent, words[0].rstrip("/")))
    prefix = "numa_numpy/"
    return {k[len(prefix) :]: v for k, v in found.items() if k.startswith(prefix)}


def on_disk() -> list[str]:
    found = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")]
    found += [str(p.relative_to(PACKAGE)) for p in PACKAGE.glob("_csrc/*.c")]
    found += [
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists() or p.name == "_csrc"
    ]
    return sorted(f for f in found if not f.endswith("/__init__.py") or f.startswith("testing"))


def test_every_module_and_folder_has_a_line_in_the_layout():
    lines = drawn()
    missing = [m for m in on_disk() if not lines.get(m, "").strip()]
    assert not missing, f"docs/layout.md has no line for {missing}"


def test_the_layout_draws_nothing_that_is_not_there():
    here = set(on_disk()) | {"__init__.py"}
    ghosts = sorted(set(drawn()) - here)
    assert not ghosts, f"docs/layout.md draws what the package does not have: {ghosts}"


def test_each_where_to_add_answer_names_one_file_to_write():
    text = (ROOT / "docs" / "layout.md").read_text()
    rows = re.findall(r"^\| (.+?) \| (.+?) \|", text.split("## Where to add", 1)[1], re.M)
    answers = {what: where for what, where in rows if what not in ("to add", "---")}
    for what in (
        "allocation keyword",
        "system call",
        "constructor",
        "CLI command",
        "doctor check",
        "team operation",
        "cache rule",
    ):
        row = [w for k, w in answers.items() if what in k]
        assert row, f"no 'where to add' row for {what}"
        files = re.findall(r"`([\w/*]+\.(?:py|c))`", row[0])
        assert len(files) == 1, (what, files)
        assert list(PACKAGE.glob(files[0])), f"{files[0]} (for {what}) does not exist"
