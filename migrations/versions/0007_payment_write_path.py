"""The payment write path: its read in one call, allocations without a foreign key.

``paygate_payment_read(account_nos, channels, txn_ids)`` is what a payment decision reads, in
one round trip: it locks the accounts (in id order), then, in a statement of its own and so
with a snapshot taken after the locks were granted (READ COMMITTED), reads each account's
columns, balance and open bills, and the payments already stored under the given (channel,
channel_txn_id) keys, looked up by the whole unique key.

Allocations no longer check their payment by foreign key; payments are never deleted.

An allocation is written by the statement that writes its payment (or by a decision that read
the payment under its account's lock), so the foreign key from ``allocations.payment_id`` to
``payments`` only ever confirmed what that statement had just written, with a lookup per
allocation whose plan PostgreSQL caches per connection: planned while ``payments`` was small,
it stayed a sequential scan as the table grew, and a payment's cost grew with it. What the key
protected, an allocation outliving its payment, is refused at its source instead: a payment
cannot be deleted (a trigger on each database). Frozen: imports nothing from paygate.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_allocations_payment_id_payments"


_READ = """
CREATE FUNCTION paygate_payment_read(nos text[], chs text[], txs text[])
RETURNS TABLE (accounts text, stored text) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM accounts a WHERE a.account_no = ANY(nos) ORDER BY a.id FOR UPDATE;
    RETURN QUERY SELECT
      (SELECT COALESCE(json_agg(json_build_array(
          a.id, a.account_no, a.name, a.category, a.prepaid, a.protected, a.currency,
          a.supply_state, a.receivable_account_id,
          (SELECT COALESCE(SUM(lb.balance), 0) FROM ledger_balances lb
            WHERE lb.account_id = a.receivable_account_id),
          (SELECT COALESCE(json_agg(json_build_array(
                      b.id, b.account_id, b.bill_no, b.due_date, b.amount, b.principal_paid,
                      b.late_fee_charged, b.late_fee_paid, b.late_fee_through, b.period)
                    ORDER BY b.due_date, b.bill_no), '[]'::json)
             FROM bills b WHERE b.account_id = a.id
              AND (b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged))
       ) ORDER BY a.id), '[]'::json)::text
         FROM accounts a WHERE a.account_no = ANY(nos)),
      (SELECT COALESCE(json_agg(json_build_array(p.channel, p.channel_txn_id, p.fingerprint,
                                                 p.receipt)), '[]'::json)::text
         FROM unnest(chs, txs) AS k(channel, txn)
         CROSS JOIN LATERAL (
            SELECT q.channel, q.channel_txn_id, q.fingerprint, q.receipt FROM payments q
             WHERE q.channel = k.channel AND q.channel_txn_id = k.txn) p);
END $$
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(_READ)
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
        op.execute("DROP FUNCTION paygate_payment_read(text[], text[], text[])")
    with op.batch_alter_table("allocations") as batch:
        batch.create_foreign_key(_FK, "payments", ["payment_id"], ["id"])
