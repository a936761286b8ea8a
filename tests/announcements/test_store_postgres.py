"""The store on PostgreSQL (scripts/postgres.sh): several replicas creating the schema of one
empty database at the same moment, and a replica outliving its database connections."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from jupyterhub_hpc.announcements.model import AnnouncementIn, Audience
from jupyterhub_hpc.announcements.store import Store

from .postgres import _admin, fresh_database


@pytest.fixture
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def _open_together(url: str, start: Any, results: Any) -> None:
    start.wait(timeout=60)  # every process has imported SQLAlchemy and the store
    try:
        Store(url).close()
        results.put("ok")
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


def test_replicas_create_the_schema_of_an_empty_database_at_once(db_url: str) -> None:
    """Eight processes open the same empty database at the same instant, three times over: every one
    succeeds (without the advisory lock, some fail with a unique violation in pg_type)."""
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        with psycopg.connect(_admin(db_url), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        results = ctx.Queue()
        start = ctx.Barrier(8)
        procs = [ctx.Process(target=_open_together, args=(db_url, start, results)) for _ in range(8)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * 8, outcomes
    store = Store(db_url)
    try:
        assert store.all() == []
    finally:
        store.close()


def test_a_replica_survives_its_connections_being_dropped(db_url: str) -> None:
    """A database restart or fail-over closes the pooled connections: the next request works (the
    pool tests a connection before use) instead of failing once per pooled connection."""
    store = Store(db_url)
    try:
        now = datetime.now(timezone.utc)
        created = store.create(
            AnnouncementIn(
                title="Before the restart",
                starts=now - timedelta(minutes=1),
                audience=Audience(everyone=True),
            ),
            "wendy",
        )
        assert [a.id for a in store.all()] == [created.id]
        with psycopg.connect(_admin(db_url), autocommit=True) as conn:
            dropped = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert dropped is not None and dropped[0] >= 1  # the store's pooled connection
        assert [a.id for a in store.all()] == [created.id]
        store.dismiss(created.id, "alice")
        assert store.dismissed("alice") == {created.id}
    finally:
        store.close()
