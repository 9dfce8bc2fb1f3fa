"""Fuzz attach_shared with forged segments (issue 22, "untrusted bytes").

A segment in /dev/shm is bytes any process of the user can write. Take valid
segments made with the public API, mutate their headers and bodies (byte
flips, truncations, extensions, fixed fields set to edge values, metadata
fields replaced with random JSON of any type, raw junk), write each as a new
segment and attach it: every input must give an array that can be read,
pickled and asked for its layout, or a `SharedSegmentError` naming the field;
never a crash, another exception, or a mapping or descriptor left behind.

Hypothesis runs in a child process (this file as a script), so a segfault is a
failed test, not a dead pytest; ``--last`` keeps the input being tried, to
replay what crashed. By hand, longer::

    python tests/ranges/test_shared_fuzz.py --examples 3000
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

from numa_numpy._ranges import shared as _shared

SHM = Path("/dev/shm")
FIXED = struct.Struct("<8sIIQQQQQQ")
FIELDS = ["magic", "version", "meta_bytes", "data_offset", "data_bytes", "pid", "started",
          "namespace", "reserved"]


def _bases(nn, np):
    """Valid segments of several kinds: (label, bytes); their arrays stay alive
    (and are unlinked at exit) in the returned list."""
    made = [
        ("float", nn.shared_zeros(100, node=0)),
        ("structured_f", nn.shared_zeros(
            (3, 2), np.dtype([(("title", "x"), "<i2"), ("y", ">f8", (2, 3)),
                              ("z", [("s", "S3"), ("u", "<U2")])], align=True),
            order="F", node=0)),
        ("datetime", nn.shared_zeros((3, 4), "<M8[ns]", node=0)),
        ("empty", nn.shared_zeros((0, 5), "<c16", policy=nn.Interleave())),
        ("scalar", nn.shared_zeros((), "<U3", node=0)),
        ("partitioned", nn.shared_zeros((64, 8), "<i8", policy=nn.Partitioned(0))),
        ("flagged", nn.shared_zeros(10, "?", policy=nn.Bind(0, static_nodes=True))),
    ]
    out = []
    for label, a in made:
        raw = np.frombuffer(_shared._segment_of(a), np.uint8)
        start = a.__array_interface__["data"][0] - raw.__array_interface__["data"][0]
        raw[start:start + a.nbytes] = np.arange(a.nbytes).astype(np.uint8) | 1  # no zeros
        del raw
        out.append((label, (SHM / a.shared_name).read_bytes()))
    return made, out


def _json_values(st):
    leaves = (st.none() | st.booleans()
              | st.integers(-(1 << 70), 1 << 70)
              | st.sampled_from([0, 1, -1, 2, 63, 64, 65, 4095, 4096, 4097, 1 << 31, 1 << 32,
                                 1 << 62, 1 << 63, (1 << 64) - 1, 1 << 64])
              | st.floats(allow_nan=True, allow_infinity=True)
              | st.text(max_size=12)
              | st.sampled_from(["C", "F", "K", "<f8", "|O", "O", "T", "|T16", "<M8[ns]",
                                 "|V9999999999", "<U99999999", "bind:0", "partitioned:0-3",
                                 "bind:0-1023", "interleave", "bind:0,static_nodes",
                                 "bind:0,home=0", "float64", "\0", "\udcff"]))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["subarray", "shape", "fields", "name", "dtype",
                                           "offset", "title", "itemsize", "aligned", "x"])
                          | st.text(max_size=4), inner, max_size=4),
        max_leaves=12,
    )


def _paths(tree, path=()):
    """Every place in a JSON tree: (path, value)."""
    yield path, tree
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _paths(value, (*path, i))


def _replace(tree, path, value, delete=False):
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    if delete and not rest:
        del copy[head]
        return copy
    copy[head] = _replace(tree[head], rest, value, delete)
    return copy


def _page_up(n):
    return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


def _mutations(st, base):
    """Strategies, each turning a valid segment's bytes into a forged one."""
    length = len(base)
    meta_bytes = FIXED.unpack_from(base, 0)[2]
    meta = json.loads(base[64:64 + meta_bytes])
    header_end = 64 + meta_bytes
    places = list(_paths(meta))

    def flips(changes):
        raw = bytearray(base)
        for where, value in changes:
            raw[where % length] = value
        return bytes(raw)

    header_flip = st.lists(st.tuples(st.integers(0, header_end + 8), st.integers(0, 255)),
                           min_size=1, max_size=8).map(flips)
    anywhere_flip = st.lists(st.tuples(st.integers(0, length - 1), st.integers(0, 255)),
                             min_size=1, max_size=4).map(flips)
    truncate = st.integers(0, length - 1).map(lambda n: base[:n])
    extend = st.binary(min_size=1, max_size=2 * mmap.PAGESIZE).map(lambda b: base + b)
    edges = st.sampled_from([0, 1, 63, 64, 65, meta_bytes - 1, meta_bytes + 1,
                             mmap.PAGESIZE - 1, mmap.PAGESIZE, mmap.PAGESIZE + 1,
                             length - 1, length, length + 1, 1 << 31, (1 << 32) - 1,
                             1 << 63, (1 << 64) - 1]) | st.integers(0, (1 << 64) - 1)

    def set_field(args):
        index, value = args
        fmt = "<I" if index in (1, 2) else "<Q"
        raw = bytearray(base)
        offset = 8 + (0 if index == 1 else 4 if index == 2 else 8 * (index - 2))
        struct.pack_into(fmt, raw, offset, value % (1 << (32 if fmt == "<I" else 64)))
        return bytes(raw)

    fixed_field = st.tuples(st.integers(1, 8), edges).map(set_field)

    def rewrite(new_meta_blob, keep_offset):
        """The segment with new metadata; the data offset recomputed (a header
        that is consistent but says something else) or kept."""
        fields = list(FIXED.unpack_from(base, 0))
        old_offset = fields[3]
        fields[2] = len(new_meta_blob)
        if not keep_offset:
            fields[3] = _page_up(64 + len(new_meta_blob))
        head = FIXED.pack(*fields) + new_meta_blob
        data = base[old_offset:]
        return head.ljust(fields[3], b"\0")[: max(fields[3], len(head))] + data

    def json_field(args):
        (where, value, delete, keep) = args
        path, _old = places[where % len(places)]
        changed = _replace(meta, path, value, delete and bool(path))
        return rewrite(json.dumps(changed).encode(), keep)

    json_mutation = st.tuples(st.integers(0, len(places) - 1), _json_values(st),
                              st.booleans(), st.booleans()).map(json_field)
    raw_meta = st.tuples(st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
                         st.booleans()).map(lambda args: rewrite(*args))
    return st.one_of(header_flip, anywhere_flip, truncate, extend, fixed_field,
                     json_mutation, json_mutation, raw_meta)


