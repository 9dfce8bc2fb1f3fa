"""The NUMA keywords as one bundle (numa_numpy._policies.options): their names,
types, defaults and coercion are written once, and every constructor, scope,
region, shared array, partitioned constructor and the dask plugin takes them
through it, showing them one by one in its signature all the same."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import numa_numpy as nn
from numa_numpy._policies import options as o
from numa_numpy._policies.docstrings import document

NUMA = ("node", "policy", "strict", "huge_pages", "prefault", "thread")
ALLOCATION = {"strict", "huge_pages", "prefault"}
PLACEMENT = {"node", "policy"} | ALLOCATION
SCOPE = ALLOCATION | {"thread"}
SHARED = PLACEMENT - {"huge_pages"}


def keys(bundle) -> set[str]:
    return set(bundle.__required_keys__ | bundle.__optional_keys__)


# -- the bundle itself ---------------------------------------------------------


def test_each_allocation_keyword_is_a_key_a_field_and_a_coercion():
    fields = [f.name for f in dataclasses.fields(o.AllocationOptions)]
    assert fields[0] == "policy"
    assert keys(o.AllocationKeywords) == set(fields[1:]) == set(o._COERCE) == ALLOCATION
    assert o.DEFAULTS == {f.name: f.default for f in dataclasses.fields(o.AllocationOptions)[1:]}
    assert o.DEFAULTS == {
        "strict": False, "huge_pages": nn.HugePages.AUTO, "prefault": nn.Prefault.NONE
    }


def test_the_bundles_are_built_from_the_allocation_keywords():
    assert keys(o.PlacementKeywords) == PLACEMENT
    assert keys(o.ScopeKeywords) == SCOPE
    # a shared segment is of base pages: every placement keyword but huge_pages
    assert keys(o.SharedPlacementKeywords) == keys(o.PlacementKeywords) - {"huge_pages"}
    for bundle in (o.PlacementKeywords, o.ScopeKeywords):
        assert keys(o.AllocationKeywords) <= keys(bundle)
    shared = o.SharedPlacementKeywords.__annotations__
    for name, annotation in o.PlacementKeywords.__annotations__.items():
        if name in shared:  # the same types
            assert repr(shared[name]).split(",")[0] == repr(annotation).split(",")[0]


def test_from_keywords_coerces_as_users_write_them():
    options = o.AllocationOptions.from_keywords("bind:0", "f", o.AllocationKeywords,
                                                strict=1, huge_pages=True, prefault="touch")
    assert options == o.AllocationOptions(nn.Bind(0), True, nn.HugePages.TRANSPARENT,
                                          nn.Prefault.TOUCH)
    assert o.AllocationOptions.from_keywords(nn.Bind(0)) == o.AllocationOptions(nn.Bind(0))
    assert o.AllocationOptions.from_keywords("local", "", o.AllocationKeywords,
                                             huge_pages=None, prefault=False) \
        == o.AllocationOptions(nn.Local(), huge_pages=nn.HugePages.NONE)
    assert options.keywords() == {"strict": True, "huge_pages": nn.HugePages.TRANSPARENT,
                                  "prefault": nn.Prefault.TOUCH}


def test_from_keywords_leaves_the_callers_own_keys_alone():
    options = o.AllocationOptions.from_keywords("bind:0", "on_node", o.ScopeKeywords,
                                                thread=True, strict=True)
    assert options == o.AllocationOptions(nn.Bind(0), strict=True)


def test_a_bad_value_is_the_same_error_as_before():
    with pytest.raises(nn.InvalidPolicyError, match=r"huge_pages='3mb': expected one of \['auto'"):
        o.AllocationOptions.from_keywords("bind:0", "", o.AllocationKeywords, huge_pages="3mb")
    with pytest.raises(nn.InvalidPolicyError, match=r"prefault='now': expected one of \['none'"):
        o.AllocationOptions.from_keywords("bind:0", "", o.AllocationKeywords, prefault="now")
    with pytest.raises(nn.InvalidPolicyError):  # huge_pages is checked before prefault
        o.AllocationOptions.from_keywords("bind:0", "", o.AllocationKeywords,
                                          prefault="now", huge_pages="3mb")


def test_an_unknown_keyword_is_a_type_error_naming_it_and_the_accepted_ones():
    with pytest.raises(TypeError) as info:
        o.AllocationOptions.from_keywords("bind:0", "numa_thing", o.PlacementKeywords, hugepages=1)
    assert str(info.value) == (
        "numa_thing() got an unexpected keyword argument 'hugepages' "
        "(its NUMA keywords: node, policy, strict, huge_pages, prefault)"
    )
    words = (r"^on_node\(\) got unexpected keyword arguments 'a', 'b' "
             r"\(its NUMA keywords: strict, huge_pages, prefault, thread\)")
    with pytest.raises(TypeError, match=words):
        o.check_keywords("on_node", {"a": 1, "strict": True, "b": 2}, o.ScopeKeywords)
    with pytest.raises(TypeError, match=r"^got an unexpected keyword argument 'x'"):
        o.AllocationOptions.from_keywords("bind:0", x=1)
    o.check_keywords("f", {"strict": True, "thread": False}, o.ScopeKeywords)  # no error


# -- every callable that takes them ----------------------------------------------


def _shared(make):
    def call(**kw):
        make(**kw).unlink()
    return call


def _region(**kw):
    nn.NumaRegion(4096, **kw).close()


def _with(func, *args):
    """`func` called with `args` and the keywords a test passes."""
    return lambda **kw: func(*args, **kw)


# name -> (callable, the NUMA keywords it shows, a call with extra keywords)
CALLABLES = {
    **{name: (getattr(nn, name), PLACEMENT, _with(getattr(nn, name), 3))
       for name in ("numa_empty", "numa_zeros", "numa_ones")},
    "numa_full": (nn.numa_full, PLACEMENT, _with(nn.numa_full, 3, 1.0)),
    **{name: (getattr(nn, name), PLACEMENT, _with(getattr(nn, name), [1, 2]))
       for name in ("numa_empty_like", "numa_zeros_like", "numa_ones_like", "numa_array")},
    "numa_full_like": (nn.numa_full_like, PLACEMENT, _with(nn.numa_full_like, [1], 2)),
    **{name: (getattr(nn, name), ALLOCATION, _with(getattr(nn, name), 3))
       for name in ("interleaved_empty", "interleaved_zeros", "interleaved_ones")},
    "interleaved_full": (nn.interleaved_full, ALLOCATION, _with(nn.interleaved_full, 3, 1.0)),
    "PolicyScope": (nn.PolicyScope, SCOPE, _with(nn.PolicyScope, "bind:0")),
    "policy": (nn.policy, SCOPE, _with(nn.policy, "bind:0")),
    "on_node": (nn.on_node, SCOPE, _with(nn.on_node, 0)),
    "interleaved": (nn.interleaved, SCOPE, _with(nn.interleaved)),
    # a region's node= is its own keyword beside its positional policy
    "NumaRegion": (nn.NumaRegion, ALLOCATION | {"node"}, _region),
    "shared_empty": (nn.shared_empty, SHARED, _shared(_with(nn.shared_empty, 3))),
    "shared_zeros": (nn.shared_zeros, SHARED, _shared(_with(nn.shared_zeros, 3))),
    # partitioned constructors: nodes= and policy= (a Partitioned) are their own
    **{name: (getattr(nn, name), ALLOCATION | {"policy"}, _with(getattr(nn, name), 3))
       for name in ("partitioned_empty", "partitioned_zeros", "partitioned_ones")},
    "partitioned_full": (nn.partitioned_full, ALLOCATION | {"policy"},
                         _with(nn.partitioned_full, 3, 1.0)),
}
BUNDLES = {
    "AllocationKeywords": ALLOCATION,
    "PlacementKeywords": PLACEMENT,
    "ScopeKeywords": SCOPE,
    "SharedPlacementKeywords": SHARED,
    "SharedKeywords": SHARED | {"name"},  # shared_zeros: shared_empty's name= as well
}
VALUES = {"node": 0, "policy": "bind:0", "strict": False, "huge_pages": "auto",
          "prefault": "none", "thread": False}


def _dask_plugin():
    dask = pytest.importorskip("numa_numpy.dask", exc_type=ImportError)
    return dask.NumaWorkerPlugin


def _entry(name):
    if name == "NumaWorkerPlugin":
        plugin = _dask_plugin()
        return plugin, ALLOCATION | {"policy"}, lambda **kw: plugin(0, **kw)
    return CALLABLES[name]


NAMES = [*CALLABLES, "NumaWorkerPlugin"]


def _functions(obj):
    """`obj`, or a class's own __new__ and __init__."""
    if not inspect.isclass(obj):
        return [obj]
    found = [vars(obj).get(method) for method in ("__new__", "__init__")]
    return [getattr(f, "__func__", f) for f in found if f is not None]


