"""numa_numpy: NumPy arrays on chosen NUMA nodes.

Constructors (`numa_empty`, `numa_zeros`, ... `interleaved_*`) return ordinary
ndarrays whose memory the kernel places by a policy; scopes (`on_node`,
`interleaved`, `policy`) make every NumPy allocation inside them do the same;
`placement` asks the kernel where the pages are. The pool and its cache are
also in `numa_numpy.memory`, the machine's checks in `numa_numpy.diagnostics`.
"""

from ._alloc.bridge import HANDLER_NAME
from ._alloc.creation import (
    interleaved_empty,
    interleaved_full,
    interleaved_ones,
    interleaved_zeros,
    numa_array,
    numa_empty,
    numa_empty_like,
    numa_full,
    numa_full_like,
    numa_ones,
    numa_ones_like,
    numa_zeros,
    numa_zeros_like,
)
from ._alloc.scope import (
    PolicyScope,
    current_policy,
    interleaved,
    on_node,
    policy,
    propagate,
)
from ._alloc.thread import get_thread_policy, pinned, thread_policy
from ._compute.layout import blocks
from ._compute.loops import parallel, parallel_info, set_parallel
from ._compute.parallel import PartitionedArray
from ._compute.partition import (
    partitioned_empty,
    partitioned_full,
    partitioned_ones,
    partitioned_zeros,
)
from ._compute.replicas import Replicas, replicate
from ._compute.team import NodeTeam, active_team, node_team
from ._frontends.ipython import load_ipython_extension as load_ipython_extension
from ._frontends.ipython import unload_ipython_extension as unload_ipython_extension
from ._kernel.topology import AccessClass, Node, Topology, current_cpu, current_node, topology
from ._policies.enforcement import Enforcement, EnforcementLevel
from ._policies.options import HugePages, Prefault
from ._policies.policy import (
    Bind,
    Default,
    Interleave,
    Local,
    Partitioned,
    Policy,
    Preferred,
    PreferredMany,
    WeightedInterleave,
    as_policy,
    parse_nodes,
)
from ._policies.weights import InterleaveWeights
from ._ranges.files import NpzFile, fromfile, load, memmap
from ._ranges.migrate import migrate
from ._ranges.placement import Placement, placement
from ._ranges.region import NumaRegion
from ._ranges.shared import SharedArray, attach_shared, cleanup_shared, shared_empty, shared_zeros
from .diagnostics import (
    Capabilities,
    Diagnosis,
    Finding,
    Severity,
    capabilities,
    doctor,
    process_memory,
)
from .errors import (
    CacheSettingError,
    InvalidNodeError,
    InvalidPolicyError,
    MigrationError,
    NumaAllocationError,
    NumaError,
    NumaUnavailableError,
    NumaWarning,
    ParallelSettingError,
    PolicyNotEnforcedError,
    SharedSegmentError,
)
from .memory import (
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

__version__ = "0.1.0"

__all__ = [
    "HANDLER_NAME",
    "Bind",
    "Default",
    "Interleave",
    "Local",
    "Policy",
    "Preferred",
    "PreferredMany",
    "WeightedInterleave",
    "HugePages",
    "Prefault",
    "as_policy",
    "parse_nodes",
    "numa_empty",
    "numa_zeros",
    "numa_ones",
    "numa_full",
    "numa_empty_like",
    "numa_zeros_like",
    "numa_ones_like",
    "numa_full_like",
    "numa_array",
    "interleaved_empty",
    "interleaved_zeros",
    "interleaved_ones",
    "interleaved_full",
    "PolicyScope",
    "policy",
    "on_node",
    "interleaved",
    "current_policy",
    "propagate",
    "Placement",
    "placement",
    "Enforcement",
    "EnforcementLevel",
    "migrate",
    "load",
    "fromfile",
    "memmap",
    "NpzFile",
    "NumaRegion",
    "SharedArray",
    "shared_empty",
    "shared_zeros",
    "attach_shared",
    "cleanup_shared",
    "pinned",
    "thread_policy",
    "get_thread_policy",
    "Node",
    "Topology",
    "AccessClass",
    "InterleaveWeights",
    "doctor",
    "Diagnosis",
    "Finding",
    "Severity",
    "topology",
    "current_node",
    "current_cpu",
    "Capabilities",
    "capabilities",
    "process_memory",
    "memory_stats",
    "node_memory_stats",
    "MemoryPool",
    "get_memory_pool",
    "set_cache_limit",
    "set_cache_decay",
    "memory_limit",
    "free_all_blocks",
    "forget_handlers",
    "NumaError",
    "InvalidNodeError",
    "InvalidPolicyError",
    "NumaAllocationError",
    "NumaUnavailableError",
    "PolicyNotEnforcedError",
    "CacheSettingError",
    "ParallelSettingError",
    "MigrationError",
    "SharedSegmentError",
    "NumaWarning",
    "NodeTeam",
    "node_team",
    "active_team",
    "Partitioned",
    "PartitionedArray",
    "partitioned_empty",
    "partitioned_zeros",
    "partitioned_ones",
    "partitioned_full",
    "blocks",
    "Replicas",
    "replicate",
    "set_parallel",
    "parallel",
    "parallel_info",
]
