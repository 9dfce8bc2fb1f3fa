import multiprocessing as mp
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import numa_numpy as nn


def _fill_in_child(name, value):
    a = nn.attach_shared(name)
    a[:] = value
    return int(os.getpid())


def _row_sum(a, i):  # receives a pickled SharedArray: attaches, no copy
    a[i] += 1
    return float(a[i].sum()), a.shared_name


def test_create_attach_and_see_the_same_memory():
    a = nn.shared_zeros((4, 5), np.int32, node=0, prefault="touch")
    b = nn.attach_shared(a.shared_name)
    b[2, 3] = 9
    assert a[2, 3] == 9 and b.dtype == np.int32 and b.shape == (4, 5)
    where = nn.placement(a)
    assert where.policy == nn.Bind(0) and where.pages == {0: where.total_pages}


def test_processes_write_through_the_name():
    a = nn.shared_zeros(1000, node=0)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_fill_in_child, args=(a.shared_name, 3.0))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert (a == 3.0).all()


def test_process_pool_receives_the_array_not_a_copy():
    a = nn.shared_zeros((4, 100), node=0)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(_row_sum, [a] * 4, range(4)))
    assert [r[0] for r in results] == [100.0] * 4
    assert {r[1] for r in results} == {a.shared_name}
    assert (a == 1).all()  # the workers wrote into our memory


def test_views_pickle_as_views():
    a = nn.shared_zeros((6, 8), np.float32, node=0)
    a[:] = np.arange(48).reshape(6, 8)
    v = a[::-2, 1:5]
    w = pickle.loads(pickle.dumps(v))
    np.testing.assert_array_equal(w, v)
    w[0, 0] = -1
    assert a[5, 1] == -1
    assert type(a + 1) is np.ndarray  # ufunc results are ordinary arrays
    assert type(pickle.loads(pickle.dumps(a + 1))) is np.ndarray


def test_structured_and_fortran():
    dt = np.dtype([("x", "<i2"), ("y", "<f8", (2,))])
    a = nn.shared_zeros((3, 2), dt, order="F", node=0)
    b = nn.attach_shared(a.shared_name)
    assert b.dtype == dt and b.flags.f_contiguous


def test_creator_unlinks_attachers_do_not():
    a = nn.shared_zeros(10, name=f"nn_test_{os.getpid()}", node=0)
    path = Path("/dev/shm") / a.shared_name
    assert path.exists()
    b = nn.attach_shared(a.shared_name)
    with pytest.raises(nn.NumaError, match="only the process that created"):
        pickle.loads(pickle.dumps(b)).unlink() if False else _attached_unlink(a.shared_name)
    del b
    a.unlink()
    assert not path.exists()
    a[:] = 1  # the mapping outlives the name
    assert a.sum() == 10


def _attached_unlink(name):
    from numa_numpy import _shared
    owner = _shared._created.pop(name)
    try:
        nn.attach_shared(name).unlink()
    finally:
        _shared._created[name] = owner


def test_name_released_when_the_last_array_dies():
    import gc
    a = nn.shared_zeros(10, node=0)
    path = Path("/dev/shm") / a.shared_name
    view = a[2:]
    del a
    gc.collect()
    assert path.exists()  # the view keeps it
    del view
    gc.collect()
    assert not path.exists()


def test_bad_names():
    with pytest.raises(nn.NumaError, match="no shared memory named"):
        nn.attach_shared("numa_numpy_does_not_exist")
    a = nn.shared_zeros(1, node=0)
    with pytest.raises(nn.NumaError, match="already exists"):
        nn.shared_zeros(1, name=a.shared_name, node=0)
    with pytest.raises(nn.NumaError, match="invalid"):
        nn.shared_zeros(1, name="a/b", node=0)
    with pytest.raises(nn.InvalidNodeError):
        nn.shared_zeros(1, node=42)
