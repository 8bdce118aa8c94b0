"""The service report's figures: the report value, and computing it from the orders of a
period.

Invariant: every figure is computed from what the orders themselves record, for exactly the
orders created in the period, read in one transaction and judged as of one instant; counts,
durations and nearest-rank percentiles are exact, and nothing is sampled.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.store.engine import Tx
from paygate.supply import OrderStatus, Severity

# Channel names are printable ASCII without spaces (``paygate.models.Identifier``), so neither
# label can ever be mistaken for a real channel.
NO_CHANNEL = "—"
"""The label of disconnection orders and of reconnection orders no payment created."""
ALL_CHANNELS = "all channels"
"""The label of the totals over every channel."""

PAGE = 5000
"""Orders read per query: bounds memory whatever the size of the period."""

# Orders that still count against the promise: a ``failed`` order waits for a person and is
# still owed to the customer (DESIGN.md 5); a cancelled one is owed to no one.
_OPEN = frozenset(
    {OrderStatus.OPEN, OrderStatus.DISPATCHED, OrderStatus.ACKNOWLEDGED, OrderStatus.FAILED}
)
_MICROSECOND = timedelta(microseconds=1)


class ReportStep(StrEnum):
    """A step of an order as the service report measures it."""

    DISPATCH = "dispatch"  # created → dispatched
    ACKNOWLEDGE = "acknowledge"  # dispatched → acknowledged
    CONFIRM = "confirm"  # acknowledged → supply confirmed
    END_TO_END = "end_to_end"  # created → supply confirmed


STEPS = tuple(ReportStep)
STEP_TITLES = {
    ReportStep.DISPATCH: "created → dispatched",
    ReportStep.ACKNOWLEDGE: "dispatched → acknowledged",
    ReportStep.CONFIRM: "acknowledged → confirmed",
    ReportStep.END_TO_END: "created → confirmed (end to end)",
}
SEVERITIES = (Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)


# --- the report value -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepStats:
    """One step of one channel's orders: how many reached it, how fast, how many on time."""

    step: ReportStep
    reached: int
    """Orders that reached the step (its end time is recorded)."""
    on_time: int
    """Orders that reached the step by its deadline."""
    open_late: int
    """Orders still open that have not reached the step and whose deadline has passed."""
    median: timedelta | None
    """Nearest-rank 50th percentile of the step's durations; None when none reached it."""
    p95: timedelta | None
    """Nearest-rank 95th percentile of the step's durations."""
    worst: timedelta | None
    """The longest duration."""

    @property
    def late(self) -> int:
        """Orders that reached the step after its deadline."""
        return self.reached - self.on_time

    @property
    def judged(self) -> int:
        """Orders the on-time rate is taken over: reached, or open past the deadline."""
        return self.reached + self.open_late

    @property
    def on_time_rate(self) -> float | None:
        """``on_time / judged``; None when no order can be judged yet."""
        return self.on_time / self.judged if self.judged else None


@dataclass(frozen=True, slots=True)
class BreachCounts:
    """Recorded breaches (missed step deadlines) by severity."""

    minor: int = 0
    major: int = 0
    critical: int = 0

    @property
    def total(self) -> int:
        """Every breach, whatever its severity."""
        return self.minor + self.major + self.critical

    def of(self, severity: Severity) -> int:
        """The count of ``severity``."""
        return {
            Severity.MINOR: self.minor,
            Severity.MAJOR: self.major,
            Severity.CRITICAL: self.critical,
        }[severity]


@dataclass(frozen=True, slots=True)
class ChannelReport:
    """The orders of one channel (or of every channel): counts, steps and breaches."""

    channel: str
    orders: int
    """Orders created in the period."""
    completed: int
    open_orders: int
    """Orders still open (``failed`` ones included: they are still owed)."""
    cancelled: int
    steps: tuple[StepStats, ...]
    """One entry per :class:`ReportStep`, in that order."""
    breaches: BreachCounts

    def step(self, step: ReportStep) -> StepStats:
        """The figures of ``step``."""
        return self.steps[STEPS.index(step)]


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """The service report of one period: per channel, per step, and over every channel."""

    start: date
    end: date
    timezone: str
    as_of: datetime
    """The instant open orders were judged late or not."""
    budgets: tuple[tuple[ReportStep, timedelta], ...]
    """The time each step is allowed under the current promise, for reading the durations."""
    channels: tuple[ChannelReport, ...]
    """Channels by name, :data:`NO_CHANNEL` last."""
    overall: ChannelReport
    """Every order of the period, whatever its channel (labelled :data:`ALL_CHANNELS`)."""

    def budget(self, step: ReportStep) -> timedelta:
        """The time ``step`` is allowed under the current promise."""
        return dict(self.budgets)[step]

    def channel(self, name: str) -> ChannelReport:
        """The figures of channel ``name``: zero orders when it had none in the period.

        A channel that sold nothing is an answer, not an error: a period (or a database) with
        no order of ``name`` gives its figures as zeros, the on-time rates ``None``.
        """
        for found in self.channels:
            if found.channel == name:
                return found
        return _Tally().report(name, BreachCounts())

    @property
    def headline(self) -> StepStats:
        """End to end over every channel: the promise kept, or not."""
        return self.overall.step(ReportStep.END_TO_END)


