"""Feeds in commit order, and the service clients that read them.

A consumer of a feed resumes after the last item it saw; items must therefore appear in the
order their transactions commit, which the application's block-allocated ids are not. Each
database records that order its own way, without a line of the write path knowing:

* PostgreSQL: ``writer_xid`` on journal entries, outbox events and supply orders, filled by
  the column's default with the writing transaction's id (``pg_current_xact_id()``). A reader
  takes only rows of transactions older than its snapshot's horizon (``pg_snapshot_xmin``),
  which have all finished, and orders them by (writer_xid, id). The column is added with the
  constant default 0 first (no table rewrite; the journal refuses updates, so existing rows
  keep 0 and come first, by id), then given its real default for new rows.
* SQLite: one writer at a time, so an AFTER INSERT trigger appending to ``feed_log`` (rowid:
  max + 1) numbers rows in commit order. Existing rows are logged here, in id order.

Frozen: imports nothing from paygate.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, feed_log source)
_SOURCES = (("journal_entries", "journal"), ("outbox", "outbox"), ("supply_orders", "supply"))

_PG_XID = "(pg_current_xact_id()::text)::bigint"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, _source in _SOURCES:
        op.add_column(
            table, sa.Column("writer_xid", sa.BigInteger(), nullable=False, server_default="0")
        )
        if dialect == "postgresql":
            op.execute(f"ALTER TABLE {table} ALTER COLUMN writer_xid SET DEFAULT {_PG_XID}")
        op.create_index(f"ix_{table}_writer_xid", table, ["writer_xid", "id"], unique=False)
    op.create_index("ix_payments_entry_id", "payments", ["entry_id"], unique=False)
    op.create_index("ix_payments_reversal_entry_id", "payments", ["reversal_entry_id"])
    op.create_table(
        "feed_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_feed_log")),
    )
    op.create_index("ix_feed_log_source_seq", "feed_log", ["source", "seq"], unique=False)
    op.create_index("ix_feed_log_source_row", "feed_log", ["source", "row_id"], unique=True)
    if dialect == "sqlite":
        for table, source in _SOURCES:
            op.execute(
                f"INSERT INTO feed_log (source, row_id) "  # noqa: S608 - names are ours
                f"SELECT '{source}', id FROM {table} ORDER BY id"
            )
            trigger = (
                f"CREATE TRIGGER {table}_feed_log AFTER INSERT ON {table} "  # noqa: S608
                f"BEGIN INSERT INTO feed_log (source, row_id) VALUES ('{source}', NEW.id); END"
            )
            op.execute(trigger)
    op.create_table(
        "service_clients",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_service_clients_client_id")),
    )


def downgrade() -> None:
    op.drop_table("service_clients")
    if op.get_bind().dialect.name == "sqlite":
        for table, _source in _SOURCES:
            op.execute(f"DROP TRIGGER {table}_feed_log")
    op.drop_index("ix_feed_log_source_row", table_name="feed_log")
    op.drop_index("ix_feed_log_source_seq", table_name="feed_log")
    op.drop_table("feed_log")
    op.drop_index("ix_payments_reversal_entry_id", table_name="payments")
    op.drop_index("ix_payments_entry_id", table_name="payments")
    for table, _source in reversed(_SOURCES):
        op.drop_index(f"ix_{table}_writer_xid", table_name=table)
        op.drop_column(table, "writer_xid")
