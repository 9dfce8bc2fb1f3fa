"""Today's node team: partitioned operands, the same NumPy expressions inside
`with numa_numpy.node_team():` (elementwise ufuncs and reductions run block by
block in the workers of each block's node).

Not an unmodified script: this is what a user writes today to get the team.
The operands hold plain.py's values; timing and output are plain.py's.
"""

import os
import sys

import numa_numpy as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain import EXPRESSIONS, measure, operands  # noqa: E402


def partitioned_operands(n):
    out = []
    for values in operands(n):
        arr = nn.partitioned_empty(n)
        arr[...] = values
        out.append(arr)
    return out


if __name__ == "__main__":
    with nn.node_team() as team:
        measure(
            EXPRESSIONS,
            make=partitioned_operands,
            extra={"team": repr(team), "threads": sum(team.threads.values())},
        )
