"""Run a script unmodified with PNumPy's threaded ufunc loops switched on.

    python pnumpy_run.py SCRIPT

`pnumpy.initialize()` hooks NumPy's loops; PNumPy's calling thread takes work
blocks too, so `cpu_count - 1` workers make one thread per CPU.
"""

import os
import runpy
import sys

import pnumpy

if __name__ == "__main__":
    pnumpy.initialize()
    pnumpy.thread_enable()
    pnumpy.thread_setworkers(max(1, (os.cpu_count() or 1) - 1))
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
