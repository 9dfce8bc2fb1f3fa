"""Every Python example in README.md runs, in order, as one script."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run(tmp_path):
    pytest.importorskip("distributed", reason="the README's Dask example needs numa_numpy[dask]")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
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
