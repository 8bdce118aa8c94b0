"""A payment's server work: one index for the idempotency lookup, postings checked per statement.

Every payment decision looks up the payments already stored under its (channel,
channel_txn_id) keys. ``payments`` had two indexes that lead with ``channel``: the unique key
and ``ix_payments_channel_day (channel, business_date)``. Whenever the table's statistics were
older than its rows (a new database, a table grown since its last ANALYZE), both paths cost
the same to the planner and it took the second: it walked every payment of the channel and
kept the one whose ``channel_txn_id`` matched. Measured on the prepared database of
``bench/peers.py``: 801 heap reads per payment over a run of 1,500 (one per payment stored
before it), and ``paygate_payment_read`` took 305-328 µs a call, a cost that grew with every
payment.

* ``ix_payments_channel_day`` becomes ``ix_payments_day_channel (business_date, channel)``:
  it still finds a day's payments of one channel (reconciliation, a terminal's close) by both
  columns, but no longer leads with ``channel``, so the unique key is the only index a lookup
  by (channel, channel_txn_id) can use, whatever the statistics say.
* ``paygate_payment_read`` looks one key (every ``pay()``) up in a plain statement, planned
  once per connection like the rest of the function (revision 0013 planned it afresh on every
  call, by ``EXECUTE``, to escape the generic plan's choice of the wrong index): equality on
  the unique index, 135 µs a call measured as above, flat with the table's size. Several keys
  (``pay_many``) are still looked up by ``EXECUTE``, planned with the keys in hand: a kept
  generic plan of that join (a nested loop of probes) ran ``pay_many`` at half its rate
  (``bench/ingest.py``: 1,271-1,348 payments/s against 2,864-3,140 planned per call).
* ``ix_payments_reversal_entry_id`` holds only the payments that were reversed (partial,
  ``reversal_entry_id IS NOT NULL``): the feed's lookups by a reversal's entry are all it
  serves, and a new payment no longer adds a NULL to it.

On PostgreSQL the postings' two foreign keys (to their journal entry and to their ledger
account) become part of the statement-level check that already sums each statement's postings
per entry. A row foreign key is one query per posting and per key, each locking the row it
finds (``FOR KEY SHARE``): eight queries for a payment's four postings, and a lock on the
clearing and late-fee ledger accounts that every payment takes, written to the WAL and shared
between concurrent writers. ``paygate_check_postings_balance`` now also probes, once per
distinct (entry, ledger account) pair of the statement, that both exist, and refuses the
statement with SQLSTATE 23503 (``foreign_key_violation``) if either does not: the same
refusal, at the same moment (the end of the statement), as the keys. What the keys' locks
guarded against, the referenced row going away before the writer commits, cannot happen:
journal entries are append-only (revision 0001's triggers), and a ledger account is now never
deleted nor given another id (``ledger_accounts_kept``). SQLite keeps the declared keys, which
cost it no round trip. Measured beside the keys on copies of the same database: 30-50 µs less
server CPU per payment.

Frozen: imports nothing from paygate.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REVERSED = "reversal_entry_id IS NOT NULL"

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
    IF cardinality(chs) = 1 THEN
        SELECT COALESCE(json_agg(json_build_array(q.channel, q.channel_txn_id,
                                                  q.fingerprint, q.receipt)), '[]'::json)::text
          INTO found_payments
          FROM payments q WHERE q.channel = chs[1] AND q.channel_txn_id = txs[1];
    ELSE
        -- Planned on each call with the keys in hand (as revision 0013 planned both): a kept
        -- generic plan of this join was measured at half the rate of pay_many.
        PERFORM set_config('enable_seqscan', 'on', true);
        EXECUTE
          'SELECT COALESCE(json_agg(json_build_array(p.channel, p.channel_txn_id, p.fingerprint,
                                                     p.receipt)), ''[]''::json)::text
             FROM unnest($1, $2) AS k(channel, txn)
             CROSS JOIN LATERAL (
                SELECT q.channel, q.channel_txn_id, q.fingerprint, q.receipt FROM payments q
                 WHERE q.channel = k.channel AND q.channel_txn_id = k.txn) p'
          INTO found_payments USING chs, txs;
    END IF;
    RETURN QUERY SELECT found_accounts, found_payments;
END $$
"""

