"""The doctor's checks of the kernel's memory settings: transparent huge pages,
automatic NUMA balancing and the huge-page pools of each node."""

from __future__ import annotations

from .._kernel import tunables
from .._kernel.topology import format_list
from .findings import Finding, Severity
from .registry import Host, check

__all__: list[str] = []


# ------------------------------------------------------------------ THP
def _enabled_findings(enabled: str, details: dict[str, str | None]) -> list[Finding]:
    """What THP's `enabled` mode does to placement."""
    if enabled == "always":
        return [
            Finding(
                "thp",
                Severity.WARNING,
                "transparent huge pages: enabled=always",
                "every large anonymous mapping may get 2 MiB pages, so an interleave is "
                "spread in 2 MiB units (a 4 MiB array over 4 nodes is not balanced) and "
                "khugepaged may collapse pages of different nodes into one",
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (numa_numpy then "
                "asks for huge pages per array with huge_pages='transparent')",
                details,
            )
        ]
    if enabled == "never":
        return [
            Finding(
                "thp",
                Severity.INFO,
                "transparent huge pages: enabled=never",
                "huge_pages='transparent' gives base pages: more TLB misses and page "
                "faults (512x more than with 2 MiB pages)",
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
                details,
            )
        ]
    return []


@check("thp", order=40)
def check_thp(host: Host) -> list[Finding]:
    """Transparent huge pages: `enabled` (what `defrag` costs: ``thp-defrag``)."""
    enabled = tunables.thp_enabled(host.files)
    defrag = tunables.thp_defrag(host.files)
    details = {"enabled": enabled, "defrag": defrag}
    if enabled is None:
        return [
            Finding(
                "thp",
                Severity.INFO,
                "transparent huge pages are not available in this kernel",
                "huge_pages='transparent' gives base pages",
                details=details,
            )
        ]
    findings = _enabled_findings(enabled, details)
    if findings:
        return findings
    summary = f"transparent huge pages: enabled={enabled}, defrag={defrag}"
    return [Finding("thp", Severity.OK, summary, details=details)]


_DEFRAG = {
    "always": (
        Severity.WARNING,
        "every THP fault without a free 2 MiB page stalls in direct reclaim and "
        "compaction (milliseconds), for every mapping",
    ),
    "defer": (
        Severity.OK,
        "a THP fault never stalls: it takes base pages and wakes kswapd/kcompactd, "
        "and khugepaged collapses the pages later (fewer huge pages at first)",
    ),
    "defer+madvise": (
        Severity.OK,
        "mappings with MADV_HUGEPAGE (huge_pages='transparent') compact at the "
        "fault, stalling to get huge pages; others defer to the background",
    ),
    "madvise": (
        Severity.OK,
        "mappings with MADV_HUGEPAGE (huge_pages='transparent') compact at the "
        "fault, stalling to get huge pages; others take base pages at once",
    ),
    "never": (
        Severity.INFO,
        "a fault takes a huge page only when one is free: no stall, but fewer huge "
        "pages on a fragmented machine (placement() shows how many were given)",
    ),
}


@check("thp-defrag", order=41)
def check_thp_defrag(host: Host) -> list[Finding]:
    """What THP's `defrag` setting costs at a page fault: stalls or huge pages."""
    defrag = tunables.thp_defrag(host.files)
    if defrag is None:
        return []
    severity, why = _DEFRAG.get(defrag, (Severity.INFO, "a setting this check does not know"))
    fix = "echo defer+madvise > /sys/kernel/mm/transparent_hugepage/defrag"
    return [
        Finding(
            "thp-defrag",
            severity,
            f"THP defrag={defrag}",
            why,
            fix if severity is not Severity.OK else "",
            {"defrag": defrag},
        )
    ]


# ---------------------------------------------------------- NUMA balancing
_BALANCING_OFF = "echo 0 > /proc/sys/kernel/numa_balancing (or boot with numa_balancing=disable)"


def _balancing_unknown(host: Host) -> list[Finding]:
    """No mode read: a kernel without NUMA balancing, or a file that cannot be read."""
    why = host.files.problem(tunables.NUMA_BALANCING)
    if why is None:  # no such file: a kernel without NUMA balancing
        return [Finding("numa-balancing", Severity.OK, "no automatic NUMA balancing here")]
    shown = host.shown(host.files.path(tunables.NUMA_BALANCING))
    return [
        Finding(
            "numa-balancing",
            Severity.INFO,
            f"whether automatic NUMA balancing is on is unknown: {shown} {why}",
            "if it is on, the kernel moves default and preferred memory towards the "
            "CPUs touching it",
            "`sysctl kernel.numa_balancing` on the machine tells",
            {"numa_balancing": None, "problem": why},
        )
    ]


@check("numa-balancing", order=50)
def check_balancing(host: Host) -> list[Finding]:
    """Automatic NUMA balancing, which moves default and preferred memory."""
    mode = tunables.numa_balancing(host.files)
    if mode is None:
        return _balancing_unknown(host)
    details = {"numa_balancing": mode}
    if mode == 0:
        summary = "automatic NUMA balancing is off"
        return [Finding("numa-balancing", Severity.OK, summary, details=details)]
    if len(host.topo.memory_nodes) < 2:
        return [
            Finding(
                "numa-balancing",
                Severity.INFO,
                f"automatic NUMA balancing is on (mode {mode}) with one memory node",
                "nothing to move here, but its page-table scans still cost time",
                _BALANCING_OFF,
                details,
            )
        ]
    if mode & 1:
        return [
            Finding(
                "numa-balancing",
                Severity.WARNING,
                f"automatic NUMA balancing is on (kernel.numa_balancing={mode})",
                "the kernel moves pages of default and preferred memory towards the CPUs "
                "touching them, so first-touch and Preferred placement drift; it scans page "
                "tables periodically (milliseconds each); Bind and Interleave stay put",
                _BALANCING_OFF,
                details,
            )
        ]
    return [
        Finding(
            "numa-balancing",
            Severity.INFO,
            f"memory-tiering balancing is on (kernel.numa_balancing={mode})",
            "hot pages on slower tiers are promoted to faster nodes: placement on a slow "
            "tier does not last for memory that is used often",
            "echo 0 > /proc/sys/kernel/numa_balancing to keep pages where they are placed",
            details,
        )
    ]


# ------------------------------------------------------------ huge pages
def _pool_finding(
    size: str, per: dict[int, tuple[int, int]], host: Host, details: dict[str, object]
) -> Finding:
    """One reserved pool size: OK when every memory node has pages of it."""
    empty = [n for n in host.topo.memory_nodes if per.get(n, (0, 0))[0] == 0]
    text = ", ".join(f"node {n}: {f}/{t} free" for n, (t, f) in sorted(per.items()) if t)
    if not empty:
        return Finding("huge-pages", Severity.OK, f"{size} huge pages: {text}", details=details)
    return Finding(
        "huge-pages",
        Severity.WARNING,
        f"{size} huge pages reserved only on some nodes ({text}); none on node(s) "
        f"{format_list(empty)}",
        f"explicit {size} huge pages bound to node(s) {format_list(empty)} fail "
        "(or fall back to base pages)",
        f"echo N > /sys/devices/system/node/node{empty[0]}/hugepages/"
        f"hugepages-{size}/nr_hugepages (as root; per node that needs them)",
        details,
    )


@check("huge-pages", order=60)
def check_huge_pages(host: Host) -> list[Finding]:
    """The hugetlb pools of each memory node, which explicit huge pages need."""
    pools: dict[str, dict[int, tuple[int, int]]] = {}
    for node in host.topo.memory_nodes:
        for kib, counts in tunables.huge_page_pools(host.files, node).items():
            pools.setdefault(f"{kib}kB", {})[node] = counts
    details: dict[str, object] = {
        size: {str(n): {"total": t, "free": f} for n, (t, f) in per.items()}
        for size, per in pools.items()
    }
    reserved = {size: per for size, per in pools.items() if any(t for t, _ in per.values())}
    if reserved:
        return [_pool_finding(size, per, host, details) for size, per in reserved.items()]
    return [
        Finding(
            "huge-pages",
            Severity.INFO,
            "no huge-page pool is reserved on any node",
            "huge_pages='2mb' or '1gb' fails (or falls back) until a pool is reserved",
            "echo N > /sys/devices/system/node/nodeX/hugepages/hugepages-2048kB/"
            "nr_hugepages (N pages on node X, as root)",
            details,
        )
    ]
