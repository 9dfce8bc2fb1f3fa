"""An unmodified NumPy script under ``numa-numpy run --policy partitioned
--parallel``: every large array is split over the nodes, and each piece of a
ufunc over it runs on a CPU of the node that holds the piece's pages. The
kernel says where the pages are (move_pages, through placement()); the worker
says where it ran (getcpu, recorded by the C pool per piece).

Runs in the NUMA lab (a 4-node guest: nodes 0 and 1 with CPUs, 2 and 3
memory-only), on 2 nodes (``partitioned:0-1``) and on all 4.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import numa_numpy as nn

pytestmark = pytest.mark.multinode

PAGE_ELEMENTS = 4096 // 8  # float64 elements in a 4 KiB page

# The program knows nothing of numa_numpy but the test hooks that read back
# where its pieces ran; its arrays come from NumPy alone.
SCRIPT = r"""
import json
import numpy as np
import numa_numpy as nn
from numa_numpy._kernel import loops
try:
    from numpy._core.multiarray import get_handler_name as handler_name
except ImportError:  # NumPy 1
    from numpy.core.multiarray import get_handler_name as handler_name

n = 1 << 22                      # 32 MiB of float64 per array
a = np.ones(n)
b = np.full(n, 2.0)
out = np.empty(n)
loops.set_record(True)
np.add(a, b, out=out)            # an unmodified ufunc call
record = loops.last_record()
loops.set_record(False)
start, bounds, nodes = loops.block_parts_at(out.ctypes.data)
assert start == out.ctypes.data
info = nn.parallel_info()
print(json.dumps({
    "ok": bool(np.all(out == 3.0)),
    "record": record, "bounds": bounds, "nodes": nodes,
    "workers": {str(k): v for k, v in info["workers"].items()},
    "local_pieces": info["local_pieces"],
    "handler": handler_name(out),
    "parts": [
        {str(k): v for k, v in nn.placement(out[lo // 8 + 512 : hi // 8 - 512]).pages.items()}
        for lo, hi in zip(bounds, bounds[1:])
    ],
}))
"""


def _run(tmp_path, policy: str) -> dict:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "numa_numpy", "run", "--policy", policy, "--parallel", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("policy", ["partitioned:0-1", "partitioned"])
def test_each_piece_runs_on_the_node_that_holds_its_pages(tmp_path, policy):
    topo = nn.topology()
    expected_nodes = [0, 1] if policy.endswith("0-1") else list(topo.usable_nodes)
    if not set(expected_nodes) <= set(topo.usable_nodes) or len(topo.usable_nodes) < 2:
        pytest.skip("needs the lab's nodes")
    got = _run(tmp_path, policy)
    assert got["ok"]
    assert got["handler"] == "numa_numpy"
    # The array is split over exactly the nodes of the policy, in order, and the
    # kernel holds each part's pages on its node.
    assert got["nodes"] == expected_nodes
    for node, pages in zip(got["nodes"], got["parts"], strict=True):
        assert pages == {str(node): sum(pages.values())}, (node, pages)
    # Pieces in part order: one per worker of the part's node (one piece run by
    # any thread for a part on a node without CPUs).
    workers = {int(k): v for k, v in got["workers"].items()}
    per_part = [workers.get(node, 0) for node in got["nodes"]]
    assert len(got["record"]) == sum(max(w, 1) for w in per_part)
    pieces = iter(got["record"])
    local = 0
    for node, w in zip(got["nodes"], per_part, strict=True):
        for _ in range(max(w, 1)):
            cpu, ran_on = next(pieces)
            if w:
                assert ran_on == node and topo.node_of_cpu(cpu) == node, (node, cpu, ran_on)
                local += 1
    assert local >= 2 and got["local_pieces"] >= local