# Revision 0013's function, for the downgrade.
_READ_0013 = """
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


_FKS = (
    ("fk_postings_entry_id_journal_entries", "entry_id", "journal_entries"),
    ("fk_postings_account_id_ledger_accounts", "account_id", "ledger_accounts"),
)

_CHECK_POSTINGS = """
CREATE OR REPLACE FUNCTION paygate_check_postings_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.entry_id, n.currency, sum(n.amount) AS total INTO bad
      FROM new_postings n
     GROUP BY n.entry_id, n.currency
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance in %: postings sum to %',
            bad.entry_id, bad.currency, bad.total USING ERRCODE = '23514';
    END IF;
    -- Scalar subqueries, not EXISTS: a probe of the primary key per pair, never a plan that
    -- hashes a whole table, whatever the number of rows the statement inserted.
    SELECT k.entry_id, k.account_id,
           (SELECT true FROM journal_entries e WHERE e.id = k.entry_id) IS NOT NULL AS entry_found
      INTO bad
      FROM (SELECT DISTINCT n.entry_id, n.account_id FROM new_postings n) k
     WHERE (SELECT true FROM journal_entries e WHERE e.id = k.entry_id) IS NULL
        OR (SELECT true FROM ledger_accounts l WHERE l.id = k.account_id) IS NULL
     LIMIT 1;
    IF FOUND THEN
        IF bad.entry_found THEN
            RAISE EXCEPTION 'a posting names ledger account %, which does not exist',
                bad.account_id USING ERRCODE = '23503';
        END IF;
        RAISE EXCEPTION 'a posting names journal entry %, which does not exist',
            bad.entry_id USING ERRCODE = '23503';
    END IF;
    RETURN NULL;
END $$
"""

# Revision 0009's body, for the downgrade.
_CHECK_POSTINGS_0009 = """
CREATE OR REPLACE FUNCTION paygate_check_postings_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.entry_id, n.currency, sum(n.amount) AS total INTO bad
      FROM new_postings n
     GROUP BY n.entry_id, n.currency
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance in %: postings sum to %',
            bad.entry_id, bad.currency, bad.total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$
"""

_KEEP_LEDGER_ACCOUNTS = """
CREATE FUNCTION paygate_refuse_ledger_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'paygate: % of ledger account % is refused: postings name it by its id',
        TG_OP, OLD.id USING ERRCODE = 'P0001';
END $$
"""


def upgrade() -> None:
    op.drop_index("ix_payments_channel_day", table_name="payments")
    op.create_index(
        "ix_payments_day_channel", "payments", ["business_date", "channel"], unique=False
    )
    op.drop_index("ix_payments_reversal_entry_id", table_name="payments")
    op.create_index(
        "ix_payments_reversal_entry_id",
        "payments",
        ["reversal_entry_id"],
        unique=False,
        postgresql_where=sa.text(_REVERSED),
        sqlite_where=sa.text(_REVERSED),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_READ)
    for name, _, _ in _FKS:
        op.drop_constraint(name, "postings", type_="foreignkey")
    op.execute(_CHECK_POSTINGS)
    op.execute(_KEEP_LEDGER_ACCOUNTS)
    op.execute(
        "CREATE TRIGGER ledger_accounts_kept BEFORE DELETE OR UPDATE OF id ON ledger_accounts "
        "FOR EACH ROW EXECUTE FUNCTION paygate_refuse_ledger_account_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_accounts_kept ON ledger_accounts")
        op.execute("DROP FUNCTION paygate_refuse_ledger_account_change()")
        op.execute(_CHECK_POSTINGS_0009)
        for name, column, referred in _FKS:
            op.create_foreign_key(name, "postings", referred, [column], ["id"])
        op.execute(_READ_0013)
    op.drop_index("ix_payments_reversal_entry_id", table_name="payments")
    op.create_index(
        "ix_payments_reversal_entry_id", "payments", ["reversal_entry_id"], unique=False
    )
    op.drop_index("ix_payments_day_channel", table_name="payments")
    op.create_index(
        "ix_payments_channel_day", "payments", ["channel", "business_date"], unique=False
    )
