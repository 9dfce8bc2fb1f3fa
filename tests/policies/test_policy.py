import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import numa_numpy as nn
from numa_numpy._kernel.sysfs import parse_list
from numa_numpy._kernel.topology import format_list


@given(st.sets(st.integers(0, 1023), min_size=1, max_size=40))  # the kernel's ids
def test_node_list_syntax_round_trips(ids):
    text = format_list(ids)
    assert parse_list(text) == tuple(sorted(ids))
    assert nn.parse_nodes(text) == tuple(sorted(ids))


@pytest.mark.parametrize("value, expected", [
    (0, (0,)), (3, (3,)), ("0-2,5", (0, 1, 2, 5)), ([2, 0, 2], (0, 2)), ((1,), (1,)),
    (range(2), (0, 1)), (" 1 ", (1,)),
])
def test_parse_nodes_accepts(value, expected):
    assert nn.parse_nodes(value) == expected


@pytest.mark.parametrize("value, words", [
    (-1, "negative"), (True, "must be an int"), (1.0, "must be an int"), ("0-", "cannot parse"),
    ("x", "cannot parse"), ("3-1", "cannot parse"), ([], "empty node set"), ("", "empty"),
    ([0, -2], "negative"), ([0, "1"], "must be an int"), (None, "must be an int"),
])
def test_parse_nodes_rejects(value, words):
    with pytest.raises(nn.InvalidNodeError, match=words):
        nn.parse_nodes(value)


@pytest.mark.parametrize("text, policy", [
    ("bind:1", nn.Bind(1)), ("interleave:0-3", nn.Interleave("0-3")),
    ("preferred:2", nn.Preferred(2)), ("local", nn.Local()), ("default", nn.Default()),
    ("interleave", nn.Interleave()), ("preferred-many:0,2", nn.PreferredMany([0, 2])),
    ("weighted-interleave:0-1", nn.WeightedInterleave([0, 1])), ("BIND:0", nn.Bind(0)),
    ("membind:4", nn.Bind(4)),
])
def test_policy_strings(text, policy):
    assert nn.as_policy(text) == policy
    assert nn.as_policy(str(policy)) == policy


@pytest.mark.parametrize("text, words", [
    ("bind", "needs nodes"), ("local:1", "takes no nodes"), ("nearest:1", "unknown policy"),
    ("bind:x", "cannot parse"), ("preferred:0-1", "takes one node"),
])
def test_bad_policy_strings(text, words):
    with pytest.raises((nn.InvalidPolicyError, nn.InvalidNodeError), match=words):
        nn.as_policy(text)


@pytest.mark.parametrize("value", [3, object(), 1.5, [0]])
def test_as_policy_rejects_other_types_with_type_error(value):
    # a wrong type is a TypeError naming the accepted forms (it was InvalidPolicyError)
    with pytest.raises(TypeError, match="Policy .*or a string like 'bind:0'") as info:
        nn.as_policy(value)
    assert not isinstance(info.value, ValueError)
    assert type(value).__name__ in str(info.value)
    for make in (
        lambda: nn.policy(value),
        lambda: nn.numa_zeros(4, policy=value),
        lambda: nn.thread_policy(value),
    ):
        with pytest.raises(TypeError, match="a string like"):
            make()


def test_malformed_policy_string_stays_a_value_error():
    with pytest.raises(ValueError) as info:
        nn.as_policy("bind:zero")
    assert isinstance(info.value, (nn.InvalidNodeError, nn.InvalidPolicyError))
    with pytest.raises(nn.InvalidPolicyError):
        nn.policy("nonsense:0")


def test_negative_node_error_lists_the_nodes_that_exist():
    exist = nn.topology().node_ids
    for make in (lambda: nn.Bind(-1), lambda: nn.on_node(-1), lambda: nn.numa_zeros(4, node=-2)):
        with pytest.raises(nn.InvalidNodeError, match="negative; nodes on this machine: ") as info:
            make()
        assert info.value.available == exist
        assert str(info.value).endswith(f"nodes on this machine: {format_list(exist)}")


def test_policies_are_immutable_hashable_values():
    a, b = nn.Bind([1, 0]), nn.Bind("0-1")
    assert a == b and hash(a) == hash(b) and a.nodes == (0, 1)
    assert nn.Bind(0) != nn.Preferred(0)
    with pytest.raises(AttributeError):
        a.nodes = (2,)
    assert pickle.loads(pickle.dumps(a)) == a
    assert eval(repr(a), vars(nn)) == a
    assert repr(nn.Interleave()) == "Interleave()"


@pytest.mark.parametrize("make, words", [
    (lambda: nn.Bind(0, static_nodes=True, relative_nodes=True), "exclude each other"),
    (lambda: nn.Interleave([0], numa_balancing=True), "only for Bind and PreferredMany"),
    (lambda: nn.Preferred(0, home_node=0), "only for Bind and PreferredMany"),
    (lambda: nn.Local(static_nodes=True), "takes no nodes"),
    (lambda: nn.Bind(0, home_node=-1), "negative"),
])
def test_invalid_flag_combinations_raise_before_any_syscall(make, words):
    with pytest.raises((nn.InvalidPolicyError, nn.InvalidNodeError), match=words):
        make()


def test_kernel_mode_carries_flags():
    from numa_numpy._kernel.lib import lib
    p = nn.Bind(0, static_nodes=True, numa_balancing=True)
    assert p.kernel_mode() == lib.NN_MPOL_BIND | lib.NN_MPOL_F_STATIC_NODES | \
        lib.NN_MPOL_F_NUMA_BALANCING
    assert nn.Interleave(0, relative_nodes=True).kernel_mode() == \
        lib.NN_MPOL_INTERLEAVE | lib.NN_MPOL_F_RELATIVE_NODES


