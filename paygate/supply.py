"""Supply: reconnection and disconnection orders, service-promise clocks, breaches.

Invariant (DESIGN.md 5): when a disconnected account's arrears reach zero, exactly one
reconnection order is created in that same transaction, with deadlines from the service promise;
it is dispatched at least once, retried with capped backoff while the head-end is unreachable,
and its completion — or the breach of each missed deadline — is recorded. An order is never
given up: a head-end that refuses it for good leaves it ``failed`` with an alert event, still
counted against the promise until a person resolves it.

The promise (服务承诺时限) is split backwards into step deadlines: supply confirmed by
``created + promise``; acknowledged by the head-end ``confirm_budget`` earlier; dispatched
``ack_budget`` before that. A step that misses its deadline while the promise still holds is a
*minor* breach; a missed promise is *major*; a missed legal limit (3 days by default) is
*critical*.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from paygate.clock import require_aware
from paygate.headend.base import HeadEndOutcome, SupplyAction, SupplyCommand
from paygate.store.engine import Tx

__all__ = [
    "Deadlines",
    "DunningPolicy",
    "OrderStatus",
    "ServicePromise",
    "Severity",
    "Step",
]


DEFAULT_PROMISE = timedelta(hours=24)
LEGAL_LIMIT = timedelta(days=3)


class OrderStatus(StrEnum):
    """Where a supply order stands."""

    OPEN = "open"  # created, not yet accepted by a head-end
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"  # refused for good by the head-end: a person acts


ACTIVE = (OrderStatus.OPEN, OrderStatus.DISPATCHED, OrderStatus.ACKNOWLEDGED)


class Step(StrEnum):
    """The steps of an order, each with its own deadline."""

    DISPATCH = "dispatch"
    ACKNOWLEDGE = "acknowledge"
    CONFIRM = "confirm"
    LEGAL = "legal"


class Severity(StrEnum):
    """How bad a missed deadline is."""

    MINOR = "minor"  # a step late, the promise still held
    MAJOR = "major"  # the promise missed
    CRITICAL = "critical"  # the legal limit missed


class ServicePromise(BaseModel):
    """The reconnection promise and its step budgets, counted backwards from it.

    Only ``promise`` need be given: a budget left out is the same share of the promise as in
    the default 24 h promise (confirm 20/24, acknowledge 3.75/24), and the legal limit left out
    is 3 days or the promise if longer. ``ServicePromise(promise=timedelta(hours=48))``,
    ``Settings(service_promise=timedelta(hours=48))`` and ``PAYGATE_RECONNECTION_PROMISE=48``
    are the same promise.
    """

    model_config = ConfigDict(frozen=True)

    promise: timedelta = DEFAULT_PROMISE
    legal_limit: timedelta = LEGAL_LIMIT
    confirm_budget: timedelta = DEFAULT_PROMISE * 5 / 6
    ack_budget: timedelta = DEFAULT_PROMISE * 5 / 32

    @model_validator(mode="before")
    @classmethod
    def _scaled(cls, data: Any) -> Any:
        if isinstance(data, timedelta):
            data = {"promise": data}
        if not isinstance(data, dict) or "promise" not in data:
            return data
        promise = data["promise"]
        if not isinstance(promise, timedelta):
            return data  # the field's own validation names the problem
        scaled = dict(data)
        scaled.setdefault("confirm_budget", promise * 5 / 6)
        scaled.setdefault("ack_budget", promise * 5 / 32)
        scaled.setdefault("legal_limit", max(LEGAL_LIMIT, promise))
        return scaled

    @model_validator(mode="after")
    def _fits(self) -> ServicePromise:
        if self.promise <= timedelta(0) or self.legal_limit < self.promise:
            raise ValueError("the legal limit must be at least the promise, both positive")
        if self.confirm_budget < timedelta(0) or self.ack_budget < timedelta(0):
            raise ValueError("step budgets cannot be negative")
        if self.confirm_budget + self.ack_budget >= self.promise:
            raise ValueError("the step budgets leave no time to dispatch within the promise")
        return self

    def deadlines(self, created_at: datetime) -> Deadlines:
        """Each step's deadline for an order created at ``created_at`` (aware)."""
        confirm = require_aware(created_at, "created_at") + self.promise
        acknowledge = confirm - self.confirm_budget
        return Deadlines(
            dispatch=acknowledge - self.ack_budget,
            acknowledge=acknowledge,
            confirm=confirm,
            legal=created_at + self.legal_limit,
        )


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The deadline of each step of one order."""

    dispatch: datetime
    acknowledge: datetime
    confirm: datetime
    legal: datetime

    def of(self, step: Step) -> datetime:
        """The deadline of ``step``."""
        return {
            Step.DISPATCH: self.dispatch,
            Step.ACKNOWLEDGE: self.acknowledge,
            Step.CONFIRM: self.confirm,
            Step.LEGAL: self.legal,
        }[step]


class DunningPolicy(BaseModel):
    """Who may be disconnected, and after which notices; per category where it differs."""

    model_config = ConfigDict(frozen=True)

    overdue_days: int = 30
    notice_days: int = 7
    final_reminder: bool = True
    final_reminder_days: int = 1
    overdue_days_by_category: dict[str, int] = {}

    def overdue_threshold(self, category: str) -> int:
        """Days past due before an account of ``category`` may be disconnected."""
        return self.overdue_days_by_category.get(category, self.overdue_days)


def severity(step: Step, deadlines: Deadlines, at: datetime) -> Severity:
    """How bad it is that ``step`` was not done by its deadline, judged at ``at``."""
    if step is Step.LEGAL or at > deadlines.legal:
        return Severity.CRITICAL
    if step is Step.CONFIRM or at > deadlines.confirm:
        return Severity.MAJOR
    return Severity.MINOR


def backoff(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Capped exponential backoff with full jitter for the ``attempt``-th retry (1-based)."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 30)))
    return timedelta(seconds=secrets.SystemRandom().uniform(0.5, 1.0) * ceiling.total_seconds())


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
    tx.many(
        "UPDATE supply_orders SET claimed_until = :until, claim_token = :token WHERE id = :id",
        [{"until": tx.ts(now + lease), "token": token, "id": i} for i in ids],
    )
    return token, ids


def holds_claim(tx: Tx, order_id: int, token: str) -> bool:
    """Whether this dispatcher's lease on the order is still the current one."""
    current = tx.scalar("SELECT claim_token FROM supply_orders WHERE id = :id", {"id": order_id})
    return bool(current == token)


