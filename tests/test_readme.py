"""Every Python example in README.md, on the docs' front page and in the user
guide (docs/guide/*.md, in the order of docs/index.md's table of contents) runs,
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

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def guide_pages() -> list[Path]:
    """The guide pages in the order docs/index.md lists them."""
    index = (DOCS / "index.md").read_text()
    names = re.findall(r"^(guide/[\w-]+)$", index, re.M)
    return [DOCS / f"{name}.md" for name in names]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def example_blocks() -> list[str]:
    """The README's blocks, then the front page's and the guide's. A README block
    that a guide page repeats runs at the guide page's place (after the examples
    it follows in the guide), once."""
    later = [b for path in [DOCS / "index.md", *guide_pages()] for b in _python_blocks(path)]
    blocks = [b for b in _python_blocks(README) if b not in later]
    for block in later:
        if block not in blocks:
            blocks.append(block)
    return blocks


def test_every_readme_example_runs():
    assert set(_python_blocks(README)) <= set(example_blocks())


def test_every_guide_page_is_in_the_table_of_contents():
    listed = {p.name for p in guide_pages()}
    present = {p.name for p in (DOCS / "guide").glob("*.md")}
    assert present == listed, present ^ listed


def test_readme_examples_run(tmp_path):
    pytest.importorskip("distributed", reason="the README's Dask example needs numa_numpy[dask]")
    blocks = example_blocks()
    assert len(blocks) >= 8
    script = tmp_path / "readme_examples.py"
    # exec'd into the module's globals under a main guard: the examples' functions
    # stay top-level (picklable for process pools), and dask's spawned workers,
    # which import this file again, do not run the examples again
    script.write_text(
        f"EXAMPLES = {chr(10).join(blocks)!r}\n"
        "if __name__ == '__main__':\n"
        "    exec(compile(EXAMPLES, 'README.md', 'exec'), globals())\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "policy bind:0" in out.stdout
    assert "10000.0" in out.stdout  # the Dask task ran on its worker
