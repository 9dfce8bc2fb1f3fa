"""Which other libraries' results land in numa_numpy's memory inside a scope.

    python benchmarks/libraries.py [--n N] [--json FILE] [--markdown FILE]

Needs pandas, pyarrow and scikit-learn (`pip install -e ".[libraries]"`);
torch is measured when it is installed, and its rows are left out otherwise.

Every object is made inside `with nn.on_node(0):` from inputs made outside it
(NumPy's default allocator), so a placed result is memory the library allocated
inside the scope. For each one the script finds the array that owns the memory
(walking `.base`; a pandas column's `to_numpy()`, an Arrow buffer, a tensor's
`.numpy()`) and asks two things:

- `handler`: `get_handler_name` of the owning array: the NEP 49 handler that
  allocated it ("numa_numpy", NumPy's "default_allocator", or none when the
  owner is not a NumPy array: the library's own allocator);
- `requested`: `nn.placement(x).requested`, what numa_numpy's allocator was asked
  for the address (None: not numa_numpy's memory), and `kernel`, the policy the
  kernel holds for the range (`get_mempolicy`).

"placed" means `requested` is the scope's policy. The second half runs the
cases that are not placed again with their workaround: `nn.propagate` for joblib
threads, `numa-numpy run --policy bind:0` for loky's worker processes (the
script runs itself under it, `--child`), `nn.numa_array` copies for memory a
library allocates itself. The runner always exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import numa_numpy as nn

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name  # type: ignore[no-redef]

SCOPE = nn.as_policy("bind:0")  # what `nn.on_node(0)` asks for
THREAD = "another thread, without the scope (NumPy keeps the handler per thread)"
PROCESS = "another process, without the scope"
RECEIVED = "a view of the bytes received from the worker (owner: memoryview)"


@dataclass
class Row:
    library: str
    case: str
    placed: bool
    handler: str
    requested: str
    kernel: str
    why: str
    workaround: str = ""


def owner(a: np.ndarray) -> np.ndarray:
    """The array at the end of the `.base` chain: the one whose handler allocated
    the memory (when it owns it)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def probe(library: str, case: str, x: Any, why: str = "", workaround: str = "") -> Row:
    """Where `x`'s memory comes from: its owner's handler, numa_numpy's record, the
    kernel's policy. `why` overrides the mechanism read from the handler."""
    if isinstance(x, np.ndarray):
        top = owner(x)
        handler = get_handler_name(top)
        foreign = None if top.base is None else type(top.base).__name__
    else:  # a buffer (an Arrow buffer): no NumPy handler at all
        handler, foreign = None, type(x).__name__
    where = nn.placement(x)
    placed = where.requested == SCOPE or where.policy == SCOPE
    if not why:
        if handler == "numa_numpy":
            why = "NumPy's allocator, inside the scope"
        elif placed:
            why = f"wraps memory NumPy allocated inside the scope (owner: {foreign})"
        elif foreign is not None:
            why = f"the library's own allocator (owner: {foreign})"
        else:
            why = "NumPy's allocator, outside the scope"
    return Row(
        library,
        case,
        placed,
        str(handler),
        str(where.requested),
        str(where.policy),
        why,
        workaround,
    )


def pandas_rows(n: int) -> list[Row]:
    import pandas as pd

    rng = np.random.default_rng(0)
    f, i, k = rng.random(n), np.arange(n), np.arange(n) % 10
    words = [f"w{j % 1000}" for j in range(n)]
    with nn.on_node(0):
        df = pd.DataFrame({"f": f, "i": i, "k": k, "s": words})
        obj = pd.Series(words, dtype=object)
        arrow = pd.Series(f, dtype="float64[pyarrow]")
        rows = [
            probe("pandas", "float column", df["f"].to_numpy()),
            probe("pandas", "int column", df["i"].to_numpy()),
        ]
        for blk in df._mgr.blocks:
            if isinstance(blk.values, np.ndarray):
                rows.append(
                    probe("pandas", f"block {blk.values.dtype} {blk.values.shape}", blk.values)
                )
        rows += [
            probe("pandas", "groupby().sum() column", df.groupby("k")[["f"]].sum()["f"].to_numpy()),
            probe("pandas", "sort_values() column", df.sort_values("f")["f"].to_numpy()),
            probe("pandas", "to_numpy() of float+int", df[["f", "i"]].to_numpy()),
            probe(
                "pandas",
                "to_numpy() of float+str (object)",
                df[["f", "s"]].to_numpy(),
                why="NumPy's allocator for the pointers; the str objects: Python's",
            ),
            probe(
                "pandas",
                "object column (pointers)",
                obj.to_numpy(),
                why="NumPy's allocator for the pointers; the str objects: Python's",
            ),
            probe(
                "pandas",
                f"default string column ({df['s'].dtype}) data",
                _arrow_buffer(df["s"].array),
            ),
            probe("pandas", "float64[pyarrow] column data", _arrow_buffer(arrow.array)),
            probe("pandas", "float64[pyarrow] to_numpy()", arrow.to_numpy()),
        ]
    return rows


def _arrow_buffer(array: Any) -> Any:
    """The last (data) buffer of an Arrow-backed pandas array's first chunk."""
    chunked = array._pa_array
    return chunked.chunk(0).buffers()[-1]


