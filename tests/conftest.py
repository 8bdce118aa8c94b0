"""Fixtures: a fresh database per test, on SQLite and on the real PostgreSQL server.

PostgreSQL tests run against the server named by ``PAYGATE_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). If it cannot be reached the tests fail: a
missing server must never pass silently. Tests share one migrated database per
session (per process, when pytest-xdist runs the suite in several), emptied before each test,
so tests never see each other's rows.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.store import migrate
from tests.databases import empty_postgres, fresh_sqlite_url

# The tests crash processes, never the machine: WAL with synchronous=NORMAL keeps every
# committed transaction through a process crash, and spares an fsync per commit.
os.environ.setdefault("PAYGATE_SQLITE_SYNCHRONOUS", "NORMAL")

PG_ADMIN_URL = os.environ.get("PAYGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile("ci", parent=settings.get_profile("default"), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


_SERVED_LOGGERS = ("", "paygate", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """The process environment and logging as they were before the test.

    ``paygate serve`` hands its configuration to its workers as ``PAYGATE_*`` variables and
    sends the process's logs to stderr; a test that runs it in-process would otherwise leave
    them to configure every later test (and every later request's access line in its output).
    """
    before = os.environ.copy()
    loggers = [logging.getLogger(name) for name in _SERVED_LOGGERS]
    logged = [(lg.level, lg.propagate, list(lg.handlers), lg.disabled) for lg in loggers]
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)
    for lg, (level, propagate, handlers, disabled) in zip(loggers, logged, strict=True):
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers
        lg.disabled = disabled


def _pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({exc}); the suite needs it",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The session's migrated database."""
    name = f"paygate_tpl_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(_pg_url(name))
        yield name
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> str:
    """A migrated PostgreSQL database, emptied for this test.

    One database serves the session; every table the schema defines is emptied before each
    test (in replica mode, so the journal's append-only triggers stand aside for the reset).
    """
    url = _pg_url(pg_template)
    empty_postgres(url)
    return url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all."""
    name = f"paygate_e_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite file."""
    return fresh_sqlite_url(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind: every test using it runs on both."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> FixedClock:
    """A clock fixed at 2026-11-25 10:00 in Shanghai."""
    return FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))


@pytest.fixture
def gateway(db_url: str, clock: FixedClock) -> Iterator[Gateway]:
    """A Gateway on a fresh database of each kind, with the fixed clock."""
    settings = Settings(database_url=db_url, seal_every=0, sqlite_synchronous="NORMAL")
    with Gateway.open(settings=settings, clock=clock) as gw:
        yield gw
