"""The database schema, as SQLAlchemy tables: the one description Alembic migrations must match.

Invariants the database keeps on its own, whatever the code does:

* every posting amount is a non-zero integer of minor units; every journal entry's postings sum
  to zero per currency (a deferred constraint trigger on PostgreSQL; on SQLite the ledger checks
  before it writes, since SQLite cannot defer a check to commit);
* journal entries and postings are append-only (UPDATE and DELETE are refused by triggers);
* a payment is unique by (channel, channel_txn_id), a bill by bill_no, an account by account_no;
* bill payments never exceed the bill (CHECK constraints).

On PostgreSQL ``journal_entries``, ``postings`` and ``outbox`` are partitioned by month through
the range of ids each month owns (see ``paygate.store.partitions``); a posting by its entry's id.

Ids are allocated by the application in blocks (see ``paygate.store.engine.IdAllocator``), so
that one payment's rows can be written without waiting for the database to hand out keys.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "PARTITIONED_TABLES",
    "SQLITE_TIMESTAMP_FORMAT",
    "UTCDateTime",
    "alembic_include_name",
    "alembic_include_object",
    "is_partition",
    "metadata",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite has no timestamp type: times are stored as UTC text in this exact form, which sorts
# chronologically and is what SQLAlchemy's own SQLite DATETIME writes.
SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC (``timestamptz`` on PostgreSQL, UTC text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.strptime(value, SQLITE_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _id() -> Column[int]:
    return Column("id", BigInteger, primary_key=True, autoincrement=False)


def _writer_xid() -> Column[int]:
    # The feeds' commit order on PostgreSQL (paygate.feeds): the id of the transaction that
    # wrote the row, given by the column's default (pg_current_xact_id(), set by migration
    # 0010), so that no writer names it. Rows older than the column, and every row on SQLite
    # (whose feeds are ordered by feed_log instead), hold 0.
    return Column("writer_xid", BigInteger, nullable=False, server_default="0")


# --- ledger ---------------------------------------------------------------------------------

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    _id(),
    Column("code", String(100), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    info={"owner": "paygate.ledger"},
)

# A cached balance is split over shards so that busy accounts (a channel's clearing account
# takes every payment of that channel) do not serialize concurrent payments on one row.
ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("balance", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "shard"),
    info={"owner": "paygate.ledger"},
)

journal_entries = Table(
    "journal_entries",
    metadata,
    _id(),
    Column("kind", String(32), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("memo", Text, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("posted_at", UTCDateTime, nullable=False),
    _writer_xid(),
    Index("ix_journal_entries_writer_xid", "writer_xid", "id"),
    info={"owner": "paygate.ledger"},
    postgresql_partition_by="RANGE (id)",
)

# On PostgreSQL a posting lives in its entry's monthly partition (by entry_id), hence the key.
postings = Table(
    "postings",
    metadata,
    Column("id", BigInteger, nullable=False, autoincrement=False),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False, index=True),
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint("amount <> 0", name="amount_nonzero"),
    PrimaryKeyConstraint("id", "entry_id"),
    info={"owner": "paygate.ledger"},
    postgresql_partition_by="RANGE (entry_id)",
)

# Filled by a trigger on every journal entry insert, emptied by the sealer: the entries that
# still await a seal block, found without scanning the journal.
seal_queue = Table(
    "seal_queue",
    metadata,
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), primary_key=True),
    info={"owner": "paygate.ledger"},
)

seal_blocks = Table(
    "seal_blocks",
    metadata,
    Column("block_no", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("first_entry_id", BigInteger, nullable=False),
    Column("last_entry_id", BigInteger, nullable=False),
    Column("sealed_at", UTCDateTime, nullable=False),
    info={"owner": "paygate.ledger"},
)

journal_seals = Table(
    "journal_seals",
    metadata,
    Column("entry_id", BigInteger, primary_key=True, autoincrement=False),
    Column("block_no", BigInteger, ForeignKey("seal_blocks.block_no"), nullable=False, index=True),
    Column("entry_hash", String(64), nullable=False),
    info={"owner": "paygate.ledger"},
)

id_blocks = Table(
    "id_blocks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger, nullable=False),
    info={"owner": "paygate.store.engine"},
)

# --- customers, bills, payments -------------------------------------------------------------

accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("account_no", String(64), nullable=False, unique=True),
    Column("name", String(200)),
    Column("category", String(32), nullable=False),
    Column("prepaid", Boolean, nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("supply_state", String(32), nullable=False),
    Column("receivable_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # How supply orders reach this account's meter: a head-end adapter and the meter's address.
    Column("headend", String(32)),
    Column("meter_address", String(32)),
    # The service centre's console finds a customer by the meter's address.
    Index("ix_accounts_meter_address", "meter_address"),
    info={"owner": "paygate.records"},
)

_OWED = "principal_paid < amount OR late_fee_paid < late_fee_charged"

bills = Table(
    "bills",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("bill_no", String(64), nullable=False, unique=True),
    Column("period", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("principal_paid", BigInteger, nullable=False),
    Column("late_fee_charged", BigInteger, nullable=False),
    Column("late_fee_paid", BigInteger, nullable=False),
    # The last bill-day whose late fee has been charged: a day is never charged twice.
    Column("late_fee_through", Date),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    # Zero only once cancelled (paygate.corrections): nothing is owed on it any more.
    CheckConstraint("amount >= 0", name="amount_not_negative"),
    CheckConstraint("principal_paid >= 0 AND principal_paid <= amount", name="principal_paid"),
    CheckConstraint(
        "late_fee_paid >= 0 AND late_fee_paid <= late_fee_charged", name="late_fee_paid"
    ),
    # Bills still owed only (migration 0021): an account's read never walks its history. The
    # reads state this predicate word for word (paygate.records.OPEN_BILL).
    Index(
        "ix_bills_open",
        "account_id",
        "due_date",
        postgresql_where=text(_OWED),
        sqlite_where=text(_OWED),
    ),
    info={"owner": "paygate.records"},
)

payments = Table(
    "payments",
    metadata,
    _id(),
    Column("channel", String(64), nullable=False),
    Column("channel_txn_id", String(64), nullable=False),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", UTCDateTime, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    # The kiosk or POS terminal that took the payment, for its daily close.
    Column("terminal_id", String(64)),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("late_fee", BigInteger, nullable=False),
    # What is left of this payment as credit, consumed by later bills oldest payment first.
    Column("unallocated", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reversal_entry_id", BigInteger, ForeignKey("journal_entries.id")),
    Column("reversal_reason", Text),
    Column("receipt", Text, nullable=False),
    Column("posted_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel", "channel_txn_id"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("unallocated >= 0 AND unallocated <= amount", name="unallocated"),
    Index("ix_payments_channel_day", "channel", "business_date"),
    Index("ix_payments_terminal", "terminal_id", "business_date"),
    # The payment feed finds a journal entry's payment (or the payment it reversed) by these.
    Index("ix_payments_entry_id", "entry_id"),
    Index("ix_payments_reversal_entry_id", "reversal_entry_id"),
    info={"owner": "paygate.records"},
)

allocations = Table(
    "allocations",
    metadata,
    _id(),
    # No foreign key to payments: an allocation is written by the statement that writes its
    # payment, or under the lock of the payment's account, and a payment is never deleted (a
    # trigger refuses it). See migration 0007.
    Column("payment_id", BigInteger, nullable=False, index=True),
    Column("bill_id", BigInteger, ForeignKey("bills.id"), nullable=False, index=True),
    # 'payment' when made as the payment posted, 'credit' when a later bill consumed credit,
    # 'reversal' (negative amounts) when a reversal re-opened what the payment had paid,
    # 'correction' (negative amounts) when a bill's cancellation or reduction freed it.
    Column("source", String(16), nullable=False),
    Column("late_fee", BigInteger, nullable=False),
    Column("principal", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    info={"owner": "paygate.records"},
)

# --- supply and events ----------------------------------------------------------------------

# A reconnection or disconnection order: its step times, the deadline of each step (computed
# backwards from the service promise), its delivery attempts, and the lease of the dispatcher
# working on it (so several dispatchers never deliver one order at once).
supply_orders = Table(
    "supply_orders",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payment_id", BigInteger, ForeignKey("payments.id")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("action", String(16), nullable=False, server_default="direct_close"),
    Column("headend", String(32)),
    Column("approved_by", String(64)),
    Column("dispatch_due_at", UTCDateTime),
    Column("ack_due_at", UTCDateTime),
    Column("legal_due_at", UTCDateTime),
    Column("dispatched_at", UTCDateTime),
    Column("acknowledged_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("claimed_until", UTCDateTime),
    Column("claim_token", String(32)),
    Column("last_error", Text),
    _writer_xid(),
    Index("ix_supply_orders_due", "status", "next_attempt_at"),
    Index("ix_supply_orders_writer_xid", "writer_xid", "id"),
    info={"owner": "paygate.records"},
)

breaches = Table(
    "breaches",
    metadata,
    _id(),
    Column("order_id", BigInteger, ForeignKey("supply_orders.id"), nullable=False, index=True),
    Column("step", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("deadline", UTCDateTime, nullable=False),
    Column("detected_at", UTCDateTime, nullable=False),
    # A breach the clock recorded and a later fact disproved (the head-end reported the step
    # done before its deadline) is withdrawn, never deleted: the record says both.
    Column("withdrawn_at", UTCDateTime),
    Column("withdrawn_reason", Text),
    UniqueConstraint("order_id", "step"),
    info={"owner": "paygate.supply"},
)

# Written notices before a disconnection (the notice, then the final reminder).
dunning_notices = Table(
    "dunning_notices",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("served_at", UTCDateTime, nullable=False),
    Column("served_by", String(64), nullable=False),
    Column("arrears", BigInteger, nullable=False),
    info={"owner": "paygate.dunning"},
)

# Corrections of issued bills (作废 cancellation, 退补 adjustment), one row per correction; the
# unique correction_id makes each one take effect once. ``amount`` is the signed change of the
# bill's amount; ``result`` the correction as answered, replayed to a retry.
bill_corrections = Table(
    "bill_corrections",
    metadata,
    _id(),
    Column("correction_id", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("bill_id", BigInteger, ForeignKey("bills.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_before", BigInteger, nullable=False),
    Column("late_fee_reversed", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('cancel', 'adjust')", name="kind"),
    info={"owner": "paygate.corrections"},
)

# Refund orders (退费): one per refund id, the customer's credit moved to refunds payable by
# ``entry_id`` and paid out (or given back) by ``final_entry_id``. ``credit_taken`` says which
# payments gave their credit (JSON: payment id to minor units), so that a failure gives it
# back to them; ``payment_id`` is the payment refunded against (none for a bank transfer).
refund_orders = Table(
    "refund_orders",
    metadata,
    _id(),
    Column("refund_id", String(64), nullable=False, unique=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("route", String(32), nullable=False),
    Column("channel", String(64)),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payee", Text),
    Column("credit_taken", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("provider_reference", String(128)),
    Column("failure_code", String(64)),
    Column("failure_message", Text),
    Column("last_error", Text),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("final_entry_id", BigInteger, ForeignKey("journal_entries.id")),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("state IN ('pending', 'submitted', 'succeeded', 'failed')", name="state"),
    Index("ix_refund_orders_due", "state", "next_attempt_at"),
    # The payment feed finds a journal entry's refund order by either entry (0015).
    Index("ix_refund_orders_entry_id", "entry_id"),
    Index("ix_refund_orders_final_entry_id", "final_entry_id"),
    info={"owner": "paygate.refunds.orders"},
)

# Accounts closed (销户), one row per account; ``result`` the closure as answered, replayed.
account_closures = Table(
    "account_closures",
    metadata,
    _id(),
    Column("closure_id", String(64), nullable=False, unique=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("final_bill_no", String(64)),
    Column("refund_route", String(32)),
    Column("reason", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("closed_at", UTCDateTime, nullable=False),
    info={"owner": "paygate.refunds.closure"},
)

# Payments taken but held in suspense, never allocated, with the reason (``account_closed``).
# No foreign keys to the payment and its entry: they are written by the same decision, after
# this row (as allocations are).
payment_findings = Table(
    "payment_findings",
    metadata,
    _id(),
    Column("payment_id", BigInteger, nullable=False, unique=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("reason", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    info={"owner": "paygate.refunds.closed"},
)

# What finance did about a payment finding (paygate.refunds.findings): ``assigned`` to another
# account (``payment_id``) or ``refunded`` (``refund_id``). ``settles_finding_id`` is the
# finding while the resolution holds, unique; a failed refund sets it NULL (``reopened_at``).
payment_finding_resolutions = Table(
    "payment_finding_resolutions",
    metadata,
    _id(),
    Column("resolution_id", String(64), nullable=False, unique=True),
    Column("finding_id", BigInteger, ForeignKey("payment_findings.id"), nullable=False, index=True),
    Column("settles_finding_id", BigInteger, unique=True),
    Column("action", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("account_id", BigInteger, ForeignKey("accounts.id")),
    Column("payment_id", BigInteger),
    Column("refund_id", String(64), index=True),
    Column("entry_id", BigInteger),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("resolved_at", UTCDateTime, nullable=False),
    Column("reopened_at", UTCDateTime),
    CheckConstraint("action IN ('assigned', 'refunded')", name="action"),
    CheckConstraint("amount > 0", name="amount_positive"),
    info={"owner": "paygate.refunds.finding_resolutions"},
)

supply_transitions = Table(
    "supply_transitions",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("order_id", BigInteger, ForeignKey("supply_orders.id")),
    Column("at", UTCDateTime, nullable=False),
    info={"owner": "paygate.records"},
)

outbox = Table(
    "outbox",
    metadata,
    _id(),
    Column("event_type", String(64), nullable=False),
    Column("account_no", String(64)),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("available_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("last_error", Text),
    Column("dead_at", UTCDateTime),
    Column("claimed_until", UTCDateTime),
    Column("claim_token", String(32)),
    _writer_xid(),
    Index("ix_outbox_pending", "delivered_at", "available_at"),
    Index("ix_outbox_account", "account_no", "id"),  # per-account order of delivery
    Index("ix_outbox_writer_xid", "writer_xid", "id"),
    postgresql_partition_by="RANGE (id)",
    info={"owner": "paygate.records"},
)

# --- channels: devices, replay protection, orders, kiosk closes, vouchers ------------------

# Terminals (kiosks, POS) and the keys they sign or MAC with. An Ed25519 public key is stored
# as is; a symmetric MAC key only encrypted under the deployment's key-encryption key.
devices = Table(
    "devices",
    metadata,
    _id(),
    Column("device_id", String(64), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("key_kind", String(16), nullable=False),
    Column("public_key", Text),
    Column("key_ciphertext", Text),
    Column("label", String(200)),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    info={"owner": "paygate.devices"},
)

# Nonces seen inside the replay window; shared by every gateway process.
nonces = Table(
    "nonces",
    metadata,
    Column("nonce_key", String(200), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    info={"owner": "paygate.channels.stores"},
)

# Orders created before a customer pays online: amount and account fixed by paygate.
payment_orders = Table(
    "payment_orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("account_no", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    info={"owner": "paygate.channels.stores"},
)

kiosk_closes = Table(
    "kiosk_closes",
    metadata,
    _id(),
    Column("terminal_id", String(64), nullable=False),
    Column("business_date", Date, nullable=False),
    Column("counted_cash", BigInteger, nullable=False),
    Column("reported_total", BigInteger, nullable=False),
    Column("reported_count", Integer, nullable=False),
    Column("ledger_total", BigInteger, nullable=False),
    Column("ledger_count", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("terminal_id", "business_date"),
    info={"owner": "paygate.channels.stores"},
)

voucher_batches = Table(
    "voucher_batches",
    metadata,
    _id(),
    Column("batch_no", String(64), nullable=False, unique=True),
    Column("face_value", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("card_count", Integer, nullable=False),
    Column("expires_on", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("retailer", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("activated_at", UTCDateTime),
    Column("frozen_at", UTCDateTime),
    CheckConstraint("face_value > 0", name="face_value_positive"),
    info={"owner": "paygate.vouchers.records"},
)

vouchers = Table(
    "vouchers",
    metadata,
    _id(),
    Column("serial", String(32), nullable=False, unique=True),
    Column("batch_id", BigInteger, ForeignKey("voucher_batches.id"), nullable=False, index=True),
    Column("pin_hash", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failed_attempts", Integer, nullable=False),
    Column("redeemed_at", UTCDateTime),
    Column("account_no", String(64)),
    Column("payment_id", BigInteger, ForeignKey("payments.id")),
    info={"owner": "paygate.vouchers.records"},
)

voucher_attempts = Table(
    "voucher_attempts",
    metadata,
    _id(),
    Column("serial", String(32), nullable=False, index=True),
    Column("account_no", String(64), nullable=False, index=True),
    Column("source", String(200), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    info={"owner": "paygate.vouchers.records"},
)

# --- reconciliation: runs, staged statement lines, findings, resolutions --------------------

# One reconciliation of one statement file: a channel's settlement statement for one business
# date (kind "channel"), or a bank statement file (kind "bank"). The same file again is the same
# run (one file hash per channel and day); another file for the same channel and day is a new
# run, and the run it replaces keeps its rows and points at it through ``superseded_by``.
# ``summary`` holds the count and amount of each finding class as classified (JSON).
reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    _id(),
    Column("kind", String(16), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("business_date", Date, nullable=False),
    Column("file_sha256", String(64)),
    Column("source", Text),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("gross", BigInteger, nullable=False),
    Column("fees", BigInteger, nullable=False),
    Column("net", BigInteger, nullable=False),
    Column("settlement_date", Date),
    Column("summary", Text, nullable=False),
    Column("policy", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("superseded_by", BigInteger, ForeignKey("reconciliation_runs.id")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    UniqueConstraint("channel", "business_date", "file_sha256"),
    Index("ix_reconciliation_runs_channel_day", "channel", "business_date"),
    info={"owner": "paygate.reconcile.engine"},
)

# The lines of a statement, staged in chunks as the file streams, numbered by ``seq`` in file
# order. These are the bulk rows of reconciliation (a million a run for a large channel): no
# foreign keys, which PostgreSQL would check row by row; only the run that owns them writes
# them. ``line_key`` is set for lines without a channel transaction id (a digest of what the
# line says), which are matched by account, amount and time instead.
reconciliation_lines = Table(
    "reconciliation_lines",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("channel_txn_id", String(128)),
    Column("original_txn_id", String(128)),
    Column("account_no", String(128)),
    Column("gross", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("reference", Text),
    Column("line_key", String(160)),
    PrimaryKeyConstraint("run_id", "seq"),
    Index("ix_reconciliation_lines_txn", "run_id", "channel_txn_id"),
    info={"owner": "paygate.reconcile.engine"},
)

# What a run found: every line and every ledger payment that is not a plain match by channel
# transaction id and amount, as values. A finding about a line has the line's ``seq``; findings
# about ledger payments and bank entries are numbered after the last line. ``line_key`` names
# the subject across runs ("txn:…", "line:…", "rev:…", "payment:…", "reversal:…",
# "suspense:…", "bank:…"), so that a resolution carries over to the run that supersedes this one.
reconciliation_findings = Table(
    "reconciliation_findings",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("finding_class", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("line_seq", Integer),
    Column("payment_id", BigInteger),
    Column("line_key", String(160), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("ledger_amount", BigInteger),
    Column("currency", String(3), nullable=False),
    Column("due_on", Date),
    Column("value_date", Date),
    Column("reference", Text),
    Column("resolution_id", BigInteger),
    Column("note", Text),
    PrimaryKeyConstraint("run_id", "seq"),
    Index("ix_reconciliation_findings_payment_id", "payment_id"),
    Index("ix_reconciliation_findings_status", "status"),
    info={"owner": "paygate.reconcile.matching"},
)

# Every resolution, automatic or by a person: who, when, what it posted. One action per subject
# (channel, line_key): a line is posted, put in suspense or assigned at most once, whatever
# runs or people ask twice.
reconciliation_resolutions = Table(
    "reconciliation_resolutions",
    metadata,
    _id(),
    Column("run_id", BigInteger, ForeignKey("reconciliation_runs.id"), nullable=False),
    Column("finding_seq", Integer, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("line_key", String(160), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("account_no", String(64)),
    Column("payment_id", BigInteger, ForeignKey("payments.id")),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id")),
    Column("amount", BigInteger),
    Column("currency", String(3)),
    Column("note", Text),
    UniqueConstraint("channel", "line_key", "action"),
    info={"owner": "paygate.reconcile.matching"},
)

# POS batches a terminal has settled: a void for one of them is refused.
pos_batches = Table(
    "pos_batches",
    metadata,
    Column("terminal_id", String(64), nullable=False),
    Column("batch_no", String(32), nullable=False),
    Column("closed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("terminal_id", "batch_no"),
    info={"owner": "paygate.channels.stores"},
)


# --- PostgreSQL's monthly partitions (paygate.store.partitions) ------------------------------

PARTITIONED_TABLES = ("journal_entries", "postings", "outbox")
_PARTITION_NAME = re.compile(r"^(journal_entries|postings|outbox)_(initial|p\d{4}_\d{2})$")


def is_partition(name: str) -> bool:
    """Whether ``name`` is a monthly (or the initial) partition of a partitioned table."""
    return _PARTITION_NAME.match(name) is not None


def alembic_include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: compare the partitioned tables, not their partitions."""
    return not (type_ == "table" and name is not None and is_partition(name))


