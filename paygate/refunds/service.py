"""Refunds (退费): credit moved to refunds payable, an order sent through its route, settled.

Each decision is one transaction under the account's row lock, like a payment:

* **requested** (:meth:`Refunds.refund`): the refund is split into one order per payment its
  route refunds against (:mod:`paygate.refunds.split`; a transfer is one order). For each
  order the customer's credit (what its payments hold unallocated) is taken — from the
  payment refunded against first, then the newest payments — and the journal gets a
  ``refund`` entry from the customer's receivable to ``refunds_payable:<CUR>``; the
  ``refund_orders`` row is written ``pending`` and ``refund.requested`` goes to the outbox;
* **succeeded**: the money leaves through the route's channel — an entry from refunds payable
  to the channel's clearing account (a transfer route without a channel: ``bank:<CUR>``) —
  and ``refund.succeeded`` is queued;
* **failed**: the money comes back — refunds payable to the customer's receivable — as credit
  of the payments it was taken from (those since reversed keep none: their reversal took
  it), is spent on the account's open bills oldest payment first
  (:meth:`~paygate.payments.Payments.apply_credit`), supply follows as after a payment, and
  ``refund.failed`` is queued.

Exactly-once effect rests on the unique ``refund_orders.refund_id`` (the first order of a split
keeps the caller's id, so a split is written whole or not at all): a concurrent duplicate
fails at the insert, is rolled back, and is answered from the stored order (the same content:
replayed; other content: :class:`~paygate.errors.IdempotencyConflictError` naming the field).
A settled order never changes again: settling it twice the same way answers it as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paygate import billing
from paygate.clock import Clock
from paygate.errors import (
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    UnknownPaymentError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.money import Money
from paygate.payments import Payments
from paygate.records import (
    Account,
    Core,
    Writes,
    event,
    flush,
    load_bills,
    lock_account,
    release_credit,
    write_bills,
    write_states,
)
from paygate.refunds import orders, split
from paygate.refunds.finding_resolutions import reopen
from paygate.refunds.model import (
    Refund,
    RefundOrderState,
    check_payee,
    check_refund_id,
)
from paygate.refunds.orders import NewRefundRow, OrderRow
from paygate.refunds.route import Payee, RefundRoute
from paygate.store.engine import Store, Tx, UniqueViolation
from paygate.supply import SupplyOrders

__all__ = [
    "RefundRequestError",
    "Refunds",
    "UnknownRefundError",
    "refund_from_suspense",
    "refunds_payable",
]


class UnknownRefundError(NotFoundError):
    """No refund order is stored under the refund id."""

    code = "unknown_refund"


class RefundRequestError(InvalidStateError):
    """The refund cannot be made as asked (no payment to refund against, a settled order)."""

    code = "refund_refused"


def refunds_payable(core: Core, tx: Tx, currency: str) -> int:
    """The ledger account of money owed back to customers, on its way out."""
    return core.ledger.ensure(
        tx, f"refunds_payable:{currency}", AccountKind.REFUNDS_PAYABLE, currency
    )


@dataclass(frozen=True, slots=True)
class _Ask:
    account_no: str
    amount: Money
    refund_id: str
    route: str
    reason: str
    payee: Payee | None
    id_field: str = "refund_id"
    """The caller's field the orders' ids are made from (named when a part's id is too long)."""


class Refunds:
    """Refund orders: requested once per refund id, settled once through their route."""

    def __init__(self, core: Core, payments: Payments, supply: SupplyOrders) -> None:
        self._core = core
        self._payments = payments
        self._supply = supply
        self._routes: dict[str, RefundRoute] = {}

    @property
    def store(self) -> Store:
        """The database."""
        return self._core.store

    @property
    def clock(self) -> Clock:
        """The clock decisions are dated by."""
        return self._core.clock

    # -- routes -------------------------------------------------------------------------

    def use_routes(self, routes: Mapping[str, RefundRoute]) -> None:
        """The refund routes refunds may go through, by name (replacing any set before)."""
        for name, route in routes.items():
            if route.name != name:
                raise InvalidInputError(
                    f"route {route.name!r} is registered as {name!r}", field="routes"
                )
        self._routes = dict(routes)

    @property
    def routes(self) -> Mapping[str, RefundRoute]:
        """The configured refund routes, by name."""
        return dict(self._routes)

    def route(self, name: object) -> RefundRoute:
        """The configured route ``name``; InvalidInputError (``route``) when there is none."""
        route = self._routes.get(name) if isinstance(name, str) else None
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise InvalidInputError(
                f"no refund route {name!r} is configured (configured: {known})", field="route"
            )
        return route

    # -- requesting ---------------------------------------------------------------------

    def refund(
        self,
        account_no: str,
        amount: Money,
        *,
        refund_id: str,
        route: str,
        reason: str = "",
        payee: Payee | None = None,
    ) -> list[Refund]:
        """Move ``amount`` of the account's credit to refunds payable and raise the refund
        orders that pay it out through ``route`` — one per payment refunded against
        (:mod:`paygate.refunds.split`) — once per ``refund_id``."""
        ask = self.check(account_no, amount, refund_id=refund_id, route=route, reason=reason,
                         payee=payee)  # fmt: skip
        for _attempt in range(3):
            try:
                return self._core.store.run(lambda tx: self._decide(tx, ask))
            except UniqueViolation:
                continue  # a concurrent refund with this id committed first: answer from it
        raise IdempotencyConflictError(
            f"refund {refund_id} keeps colliding with concurrent writers; retry",
            field="refund_id",
        )

    def check(
        self,
        account_no: object,
        amount: object,
        *,
        refund_id: object,
        route: object,
        reason: object,
        payee: object,
        id_field: str = "refund_id",
    ) -> _Ask:
        """Refuse what no account could take, naming the field; the checked request
        (``id_field``: the caller's name of what ``refund_id`` is made from)."""
        if not isinstance(amount, Money):
            raise TypeError("amount must be Money")
        if amount.minor <= 0:
            raise InvalidAmountError("a refund amount must be positive", field="amount")
        check_refund_id(refund_id, id_field, new=True)
        if not isinstance(account_no, str) or not account_no:
            raise InvalidInputError("an account number", field="account_no")
        if not isinstance(reason, str) or len(reason) > 500:
            raise InvalidInputError("at most 500 characters", field="reason")
        self.route(route)
        assert isinstance(refund_id, str)
        assert isinstance(route, str)
        return _Ask(account_no, amount, refund_id, route, reason, check_payee(payee), id_field)

    def _decide(self, tx: Tx, ask: _Ask) -> list[Refund]:
        stored = _stored(tx, ask)
        if stored is not None:
            return stored
        acct = lock_account(tx, ask.account_no)
        stored = _stored(tx, ask)  # a concurrent one may have committed while we waited
        if stored is not None:
            return stored
        load_bills(tx, [acct])  # its balance: the events' balance_after starts from it
        return [o.refund() for o in self.request_within(tx, acct, ask, self._core.clock.now())]

    def request_within(self, tx: Tx, acct: Account, ask: _Ask, now: datetime) -> list[OrderRow]:
        """Write the refund's orders in ``tx`` for the locked account ``acct`` (its refund id
        is new): one per payment refunded against, or one transfer; refused whole, nothing
        written, when the route's payments cannot cover it
        (:class:`~paygate.refunds.split.RefundShortfallError`)."""
        route = self.route(ask.route)
        cur = acct.currency
        if ask.amount.currency != cur:
            raise CurrencyMismatchError(
                f"account {acct.account_no} is in {cur}, not {ask.amount.currency}",
                field="amount",
            )
        credits = [
            (int(pid), int(left))
            for pid, left in tx.all(
                "SELECT id, unallocated FROM payments WHERE account_id = :a AND unallocated > 0 "
                "AND status = 'posted' ORDER BY paid_at DESC, id DESC",
                {"a": acct.id},
            )
        ]
        available = sum(left for _, left in credits)
        if ask.amount.minor > available:
            raise InvalidAmountError(
                f"account {acct.account_no} has {Money(available, cur)} of credit: a refund "
                "takes at most that",
                field="amount",
            )
        if route.channel is not None:
            if ask.payee is not None:
                raise InvalidInputError(
                    f"route {route.name} pays back the original payment: no payee",
                    field="payee",
                )
            payments = split.refundable_payments(tx, acct.id, route.channel)
            pieces = split.plan(payments, ask.amount.minor)
            if pieces is None:
                raise split.shortfall(acct.account_no, route.channel, payments, ask.amount, "route")
        elif ask.payee is None:
            raise InvalidInputError(
                f"route {route.name} pays by bank transfer: a payee is required", field="payee"
            )
        else:
            pieces = [split.Piece(None, ask.amount.minor)]
        ids = [split.part_id(ask.refund_id, k, ask.id_field) for k in range(1, len(pieces) + 1)]
        left = dict(credits)  # payment id -> credit it still holds, newest payment first
        writes = Writes()
        for refund_id, piece in zip(ids, pieces, strict=True):
            # The payment refunded against gives its credit first, then the newest payments.
            first = None if piece.payment is None else piece.payment.payment_id
            taken: dict[int, int] = {}
            need = piece.amount
            for payment_id in sorted(left, key=lambda pid: pid != first):
                take = min(need, left[payment_id])
                if take == 0:
                    continue
                taken[payment_id] = take
                left[payment_id] -= take
                writes.payment_credit[payment_id] = left[payment_id]
                need -= take
                if need == 0:
                    break
            self._write_order(tx, acct, route, refund_id, piece, taken, ask, writes, now)
        flush(tx, writes)
        written = [orders.load_order(tx, refund_id) for refund_id in ids]
        return [order for order in written if order is not None]

    def _write_order(
        self,
        tx: Tx,
        acct: Account,
        route: RefundRoute,
        refund_id: str,
        piece: split.Piece,
        taken: Mapping[int, int],
        ask: _Ask,
        writes: Writes,
        now: datetime,
    ) -> None:
        cur = acct.currency
        amount = piece.amount
        original = piece.payment
        entry_id = tx.ids.one()
        self._payments.post(
            tx,
            [
                EntryDraft(
                    kind="refund",
                    reference=f"refund:{refund_id}",
                    memo=f"refund {refund_id} for {acct.account_no} via {route.name}: {ask.reason}"[
                        :2000
                    ],
                    business_date=self._core.local_date(now),
                    posted_at=now,
                    postings=(
                        PostingDraft(acct.receivable_id, amount, cur),
                        PostingDraft(refunds_payable(self._core, tx, cur), -amount, cur),
                    ),
                    shard_key=acct.id,
                    entry_id=entry_id,
                )
            ],
        )
        acct.balance += amount
        orders.insert_order(
            tx,
            NewRefundRow(
                id=tx.ids.one(),
                refund_id=refund_id,
                account_id=acct.id,
                route=route.name,
                channel=route.channel,
                payment_id=None if original is None else original.payment_id,
                amount=amount,
                currency=cur,
                reason=ask.reason,
                payee=orders.payee_json(ask.payee),
                credit_taken=json.dumps({str(k): v for k, v in sorted(taken.items())}),
                state=RefundOrderState.PENDING.value,
                attempts=0,
                next_attempt_at=tx.ts(now),
                entry_id=entry_id,
                requested_at=tx.ts(now),
                updated_at=tx.ts(now),
            ),
        )
        event(
            tx,
            writes,
            "refund.requested",
            acct.account_no,
            now,
            {
                "refund_id": refund_id,
                "amount": amount,
                "currency": cur,
                "route": route.name,
                "channel": route.channel,
                "original_channel_txn_id": None if original is None else original.channel_txn_id,
                "reason": ask.reason,
                "balance_after": acct.balance,
            },
        )

    # -- reading ------------------------------------------------------------------------

    def get(self, refund_id: str) -> Refund:
        """The refund order stored under ``refund_id``, as it stands."""
        row = self._core.store.run(lambda tx: orders.load_order(tx, refund_id), write=False)
        if row is None:
            raise UnknownRefundError(f"no refund {refund_id}", field="refund_id")
        return row.refund()

    def list(
        self,
        *,
        state: RefundOrderState | None = None,
        account_no: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[tuple[int, Refund]]:
        """Refund orders in the order they were requested, as (row id, refund)."""
        return self._core.store.run(
            lambda tx: orders.list_orders(
                tx, state=state, account_no=account_no, after=after, limit=limit
            ),
            write=False,
        )

    # -- settling -----------------------------------------------------------------------

    def complete(self, refund_id: str, provider_reference: str | None) -> Refund:
        """Record that the provider paid the refund (an asynchronous confirmation).

        Confirming it again changes nothing; confirming a failed refund is refused.
        """
        check_refund_id(refund_id)
        if provider_reference is not None and (
            not isinstance(provider_reference, str) or not 0 < len(provider_reference) <= 128
        ):
            raise InvalidInputError("1-128 characters", field="provider_reference")
        return self.settle(refund_id, RefundOrderState.SUCCEEDED, provider_reference, None, None)

    def fail(self, refund_id: str, code: str, message: str) -> Refund:
        """Record that the provider refused or gave up on the refund: the money returns to
        the customer's credit. Failing it again changes nothing; a paid refund is refused."""
        check_refund_id(refund_id)
        if not isinstance(code, str) or not 0 < len(code) <= 64:
            raise InvalidInputError("1-64 characters", field="code")
        if not isinstance(message, str):
            raise InvalidInputError("a message", field="message")
        return self.settle(refund_id, RefundOrderState.FAILED, None, code, message)

    def settle(
        self,
        refund_id: str,
        state: RefundOrderState,
        provider_reference: str | None,
        code: str | None,
        message: str | None,
    ) -> Refund:
        """Settle the order as ``state`` (succeeded or failed), in one transaction."""
        if not state.final:
            raise ValueError("settle() takes a final state")

        def work(tx: Tx) -> Refund:
            found = orders.load_order(tx, refund_id)
            if found is None:
                raise UnknownRefundError(f"no refund {refund_id}", field="refund_id")
            acct = lock_account(tx, found.account_no)
            order = orders.load_order(tx, refund_id, lock=True)
            assert order is not None
            if order.state.final:
                if order.state is state:
                    return order.refund(replayed=True)
                raise RefundRequestError(
                    f"refund {refund_id} has {order.state.value} already", field="refund_id"
                )
            now = self._core.clock.now()
            if state is RefundOrderState.SUCCEEDED:
                self._paid(tx, acct, order, provider_reference, now)
            elif _from_suspense(tx, order):
                _returned_to_suspense(
                    self._core, self._payments, tx, acct, order, code or "failed", message or "",
                    now,
                )  # fmt: skip
            else:
                self._returned(tx, acct, order, code or "failed", message or "", now)
            settled = orders.load_order(tx, refund_id)
            assert settled is not None
            return settled.refund()

        return self._core.store.run(work)

    def _paid(
        self, tx: Tx, acct: Account, order: OrderRow, reference: str | None, now: datetime
    ) -> None:
        cur = order.currency
        if order.channel is not None:
            out = self._payments.debit_account(tx, order.channel, cur)
        else:
            out = self._payments.ledger_account(tx, f"bank:{cur}", AccountKind.BANK, cur)
        entry_id = tx.ids.one()
        self._payments.post(
            tx,
            [
                EntryDraft(
                    kind="refund",
                    reference=f"refund-paid:{order.refund_id}",
                    memo=f"refund {order.refund_id} paid via {order.route}",
                    business_date=self._core.local_date(now),
                    posted_at=now,
                    postings=(
                        PostingDraft(refunds_payable(self._core, tx, cur), order.amount, cur),
                        PostingDraft(out, -order.amount, cur),
                    ),
                    shard_key=entry_id,
                    entry_id=entry_id,
                )
            ],
        )
        orders.record_final(
            tx,
            order.id,
            state=RefundOrderState.SUCCEEDED,
            provider_reference=reference,
            failure_code=None,
            failure_message=None,
            entry_id=entry_id,
            now=now,
        )
        writes = Writes()
        event(
            tx,
            writes,
            "refund.succeeded",
            acct.account_no,
            now,
            {
                "refund_id": order.refund_id,
                "amount": order.amount,
                "currency": cur,
                "route": order.route,
                "provider_reference": reference or order.provider_reference,
            },
        )
        flush(tx, writes)

    def _returned(
        self, tx: Tx, acct: Account, order: OrderRow, code: str, message: str, now: datetime
    ) -> None:
        core = self._core
        cur = order.currency
        today = core.local_date(now)
        load_bills(tx, [acct])
        arrears_before, _ = billing.arrears(
            acct.bills, acct.category, today, core.settings.late_fee
        )
        entry_id = tx.ids.one()
        self._payments.post(
            tx,
            [
                EntryDraft(
                    kind="refund",
                    reference=f"refund-failed:{order.refund_id}",
                    memo=f"refund {order.refund_id} failed ({code}): back to credit"[:2000],
                    business_date=today,
                    posted_at=now,
                    postings=(
                        PostingDraft(refunds_payable(core, tx, cur), order.amount, cur),
                        PostingDraft(acct.receivable_id, -order.amount, cur),
                    ),
                    shard_key=acct.id,
                    entry_id=entry_id,
                )
            ],
        )
        acct.balance -= order.amount
        # A payment reversed since keeps no credit: its reversal charged the customer for all
        # of it, the refunded part included, and this entry gives that part back.
        posted = _posted(tx, list(order.credit_taken))
        release_credit(tx, {pid: n for pid, n in order.credit_taken.items() if pid in posted})
        writes = Writes()
        applied = self._payments.apply_credit(tx, acct, writes, now)
        arrears_after, _ = billing.arrears(acct.bills, acct.category, today, core.settings.late_fee)
        orders.record_final(
            tx,
            order.id,
            state=RefundOrderState.FAILED,
            provider_reference=None,
            failure_code=code,
            failure_message=message,
            entry_id=entry_id,
            now=now,
        )
        event(
            tx,
            writes,
            "refund.failed",
            acct.account_no,
            now,
            {
                "refund_id": order.refund_id,
                "amount": order.amount,
                "currency": cur,
                "route": order.route,
                "failure_code": code,
                "failure_message": message,
                "credit_applied": applied,
                "balance_after": acct.balance,
                "arrears_after": arrears_after,
            },
        )
        cleared = arrears_before > 0 and arrears_after == 0
        reason = "arrears cleared" if cleared else "balance settled"
        self._supply.after_payment(tx, acct, None, arrears_after, writes, now, reason)
        flush(tx, writes)
        write_bills(tx, [acct])
        write_states(tx, [acct])


def refund_from_suspense(
    core: Core,
    payments: Payments,
    chosen: RefundRoute,
    tx: Tx,
    acct: Account,
    *,
    payment_id: int,
    refund_id: str,
    reason: str,
    payee: Payee | None,
    now: datetime,
) -> OrderRow:
    """Write in ``tx`` the refund order that pays a payment held in suspense back to the
    payer: all of payment ``payment_id`` (of the locked account ``acct``, status
    ``suspense``) through the route ``chosen``, once per ``refund_id`` (new).

    The money comes from ``suspense:<CUR>``, not from the account's credit (the account
    is not credited, so its balance does not change). A provider route must be the
    payment's own channel, which refunds that payment; a transfer route needs a payee.
    The order is dispatched and settled like any refund, except that a failure puts the
    money back in suspense (:meth:`Refunds.settle`) rather than on the account.
    """
    check_refund_id(refund_id, new=True)
    checked_payee = check_payee(payee)
    row = tx.one(
        "SELECT channel, channel_txn_id, amount, currency, status, account_id "
        "FROM payments WHERE id = :p",
        {"p": payment_id},
    )
    if row is None or int(row[5]) != acct.id or str(row[4]) != "suspense":
        raise UnknownPaymentError(
            f"account {acct.account_no} holds no payment {payment_id} in suspense",
            field="payment_id",
        )
    channel, txn_id, amount, cur = str(row[0]), str(row[1]), int(row[2]), str(row[3])
    if chosen.channel is not None:
        if checked_payee is not None:
            raise InvalidInputError(
                f"route {chosen.name} pays back the original payment: no payee",
                field="payee",
            )
        if chosen.channel != channel:
            raise InvalidInputError(
                f"route {chosen.name} refunds {chosen.channel} payments; payment "
                f"{payment_id} came through {channel}",
                field="route",
            )
    elif checked_payee is None:
        raise InvalidInputError(
            f"route {chosen.name} pays by bank transfer: a payee is required", field="payee"
        )
    if orders.refunds_against(tx, payment_id):
        raise RefundRequestError(
            f"payment {payment_id} has a refund that has not failed", field="payment_id"
        )
    suspense = payments.ledger_account(tx, f"suspense:{cur}", AccountKind.SUSPENSE, cur)
    entry_id = tx.ids.one()
    payments.post(
        tx,
        [
            EntryDraft(
                kind="refund",
                reference=f"refund:{refund_id}",
                memo=f"refund {refund_id} of payment {payment_id} held in suspense for "
                f"{acct.account_no} via {chosen.name}: {reason}"[:2000],
                business_date=core.local_date(now),
                posted_at=now,
                postings=(
                    PostingDraft(suspense, amount, cur),
                    PostingDraft(refunds_payable(core, tx, cur), -amount, cur),
                ),
                shard_key=acct.id,
                entry_id=entry_id,
            )
        ],
    )
    orders.insert_order(
        tx,
        NewRefundRow(
            id=tx.ids.one(),
            refund_id=refund_id,
            account_id=acct.id,
            route=chosen.name,
            channel=chosen.channel,
            payment_id=payment_id,
            amount=amount,
            currency=cur,
            reason=reason,
            payee=orders.payee_json(checked_payee),
            credit_taken="{}",
            state=RefundOrderState.PENDING.value,
            attempts=0,
            next_attempt_at=tx.ts(now),
            entry_id=entry_id,
            requested_at=tx.ts(now),
            updated_at=tx.ts(now),
        ),
    )
    writes = Writes()
    event(
        tx,
        writes,
        "refund.requested",
        acct.account_no,
        now,
        {
            "refund_id": refund_id,
            "amount": amount,
            "currency": cur,
            "route": chosen.name,
            "channel": chosen.channel,
            "original_channel_txn_id": txn_id,
            "reason": reason,
            "balance_after": acct.balance,
        },
    )
    flush(tx, writes)
    stored = orders.load_order(tx, refund_id)
    assert stored is not None
    return stored


def _returned_to_suspense(
    core: Core,
    payments: Payments,
    tx: Tx,
    acct: Account,
    order: OrderRow,
    code: str,
    message: str,
    now: datetime,
) -> None:
    """A refund of money held in suspense failed: the money goes back to suspense and the
    payment finding it resolved is open again
    (:func:`paygate.refunds.finding_resolutions.reopen`)."""
    cur = order.currency
    today = core.local_date(now)
    suspense = payments.ledger_account(tx, f"suspense:{cur}", AccountKind.SUSPENSE, cur)
    entry_id = tx.ids.one()
    payments.post(
        tx,
        [
            EntryDraft(
                kind="refund",
                reference=f"refund-failed:{order.refund_id}",
                memo=f"refund {order.refund_id} failed ({code}): back to suspense"[:2000],
                business_date=today,
                posted_at=now,
                postings=(
                    PostingDraft(refunds_payable(core, tx, cur), order.amount, cur),
                    PostingDraft(suspense, -order.amount, cur),
                ),
                shard_key=acct.id,
                entry_id=entry_id,
            )
        ],
    )
    orders.record_final(
        tx,
        order.id,
        state=RefundOrderState.FAILED,
        provider_reference=None,
        failure_code=code,
        failure_message=message,
        entry_id=entry_id,
        now=now,
    )
    reopen(tx, order.refund_id, now)
    load_bills(tx, [acct])
    arrears, _ = billing.arrears(acct.bills, acct.category, today, core.settings.late_fee)
    writes = Writes()
    event(
        tx,
        writes,
        "refund.failed",
        acct.account_no,
        now,
        {
            "refund_id": order.refund_id,
            "amount": order.amount,
            "currency": cur,
            "route": order.route,
            "failure_code": code,
            "failure_message": message,
            "credit_applied": 0,
            "balance_after": acct.balance,
            "arrears_after": arrears,
        },
    )
    flush(tx, writes)


def _from_suspense(tx: Tx, order: OrderRow) -> bool:
    """Whether ``order`` pays back a payment held in suspense (not the account's credit)."""
    if order.payment_id is None:
        return False
    status = tx.scalar("SELECT status FROM payments WHERE id = :p", {"p": order.payment_id})
    return str(status) == "suspense"


def _posted(tx: Tx, payment_ids: list[int]) -> set[int]:
    if not payment_ids:
        return set()
    marks = ", ".join(f":p{i}" for i in range(len(payment_ids)))
    params: dict[str, Any] = {f"p{i}": pid for i, pid in enumerate(payment_ids)}
    return {
        int(r[0])
        for r in tx.all(
            f"SELECT id FROM payments WHERE id IN ({marks}) AND status = 'posted'",  # noqa: S608
            params,
        )
    }


def _stored(tx: Tx, ask: _Ask) -> list[Refund] | None:
    """The orders already stored under the request's id (a split's parts included), replayed;
    a conflict if their content differs, naming the first field that does."""
    order = orders.load_order(tx, ask.refund_id)
    if order is None:
        return None
    found = [order]
    part = 2
    while len(f"{ask.refund_id}*{part}") <= split.LONGEST_ID:
        more = orders.load_order(tx, split.part_id(ask.refund_id, part))
        if more is None:
            break
        found.append(more)
        part += 1
    total = sum(o.amount for o in found)
    differs = None
    if order.account_no != ask.account_no:
        differs = "account_no"
    elif (total, order.currency) != (ask.amount.minor, ask.amount.currency):
        differs = "amount"
    elif order.route != ask.route:
        differs = "route"
    elif order.reason != ask.reason:
        differs = "reason"
    elif order.payee != ask.payee:
        differs = "payee"
    if differs is not None:
        raise IdempotencyConflictError(
            f"refund {ask.refund_id} was requested before with another {differs}", field=differs
        )
    return [o.refund(replayed=True) for o in found]
