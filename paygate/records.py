"""The rows one decision reads and writes, typed, and the context the core's services share.

A decision (a payment, a bill, a reversal, an order's progress) locks the accounts it touches,
loads their open bills, gathers every row it will write in a :class:`Writes` batch while it
decides, and writes the batch once at the end (:func:`flush`), in its one transaction
(DESIGN.md invariant 4). The services in :mod:`paygate.accounts`, :mod:`paygate.payments`,
:mod:`paygate.supply` and :mod:`paygate.dunning` all decide this way; this module is what they
share, so that none of them needs another's internals.

It is also the one module whose SQL writes the core's tables — ``accounts``, ``bills``,
``payments``, ``allocations``, ``supply_orders``, ``supply_transitions`` and ``outbox``
(``store/schema.py`` names it their owner). Besides a decision's batch, it holds the writes
the services make outside one, each named for what it means: an account opened or its meter
set, a bill issued (one by one, or the billing run's set from its staging table), a payment
reversed, an order leased, progressed, failed or requeued, and an event queued, leased,
released, delivered, failed or requeued by the dispatcher. The callers decide and pass in
the values; nothing here imports them (supply, payments and the outbox import this module).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from paygate.billing import AllocationPolicy, OpenBill
from paygate.clock import Clock
from paygate.config import Settings
from paygate.errors import UnknownAccountError
from paygate.ledger import AccountKind, EntryDraft, LedgerAccounts
from paygate.models import Category, SupplyState
from paygate.store.engine import RowSet, Store, Tx

__all__ = [
    "OPEN_BILL",
    "Account",
    "AllocationRow",
    "Core",
    "EventRow",
    "NewOrderRow",
    "PaymentRow",
    "TransitionRow",
    "Writes",
    "cancel_open_orders",
    "decision_sets",
    "event_delivered",
    "event_failed",
    "insert_account",
    "insert_accounts_from_staging",
    "insert_bill",
    "insert_bills_from_staging",
    "lease_events",
    "lease_orders",
    "mark_reversed",
    "queue_events",
    "read_decision",
    "release_events",
    "requeue_events",
    "requeue_order",
    "set_meter",
    "write_order_failure",
    "write_order_progress",
]

ACCOUNT_COLUMNS = (
    "a.id, a.account_no, a.name, a.category, a.prepaid, a.protected, a.currency, "
    "a.supply_state, a.receivable_account_id"
)
_BILL_COLUMNS = (
    "b.id, b.account_id, b.bill_no, b.due_date, b.amount, b.principal_paid, "
    "b.late_fee_charged, b.late_fee_paid, b.late_fee_through"
)
OPEN_BILL: Final = "(b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged)"
"""A bill still owed (of alias ``b``): the predicate of the partial index ``ix_bills_open``,
which a read must state word for word for the index to serve it."""


@dataclass(slots=True)
class Core:
    """What the core's services share: the store, the settings, the clock, the allocation
    policy and the ledger-account directory. One per :class:`~paygate.gateway.Gateway`; the
    settings may be replaced (channel cut-offs) and every service sees the new ones."""

    store: Store
    settings: Settings
    clock: Clock
    allocation: AllocationPolicy
    ledger: LedgerAccounts = field(init=False)

    def __post_init__(self) -> None:
        # The accounts it creates are dated by this core's clock, whichever it is by then.
        self.ledger = LedgerAccounts(lambda: self.clock.now())

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
    # The open bills by the partial index on them (its predicate word for word); a payment's
    # bills, paid or not, by their ids, in a statement of their own (an OR of the two would
    # leave the index unusable and read every bill).
    sql = (
        f"SELECT {_BILL_COLUMNS}, b.period FROM bills b "  # noqa: S608
        f"WHERE b.account_id IN ({placeholders}) AND {OPEN_BILL}"
    )
    if include_bills_of_payment is not None:
        sql += (
            f" UNION SELECT {_BILL_COLUMNS}, b.period FROM bills b "  # noqa: S608
            f"WHERE b.account_id IN ({placeholders}) AND b.id IN "
            "(SELECT bill_id FROM allocations WHERE payment_id = :pid)"
        )
        params["pid"] = include_bills_of_payment
    rows = tx.all(f"{sql} ORDER BY 4, 3", params)
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
    queue_events(tx, writes.events)


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


# --- the core tables' writes outside a decision batch ---------------------------------------


def insert_account(
    tx: Tx,
    *,
    account_id: int,
    account_no: str,
    name: str | None,
    category: Category,
    prepaid: bool,
    protected: bool,
    currency: str,
    receivable_id: int,
    now: datetime,
) -> None:
    """Write a newly opened account, connected, with its receivable ledger account."""
    tx.execute(
        "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, "
        "currency, supply_state, receivable_account_id, created_at) VALUES (:id, :no, "
        ":name, :cat, :prepaid, :protected, :cur, :state, :recv, :now)",
        {
            "id": account_id,
            "no": account_no,
            "name": name,
            "cat": category.value,
            "prepaid": prepaid,
            "protected": protected,
            "cur": currency,
            "state": SupplyState.CONNECTED.value,
            "recv": receivable_id,
            "now": tx.ts(now),
        },
    )


def insert_accounts_from_staging(tx: Tx, staging: str, *, only_new: bool, now: datetime) -> int:
    """Write the accounts of the billing run's staging table ``staging`` (columns
    ``account_id, account_no, name, category, prepaid, protected, currency, code``), each
    connected and joined to its receivable ledger account by ``code``; return how many were
    written. ``only_new`` filters out account numbers already stored (a probe per row, so only
    where the run found some); a racing writer's are skipped by the unique constraint."""
    known = (
        " AND NOT EXISTS (SELECT 1 FROM accounts x WHERE x.account_no = s.account_no)"
        if only_new
        else ""
    )
    cur = tx.execute(
        "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, "  # noqa: S608
        "currency, supply_state, receivable_account_id, created_at) "
        "SELECT s.account_id, s.account_no, s.name, s.category, s.prepaid, s.protected, "
        f"s.currency, :state, l.id, :now FROM {staging} s "
        f"JOIN ledger_accounts l ON l.code = s.code AND l.kind = :kind WHERE true{known} "
        "ON CONFLICT (account_no) DO NOTHING",
        {
            "state": SupplyState.CONNECTED.value,
            "now": tx.ts(now),
            "kind": AccountKind.CUSTOMER_RECEIVABLE.value,
        },
    )
    return int(cur.rowcount)