def _code_of(obj):
    """The function that really takes the keywords (a class's __new__ or __init__)."""
    for func in _functions(obj):
        if func.__code__.co_flags & inspect.CO_VARKEYWORDS:
            return func
    raise AssertionError(f"{obj} takes no **keywords")


def _bundle_of(name):
    """The name of the TypedDict `name`'s **keywords are annotated with."""
    func = _code_of(_entry(name)[0])
    code = func.__code__
    assert code.co_flags & inspect.CO_VARKEYWORDS, f"{name} takes no bundle"
    var_keyword = code.co_varnames[code.co_argcount + code.co_kwonlyargcount]
    annotation = func.__annotations__.get(var_keyword, "")
    match = re.fullmatch(r"Unpack\[(\w+)\]", str(annotation))
    assert match and match.group(1) in BUNDLES, f"{name}: **{var_keyword}: {annotation}"
    return match.group(1)


@pytest.mark.parametrize("name", NAMES)
def test_no_signature_spells_the_keywords_out(name):
    for func in _functions(_entry(name)[0]):
        code = func.__code__
        named = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        spelled = sorted(set(named) & ALLOCATION)
        assert not spelled, f"{name} spells out {spelled}: take **numa: Unpack[...] of options.py"
    assert ALLOCATION - {"huge_pages"} <= BUNDLES[_bundle_of(name)]


