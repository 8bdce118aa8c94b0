"""The database schema, as SQLAlchemy tables: the one description Alembic migrations must match.

Invariants the database keeps on its own, whatever the code does:

* every posting amount is a non-zero integer of minor units; every journal entry's postings sum
  to zero per currency (a deferred constraint trigger on PostgreSQL; on SQLite the ledger checks
  before it writes, since SQLite cannot defer a check to commit);
* journal entries and postings are append-only (UPDATE and DELETE are refused by triggers);
* every posting names an existing journal entry and ledger account: declared foreign keys on
  SQLite; on PostgreSQL the statement-level check of the postings probes both (one query per
  statement instead of two locking lookups per row, migration 0022), and a ledger account is
  never deleted nor renumbered (a trigger), so what was found stays found;
* a payment is unique by (channel, channel_txn_id), a bill by bill_no, an account by account_no;
* bill payments never exceed the bill (CHECK constraints).

On PostgreSQL ``journal_entries``, ``postings`` and ``outbox`` are partitioned by month through
the range of ids each month owns (see ``paygate.store.partitions``); a posting by its entry's id.

Ids are allocated by the application in blocks (see ``paygate.store.engine.IdAllocator``), so
that one payment's rows can be written without waiting for the database to hand out keys.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from paygate.store import operator_tables  # noqa: F401 - its tables belong to metadata
from paygate.store.columns import (
    SQLITE_TIMESTAMP_FORMAT,
    UTCDateTime,
    id_column,
    metadata,
    writer_xid_column,
)

__all__ = [
    "PARTITIONED_TABLES",
    "POSTGRESQL_COLLATED_INDEXES",
    "SQLITE_TIMESTAMP_FORMAT",
    "STATEMENT_CHECKED_FOREIGN_KEYS",
    "UTCDateTime",
    "alembic_include_name",
    "alembic_include_object",
    "is_partition",
    "metadata",
]

# --- ledger ---------------------------------------------------------------------------------

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    id_column(),
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
    id_column(),
    Column("kind", String(32), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("memo", Text, nullable=False),
    Column("business_date", Date, nullable=False),
    Column("posted_at", UTCDateTime, nullable=False),
    writer_xid_column(),
    Index("ix_journal_entries_writer_xid", "writer_xid", "id"),
    info={"owner": "paygate.ledger"},
    postgresql_partition_by="RANGE (id)",
)

# On PostgreSQL a posting lives in its entry's monthly partition (by entry_id), hence the key.
# Its two foreign keys are declared here and on SQLite; on PostgreSQL the postings' statement
# trigger checks them instead (STATEMENT_CHECKED_FOREIGN_KEYS).
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
    id_column(),
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
    # The service centre's console finds a customer by the meter's address. Its search by an
    # account number's prefix reads a range in code point order: on PostgreSQL, whatever the
    # database's collation, by ix_accounts_account_no_c (account_no COLLATE "C"), migration
    # 0023, which is not declared here (see POSTGRESQL_COLLATED_INDEXES); SQLite compares text
    # by code point and uses the unique index.
    Index("ix_accounts_meter_address", "meter_address"),
    info={"owner": "paygate.records"},
)

_OWED = "principal_paid < amount OR late_fee_paid < late_fee_charged"

bills = Table(
    "bills",
    metadata,
    id_column(),
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
    id_column(),
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
    # A day's payments of a channel (reconciliation, a terminal's close). Not led by channel:
    # the unique key must be the only index a lookup by (channel, channel_txn_id) can take,
    # whatever the statistics say (migration 0022).
    Index("ix_payments_day_channel", "business_date", "channel"),
    Index("ix_payments_terminal", "terminal_id", "business_date"),
    # The payment feed finds a journal entry's payment (or the payment it reversed) by these;
    # only reversed payments have a reversal entry.
    Index("ix_payments_entry_id", "entry_id"),
    Index(
        "ix_payments_reversal_entry_id",
        "reversal_entry_id",
        postgresql_where=text("reversal_entry_id IS NOT NULL"),
        sqlite_where=text("reversal_entry_id IS NOT NULL"),
    ),
    info={"owner": "paygate.records"},
)

allocations = Table(
    "allocations",
    metadata,
    id_column(),
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
    id_column(),
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
    writer_xid_column(),
    Index("ix_supply_orders_due", "status", "next_attempt_at"),
    Index("ix_supply_orders_writer_xid", "writer_xid", "id"),
    info={"owner": "paygate.records"},
)

breaches = Table(
    "breaches",
    metadata,
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    writer_xid_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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
    id_column(),
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


# The foreign keys PostgreSQL enforces by the postings' statement-level check (migration 0022)
# rather than as constraints; SQLite keeps them as declared.
STATEMENT_CHECKED_FOREIGN_KEYS = frozenset(
    {"fk_postings_entry_id_journal_entries", "fk_postings_account_id_ledger_accounts"}
)


# Indexes of PostgreSQL alone whose columns carry a collation: Alembic reflects one as an index
# of the bare column and cannot compare it, nor declare it for SQLite, which has no "C"
# collation; left out of the comparison (tests/test_migrations.py checks them by name).
POSTGRESQL_COLLATED_INDEXES = frozenset({"ix_accounts_account_no_c"})


def alembic_include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's ``include_object``: leave out the foreign keys PostgreSQL keeps for each
    partition of a referenced partitioned table (the one declared on the table is compared),
    a declared key the database enforces by a statement-level check instead
    (:data:`STATEMENT_CHECKED_FOREIGN_KEYS`, absent on PostgreSQL), and the collated indexes
    of PostgreSQL (:data:`POSTGRESQL_COLLATED_INDEXES`)."""
    if type_ == "index":
        return name not in POSTGRESQL_COLLATED_INDEXES
    if type_ != "foreign_key_constraint":
        return True
    if not reflected:
        return not (compare_to is None and name in STATEMENT_CHECKED_FOREIGN_KEYS)
    referred = getattr(obj, "referred_table", None)
    return not (referred is not None and is_partition(str(referred.name)))
