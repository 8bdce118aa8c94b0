"""Refunds and account closure: refund orders, closures, payments held for closed accounts.

``refund_orders`` holds one row per refund, unique by the caller's ``refund_id`` (a retry takes
effect once), with its state (pending → submitted → succeeded | failed), attempts and schedule;
``account_closures`` one row per closed account, unique by ``closure_id`` and by account;
``payment_findings`` a row per payment held in suspense (reason ``account_closed``). An
account's supply state may now be ``closed``: the column is text, nothing to change.
Frozen: imports nothing from paygate.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refund_orders",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payee", sa.Text(), nullable=True),
        sa.Column("credit_taken", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_reference", sa.String(length=128), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("final_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refund_orders_amount_positive")),
        sa.CheckConstraint(
            "state IN ('pending', 'submitted', 'succeeded', 'failed')",
            name=op.f("ck_refund_orders_state"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_refund_orders_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refund_orders_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_refund_orders_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["final_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_refund_orders_final_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_orders")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_refund_orders_refund_id")),
    )
    op.create_index(
        op.f("ix_refund_orders_account_id"), "refund_orders", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_refund_orders_payment_id"), "refund_orders", ["payment_id"], unique=False
    )
    op.create_index(
        "ix_refund_orders_due", "refund_orders", ["state", "next_attempt_at"], unique=False
    )
    op.create_table(
        "account_closures",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("closure_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("final_bill_no", sa.String(length=64), nullable=True),
        sa.Column("refund_route", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_closures_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_closures")),
        sa.UniqueConstraint("account_id", name=op.f("uq_account_closures_account_id")),
        sa.UniqueConstraint("closure_id", name=op.f("uq_account_closures_closure_id")),
    )
    op.create_table(
        "payment_findings",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payment_findings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_findings")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_payment_findings_payment_id")),
    )
    op.create_index(
        op.f("ix_payment_findings_account_id"), "payment_findings", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payment_findings_account_id"), table_name="payment_findings")
    op.drop_table("payment_findings")
    op.drop_table("account_closures")
    op.drop_index("ix_refund_orders_due", table_name="refund_orders")
    op.drop_index(op.f("ix_refund_orders_payment_id"), table_name="refund_orders")
    op.drop_index(op.f("ix_refund_orders_account_id"), table_name="refund_orders")
    op.drop_table("refund_orders")
