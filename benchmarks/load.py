"""nn.load against np.load on the same .npy, with the page cache cold and warm.

Cold: the file's pages are dropped from the page cache first (fsync, then
``posix_fadvise(POSIX_FADV_DONTNEED)``), so both read from the disk; warm:
the file is cached, so both copy out of the page cache. One run of each, in
alternation; the figures are times and the ratio nn/np (1.0: as fast).

    python benchmarks/load.py [--mib 512] [--dir DIR] [--policy interleave]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import numa_numpy as nn


def drop_cache(path: str) -> None:
    """Evict the file's pages from the page cache (a no-op on tmpfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(load: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = load()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--policy", default=None, help="nn.load's policy (default: Local)")
    args = parser.parse_args()
    n = (args.mib << 20) // 8
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "data.npy")
        want = np.arange(n, dtype=np.float64)
        np.save(path, want)
        del want
        loaders = {
            "np.load": lambda: np.load(path),
            "nn.load": lambda: nn.load(path, policy=args.policy, progress=False),
        }
        print(f"{args.mib} MiB .npy, nn.load policy {args.policy or 'local'}")
        for cache in ("cold", "warm"):
            times = {}
            for name, load in loaders.items():
                if cache == "cold":
                    drop_cache(path)
                else:
                    load()  # cached (and the allocator warm)
                seconds, out = timed(load)
                assert out.shape == (n,) and out[-1] == n - 1
                del out
                times[name] = seconds
            ratio = times["nn.load"] / times["np.load"]
            print(
                f"{cache}: np.load {times['np.load']:.3f} s "
                f"({args.mib / times['np.load']:.0f} MiB/s), nn.load {times['nn.load']:.3f} s "
                f"({args.mib / times['nn.load']:.0f} MiB/s), ratio nn/np {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
