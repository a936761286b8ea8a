"""A range of TCP ports, ``LOW-HIGH``: one parser for the hub's ``port_range`` and the launcher.

Standard library only: the job-side launcher imports it (``--port-range``) and so does the
hub's trait type (:class:`~jupyterhub_hpc.units.PortRangeTrait`), so the admin's text is read
by the same function on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PortRange", "parse_port_range"]

#: two ASCII numbers of at most five digits; the values are checked by PortRange
_RANGE_RE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})", re.ASCII)


@dataclass(frozen=True)
class PortRange:
    """Ports ``low`` to ``high``, both included, within 1-65535; ``str()`` gives ``"LOW-HIGH"``."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if isinstance(self.low, bool) or isinstance(self.high, bool):
            raise ValueError("ports are numbers, not true/false")
        if not 0 < self.low <= self.high < 65536:
            raise ValueError(
                f"not a port range: {self.low}-{self.high} (LOW-HIGH, 1 <= LOW <= HIGH <= 65535)"
            )

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and not isinstance(port, bool) and self.low <= port <= self.high


def parse_port_range(text: str) -> PortRange:
    """``"9000-9100"`` -> ``PortRange(9000, 9100)``; anything else raises ``ValueError``
    naming the text: no blanks, ASCII digits only, ``1 <= LOW <= HIGH <= 65535``.

    >>> parse_port_range("9000-9100"), str(parse_port_range("80-80"))
    (PortRange(low=9000, high=9100), '80-80')
    """
    match = _RANGE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is not None:
        try:
            return PortRange(int(match.group(1)), int(match.group(2)))
        except ValueError:
            pass
    shown = repr(text) if isinstance(text, str) and len(text) <= 40 else f"a {type(text).__name__}"
    raise ValueError(f"not a port range: {shown} (use LOW-HIGH, 1 <= LOW <= HIGH <= 65535)")
