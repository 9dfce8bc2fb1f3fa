"""The compiled extension, loaded once. Only numa_numpy's modules import this."""

from ._numa import ffi, lib

__all__ = ["ffi", "lib"]
