"""Payment findings, resolved by finance: money held in suspense for a closed account, moved.

A payment that arrives for a closed account is held in ``suspense:<CUR>`` with a
``payment_findings`` row (:mod:`paygate.refunds.closed`). Finance lists those findings and
resolves each one, with a reason and the name of the person who decided, in one of two ways:

* **assigned** to another, open account: one journal entry takes the money out of suspense
  onto that account's receivable, as a payment of the channel ``suspense`` (its
  ``channel_txn_id`` is ``finding-<id>``), credit first; the account's credit is then spent
  on its open bills oldest first (:meth:`~paygate.payments.Payments.apply_credit`), supply
  follows as after any payment, and ``payment.posted`` (and ``arrears.cleared`` when it
  clears them) is queued;
* **refunded** to the payer: a refund order through a refund route
  (:func:`~paygate.refunds.service.refund_from_suspense`), the money from suspense to refunds
  payable; it is dispatched and settled like any refund, and if it fails the money goes back
  to suspense and the finding is open again
  (:func:`~paygate.refunds.finding_resolutions.reopen`).

There is no write-off. The payer is known (the channel holds the original transaction), so
the money can always go back to them; writing customers' money off to revenue is a decision
for the utility's unclaimed-money rules, which paygate does not hold.

Invariants:

* For payment findings, suspense holds exactly the sum of the open findings' amounts: a
  resolution takes all of a finding's money out of suspense in the transaction that records
  it, and a failed refund puts it back in the transaction that reopens the finding.
* A finding has at most one resolution that holds: ``settles_finding_id`` is unique, so the
  database refuses a second one even from two people at the same instant; a second attempt
  is refused with :class:`PaymentFindingResolvedError` and changes nothing.
* A resolution id takes effect once: the same request again answers the stored resolution
  (``replayed``); the same id with other content is an
  :class:`~paygate.errors.IdempotencyConflictError` naming the field.
* Each resolution is one transaction, under the row locks of the closed account (and of the
  account assigned to, taken in id order).

The rows of ``payment_finding_resolutions`` are written by
:mod:`paygate.refunds.finding_resolutions`, which owns the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from paygate import billing
from paygate.errors import (
    AccountClosedError,
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    UnknownAccountError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import Receipt, SupplyState
from paygate.money import Money
from paygate.records import (
    Core,
    PaymentRow,
    Writes,
    event,
    flush,
    load_bills,
    lock_accounts,
    write_bills,
    write_states,
)
from paygate.refunds.finding_resolutions import NewFindingResolution, insert_resolution
from paygate.refunds.model import RefundOrderState, check_payee, check_refund_id
from paygate.refunds.route import Payee
from paygate.refunds.service import Refunds, refund_from_suspense
from paygate.store.engine import Tx, UniqueViolation

if TYPE_CHECKING:
    from paygate.payments import Payments
    from paygate.supply import SupplyOrders

__all__ = [
    "SUSPENSE_CHANNEL",
    "PaymentFinding",
    "PaymentFindingAction",
    "PaymentFindingResolution",
    "PaymentFindingResolvedError",
    "PaymentFindingState",
    "PaymentFindings",
    "UnknownPaymentFindingError",
]

SUSPENSE_CHANNEL = "suspense"
"""The channel of a payment assigned out of suspense: the money came from ``suspense:<CUR>``,
not from a channel's clearing account, and no channel statement lists it."""


class UnknownPaymentFindingError(NotFoundError):
    """No payment finding has this id."""

    code = "unknown_payment_finding"


class PaymentFindingResolvedError(InvalidStateError):
    """The payment finding is resolved already (assigned, or a refund that has not failed)."""

    code = "payment_finding_resolved"


class PaymentFindingState(StrEnum):
    """Where a payment finding stands."""

    OPEN = "open"
    """Its money is in suspense, waiting for finance."""
    ASSIGNED = "assigned"
    """Its money was assigned to another account."""
    REFUNDED = "refunded"
    """Its money is refunded to the payer (the refund order says how far that got)."""


class PaymentFindingAction(StrEnum):
    """What a resolution did with a finding's money."""

    ASSIGNED = "assigned"
    REFUNDED = "refunded"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PaymentFindingResolution(_Frozen):
    """What finance did about one payment finding, who, when and why."""

    resolution_id: str = Field(description="the caller's id of the resolution, taken once")
    finding_id: int
    action: PaymentFindingAction
    amount: Money
    reason: str
    actor: str
    resolved_at: datetime
    account_no: str | None = Field(default=None, description="the account assigned to")
    payment_id: int | None = Field(default=None, description="the payment posted there")
    refund_id: str | None = Field(default=None, description="the refund order to the payer")
    refund_state: RefundOrderState | None = None
    reopened_at: datetime | None = Field(
        default=None, description="when the refund failed and the finding opened again"
    )
    replayed: bool = False


