"""Every Python example in README.md, on the docs' front page and in the user
guide (docs/guide/*.md and the quick start, in the order of the site's Getting started
and User guide tables of contents) runs,
in order, as one script.

The guide pages continue the README's quick start: they use its `np`, `nn`,
`far`, `a`, `b` and `c`. A block repeated on a guide page (the README shows the
"Parallel on NUMA machines" example, and so does docs/guide/parallel.md) runs
once, at the guide page's place.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


#: the section pages whose tables of contents list the guide, in reading order
SECTIONS = ["getting-started/index.md", "guide/index.md"]


def guide_pages(root: Path = ROOT) -> list[Path]:
    """The Markdown pages in the order the site's Getting started and User
    guide sections list them (their toctrees: names relative to the section's
    folder, or absolute from docs/)."""
    docs = root / "docs"
    pages = []
    for section in SECTIONS:
        index = docs / section
        for block in re.findall(r"```\{toctree\}\n(.*?)```", index.read_text(), re.S):
            for line in block.splitlines():
                name = line.strip()
                if not name or name.startswith(":"):
                    continue
                path = docs / f"{name[1:]}.md" if name.startswith("/") else index.parent / f"{name}.md"
                if path.is_file():
                    pages.append(path)
    return pages


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def example_blocks(root: Path = ROOT) -> list[str]:
    """The README's blocks, then the front page's and the guide's. A README block
    that a guide page repeats runs at the guide page's place (after the examples
    it follows in the guide), once."""
    docs = [root / "docs" / "index.md", *guide_pages(root)]
    later = [b for path in docs for b in _python_blocks(path)]
    blocks = [b for b in _python_blocks(root / "README.md") if b not in later]
    for block in later:
        if block not in blocks:
            blocks.append(block)
    return blocks


def _needs_dask(block: str) -> bool:
    return re.search(r"^\s*(from|import) (dask|distributed|numa_numpy\.dask)\b", block, re.M) is not None


def run_examples(blocks: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the blocks in order as one script (the Dask ones only where
    distributed is installed: `pip install -e ".[test]"` does not bring it)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        blocks = [b for b in blocks if not _needs_dask(b)]
    script = tmp_path / "readme_examples.py"
    # exec'd into the module's globals under a main guard: the examples' functions
    # stay top-level (picklable for process pools), and dask's spawned workers,
    # which import this file again, do not run the examples again
    script.write_text(
        f"EXAMPLES = {chr(10).join(blocks)!r}\n"
        "if __name__ == '__main__':\n"
        "    exec(compile(EXAMPLES, 'README.md', 'exec'), globals())\n"
    )
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def test_a_broken_example_fails_the_run(tmp_path):
    # the runner is real: a README with a broken block appended fails it
    import shutil
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("_build"))
    for broken in ("this is not python\n", "raise SystemExit('broken example')\n"):
        (copy / "README.md").write_text(
            (ROOT / "README.md").read_text() + f"\n```python\n{broken}```\n"
        )
        blocks = example_blocks(copy)
        assert broken in blocks
        out = run_examples(blocks, tmp_path)
        assert out.returncode != 0, broken


def test_every_guide_page_is_in_the_table_of_contents():
    listed = {p.name for p in guide_pages() if p.parent.name == "guide"}
    present = {p.name for p in (ROOT / "docs" / "guide").glob("*.md")} - {"index.md"}
    assert present == listed, present ^ listed


def test_readme_examples_run(tmp_path):
    blocks = example_blocks()
    assert len(blocks) >= 8
    assert set(_python_blocks(README)) <= set(blocks)
    out = run_examples(blocks, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "policy bind:0" in out.stdout
    try:
        import distributed  # noqa: F401
    except ImportError:
        return
    assert "10000.0" in out.stdout  # the Dask task ran on its worker
