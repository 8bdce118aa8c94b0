"""The payment read plans once per connection, and every lookup on its index.

``paygate_payment_read`` (revision 0007) is one round trip of every payment decision on
PostgreSQL. PL/pgSQL planned its main statement (an account's columns, its balance and its
open bills, with subqueries) afresh on every call: the generic plan's estimate, made for arrays
of unknown length, never beat a custom plan's, so the cache was never used, and planning cost
more than running the statement (about 0.25 ms of a 0.45 ms read on a 2-core server).

The function now plans that statement once per connection (``plan_cache_mode =
force_generic_plan``). A plan kept for a connection's life must not depend on how large the
tables were when it was made: a new database's ``accounts`` is planned as a sequential scan,
and that plan, kept, would read the whole table on every payment. ``enable_seqscan = off``
inside the function makes each lookup its index (``uq_accounts_account_no``,
``pk_ledger_balances``, ``ix_bills_open``).

The stored payments are looked up in a statement of their own, planned on each call with the
table's statistics as they are (``EXECUTE``, sequential scans allowed again): a generic plan,
made without knowing the keys, picked ``ix_payments_channel_day`` and filtered on the
transaction id, or walked a whole index once per batch, a cost that grows with every payment
stored; planned with the keys, it is ``uq_payments_channel_channel_txn_id`` once the table is
larger than a few pages; a single key (every ``pay()``) by a plain equality, the cheapest
statement to plan. Both settings apply inside the function only. The lock is taken
first, and each read is a statement of its own after it, as before. PostgreSQL only; SQLite
has no function. Frozen: imports nothing from paygate.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_READ = """
CREATE OR REPLACE FUNCTION paygate_payment_read(nos text[], chs text[], txs text[])
RETURNS TABLE (accounts text, stored text) LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    found_accounts text;
    found_payments text;
BEGIN
    PERFORM 1 FROM accounts a WHERE a.account_no = ANY(nos) ORDER BY a.id FOR UPDATE;
    SELECT COALESCE(json_agg(json_build_array(
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
      INTO found_accounts
      FROM accounts a WHERE a.account_no = ANY(nos);
    PERFORM set_config('enable_seqscan', 'on', true);
    IF cardinality(chs) = 1 THEN
        EXECUTE
          'SELECT COALESCE(json_agg(json_build_array(q.channel, q.channel_txn_id,
                                                     q.fingerprint, q.receipt)), ''[]''::json)::text
             FROM payments q WHERE q.channel = $1 AND q.channel_txn_id = $2'
          INTO found_payments USING chs[1], txs[1];
        RETURN QUERY SELECT found_accounts, found_payments;
        RETURN;
    END IF;
    EXECUTE
      'SELECT COALESCE(json_agg(json_build_array(p.channel, p.channel_txn_id, p.fingerprint,
                                                 p.receipt)), ''[]''::json)::text
         FROM unnest($1, $2) AS k(channel, txn)
         CROSS JOIN LATERAL (
            SELECT q.channel, q.channel_txn_id, q.fingerprint, q.receipt FROM payments q
             WHERE q.channel = k.channel AND q.channel_txn_id = k.txn) p'
      INTO found_payments USING chs, txs;
    RETURN QUERY SELECT found_accounts, found_payments;
END $$
"""

# Revision 0007's function, for the downgrade (CREATE OR REPLACE also drops the settings).
_READ_0007 = """
CREATE OR REPLACE FUNCTION paygate_payment_read(nos text[], chs text[], txs text[])
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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_READ)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_READ_0007)