class PaymentFinding(_Frozen):
    """A payment held in suspense, with the reason and where it stands."""

    id: int
    reason: str = Field(description="why it is held: `account_closed`")
    account_no: str = Field(description="the account the payment named (closed)")
    payment_id: int
    channel: str
    channel_txn_id: str
    amount: Money
    paid_at: datetime
    created_at: datetime
    state: PaymentFindingState
    resolution: PaymentFindingResolution | None = Field(
        default=None, description="the resolution that holds, if any"
    )


_FINDING_COLUMNS = (
    "f.id, f.reason, a.account_no, f.payment_id, p.channel, p.channel_txn_id, f.amount, "
    "f.currency, p.paid_at, f.created_at, f.account_id"
)
_FINDING_FROM = (
    "FROM payment_findings f JOIN accounts a ON a.id = f.account_id "
    "JOIN payments p ON p.id = f.payment_id"
)
_RESOLUTION_COLUMNS = (
    "r.resolution_id, r.finding_id, r.action, r.amount, r.currency, r.reason, r.actor, "
    "r.resolved_at, t.account_no, r.payment_id, r.refund_id, o.state, r.reopened_at"
)
_RESOLUTION_FROM = (
    "FROM payment_finding_resolutions r LEFT JOIN accounts t ON t.id = r.account_id "
    "LEFT JOIN refund_orders o ON o.refund_id = r.refund_id"
)


def _resolution(tx: Tx, row: Sequence[Any], *, replayed: bool = False) -> PaymentFindingResolution:
    return PaymentFindingResolution(
        resolution_id=str(row[0]),
        finding_id=int(row[1]),
        action=PaymentFindingAction(row[2]),
        amount=Money(int(row[3]), str(row[4])),
        reason=str(row[5]),
        actor=str(row[6]),
        resolved_at=tx.read_ts(row[7]),
        account_no=row[8],
        payment_id=None if row[9] is None else int(row[9]),
        refund_id=row[10],
        refund_state=None if row[11] is None else RefundOrderState(row[11]),
        reopened_at=None if row[12] is None else tx.read_ts(row[12]),
        replayed=replayed,
    )


def _holding(tx: Tx, finding_id: int) -> PaymentFindingResolution | None:
    row = tx.one(
        f"SELECT {_RESOLUTION_COLUMNS} {_RESOLUTION_FROM} WHERE r.settles_finding_id = :f",
        {"f": finding_id},
    )
    return None if row is None else _resolution(tx, row)


def _finding(tx: Tx, row: Sequence[Any]) -> PaymentFinding:
    holding = _holding(tx, int(row[0]))
    state = (
        PaymentFindingState.OPEN if holding is None else PaymentFindingState(holding.action.value)
    )
    return PaymentFinding(
        id=int(row[0]),
        reason=str(row[1]),
        account_no=str(row[2]),
        payment_id=int(row[3]),
        channel=str(row[4]),
        channel_txn_id=str(row[5]),
        amount=Money(int(row[6]), str(row[7])),
        paid_at=tx.read_ts(row[8]),
        created_at=tx.read_ts(row[9]),
        state=state,
        resolution=holding,
    )


