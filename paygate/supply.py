"""Supply: supply orders (reconnection and disconnection), service-promise clocks, breaches.

Invariant (DESIGN.md 5): when a disconnected account's arrears reach zero, exactly one
reconnection order is created in that same transaction, with deadlines from the service promise;
it is dispatched at least once, retried with capped backoff while the head-end is unreachable,
and its completion — or the breach of each missed deadline — is recorded. An order is never
given up: a head-end that refuses it for good leaves it ``failed`` with an alert event, still
counted against the promise until a person resolves it.

The promise and its step deadlines live in :mod:`paygate.promise` (re-exported here, and held
by the settings); :class:`SupplyOrders` creates the orders, records their progress, failures
and breaches, and retries them. The dispatcher (:mod:`paygate.outbox`) drives orders to the
head-ends through it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from paygate import billing
from paygate.clock import require_aware
from paygate.errors import (
    InvalidInputError,
    InvalidStateError,
    UnknownOrderError,
)
from paygate.headend.base import HeadEndOutcome, SupplyAction, SupplyCommand
from paygate.models import SupplyState
from paygate.promise import (
    DEFAULT_PROMISE,
    LEGAL_LIMIT,
    Deadlines,
    DunningPolicy,
    ServicePromise,
    Severity,
    Step,
    severity,
)
from paygate.records import (
    Account,
    Core,
    NewOrderRow,
    Writes,
    cancel_open_orders,
    event,
    flush,
    lease_orders,
    load_bills,
    lock_account,
    requeue_order,
    set_meter,
    transition,
    write_order_failure,
    write_order_progress,
    write_states,
)
from paygate.store.engine import Tx

__all__ = [
    "DEFAULT_PROMISE",
    "LEGAL_LIMIT",
    "Deadlines",
    "DunningPolicy",
    "OrderStatus",
    "ServicePromise",
    "Severity",
    "Step",
    "SupplyOrders",
    "severity",
]

_METER_ADDRESS = re.compile(r"[0-9]{12}")
_BROADCAST_ADDRESS = "999999999999"


class OrderStatus(StrEnum):
    """Where a supply order stands."""

    OPEN = "open"  # created, not yet accepted by a head-end
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"  # refused for good by the head-end: a person acts


ACTIVE = (OrderStatus.OPEN, OrderStatus.DISPATCHED, OrderStatus.ACKNOWLEDGED)


SETTLE_LIMIT: Final = timedelta(hours=1)
"""The longest the dispatcher waits for a poll to settle a passed deadline (see
:meth:`SupplyOrders.check_deadlines`)."""


# --- the order rows ---------------------------------------------------------------------------

ORDER_COLUMNS = (
    "o.id, o.kind, o.status, o.action, a.account_no, a.meter_address, "
    "COALESCE(o.headend, a.headend), o.created_at, o.dispatch_due_at, o.ack_due_at, o.due_at, "
    "o.legal_due_at, o.dispatched_at, o.acknowledged_at, o.completed_at, o.attempts, a.id"
)


@dataclass(slots=True)
class OrderRow:
    """A supply order as the dispatcher and the callbacks see it."""

    id: int
    kind: str
    status: OrderStatus
    action: SupplyAction
    account_no: str
    meter_address: str | None
    headend: str | None
    created_at: datetime
    deadlines: Deadlines
    dispatched_at: datetime | None
    acknowledged_at: datetime | None
    completed_at: datetime | None
    attempts: int
    account_id: int

    def command(self) -> SupplyCommand:
        """The command a head-end receives for this order."""
        return SupplyCommand(
            order_id=self.id,
            kind=self.kind,
            action=self.action,
            account_no=self.account_no,
            meter_address=self.meter_address,
            issued_at=self.created_at,
            deadline=self.deadlines.confirm,
            attempt=self.attempts + 1,
        )

    def step_done_at(self, step: Step) -> datetime | None:
        """When ``step`` was reached (a later step implies the earlier ones)."""
        if step is Step.DISPATCH:
            return self.dispatched_at or self.acknowledged_at or self.completed_at
        if step is Step.ACKNOWLEDGE:
            return self.acknowledged_at or self.completed_at
        return self.completed_at


def order_row(tx: Tx, row: tuple[Any, ...]) -> OrderRow:
    def ts(value: Any) -> datetime | None:
        return None if value is None else tx.read_ts(value)

    created = tx.read_ts(row[7])
    confirm = tx.read_ts(row[10])
    return OrderRow(
        id=int(row[0]),
        kind=str(row[1]),
        status=OrderStatus(row[2]),
        action=SupplyAction(row[3]),
        account_no=str(row[4]),
        meter_address=row[5],
        headend=row[6],
        created_at=created,
        deadlines=Deadlines(
            dispatch=ts(row[8]) or confirm,
            acknowledge=ts(row[9]) or confirm,
            confirm=confirm,
            legal=ts(row[11]) or confirm,
        ),
        dispatched_at=ts(row[12]),
        acknowledged_at=ts(row[13]),
        completed_at=ts(row[14]),
        attempts=int(row[15]),
        account_id=int(row[16]),
    )


def load_order(tx: Tx, order_id: int, *, lock: bool = False) -> OrderRow | None:
    """One order with its account's meter, locked on PostgreSQL when asked."""
    suffix = " FOR UPDATE OF o" if lock and tx.dialect == "postgresql" else ""
    row = tx.one(
        f"SELECT {ORDER_COLUMNS} FROM supply_orders o JOIN accounts a ON a.id = o.account_id "  # noqa: S608
        f"WHERE o.id = :id{suffix}",
        {"id": order_id},
    )
    return None if row is None else order_row(tx, row)


