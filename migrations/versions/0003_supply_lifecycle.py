"""Supply lifecycle: order steps, deadlines and leases; meters; breaches; dunning notices.

Also leases on outbox rows, so several dispatchers can run. Frozen: imports nothing from
paygate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dunning_notices",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("served_by", sa.String(length=64), nullable=False),
        sa.Column("arrears", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_dunning_notices_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dunning_notices")),
    )
    op.create_index(
        op.f("ix_dunning_notices_account_id"), "dunning_notices", ["account_id"], unique=False
    )
    op.create_table(
        "breaches",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["supply_orders.id"], name=op.f("fk_breaches_order_id_supply_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breaches")),
        sa.UniqueConstraint("order_id", "step", name=op.f("uq_breaches_order_id_step")),
    )
    op.create_index(op.f("ix_breaches_order_id"), "breaches", ["order_id"], unique=False)
    op.add_column("accounts", sa.Column("headend", sa.String(length=32), nullable=True))
    op.add_column("accounts", sa.Column("meter_address", sa.String(length=32), nullable=True))
    op.add_column("outbox", sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("claim_token", sa.String(length=32), nullable=True))
    op.add_column(
        "supply_orders",
        sa.Column("action", sa.String(length=16), server_default="direct_close", nullable=False),
    )
    op.add_column("supply_orders", sa.Column("headend", sa.String(length=32), nullable=True))
    op.add_column("supply_orders", sa.Column("approved_by", sa.String(length=64), nullable=True))
    op.add_column(
        "supply_orders", sa.Column("dispatch_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("ack_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("legal_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "supply_orders", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "supply_orders", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("supply_orders", sa.Column("claim_token", sa.String(length=32), nullable=True))
    op.add_column("supply_orders", sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_supply_orders_due", "supply_orders", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_supply_orders_due", table_name="supply_orders")
    op.drop_column("supply_orders", "last_error")
    op.drop_column("supply_orders", "claim_token")
    op.drop_column("supply_orders", "claimed_until")
    op.drop_column("supply_orders", "next_attempt_at")
    op.drop_column("supply_orders", "attempts")
    op.drop_column("supply_orders", "completed_at")
    op.drop_column("supply_orders", "acknowledged_at")
    op.drop_column("supply_orders", "dispatched_at")
    op.drop_column("supply_orders", "legal_due_at")
    op.drop_column("supply_orders", "ack_due_at")
    op.drop_column("supply_orders", "dispatch_due_at")
    op.drop_column("supply_orders", "approved_by")
    op.drop_column("supply_orders", "headend")
    op.drop_column("supply_orders", "action")
    op.drop_column("outbox", "claim_token")
    op.drop_column("outbox", "claimed_until")
    op.drop_column("outbox", "dead_at")
    op.drop_column("accounts", "meter_address")
    op.drop_column("accounts", "headend")
    op.drop_index(op.f("ix_breaches_order_id"), table_name="breaches")
    op.drop_table("breaches")
    op.drop_index(op.f("ix_dunning_notices_account_id"), table_name="dunning_notices")
    op.drop_table("dunning_notices")
