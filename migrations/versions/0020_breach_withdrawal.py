"""Withdrawn breaches: a breach the clock recorded and a later fact disproved.

A step's breach is recorded when paygate last knew the step undone past its deadline; a
head-end reporting later that the step was done before the deadline disproves it. The row is
kept (who detected what, when) and marked ``withdrawn_at`` with the reason; every count of
breaches leaves withdrawn ones out. Frozen: imports nothing from paygate.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("breaches", sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("breaches", sa.Column("withdrawn_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("breaches") as batch:
        batch.drop_column("withdrawn_reason")
        batch.drop_column("withdrawn_at")
