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
from paygate.store.engine import Store, Tx

__all__ = [
    "Account",
    "AllocationRow",
    "Core",
    "EventRow",
    "NewOrderRow",
    "PaymentRow",
    "TransitionRow",
    "Writes",
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
    tx.many(
        "UPDATE bills SET principal_paid = :pp, late_fee_charged = :fc, late_fee_paid = :fp, "
        "late_fee_through = :ft WHERE id = :id",
        rows,
    )


def write_states(tx: Tx, accts: Iterable[Account]) -> None:
    """Write the supply states that changed."""
    accts = list(accts)
    rows = [{"s": a.supply_state.value, "id": a.id} for a in accts if a.state_changed]
    tx.many("UPDATE accounts SET supply_state = :s WHERE id = :id", rows)
    for acct in accts:
        acct.state_changed = False
