"""Fresh databases for tests: SQLite files copied from one migrated template per process,
and a PostgreSQL database emptied in one round trip.

Migrating a new SQLite file costs half a second, creating a PostgreSQL database a few tenths;
copying a migrated file costs a millisecond, deleting the rows a test left a few.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import psycopg

from paygate.store import migrate
from paygate.store.schema import metadata


@cache
def _template() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="paygate-template-"))
    # Every test process (and every process a test starts) makes its own; none outlives it.
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def fresh_sqlite_url(directory: Path, name: str = "paygate.db") -> str:
    """A migrated, empty SQLite database in ``directory``."""
    target = directory / name
    shutil.copyfile(_template(), target)
    return f"sqlite:///{target}"


def empty_postgres(url: str) -> None:
    """Delete every row of every paygate table (in replica mode, so that the journal's
    append-only triggers and the foreign-key checks stand aside for the reset).

    ``DELETE`` rather than ``TRUNCATE``: a test leaves a few rows in a few tables, and deleting
    them costs milliseconds, where truncating some forty tables and their month partitions
    makes new files for every one of them and costs half a second to a second a test.
    """
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url.split("://", 1)[1]
    deletes = "; ".join(f"DELETE FROM {name}" for name in metadata.tables if name != "id_blocks")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(deletes)
