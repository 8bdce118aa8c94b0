"""The service report: how fast supply orders moved through each step, against the promise.

Invariant: every figure is computed from what the orders themselves record — their step times,
and the deadlines stored on each order when it was created (so a later change of the promise
never rewrites history) — for exactly the orders created in the period (dates in the utility's
zone, both ends inclusive), read in one transaction and judged as of one instant. Counts,
durations and percentiles are exact: durations are kept to the microsecond, percentiles are
nearest-rank (always a duration some order actually took), and nothing is sampled.

The orders of a period are read a page at a time, ordered by id; what stays in memory is one
8-byte duration per order per step, never the rows. Breaches are counted by the database.

Steps, each judged against its own deadline (the promise split backwards, see
:mod:`paygate.supply`):

========================  ===========================  ==============================
step                      from → to                    deadline
========================  ===========================  ==============================
``dispatch``              created → dispatched         ``dispatch_due_at``
``acknowledge``           dispatched → acknowledged    ``ack_due_at``
``confirm``               acknowledged → confirmed     ``due_at`` (the promise)
``end_to_end``            created → confirmed          ``due_at`` (the promise)
========================  ===========================  ==============================

A step reached later implies the earlier ones (a head-end that reports completion at once
dispatched and acknowledged at that instant too), as :meth:`paygate.supply.OrderRow.step_done_at`.
"""

from __future__ import annotations

import csv
import heapq
import html
import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.store.engine import Tx
from paygate.supply import OrderStatus, Severity

__all__ = [
    "ALL_CHANNELS",
    "CSV_COLUMNS",
    "NO_CHANNEL",
    "BreachCounts",
    "ChannelReport",
    "DatabaseFigures",
    "ReportStep",
    "ServiceReport",
    "StepStats",
    "database_figures",
    "format_duration",
    "format_rate",
    "nearest_rank",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "service_report",
]

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
    "WHERE o.created_at >= :low AND o.created_at < :high GROUP BY 1, 2"
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


# --- formatting -------------------------------------------------------------------------------


