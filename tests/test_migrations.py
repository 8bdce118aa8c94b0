"""Migrations produce exactly the models' schema, on both databases; an un-migrated PostgreSQL
database is refused with a message that says what to run."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from paygate.errors import SchemaNotReadyError
from paygate.gateway import Gateway
from paygate.store import migrate
from paygate.store.engine import normalize_url
from paygate.store.schema import (
    POSTGRESQL_COLLATED_INDEXES,
    alembic_include_name,
    alembic_include_object,
    metadata,
)


def diff(url: str) -> list[object]:
    engine = create_engine(normalize_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": alembic_include_name,
                    "include_object": alembic_include_object,
                },
            )
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def test_sqlite_migrations_match_the_models(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    assert diff(sqlite_url) == []


@pytest.mark.postgres
def test_postgresql_migrations_match_the_models(empty_pg_url: str) -> None:
    migrate.upgrade(empty_pg_url)
    assert diff(empty_pg_url) == []
    assert migrate.current_revision(empty_pg_url) == migrate.head_revision()
    # Indexes Alembic cannot compare (a collated column reflects as the bare column).
    assert collated_indexes(empty_pg_url) == {
        "ix_accounts_account_no_c": (
            "CREATE INDEX ix_accounts_account_no_c ON public.accounts USING btree "
            '(account_no COLLATE "C")'
        )
    }
    migrate.downgrade(empty_pg_url, "0022")
    assert collated_indexes(empty_pg_url) == {}


def collated_indexes(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
            (sorted(POSTGRESQL_COLLATED_INDEXES),),
        ).fetchall()
    return {str(name): str(definition) for name, definition in rows}


@pytest.mark.postgres
def test_an_unmigrated_postgresql_database_is_refused_by_name(empty_pg_url: str) -> None:
    with pytest.raises(SchemaNotReadyError, match="paygate db upgrade"):
        Gateway.open(empty_pg_url)


def test_sqlite_is_created_and_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert migrate.current_revision(url) is None
    with Gateway.open(url):
        pass
    assert migrate.current_revision(url) == migrate.head_revision()


def test_downgrade_and_upgrade_again(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert diff(db_url) == []


def test_migrations_import_nothing_from_paygate() -> None:
    for path in migrate.migrations_dir().glob("versions/*.py"):
        imports = [
            line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))
        ]
        assert not [line for line in imports if "paygate" in line], path
