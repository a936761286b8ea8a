"""The PostgreSQL of scripts/postgres.sh for the announcements tests: a fresh, empty database per
test module (the test role may create databases), dropped afterwards.

``JUPYTERHUB_HPC_TEST_POSTGRES_URL`` (a ``postgresql+psycopg://`` URL of a role that may create
databases) replaces the script. Without PostgreSQL the tests skip, except under ``CI=true``, where
they fail: CI starts it (``make services``)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"


def base_url() -> str:
    """The test database's URL, or a skip (a failure under CI) saying why there is none."""
    url = os.environ.get("JUPYTERHUB_HPC_TEST_POSTGRES_URL", "")
    why = ""
    if not url:
        try:
            done = subprocess.run([str(SCRIPT), "url"], capture_output=True, text=True, timeout=30)
        except OSError as e:
            done = None
            why = f"{SCRIPT} url: {e}"
        if done is not None and done.returncode == 0:
            url = done.stdout.strip()
        elif done is not None:
            why = f"{SCRIPT} url: {done.stderr.strip() or done.returncode}"
    if not url:
        message = f"no PostgreSQL for the replica tests ({why}); start it with scripts/postgres.sh start"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: the test extra has psycopg[binary]", pytrace=False)
    return url


def _admin(url: str) -> str:
    """A libpq connection string of ``url`` (psycopg's own, without SQLAlchemy's driver name)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(prefix: str = "jhhpc_t") -> Iterator[str]:
    """An empty database of its own, as a SQLAlchemy URL; dropped (connections and all) after."""
    import psycopg

    url = base_url()
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