def format_duration(value: timedelta | None) -> str:
    """``h:mm``, rounded up to the whole minute; ``—`` for no value.

    Rounding up means a duration shown within a deadline of whole minutes is within it.
    """
    if value is None:
        return "—"
    micro = value // _MICROSECOND
    minutes = -(-abs(micro) // 60_000_000)
    hours, minutes = divmod(minutes, 60)
    return f"{'-' if micro < 0 else ''}{hours}:{minutes:02d}"


def format_rate(stats: StepStats) -> str:
    """The on-time rate as a percentage with one decimal, rounded down; ``—`` for none.

    Rounded down, in integers, so that 100.0 % is shown only when every order was on time.
    """
    if not stats.judged:
        return "—"
    per_mille = stats.on_time * 1000 // stats.judged
    return f"{per_mille // 10}.{per_mille % 10} %"


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


# --- table ------------------------------------------------------------------------------------


def render_table(report: ServiceReport) -> Table:
    """A terminal table: one row per channel and step, the channel's counts on its first row."""
    table = Table(
        "channel",
        "orders",
        "open",
        "step",
        "reached",
        "on time",
        "open late",
        "median",
        "p95",
        "worst",
        "budget",
        "minor",
        "major",
        "critical",
        title=(
            f"Service report {report.start} to {report.end} ({report.timezone}), "
            f"as of {_local(report.as_of, report.timezone)}"
        ),
        caption=(
            "durations h:mm, rounded up; percentiles nearest-rank; on time = reached by the "
            "step's deadline / (reached + still open past it)"
        ),
    )
    for channel in (*report.channels, report.overall):
        for index, stats in enumerate(channel.steps):
            first = index == 0
            table.add_row(
                # A channel name is data, never rich markup ("[red]" is a valid name).
                Text(channel.channel) if first else "",
                str(channel.orders) if first else "",
                str(channel.open_orders) if first else "",
                stats.step.value,
                str(stats.reached),
                format_rate(stats),
                str(stats.open_late),
                format_duration(stats.median),
                format_duration(stats.p95),
                format_duration(stats.worst),
                format_duration(report.budget(stats.step)),
                str(channel.breaches.minor) if first else "",
                str(channel.breaches.major) if first else "",
                str(channel.breaches.critical) if first else "",
                end_section=index == len(channel.steps) - 1,
            )
    return table


def _local(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


# --- CSV and JSON -----------------------------------------------------------------------------

CSV_COLUMNS = (
    "period_start",
    "period_end",
    "timezone",
    "as_of",
    "channel",
    "orders",
    "completed",
    "open",
    "cancelled",
    "breaches_minor",
    "breaches_major",
    "breaches_critical",
    "step",
    "budget_seconds",
    "reached",
    "on_time",
    "late",
    "open_late",
    "on_time_rate",
    "median_seconds",
    "p95_seconds",
    "worst_seconds",
)
"""The CSV header: one row per channel and step, every channel's rows then the totals'."""


def render_csv(report: ServiceReport, out: TextIO) -> None:
    """Write the report as CSV to ``out`` (open it with ``newline=""``); empty cell = none."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for channel in (*report.channels, report.overall):
        for stats in channel.steps:
            cells: tuple[object, ...] = (
                report.start.isoformat(),
                report.end.isoformat(),
                report.timezone,
                report.as_of.isoformat(),
                channel.channel,
                channel.orders,
                channel.completed,
                channel.open_orders,
                channel.cancelled,
                channel.breaches.minor,
                channel.breaches.major,
                channel.breaches.critical,
                stats.step.value,
                report.budget(stats.step).total_seconds(),
                stats.reached,
                stats.on_time,
                stats.late,
                stats.open_late,
                stats.on_time_rate,
                _seconds(stats.median),
                _seconds(stats.p95),
                _seconds(stats.worst),
            )
            writer.writerow(["" if cell is None else cell for cell in cells])


def _channel_json(channel: ChannelReport) -> dict[str, Any]:
    return {
        "channel": channel.channel,
        "orders": channel.orders,
        "completed": channel.completed,
        "open": channel.open_orders,
        "cancelled": channel.cancelled,
        "breaches": {s.value: channel.breaches.of(s) for s in SEVERITIES},
        "steps": {
            stats.step.value: {
                "reached": stats.reached,
                "on_time": stats.on_time,
                "late": stats.late,
                "open_late": stats.open_late,
                "on_time_rate": stats.on_time_rate,
                "median_seconds": _seconds(stats.median),
                "p95_seconds": _seconds(stats.p95),
                "worst_seconds": _seconds(stats.worst),
            }
            for stats in channel.steps
        },
    }


def render_json(report: ServiceReport) -> str:
    """The report as a JSON document (durations in seconds, rates as fractions, null = none)."""
    document = {
        "report": "service",
        "period": {
            "start": report.start.isoformat(),
            "end": report.end.isoformat(),
            "timezone": report.timezone,
        },
        "as_of": report.as_of.isoformat(),
        "percentiles": "nearest-rank",
        "budgets_seconds": {step.value: budget.total_seconds() for step, budget in report.budgets},
        "on_time_rate": report.headline.on_time_rate,
        "overall": _channel_json(report.overall),
        "channels": [_channel_json(channel) for channel in report.channels],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC",
  "Microsoft YaHei", sans-serif; color: #1f2933; margin: 2rem auto; max-width: 70rem;
  padding: 0 1.25rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #d9dee4;
  padding-bottom: .25rem; }
.sub { color: #52606d; margin: 0; }
.headline { display: flex; gap: 1.5rem; align-items: center; margin: 1.5rem 0;
  padding: 1rem 1.25rem; border-radius: 6px; background: #f0f4f8; }
.headline .rate { font-size: 2.6rem; font-weight: 700; }
.good { color: #1b7a3d; } .warn { color: #a05a00; } .bad { color: #b3261e; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #e4e7eb; text-align: right;
  white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #9aa5b1; }
figure { margin: 1rem 0 1.5rem; }
svg { max-width: 100%; height: auto; }
figcaption { color: #52606d; font-size: .9rem; }
dl { color: #3e4c59; } dt { font-weight: 600; margin-top: .6rem; } dd { margin-left: 1rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""

_MEDIAN_COLOUR = "#2f6690"
_P95_COLOUR = "#9cc3e0"
_DEADLINE_COLOUR = "#b3261e"
_SEVERITY_COLOURS = {
    Severity.MINOR: "#f2c14e",
    Severity.MAJOR: "#e4572e",
    Severity.CRITICAL: "#7a1e1e",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _rate_class(stats: StepStats) -> str:
    # In integers, like format_rate: the colour never disagrees with the figure shown.
    if not stats.judged:
        return ""
    if stats.on_time * 100 >= 95 * stats.judged:
        return "good"
    return "warn" if stats.on_time * 100 >= 80 * stats.judged else "bad"


def render_html(report: ServiceReport) -> str:
    """A self-contained page for a service manager: headline, tables and inline SVG charts.

    No external assets and no script; every string from the data is escaped, and the page is
    well-formed XML as well as HTML.
    """
    head = report.headline
    period = f"{report.start} to {report.end}"
    promise = format_duration(report.budget(ReportStep.END_TO_END))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>{_e(f'Service report, {period}')}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>Service report: supply orders against the promise</h1>",
        f'<p class="sub">Orders created {_e(period)} ({_e(report.timezone)}), '
        f"open orders judged as of {_e(_local(report.as_of, report.timezone))}. "
        "Reconnection orders count under the channel of the payment that cleared the arrears; "
        f"disconnection orders under {_e(NO_CHANNEL)}.</p>",
        "</header>",
        '<section class="headline">',
        f'<div class="rate {_rate_class(head)}">{_e(format_rate(head))}</div>',
        "<div>",
        f"<strong>of orders confirmed within the promise ({_e(promise)})</strong><br />",
        f"{head.on_time} on time of {head.judged} judged "
        f"({head.reached} confirmed, {head.open_late} still open past the promise); "
        f"{report.overall.orders} orders created, {report.overall.open_orders} still open; "
        f"{report.overall.breaches.total} breaches, "
        f"{report.overall.breaches.critical} critical.",
        "</div>",
        "</section>",
        "<h2>By channel</h2>",
        _channel_table(report),
        "<h2>By step</h2>",
        _step_table(report),
        "<h2>Time per step</h2>",
        *(_duration_chart(report, step) for step in STEPS),
        "<h2>Breaches by severity</h2>",
        _breach_chart(report),
        _breach_table(report),
        "<h2>Step by channel</h2>",
        _detail_table(report),
        "<h2>How to read this report</h2>",
        _definitions(report),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _row(cells: Iterable[str], *, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>" + "".join(cells) + "</tr>"


def _td(value: object, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{_e(value)}</td>"


def _thead(*names: str) -> str:
    return "<thead><tr>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr></thead>"


def _channel_table(report: ServiceReport) -> str:
    rows = []
    for channel in (*report.channels, report.overall):
        e2e = channel.step(ReportStep.END_TO_END)
        rows.append(
            _row(
                [
                    _td(channel.channel),
                    _td(channel.orders),
                    _td(channel.completed),
                    _td(channel.open_orders),
                    _td(format_rate(e2e), _rate_class(e2e)),
                    _td(e2e.open_late),
                    _td(format_duration(e2e.median)),
                    _td(format_duration(e2e.p95)),
                    _td(format_duration(e2e.worst)),
                    _td(channel.breaches.total),
                ],
                css="total" if channel is report.overall else "",
            )
        )
    return (
        "<table>"
        + _thead(
            "channel",
            "orders",
            "completed",
            "open",
            "on time (end to end)",
            "open past the promise",
            "median",
            "p95",
            "worst",
            "breaches",
        )
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _step_table(report: ServiceReport) -> str:
    rows = [
        _row(
            [
                _td(f"{stats.step.value}: {STEP_TITLES[stats.step]}"),
                _td(format_duration(report.budget(stats.step))),
                _td(stats.reached),
                _td(format_rate(stats), _rate_class(stats)),
                _td(stats.late),
                _td(stats.open_late),
                _td(format_duration(stats.median)),
                _td(format_duration(stats.p95)),
                _td(format_duration(stats.worst)),
            ]
        )
        for stats in report.overall.steps
    ]
    return (
        "<table>"
        + _thead(
            "step (all channels)",
            "budget",
            "reached",
            "on time",
            "reached late",
            "open late",
            "median",
            "p95",
            "worst",
        )
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _breach_table(report: ServiceReport) -> str:
    rows = [
        _row(
            [
                _td(channel.channel),
                *(_td(channel.breaches.of(s)) for s in SEVERITIES),
                _td(channel.breaches.total),
            ],
            css="total" if channel is report.overall else "",
        )
        for channel in (*report.channels, report.overall)
    ]
    return (
        "<table>"
        + _thead("channel", "minor", "major", "critical", "total")
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _detail_table(report: ServiceReport) -> str:
    rows = []
    for channel in report.channels:
        for stats in channel.steps:
            rows.append(
                _row(
                    [
                        _td(channel.channel),
                        _td(stats.step.value, "text"),
                        _td(stats.reached),
                        _td(format_rate(stats), _rate_class(stats)),
                        _td(stats.open_late),
                        _td(format_duration(stats.median)),
                        _td(format_duration(stats.p95)),
                        _td(format_duration(stats.worst)),
                    ]
                )
            )
    return (
        "<table>"
        + _thead("channel", "step", "reached", "on time", "open late", "median", "p95", "worst")
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _definitions(report: ServiceReport) -> str:
    budgets = ", ".join(
        f"{step.value} {format_duration(budget)}" for step, budget in report.budgets
    )
    items = [
        (
            "Orders",
            "Reconnection and disconnection orders created in the period (dates in "
            f"{report.timezone}). A reconnection order counts under the channel of the payment "
            "that cleared the arrears; disconnection orders, and reconnection orders no payment "
            f"created, count under {NO_CHANNEL}.",
        ),
        (
            "Steps",
            "dispatch: created → dispatched to the head-end; acknowledge: dispatched → "
            "acknowledged by it; confirm: acknowledged → supply confirmed; end to end: created "
            "→ supply confirmed. A later step reached implies the earlier ones.",
        ),
        (
            "On time",
            "Reached by the step's own deadline, stored on the order when it was created (the "
            "promise counted backwards). The rate is on time ÷ (reached + still open past the "
            "deadline); orders whose deadline has not come yet, and cancelled orders, are left "
            "out. Failed orders are still open: they are still owed.",
        ),
        (
            "Median, p95, worst",
            "Nearest-rank percentiles of the exact durations: the value at rank ⌈p × n / 100⌉ "
            "of the n durations in ascending order, always a time some order actually took "
            "(for an even count, the median is the lower middle value). Durations are shown "
            "h:mm, rounded up to the minute.",
        ),
        (
            "Budgets",
            f"The time each step is allowed under the current promise: {budgets}. The charts "
            "mark it; on-time is judged against each order's own deadlines.",
        ),
        (
            "Breaches",
            "A missed step deadline, recorded once per order and step when first seen: minor "
            "while the promise still held, major once the promise was missed, critical once "
            "the legal limit was missed.",
        ),
    ]
    return (
        "<dl>"
        + "".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in items)
        + "</dl>"
    )


_CHART_WIDTH = 860
_LABEL_WIDTH = 150
_VALUE_WIDTH = 230
_LABEL_CHARS = 20
_ROW_HEIGHT = 34


def _short(channel: str) -> str:
    # A channel name may be up to 64 characters; the bar's tooltip carries it whole.
    return channel if len(channel) <= _LABEL_CHARS else channel[: _LABEL_CHARS - 1] + "…"


def _svg_open(width: int, height: int, label: str, key: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{key}" '
        'font-family="system-ui, sans-serif" font-size="12">'
        f'<title id="{key}">{_e(label)}</title>'
    )


def _duration_chart(report: ServiceReport, step: ReportStep) -> str:
    """Median and p95 of one step per channel as horizontal bars, the step's budget marked.

    The scale runs to twice the budget (further if a median needs it), so that the deadline
    stays readable however long one outlier took; a p95 beyond the scale is drawn to its end
    with an arrow, and every bar's exact figures are written beside it.
    """
    channels = (*report.channels, report.overall)
    budget = report.budget(step)
    medians = [c.step(step).median or timedelta(0) for c in channels]
    scale = max(2 * budget.total_seconds(), 1.1 * max(medians).total_seconds(), 60.0)
    plot = _CHART_WIDTH - _LABEL_WIDTH - _VALUE_WIDTH - 16
    top = 30
    bottom = top + _ROW_HEIGHT * len(channels)
    title = f"{step.value}: {STEP_TITLES[step]}, budget {format_duration(budget)}"

    def x(value: timedelta) -> float:
        seconds = min(max(value.total_seconds(), 0.0), scale)
        return _LABEL_WIDTH + plot * seconds / scale

    out = [
        _svg_open(_CHART_WIDTH, bottom + 26, f"Time per channel, {title}", f"chart-{step.value}"),
        f'<text x="0" y="16" font-weight="600">{_e(title)}</text>',
    ]
    for index, channel in enumerate(channels):
        stats = channel.step(step)
        y = top + index * _ROW_HEIGHT
        out.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{_e(channel.channel)}</title>{_e(_short(channel.channel))}</text>"
        )
        if stats.p95 is None or stats.median is None:
            label = "no order reached this step"
        else:
            beyond = stats.p95.total_seconds() > scale
            tip = f"{channel.channel} p95 {format_duration(stats.p95)}" + (
                ", beyond the scale" if beyond else ""
            )
            end_x = x(stats.p95)
            out.append(
                f'<rect x="{_LABEL_WIDTH}" y="{y + 2}" width="{end_x - _LABEL_WIDTH:.1f}" '
                f'height="18" fill="{_P95_COLOUR}"><title>{_e(tip)}</title></rect>'
            )
            if beyond:
                out.append(
                    f'<path d="M{end_x:.1f},{y - 1} l10,12 l-10,12 z" fill="{_P95_COLOUR}">'
                    f"<title>{_e(tip)}</title></path>"
                )
            out.append(
                f'<rect x="{_LABEL_WIDTH}" y="{y + 6}" '
                f'width="{x(stats.median) - _LABEL_WIDTH:.1f}" height="10" '
                f'fill="{_MEDIAN_COLOUR}"><title>{_e(channel.channel)} median '
                f"{_e(format_duration(stats.median))}</title></rect>"
            )
            label = (
                f"median {format_duration(stats.median)} · p95 {format_duration(stats.p95)} "
                f"· n={stats.reached}"
            )
        out.append(
            f'<text x="{_CHART_WIDTH - _VALUE_WIDTH + 6}" y="{y + 15}" fill="#3e4c59">'
            f"{_e(label)}</text>"
        )
    mark = x(budget)
    axis_end = _LABEL_WIDTH + plot
    out.append(
        f'<line x1="{_LABEL_WIDTH}" y1="{bottom}" x2="{axis_end}" y2="{bottom}" '
        'stroke="#9aa5b1" stroke-width="1" />'
        f'<text x="{_LABEL_WIDTH}" y="{bottom + 16}" text-anchor="middle" fill="#52606d">0:00'
        f'</text><text x="{axis_end}" y="{bottom + 16}" text-anchor="middle" fill="#52606d">'
        f"{_e(format_duration(timedelta(seconds=scale)))}</text>"
    )
    out.append(
        f'<line x1="{mark:.1f}" y1="{top - 4}" x2="{mark:.1f}" y2="{bottom}" '
        f'stroke="{_DEADLINE_COLOUR}" stroke-width="2" stroke-dasharray="5 3" />'
        f'<text x="{mark:.1f}" y="{bottom + 16}" text-anchor="middle" '
        f'fill="{_DEADLINE_COLOUR}">{_e(f"budget {format_duration(budget)}")}</text>'
    )
    legend_y = 8
    out.append(
        f'<rect x="{_CHART_WIDTH - 210}" y="{legend_y}" width="12" height="10" '
        f'fill="{_MEDIAN_COLOUR}" /><text x="{_CHART_WIDTH - 194}" y="{legend_y + 9}">median'
        f'</text><rect x="{_CHART_WIDTH - 140}" y="{legend_y}" width="12" height="10" '
        f'fill="{_P95_COLOUR}" /><text x="{_CHART_WIDTH - 124}" y="{legend_y + 9}">p95</text>'
        f'<line x1="{_CHART_WIDTH - 86}" y1="{legend_y + 5}" x2="{_CHART_WIDTH - 70}" '
        f'y2="{legend_y + 5}" stroke="{_DEADLINE_COLOUR}" stroke-width="2" '
        f'stroke-dasharray="5 3" /><text x="{_CHART_WIDTH - 64}" y="{legend_y + 9}">budget'
        "</text>"
    )
    out.append("</svg>")
    caption = (
        "Bars: median (dark) inside p95 (light) per channel; the dashed line is the time the "
        "step is allowed under the current promise. An arrow marks a p95 beyond the scale."
    )
    return f"<figure>{''.join(out)}<figcaption>{_e(caption)}</figcaption></figure>"


def _breach_chart(report: ServiceReport) -> str:
    """Breaches per channel as horizontal bars stacked by severity."""
    channels = (*report.channels, report.overall)
    most = max([1, *(c.breaches.total for c in channels)])
    plot = _CHART_WIDTH - _LABEL_WIDTH - _VALUE_WIDTH
    top = 30
    height = top + _ROW_HEIGHT * len(channels) + 8
    out = [
        _svg_open(_CHART_WIDTH, height, "Breaches per channel by severity", "chart-breaches"),
        '<text x="0" y="16" font-weight="600">Breaches by severity</text>',
    ]
    legend_x = _CHART_WIDTH - 250
    for severity in SEVERITIES:
        out.append(
            f'<rect x="{legend_x}" y="8" width="12" height="10" '
            f'fill="{_SEVERITY_COLOURS[severity]}" />'
            f'<text x="{legend_x + 16}" y="17">{_e(severity.value)}</text>'
        )
        legend_x += 80
    for index, channel in enumerate(channels):
        y = top + index * _ROW_HEIGHT
        out.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{_e(channel.channel)}</title>{_e(_short(channel.channel))}</text>"
        )
        left = float(_LABEL_WIDTH)
        for severity in SEVERITIES:
            count = channel.breaches.of(severity)
            if not count:
                continue
            width = plot * count / most
            out.append(
                f'<rect x="{left:.1f}" y="{y + 2}" width="{width:.1f}" height="18" '
                f'fill="{_SEVERITY_COLOURS[severity]}"><title>{_e(channel.channel)}: {count} '
                f"{_e(severity.value)}</title></rect>"
            )
            left += width
        b = channel.breaches
        out.append(
            f'<text x="{_CHART_WIDTH - _VALUE_WIDTH + 6}" y="{y + 15}" fill="#3e4c59">'
            f"{_e(f'{b.total} ({b.minor} minor, {b.major} major, {b.critical} critical)')}"
            "</text>"
        )
    out.append("</svg>")
    caption = "Each bar is a channel's recorded breaches, minor, major and critical stacked."
    return f"<figure>{''.join(out)}<figcaption>{_e(caption)}</figcaption></figure>"


@dataclass(frozen=True)
class DatabaseFigures:
    """What every HTTP worker reports alike at ``/metrics``, read in one snapshot."""

    payments: tuple[tuple[str, str, int], ...]
    """(channel, status, count) of the ledger's payments: status ``posted`` or ``reversed``."""
    outbox_pending: int
    outbox_dead: int
    open_breaches: tuple[tuple[str, int], ...]
    """(severity, count) of recorded breaches whose order is still open."""


def database_figures(tx: Tx) -> DatabaseFigures:
    """The payments by channel and status, the outbox's depth and dead letters, and the
    breaches of orders still open: figures no worker may count on its own."""
    payments = tuple(
        (str(channel), str(status), int(count))
        for channel, status, count in tx.all(
            "SELECT channel, status, COUNT(*) FROM payments GROUP BY channel, status "
            "ORDER BY channel, status"
        )
    )
    pending, dead = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL "
        "THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN dead_at IS NOT NULL "
        "THEN 1 ELSE 0 END), 0) FROM outbox"
    ) or (0, 0)
    breaches = tuple(
        (str(severity), int(count))
        for severity, count in tx.all(
            "SELECT b.severity, COUNT(*) FROM breaches b JOIN supply_orders o "
            "ON o.id = b.order_id WHERE o.status NOT IN ('completed', 'cancelled') "
            "GROUP BY b.severity ORDER BY b.severity"
        )
    )
    return DatabaseFigures(payments, int(pending), int(dead), breaches)