def claim_orders(
    tx: Tx, now: datetime, lease: timedelta, limit: int, *, due_by: datetime | None = None
) -> tuple[str, list[int]]:
    """Lease up to ``limit`` orders due for an attempt; return the lease token and their ids.

    ``FOR UPDATE SKIP LOCKED`` lets several dispatchers claim at once on PostgreSQL without
    waiting on each other or taking the same order; the lease keeps others off it until it
    expires (a dispatcher that died mid-delivery loses its lease, and the order is retried).
    ``due_by`` (at most ``now``) takes only orders due by then: a bounded run's backlog.
    """
    due = now if due_by is None else min(due_by, now)
    skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    ids = [
        int(r[0])
        for r in tx.all(
            "SELECT id FROM supply_orders WHERE status IN ('open', 'dispatched', 'acknowledged') "  # noqa: S608
            "AND next_attempt_at IS NOT NULL AND next_attempt_at <= :due "
            "AND (claimed_until IS NULL OR claimed_until < :now) "
            f"ORDER BY next_attempt_at, id LIMIT :n{skip}",
            {"now": tx.ts(now), "due": tx.ts(due), "n": limit},
        )
    ]
    token = secrets.token_hex(16)
    lease_orders(tx, ids, token=token, until=now + lease)
    return token, ids


def holds_claim(tx: Tx, order_id: int, token: str) -> bool:
    """Whether this dispatcher's lease on the order is still the current one."""
    current = tx.scalar("SELECT claim_token FROM supply_orders WHERE id = :id", {"id": order_id})
    return bool(current == token)


def missed_steps(
    order: OrderRow, now: datetime, *, known_by: datetime | None = None
) -> Iterator[tuple[Step, Severity]]:
    """The steps whose deadlines have passed without the step being reached (or reached late).

    A step reached is judged by when it was reached. A step not reached is missed once its
    deadline is before ``known_by`` (``now`` unless given): the time up to which paygate
    knows the head-end had not done it. Its severity is judged at ``now``."""
    known = now if known_by is None else known_by
    for step in (Step.DISPATCH, Step.ACKNOWLEDGE, Step.CONFIRM, Step.LEGAL):
        deadline = order.deadlines.of(step)
        done = order.step_done_at(Step.CONFIRM if step is Step.LEGAL else step)
        reached_late = done is not None and done > deadline
        still_missing = (
            done is None and known > deadline and order.status in (*ACTIVE, OrderStatus.FAILED)
        )
        if reached_late or still_missing:
            judged_at = done if done is not None else now
            yield step, severity(step, order.deadlines, judged_at)


