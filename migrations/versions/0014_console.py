"""The service centre's console: staff, their sessions, the audit trail, negotiations.

``console_staff`` holds each staff member's role and argon2 password hash (never the
password) with the lockout counter; ``console_sessions`` the SHA-256 of each session token
(never the token) with its CSRF token; ``console_audit`` every staff action with the person
and the reason; ``console_negotiations`` the negotiation with a protected account before its
disconnection (大客户停电协商); and an index on ``accounts.meter_address``, by which the
console finds a customer. Frozen: imports nothing from paygate.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The console finds a customer by the meter's address (DL/T 645 通信地址).
    op.create_index("ix_accounts_meter_address", "accounts", ["meter_address"], unique=False)
    op.create_table(
        "console_staff",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_signins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_signin_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('clerk', 'finance', 'supervisor', 'admin')",
            name=op.f("ck_console_staff_role"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'disabled')", name=op.f("ck_console_staff_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_staff")),
        sa.UniqueConstraint("username", name=op.f("uq_console_staff_username")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_why", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["console_staff.id"],
            name=op.f("fk_console_sessions_staff_id_console_staff"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_staff_id"), "console_sessions", ["staff_id"], unique=False
    )
    op.create_table(
        "console_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("subject", sa.String(length=160), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"], unique=False)
    op.create_table(
        "console_negotiations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("counterpart", sa.String(length=200), nullable=False),
        sa.Column("agreed_on", sa.Date(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_console_negotiations_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["supply_orders.id"],
            name=op.f("fk_console_negotiations_order_id_supply_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_negotiations")),
    )
    op.create_index(
        op.f("ix_console_negotiations_account_id"),
        "console_negotiations",
        ["account_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_negotiations_account_id"), table_name="console_negotiations")
    op.drop_table("console_negotiations")
    op.drop_index("ix_console_audit_at", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_index(op.f("ix_console_sessions_staff_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("console_staff")
    op.drop_index("ix_accounts_meter_address", table_name="accounts")
