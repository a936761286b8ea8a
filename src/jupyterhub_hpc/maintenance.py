"""Scheduler maintenance reservations (issue 14, item 4; owner: the maint part).

Until that part lands this holds only the job card's hook, which reports no reservations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["card_section"]


def card_section(spawner: Any, now: datetime) -> list[dict[str, Any]]:
    """The card's ``maintenance`` list: empty while no reservation source is configured."""
    return []
