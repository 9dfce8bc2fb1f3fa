"""What a runner did to a plain NumPy process: is numa_numpy loaded, and what
does `numa_numpy.parallel_info()` say (when it exists)? Prints one JSON line."""

import json
import sys

import numpy as np

np.ones(1024) + 1.0  # one ufunc call, as the scripts make
module = sys.modules.get("numa_numpy")
info = None
if module is not None and hasattr(module, "parallel_info"):
    try:
        info = module.parallel_info()
    except Exception as exc:  # report it, the benchmark decides
        info = f"parallel_info() raised {exc!r}"
print(json.dumps({"loaded": module is not None, "parallel_info": info}, default=repr))