def set_meter(tx: Tx, account_no: str, *, headend: str | None, meter_address: str | None) -> None:
    """Name the head-end and meter address the account's supply orders go to."""
    tx.execute(
        "UPDATE accounts SET headend = :h, meter_address = :m WHERE account_no = :n",
        {"h": headend, "m": meter_address, "n": account_no},
    )


def insert_bill(
    tx: Tx,
    *,
    bill_id: int,
    account_id: int,
    bill_no: str,
    period: str,
    amount: int,
    currency: str,
    due_date: date,
    entry_id: int,
    now: datetime,
) -> None:
    """Write a newly issued bill, nothing paid on it yet; ``entry_id`` is its journal entry."""
    tx.execute(
        "INSERT INTO bills (id, account_id, bill_no, period, amount, currency, due_date, "
        "principal_paid, late_fee_charged, late_fee_paid, late_fee_through, entry_id, "
        "issued_at) VALUES (:id, :acct, :no, :period, :amount, :cur, :due, 0, 0, 0, "
        "NULL, :entry, :now)",
        {
            "id": bill_id,
            "acct": account_id,
            "no": bill_no,
            "period": period,
            "amount": amount,
            "cur": currency,
            "due": tx.day(due_date),
            "entry": entry_id,
            "now": tx.ts(now),
        },
    )