def _offset(a):
    """Where an array's data starts in its segment."""
    from numa_numpy._ranges.shared import _segment_of, buffer_address

    return a.__array_interface__["data"][0] - buffer_address(_segment_of(a))


def _held(nn, tag):
    """This process's descriptors and mappings of /dev/shm files starting with `tag`."""
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += os.readlink(f"/proc/self/fd/{fd}").startswith(str(SHM / tag))
        except OSError:
            pass
    maps = sum(line.split(" ")[-1].startswith(str(SHM / tag))
               for line in Path("/proc/self/maps").read_text().splitlines())
    return fds, maps


def run(examples, seed, last, hang_after=None, any_numa_error=False, shrink=False):
    import faulthandler
    import pickle

    import numpy as np
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as set_seed
    from hypothesis import strategies as st

    import numa_numpy as nn
    from numa_numpy._ranges.shared import partition_of

    faulthandler.enable()
    if hang_after:  # a hang is a failure too: dump every thread's stack and exit
        faulthandler.dump_traceback_later(hang_after, exit=True)
    accepted = nn.NumaError if any_numa_error else nn.SharedSegmentError
    _keep, bases = _bases(nn, np)
    tag = f"nn_fuzz_{os.getpid()}_"
    counter = iter(range(1 << 62))
    outcomes: dict[str, int] = {}

    strategy = st.sampled_from(bases).flatmap(
        lambda kb: st.tuples(st.just(kb[0]), st.lists(_mutations(st, kb[1]), min_size=1,
                                                        max_size=1)))

    # shrinking these inputs takes minutes: by default a failure reports the input as found
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]

    @set_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=phases,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def fuzz(case):
        label, (content,) = case
        name = f"{tag}{next(counter)}"
        if last:
            Path(last).write_bytes(content)
        (SHM / name).write_bytes(content)
        try:
            try:
                a = nn.attach_shared(name)
            except accepted as exc:
                field = getattr(exc, "field", type(exc).__name__)
                assert any_numa_error or (exc.name == name and isinstance(field, str)), exc
                key = f"refused {field}"
            else:
                # an array: every element can be read, copied, pickled, and its layout asked
                a.tobytes()
                repr(a)
                b = pickle.loads(pickle.dumps(a))  # the same memory, through a new mapping
                # (not compared by tobytes: the holes of a structured dtype are not copied)
                assert (b.dtype, b.shape, b.strides, _offset(b)) == (
                    a.dtype, a.shape, a.strides, _offset(a)), (label, a.dtype, a.shape)
                b.tobytes()
                partition_of(a)
                sum(1 for _ in np.nditer(a, flags=["refs_ok", "zerosize_ok"]))
                key = f"attached {label}"
                del a, b
        finally:
            (SHM / name).unlink()
        held = _held(nn, tag)
        if held != (0, 0):  # say whether a reference cycle held it (gone after a collection)
            import gc

            gc.collect()
            raise AssertionError(f"{name} ({label}): {held} descriptors and mappings left "
                                 f"behind; after gc.collect(): {_held(nn, tag)}")
        outcomes[key] = outcomes.get(key, 0) + 1

    fuzz()
    leftovers = sorted(p.name for p in SHM.iterdir() if p.name.startswith(tag))
    assert not leftovers, leftovers
    print(json.dumps({"examples": sum(outcomes.values()), "outcomes": outcomes}))


