"""What an audit check reports: :class:`Finding`, and how a list of them is printed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "SEVERITIES",
    "Finding",
    "Severity",
    "exit_status",
    "render_json",
    "render_text",
    "report",
    "summary",
]

Severity = Literal["high", "medium", "low", "info"]
#: most severe first
SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low", "info")
DOC = "docs/audit.md"


@dataclass(frozen=True)
class Finding:
    """One result of one check: ``check`` (a stable id, e.g. ``hub.subdomain-host``),
    how bad it is, what was found (``subject``: the setting, file or socket it is about),
    how to fix it, and where it is explained and tested (``ref``)."""

    check: str
    severity: Severity
    what: str
    fix: str
    subject: str = ""
    ref: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if not self.ref:
            object.__setattr__(self, "ref", f"{DOC}#{self.check.split('.', 1)[-1]}")


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first; the checks' own order within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {severity: counts.get(severity, 0) for severity in SEVERITIES}


def exit_status(findings: Sequence[Finding]) -> int:
    """2 when any finding is high, 0 otherwise."""
    return 2 if any(f.severity == "high" for f in findings) else 0


def render_text(findings: Sequence[Finding], title: str) -> str:
    lines = [title, ""]
    for f in ordered(findings):
        lines.append(f"[{f.severity.upper()}] {f.check}: {f.what}")
        if f.subject:
            lines.append(f"    subject: {f.subject}")
        lines.append(f"    fix: {f.fix}")
        lines.append(f"    see: {f.ref}")
        lines.append("")
    counts = summary(findings)
    lines.append(
        "summary: " + ", ".join(f"{counts[s]} {s}" for s in SEVERITIES) + f" ({len(findings)} findings)"
    )
    return "\n".join(lines) + "\n"


def report(findings: Sequence[Finding], scope: str) -> dict[str, Any]:
    """One scope's findings as the JSON output has them."""
    return {
        "scope": scope,
        "findings": [asdict(f) for f in ordered(findings)],
        "summary": summary(findings),
        "exit_status": exit_status(findings),
    }


def render_json(findings: Sequence[Finding], scope: str) -> str:
    return json.dumps(report(findings, scope), indent=2) + "\n"
