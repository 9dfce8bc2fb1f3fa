"""numexpr: the same expressions through `numexpr.evaluate`, one thread per CPU.

Run with plain `python`; the operands, timing and output are plain.py's.
"""

import os
import sys

import numexpr as ne

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain import measure  # noqa: E402

EXPRESSIONS = {
    "axpy": lambda a, b: ne.evaluate("a + 3*b"),
    "hypot": lambda a, b: ne.evaluate("sqrt(a*a + b*b)"),
    "sum": lambda a, b: ne.evaluate("sum(a)"),
    "mul": lambda a, b: ne.evaluate("a*b"),
}

if __name__ == "__main__":
    ne.set_num_threads(os.cpu_count() or 1)
    measure(EXPRESSIONS, extra={"numexpr": ne.__version__, "threads": ne.get_num_threads()})