# --- computing it -----------------------------------------------------------------------------


def nearest_rank(percent: int, count: int) -> int:
    """The 1-based rank of the ``percent``-th percentile among ``count`` sorted values.

    Nearest rank: the smallest rank ``r`` with ``r / count >= percent / 100``, that is
    ``ceil(percent * count / 100)`` (at least 1), in integers so that no rounding can move it.
    """
    if count < 1 or not 0 < percent <= 100:
        raise ValueError("a percentile needs 0 < percent <= 100 and at least one value")
    return max(1, -(-percent * count // 100))


def service_report(gateway: Gateway, *, start: date, end: date) -> ServiceReport:
    """The service report of the orders created from ``start`` to ``end`` (inclusive).

    Dates are in the utility's zone (``gateway.settings.timezone``); open orders are judged
    at ``gateway.clock.now()``.
    """
    if end < start:
        raise InvalidInputError(f"the period ends ({end}) before it starts ({start})", field="end")
    zone = ZoneInfo(gateway.settings.timezone)
    low = datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC)
    high = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    as_of = gateway.clock.now()

    def work(tx: Tx) -> tuple[dict[str, _Tally], dict[str, BreachCounts]]:
        if tx.dialect == "postgresql":
            # One snapshot for every page and the breach count, so the figures agree.
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tallies: dict[str, _Tally] = {}
        for row in _order_rows(tx, low, high):
            channel = NO_CHANNEL if row[2] is None else str(row[2])
            tally = tallies.get(channel)
            if tally is None:
                tally = tallies[channel] = _Tally()
            tally.add(row, as_of)
        return tallies, _breach_counts(tx, low, high)

    tallies, breaches = gateway.store.run(work, write=False)
    names = sorted(tallies, key=lambda name: (name == NO_CHANNEL, name))
    channels = tuple(
        tallies[name].report(name, breaches.get(name, BreachCounts())) for name in names
    )
    promise = gateway.settings.service_promise
    budgets = (
        (ReportStep.DISPATCH, promise.promise - promise.confirm_budget - promise.ack_budget),
        (ReportStep.ACKNOWLEDGE, promise.ack_budget),
        (ReportStep.CONFIRM, promise.confirm_budget),
        (ReportStep.END_TO_END, promise.promise),
    )
    return ServiceReport(
        start=start,
        end=end,
        timezone=gateway.settings.timezone,
        as_of=as_of,
        budgets=budgets,
        channels=channels,
        overall=_overall([tallies[name] for name in names], channels, breaches),
    )


_ORDER_PAGE = (
    "SELECT o.id, o.status, CASE WHEN o.kind = 'reconnect' THEN p.channel END, o.created_at, "
    "o.dispatch_due_at, o.ack_due_at, o.due_at, o.dispatched_at, o.acknowledged_at, "
    "o.completed_at FROM supply_orders o LEFT JOIN payments p ON p.id = o.payment_id "
    "WHERE o.created_at >= :low AND o.created_at < :high AND o.id > :after "
    "ORDER BY o.id LIMIT :n"
)

_BREACHES = (
    "SELECT CASE WHEN o.kind = 'reconnect' THEN p.channel END, b.severity, COUNT(*) "
    "FROM breaches b JOIN supply_orders o ON o.id = b.order_id "
    "LEFT JOIN payments p ON p.id = o.payment_id "
    "WHERE o.created_at >= :low AND o.created_at < :high AND b.withdrawn_at IS NULL "
    "GROUP BY 1, 2"
)


def _order_rows(tx: Tx, low: datetime, high: datetime) -> Iterator[tuple[Any, ...]]:
    # Keyset pages rather than one cursor: psycopg's ordinary cursor holds the whole result
    # client-side. Each page resumes the primary-key order where the last one stopped, so the
    # pages together walk the table once (there is no index on created_at to narrow it).
    after = -1
    params = {"low": tx.ts(low), "high": tx.ts(high), "n": PAGE}
    while True:
        rows = tx.all(_ORDER_PAGE, {**params, "after": after})
        yield from rows
        if len(rows) < PAGE:
            return
        after = int(rows[-1][0])


def _breach_counts(tx: Tx, low: datetime, high: datetime) -> dict[str, BreachCounts]:
    found: dict[str, dict[Severity, int]] = {}
    for channel, severity, count in tx.all(_BREACHES, {"low": tx.ts(low), "high": tx.ts(high)}):
        label = NO_CHANNEL if channel is None else str(channel)
        found.setdefault(label, {})[Severity(severity)] = int(count)
    return {
        label: BreachCounts(
            minor=counts.get(Severity.MINOR, 0),
            major=counts.get(Severity.MAJOR, 0),
            critical=counts.get(Severity.CRITICAL, 0),
        )
        for label, counts in found.items()
    }


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        # SQLite's stored form (``SQLITE_TIMESTAMP_FORMAT``) is ISO 8601 in UTC; fromisoformat
        # reads it several times faster than strptime, which counts over a month of orders.
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return Tx.read_ts(value)


class _Tally:
    """What one channel's orders add up to while the pages stream by."""

    __slots__ = ("cancelled", "completed", "durations", "on_time", "open_late", "orders", "still")

    def __init__(self) -> None:
        self.orders = 0
        self.completed = 0
        self.still = 0
        self.cancelled = 0
        # Microseconds as 8-byte integers: exact, and a quarter of the memory of a list of floats.
        self.durations = {step: array("q") for step in STEPS}
        self.on_time = dict.fromkeys(STEPS, 0)
        self.open_late = dict.fromkeys(STEPS, 0)

    def add(self, row: tuple[Any, ...], as_of: datetime) -> None:
        status = OrderStatus(row[1])
        created = _instant(row[3])
        confirm_due = _instant(row[6])
        # Both columns are NOT NULL.
        assert created is not None
        assert confirm_due is not None
        # Orders from before step deadlines were stored are held to the promise at every step,
        # as the dispatcher holds them (``paygate.supply.order_row``).
        dispatch_due = _instant(row[4]) or confirm_due
        ack_due = _instant(row[5]) or confirm_due
        completed = _instant(row[9])
        acknowledged = _instant(row[8]) or completed
        dispatched = _instant(row[7]) or acknowledged
        self.orders += 1
        is_open = status in _OPEN
        self.still += is_open
        self.completed += status is OrderStatus.COMPLETED
        self.cancelled += status is OrderStatus.CANCELLED
        legs = (
            (ReportStep.DISPATCH, created, dispatched, dispatch_due),
            (ReportStep.ACKNOWLEDGE, dispatched, acknowledged, ack_due),
            (ReportStep.CONFIRM, acknowledged, completed, confirm_due),
            (ReportStep.END_TO_END, created, completed, confirm_due),
        )
        for step, begin, finish, deadline in legs:
            if finish is not None and begin is not None:
                self.durations[step].append((finish - begin) // _MICROSECOND)
                self.on_time[step] += finish <= deadline
            elif is_open and as_of > deadline:
                self.open_late[step] += 1

    def sort(self) -> None:
        for step in STEPS:
            self.durations[step] = array("q", sorted(self.durations[step]))

    def report(self, channel: str, breaches: BreachCounts) -> ChannelReport:
        self.sort()
        steps = tuple(
            _stats(
                step,
                self.durations[step],
                len(self.durations[step]),
                self.on_time[step],
                self.open_late[step],
            )
            for step in STEPS
        )
        return ChannelReport(
            channel=channel,
            orders=self.orders,
            completed=self.completed,
            open_orders=self.still,
            cancelled=self.cancelled,
            steps=steps,
            breaches=breaches,
        )


def _stats(
    step: ReportStep, ordered: Iterable[int], count: int, on_time: int, open_late: int
) -> StepStats:
    """The figures of a step from its durations in ascending order, read once."""
    if count == 0:
        return StepStats(step, 0, on_time, open_late, None, None, None)
    wanted = {nearest_rank(50, count), nearest_rank(95, count), count}
    picked: dict[int, int] = {}
    for rank, value in enumerate(ordered, start=1):
        if rank in wanted:
            picked[rank] = value
            if rank == count:
                break
    median, p95, worst = (
        timedelta(microseconds=picked[rank])
        for rank in (nearest_rank(50, count), nearest_rank(95, count), count)
    )
    return StepStats(step, count, on_time, open_late, median, p95, worst)


def _overall(
    tallies: list[_Tally], channels: tuple[ChannelReport, ...], breaches: dict[str, BreachCounts]
) -> ChannelReport:
    # The channels' durations are already sorted: merging them yields every order's duration
    # in order without a second copy of them all.
    steps = tuple(
        _stats(
            step,
            heapq.merge(*(t.durations[step] for t in tallies)),
            sum(len(t.durations[step]) for t in tallies),
            sum(t.on_time[step] for t in tallies),
            sum(t.open_late[step] for t in tallies),
        )
        for step in STEPS
    )
    counted = breaches.values()
    return ChannelReport(
        channel=ALL_CHANNELS,
        orders=sum(c.orders for c in channels),
        completed=sum(c.completed for c in channels),
        open_orders=sum(c.open_orders for c in channels),
        cancelled=sum(c.cancelled for c in channels),
        steps=steps,
        breaches=BreachCounts(
            minor=sum(b.minor for b in counted),
            major=sum(b.major for b in counted),
            critical=sum(b.critical for b in counted),
        ),
    )
