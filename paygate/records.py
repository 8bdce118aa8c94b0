"""The rows one decision reads and writes, typed, and the context the core's services share.

A decision (a payment, a bill, a reversal, an order's progress) locks the accounts it touches,
loads their open bills, gathers every row it will write in a :class:`Writes` batch while it
decides, and writes the batch once at the end (:func:`flush`), in its one transaction
(DESIGN.md invariant 4). The services in :mod:`paygate.accounts`, :mod:`paygate.payments`,
:mod:`paygate.supply` and :mod:`paygate.dunning` all decide this way; this module is what they
share, so that none of them needs another's internals.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from paygate.billing import AllocationPolicy, OpenBill
from paygate.clock import Clock
from paygate.config import Settings
from paygate.errors import UnknownAccountError
from paygate.ledger import EntryDraft, LedgerAccounts
from paygate.models import Category, SupplyState
from paygate.store.engine import RowSet, Store, Tx

__all__ = [
    "Account",
    "AllocationRow",
    "Core",
    "EventRow",
    "NewOrderRow",
    "PaymentRow",
    "TransitionRow",
    "Writes",
    "decision_sets",
    "read_decision",
]

ACCOUNT_COLUMNS = (
    "a.id, a.account_no, a.name, a.category, a.prepaid, a.protected, a.currency, "
    "a.supply_state, a.receivable_account_id"
)
_BILL_COLUMNS = (
    "b.id, b.account_id, b.bill_no, b.due_date, b.amount, b.principal_paid, "
    "b.late_fee_charged, b.late_fee_paid, b.late_fee_through"
)
_OPEN = "(b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged)"


@dataclass(slots=True)
class Core:
    """What the core's services share: the store, the settings, the clock, the allocation
    policy and the ledger-account directory. One per :class:`~paygate.gateway.Gateway`; the
    settings may be replaced (channel cut-offs) and every service sees the new ones."""

    store: Store
    settings: Settings
    clock: Clock
    allocation: AllocationPolicy
    ledger: LedgerAccounts = field(default_factory=LedgerAccounts)

    def local_date(self, instant: datetime) -> date:
        """The date of ``instant`` in the utility's zone."""
        return instant.astimezone(ZoneInfo(self.settings.timezone)).date()


@dataclass(slots=True)
class Account:
    """A customer account locked for a decision, with its balance and open bills once loaded."""

    id: int
    account_no: str
    name: str | None
    category: Category
    prepaid: bool
    protected: bool
    currency: str
    supply_state: SupplyState
    receivable_id: int
    balance: int = 0
    bills: list[OpenBill] = field(default_factory=list)
    original_bills: dict[int, OpenBill] = field(default_factory=dict)
    periods: dict[int, str] = field(default_factory=dict)
    state_changed: bool = False


class PaymentRow(NamedTuple):
    """A ``payments`` row as inserted."""

    id: int
    channel: str
    channel_txn_id: str
    account_id: int
    amount: int
    currency: str
    paid_at: Any
    business_date: Any
    fingerprint: str
    terminal_id: str | None
    entry_id: int
    late_fee: int
    unallocated: int
    status: str
    receipt: str
    posted_at: Any


class AllocationRow(NamedTuple):
    """An ``allocations`` row: what a payment, its reversal or a credit did to one bill."""

    id: int
    payment_id: int
    bill_id: int
    source: str
    late_fee: int
    principal: int
    created_at: Any


class NewOrderRow(NamedTuple):
    """A new ``supply_orders`` row (a reconnection or disconnection order)."""

    id: int
    account_id: int
    kind: str
    status: str
    reason: str
    payment_id: int | None
    created_at: Any
    due_at: Any
    action: str
    approved_by: str | None
    dispatch_due_at: Any
    ack_due_at: Any
    legal_due_at: Any
    attempts: int
    next_attempt_at: Any


class TransitionRow(NamedTuple):
    """A ``supply_transitions`` row: an account's supply state changing."""

    id: int
    account_id: int
    from_state: str
    to_state: str
    reason: str
    actor: str
    order_id: int | None
    at: Any


