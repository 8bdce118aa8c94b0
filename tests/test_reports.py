"""The service report, worked through a week of orders whose every figure is computed by hand.

Orders are built the way production builds them — payments that clear arrears, a negotiated
disconnection, the dispatcher and a fake head-end, callbacks — on an injected clock, on SQLite
and on PostgreSQL. Times below are offsets from each order's creation; deadlines are the default
promise's: dispatched by 0:15, acknowledged by 4:00, confirmed by 24:00, legal limit 72:00.

=====  =======  ================  ========  ===========  ==========  ============================
order  channel  dispatched        acked     confirmed    status      breaches
=====  =======  ================  ========  ===========  ==========  ============================
D      —        0:01              0:01      0:01         completed   (a disconnection)
K1     kiosk    0:05              1:00      2:00         completed
K2     kiosk    0:30              3:00      10:00        completed   dispatch minor
P1     pos      0:02              0:02      0:02         completed
P2     pos      0:10              5:00      26:00        completed   ack minor, confirm major
K3     kiosk    80:00 (outage)    81:00     82:00        completed   dispatch minor, ack minor,
                                                                     confirm major, legal critical
P3     pos      0:03              —         —            dispatched  ack minor (report at 6:00)
=====  =======  ================  ========  ===========  ==========  ============================
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from paygate.cli.reports import reports_app
from paygate.clock import FixedClock
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.outbox import Dispatcher
from paygate.reports import (
    ALL_CHANNELS,
    CSV_COLUMNS,
    NO_CHANNEL,
    BreachCounts,
    ChannelReport,
    ReportStep,
    ServiceReport,
    StepStats,
    format_duration,
    format_rate,
    nearest_rank,
    render_csv,
    render_html,
    render_json,
    render_table,
    service_report,
)
from tests.test_dispatch import FakeHeadEnd

M = timedelta(minutes=1)
H = timedelta(hours=1)
DISPATCH, ACK, CONFIRM, E2E = (
    ReportStep.DISPATCH,
    ReportStep.ACKNOWLEDGE,
    ReportStep.CONFIRM,
    ReportStep.END_TO_END,
)
ACCOUNTS = {
    "D": "3100000100",
    "K1": "3100000101",
    "K2": "3100000102",
    "K3": "3100000103",
    "P1": "3100000201",
    "P2": "3100000202",
    "P3": "3100000203",
    "E": "3100000204",
}
WEEK = (date(2026, 11, 25), date(2026, 11, 30))


@dataclass(frozen=True)
class Expect:
    reached: int
    on_time: int
    open_late: int
    median: timedelta | None
    p95: timedelta | None
    worst: timedelta | None
    judged: int

    def check(self, stats: StepStats) -> None:
        assert (stats.reached, stats.on_time, stats.open_late, stats.judged) == (
            self.reached,
            self.on_time,
            self.open_late,
            self.judged,
        ), stats.step
        assert (stats.median, stats.p95, stats.worst) == (
            self.median,
            self.p95,
            self.worst,
        ), stats.step
        assert stats.on_time_rate == self.on_time / self.judged


# By hand, from the table in the module docstring. Nearest rank: median is the value at rank
# ceil(n/2), p95 at rank ceil(0.95 n), of the n durations in ascending order.
EXPECTED = {
    "kiosk": {
        # durations 0:05, 0:30, 80:00; on time only K1
        DISPATCH: Expect(3, 1, 0, 30 * M, 80 * H, 80 * H, judged=3),
        # 0:55 (K1), 2:30 (K2), 1:00 (K3) → sorted 0:55, 1:00, 2:30; K3 acked at 81:00, late
        ACK: Expect(3, 2, 0, 1 * H, 2 * H + 30 * M, 2 * H + 30 * M, judged=3),
        # 1:00 (K1), 7:00 (K2), 1:00 (K3); K3 confirmed at 82:00, late
        CONFIRM: Expect(3, 2, 0, 1 * H, 7 * H, 7 * H, judged=3),
        # 2:00, 10:00, 82:00
        E2E: Expect(3, 2, 0, 10 * H, 82 * H, 82 * H, judged=3),
    },
    "pos": {
        # 0:02, 0:10, 0:03 → 0:02, 0:03, 0:10; all on time
        DISPATCH: Expect(3, 3, 0, 3 * M, 10 * M, 10 * M, judged=3),
        # 0:00 (P1), 4:50 (P2); P2 acked at 5:00, late; P3 open past its 4:00 deadline
        ACK: Expect(2, 1, 1, timedelta(0), 4 * H + 50 * M, 4 * H + 50 * M, judged=3),
        # 0:00 (P1), 21:00 (P2, late); P3's 24:00 deadline has not come: left out
        CONFIRM: Expect(2, 1, 0, timedelta(0), 21 * H, 21 * H, judged=2),
        # 0:02, 26:00
        E2E: Expect(2, 1, 0, 2 * M, 26 * H, 26 * H, judged=2),
    },
    NO_CHANNEL: {
        DISPATCH: Expect(1, 1, 0, 1 * M, 1 * M, 1 * M, judged=1),
        ACK: Expect(1, 1, 0, timedelta(0), timedelta(0), timedelta(0), judged=1),
        CONFIRM: Expect(1, 1, 0, timedelta(0), timedelta(0), timedelta(0), judged=1),
        E2E: Expect(1, 1, 0, 1 * M, 1 * M, 1 * M, judged=1),
    },
    ALL_CHANNELS: {
        # 0:01 0:02 0:03 0:05 0:10 0:30 80:00: rank 4 of 7, rank 7 of 7
        DISPATCH: Expect(7, 5, 0, 5 * M, 80 * H, 80 * H, judged=7),
        # 0:00 0:00 0:55 1:00 2:30 4:50: rank 3 of 6, rank 6 of 6
        ACK: Expect(6, 4, 1, 55 * M, 4 * H + 50 * M, 4 * H + 50 * M, judged=7),
        # 0:00 0:00 1:00 1:00 7:00 21:00
        CONFIRM: Expect(6, 4, 0, 1 * H, 21 * H, 21 * H, judged=6),
        # 0:01 0:02 2:00 10:00 26:00 82:00
        E2E: Expect(6, 4, 0, 2 * H, 82 * H, 82 * H, judged=6),
    },
}
BREACHES = {
    "kiosk": BreachCounts(minor=3, major=1, critical=1),
    "pos": BreachCounts(minor=2, major=1, critical=0),
    NO_CHANNEL: BreachCounts(),
    ALL_CHANNELS: BreachCounts(minor=5, major=2, critical=1),
}
COUNTS = {  # orders, completed, open, cancelled
    "kiosk": (3, 3, 0, 0),
    "pos": (3, 2, 1, 0),
    NO_CHANNEL: (1, 1, 0, 0),
    ALL_CHANNELS: (7, 6, 1, 0),
}


# --- building the week ------------------------------------------------------------------------


class Week:
    """The orders of the module docstring, made one after another on one clock."""

    def __init__(self, gateway: Gateway, clock: FixedClock) -> None:
        self.gateway = gateway
        self.clock = clock
        self.headend = FakeHeadEnd(clock)
        # Callbacks report acknowledgement and completion here; a poll would complete at once.
        self.dispatcher = Dispatcher(
            gateway,
            headends={"fake": self.headend},
            poll_interval=timedelta(days=30),
            retry_cap=timedelta(hours=1),
        )
        self.orders: dict[str, int] = {}

    def open_accounts(self) -> None:
        for name, account_no in ACCOUNTS.items():
            self.gateway.open_account(account_no)
            self.gateway.set_meter(account_no, headend="fake", meter_address=account_no + "00")
            self.gateway.issue_bill(
                account_no,
                bill_no=f"B-{account_no}",
                amount=Money(50_000, "CNY"),
                period="2026-10",
                due_date=date(2026, 11, 15),
            )
            if name != "D":
                self.gateway.disconnect(account_no, "arrears")

    def pay_off(self, name: str, channel: str) -> datetime:
        receipt = self.gateway.pay(
            PaymentIntent(
                channel=channel,
                channel_txn_id=f"T-{name}",
                account_no=ACCOUNTS[name],
                amount=Money(60_000, "CNY"),
                paid_at=self.clock.now(),
            )
        )
        assert receipt.reconnection_order_id is not None
        self.orders[name] = receipt.reconnection_order_id
        return self.clock.now()

    def at(self, created: datetime, offset: timedelta) -> None:
        self.clock.set(created + offset)

    def dispatch(self, outcome: HeadEndOutcome) -> None:
        self.headend.outcome = outcome
        self.dispatcher.dispatch_once()

    def callback(self, name: str, outcome: HeadEndOutcome) -> None:
        self.gateway.record_order_progress(self.orders[name], outcome, actor="callback")

    def callbacks(self, name: str, created: datetime, acked: timedelta, done: timedelta) -> None:
        self.at(created, acked)
        self.callback(name, HeadEndOutcome.ACKNOWLEDGED)
        self.at(created, done)
        self.callback(name, HeadEndOutcome.COMPLETED)

    def build(self) -> None:
        g, t0 = self.gateway, self.clock.now()
        self.open_accounts()
        # D: a negotiated disconnection, cut in one answer at 0:01
        self.orders["D"] = g.order_disconnection(ACCOUNTS["D"], approved_by="ops", negotiated=True)
        self.at(t0, M)
        self.dispatch(HeadEndOutcome.COMPLETED)
        # K1: every step on time
        self.at(t0, H)
        k1 = self.pay_off("K1", "kiosk")
        self.at(k1, 5 * M)
        self.dispatch(HeadEndOutcome.DISPATCHED)
        self.callbacks("K1", k1, H, 2 * H)
        # K2: the dispatcher's first pass comes at 0:30, after the 0:15 deadline
        self.at(t0, 4 * H)
        k2 = self.pay_off("K2", "kiosk")
        self.at(k2, 30 * M)
        self.dispatch(HeadEndOutcome.DISPATCHED)
        self.callbacks("K2", k2, 3 * H, 10 * H)
        # P1: the head-end confirms supply in its first answer
        self.at(t0, 15 * H)
        p1 = self.pay_off("P1", "pos")
        self.at(p1, 2 * M)
        self.dispatch(HeadEndOutcome.COMPLETED)
        # P2: a slow field crew, acknowledged late and confirmed after the promise
        self.at(t0, 16 * H)
        p2 = self.pay_off("P2", "pos")
        self.at(p2, 10 * M)
        self.dispatch(HeadEndOutcome.DISPATCHED)
        self.callbacks("P2", p2, 5 * H, 26 * H)
        # K3: the head-end is down for 79 hours; the dispatcher retries every 6 hours and
        # sees each deadline pass: dispatch and ack at 6:00 (minor), the promise at 30:00
        # (major), the legal limit at 78:00 (critical)
        self.at(t0, 43 * H)
        k3 = self.pay_off("K3", "kiosk")
        self.headend.down_until = k3 + 79 * H
        for hours in range(6, 79, 6):
            self.at(k3, hours * H)
            self.dispatch(HeadEndOutcome.DISPATCHED)
        self.at(k3, 80 * H)
        self.dispatch(HeadEndOutcome.DISPATCHED)
        self.callbacks("K3", k3, 81 * H, 82 * H)
        # P3: dispatched, never acknowledged; the report is taken at 6:00
        self.at(t0, 126 * H)
        p3 = self.pay_off("P3", "pos")
        self.at(p3, 3 * M)
        self.dispatch(HeadEndOutcome.DISPATCHED)
        self.at(p3, 6 * H)
        self.dispatch(HeadEndOutcome.DISPATCHED)


@pytest.fixture
def week(gateway: Gateway, clock: FixedClock) -> Week:
    built = Week(gateway, clock)
    built.build()
    return built


def check(report: ServiceReport) -> None:
    """Every figure of the week against the hand-computed values."""
    assert [c.channel for c in report.channels] == ["kiosk", "pos", NO_CHANNEL]
    for channel in (*report.channels, report.overall):
        name = channel.channel
        for step, expect in EXPECTED[name].items():
            expect.check(channel.step(step))
        assert channel.breaches == BREACHES[name], name
        assert (
            channel.orders,
            channel.completed,
            channel.open_orders,
            channel.cancelled,
        ) == COUNTS[name], name


# --- the figures ------------------------------------------------------------------------------


def test_every_figure_of_the_week_matches_the_hand_computed_one(week: Week) -> None:
    report = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    assert report.as_of == week.clock.now()
    assert (report.start, report.end, report.timezone) == (*WEEK, "Asia/Shanghai")
    check(report)
    assert report.headline.on_time_rate == 4 / 6
    assert dict(report.budgets) == {
        DISPATCH: 15 * M,
        ACK: 3 * H + 45 * M,
        CONFIRM: 20 * H,
        E2E: 24 * H,
    }


def test_the_breaches_are_the_ones_the_dispatcher_recorded(week: Week) -> None:
    def read(tx):  # type: ignore[no-untyped-def]
        return tx.all("SELECT order_id, step, severity FROM breaches ORDER BY order_id, step")

    names = {order_id: name for name, order_id in week.orders.items()}
    rows = week.gateway.store.run(read, write=False)
    assert sorted((names[order_id], step, sev) for order_id, step, sev in rows) == [
        ("K2", "dispatch", "minor"),
        ("K3", "acknowledge", "minor"),
        ("K3", "confirm", "major"),
        ("K3", "dispatch", "minor"),
        ("K3", "legal", "critical"),
        ("P2", "acknowledge", "minor"),
        ("P2", "confirm", "major"),
        ("P3", "acknowledge", "minor"),
    ]


def test_the_period_is_taken_in_the_utilitys_zone(week: Week) -> None:
    # P1 was created at 2026-11-25 17:00 UTC: already the 26th in Shanghai.
    first_day = service_report(week.gateway, start=WEEK[0], end=WEEK[0])
    assert [c.channel for c in first_day.channels] == ["kiosk", NO_CHANNEL]
    assert first_day.channel("kiosk").orders == 2  # K1, K2; K3 was created on the 27th
    # pos sold only on other days: its figures that day are zeros, not an error.
    pos = first_day.channel("pos")
    assert (pos.channel, pos.orders, pos.completed, pos.open_orders, pos.cancelled) == (
        "pos",
        0,
        0,
        0,
        0,
    )
    assert pos.breaches.total == 0
    assert all(s.reached == 0 and s.on_time_rate is None for s in pos.steps)
    assert len(pos.steps) == len(first_day.overall.steps)
    last_day = service_report(week.gateway, start=WEEK[1], end=WEEK[1])
    assert [(c.channel, c.orders) for c in last_day.channels] == [("pos", 1)]  # P3


def test_an_order_at_local_midnight_belongs_to_the_new_day(week: Week) -> None:
    before = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    week.clock.set(datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # 2026-12-01 00:00 in Shanghai
    week.pay_off("E", "pos")
    after = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    check(after)  # unchanged: P3's 24:00 deadline has still not come
    assert after.channels == before.channels
    december = service_report(week.gateway, start=date(2026, 12, 1), end=date(2026, 12, 1))
    [pos] = december.channels
    assert (pos.channel, pos.orders, pos.open_orders) == ("pos", 1, 1)
    assert [s.reached for s in pos.steps] == [0, 0, 0, 0]
    assert [s.on_time_rate for s in pos.steps] == [None, None, None, None]


def test_open_orders_become_late_as_their_deadlines_pass(week: Week) -> None:
    # A day after P3 was created: its promise (and so confirm and end to end) has passed.
    week.clock.advance(18 * H + M)
    pos = service_report(week.gateway, start=WEEK[0], end=WEEK[1]).channel("pos")
    assert [pos.step(s).open_late for s in (DISPATCH, ACK, CONFIRM, E2E)] == [0, 1, 1, 1]
    assert pos.step(E2E).on_time_rate == 1 / 3  # P1 on time; P2 late; P3 open and late


def test_an_empty_period_reports_nothing_without_failing(gateway: Gateway) -> None:
    report = service_report(gateway, start=date(2026, 1, 1), end=date(2026, 1, 31))
    assert report.channels == ()
    assert report.overall.orders == 0 and report.headline.on_time_rate is None
    assert format_rate(report.headline) == "—"
    assert "<svg" in render_html(report)
    assert json.loads(render_json(report))["on_time_rate"] is None


def test_a_period_that_ends_before_it_starts_is_refused(gateway: Gateway) -> None:
    with pytest.raises(InvalidInputError, match="ends"):
        service_report(gateway, start=date(2026, 11, 2), end=date(2026, 11, 1))


def test_the_orders_are_read_a_page_at_a_time(week: Week, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("paygate.reports.report.PAGE", 2)
    check(service_report(week.gateway, start=WEEK[0], end=WEEK[1]))


# --- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "count", "rank"),
    [(50, 1, 1), (50, 2, 1), (50, 3, 2), (50, 6, 3), (50, 7, 4), (95, 1, 1), (95, 19, 19),
     (95, 20, 19), (95, 21, 20), (95, 100, 95), (95, 101, 96), (100, 7, 7)],
)  # fmt: skip
def test_nearest_rank(percent: int, count: int, rank: int) -> None:
    assert nearest_rank(percent, count) == rank


def test_nearest_rank_needs_values() -> None:
    with pytest.raises(ValueError, match="at least one"):
        nearest_rank(50, 0)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "—"), (timedelta(0), "0:00"), (timedelta(seconds=1), "0:01"), (15 * M, "0:15"),
     (15 * M + timedelta(microseconds=1), "0:16"), (82 * H, "82:00"), (26 * H + 59 * M, "26:59"),
     (-M, "-0:01")],
)  # fmt: skip
def test_durations_are_shown_as_hours_and_minutes_rounded_up(
    value: timedelta | None, shown: str
) -> None:
    assert format_duration(value) == shown


def test_rates_are_rounded_down_so_that_100_means_all() -> None:
    def stats(on_time: int, reached: int) -> StepStats:
        return StepStats(E2E, reached, on_time, 0, None, None, None)

    assert format_rate(stats(1999, 2000)) == "99.9 %"
    assert format_rate(stats(2, 3)) == "66.6 %"
    assert format_rate(stats(5, 5)) == "100.0 %"


# --- the renderings ---------------------------------------------------------------------------


def test_the_csv_parses_back_to_the_report(week: Week) -> None:
    report = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    buffer = io.StringIO(newline="")
    render_csv(report, buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * 4  # three channels and the totals, four steps each
    for row in rows:
        channel = (
            report.overall if row["channel"] == ALL_CHANNELS else report.channel(row["channel"])
        )
        stats = channel.step(ReportStep(row["step"]))
        expect = EXPECTED[row["channel"]][stats.step]
        assert (row["period_start"], row["period_end"]) == ("2026-11-25", "2026-11-30")
        assert datetime.fromisoformat(row["as_of"]) == report.as_of
        assert int(row["reached"]) == expect.reached
        assert int(row["on_time"]) == expect.on_time
        assert int(row["open_late"]) == expect.open_late
        assert int(row["late"]) == expect.reached - expect.on_time
        assert float(row["on_time_rate"]) == expect.on_time / expect.judged
        for column, value in (
            ("median_seconds", expect.median),
            ("p95_seconds", expect.p95),
            ("worst_seconds", expect.worst),
        ):
            assert value is not None and float(row[column]) == value.total_seconds()
        assert float(row["budget_seconds"]) == report.budget(stats.step).total_seconds()
        breaches = BREACHES[row["channel"]]
        assert (
            int(row["breaches_minor"]),
            int(row["breaches_major"]),
            int(row["breaches_critical"]),
        ) == (breaches.minor, breaches.major, breaches.critical)
        assert (int(row["orders"]), int(row["completed"]), int(row["open"])) == COUNTS[
            row["channel"]
        ][:3]


def test_the_json_loads_back_to_the_report(week: Week) -> None:
    report = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    document = json.loads(render_json(report))
    assert document["period"] == {
        "start": "2026-11-25",
        "end": "2026-11-30",
        "timezone": "Asia/Shanghai",
    }
    assert document["percentiles"] == "nearest-rank"
    assert document["on_time_rate"] == 4 / 6
    assert document["budgets_seconds"] == {
        "dispatch": 900.0,
        "acknowledge": 13500.0,
        "confirm": 72000.0,
        "end_to_end": 86400.0,
    }
    channels = {c["channel"]: c for c in document["channels"]}
    assert list(channels) == ["kiosk", "pos", NO_CHANNEL]
    for name, channel in (*channels.items(), (ALL_CHANNELS, document["overall"])):
        assert channel["breaches"] == {
            "minor": BREACHES[name].minor,
            "major": BREACHES[name].major,
            "critical": BREACHES[name].critical,
        }
        assert (channel["orders"], channel["completed"], channel["open"]) == COUNTS[name][:3]
        for step, expect in EXPECTED[name].items():
            got = channel["steps"][step.value]
            assert (got["reached"], got["on_time"], got["open_late"]) == (
                expect.reached,
                expect.on_time,
                expect.open_late,
            )
            assert got["on_time_rate"] == expect.on_time / expect.judged
            assert expect.median is not None and expect.p95 is not None
            assert expect.worst is not None
            assert got["median_seconds"] == expect.median.total_seconds()
            assert got["p95_seconds"] == expect.p95.total_seconds()
            assert got["worst_seconds"] == expect.worst.total_seconds()


def test_the_table_shows_every_channel_and_step(week: Week) -> None:
    report = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    console = Console(file=io.StringIO(), width=220, color_system=None)
    console.print(render_table(report))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for needle in ("kiosk", "pos", NO_CHANNEL, ALL_CHANNELS, "end_to_end", "80:00", "82:00"):
        assert needle in text
    assert "33.3 %" in text and "66.6 %" in text  # kiosk dispatch, end to end


def test_the_html_page_stands_alone_with_its_charts(week: Week) -> None:
    report = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    page = render_html(report, lang="en")
    root = ET.fromstring(page)  # well-formed: every string escaped, every element closed
    svg = "{http://www.w3.org/2000/svg}svg"
    charts = root.findall(f".//{svg}")
    assert len(charts) == 5  # four steps, and the breaches
    for needle in ("66.6 %", "82:00", "4:50", "budget 0:15", "critical"):
        assert needle in page
    chinese = render_html(report)  # the default is the utility's language
    assert '<html lang="zh-CN">' in chinese
    for needle in ("66.6 %", "82:00", "时限 0:15", "事故", "服务承诺"):
        assert needle in chinese
    assert "<script" not in page and "src=" not in page and "<link" not in page
    assert "href=" not in page and "@import" not in page and "url(" not in page
    assert not any(account_no in page for account_no in ACCOUNTS.values())
    # the breaches chart stacks kiosk's minor, major and critical bars
    breach_chart = charts[-1]
    titles = [t.text for t in breach_chart.iter("{http://www.w3.org/2000/svg}title")]
    assert "kiosk: 3 minor" in titles and "kiosk: 1 critical" in titles


def test_every_string_in_the_html_is_escaped(gateway: Gateway, clock: FixedClock) -> None:
    channel = "<i>pay&\"co'</i>"  # a channel name is any printable ASCII without spaces
    gateway.open_account("3100000001")
    gateway.issue_bill(
        "3100000001",
        bill_no="B-3100000001",
        amount=Money(100, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )
    gateway.disconnect("3100000001", "arrears")
    receipt = gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id="X1",
            account_no="3100000001",
            amount=Money(10_000, "CNY"),
            paid_at=clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    report = service_report(gateway, start=date(2026, 11, 25), end=date(2026, 11, 25))
    page = render_html(report)
    assert channel not in page and "<i>" not in page
    assert "&lt;i&gt;pay&amp;&quot;co&#x27;&lt;/i&gt;" in page
    root = ET.fromstring(page)
    cells = [td.text for td in root.iter("td")]
    assert channel in cells  # the escaped text reads back as the name
    assert "3100000001" not in page


def test_a_channel_name_is_never_read_as_terminal_markup() -> None:
    empty = StepStats(E2E, 0, 0, 0, None, None, None)
    name = "[/][red]pos"
    channel = ChannelReport(name, 1, 0, 1, 0, (empty,) * 4, BreachCounts())
    report = ServiceReport(
        start=date(2026, 11, 1),
        end=date(2026, 11, 1),
        timezone="Asia/Shanghai",
        as_of=datetime(2026, 11, 2, tzinfo=UTC),
        budgets=tuple((step, H) for step in ReportStep),
        channels=(channel,),
        overall=ChannelReport(ALL_CHANNELS, 1, 0, 1, 0, (empty,) * 4, BreachCounts()),
    )
    console = Console(file=io.StringIO(), width=220, color_system=None)
    console.print(render_table(report))
    assert name in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_report_value_is_immutable() -> None:
    stats = StepStats(E2E, 0, 0, 0, None, None, None)
    channel = ChannelReport("pos", 0, 0, 0, 0, (stats,) * 4, BreachCounts())
    with pytest.raises(AttributeError):
        channel.orders = 1  # type: ignore[misc]


# --- the command line -------------------------------------------------------------------------

runner = CliRunner()
# Mounted as paygate.cli mounts it: a group of one command would otherwise collapse into it.
paygate = typer.Typer()
paygate.add_typer(reports_app, name="report")


def report_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(paygate, ["report", "service", *args])  # piped: no terminal width
    return result.exit_code, result.output


def test_the_command_writes_every_format(week: Week, db_url: str, tmp_path: Path) -> None:
    # The command judges open orders at the machine's time, not the test clock's: compare only
    # what does not depend on that instant.
    expected = service_report(week.gateway, start=WEEK[0], end=WEEK[1])
    period = ("--from", "2026-11-25", "--to", "2026-11-30", "--database-url", db_url)
    for fmt in ("table", "csv", "json", "html"):
        target = tmp_path / f"service.{fmt}"
        code, output = report_cli(*period, "--format", fmt, "--output", str(target))
        assert code == 0, output
        assert f"written to {target}" in output
        assert target.stat().st_size > 0
        assert not list(tmp_path.glob(".*.partial"))
    document = json.loads((tmp_path / "service.json").read_text(encoding="utf-8"))
    for channel, want in zip(document["channels"], expected.channels, strict=True):
        assert channel["channel"] == want.channel
        assert channel["orders"] == want.orders
        assert channel["breaches"]["critical"] == want.breaches.critical
        for stats in want.steps:
            got = channel["steps"][stats.step.value]
            assert got["reached"] == stats.reached
            assert got["median_seconds"] == (stats.median or timedelta(0)).total_seconds()
    with (tmp_path / "service.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["channel"] for row in rows} == {"kiosk", "pos", NO_CHANNEL, ALL_CHANNELS}
    page = (tmp_path / "service.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 5
    assert "kiosk" in (tmp_path / "service.table").read_text(encoding="utf-8")


def test_the_command_prints_to_the_terminal_without_output(week: Week, db_url: str) -> None:
    code, output = report_cli(
        "--from", "2026-11-25", "--to", "2026-11-30", "--format", "json", "--database-url", db_url
    )
    assert code == 0, output
    assert [c["channel"] for c in json.loads(output)["channels"]] == ["kiosk", "pos", NO_CHANNEL]
    code, output = report_cli(
        "--from", "2026-11-25", "--to", "2026-11-30", "--database-url", db_url
    )
    assert code == 0, output
    assert "kiosk" in output and "end_to_end" in output


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-13-01", "2026-11-30", "from: '2026-13-01' is not a date YYYY-MM-DD"),
        ("2026-11-01", "30/11/2026", "to: '30/11/2026' is not a date YYYY-MM-DD"),
        ("2026-11-30", "2026-11-01", "to: the period ends (2026-11-01) before it starts"),
        ("[/]", "2026-11-01", "from: '[/]' is not a date YYYY-MM-DD"),
    ],
)
def test_a_bad_period_exits_2_naming_it(
    first: str, last: str, message: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    target = tmp_path / "out.html"
    code, output = report_cli(
        "--from", first, "--to", last, "--database-url", url, "--output", str(target)
    )
    assert code == 2
    assert message in output
    assert not target.exists()
    assert not (tmp_path / "never.db").exists()  # refused before any database was opened


def test_an_unwritable_output_exits_2(db_url: str, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "out.csv"
    code, output = report_cli(
        "--from", "2026-11-25", "--to", "2026-11-25", "--format", "csv",
        "--output", str(target), "--database-url", db_url,
    )  # fmt: skip
    assert code == 2
    assert "cannot write" in output and not target.exists()


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    code, output = report_cli("--from", "2026-11-25", "--to", "2026-11-25", "--format", "pdf")
    assert code == 2 and "pdf" in output
