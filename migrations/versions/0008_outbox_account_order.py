"""Outbox events by account, oldest first: the dispatcher's per-account order reads them.

An event is claimed only with every earlier undelivered event of its account; the index
finds those without scanning the backlog. Frozen: imports nothing from paygate.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_account", "outbox", ["account_no", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_account", table_name="outbox")