def missed_steps(order: OrderRow, now: datetime) -> Iterator[tuple[Step, Severity]]:
    """The steps whose deadlines have passed without the step being reached (or reached late)."""
    for step in (Step.DISPATCH, Step.ACKNOWLEDGE, Step.CONFIRM, Step.LEGAL):
        deadline = order.deadlines.of(step)
        done = order.step_done_at(Step.CONFIRM if step is Step.LEGAL else step)
        reached_late = done is not None and done > deadline
        still_missing = (
            done is None and now > deadline and order.status in (*ACTIVE, OrderStatus.FAILED)
        )
        if reached_late or still_missing:
            judged_at = done if done is not None else now
            yield step, severity(step, order.deadlines, judged_at)


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
    tx: Tx, *, status: str | None = None, kind: str | None = None
) -> list[OrderListing]:
    """Supply orders oldest first, only those in ``status`` and of ``kind`` when given.

    ``status`` is matched as given, so that an operator's word that names no status lists
    nothing rather than failing.
    """

    def ts(value: Any) -> datetime | None:
        return None if value is None else tx.read_ts(value)

    # Fixed fragments only; the values are bound. (":status IS NULL" would leave PostgreSQL
    # unable to tell the parameter's type.)
    where = [
        *(["o.status = :status"] if status is not None else []),
        *(["o.kind = :kind"] if kind is not None else []),
    ]
    rows = tx.all(
        "SELECT o.id, o.kind, o.status, a.account_no, o.created_at, o.due_at, o.dispatched_at, "  # noqa: S608
        "o.acknowledged_at, o.completed_at, o.attempts, o.last_error "
        "FROM supply_orders o JOIN accounts a ON a.id = o.account_id "
        f"{'WHERE ' + ' AND '.join(where) + ' ' if where else ''}ORDER BY o.id",
        {"status": status, "kind": kind},
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


def breach_counts(tx: Tx) -> dict[Severity, int]:
    """Every recorded breach of the service promise, counted by severity."""
    return {
        Severity(severity): int(count)
        for severity, count in tx.all(
            "SELECT severity, COUNT(*) FROM breaches GROUP BY severity ORDER BY severity"
        )
    }
