"""The service report as text: durations and rates formatted, the terminal table, CSV and
JSON."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from paygate.reports.i18n import format_number
from paygate.reports.report import _MICROSECOND, SEVERITIES, ChannelReport, ServiceReport, StepStats

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
                _count(channel.orders) if first else "",
                _count(channel.open_orders) if first else "",
                stats.step.value,
                _count(stats.reached),
                format_rate(stats),
                _count(stats.open_late),
                format_duration(stats.median),
                format_duration(stats.p95),
                format_duration(stats.worst),
                format_duration(report.budget(stats.step)),
                _count(channel.breaches.minor) if first else "",
                _count(channel.breaches.major) if first else "",
                _count(channel.breaches.critical) if first else "",
                end_section=index == len(channel.steps) - 1,
            )
    return table


def _count(value: int) -> str:
    return format_number(value, "en")


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
