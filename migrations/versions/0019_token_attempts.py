"""Attempts at the token endpoint: ``token_attempts``, one row per attempt, refusals included.

The token endpoint bounds guessing per client id and per source address over a sliding
window; ``paygate serve`` runs several workers, so the failures are counted from this table,
which every worker reads (paygate.token_attempts). Frozen: imports nothing from paygate.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_attempts")),
    )
    op.create_index(
        "ix_token_attempts_client_id_at", "token_attempts", ["client_id", "at"], unique=False
    )
    op.create_index("ix_token_attempts_source_at", "token_attempts", ["source", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_token_attempts_source_at", table_name="token_attempts")
    op.drop_index("ix_token_attempts_client_id_at", table_name="token_attempts")
    op.drop_table("token_attempts")
