"""Initial schema: ledger, customers, bills, payments, supply orders, outbox.

Besides the tables, the database itself refuses what would break the ledger: journal entries and
postings are append-only (triggers refuse UPDATE, DELETE and TRUNCATE), and on PostgreSQL every
statement that inserts postings is checked to leave each touched entry summing to zero per
currency. A trigger queues every new entry for sealing. This revision is frozen: it imports
nothing from paygate.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "id_blocks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_id_blocks")),
    )
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("account_no", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_pending", "outbox", ["delivered_at", "available_at"], unique=False)
    op.create_table(
        "seal_blocks",
        sa.Column("block_no", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("first_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("last_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("block_no", name=op.f("pk_seal_blocks")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_no", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("prepaid", sa.Boolean(), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("supply_state", sa.String(length=32), nullable=False),
        sa.Column("receivable_account_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["receivable_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_accounts_receivable_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("account_no", name=op.f("uq_accounts_account_no")),
    )
    op.create_table(
        "journal_seals",
        sa.Column("entry_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("block_no", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["block_no"],
            ["seal_blocks.block_no"],
            name=op.f("fk_journal_seals_block_no_seal_blocks"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_journal_seals")),
    )
    op.create_index(op.f("ix_journal_seals_block_no"), "journal_seals", ["block_no"], unique=False)
    op.create_table(
        "ledger_balances",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_balances_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "shard", name=op.f("pk_ledger_balances")),
    )
    op.create_table(
        "postings",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_postings_amount_nonzero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_postings_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_postings_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_index(op.f("ix_postings_account_id"), "postings", ["account_id"], unique=False)
    op.create_index(op.f("ix_postings_entry_id"), "postings", ["entry_id"], unique=False)
    op.create_table(
        "seal_queue",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_seal_queue_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_seal_queue")),
    )
    op.create_table(
        "bills",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("bill_no", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("principal_paid", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_charged", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_paid", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_through", sa.Date(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_bills_amount_positive")),
        sa.CheckConstraint(
            "late_fee_paid >= 0 AND late_fee_paid <= late_fee_charged",
            name=op.f("ck_bills_late_fee_paid"),
        ),
        sa.CheckConstraint(
            "principal_paid >= 0 AND principal_paid <= amount", name=op.f("ck_bills_principal_paid")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_bills_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_bills_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.UniqueConstraint("bill_no", name=op.f("uq_bills_bill_no")),
    )
    op.create_index("ix_bills_open", "bills", ["account_id", "due_date"], unique=False)
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("channel_txn_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("late_fee", sa.BigInteger(), nullable=False),
        sa.Column("unallocated", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reversal_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("reversal_reason", sa.Text(), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "unallocated >= 0 AND unallocated <= amount", name=op.f("ck_payments_unallocated")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_payments_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(
            ["reversal_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_payments_reversal_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint(
            "channel", "channel_txn_id", name=op.f("uq_payments_channel_channel_txn_id")
        ),
    )
    op.create_index(op.f("ix_payments_account_id"), "payments", ["account_id"], unique=False)
    op.create_index(
        "ix_payments_channel_day", "payments", ["channel", "business_date"], unique=False
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("bill_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("late_fee", sa.BigInteger(), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bill_id"], ["bills.id"], name=op.f("fk_allocations_bill_id_bills")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_allocations_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
    )
    op.create_index(op.f("ix_allocations_bill_id"), "allocations", ["bill_id"], unique=False)
    op.create_index(op.f("ix_allocations_payment_id"), "allocations", ["payment_id"], unique=False)
    op.create_table(
        "supply_orders",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_supply_orders_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_supply_orders_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supply_orders")),
    )
    op.create_index(
        op.f("ix_supply_orders_account_id"), "supply_orders", ["account_id"], unique=False
    )
    op.create_table(
        "supply_transitions",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=False),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_supply_transitions_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["supply_orders.id"],
            name=op.f("fk_supply_transitions_order_id_supply_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supply_transitions")),
    )
    op.create_index(
        op.f("ix_supply_transitions_account_id"), "supply_transitions", ["account_id"], unique=False
    )

    _install_guards()


_PG_GUARDS = [
    """
    CREATE FUNCTION paygate_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'paygate: % on % is refused: the journal is append-only',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
    END $$
    """,
    """
    CREATE FUNCTION paygate_check_postings_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bad record;
    BEGIN
        SELECT p.entry_id, p.currency, sum(p.amount) AS total INTO bad
          FROM postings p
         WHERE p.entry_id IN (SELECT DISTINCT entry_id FROM new_postings)
         GROUP BY p.entry_id, p.currency
        HAVING sum(p.amount) <> 0
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'journal entry % does not balance in %: postings sum to %',
                bad.entry_id, bad.currency, bad.total USING ERRCODE = '23514';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION paygate_queue_seal() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO seal_queue (entry_id) VALUES (NEW.id);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries "
    "FOR EACH ROW EXECUTE FUNCTION paygate_refuse_change()",
    "CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION paygate_refuse_change()",
    "CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings "
    "FOR EACH ROW EXECUTE FUNCTION paygate_refuse_change()",
    "CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings "
    "FOR EACH STATEMENT EXECUTE FUNCTION paygate_refuse_change()",
    # All postings of an entry are written by one statement, so checking per statement sees
    # whole entries; set-based, it costs one query per statement, not one per row.
    "CREATE TRIGGER postings_balance AFTER INSERT ON postings "
    "REFERENCING NEW TABLE AS new_postings "
    "FOR EACH STATEMENT EXECUTE FUNCTION paygate_check_postings_balance()",
    "CREATE TRIGGER journal_entries_seal_queue AFTER INSERT ON journal_entries "
    "FOR EACH ROW EXECUTE FUNCTION paygate_queue_seal()",
    # Ids are handed out in blocks of 1000 (paygate.store.engine.PG_ID_BLOCK).
    "CREATE SEQUENCE paygate_id_seq START WITH 1000 INCREMENT BY 1000",
]

