"""The C structs a policy and its options become (numa_numpy._policies.cstructs):
the binding's mode and node mask, and the CPUs that prefault in parallel."""

import numa_numpy as nn
from numa_numpy._kernel.lib import ffi
from numa_numpy._policies.cstructs import binding_struct, prefault_cpus, prefault_plan
from numa_numpy._policies.options import AllocationOptions


def test_a_bind_becomes_its_mode_and_a_mask_of_its_node():
    topo = nn.topology()
    binding, mask = binding_struct(nn.Bind(0), topo)
    mode, words, maxnode, home = nn.Bind(0).kernel_args(topo)
    assert (binding.mode, binding.maxnode, binding.home_node) == (mode, maxnode, home)
    assert binding.nwords == len(words) and [mask[i] for i in range(len(words))] == list(words)
    assert mask[0] & 1  # node 0 is in the mask


def test_the_default_policy_has_no_mask():
    binding, mask = binding_struct(nn.Default(), nn.topology())
    assert binding.nwords == 0 and mask == ffi.NULL


def test_parallel_prefault_uses_the_cpus_of_the_policys_nodes():
    topo = nn.topology()
    cpus = prefault_cpus(nn.Bind(0), topo)
    assert cpus and set(cpus) <= set(topo.node(0).cpus) & set(topo.allowed_cpus)
    assert prefault_cpus(nn.Default(), topo) == sorted(topo.allowed_cpus)  # no nodes: any


def test_a_prefault_plan_carries_its_cpus_only_when_parallel():
    topo = nn.topology()
    parallel = AllocationOptions.from_keywords(nn.Bind(0), prefault="parallel")
    plan, cpus = prefault_plan(parallel, topo)
    expected = prefault_cpus(nn.Bind(0), topo)
    assert plan.nthreads == plan.ncpus == len(expected)
    assert [cpus[i] for i in range(len(expected))] == expected
    plan, cpus = prefault_plan(AllocationOptions.from_keywords(nn.Bind(0)), topo)
    assert plan.ncpus == 0 and cpus == ffi.NULL
