"""The memory numa_numpy's allocator keeps: its pool, cache and statistics.

What CuPy keeps under ``cupy.cuda`` (``MemoryPool``,
``get_default_memory_pool``) is here: the process's one pool of NUMA-placed
memory, the cache of freed blocks it reuses (its budget and decay time), and
the figures per policy and per node. Every name is also importable from
``numa_numpy`` itself.

>>> import numa_numpy as nn
>>> from numa_numpy import memory
>>> pool = memory.get_memory_pool()
>>> a = nn.numa_zeros(1 << 20, node=0)
>>> pool.used_bytes() >= a.nbytes
True
>>> del a                                    # freed into the cache
>>> memory.set_cache_limit(64 << 20)         # keep at most 64 MiB of freed blocks
>>> pool.get_cache_limit()
67108864
>>> memory.free_all_blocks() >= 0            # give the cache back now
True
>>> memory.set_cache_limit()                 # back to the default
"""

from __future__ import annotations

from ._alloc.cache import (
    MemoryPool,
    forget_handlers,
    free_all_blocks,
    get_memory_pool,
    memory_limit,
    memory_stats,
    node_memory_stats,
    set_cache_decay,
    set_cache_limit,
)

__all__ = [
    "MemoryPool",
    "get_memory_pool",
    "memory_stats",
    "node_memory_stats",
    "set_cache_limit",
    "set_cache_decay",
    "memory_limit",
    "free_all_blocks",
    "forget_handlers",
]
