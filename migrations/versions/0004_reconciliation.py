"""Reconciliation: runs, staged statement lines, findings and resolutions.

A run is one statement file (a channel's settlement statement for a business date, or a bank
statement); its lines are staged in bulk, its findings written set-based, and every resolution
(automatic or by a person) is kept with who, when and what it posted. The bulk tables (lines
and findings) carry no foreign keys. Frozen: imports nothing from paygate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_findings",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("finding_class", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("line_seq", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("line_key", sa.String(length=160), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("resolution_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_reconciliation_findings")),
    )
    op.create_index(
        "ix_reconciliation_findings_payment_id",
        "reconciliation_findings",
        ["payment_id"],
        unique=False,
    )
    op.create_index(
        "ix_reconciliation_findings_status", "reconciliation_findings", ["status"], unique=False
    )
    op.create_table(
        "reconciliation_lines",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel_txn_id", sa.String(length=128), nullable=True),
        sa.Column("original_txn_id", sa.String(length=128), nullable=True),
        sa.Column("account_no", sa.String(length=128), nullable=True),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("line_key", sa.String(length=160), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_reconciliation_lines")),
    )
    op.create_index(
        "ix_reconciliation_lines_txn",
        "reconciliation_lines",
        ["run_id", "channel_txn_id"],
        unique=False,
    )
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("fees", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("superseded_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_runs_superseded_by_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint(
            "channel",
            "business_date",
            "file_sha256",
            name=op.f("uq_reconciliation_runs_channel_business_date_file_sha256"),
        ),
    )
    op.create_index(
        "ix_reconciliation_runs_channel_day",
        "reconciliation_runs",
        ["channel", "business_date"],
        unique=False,
    )
    op.create_table(
        "reconciliation_resolutions",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("finding_seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("line_key", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_no", sa.String(length=64), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_reconciliation_resolutions_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_reconciliation_resolutions_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_resolutions_run_id_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_resolutions")),
        sa.UniqueConstraint(
            "channel",
            "line_key",
            "action",
            name=op.f("uq_reconciliation_resolutions_channel_line_key_action"),
        ),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_resolutions")
    op.drop_index("ix_reconciliation_runs_channel_day", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_reconciliation_lines_txn", table_name="reconciliation_lines")
    op.drop_table("reconciliation_lines")
    op.drop_index("ix_reconciliation_findings_status", table_name="reconciliation_findings")
    op.drop_index("ix_reconciliation_findings_payment_id", table_name="reconciliation_findings")
    op.drop_table("reconciliation_findings")
