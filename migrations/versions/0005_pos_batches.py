"""POS batches a terminal has settled, and payments indexed by terminal and day.

A void for a settled batch is refused by every process; kiosk closes and POS batch totals
read a terminal's payments by index. Frozen: imports nothing from paygate.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pos_batches",
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("batch_no", sa.String(length=32), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "batch_no", name=op.f("pk_pos_batches")),
    )
    op.create_index(
        "ix_payments_terminal", "payments", ["terminal_id", "business_date"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_payments_terminal", table_name="payments")
    op.drop_table("pos_batches")
