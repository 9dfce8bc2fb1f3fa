"""numa_numpy.memory, the public face of the pool: what it exports, and the
pool's cache limit under its new name and its old, deprecated one."""

from __future__ import annotations

import inspect
import warnings

import pytest

import numa_numpy as nn
from numa_numpy import memory

MiB = 1 << 20


@pytest.fixture
def default_limit():
    """Tests change the process's cache budget: put the default back."""
    yield
    nn.set_cache_limit()


def test_all_names_what_the_module_exports():
    assert len(set(memory.__all__)) == len(memory.__all__)
    for name in memory.__all__:
        assert hasattr(memory, name), name
    namespace: dict[str, object] = {}
    exec("from numa_numpy.memory import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(memory.__all__)


def test_the_face_exports_the_same_objects_as_the_package():
    for name in memory.__all__:
        assert getattr(memory, name) is getattr(nn, name), name
        assert name in nn.__all__, name


def test_the_face_holds_the_pool_and_its_cache():
    expected = {
        "MemoryPool", "get_memory_pool", "memory_stats", "node_memory_stats",
        "set_cache_limit", "set_cache_decay", "free_all_blocks", "forget_handlers",
        "memory_limit",
    }
    assert set(memory.__all__) == expected
    assert isinstance(memory.get_memory_pool(), memory.MemoryPool)


def test_the_face_defines_nothing_of_its_own():
    own = [
        name
        for name, value in vars(memory).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == memory.__name__
    ]
    assert own == []
    assert memory.__doc__ and ">>> " in memory.__doc__


def test_set_cache_limit_is_the_budget_of_the_cache(default_limit):
    pool = nn.get_memory_pool()
    pool.set_cache_limit(96 * MiB)
    assert pool.get_cache_limit() == nn.memory_stats()["process"]["budget"] == 96 * MiB
    nn.set_cache_limit(80 * MiB)  # the module-level function: the same budget
    assert pool.get_cache_limit() == 80 * MiB
    pool.set_cache_limit()
    assert pool.get_cache_limit() == nn.memory_stats()["process"]["budget"] > 0
    with pytest.raises(nn.CacheSettingError):
        pool.set_cache_limit(-1)
    assert f"limit={pool.get_cache_limit()}>" in repr(pool)


RENAMED = [("set_limit", "set_cache_limit"), ("get_limit", "get_cache_limit")]


@pytest.mark.parametrize("old, new", RENAMED)
def test_the_old_names_warn_naming_the_new_one(old, new, default_limit):
    pool = nn.get_memory_pool()
    args = (64 * MiB,) if old == "set_limit" else ()
    with pytest.warns(DeprecationWarning) as caught:
        line = inspect.currentframe().f_lineno + 1
        getattr(pool, old)(*args)
    assert len(caught) == 1
    warning = caught[0]
    assert warning.category is DeprecationWarning
    assert f"MemoryPool.{new}()" in str(warning.message) and old in str(warning.message)
    # stacklevel: the warning points at the caller's line, not at numa_numpy
    assert warning.filename == __file__ and warning.lineno == line


def test_the_old_names_do_what_the_new_ones_do(default_limit):
    pool = nn.get_memory_pool()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pool.set_limit(48 * MiB)
        assert pool.get_limit() == pool.get_cache_limit() == 48 * MiB
        assert nn.memory_stats()["process"]["budget"] == 48 * MiB
        pool.set_limit(None)
        assert pool.get_limit() == pool.get_cache_limit()
        with pytest.raises(nn.CacheSettingError):
            pool.set_limit(-1)


def test_the_new_names_do_not_warn(default_limit):
    pool = nn.get_memory_pool()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool.set_cache_limit(32 * MiB)
        assert pool.get_cache_limit() == 32 * MiB
        repr(pool)