def insert_bills_from_staging(
    tx: Tx, staging: str, *, only_new: bool, only_without_credit: bool, now: datetime
) -> int:
    """Write the bills of the billing run's staging table ``staging`` (columns ``bill_id,
    entry_id, account_no, bill_no, period, amount, currency, due_date``) to the open (not
    closed) accounts of that number and currency, nothing paid on them yet; return how many
    were written. ``only_new`` filters out bill numbers already stored,
    ``only_without_credit`` the accounts holding credit (each a probe per row, so only where
    the run found such rows)."""
    known = (
        " AND NOT EXISTS (SELECT 1 FROM bills x WHERE x.bill_no = s.bill_no)" if only_new else ""
    )
    credit = (
        " AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.account_id = a.id "
        "AND p.unallocated > 0 AND p.status = 'posted')"
        if only_without_credit
        else ""
    )
    cur = tx.execute(
        "INSERT INTO bills (id, account_id, bill_no, period, amount, currency, "  # noqa: S608
        "due_date, principal_paid, late_fee_charged, late_fee_paid, late_fee_through, "
        "entry_id, issued_at) SELECT s.bill_id, a.id, s.bill_no, s.period, s.amount, "
        f"s.currency, s.due_date, 0, 0, 0, NULL, s.entry_id, :now FROM {staging} s "
        "JOIN accounts a ON a.account_no = s.account_no AND a.currency = s.currency "
        f"AND a.supply_state <> 'closed' WHERE true{known}{credit} "
        "ON CONFLICT (bill_no) DO NOTHING",
        {"now": tx.ts(now)},
    )
    return int(cur.rowcount)


def mark_reversed(tx: Tx, payment_id: int, *, entry_id: int, reason: str) -> None:
    """Mark a payment reversed by the journal entry ``entry_id``; its credit is gone with it."""
    tx.execute(
        "UPDATE payments SET status = 'reversed', reversal_entry_id = :e, "
        "reversal_reason = :r, unallocated = 0 WHERE id = :id",
        {"e": entry_id, "r": reason, "id": payment_id},
    )


# Supply orders: the dispatcher leases them, and their progress, failures and retries are
# recorded by paygate.supply, which decides what they are.


def lease_orders(tx: Tx, order_ids: Sequence[int], *, token: str, until: datetime) -> None:
    """Lease the orders to the dispatcher holding ``token`` until ``until``."""
    tx.many(
        "UPDATE supply_orders SET claimed_until = :until, claim_token = :token WHERE id = :id",
        [{"until": tx.ts(until), "token": token, "id": i} for i in order_ids],
    )


def write_order_progress(
    tx: Tx,
    order_id: int,
    *,
    status: str,
    dispatched_at: datetime,
    acknowledged_at: datetime | None,
    completed_at: datetime | None,
    next_attempt_at: datetime | None,
) -> None:
    """Write how far an order got; it is closed when completed, and its lease and last error
    are cleared."""
    tx.execute(
        "UPDATE supply_orders SET status = :s, dispatched_at = :d, acknowledged_at = :a, "
        "completed_at = :c, closed_at = :closed, next_attempt_at = :next, "
        "claimed_until = NULL, claim_token = NULL, last_error = NULL WHERE id = :id",
        {
            "s": status,
            "d": tx.ts(dispatched_at),
            "a": None if acknowledged_at is None else tx.ts(acknowledged_at),
            "c": None if completed_at is None else tx.ts(completed_at),
            "closed": None if completed_at is None else tx.ts(completed_at),
            "next": None if next_attempt_at is None else tx.ts(next_attempt_at),
            "id": order_id,
        },
    )


def write_order_failure(
    tx: Tx,
    order_id: int,
    *,
    attempts: int,
    error: str,
    status: str,
    next_attempt_at: datetime | None,
) -> None:
    """Write a failed delivery of an order (retried at ``next_attempt_at``, or never with
    None) and clear its lease."""
    tx.execute(
        "UPDATE supply_orders SET attempts = :n, last_error = :e, status = :s, "
        "next_attempt_at = :next, claimed_until = NULL, claim_token = NULL WHERE id = :id",
        {
            "n": attempts,
            "e": error[:2000],
            "s": status,
            "next": None if next_attempt_at is None else tx.ts(next_attempt_at),
            "id": order_id,
        },
    )