_SQLITE_GUARDS = [
    "CREATE TRIGGER journal_entries_no_update BEFORE UPDATE ON journal_entries "
    "BEGIN SELECT RAISE(ABORT, 'paygate: the journal is append-only'); END",
    "CREATE TRIGGER journal_entries_no_delete BEFORE DELETE ON journal_entries "
    "BEGIN SELECT RAISE(ABORT, 'paygate: the journal is append-only'); END",
    "CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings "
    "BEGIN SELECT RAISE(ABORT, 'paygate: the journal is append-only'); END",
    "CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings "
    "BEGIN SELECT RAISE(ABORT, 'paygate: the journal is append-only'); END",
    "CREATE TRIGGER journal_entries_seal_queue AFTER INSERT ON journal_entries "
    "BEGIN INSERT INTO seal_queue (entry_id) VALUES (NEW.id); END",
]


def _install_guards() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _PG_GUARDS if dialect == "postgresql" else _SQLITE_GUARDS:
        op.execute(statement)
    op.execute("INSERT INTO id_blocks (name, next_id) VALUES ('ids', 1000)")


def _drop_guards() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite drops a table's triggers with the table
    for trigger, table in (
        ("journal_entries_append_only", "journal_entries"),
        ("journal_entries_no_truncate", "journal_entries"),
        ("journal_entries_seal_queue", "journal_entries"),
        ("postings_append_only", "postings"),
        ("postings_no_truncate", "postings"),
        ("postings_balance", "postings"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for fn in ("paygate_refuse_change", "paygate_check_postings_balance", "paygate_queue_seal"):
        op.execute(f"DROP FUNCTION {fn}()")
    op.execute("DROP SEQUENCE paygate_id_seq")


def downgrade() -> None:
    _drop_guards()
    op.drop_index(op.f("ix_supply_transitions_account_id"), table_name="supply_transitions")
    op.drop_table("supply_transitions")
    op.drop_index(op.f("ix_supply_orders_account_id"), table_name="supply_orders")
    op.drop_table("supply_orders")
    op.drop_index(op.f("ix_allocations_payment_id"), table_name="allocations")
    op.drop_index(op.f("ix_allocations_bill_id"), table_name="allocations")
    op.drop_table("allocations")
    op.drop_index("ix_payments_channel_day", table_name="payments")
    op.drop_index(op.f("ix_payments_account_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_bills_open", table_name="bills")
    op.drop_table("bills")
    op.drop_table("seal_queue")
    op.drop_index(op.f("ix_postings_entry_id"), table_name="postings")
    op.drop_index(op.f("ix_postings_account_id"), table_name="postings")
    op.drop_table("postings")
    op.drop_table("ledger_balances")
    op.drop_index(op.f("ix_journal_seals_block_no"), table_name="journal_seals")
    op.drop_table("journal_seals")
    op.drop_table("accounts")
    op.drop_table("seal_blocks")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("ledger_accounts")
    op.drop_table("journal_entries")
    op.drop_table("id_blocks")