@pytest.mark.parametrize("name", NAMES)
def test_every_callable_shows_exactly_its_bundles_keywords(name):
    obj, shown, _call = _entry(name)
    parameters = inspect.signature(obj).parameters
    numa = {p for p, v in parameters.items() if p in NUMA and v.kind is v.KEYWORD_ONLY}
    assert numa == shown, f"{name} shows {sorted(numa)}"
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name
    for keyword in ALLOCATION & shown:
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[keyword].default is o.DEFAULTS[keyword]
    if "thread" in shown:
        assert parameters["thread"].default is False


@pytest.mark.parametrize("name", NAMES)
def test_every_callable_accepts_exactly_its_bundles_keywords(name):
    obj, shown, call = _entry(name)
    bundle = BUNDLES[_bundle_of(name)]
    assert bundle - {"name"} <= shown
    for keyword in sorted(bundle - {"name"}):
        if keyword == "policy" and name.startswith("partitioned"):
            call(policy=nn.Partitioned())
        else:
            call(**{keyword: VALUES[keyword]})
    where = "shared_empty" if name == "shared_zeros" else name
    with pytest.raises(TypeError, match=rf"^{where}\(\) got an unexpected keyword argument "
                                        r"'hugepage' \(its NUMA keywords: "):
        call(hugepage=True)
    if "huge_pages" not in bundle:
        with pytest.raises(TypeError, match=f"^{where}.*keyword argument 'huge_pages'"):
            call(huge_pages="none")
    if "node" not in inspect.signature(obj).parameters:
        with pytest.raises(TypeError, match=f"^{name}.*unexpected keyword argument 'node'"):
            call(node=0)


def test_document_spells_out_a_bundle_in_the_signature():
    @document
    def make(shape, *, nodes=None, **numa: o.PlacementKeywords):  # not Unpack: left alone
        """A summary."""

    assert "**numa" in str(inspect.signature(make))

    def made(shape, **numa):
        """A summary."""

    made.__annotations__["numa"] = "Unpack[PlacementKeywords]"
    made.__globals__.setdefault("PlacementKeywords", o.PlacementKeywords)
    document(made)
    assert str(inspect.signature(made)) == (
        "(shape, *, node: 'NodesLike | None' = None, policy: 'PolicyLike | None' = None, "
        "strict: 'bool' = False, huge_pages: 'HugePagesLike' = <HugePages.AUTO: 'auto'>, "
        "prefault: 'PrefaultLike' = <Prefault.NONE: 'none'>)"
    )
