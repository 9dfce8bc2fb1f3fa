"""What the doctor reports: each finding with its severity, and the diagnosis
that gathers them (printed, as JSON, and as an HTML table in Jupyter)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Severity", "Finding", "Diagnosis"]


class Severity(enum.Enum):
    """How much a finding matters for placement, in increasing order.

    ``OK``: checked, nothing to do. ``INFO``: worth knowing. ``WARNING``: some
    placements are undone, slowed or refused. ``ERROR``: placement is defeated
    (no policy can be applied); ``python -m numa_numpy doctor`` then exits 1.

    See Also
    --------
    Finding, doctor

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.Severity.WARNING, nn.Severity.WARNING.value
    (<Severity.WARNING: 'warning'>, 'warning')
    >>> max(nn.Severity, key=lambda s: s.rank)
    <Severity.ERROR: 'error'>
    """

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Position in increasing severity: OK 0, INFO 1, WARNING 2, ERROR 3."""
        return list(Severity).index(self)


@dataclass(frozen=True)
class Finding:
    """One result of the doctor.

    Attributes
    ----------
    check : str
        The check's name ("policy-syscalls", "cpuset", "container", "thp",
        "numa-balancing", "huge-pages", "kernel", "tiers", "sockets",
        "threads", and "files" for the files that could not be read).
    severity : Severity
    summary : str
        What was found.
    impact : str
        What it means for placement ("" when nothing).
    fix : str
        The exact change that removes it ("" when nothing is to be done).
    details : dict
        The raw values behind the finding (errnos, node lists, file values).

    Parameters
    ----------
    check, severity, summary, impact, fix, details
        The attributes above, in that order.

    See Also
    --------
    Diagnosis, doctor

    Examples
    --------
    >>> import numa_numpy as nn
    >>> finding = nn.doctor().of("kernel")[0]
    >>> finding.check, isinstance(finding.severity, nn.Severity)
    ('kernel', True)
    >>> print(nn.Finding("thp", nn.Severity.INFO, "THP is madvise", fix="nothing"))
    [info] thp: THP is madvise
        fix: nothing
    """

    check: str
    severity: Severity
    summary: str
    impact: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values (severity as its string).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Finding("thp", nn.Severity.OK, "fine").as_dict()["severity"]
        'ok'
        """
        return {
            "check": self.check,
            "severity": self.severity.value,
            "summary": self.summary,
            "impact": self.impact,
            "fix": self.fix,
            "details": self.details,
        }

    def __str__(self) -> str:
        lines = [f"[{self.severity.value}] {self.check}: {self.summary}"]
        if self.impact:
            lines.append(f"    means: {self.impact}")
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Diagnosis:
    """Everything the doctor found, most severe first.

    Iterating gives the findings; ``healthy`` is False when a finding defeats
    placement (severity ERROR); ``exit_status`` is what ``python -m numa_numpy
    doctor`` exits with (0 healthy, 1 not).

    Parameters
    ----------
    findings : tuple of Finding
        Most severe first.

    See Also
    --------
    doctor : how to get one.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> diagnosis = nn.doctor()
    >>> diagnosis  # doctest: +ELLIPSIS
    <Diagnosis ...>
    >>> diagnosis.exit_status == (0 if diagnosis.healthy else 1)
    True
    >>> all(f.severity is not nn.Severity.OK for f in diagnosis.problems)
    True
    """

    findings: tuple[Finding, ...]

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    @property
    def healthy(self) -> bool:
        """False when a finding defeats placement (severity ERROR)."""
        return all(f.severity is not Severity.ERROR for f in self.findings)

    @property
    def exit_status(self) -> int:
        """What ``numa-numpy doctor`` exits with: 0 healthy, 1 not."""
        return 0 if self.healthy else 1

    @property
    def problems(self) -> tuple[Finding, ...]:
        """The findings that are more than OK."""
        return tuple(f for f in self.findings if f.severity is not Severity.OK)

    def of(self, check: str) -> tuple[Finding, ...]:
        """The findings of one check, by its name.

        Parameters
        ----------
        check : str
            A check's name (``"cpuset"``, ``"thp"``, ``"kernel"``, ...).

        Returns
        -------
        tuple of Finding
            Empty when the check found nothing to report or did not run.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> [f.check for f in nn.doctor().of("kernel")]
        ['kernel']
        """
        return tuple(f for f in self.findings if f.check == check)

    def as_dict(self) -> dict[str, Any]:
        """``{"healthy": bool, "findings": [...]}``: what ``doctor --json`` prints.

        Examples
        --------
        >>> import json
        >>> import numa_numpy as nn
        >>> sorted(json.loads(json.dumps(nn.doctor().as_dict())))
        ['findings', 'healthy']
        """
        return {"healthy": self.healthy, "findings": [f.as_dict() for f in self.findings]}

    def __str__(self) -> str:
        head = "healthy: nothing defeats placement" if self.healthy else "placement is DEFEATED"
        return "\n".join([*map(str, self.findings), head])

    def __repr__(self) -> str:
        counts = {s: sum(f.severity is s for f in self.findings) for s in Severity}
        text = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        return f"<Diagnosis {'healthy' if self.healthy else 'DEFEATED'}: {text}>"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{f.severity.value}</td><td>{html.escape(f.check)}</td>"
            f"<td>{html.escape(f.summary)}</td><td>{html.escape(f.impact)}</td>"
            f"<td><code>{html.escape(f.fix)}</code></td></tr>"
            for f in self.findings
        )
        return (
            "<table><thead><tr><th>severity</th><th>check</th><th>found</th>"
            f"<th>means</th><th>fix</th></tr></thead><tbody>{rows}</tbody></table>"
        )
