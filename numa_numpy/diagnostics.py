"""What the machine and the kernel give numa_numpy, and what is wrong.

`doctor` checks this process's NUMA setup (policies the kernel refuses, huge
page pools, cpusets, memory cgroups, NUMA balancing) and says what to do about
each finding; `capabilities` lists what the running kernel supports;
`process_memory` counts a process's pages per node; `bandwidth_matrix`
measures STREAM copy and triad bandwidth from every CPU node to every memory
node (``python -m numa_numpy bench``). The first three are also importable
from ``numa_numpy`` itself.

>>> from numa_numpy import diagnostics
>>> report = diagnostics.doctor()
>>> all(isinstance(f.severity, diagnostics.Severity) for f in report.findings)
True
>>> diagnostics.capabilities().policies["bind"]
True
>>> sorted(diagnostics.process_memory())
['Heap', 'Huge', 'Private', 'Stack']
>>> matrix = diagnostics.bandwidth_matrix(1 << 20, repeats=1)
>>> matrix["memory"][-1]
'interleaved'
"""

from __future__ import annotations

from ._diagnostics.bandwidth import bandwidth_matrix
from ._diagnostics.capabilities import Capabilities, capabilities, process_memory
from ._diagnostics.doctor import Diagnosis, Finding, Severity, doctor

__all__ = [
    "doctor",
    "Diagnosis",
    "Finding",
    "Severity",
    "capabilities",
    "Capabilities",
    "process_memory",
    "bandwidth_matrix",
]
