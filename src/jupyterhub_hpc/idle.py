"""Idle policy per profile (issue 14, item 5; owner: the idle part).

Until that part lands this holds only the job card's hook, which reports no idle policy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["card_section"]


def card_section(spawner: Any, now: datetime) -> dict[str, Any] | None:
    """The card's ``idle`` section: None while no idle timeout is configured (none can be yet)."""
    return None
