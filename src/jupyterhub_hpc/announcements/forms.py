"""The admin page's form: its text fields to an ``AnnouncementIn`` (validated like a REST payload)
and an announcement back to the form's values."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from .model import AnnouncementIn, Audience
from .store import Announcement

__all__ = ["FormError", "announcement_from_form", "form_values"]

TARGETS = ("groups", "users", "profiles", "clusters", "partitions")
_SPLIT = re.compile(r"[\s,]+")
#: what ``<input type="datetime-local">`` sends (seconds optional); the page says these are UTC
_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


class FormError(ValueError):
    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _when(text: str, label: str, errors: list[str]) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    for fmt in _LOCAL_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    errors.append(f"{label}: not a date and time (YYYY-MM-DDTHH:MM, UTC)")
    return None


def announcement_from_form(fields: dict[str, str]) -> AnnouncementIn:
    """``fields`` are the form's strings; raises ``FormError`` or pydantic's ``ValidationError``."""
    errors: list[str] = []
    starts = _when(fields.get("starts", ""), "starts", errors)
    ends = _when(fields.get("ends", ""), "ends", errors)
    if errors:
        raise FormError(errors)
    targets = {key: [v for v in _SPLIT.split(fields.get(key, "")) if v] for key in TARGETS}
    if fields.get("audience_kind", "everyone") == "everyone":
        audience = Audience(everyone=True)
    else:
        audience = Audience.model_validate(targets)
    return AnnouncementIn(
        title=fields.get("title", ""),
        body=fields.get("body", "").replace("\r\n", "\n"),
        severity=fields.get("severity", "info"),  # type: ignore[arg-type]
        starts=starts,
        ends=ends,
        audience=audience,
        dismissible=bool(fields.get("dismissible")),
        required=bool(fields.get("required")),
    )


def _local(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M") if value else ""


def form_values(announcement: Announcement | None) -> dict[str, Any]:
    """The form's initial values: an existing announcement's, or a new one's defaults."""
    if announcement is None:
        return {"severity": "info", "audience_kind": "everyone", "dismissible": "on"}
    audience = announcement.audience
    values: dict[str, Any] = {
        "title": announcement.title,
        "body": announcement.body,
        "severity": announcement.severity,
        "starts": _local(announcement.starts),
        "ends": _local(announcement.ends),
        "audience_kind": "everyone" if audience.everyone else "targets",
        "dismissible": "on" if announcement.dismissible else "",
        "required": "on" if announcement.required else "",
    }
    for key in TARGETS:
        values[key] = " ".join(getattr(audience, key))
    return values
