# The cffi extension built by _build_cffi.py; its C interface is _csrc/numa_numpy.cdef.
from typing import Any

ffi: Any
lib: Any
