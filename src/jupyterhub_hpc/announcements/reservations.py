"""The scheduler's MAINT reservations as announcements, built from the hub cards of the reader's
servers (the card's ``maintenance`` list, ``jupyterhub_hpc.maintenance.card_section``): the service
never asks the scheduler, it reads what the hub's watcher last saw.

Pure functions of their arguments: nothing is stored but the readers' dismissals."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .model import MAX_TITLE_CHARS, Audience, Window
from .store import Announcement

__all__ = ["announcement_id", "merge", "reservation_announcement", "windows_of"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: CommonMark's backslash escapes: any ASCII punctuation
_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def announcement_id(cluster: str | None, name: str) -> str:
    """``maint-<cluster>-<name>`` within the service's id pattern (the same id as
    ``maintenance.announcement_payloads`` gives a writer, so a stored one replaces this one)."""
    raw = "-".join(p for p in ("maint", cluster or "", name) if p).lower()
    return re.sub(r"[^a-z0-9_.-]", "-", raw)[:64]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else None


def _text(value: Any, limit: int = 200) -> str:
    return _CONTROL.sub("", value)[:limit] if isinstance(value, str) else ""


def windows_of(card: Mapping[str, Any]) -> list[Window]:
    """The MAINT reservations of one server's card that affect its job's partition. A card whose
    partition is unknown lists every reservation of the cluster: those are not the reader's."""
    job = card.get("job")
    partition = job.get("partition") if isinstance(job, Mapping) else None
    entries = card.get("maintenance")
    if not isinstance(partition, str) or not partition or not isinstance(entries, list):
        return []
    cluster = card.get("cluster") if isinstance(card.get("cluster"), str) else None
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        name = _text(entry.get("name"), 64)
        start, end = _time(entry.get("start")), _time(entry.get("end"))
        partitions = entry.get("partitions")
        if not name or start is None or end is None or end <= start or not isinstance(partitions, list):
            continue
        if partition not in partitions:
            continue
        out.append(
            Window(
                id=announcement_id(cluster, name),
                name=name,
                cluster=cluster or None,
                partition=partition,
                start=start,
                end=end,
                nodes=_text(entry.get("nodes")),
                crosses_job=entry.get("crosses_job") is True,
            )
        )
    return out


def _hm(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def _md(value: str) -> str:
    return _MD_PUNCT.sub(r"\\\1", value)


def reservation_announcement(windows: Sequence[Window], seen: datetime) -> Announcement:
    """One announcement for one reservation as it appears on one or more of the reader's servers
    (same ``id``): a dismissible warning from ``seen`` (when the service first saw it) to the
    reservation's end; ``crosses_job`` when any of those servers' jobs would still run at its start."""
    first = windows[0]
    partitions = sorted({w.partition for w in windows})
    where = f"partition{'s' if len(partitions) > 1 else ''} {', '.join(partitions)}"
    title = f"Maintenance {first.name}: {_hm(first.start)} to {_hm(first.end)} UTC ({where})"
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    crosses = any(w.crosses_job for w in windows)
    on = f" on {first.cluster}" if first.cluster else ""
    lines = [
        f"The scheduler{_md(on)} has reserved {_md(where)} for maintenance **{_md(first.name)}** "
        f"from {_md(_hm(first.start))} to {_md(_hm(first.end))} UTC.",
    ]
    if first.nodes:
        lines.append(f"Nodes: `{first.nodes.replace('`', '')}`.")
    if crosses:
        lines.append(
            "**Your server's job would still be running when it starts**: save your work and stop "
            "the server before then; a new server will not start on these nodes during it."
        )
    else:
        lines.append("Your server's job ends before it starts.")
    return Announcement(
        id=first.id,
        title=title,
        body="\n\n".join(lines),
        severity="warning",
        starts=min(seen, first.end),
        ends=first.end,
        # not validated: the audience is the reader's own partitions, for writers' views only
        audience=Audience.model_construct(partitions=partitions),
        dismissible=True,
        required=False,
        source="reservation",
        created_by="scheduler",
        created_at=seen,
        updated_at=seen,
    )


def merge(
    stored: Iterable[Announcement],
    windows: Iterable[Window],
    seen: Mapping[str, datetime],
    dismissed: set[str],
    now: datetime,
) -> list[Announcement]:
    """The reader's stored announcements followed by one per reservation in ``windows`` that is
    current and not dismissed; a stored announcement with a reservation's id (a writer posted one
    for it) replaces it. ``seen``: when each reservation id was first seen (default ``now``)."""
    out = list(stored)
    taken = {a.id for a in out}
    by_id: dict[str, list[Window]] = {}
    for window in windows:
        by_id.setdefault(window.id, []).append(window)
    for rid, group in sorted(by_id.items(), key=lambda item: (item[1][0].start, item[0])):
        if rid in taken or rid in dismissed:
            continue
        announcement = reservation_announcement(group, seen.get(rid, now))
        if announcement.active(now):
            out.append(announcement)
    return out