def alembic_include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's ``include_object``: leave out the foreign keys PostgreSQL keeps for each
    partition of a referenced partitioned table (the one declared on the table is compared)."""
    if type_ != "foreign_key_constraint" or not reflected:
        return True
    referred = getattr(obj, "referred_table", None)
    return not (referred is not None and is_partition(str(referred.name)))


# --- feeds and service clients --------------------------------------------------------------

# The feeds' commit order on SQLite (paygate.feeds): a row per journal entry, outbox event and
# supply order, appended by an AFTER INSERT trigger inside the writing transaction (migration
# 0010). SQLite has one writer at a time, so ``seq`` (the rowid, max + 1, never reused: rows
# are never deleted) grows in commit order. On PostgreSQL the table stays empty: there the
# writer's transaction id (``writer_xid``) orders the feeds.
feed_log = Table(
    "feed_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),
    Column("row_id", BigInteger, nullable=False),
    Index("ix_feed_log_source_seq", "source", "seq"),
    Index("ix_feed_log_source_row", "source", "row_id", unique=True),
    info={"owner": "paygate.feeds"},
)

# Programs (billing systems) that read the feeds over HTTP: a client id, its scopes, and its
# secret only as a scrypt hash. ``generation`` counts rotations: a token names the generation
# it was issued under, and one of an earlier generation is refused.
service_clients = Table(
    "service_clients",
    metadata,
    _id(),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("label", String(200)),
    Column("scopes", Text, nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    info={"owner": "paygate.service_clients"},
)

# Attempts at the token endpoint (paygate.token_attempts): one row each, refusals included, so
# that every worker counts the same failures of a client id and of a source address (0019).
token_attempts = Table(
    "token_attempts",
    metadata,
    _id(),
    Column("client_id", String(200), nullable=False),
    Column("source", String(64)),
    Column("outcome", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_token_attempts_client_id_at", "client_id", "at"),
    Index("ix_token_attempts_source_at", "source", "at"),
    info={"owner": "paygate.token_attempts"},
)


# --- the service centre's console (paygate.console) -----------------------------------------

# Staff who sign in to the console: a role, an argon2 hash of the password (never the password),
# and the lockout counter: ``failed_signins`` since the last success or lockout, and
# ``locked_until`` while a lockout lasts.
console_staff = Table(
    "console_staff",
    metadata,
    _id(),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200)),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failed_signins", Integer, nullable=False),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
    Column("last_signin_at", UTCDateTime),
    # The identity provider's name for the staff member (the configured claim's value), when
    # they may sign in through it: one staff member per identity.
    Column("oidc_identity", String(255), unique=True),
    CheckConstraint("role IN ('clerk', 'finance', 'supervisor', 'admin')", name="role"),
    CheckConstraint("status IN ('active', 'disabled')", name="status"),
    info={"owner": "paygate.console.staff"},
)

# Signed-in sessions: only the SHA-256 of the cookie's random token is stored, so that a copy
# of the table signs nobody in. ``csrf_token`` is the session's synchronizer token.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("staff_id", BigInteger, ForeignKey("console_staff.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("ended_why", String(16)),
    info={"owner": "paygate.console.staff"},
)

# Sign-ins through the identity provider under way: the state, nonce and PKCE verifier of one
# authorization request, under the SHA-256 of the browser's binding cookie (never the cookie),
# taken (deleted) by the callback, so that each is used once.
console_oidc_flows = Table(
    "console_oidc_flows",
    metadata,
    Column("binding_hash", String(64), primary_key=True),
    Column("state", String(64), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("next_path", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_console_oidc_flows_created_at", "created_at"),
    info={"owner": "paygate.console.oidc"},
)

# The console's audit trail: one row when a staff action is asked for (``requested``) and one
# with its outcome (``done`` or ``refused``), each naming the person, their role and the
# reason they gave. Append-only: nothing updates or deletes a row.
console_audit = Table(
    "console_audit",
    metadata,
    _id(),
    Column("at", UTCDateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(16)),
    Column("action", String(48), nullable=False),
    Column("subject", String(160)),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text),
    Column("detail", Text),
    Index("ix_console_audit_at", "at"),
    info={"owner": "paygate.console.audit"},
)

# 大客户停电协商: a supervisor's record of the negotiation with a protected account before
# its disconnection, and the approval that created the disconnection order.
console_negotiations = Table(
    "console_negotiations",
    metadata,
    _id(),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("counterpart", String(200), nullable=False),
    Column("agreed_on", Date, nullable=False),
    Column("terms", Text, nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("approved_by", String(64)),
    Column("approved_at", UTCDateTime),
    Column("order_id", BigInteger, ForeignKey("supply_orders.id")),
    info={"owner": "paygate.console.negotiations"},
)