class SupplyOrders:
    """Reconnection and disconnection orders: creation, progress, failure, deadlines, retry."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def after_payment(
        self,
        tx: Tx,
        acct: Account,
        payment_id: int | None,
        arrears_after: int,
        writes: Writes,
        now: datetime,
        reason: str,
    ) -> int | None:
        if not self.owes_nothing(acct, arrears_after):
            return None
        if acct.supply_state is SupplyState.DISCONNECTION_PENDING:
            transition(
                tx, acct, SupplyState.CONNECTED, "arrears cleared", "payment", None, writes, now
            )
            writes.cancel_disconnects.append((acct.id, tx.ts(now)))
            event(
                tx,
                writes,
                "disconnection.cancelled",
                acct.account_no,
                now,
                {"payment_id": payment_id},
            )
            return None
        if acct.supply_state is not SupplyState.DISCONNECTED:
            return None
        return self.reconnection_order(tx, acct, reason, payment_id, writes, now)

    def owes_nothing(self, acct: Account, arrears: int) -> bool:
        """Whether supply is due back: no arrears and, on a prepaid account, a balance of zero
        or in credit (consumption charged but not yet due still counts against prepaid)."""
        return arrears <= 0 and not (acct.prepaid and acct.balance > 0)

    def refuse_if_owes_nothing(self, acct: Account, now: datetime) -> None:
        """Refuse to cut an account that owes nothing: nothing would ever bring supply back
        (reconnection follows a payment that clears arrears). Bills must be loaded."""
        owed, _ = billing.arrears(
            acct.bills, acct.category, self._core.local_date(now), self._core.settings.late_fee
        )
        if self.owes_nothing(acct, owed):
            raise InvalidStateError(
                f"account {acct.account_no} owes nothing: there is nothing to disconnect for",
                field="account_no",
            )

    def reconnection_order(
        self,
        tx: Tx,
        acct: Account,
        reason: str,
        payment_id: int | None,
        writes: Writes,
        now: datetime,
    ) -> int:
        order_id = self.new_order(
            tx, acct, "reconnect", SupplyAction.DIRECT_CLOSE, reason, payment_id, None, writes, now
        )
        deadlines = self._core.settings.service_promise.deadlines(now)
        transition(
            tx, acct, SupplyState.RECONNECTION_PENDING, reason, "payment", order_id, writes, now
        )
        event(
            tx,
            writes,
            "reconnection.requested",
            acct.account_no,
            now,
            {
                "order_id": order_id,
                "payment_id": payment_id,
                "reason": reason,
                "due_at": deadlines.confirm.isoformat(),
            },
        )
        return order_id

    def close(
        self, tx: Tx, acct: Account, reason: str, actor: str, writes: Writes, now: datetime
    ) -> int:
        """Move the locked account's supply to ``closed`` (销户) in ``tx``, from whatever state,
        and cancel its supply orders still under way; return how many were cancelled. The
        transition is written with ``writes`` (:func:`~paygate.records.flush`) and the state
        with :func:`~paygate.records.write_states`."""
        if acct.supply_state is SupplyState.CLOSED:
            raise InvalidStateError(f"account {acct.account_no} is closed", field="account_no")
        cancelled = cancel_open_orders(tx, acct.id, at=now)
        transition(tx, acct, SupplyState.CLOSED, reason, actor, None, writes, now)
        return cancelled

    def new_order(
        self,
        tx: Tx,
        acct: Account,
        kind: str,
        action: SupplyAction,
        reason: str,
        payment_id: int | None,
        approved_by: str | None,
        writes: Writes,
        now: datetime,
    ) -> int:
        order_id = tx.ids.one()
        deadlines = self._core.settings.service_promise.deadlines(now)
        writes.orders.append(
            NewOrderRow(
                id=order_id,
                account_id=acct.id,
                kind=kind,
                status=OrderStatus.OPEN.value,
                reason=reason,
                payment_id=payment_id,
                created_at=tx.ts(now),
                due_at=tx.ts(deadlines.confirm),
                action=action.value,
                approved_by=approved_by,
                dispatch_due_at=tx.ts(deadlines.dispatch),
                ack_due_at=tx.ts(deadlines.acknowledge),
                legal_due_at=tx.ts(deadlines.legal),
                attempts=0,
                next_attempt_at=tx.ts(now),
            )
        )
        return order_id

    def disconnect(
        self,
        account_no: str,
        reason: str,
        *,
        actor: str = "operator",
        negotiated: bool = False,
    ) -> SupplyState:
        """Record an account as disconnected (the cut itself is the head-end's business)."""
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        now = self._core.clock.now()

        def work(tx: Tx) -> SupplyState:
            acct = lock_account(tx, account_no)
            if acct.protected and not negotiated:
                raise InvalidStateError(
                    f"account {account_no} is protected: disconnection needs a negotiated, "
                    "approved order",
                    field="account_no",
                )
            if acct.supply_state not in (
                SupplyState.CONNECTED,
                SupplyState.DISCONNECTION_PENDING,
            ):
                raise InvalidStateError(
                    f"account {account_no} is {acct.supply_state.value}", field="account_no"
                )
            load_bills(tx, [acct])
            self.refuse_if_owes_nothing(acct, now)
            writes = Writes()
            transition(tx, acct, SupplyState.DISCONNECTED, reason, actor, None, writes, now)
            event(tx, writes, "supply.disconnected", account_no, now, {"reason": reason})
            flush(tx, writes)
            write_states(tx, [acct])
            return acct.supply_state

        return self._core.store.run(work)

    def complete_reconnection(
        self, order_id: int, *, actor: str = "headend", at: datetime | None = None
    ) -> SupplyState:
        """Record that supply is back for a reconnection order; the account is connected."""
        kind = self._core.store.run(
            lambda tx: tx.scalar("SELECT kind FROM supply_orders WHERE id = :id", {"id": order_id}),
            write=False,
        )
        if kind is None:
            raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
        if kind != "reconnect":
            raise InvalidStateError(
                f"order {order_id} is a {kind} order, not a reconnection", field="order_id"
            )
        self.record_order_progress(order_id, HeadEndOutcome.COMPLETED, at=at, actor=actor)
        return self._core.store.run(
            lambda tx: SupplyState(
                tx.scalar(
                    "SELECT a.supply_state FROM accounts a JOIN supply_orders o "
                    "ON o.account_id = a.id WHERE o.id = :id",
                    {"id": order_id},
                )
            ),
            write=False,
        )

    def set_meter(self, account_no: str, *, headend: str | None, meter_address: str | None) -> None:
        """Name the head-end and meter address that supply orders for the account go to."""
        if meter_address is not None:
            if not isinstance(meter_address, str) or not _METER_ADDRESS.fullmatch(meter_address):
                raise InvalidInputError(
                    "a meter address is 12 decimal digits (BCD), most significant first",
                    field="meter_address",
                )
            if meter_address == _BROADCAST_ADDRESS:
                raise InvalidInputError(
                    "999999999999 is the broadcast address, not one meter", field="meter_address"
                )
        if headend is not None and (not isinstance(headend, str) or not headend.strip()):
            raise InvalidInputError("a head-end name cannot be blank", field="headend")

        def work(tx: Tx) -> None:
            lock_account(tx, account_no)
            set_meter(tx, account_no, headend=headend, meter_address=meter_address)

        self._core.store.run(work)

    def record_order_progress(
        self,
        order_id: int,
        outcome: HeadEndOutcome,
        *,
        at: datetime | None = None,
        actor: str = "headend",
        reference: str | None = None,
        claim_token: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> OrderStatus:
        """Record how far an order got (a head-end's answer or callback, an operator's word)."""
        now = self._core.clock.now()
        when = require_aware(at, "at") if at is not None else now
        if next_attempt_at is not None:
            require_aware(next_attempt_at, "next_attempt_at")

        def work(tx: Tx) -> OrderStatus:
            acct, order = _lock_order(tx, order_id)
            if claim_token is not None and not holds_claim(tx, order_id, claim_token):
                return order.status  # another dispatcher took over after our lease ran out
            if order.status in (OrderStatus.COMPLETED, OrderStatus.CANCELLED):
                return order.status
            previous = order.status
            target = outcome_status(outcome)
            rank = list(OrderStatus).index
            status = target if rank(target) > rank(order.status) else order.status
            if order.status is OrderStatus.FAILED:
                status = target
            order.dispatched_at = order.dispatched_at or when
            if target in (OrderStatus.ACKNOWLEDGED, OrderStatus.COMPLETED):
                order.acknowledged_at = order.acknowledged_at or when
            if target is OrderStatus.COMPLETED:
                order.completed_at = when
            order.status = status
            write_order_progress(
                tx,
                order_id,
                status=status.value,
                dispatched_at=order.dispatched_at,
                acknowledged_at=order.acknowledged_at,
                completed_at=order.completed_at,
                next_attempt_at=None if status is OrderStatus.COMPLETED else next_attempt_at,
            )
            writes = Writes()
            if status is previous:
                flush(tx, writes)
                return status  # a poll that found nothing new: only the next poll time moved
            elapsed = (when - order.created_at).total_seconds()
            event(
                tx,
                writes,
                f"{order.kind}ion.{status.value}"
                if order.kind == "reconnect"
                else f"disconnection.{status.value}",
                acct.account_no,
                now,
                {
                    "order_id": order_id,
                    "actor": actor,
                    "reference": reference,
                    "at": when.isoformat(),
                    "elapsed_seconds": elapsed,
                    "on_time": when <= order.deadlines.confirm,
                },
            )
            if status is OrderStatus.COMPLETED:
                self._order_completed(tx, acct, order, actor, writes, when, now)
            _withdraw_disproved(tx, order, writes, now)
            _record_breaches(tx, order, when, writes, now)
            flush(tx, writes)
            write_states(tx, [acct])
            return status

        return self._core.store.run(work)

    def _order_completed(
        self,
        tx: Tx,
        acct: Account,
        order: OrderRow,
        actor: str,
        writes: Writes,
        when: datetime,
        now: datetime,
    ) -> None:
        """The account's supply state once ``order`` completed at ``when`` (recorded ``now``)."""
        if order.kind == "reconnect":
            if acct.supply_state is SupplyState.RECONNECTION_PENDING:
                transition(
                    tx,
                    acct,
                    SupplyState.CONNECTED,
                    "supply restored",
                    actor,
                    order.id,
                    writes,
                    when,
                )
            return
        if acct.supply_state is SupplyState.RECONNECTION_PENDING:
            # Paid after the cut was recorded by hand: the reconnection order under way brings
            # supply back, and a second one would break "exactly one".
            return
        transition(tx, acct, SupplyState.DISCONNECTED, "supply cut", actor, order.id, writes, when)
        # The customer may have paid while the cut was on its way: supply goes straight back.
        load_bills(tx, [acct])
        owed, _ = billing.arrears(
            acct.bills, acct.category, self._core.local_date(when), self._core.settings.late_fee
        )
        if self.owes_nothing(acct, owed):
            # The promise's clock starts when paygate learns a reconnection is owed: now, as
            # the cut is recorded, not when the meter cut (an order dated then could miss its
            # dispatch step before any dispatcher saw it).
            self.reconnection_order(tx, acct, "arrears cleared before the cut", None, writes, now)

    def check_deadlines(
        self, now: datetime | None = None, *, poll_interval: timedelta | None = None
    ) -> list[tuple[int, Step, Severity]]:
        """Record a breach for every step of an open order whose deadline has passed.

        With ``poll_interval`` (the dispatcher's), a step is judged by what the head-end last
        said: an order whose head-end is still asked about it (under way, a poll scheduled)
        is passed over while its poll is due, and its step counts as missed only once a poll
        made after the deadline (the one that scheduled the next, ``poll_interval`` before
        it) found the step unfinished, or the deadline is :data:`SETTLE_LIMIT` past. A meter
        that finished just before its deadline, between two polls, is then never taken for a
        missed step. An order a head-end has
        taken is not judged while that head-end cannot be reached (the meter may be done; its
        next answer says when), an order not yet sent is judged by the clock, and so are
        orders nobody polls (a failed one, a head-end that reports by callback)."""
        at = self._core.clock.now() if now is None else require_aware(now, "now")
        if poll_interval is not None and poll_interval < timedelta(0):
            raise InvalidInputError("poll_interval cannot be negative", field="poll_interval")

        def work(tx: Tx) -> list[tuple[int, Step, Severity]]:
            rows = tx.all(
                f"SELECT {ORDER_COLUMNS}, o.next_attempt_at, o.last_error "  # noqa: S608
                "FROM supply_orders o "
                "JOIN accounts a ON a.id = o.account_id WHERE o.status IN "
                "('open', 'dispatched', 'acknowledged', 'failed') AND o.dispatch_due_at < :now "
                "ORDER BY o.id",
                {"now": tx.ts(at)},
            )
            writes = Writes()
            found: list[tuple[int, Step, Severity]] = []
            for row in rows:
                order, next_at, last_error = order_row(tx, row[:-2]), row[-2], row[-1]
                known_by = at
                if poll_interval is not None and order.status in ACTIVE and next_at is not None:
                    next_attempt = tx.read_ts(next_at)
                    if next_attempt <= at:
                        continue  # the head-end is to be asked first
                    if order.status is not OrderStatus.OPEN:
                        if last_error is not None:
                            continue  # taken by a head-end that has not answered since
                        # Scheduled by the last poll: the head-end was asked a poll interval
                        # before the next one, and had not done the step.
                        # With a long poll interval callbacks carry the news: an hour at most.
                        known_by = min(at, max(next_attempt - poll_interval, at - SETTLE_LIMIT))
                found += _record_breaches(tx, order, at, writes, at, known_by)
            flush(tx, writes)
            return found

        return self._core.store.run(work)

    def record_order_failure(
        self,
        order_id: int,
        error: str,
        *,
        claim_token: str | None,
        retry_at: datetime | None,
        alert_after: int = 10,
    ) -> None:
        """Record a failed delivery: retried at ``retry_at``, or, with None, refused for good."""
        if retry_at is not None:
            require_aware(retry_at, "retry_at")
        now = self._core.clock.now()

        def work(tx: Tx) -> None:
            order = load_order(tx, order_id, lock=True)
            if order is None:
                raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
            if claim_token is not None and not holds_claim(tx, order_id, claim_token):
                return
            if order.status not in ACTIVE:
                return
            attempts = order.attempts + 1
            status = order.status if retry_at is not None else OrderStatus.FAILED
            write_order_failure(
                tx,
                order_id,
                attempts=attempts,
                error=error,
                status=status.value,
                next_attempt_at=retry_at,
            )
            writes = Writes()
            if retry_at is None or attempts == alert_after:
                event(
                    tx,
                    writes,
                    "order.alert",
                    order.account_no,
                    now,
                    {
                        "order_id": order_id,
                        "kind": order.kind,
                        "attempts": attempts,
                        "error": error[:500],
                        "final": retry_at is None,
                    },
                )
            flush(tx, writes)

        self._core.store.run(work)

    def retry_order(self, order_id: int) -> None:
        """Put a failed order back in the queue, to be attempted at once."""

        def work(tx: Tx) -> None:
            acct, order = _lock_order(tx, order_id)
            if order.status is not OrderStatus.FAILED:
                raise InvalidStateError(f"order {order_id} is {order.status.value}")
            if order.kind == "disconnect":
                load_bills(tx, [acct])
                self.refuse_if_owes_nothing(acct, self._core.clock.now())
            back = OrderStatus.DISPATCHED if order.dispatched_at else OrderStatus.OPEN
            requeue_order(tx, order_id, status=back.value, at=self._core.clock.now())

        self._core.store.run(work)


def _lock_order(tx: Tx, order_id: int) -> tuple[Account, OrderRow]:
    """Lock an order and its account: the account first, then the order, the lock order every
    order update uses (no deadlock with a payment, which locks the account)."""
    found = load_order(tx, order_id)
    if found is None:
        raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
    acct = lock_account(tx, found.account_no)
    order = load_order(tx, order_id, lock=True)
    assert order is not None
    return acct, order


def outcome_status(outcome: HeadEndOutcome) -> OrderStatus:
    """The order status a head-end outcome moves to."""
    return {
        HeadEndOutcome.DISPATCHED: OrderStatus.DISPATCHED,
        HeadEndOutcome.ACKNOWLEDGED: OrderStatus.ACKNOWLEDGED,
        HeadEndOutcome.COMPLETED: OrderStatus.COMPLETED,
    }[outcome]


def status_outcome(status: OrderStatus) -> HeadEndOutcome:
    """The head-end outcome an order in ``status`` has already reached."""
    if status is OrderStatus.ACKNOWLEDGED:
        return HeadEndOutcome.ACKNOWLEDGED
    if status is OrderStatus.COMPLETED:
        return HeadEndOutcome.COMPLETED
    return HeadEndOutcome.DISPATCHED


@dataclass(frozen=True, slots=True)
class OrderListing:
    """A supply order as operators list it: where it stands, and how far it got when."""

    id: int
    kind: str
    status: OrderStatus
    account_no: str
    created_at: datetime
    due_at: datetime
    dispatched_at: datetime | None
    acknowledged_at: datetime | None
    completed_at: datetime | None
    attempts: int
    last_error: str | None


def list_orders(
    tx: Tx,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    after: int = 0,
) -> list[OrderListing]:
    """Supply orders oldest first, only those in ``status`` and of ``kind`` when given; at most
    ``limit`` of them, from the order after id ``after`` on (a page).

    ``status`` is matched as given, so that an operator's word that names no status lists
    nothing rather than failing.
    """

    def ts(value: Any) -> datetime | None:
        return None if value is None else tx.read_ts(value)

    # Fixed fragments only; the values are bound. (":status IS NULL" would leave PostgreSQL
    # unable to tell the parameter's type.)
    where = [
        *(["o.id > :after"] if after else []),
        *(["o.status = :status"] if status is not None else []),
        *(["o.kind = :kind"] if kind is not None else []),
    ]
    rows = tx.all(
        "SELECT o.id, o.kind, o.status, a.account_no, o.created_at, o.due_at, o.dispatched_at, "  # noqa: S608
        "o.acknowledged_at, o.completed_at, o.attempts, o.last_error "
        "FROM supply_orders o JOIN accounts a ON a.id = o.account_id "
        f"{'WHERE ' + ' AND '.join(where) + ' ' if where else ''}ORDER BY o.id"
        + (" LIMIT :n" if limit is not None else ""),
        {"status": status, "kind": kind, "after": after, "n": limit},
    )
    return [
        OrderListing(
            id=int(row[0]),
            kind=str(row[1]),
            status=OrderStatus(row[2]),
            account_no=str(row[3]),
            created_at=tx.read_ts(row[4]),
            due_at=tx.read_ts(row[5]),
            dispatched_at=ts(row[6]),
            acknowledged_at=ts(row[7]),
            completed_at=ts(row[8]),
            attempts=int(row[9]),
            last_error=None if row[10] is None else str(row[10]),
        )
        for row in rows
    ]


def _record_breaches(
    tx: Tx,
    order: OrderRow,
    at: datetime,
    writes: Writes,
    now: datetime,
    known_by: datetime | None = None,
) -> list[tuple[int, Step, Severity]]:
    missed = list(missed_steps(order, at, known_by=known_by))
    if not missed:
        return []
    known = {
        str(r[0]) for r in tx.all("SELECT step FROM breaches WHERE order_id = :o", {"o": order.id})
    }
    new = [(step, sev) for step, sev in missed if step.value not in known]
    for step, sev in new:
        tx.execute(
            "INSERT INTO breaches (id, order_id, step, severity, deadline, detected_at) "
            "VALUES (:id, :o, :step, :sev, :deadline, :at) ON CONFLICT (order_id, step) "
            "DO NOTHING",
            {
                "id": tx.ids.one(),
                "o": order.id,
                "step": step.value,
                "sev": sev.value,
                "deadline": tx.ts(order.deadlines.of(step)),
                "at": tx.ts(now),
            },
        )
        event(
            tx,
            writes,
            "service.breach",
            order.account_no,
            now,
            {
                "order_id": order.id,
                "kind": order.kind,
                "step": step.value,
                "severity": sev.value,
                "deadline": order.deadlines.of(step).isoformat(),
            },
        )
    return [(order.id, step, sev) for step, sev in new]


def _withdraw_disproved(tx: Tx, order: OrderRow, writes: Writes, now: datetime) -> None:
    """Withdraw the recorded breaches of steps now known done by their deadlines.

    The clock records a breach when paygate last knew a step undone past its deadline (a
    head-end that reports by callback, or answered an hour late); the step's completion
    time the head-end reports afterwards is the fact, and a step done in time is no
    breach. The row stays, marked withdrawn, and ``service.breach_withdrawn`` says so."""
    recorded = tx.all(
        "SELECT step, severity FROM breaches WHERE order_id = :o AND withdrawn_at IS NULL",
        {"o": order.id},
    )
    for step_value, severity_value in recorded:
        step = Step(str(step_value))
        done = order.step_done_at(Step.CONFIRM if step is Step.LEGAL else step)
        deadline = order.deadlines.of(step)
        if done is None or done > deadline:
            continue
        reason = f"{step.value} done at {done.isoformat()}, by its deadline"
        tx.execute(
            "UPDATE breaches SET withdrawn_at = :now, withdrawn_reason = :reason "
            "WHERE order_id = :o AND step = :step AND withdrawn_at IS NULL",
            {"now": tx.ts(now), "reason": reason, "o": order.id, "step": step.value},
        )
        event(
            tx,
            writes,
            "service.breach_withdrawn",
            order.account_no,
            now,
            {
                "order_id": order.id,
                "kind": order.kind,
                "step": step.value,
                "severity": str(severity_value),
                "deadline": deadline.isoformat(),
                "done_at": done.isoformat(),
            },
        )


def breach_counts(tx: Tx) -> dict[Severity, int]:
    """Every recorded breach of the service promise, counted by severity."""
    return {
        Severity(severity): int(count)
        for severity, count in tx.all(
            "SELECT severity, COUNT(*) FROM breaches WHERE withdrawn_at IS NULL "
            "GROUP BY severity ORDER BY severity"
        )
    }