def cancel_open_orders(tx: Tx, account_id: int, *, at: datetime) -> int:
    """Cancel every supply order of the account not yet completed or cancelled (the account
    is closed: no head-end is to act on it); return how many were cancelled."""
    cur = tx.execute(
        "UPDATE supply_orders SET status = 'cancelled', closed_at = :now, next_attempt_at = NULL, "
        "claimed_until = NULL, claim_token = NULL WHERE account_id = :a "
        "AND status IN ('open', 'dispatched', 'acknowledged', 'failed')",
        {"now": tx.ts(at), "a": account_id},
    )
    return int(cur.rowcount)


def requeue_order(tx: Tx, order_id: int, *, status: str, at: datetime) -> None:
    """Put an order back in the queue in ``status``, to be attempted at ``at``."""
    tx.execute(
        "UPDATE supply_orders SET status = :s, next_attempt_at = :now WHERE id = :id",
        {"s": status, "now": tx.ts(at), "id": order_id},
    )


# The outbox: events are queued by the decisions that raise them (flush) and by the dispatcher
# (its dead-letter alerts); the dispatcher leases them and records how their delivery went.


def queue_events(tx: Tx, events: Sequence[EventRow]) -> None:
    """Queue events in the outbox."""
    tx.insert("outbox", EventRow._fields, events)


def lease_events(tx: Tx, event_ids: Sequence[int], *, token: str, until: datetime) -> None:
    """Lease the events to the dispatcher holding ``token`` until ``until``."""
    tx.many(
        "UPDATE outbox SET claimed_until = :until, claim_token = :t WHERE id = :id",
        [{"until": tx.ts(until), "t": token, "id": i} for i in event_ids],
    )


def release_events(tx: Tx, event_ids: Sequence[int], *, token: str) -> None:
    """Give back the events still leased under ``token``, still due."""
    tx.many(
        "UPDATE outbox SET claimed_until = NULL, claim_token = NULL "
        "WHERE id = :id AND claim_token = :t",
        [{"id": event_id, "t": token} for event_id in event_ids],
    )


def event_delivered(tx: Tx, event_id: int, *, token: str, now: datetime) -> None:
    """Mark an event delivered, if its lease under ``token`` still holds."""
    tx.execute(
        "UPDATE outbox SET delivered_at = :now, claimed_until = NULL, claim_token = NULL "
        "WHERE id = :id AND claim_token = :t",
        {"now": tx.ts(now), "id": event_id, "t": token},
    )


def event_failed(
    tx: Tx,
    event_id: int,
    *,
    token: str,
    attempts: int,
    error: str,
    retry_at: datetime,
    dead_at: datetime | None,
) -> bool:
    """Record a failed delivery, if the lease under ``token`` still holds: retried at
    ``retry_at``, or dead-lettered at ``dead_at``; return whether it was recorded."""
    cur = tx.execute(
        "UPDATE outbox SET attempts = :n, last_error = :e, available_at = :r, dead_at = :d, "
        "claimed_until = NULL, claim_token = NULL WHERE id = :id AND claim_token = :t",
        {
            "n": attempts,
            "e": error[:2000],
            "r": tx.ts(retry_at),
            "d": None if dead_at is None else tx.ts(dead_at),
            "id": event_id,
            "t": token,
        },
    )
    return bool(cur.rowcount)


def requeue_events(tx: Tx, event_ids: Sequence[int], *, now: datetime) -> None:
    """Put dead-lettered events back in the queue, due ``now`` with a fresh attempt count."""
    tx.many(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, available_at = :now, "
        "claimed_until = NULL, claim_token = NULL WHERE id = :id",
        [{"now": tx.ts(now), "id": i} for i in event_ids],
    )


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