def make(x: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(x)


def make_and_ask(x: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Run in a loky worker: the result, and what numa_numpy and the kernel say
    about it there."""
    out = make(x)
    where = nn.placement(out)
    return out, (str(where.requested), str(where.policy))


def sklearn_rows(n: int) -> list[Row]:
    from joblib import Parallel, delayed
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = rng.random((n // 10, 8))
    y = x @ np.arange(8.0) + rng.random(n // 10)
    with nn.on_node(0):
        scaled = make(x)
        coef = LinearRegression().fit(x, y).coef_
        km = KMeans(n_clusters=4, n_init=1, random_state=0).fit(x)
        forest = RandomForestRegressor(n_estimators=2, max_depth=4, random_state=0).fit(x, y)
        value = forest.estimators_[0].tree_.value
        threads = Parallel(n_jobs=2, backend="threading")(delayed(make)(x) for _ in range(2))
        propagated = Parallel(n_jobs=2, backend="threading")(
            delayed(nn.propagate(make))(x) for _ in range(2)
        )
        procs = Parallel(n_jobs=2)(delayed(make_and_ask)(x) for _ in range(2))
    rows = [
        probe("scikit-learn", "StandardScaler output", scaled),
        probe("scikit-learn", "LinearRegression coef_", coef),
        probe("scikit-learn", "KMeans labels_", km.labels_),
        probe("scikit-learn", "KMeans cluster_centers_", km.cluster_centers_),
        probe("scikit-learn", "RandomForest tree_.value", value),
        probe("joblib", "threading backend result", threads[0], why=THREAD),
        probe("joblib", "loky result, in the parent", procs[0][0], why=RECEIVED),
        _told("joblib", "loky result, in the worker", procs[0][1], PROCESS),
        probe(
            "joblib",
            "threading backend, delayed(nn.propagate(f))",
            propagated[0],
            workaround="nn.propagate",
        ),
        probe(
            "scikit-learn",
            "RandomForest tree_.value, nn.numa_array copy",
            nn.numa_array(value, node=0),
            workaround="nn.numa_array",
        ),
        probe(
            "joblib",
            "loky result, nn.numa_array copy in the parent",
            nn.numa_array(procs[0][0], node=0),
            workaround="nn.numa_array",
        ),
    ]
    return rows


def _told(library: str, case: str, told: tuple[str, str], why: str, workaround: str = "") -> Row:
    """A row for memory another process measured (it sent `requested` and the
    kernel's policy back)."""
    placed = str(SCOPE) in told
    return Row(library, case, placed, "-", told[0], told[1], why, workaround)


def loky_child() -> list[Row]:
    """Under `numa-numpy run --policy bind:0`: every thread starts under the
    policy, and loky's workers inherit it from the environment."""
    from joblib import Parallel, delayed

    x = np.random.default_rng(0).random((1000, 8))
    threads = Parallel(n_jobs=2, backend="threading")(delayed(make)(x) for _ in range(2))
    procs = Parallel(n_jobs=2)(delayed(make_and_ask)(x) for _ in range(2))
    how = "numa-numpy run --policy bind:0"
    return [
        probe(
            "joblib",
            "threading backend result",
            threads[0],
            workaround=how,
            why="every thread of the program starts under the policy",
        ),
        _told(
            "joblib",
            "loky result, in the worker",
            procs[0][1],
            "the worker started with NUMA_NUMPY_POLICY",
            how,
        ),
        probe("joblib", "loky result, in the parent", procs[0][0], why=RECEIVED, workaround=how),
    ]


def torch_rows(n: int) -> list[Row]:
    import torch

    base = np.random.default_rng(0).random(n)
    with nn.on_node(0):
        placed = nn.numa_array(base)
        shared = torch.from_numpy(placed)
        own = torch.ones(n, dtype=torch.float64)
    copy = torch.from_numpy(nn.numa_array(own.numpy(), node=0))
    return [
        probe("torch", "torch.from_numpy(placed).numpy()", shared.numpy()),
        probe("torch", "torch.ones(n).numpy()", own.numpy()),
        probe(
            "torch",
            "from_numpy(nn.numa_array(t.numpy()))",
            copy.numpy(),
            workaround="nn.numa_array",
        ),
    ]


def run_child(n: int) -> list[Row]:
    cmd = [
        sys.executable,
        "-m",
        "numa_numpy",
        "run",
        "--policy",
        "bind:0",
        "--",
        __file__,
        "--child",
        "--n",
        str(n),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return []
    return [Row(**r) for r in json.loads(out.stdout.splitlines()[-1])]


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in (
        "numpy",
        "numa_numpy",
        "pandas",
        "pyarrow",
        "scikit-learn",
        "joblib",
        "scipy",
        "torch",
    ):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    found["memory nodes"] = str(len(nn.topology().memory_nodes))
    return found


def markdown(rows: list[Row], facts: dict[str, str]) -> str:
    lines = [
        ", ".join(f"{k} {v}" for k, v in facts.items()),
        "",
        "| library | case | placed | handler | requested | kernel | why | workaround |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.library} | {r.case} | {'yes' if r.placed else 'no'} | {r.handler} "
            f"| {r.requested} | {r.kernel} | {r.why} | {r.workaround or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="rows per column (default 100000)")
    ap.add_argument("--json", help="write the rows and versions as JSON")
    ap.add_argument("--markdown", help="write the table as Markdown")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps([asdict(r) for r in loky_child()]))
        return
    cases: list[Callable[[int], list[Row]]] = [pandas_rows, sklearn_rows, torch_rows]
    rows: list[Row] = []
    for case in cases:
        try:
            rows += case(args.n)
        except ImportError as e:
            print(f"{case.__name__}: skipped ({e})", file=sys.stderr)
    rows += run_child(args.n)
    facts = versions()
    table = markdown(rows, facts)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"versions": facts, "rows": [asdict(r) for r in rows]}, fh, indent=1)


if __name__ == "__main__":
    main()
