"""The payment feed's refunds: refund orders found by their journal entries.

The payment feed walks the journal in commit order and names, for each entry, the payment,
reversal or refund order it moved money for. Refund orders are found by the entry that took
the credit (``entry_id``) and the entry that settled them (``final_entry_id``); these indexes
keep that lookup one index probe per entry. Frozen: imports nothing from paygate.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_refund_orders_entry_id", "refund_orders", ["entry_id"], unique=False)
    op.create_index(
        "ix_refund_orders_final_entry_id", "refund_orders", ["final_entry_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_refund_orders_final_entry_id", table_name="refund_orders")
    op.drop_index("ix_refund_orders_entry_id", table_name="refund_orders")
