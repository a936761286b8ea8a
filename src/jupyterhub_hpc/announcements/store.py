"""Where announcements and dismissals live: SQLAlchemy 2 (SQLite by default, any database
JupyterHub supports when several service replicas share one).

The rows hold the writer's Markdown, never HTML: the HTML is rendered and sanitised on the way
out (``model.render_body``). Rows are built field by field from a validated ``AnnouncementIn``,
never from a payload's keys."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .model import AnnouncementIn, AnnouncementPatch, Audience, UserContext, iso, render_body

__all__ = ["Announcement", "Store"]


class Base(DeclarativeBase):
    pass


class AnnouncementRow(Base):
    __tablename__ = "hpc_announcements"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(140))
    body: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    # naive UTC, as JupyterHub's own tables store times
    starts: Mapped[datetime] = mapped_column(DateTime, index=True)
    ends: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    audience: Mapped[str] = mapped_column(Text)
    dismissible: Mapped[bool] = mapped_column(Boolean)
    required: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class DismissalRow(Base):
    __tablename__ = "hpc_announcement_dismissals"

    announcement_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("hpc_announcements.id", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class ReservationDismissalRow(Base):
    """A dismissal of a reservation's announcement (built from the hub cards, not stored, so
    without a foreign key); forgotten once the reservation has ended."""

    __tablename__ = "hpc_reservation_dismissals"

    announcement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    ends: Mapped[datetime] = mapped_column(DateTime, index=True)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Announcement:
    """One stored announcement, as the handlers and templates use it."""

    id: str
    title: str
    body: str
    severity: str
    starts: datetime
    ends: datetime | None
    audience: Audience
    dismissible: bool
    required: bool
    source: str
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: AnnouncementRow) -> Announcement:
        return cls(
            id=row.id,
            title=row.title,
            body=row.body,
            severity=row.severity,
            starts=row.starts.replace(tzinfo=timezone.utc),
            ends=row.ends.replace(tzinfo=timezone.utc) if row.ends else None,
            audience=Audience.model_validate_json(row.audience),
            dismissible=row.dismissible and not row.required,
            required=row.required,
            source=row.source,
            created_by=row.created_by,
            created_at=row.created_at.replace(tzinfo=timezone.utc),
            updated_at=row.updated_at.replace(tzinfo=timezone.utc),
        )

    @property
    def body_html(self) -> str:
        return render_body(self.body)

    def active(self, now: datetime) -> bool:
        return self.starts <= now and (self.ends is None or now < self.ends)

    def public(self) -> dict[str, Any]:
        """What every reader gets (the contract's ``A``)."""
        return {
            "id": self.id,
            "title": self.title,
            "body_html": self.body_html,
            "severity": self.severity,
            "starts": iso(self.starts),
            "ends": iso(self.ends),
            "dismissible": self.dismissible,
            "required": self.required,
            "source": self.source,
        }

    def full(self) -> dict[str, Any]:
        """What writers get: also the Markdown source, the audience and who wrote it."""
        return {
            **self.public(),
            "body": self.body,
            "audience": self.audience.model_dump(),
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def as_input(self) -> dict[str, Any]:
        """The fields of ``AnnouncementIn`` (to merge a PATCH into and validate again)."""
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "severity": self.severity,
            "starts": self.starts,
            "ends": self.ends,
            "audience": self.audience,
            "dismissible": self.dismissible,
            "required": self.required,
            "source": self.source,
        }


class Conflict(Exception):
    """An announcement with that id exists already."""


#: the key of the PostgreSQL advisory lock that serialises the replicas' schema creation
#: (any number; this one is "hpcA" in ASCII)
SCHEMA_LOCK_KEY = 0x68706341
#: how often a failed schema creation is tried again (another replica creating the same tables at
#: the same moment, on a database without an advisory lock)
SCHEMA_ATTEMPTS = 5


class Store:
    """The database: ``db_url`` is any SQLAlchemy URL (``sqlite:///path``,
    ``postgresql+psycopg://...``). Several replicas may open the same empty database at once."""

    def __init__(self, db_url: str, **engine_kwargs: Any) -> None:
        if not db_url.startswith("sqlite"):
            # a replica outlives database restarts and fail-overs: test a pooled connection
            # before use instead of failing the first request after one
            engine_kwargs.setdefault("pool_pre_ping", True)
        self.engine: Engine = create_engine(db_url, **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        create_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- writers -----------------------------------------------------------------------------
    def create(self, data: AnnouncementIn, created_by: str) -> Announcement:
        now = _naive_utc(utcnow())
        row = AnnouncementRow(
            id=data.id or secrets.token_hex(8),
            title=data.title,
            body=data.body,
            severity=data.severity,
            starts=_naive_utc(data.starts) if data.starts else now,
            ends=_naive_utc(data.ends) if data.ends else None,
            audience=data.audience.model_dump_json(),
            dismissible=data.dismissible,
            required=data.required,
            source=data.source,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.session() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(row.id) from None
        return Announcement.of(row)

    def update(self, announcement_id: str, patch: AnnouncementPatch) -> Announcement | None:
        """Apply ``patch`` (validated again as a whole announcement); None if there is none."""
        with self.session() as session:
            row = session.get(AnnouncementRow, announcement_id)
            if row is None:
                return None
            merged = {**Announcement.of(row).as_input(), **patch.changes()}
            data = AnnouncementIn.model_validate(merged)
            row.title = data.title
            row.body = data.body
            row.severity = data.severity
            row.starts = _naive_utc(data.starts) if data.starts else row.starts
            row.ends = _naive_utc(data.ends) if data.ends else None
            row.audience = data.audience.model_dump_json()
            row.dismissible = data.dismissible
            row.required = data.required
            row.updated_at = _naive_utc(utcnow())
            return Announcement.of(row)

    def delete(self, announcement_id: str) -> bool:
        with self.session() as session:
            session.execute(delete(DismissalRow).where(DismissalRow.announcement_id == announcement_id))
            result = session.execute(delete(AnnouncementRow).where(AnnouncementRow.id == announcement_id))
            return bool(getattr(result, "rowcount", 0))

    # -- readers -----------------------------------------------------------------------------
    def get(self, announcement_id: str) -> Announcement | None:
        with self.session() as session:
            row = session.get(AnnouncementRow, announcement_id)
            return Announcement.of(row) if row else None

    def all(self) -> list[Announcement]:
        with self.session() as session:
            rows = session.scalars(select(AnnouncementRow).order_by(AnnouncementRow.starts.desc()))
            return [Announcement.of(row) for row in rows]

    def active(self, now: datetime) -> list[Announcement]:
        at = _naive_utc(now)
        with self.session() as session:
            query = (
                select(AnnouncementRow)
                .where(AnnouncementRow.starts <= at)
                .where((AnnouncementRow.ends.is_(None)) | (AnnouncementRow.ends > at))
                .order_by(AnnouncementRow.starts.desc())
            )
            return [Announcement.of(row) for row in session.scalars(query)]

    def dismissed(self, user: str) -> set[str]:
        """The ids ``user`` dismissed: stored announcements and reservations' ones."""
        with self.session() as session:
            ids = set(session.scalars(select(DismissalRow.announcement_id).where(DismissalRow.user == user)))
            query = select(ReservationDismissalRow.announcement_id).where(
                ReservationDismissalRow.user == user
            )
            return ids | set(session.scalars(query))

    def for_user(self, ctx: UserContext, now: datetime) -> list[Announcement]:
        """The active announcements of ``ctx``'s audience that the user has not dismissed
        (required ones are never hidden)."""
        dismissed = self.dismissed(ctx.name)
        return [
            a
            for a in self.active(now)
            if a.audience.matches(ctx) and (a.required or not a.dismissible or a.id not in dismissed)
        ]

    def dismiss(self, announcement_id: str, user: str) -> None:
        try:
            with self.session() as session:
                if session.get(DismissalRow, (announcement_id, user)) is None:
                    session.add(
                        DismissalRow(announcement_id=announcement_id, user=user, at=_naive_utc(utcnow()))
                    )
        except IntegrityError:
            # the same user dismissing twice at once (two tabs, two replicas): already remembered
            pass

    def dismiss_reservation(self, announcement_id: str, user: str, ends: datetime) -> None:
        """Remember a dismissal of a reservation's announcement until ``ends`` (its end); the
        dismissals of ended reservations are dropped on the way."""
        try:
            with self.session() as session:
                session.execute(
                    delete(ReservationDismissalRow).where(ReservationDismissalRow.ends < _naive_utc(utcnow()))
                )
                if session.get(ReservationDismissalRow, (announcement_id, user)) is None:
                    session.add(
                        ReservationDismissalRow(
                            announcement_id=announcement_id, user=user, ends=_naive_utc(ends)
                        )
                    )
        except IntegrityError:
            pass


def create_schema(engine: Engine) -> None:
    """Create the tables that do not exist yet. ``create_all`` checks, then creates: two replicas
    starting at once on an empty database both see no table and the second ``CREATE TABLE`` fails
    (PostgreSQL: a unique violation in ``pg_type``). On PostgreSQL the check and the creation run
    under a transaction-scoped advisory lock, so the second replica waits and then finds the
    tables; on any database a failed attempt is tried again (the other replica's tables are there
    by then; MySQL's DDL is not transactional, so an attempt may have created some of them)."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                Base.metadata.create_all(connection)
            return
        except DBAPIError:
            if attempt == SCHEMA_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
