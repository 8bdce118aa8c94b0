"""The console's sign-in through an identity provider (OpenID Connect).

``console_staff.oidc_identity`` links a staff member to the identity provider's name for them
(the value of the configured claim), one staff member per identity; ``console_oidc_flows``
holds each authorization request's state, nonce and PKCE verifier until its callback takes it.
Frozen: imports nothing from paygate.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A batch: SQLite adds a unique constraint only by rebuilding the table.
    with op.batch_alter_table("console_staff") as batch:
        batch.add_column(sa.Column("oidc_identity", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(op.f("uq_console_staff_oidc_identity"), ["oidc_identity"])
    op.create_table(
        "console_oidc_flows",
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("next_path", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("binding_hash", name=op.f("pk_console_oidc_flows")),
    )
    op.create_index(
        "ix_console_oidc_flows_created_at", "console_oidc_flows", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_console_oidc_flows_created_at", table_name="console_oidc_flows")
    op.drop_table("console_oidc_flows")
    with op.batch_alter_table("console_staff") as batch:
        batch.drop_constraint(op.f("uq_console_staff_oidc_identity"), type_="unique")
        batch.drop_column("oidc_identity")