def test_nodemask_sized_for_possible_nodes_and_maxnode_covers_top_bit():
    from numa_numpy._kernel.topology import mask_bits
    topo = nn.topology()
    bits = mask_bits()
    assert bits % 64 == 0 and bits > max(topo.possible)
    words = nn.Bind(0).nodemask(topo)
    assert len(words) == bits // 64 and words[0] == 1


def test_policy_the_kernel_lacks_names_the_version(monkeypatch):
    import dataclasses
    topo = dataclasses.replace(nn.topology(), kernel=(5, 4))
    with pytest.raises(nn.NumaUnavailableError, match="needs Linux 6.9 or newer; this kernel is 5.4"):
        nn.WeightedInterleave([0]).check_kernel(topo)
    with pytest.raises(nn.NumaUnavailableError, match="5.15"):
        nn.PreferredMany([0]).check_kernel(topo)
    nn.Bind(0).check_kernel(topo)  # old enough for bind


def test_hugepages_and_prefault_coercion():
    assert nn.HugePages.coerce("2mb") is nn.HugePages.EXPLICIT_2MB
    assert nn.HugePages.coerce(True) is nn.HugePages.TRANSPARENT
    assert nn.Prefault.coerce(True) is nn.Prefault.TOUCH
    with pytest.raises(nn.InvalidPolicyError, match="huge_pages='4mb'"):
        nn.HugePages.coerce("4mb")
    with pytest.raises(nn.InvalidPolicyError, match="prefault='eager'"):
        nn.Prefault.coerce("eager")


# What the kernel calls each mode in /proc/self/numa_maps (mm/mempolicy.c's
# policy_modes[]), and its uapi number (include/uapi/linux/mempolicy.h): written
# here from the kernel, not read back through the package's own table.
KERNEL_NAMES = [
    (lambda: nn.Bind(0), 2, "bind:0"),
    (lambda: nn.Preferred(0), 1, "prefer:0"),
    (lambda: nn.PreferredMany([0]), 5, "prefer (many):0"),
    (lambda: nn.Interleave([0]), 3, "interleave:0"),
    (lambda: nn.Local(), 4, "local"),
]


@pytest.mark.parametrize("make,number,shown", KERNEL_NAMES, ids=[s for _, _, s in KERNEL_NAMES])
def test_each_policy_reaches_the_kernel_as_its_own_mode(make, number, shown):
    from pathlib import Path

    from kernel_view import mapping_of

    policy = make()
    try:
        policy.check_kernel(nn.topology())
    except nn.NumaUnavailableError as exc:
        pytest.skip(str(exc))
    assert policy.kernel_mode() == number
    a = nn.numa_zeros(1 << 20, policy=policy, strict=True)
    start, _ = mapping_of(a.__array_interface__["data"][0])
    lines = [line for line in Path("/proc/self/numa_maps").read_text().splitlines()
             if int(line.split()[0], 16) == start]
    assert len(lines) == 1
    assert lines[0].split(" ", 1)[1].startswith(shown + " "), lines[0]


def test_a_home_node_that_does_not_exist_raises_even_soft():
    missing = max(nn.topology().node_ids) + 1
    for policy in (nn.Bind(0, home_node=missing), nn.PreferredMany([0], home_node=missing)):
        with pytest.raises(nn.InvalidNodeError, match=f"node {missing} does not exist"):
            policy.check_nodes(nn.topology())
        with pytest.raises(nn.InvalidNodeError, match=f"node {missing} does not exist"):
            nn.numa_zeros(10, policy=policy)


SET_MEMPOLICY_HOME_NODE = 450  # the same number on x86_64 and aarch64


@pytest.mark.parametrize("home", [None, 0])
def test_home_node_zero_reaches_the_kernel(home):
    # node 0 is a home node like any other: refuse set_mempolicy_home_node alone
    # (a seccomp filter) and a strict Bind(0, home_node=0) must fail, while the
    # same policy without a home node is untouched by the filter
    import subprocess
    import sys
    from pathlib import Path

    from fixtures import seccomp

    if not seccomp.supported():
        pytest.skip("no seccomp filter for this architecture")
    if nn.topology().kernel < (5, 17):
        pytest.skip("this kernel has no set_mempolicy_home_node")
    code = (
        "import errno, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from fixtures import seccomp\n"
        f"seccomp.install(errno.EPERM, ({SET_MEMPOLICY_HOME_NODE},))\n"
        "import numa_numpy as nn\n"
        f"policy = nn.Bind(0, home_node={home})\n"
        "try:\n"
        "    nn.numa_zeros(1 << 18, policy=policy, strict=True)\n"
        "    print('allocated')\n"
        "except nn.PolicyNotEnforcedError as exc:\n"
        "    print('refused', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("allocated" if home is None else "refused"), out.stdout


def test_a_node_list_past_the_kernels_limit_is_refused_at_once():
    # refused while parsing: "0-99999999999" built a list of 10**11 ids first
    for text in ("0-99999999999", "1024", "0,5000-5001"):
        with pytest.raises(nn.InvalidNodeError, match="ids up to 1023"):
            nn.parse_nodes(text)
        with pytest.raises(nn.InvalidNodeError, match="ids up to 1023"):
            nn.numa_zeros(4, policy=f"interleave:{text}")
    assert nn.parse_nodes("1023") == (1023,)