class EventRow(NamedTuple):
    """An ``outbox`` row: an event for the dispatcher to deliver."""

    id: int
    event_type: str
    account_no: str | None
    payload: str
    created_at: Any
    available_at: Any
    attempts: int


@dataclass(slots=True)
class Writes:
    """Rows one transaction will write, gathered while deciding, written together."""

    entries: list[EntryDraft] = field(default_factory=list)
    payments: list[PaymentRow] = field(default_factory=list)
    allocations: list[AllocationRow] = field(default_factory=list)
    orders: list[NewOrderRow] = field(default_factory=list)
    transitions: list[TransitionRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    payment_credit: dict[int, int] = field(default_factory=dict)
    cancel_disconnects: list[tuple[int, Any]] = field(default_factory=list)


def marks(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """Named placeholders for an ``IN`` list, with their parameters."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{prefix}{i}" for i in range(len(values))), params


def account_from_row(row: Sequence[Any]) -> Account:
    """An :class:`Account` from a row of :data:`ACCOUNT_COLUMNS`."""
    return Account(
        id=int(row[0]),
        account_no=str(row[1]),
        name=row[2],
        category=Category(row[3]),
        prepaid=bool(row[4]),
        protected=bool(row[5]),
        currency=str(row[6]),
        supply_state=SupplyState(row[7]),
        receivable_id=int(row[8]),
    )


def lock_accounts(tx: Tx, account_nos: Sequence[str]) -> dict[str, Account]:
    """Lock the named accounts in id order (no deadlock between batches)."""
    if not account_nos:
        return {}
    placeholders, params = marks("n", account_nos)
    lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
    rows = tx.all(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts a "  # noqa: S608 - marks are ours
        f"WHERE a.account_no IN ({placeholders}) ORDER BY a.id{lock}",
        params,
    )
    return {str(r[1]): account_from_row(r) for r in rows}


def lock_account(tx: Tx, account_no: str) -> Account:
    """Lock one account; an unknown one is refused, naming the field."""
    acct = lock_accounts(tx, [account_no]).get(account_no)
    if acct is None:
        raise UnknownAccountError(f"no account {account_no}", field="account_no")
    return acct


def load_bills(
    tx: Tx, accts: Sequence[Account], *, include_bills_of_payment: int | None = None
) -> None:
    """Load balances and open bills (plus a payment's bills, for a reversal)."""
    if not accts:
        return
    by_id = {a.id: a for a in accts}
    by_recv = {a.receivable_id: a for a in accts}
    placeholders, params = marks("r", list(by_recv))
    for recv, balance in tx.all(
        "SELECT account_id, SUM(balance) FROM ledger_balances "  # noqa: S608
        f"WHERE account_id IN ({placeholders}) GROUP BY account_id",
        params,
    ):
        by_recv[int(recv)].balance = int(balance)
    placeholders, params = marks("a", list(by_id))
    extra = ""
    if include_bills_of_payment is not None:
        extra = " OR b.id IN (SELECT bill_id FROM allocations WHERE payment_id = :pid)"
        params["pid"] = include_bills_of_payment
    rows = tx.all(
        f"SELECT {_BILL_COLUMNS}, b.period FROM bills b "  # noqa: S608
        f"WHERE b.account_id IN ({placeholders}) AND ({_OPEN}{extra}) "
        "ORDER BY b.due_date, b.bill_no",
        params,
    )
    for acct in accts:
        acct.bills = []
        acct.original_bills = {}
        acct.periods = {}
    for r in rows:
        bill = OpenBill(
            bill_id=int(r[0]),
            bill_no=str(r[2]),
            due_date=tx.read_day(r[3]),
            amount=int(r[4]),
            principal_paid=int(r[5]),
            late_fee_charged=int(r[6]),
            late_fee_paid=int(r[7]),
            late_fee_through=None if r[8] is None else tx.read_day(r[8]),
        )
        acct = by_id[int(r[1])]
        acct.periods[bill.bill_id] = str(r[9])
        acct.bills.append(bill)
        acct.original_bills[bill.bill_id] = bill


def event(
    tx: Tx, writes: Writes, event_type: str, account_no: str, now: datetime, data: dict[str, Any]
) -> None:
    """Queue an event for the outbox, written with the decision that raised it."""
    event_id = tx.ids.one()
    payload = {
        "event_id": event_id,
        "type": event_type,
        "account_no": account_no,
        "occurred_at": now.isoformat(),
        "data": data,
    }
    writes.events.append(
        EventRow(
            id=event_id,
            event_type=event_type,
            account_no=account_no,
            payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            created_at=tx.ts(now),
            available_at=tx.ts(now),
            attempts=0,
        )
    )


def transition(
    tx: Tx,
    acct: Account,
    to: SupplyState,
    reason: str,
    actor: str,
    order_id: int | None,
    writes: Writes,
    now: datetime,
) -> None:
    """Move the account's supply state, recording the transition."""
    writes.transitions.append(
        TransitionRow(
            id=tx.ids.one(),
            account_id=acct.id,
            from_state=acct.supply_state.value,
            to_state=to.value,
            reason=reason,
            actor=actor,
            order_id=order_id,
            at=tx.ts(now),
        )
    )
    acct.supply_state = to
    acct.state_changed = True


def flush(tx: Tx, writes: Writes) -> None:
    """Write the batch's rows (the journal entries are posted separately, by payments)."""
    tx.insert("payments", PaymentRow._fields, writes.payments)
    tx.insert("allocations", AllocationRow._fields, writes.allocations)
    tx.many(
        "UPDATE payments SET unallocated = :u WHERE id = :id",
        [{"u": u, "id": pid} for pid, u in sorted(writes.payment_credit.items())],
    )
    tx.insert("supply_orders", NewOrderRow._fields, writes.orders)
    if writes.cancel_disconnects:
        tx.many(
            "UPDATE supply_orders SET status = 'cancelled', closed_at = :now "
            "WHERE account_id = :a AND kind = 'disconnect' AND status IN ('open', 'failed')",
            [{"a": a, "now": at} for a, at in writes.cancel_disconnects],
        )
    tx.insert("supply_transitions", TransitionRow._fields, writes.transitions)
    tx.insert("outbox", EventRow._fields, writes.events)


def write_bills(tx: Tx, accts: Iterable[Account]) -> None:
    """Write what changed on the accounts' bills since they were loaded."""
    tx.many(
        "UPDATE bills SET principal_paid = :pp, late_fee_charged = :fc, late_fee_paid = :fp, "
        "late_fee_through = :ft WHERE id = :id",
        _changed_bills(tx, accts),
    )


def _changed_bills(tx: Tx, accts: Iterable[Account]) -> list[dict[str, Any]]:
    """The bills that changed since they were loaded, in id order; marked as written."""
    rows: list[dict[str, Any]] = []
    for acct in accts:
        for bill in acct.bills:
            before = acct.original_bills.get(bill.bill_id)
            if before == bill:
                continue
            rows.append(
                {
                    "id": bill.bill_id,
                    "pp": bill.principal_paid,
                    "fc": bill.late_fee_charged,
                    "fp": bill.late_fee_paid,
                    "ft": None if bill.late_fee_through is None else tx.day(bill.late_fee_through),
                }
            )
            acct.original_bills[bill.bill_id] = bill
    rows.sort(key=lambda r: r["id"])
    return rows


def write_corrected_bill(tx: Tx, acct: Account, bill: OpenBill) -> None:
    """Write a corrected bill (cancelled or adjusted: its amount too), all columns in one
    statement so that its checks hold on the final state; marked as written."""
    tx.execute(
        "UPDATE bills SET amount = :amt, principal_paid = :pp, late_fee_charged = :fc, "
        "late_fee_paid = :fp, late_fee_through = :ft WHERE id = :id",
        {
            "amt": bill.amount,
            "pp": bill.principal_paid,
            "fc": bill.late_fee_charged,
            "fp": bill.late_fee_paid,
            "ft": None if bill.late_fee_through is None else tx.day(bill.late_fee_through),
            "id": bill.bill_id,
        },
    )
    acct.original_bills[bill.bill_id] = bill


def release_credit(tx: Tx, released: dict[int, int]) -> None:
    """Give payments back as credit what a correction took off the bills they had paid
    (``released``: payment id to amount), before the credit is spent again."""
    tx.many(
        "UPDATE payments SET unallocated = unallocated + :u WHERE id = :id",
        [{"u": u, "id": pid} for pid, u in sorted(released.items()) if u],
    )


def write_states(tx: Tx, accts: Iterable[Account]) -> None:
    """Write the supply states that changed."""
    accts = list(accts)
    rows = [{"s": a.supply_state.value, "id": a.id} for a in accts if a.state_changed]
    tx.many("UPDATE accounts SET supply_state = :s WHERE id = :id", rows)
    for acct in accts:
        acct.state_changed = False


# --- a payment decision's reads and writes, set-based --------------------------------------

# PostgreSQL: one call of the function migration 0007 installs. It locks the accounts in id
# order, then reads in a statement of its own: under READ COMMITTED a statement sees what was
# committed before it began, so bills and balances read after the lock include the work of a
# writer the lock waited for (one statement that locked and read would see the state from
# before the wait). The idempotency check is a lookup by the whole unique key (channel,
# channel_txn_id) per intent: planned on the unique index whatever the statistics say.
_READ_PG = "SELECT accounts, stored FROM paygate_payment_read(:nos, :chs, :txs)"


def read_decision(
    tx: Tx, account_nos: Sequence[str], keys: Sequence[tuple[str, str]]
) -> tuple[dict[str, Account], list[tuple[str, str, str, str]]]:
    """Lock the accounts, load their balances and open bills, and find the payments already
    stored under ``keys`` ((channel, channel_txn_id) pairs): what a payment decision reads.

    PostgreSQL: one statement, one round trip (a function that locks, then reads). SQLite,
    where a statement costs no round trip: the lock, the bills, one lookup per channel.
    Returns the accounts by number and (channel, channel_txn_id, fingerprint, receipt) rows.
    """
    if tx.dialect != "postgresql":
        locked = lock_accounts(tx, sorted(set(account_nos)))
        load_bills(tx, list(locked.values()))
        return locked, _stored_payments_sqlite(tx, keys)
    nos = sorted(set(account_nos))
    params = {"nos": nos, "chs": [k[0] for k in keys], "txs": [k[1] for k in keys]}
    found = tx.one(_READ_PG, params)
    assert found is not None
    accounts_json, payments_json = found
    accts: dict[str, Account] = {}
    for row in json.loads(accounts_json):
        acct = account_from_row(row)
        accts[acct.account_no] = acct
        acct.balance = int(row[9])
        bills = row[10]
        acct.bills, acct.original_bills, acct.periods = [], {}, {}
        for b in bills:
            bill = OpenBill(
                bill_id=int(b[0]),
                bill_no=str(b[2]),
                due_date=date.fromisoformat(b[3]),
                amount=int(b[4]),
                principal_paid=int(b[5]),
                late_fee_charged=int(b[6]),
                late_fee_paid=int(b[7]),
                late_fee_through=None if b[8] is None else date.fromisoformat(b[8]),
            )
            acct.periods[bill.bill_id] = str(b[9])
            acct.bills.append(bill)
            acct.original_bills[bill.bill_id] = bill
    stored = [(str(c), str(t), str(f), str(r)) for c, t, f, r in json.loads(payments_json)]
    return accts, stored


def _stored_payments_sqlite(
    tx: Tx, keys: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    # One query per channel on the unique index (channel, channel_txn_id): SQLite plans a
    # row-value IN list as a table scan.
    by_channel: dict[str, set[str]] = {}
    for channel, txn in keys:
        by_channel.setdefault(channel, set()).add(txn)
    out: list[tuple[str, str, str, str]] = []
    for channel, txn_ids in sorted(by_channel.items()):
        ordered = sorted(txn_ids)
        for start in range(0, len(ordered), 500):
            placeholders, params = marks("t", ordered[start : start + 500])
            params["c"] = channel
            out.extend(
                (channel, str(t), str(f), str(r))
                for t, f, r in tx.all(
                    "SELECT channel_txn_id, fingerprint, receipt FROM payments "  # noqa: S608
                    f"WHERE channel = :c AND channel_txn_id IN ({placeholders})",
                    params,
                )
            )
    return out


_PAYMENT_TYPES = (
    "bigint", "text", "text", "bigint", "bigint", "text", "timestamptz", "date", "text", "text",
    "bigint", "bigint", "bigint", "text", "text", "timestamptz",
)  # fmt: skip
_ALLOCATION_TYPES = ("bigint", "bigint", "bigint", "text", "bigint", "bigint", "timestamptz")
_ORDER_TYPES = (
    "bigint", "bigint", "text", "text", "text", "bigint", "timestamptz", "timestamptz", "text",
    "text", "timestamptz", "timestamptz", "timestamptz", "int", "timestamptz",
)  # fmt: skip
_TRANSITION_TYPES = ("bigint", "bigint", "text", "text", "text", "text", "bigint", "timestamptz")
_EVENT_TYPES = ("bigint", "text", "text", "text", "timestamptz", "timestamptz", "int")

_CREDIT = RowSet(
    "UPDATE payments p SET unallocated = x.u FROM {rows} AS x(u, id) WHERE p.id = x.id",
    "UPDATE payments SET unallocated = ? WHERE id = ?",
    ("bigint", "bigint"),
    (),
)
_CANCEL = RowSet(
    "UPDATE supply_orders o SET status = 'cancelled', closed_at = x.at FROM {rows} AS x(at, a) "
    "WHERE o.account_id = x.a AND o.kind = 'disconnect' AND o.status IN ('open', 'failed')",
    "UPDATE supply_orders SET status = 'cancelled', closed_at = ? "
    "WHERE account_id = ? AND kind = 'disconnect' AND status IN ('open', 'failed')",
    ("timestamptz", "bigint"),
    (),
)
_BILLS = RowSet(
    "UPDATE bills b SET principal_paid = x.pp, late_fee_charged = x.fc, late_fee_paid = x.fp, "
    "late_fee_through = x.ft FROM {rows} AS x(pp, fc, fp, ft, id) WHERE b.id = x.id",
    "UPDATE bills SET principal_paid = ?, late_fee_charged = ?, late_fee_paid = ?, "
    "late_fee_through = ? WHERE id = ?",
    ("bigint", "bigint", "bigint", "date", "bigint"),
    (),
)
_STATES = RowSet(
    "UPDATE accounts a SET supply_state = x.s FROM {rows} AS x(s, id) WHERE a.id = x.id",
    "UPDATE accounts SET supply_state = ? WHERE id = ?",
    ("text", "bigint"),
    (),
)


def decision_sets(tx: Tx, writes: Writes, accts: Iterable[Account]) -> list[RowSet]:
    """Every row of a decision but its journal entries, as row sets for
    :meth:`~paygate.store.engine.Tx.write`: payments, allocations, credit left, supply orders,
    transitions, outbox events, and what changed on the accounts' bills and supply states.

    In one statement a row may be written once: the credit updates touch only payments
    stored before (a payment inserted by the same decision carries its credit already).
    """
    accts = list(accts)
    bill_rows = [(r["pp"], r["fc"], r["fp"], r["ft"], r["id"]) for r in _changed_bills(tx, accts)]
    states = [(a.supply_state.value, a.id) for a in accts if a.state_changed]
    for acct in accts:
        acct.state_changed = False
    return [
        RowSet.insert("payments", PaymentRow._fields, _PAYMENT_TYPES, writes.payments),
        RowSet.insert("allocations", AllocationRow._fields, _ALLOCATION_TYPES, writes.allocations),
        _with(_CREDIT, [(u, pid) for pid, u in sorted(writes.payment_credit.items())]),
        RowSet.insert("supply_orders", NewOrderRow._fields, _ORDER_TYPES, writes.orders),
        _with(_CANCEL, [(at, a) for a, at in writes.cancel_disconnects]),
        RowSet.insert(
            "supply_transitions", TransitionRow._fields, _TRANSITION_TYPES, writes.transitions
        ),
        RowSet.insert("outbox", EventRow._fields, _EVENT_TYPES, writes.events),
        _with(_BILLS, bill_rows),
        _with(_STATES, states),
    ]


def _with(template: RowSet, rows: Sequence[Sequence[Any]]) -> RowSet:
    return RowSet(template.pg, template.sqlite, template.types, rows)