def test_forged_segments_attach_or_raise_our_error(tmp_path):
    """A few seconds of fuzzing in a child; a longer run by hand (module docstring)."""
    seed = random.randrange(1 << 32)
    last = tmp_path / "last-input"
    out = subprocess.run(
        [sys.executable, "-X", "faulthandler", __file__, "--examples", "120",
         "--seed", str(seed), "--last", str(last), "--hang-after", "240"],
        capture_output=True, text=True, timeout=300,
    )
    detail = (f"seed {seed}, rc {out.returncode}; last input (hex) "
              f"{last.read_bytes()[:256].hex() if last.exists() else '-'}\n"
              f"{out.stdout[-4000:]}{out.stderr[-6000:]}")
    assert out.returncode == 0, detail
    report = json.loads(out.stdout.strip().splitlines()[-1])
    outcomes = report["outcomes"]
    assert report["examples"] >= 100, detail
    # the fuzzer reached both sides: arrays made, and refusals for several fields
    assert any(k.startswith("attached") for k in outcomes), detail
    assert len([k for k in outcomes if k.startswith("refused")]) >= 5, detail
    assert not [p for p in SHM.iterdir() if p.name.startswith("nn_fuzz_")
                and p.name.split("_")[2] == str(os.getpid())]


def test_a_forged_pickled_view_lies_inside_the_data_or_is_refused():
    """Unpickling a SharedArray view takes an offset, shape, strides and dtype
    from the pickle: any of them may be forged (in process: a view can only be
    an array NumPy checked against the data region, never over the header)."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    import numa_numpy as nn
    from numa_numpy._ranges.shared import _attach_view, _segment_of

    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # NumPy 1
        byte_bounds = np.byte_bounds

    a = nn.shared_zeros(1000, "<i8", node=0)
    segment = _segment_of(a)
    start = a.__array_interface__["data"][0] - _shared.buffer_address(segment)
    data = (start, start + _shared._header(segment).data_bytes)

    @settings(max_examples=150, deadline=None, database=None)
    @given(offset=st.integers(-(1 << 14), 1 << 14) | st.integers(-(1 << 70), 1 << 70),
           shape=st.lists(st.integers(-2, 600), max_size=3),
           strides=st.lists(st.integers(-(1 << 14), 1 << 14), max_size=3),
           dtype=st.sampled_from(["u1", "<f8", "<U3", "|O", [("a", "u1"), ("b", "O")]]))
    def attach(offset, shape, strides, dtype):
        try:
            v = _attach_view(a.shared_name, start + offset, tuple(shape), tuple(strides),
                             np.dtype(dtype))
        except nn.SharedSegmentError as exc:
            assert exc.field in ("view", "shape"), exc
            return
        here = _shared.buffer_address(_segment_of(v))  # its own mapping of the name
        low, high = byte_bounds(v)
        assert data[0] <= low - here and (high - here <= data[1] or v.size == 0)
        v.tobytes()

    attach()
    a.unlink()


def test_the_mutations_change_what_they_say():
    # the fuzzer's own pieces: a path replaced, a key deleted, the offset recomputed
    tree = {"a": [1, {"b": 2}], "c": 3}
    assert dict(_paths(tree))[("a", 1, "b")] == 2
    assert _replace(tree, ("a", 1, "b"), "x") == {"a": [1, {"b": "x"}], "c": 3}
    assert _replace(tree, ("c",), None, delete=True) == {"a": [1, {"b": 2}]}
    assert tree == {"a": [1, {"b": 2}], "c": 3}
    assert _page_up(64 + mmap.PAGESIZE - 64) == mmap.PAGESIZE
    assert _page_up(64 + mmap.PAGESIZE - 63) == 2 * mmap.PAGESIZE
    assert math.prod([]) == 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--last", default=None, help="file to keep the input being tried")
    parser.add_argument("--hang-after", type=float, default=None,
                        help="seconds after which a run counts as hung (stacks dumped)")
    parser.add_argument("--any-numa-error", action="store_true",
                        help="accept any NumaError (to compare with older versions)")
    parser.add_argument("--shrink", action="store_true", help="shrink a failing input")
    args = parser.parse_args()
    run(args.examples, args.seed, args.last, args.hang_after, args.any_numa_error, args.shrink)
