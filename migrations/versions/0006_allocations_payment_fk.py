"""Allocations no longer check their payment by foreign key; payments are never deleted.

An allocation is written by the statement that writes its payment (or by a decision that read
the payment under its account's lock), so the foreign key from ``allocations.payment_id`` to
``payments`` only ever confirmed what that statement had just written, with a lookup per
allocation whose plan PostgreSQL caches per connection: planned while ``payments`` was small,
it stayed a sequential scan as the table grew, and a payment's cost grew with it. What the key
protected, an allocation outliving its payment, is refused at its source instead: a payment
cannot be deleted (a trigger on each database). Frozen: imports nothing from paygate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_allocations_payment_id_payments"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("allocations") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")
    if postgres:
        op.execute(
            """
            CREATE FUNCTION paygate_refuse_payment_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'paygate: a payment is never deleted (payment %)', OLD.id
                    USING ERRCODE = 'P0001';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments "
            "FOR EACH ROW EXECUTE FUNCTION paygate_refuse_payment_delete()"
        )
    else:
        op.execute(
            "CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments "
            "BEGIN SELECT RAISE(ABORT, 'paygate: a payment is never deleted'); END"
        )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER payments_no_delete"
        + (" ON payments" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION paygate_refuse_payment_delete()")
    with op.batch_alter_table("allocations") as batch:
        batch.create_foreign_key(_FK, "payments", ["payment_id"], ["id"])
