"""Refund orders: the ``refund_orders`` table, its one writer.

An order is written with the decision that moved the customer's credit to refunds payable
(``pending``), and then only moves forward: ``pending`` → ``submitted`` → ``succeeded`` or
``failed``. Every write here is a plain statement in the caller's transaction; the callers in
:mod:`paygate.refunds.service` decide, under the order's row lock, what the order becomes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from paygate.money import Money
from paygate.refunds.model import Refund, RefundOrderState
from paygate.refunds.route import Payee, RefundRequest
from paygate.store.engine import Tx

__all__ = [
    "NewRefundRow",
    "OrderRow",
    "credit_held",
    "due_orders",
    "insert_order",
    "list_orders",
    "load_order",
    "record_attempt",
    "record_error",
    "record_final",
    "record_submitted",
    "refunds_against",
]

_COLUMNS = (
    "r.id, r.refund_id, a.account_no, r.account_id, r.route, r.channel, r.payment_id, "
    "p.channel_txn_id, p.amount, r.amount, r.currency, r.reason, r.payee, r.credit_taken, "
    "r.state, r.attempts, r.next_attempt_at, r.provider_reference, r.failure_code, "
    "r.failure_message, r.entry_id, r.final_entry_id, r.requested_at, r.submitted_at, "
    "r.finished_at, r.last_error"
)
_FROM = (
    "FROM refund_orders r JOIN accounts a ON a.id = r.account_id "
    "LEFT JOIN payments p ON p.id = r.payment_id"
)


class NewRefundRow(NamedTuple):
    """A new ``refund_orders`` row, as inserted."""

    id: int
    refund_id: str
    account_id: int
    route: str
    channel: str | None
    payment_id: int | None
    amount: int
    currency: str
    reason: str
    payee: str | None
    credit_taken: str
    state: str
    attempts: int
    next_attempt_at: Any
    entry_id: int
    requested_at: Any
    updated_at: Any


@dataclass(frozen=True, slots=True)
class OrderRow:
    """A refund order as stored."""

    id: int
    refund_id: str
    account_no: str
    account_id: int
    route: str
    channel: str | None
    payment_id: int | None
    original_channel_txn_id: str | None
    original_amount: int | None
    amount: int
    currency: str
    reason: str
    payee: Payee | None
    credit_taken: dict[int, int]
    """What each payment gave of its credit (payment id → minor units)."""
    state: RefundOrderState
    attempts: int
    next_attempt_at: datetime | None
    provider_reference: str | None
    failure_code: str | None
    failure_message: str | None
    entry_id: int
    final_entry_id: int | None
    requested_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    last_error: str | None

    def request(self) -> RefundRequest:
        """The order as its route sees it."""
        return RefundRequest(
            refund_id=self.refund_id,
            account_no=self.account_no,
            amount=Money(self.amount, self.currency),
            reason=self.reason,
            requested_at=self.requested_at,
            original_channel_txn_id=self.original_channel_txn_id,
            original_amount=None
            if self.original_amount is None
            else Money(self.original_amount, self.currency),
            payee=self.payee,
        )

    def refund(self, *, replayed: bool = False) -> Refund:
        """The order as callers see it."""
        return Refund(
            refund_id=self.refund_id,
            account_no=self.account_no,
            amount=Money(self.amount, self.currency),
            route=self.route,
            reason=self.reason,
            state=self.state,
            replayed=replayed,
            channel=self.channel,
            original_channel_txn_id=self.original_channel_txn_id,
            payee_account_number=None if self.payee is None else self.payee.account_number,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            provider_reference=self.provider_reference,
            failure_code=self.failure_code,
            failure_message=self.failure_message,
            requested_at=self.requested_at,
            submitted_at=self.submitted_at,
            finished_at=self.finished_at,
            last_error=self.last_error,
            entry_id=self.entry_id,
            final_entry_id=self.final_entry_id,
        )


def payee_json(payee: Payee | None) -> str | None:
    """The payee as stored."""
    if payee is None:
        return None
    return json.dumps(
        {"name": payee.name, "account_number": payee.account_number, "bank_code": payee.bank_code},
        ensure_ascii=False,
        sort_keys=True,
    )


def _row(tx: Tx, r: Sequence[Any]) -> OrderRow:
    def ts(value: Any) -> datetime | None:
        return None if value is None else tx.read_ts(value)

    payee = None if r[12] is None else Payee(**json.loads(str(r[12])))
    return OrderRow(
        id=int(r[0]),
        refund_id=str(r[1]),
        account_no=str(r[2]),
        account_id=int(r[3]),
        route=str(r[4]),
        channel=r[5],
        payment_id=None if r[6] is None else int(r[6]),
        original_channel_txn_id=r[7],
        original_amount=None if r[8] is None else int(r[8]),
        amount=int(r[9]),
        currency=str(r[10]),
        reason=str(r[11]),
        payee=payee,
        credit_taken={int(k): int(v) for k, v in json.loads(str(r[13])).items()},
        state=RefundOrderState(r[14]),
        attempts=int(r[15]),
        next_attempt_at=ts(r[16]),
        provider_reference=r[17],
        failure_code=r[18],
        failure_message=r[19],
        entry_id=int(r[20]),
        final_entry_id=None if r[21] is None else int(r[21]),
        requested_at=tx.read_ts(r[22]),
        submitted_at=ts(r[23]),
        finished_at=ts(r[24]),
        last_error=r[25],
    )


def insert_order(tx: Tx, row: NewRefundRow) -> None:
    """Write a new refund order."""
    tx.insert("refund_orders", NewRefundRow._fields, [row])


def load_order(tx: Tx, refund_id: str, *, lock: bool = False) -> OrderRow | None:
    """The order stored under ``refund_id`` (locked for the transaction with ``lock``)."""
    suffix = " FOR UPDATE OF r" if lock and tx.dialect == "postgresql" else ""
    row = tx.one(
        f"SELECT {_COLUMNS} {_FROM} WHERE r.refund_id = :id{suffix}",
        {"id": refund_id},
    )
    return None if row is None else _row(tx, row)


def refunds_against(tx: Tx, payment_id: int) -> list[str]:
    """The refunds against payment ``payment_id`` that have not failed (their refund ids)."""
    return [
        str(r[0])
        for r in tx.all(
            "SELECT refund_id FROM refund_orders WHERE payment_id = :p AND state <> 'failed' "
            "ORDER BY id",
            {"p": payment_id},
        )
    ]


def credit_held(tx: Tx, account_id: int, payment_id: int) -> list[str]:
    """The refunds, not failed, holding credit ``payment_id`` gave them (their refund ids)."""
    rows = tx.all(
        "SELECT refund_id, credit_taken FROM refund_orders WHERE account_id = :a "
        "AND state <> 'failed' ORDER BY id",
        {"a": account_id},
    )
    return [str(rid) for rid, taken in rows if str(payment_id) in json.loads(str(taken))]


def due_orders(tx: Tx, now: datetime, limit: int) -> list[str]:
    """The refund ids of orders not yet final whose next attempt is due, oldest first."""
    return [
        str(r[0])
        for r in tx.all(
            "SELECT refund_id FROM refund_orders WHERE state IN ('pending', 'submitted') "
            "AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT :n",
            {"now": tx.ts(now), "n": limit},
        )
    ]


def record_attempt(
    tx: Tx, order_id: int, *, attempts: int, next_attempt_at: datetime, now: datetime
) -> None:
    """Count an attempt at the provider; the order is due again at ``next_attempt_at``."""
    tx.execute(
        "UPDATE refund_orders SET attempts = :n, next_attempt_at = :next, updated_at = :now "
        "WHERE id = :id",
        {"n": attempts, "next": tx.ts(next_attempt_at), "now": tx.ts(now), "id": order_id},
    )


def record_error(tx: Tx, order_id: int, error: str) -> None:
    """Note why the last attempt got no answer (the order keeps its state and schedule)."""
    tx.execute(
        "UPDATE refund_orders SET last_error = :e WHERE id = :id",
        {"e": error[:2000], "id": order_id},
    )


def record_submitted(
    tx: Tx,
    order_id: int,
    *,
    provider_reference: str | None,
    next_attempt_at: datetime,
    now: datetime,
) -> None:
    """The provider accepted the order; it is asked again at ``next_attempt_at``."""
    tx.execute(
        "UPDATE refund_orders SET state = 'submitted', "
        "provider_reference = COALESCE(:ref, provider_reference), "
        "submitted_at = COALESCE(submitted_at, :now), next_attempt_at = :next, "
        "last_error = NULL, updated_at = :now WHERE id = :id",
        {
            "ref": provider_reference,
            "next": tx.ts(next_attempt_at),
            "now": tx.ts(now),
            "id": order_id,
        },
    )


def record_final(
    tx: Tx,
    order_id: int,
    *,
    state: RefundOrderState,
    provider_reference: str | None,
    failure_code: str | None,
    failure_message: str | None,
    entry_id: int,
    now: datetime,
) -> None:
    """The order is settled (``succeeded`` or ``failed``) by the journal entry ``entry_id``."""
    tx.execute(
        "UPDATE refund_orders SET state = :s, "
        "provider_reference = COALESCE(:ref, provider_reference), failure_code = :code, "
        "failure_message = :msg, final_entry_id = :e, finished_at = :now, "
        "next_attempt_at = NULL, last_error = NULL, updated_at = :now WHERE id = :id",
        {
            "s": state.value,
            "ref": provider_reference,
            "code": failure_code,
            "msg": None if failure_message is None else failure_message[:2000],
            "e": entry_id,
            "now": tx.ts(now),
            "id": order_id,
        },
    )


def list_orders(
    tx: Tx,
    *,
    state: RefundOrderState | None = None,
    account_no: str | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[tuple[int, Refund]]:
    """Refund orders in the order they were requested, as (row id, refund): those after row
    ``after``, at most ``limit``, of one state or account if given."""
    where = ["r.id > :after"]
    params: dict[str, Any] = {"after": after}
    if state is not None:
        where.append("r.state = :s")
        params["s"] = state.value
    if account_no is not None:
        where.append("a.account_no = :no")
        params["no"] = account_no
    sql = f"SELECT {_COLUMNS} {_FROM} WHERE {' AND '.join(where)} ORDER BY r.id"
    if limit is not None:
        sql += " LIMIT :n"
        params["n"] = limit
    return [(int(r[0]), _row(tx, r).refund()) for r in tx.all(sql, params)]
