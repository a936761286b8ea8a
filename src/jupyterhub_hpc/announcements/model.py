"""Announcements as data: the validated input (pydantic, strict, no extra keys), the audience and
who it matches, and the body's Markdown rendered to sanitised HTML.

Nothing here talks to the hub or the database: these are pure functions of their arguments."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import nh3
from markdown_it import MarkdownIt
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_TITLE_CHARS",
    "AnnouncementIn",
    "AnnouncementPatch",
    "Audience",
    "UserContext",
    "Window",
    "render_body",
]

MAX_TITLE_CHARS = 140
MAX_BODY_CHARS = 20_000
#: entries per audience list (groups, users, ...)
MAX_AUDIENCE_ENTRIES = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: hub user, group, profile slug, cluster and partition names: no spaces, no markup
_NAME = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+=:-]{0,254}$")
#: a writer-chosen id (e.g. ``maint-<reservation>``): lower case, URL-safe
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


def _plain_title(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("the title is empty")
    if _CONTROL.search(value):
        raise ValueError("the title is one line of plain text (no control characters)")
    return value


def _names(values: list[str]) -> list[str]:
    for value in values:
        if not _NAME.match(value):
            raise ValueError(f"not a valid name: {value[:40]!r}")
    return sorted(set(values))


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS), AfterValidator(_plain_title)]
Body = Annotated[str, Field(max_length=MAX_BODY_CHARS)]
Names = Annotated[list[str], Field(max_length=MAX_AUDIENCE_ENTRIES), AfterValidator(_names)]
UTCDateTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Severity = Literal["info", "warning", "error"]
Source = Literal["admin", "reservation"]


class Audience(BaseModel):
    """Who sees an announcement: everyone, or any user who matches at least one entry (a union:
    ``groups=["physics"], partitions=["gpu"]`` reaches physics members and everybody with a server
    on the gpu partition)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    everyone: bool = False
    groups: Names = []
    users: Names = []
    profiles: Names = []
    clusters: Names = []
    partitions: Names = []

    @model_validator(mode="after")
    def _someone(self) -> Audience:
        targeted = self.groups or self.users or self.profiles or self.clusters or self.partitions
        if self.everyone and targeted:
            raise ValueError("an audience is either everyone or a list of targets, not both")
        if not self.everyone and not targeted:
            raise ValueError("the audience is empty: everyone, or groups/users/profiles/clusters/partitions")
        return self

    def matches(self, ctx: UserContext) -> bool:
        if self.everyone:
            return True
        return bool(
            ctx.name in self.users
            or ctx.groups.intersection(self.groups)
            or ctx.profiles.intersection(self.profiles)
            or ctx.clusters.intersection(self.clusters)
            or ctx.partitions.intersection(self.partitions)
        )


class AnnouncementIn(BaseModel):
    """A whole announcement as a writer sends it (POST; a PATCH is merged into the stored one and
    validated as this again). ``created_by``/``created_at`` are the server's, never the payload's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    title: Title
    body: Body = ""
    severity: Severity = "info"
    starts: UTCDateTime | None = None
    ends: UTCDateTime | None = None
    audience: Audience = Audience(everyone=True)
    dismissible: bool = True
    required: bool = False
    source: Source = "admin"

    @model_validator(mode="after")
    def _consistent(self) -> AnnouncementIn:
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        if self.required:
            # a required announcement is never hidden, whatever the payload says
            self.dismissible = False
        return self


class AnnouncementPatch(BaseModel):
    """The fields a PATCH may change (every one optional; ``id`` and ``source`` are fixed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title | None = None
    body: Body | None = None
    severity: Severity | None = None
    starts: UTCDateTime | None = None
    ends: UTCDateTime | None = None
    audience: Audience | None = None
    dismissible: bool | None = None
    required: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the payload named (``"ends": null`` clears the end time)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


@dataclass(frozen=True)
class Window:
    """A MAINT reservation as one of the reader's servers' hub card shows it (``reservations``)."""

    id: str
    name: str
    cluster: str | None
    #: the server's job partition, one of the reservation's
    partition: str
    start: datetime
    end: datetime
    nodes: str = ""
    crosses_job: bool = False


@dataclass(frozen=True)
class UserContext:
    """What the audience is matched against, resolved on the server side: the hub's groups of the
    user and the profile, cluster and partition of each of the user's active servers."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    profiles: frozenset[str] = field(default_factory=frozenset)
    clusters: frozenset[str] = field(default_factory=frozenset)
    partitions: frozenset[str] = field(default_factory=frozenset)
    #: the MAINT reservations on the partitions of the user's servers (from their hub cards)
    maintenance: tuple[Window, ...] = ()


# -- the body: Markdown -> HTML -> sanitised HTML -------------------------------------------------

#: what Markdown produces, and nothing that runs or loads anything: no img, iframe, style, form
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
        "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})


@functools.lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # CommonMark with tables and strikethrough; inline HTML is parsed so that the sanitiser (not
    # this parser) decides what of it survives; linkify stays off (no extra dependency)
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


@functools.lru_cache(maxsize=512)
def render_body(markdown: str) -> str:
    """``markdown`` as sanitised HTML (nh3, the Ammonia sanitiser): only ``ALLOWED_TAGS`` and
    ``ALLOWED_ATTRIBUTES``, links to http/https/mailto only, with ``rel="noopener noreferrer"``;
    ``<script>``/``<style>`` are removed with their content. Rendered on every read (cached):
    the database holds Markdown only, so an edited database row cannot carry HTML past this."""
    html = _markdown().render(markdown)
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with ``Z`` (naive values are UTC, as the database stores them)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
