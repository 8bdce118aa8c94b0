"""Open bills indexed alone: an account's read touches its open bills, not its history.

Every payment decision reads the account's open bills (``paygate.records.load_bills``, and
``paygate_payment_read`` on PostgreSQL) by ``ix_bills_open (account_id, due_date)``. That index
held every bill ever issued, so each read walked the account's whole history to keep the
few still owed: one more row and page per account per month (at 10 M postings, 23 rows read
for one kept, 26 buffers against 3 on a new ledger). The index is now partial, on the bills
still owed, with the predicate the reads state word for word (PostgreSQL and SQLite use a
partial index only for a query whose condition is the index's). A bill leaves the index
when it is paid and costs nothing more to later reads. Frozen: imports nothing from paygate.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWED = "principal_paid < amount OR late_fee_paid < late_fee_charged"


def upgrade() -> None:
    op.drop_index("ix_bills_open", table_name="bills")
    op.create_index(
        "ix_bills_open",
        "bills",
        ["account_id", "due_date"],
        unique=False,
        postgresql_where=sa.text(_OWED),
        sqlite_where=sa.text(_OWED),
    )


def downgrade() -> None:
    op.drop_index("ix_bills_open", table_name="bills")
    op.create_index("ix_bills_open", "bills", ["account_id", "due_date"], unique=False)
