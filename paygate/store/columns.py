"""What every table of the schema is built with: the metadata and its naming convention, the
id and writer columns, and the UTC timestamp type (:mod:`paygate.store.schema` holds the
tables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    MetaData,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "NAMING_CONVENTION",
    "SQLITE_TIMESTAMP_FORMAT",
    "UTCDateTime",
    "id_column",
    "metadata",
    "writer_xid_column",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite has no timestamp type: times are stored as UTC text in this exact form, which sorts
# chronologically and is what SQLAlchemy's own SQLite DATETIME writes.
SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC (``timestamptz`` on PostgreSQL, UTC text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.strptime(value, SQLITE_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def id_column() -> Column[int]:
    """The primary key ``id``: allocated by the application in blocks, never by the database."""
    return Column("id", BigInteger, primary_key=True, autoincrement=False)


def writer_xid_column() -> Column[int]:
    """``writer_xid``: the id of the transaction that wrote the row (PostgreSQL; 0 on SQLite)."""
    # The feeds' commit order on PostgreSQL (paygate.feeds): the id of the transaction that
    # wrote the row, given by the column's default (pg_current_xact_id(), set by migration
    # 0010), so that no writer names it. Rows older than the column, and every row on SQLite
    # (whose feeds are ordered by feed_log instead), hold 0.
    return Column("writer_xid", BigInteger, nullable=False, server_default="0")
