"""Bill corrections: cancellation (作废) and adjustment (退补) of issued bills.

``bill_corrections`` holds one row per correction, unique by the billing system's
``correction_id`` (a retry takes effect once). A cancelled bill's amount becomes zero, so the
bills' amount check allows zero (never less); going back down is refused while a cancelled
bill is stored. Frozen: imports nothing from paygate.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bills") as batch:
        batch.drop_constraint(op.f("ck_bills_amount_positive"), type_="check")
        batch.create_check_constraint(op.f("ck_bills_amount_not_negative"), "amount >= 0")
    op.create_table(
        "bill_corrections",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("correction_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("bill_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_before", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_reversed", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('cancel', 'adjust')", name=op.f("ck_bill_corrections_kind")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_bill_corrections_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["bill_id"], ["bills.id"], name=op.f("fk_bill_corrections_bill_id_bills")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_bill_corrections_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bill_corrections")),
        sa.UniqueConstraint("correction_id", name=op.f("uq_bill_corrections_correction_id")),
    )
    op.create_index(
        op.f("ix_bill_corrections_bill_id"), "bill_corrections", ["bill_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_bill_corrections_bill_id"), table_name="bill_corrections")
    op.drop_table("bill_corrections")
    with op.batch_alter_table("bills") as batch:
        batch.drop_constraint(op.f("ck_bills_amount_not_negative"), type_="check")
        batch.create_check_constraint(op.f("ck_bills_amount_positive"), "amount > 0")