def _check_text(value: object, name: str, longest: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise InvalidInputError(f"1-{longest} characters", field=name)
    return value.strip()


class PaymentFindings:
    """Payment findings for finance: listed, and resolved once each (assigned or refunded)."""

    def __init__(
        self, core: Core, payments: Payments, supply: SupplyOrders, refunds: Refunds
    ) -> None:
        self._core = core
        self._payments = payments
        self._supply = supply
        self._refunds = refunds

    # -- reading ------------------------------------------------------------------------

    def get(self, finding_id: int) -> PaymentFinding:
        """The payment finding ``finding_id`` as it stands."""

        def work(tx: Tx) -> PaymentFinding:
            return _finding(tx, self._row(tx, finding_id))

        return self._core.store.run(work, write=False)

    def resolutions(self, finding_id: int) -> list[PaymentFindingResolution]:
        """Every resolution of ``finding_id``, oldest first (a failed refund's among them)."""

        def work(tx: Tx) -> list[PaymentFindingResolution]:
            self._row(tx, finding_id)
            rows = tx.all(
                f"SELECT {_RESOLUTION_COLUMNS} {_RESOLUTION_FROM} "
                "WHERE r.finding_id = :f ORDER BY r.id",
                {"f": finding_id},
            )
            return [_resolution(tx, row) for row in rows]

        return self._core.store.run(work, write=False)

    @staticmethod
    def _row(tx: Tx, finding_id: object) -> Sequence[Any]:
        if isinstance(finding_id, bool) or not isinstance(finding_id, int):
            raise InvalidInputError("a payment finding id", field="finding_id")
        row = tx.one(
            f"SELECT {_FINDING_COLUMNS} {_FINDING_FROM} WHERE f.id = :id",
            {"id": finding_id},
        )
        if row is None:
            raise UnknownPaymentFindingError(f"no payment finding {finding_id}", field="finding_id")
        return row

    def list(
        self, *, open_only: bool = True, after: int = 0, limit: int | None = None
    ) -> list[PaymentFinding]:
        """Payment findings by id, from the one after ``after`` on; only the open ones unless
        ``open_only`` is false; at most ``limit``."""
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise InvalidInputError("a limit of 1 or more", field="limit")
        clause = (
            " AND NOT EXISTS (SELECT 1 FROM payment_finding_resolutions r "
            "WHERE r.settles_finding_id = f.id)"
            if open_only
            else ""
        )
        cap = "" if limit is None else " LIMIT :n"

        def work(tx: Tx) -> list[PaymentFinding]:
            rows = tx.all(
                f"SELECT {_FINDING_COLUMNS} {_FINDING_FROM} "
                f"WHERE f.id > :after{clause} ORDER BY f.id{cap}",
                {"after": after, "n": limit},
            )
            return [_finding(tx, row) for row in rows]

        return self._core.store.run(work, write=False)

    # -- resolving ----------------------------------------------------------------------

    def assign(
        self, finding_id: int, account_no: str, *, resolution_id: str, reason: str, actor: str
    ) -> PaymentFindingResolution:
        """Assign the finding's money to the open account ``account_no``: out of suspense onto
        that account as its payment (channel ``suspense``), spent on its open bills oldest
        first; once per ``resolution_id``."""
        check_refund_id(resolution_id, "resolution_id")
        reason = _check_text(reason, "reason", 500)
        actor = _check_text(actor, "actor", 64)
        if not isinstance(account_no, str) or not account_no.strip():
            raise InvalidInputError("an account number", field="account_no")
        target_no = account_no.strip()
        asked = (PaymentFindingAction.ASSIGNED, finding_id, target_no, reason)

        def work(tx: Tx) -> PaymentFindingResolution:
            stored = self._stored(tx, resolution_id, asked)
            if stored is not None:
                return stored
            row = self._row(tx, finding_id)
            held_no = str(row[2])
            accts = lock_accounts(tx, sorted({held_no, target_no}))
            stored = self._stored(tx, resolution_id, asked)
            if stored is not None:
                return stored
            self._refuse_resolved(tx, finding_id)
            target = accts.get(target_no)
            if target is None:
                raise UnknownAccountError(f"no account {target_no}", field="account_no")
            if target.supply_state is SupplyState.CLOSED:
                raise AccountClosedError(
                    f"account {target_no} is closed: it takes no payment", field="account_no"
                )
            amount = Money(int(row[6]), str(row[7]))
            if amount.currency != target.currency:
                raise CurrencyMismatchError(
                    f"account {target_no} is in {target.currency}, the finding in "
                    f"{amount.currency}",
                    field="account_no",
                )
            now = self._core.clock.now()
            payment_id, entry_id = self._post_assignment(tx, target, finding_id, amount, actor, now)
            insert_resolution(
                tx,
                NewFindingResolution(
                    resolution_id=resolution_id,
                    finding_id=finding_id,
                    action=PaymentFindingAction.ASSIGNED.value,
                    amount=amount.minor,
                    currency=amount.currency,
                    reason=reason,
                    actor=actor,
                    at=now,
                    account_id=target.id,
                    payment_id=payment_id,
                    entry_id=entry_id,
                ),
            )
            return self._load(tx, resolution_id)

        return self._run(work, resolution_id, asked)

    def refund(
        self,
        finding_id: int,
        *,
        resolution_id: str,
        route: str,
        reason: str,
        actor: str,
        payee: Payee | None = None,
    ) -> PaymentFindingResolution:
        """Refund the finding's money to the payer through ``route`` (a provider route of the
        payment's own channel, or a transfer route with ``payee``); the refund order's id is
        ``resolution_id``, taken once."""
        check_refund_id(resolution_id, "resolution_id", new=True)
        reason = _check_text(reason, "reason", 500)
        actor = _check_text(actor, "actor", 64)
        self._refunds.route(route)
        payee = check_payee(payee)
        asked = (PaymentFindingAction.REFUNDED, finding_id, route, reason)

        def work(tx: Tx) -> PaymentFindingResolution:
            stored = self._stored(tx, resolution_id, asked)
            if stored is not None:
                return stored
            row = self._row(tx, finding_id)
            accts = lock_accounts(tx, [str(row[2])])
            acct = accts[str(row[2])]
            stored = self._stored(tx, resolution_id, asked)
            if stored is not None:
                return stored
            self._refuse_resolved(tx, finding_id)
            if tx.scalar("SELECT 1 FROM refund_orders WHERE refund_id = :r", {"r": resolution_id}):
                raise IdempotencyConflictError(
                    f"a refund {resolution_id} exists already: choose another resolution id",
                    field="resolution_id",
                )
            load_bills(tx, [acct])
            now = self._core.clock.now()
            order = refund_from_suspense(
                self._core,
                self._payments,
                self._refunds.route(route),
                tx,
                acct,
                payment_id=int(row[3]),
                refund_id=resolution_id,
                reason=f"payment finding {finding_id}: {reason}",
                payee=payee,
                now=now,
            )
            insert_resolution(
                tx,
                NewFindingResolution(
                    resolution_id=resolution_id,
                    finding_id=finding_id,
                    action=PaymentFindingAction.REFUNDED.value,
                    amount=order.amount,
                    currency=order.currency,
                    reason=reason,
                    actor=actor,
                    at=now,
                    refund_id=order.refund_id,
                    entry_id=order.entry_id,
                ),
            )
            return self._load(tx, resolution_id)

        return self._run(work, resolution_id, asked)

    # -- the parts of a resolution ------------------------------------------------------

    def _run(
        self,
        work: Callable[[Tx], PaymentFindingResolution],
        resolution_id: str,
        asked: tuple[Any, ...],
    ) -> PaymentFindingResolution:
        try:
            result: PaymentFindingResolution = self._core.store.run(work)
        except UniqueViolation:
            # Someone resolved it in the same instant and committed first: answer from theirs.
            def again(tx: Tx) -> PaymentFindingResolution:
                stored = self._stored(tx, resolution_id, asked)
                if stored is not None:
                    return stored
                self._refuse_resolved(tx, int(asked[1]))
                raise IdempotencyConflictError(
                    f"resolution {resolution_id} collided with a concurrent writer; retry",
                    field="resolution_id",
                ) from None

            return self._core.store.run(again, write=False)
        return result

    def _stored(
        self, tx: Tx, resolution_id: str, asked: tuple[Any, ...]
    ) -> PaymentFindingResolution | None:
        row = tx.one(
            f"SELECT {_RESOLUTION_COLUMNS} {_RESOLUTION_FROM} WHERE r.resolution_id = :id",
            {"id": resolution_id},
        )
        if row is None:
            return None
        stored = _resolution(tx, row, replayed=True)
        action, finding_id, whom, reason = asked
        differs = None
        if stored.finding_id != finding_id:
            differs = "finding_id"
        elif stored.action is not action:
            differs = "action"
        elif action is PaymentFindingAction.ASSIGNED and stored.account_no != whom:
            differs = "account_no"
        elif action is PaymentFindingAction.REFUNDED and self._route_of(tx, stored) != whom:
            differs = "route"
        elif stored.reason != reason:
            differs = "reason"
        if differs is not None:
            raise IdempotencyConflictError(
                f"resolution {resolution_id} was made before with another {differs}",
                field=differs,
            )
        return stored

    @staticmethod
    def _route_of(tx: Tx, stored: PaymentFindingResolution) -> str | None:
        value = tx.scalar(
            "SELECT route FROM refund_orders WHERE refund_id = :r", {"r": stored.refund_id}
        )
        return None if value is None else str(value)

    @staticmethod
    def _refuse_resolved(tx: Tx, finding_id: int) -> None:
        holding = _holding(tx, finding_id)
        if holding is not None:
            raise PaymentFindingResolvedError(
                f"payment finding {finding_id} is {holding.action.value} already "
                f"(resolution {holding.resolution_id} by {holding.actor})",
                field="finding_id",
            )

    def _load(self, tx: Tx, resolution_id: str) -> PaymentFindingResolution:
        row = tx.one(
            f"SELECT {_RESOLUTION_COLUMNS} {_RESOLUTION_FROM} WHERE r.resolution_id = :id",
            {"id": resolution_id},
        )
        assert row is not None
        return _resolution(tx, row)

    def _post_assignment(
        self, tx: Tx, target: Any, finding_id: int, amount: Money, actor: str, now: datetime
    ) -> tuple[int, int]:
        """Suspense to ``target``'s receivable as its payment, then its credit spent; the
        payment's id and its journal entry's."""
        core = self._core
        cur = amount.currency
        today = core.local_date(now)
        load_bills(tx, [target])
        arrears_before, _ = billing.arrears(
            target.bills, target.category, today, core.settings.late_fee
        )
        suspense = self._payments.ledger_account(tx, f"suspense:{cur}", AccountKind.SUSPENSE, cur)
        txn_id = f"finding-{finding_id}"
        payment_id, entry_id = tx.ids.one(), tx.ids.one()
        self._payments.post(
            tx,
            [
                EntryDraft(
                    kind="payment",
                    reference=f"payment:{SUSPENSE_CHANNEL}:{txn_id}",
                    memo=f"payment finding {finding_id} assigned to {target.account_no} by {actor}"[
                        :2000
                    ],
                    business_date=today,
                    posted_at=now,
                    postings=(
                        PostingDraft(suspense, amount.minor, cur),
                        PostingDraft(target.receivable_id, -amount.minor, cur),
                    ),
                    shard_key=target.id,
                    entry_id=entry_id,
                )
            ],
        )
        target.balance -= amount.minor
        # Posted as credit (what its receipt says), then spent like any credit: the
        # account's unallocated payments, oldest first, on its open bills.
        receipt = Receipt(
            payment_id=payment_id,
            channel=SUSPENSE_CHANNEL,
            channel_txn_id=txn_id,
            account_no=target.account_no,
            amount=amount,
            paid_at=now,
            business_date=today,
            late_fee=Money(0, cur),
            allocations=(),
            credit=amount,
            balance_after=Money(target.balance, cur),
            arrears_after=Money(arrears_before, cur),
            arrears_cleared=False,
        )
        fingerprint = hashlib.sha256(
            f"{SUSPENSE_CHANNEL}|{txn_id}|{target.account_no}|{amount.minor}|{cur}|"
            f"{now.isoformat()}".encode()
        ).hexdigest()
        posted = Writes()
        posted.payments.append(
            PaymentRow(
                id=payment_id,
                channel=SUSPENSE_CHANNEL,
                channel_txn_id=txn_id,
                account_id=target.id,
                amount=amount.minor,
                currency=cur,
                paid_at=tx.ts(now),
                business_date=tx.day(today),
                fingerprint=fingerprint,
                terminal_id=None,
                entry_id=entry_id,
                late_fee=0,
                unallocated=amount.minor,
                status="posted",
                receipt=receipt.model_dump_json(),
                posted_at=tx.ts(now),
            )
        )
        flush(tx, posted)
        writes = Writes()
        self._payments.apply_credit(tx, target, writes, now)
        arrears_after, _ = billing.arrears(
            target.bills, target.category, today, core.settings.late_fee
        )
        event(
            tx,
            writes,
            "payment.posted",
            target.account_no,
            now,
            {
                "payment_id": payment_id,
                "channel": SUSPENSE_CHANNEL,
                "channel_txn_id": txn_id,
                "amount": amount.minor,
                "currency": cur,
                "paid_at": now.isoformat(),
                "late_fee": 0,
                "balance_after": target.balance,
                "arrears_after": arrears_after,
            },
        )
        cleared = arrears_before > 0 and arrears_after == 0
        if cleared:
            event(
                tx,
                writes,
                "arrears.cleared",
                target.account_no,
                now,
                {"payment_id": payment_id, "supply_state": target.supply_state.value},
            )
        why = "arrears cleared" if cleared else "balance settled"
        self._supply.after_payment(tx, target, payment_id, arrears_after, writes, now, why)
        flush(tx, writes)
        write_bills(tx, [target])
        write_states(tx, [target])
        return payment_id, entry_id
