"""Channel tables: devices and their keys, nonces, payment orders, kiosk closes, vouchers.

Also records which terminal took a payment. Frozen: imports nothing from paygate.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("key_kind", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("key_ciphertext", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_id", name=op.f("uq_devices_device_id")),
    )
    op.create_table(
        "kiosk_closes",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("terminal_id", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("counted_cash", sa.BigInteger(), nullable=False),
        sa.Column("reported_total", sa.BigInteger(), nullable=False),
        sa.Column("reported_count", sa.Integer(), nullable=False),
        sa.Column("ledger_total", sa.BigInteger(), nullable=False),
        sa.Column("ledger_count", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_closes")),
        sa.UniqueConstraint(
            "terminal_id", "business_date", name=op.f("uq_kiosk_closes_terminal_id_business_date")
        ),
    )
    op.create_table(
        "nonces",
        sa.Column("nonce_key", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce_key", name=op.f("pk_nonces")),
    )
    op.create_index(op.f("ix_nonces_expires_at"), "nonces", ["expires_at"], unique=False)
    op.create_table(
        "payment_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account_no", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_orders_amount_positive")),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_payment_orders")),
    )
    op.create_table(
        "voucher_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("account_no", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_attempts")),
    )
    op.create_index(
        op.f("ix_voucher_attempts_account_no"), "voucher_attempts", ["account_no"], unique=False
    )
    op.create_index(op.f("ix_voucher_attempts_at"), "voucher_attempts", ["at"], unique=False)
    op.create_index(
        op.f("ix_voucher_attempts_serial"), "voucher_attempts", ["serial"], unique=False
    )
    op.create_table(
        "voucher_batches",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batch_no", sa.String(length=64), nullable=False),
        sa.Column("face_value", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("card_count", sa.Integer(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("retailer", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("face_value > 0", name=op.f("ck_voucher_batches_face_value_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_batches")),
        sa.UniqueConstraint("batch_no", name=op.f("uq_voucher_batches_batch_no")),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("pin_hash", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_no", sa.String(length=64), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["voucher_batches.id"], name=op.f("fk_vouchers_batch_id_voucher_batches")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_vouchers_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("serial", name=op.f("uq_vouchers_serial")),
    )
    op.create_index(op.f("ix_vouchers_batch_id"), "vouchers", ["batch_id"], unique=False)
    op.add_column("payments", sa.Column("terminal_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "terminal_id")
    op.drop_index(op.f("ix_vouchers_batch_id"), table_name="vouchers")
    op.drop_table("vouchers")
    op.drop_table("voucher_batches")
    op.drop_index(op.f("ix_voucher_attempts_serial"), table_name="voucher_attempts")
    op.drop_index(op.f("ix_voucher_attempts_at"), table_name="voucher_attempts")
    op.drop_index(op.f("ix_voucher_attempts_account_no"), table_name="voucher_attempts")
    op.drop_table("voucher_attempts")
    op.drop_table("payment_orders")
    op.drop_index(op.f("ix_nonces_expires_at"), table_name="nonces")
    op.drop_table("nonces")
    op.drop_table("kiosk_closes")
    op.drop_table("devices")
