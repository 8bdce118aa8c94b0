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

The package keeps one concept per module, each importing only the ones before it:
:mod:`~paygate.reports.catalogue` (every sentence of the HTML reports in Chinese),
:mod:`~paygate.reports.i18n` (the languages, and the one way a report writes a count or an
amount), :mod:`~paygate.reports.axis` (chart scales that cover their data),
:mod:`~paygate.reports.page` (what every HTML report shares),
:mod:`~paygate.reports.report` (the report value and computing it),
:mod:`~paygate.reports.text` (formatting, the table, CSV, JSON),
:mod:`~paygate.reports.html_page` (HTML with SVG charts, in Chinese or English) and
:mod:`~paygate.reports.metrics` (the database figures for ``/metrics``). The reconciliation
report (:mod:`paygate.reconcile.report`) uses the same language, numbers, scales and page.
Every public name is imported from here.
"""

from __future__ import annotations

from paygate.reports.html_page import render_html
from paygate.reports.i18n import (
    DEFAULT_LANG,
    LANGS,
    Lang,
    Words,
    format_amount,
    format_money,
    format_number,
)
from paygate.reports.metrics import DatabaseFigures, database_figures
from paygate.reports.report import (
    ALL_CHANNELS,
    NO_CHANNEL,
    BreachCounts,
    ChannelReport,
    ReportStep,
    ServiceReport,
    StepStats,
    nearest_rank,
    service_report,
)
from paygate.reports.text import (
    CSV_COLUMNS,
    format_duration,
    format_rate,
    render_csv,
    render_json,
    render_table,
)

__all__ = [
    "ALL_CHANNELS",
    "CSV_COLUMNS",
    "DEFAULT_LANG",
    "LANGS",
    "NO_CHANNEL",
    "BreachCounts",
    "ChannelReport",
    "DatabaseFigures",
    "Lang",
    "ReportStep",
    "ServiceReport",
    "StepStats",
    "Words",
    "database_figures",
    "format_amount",
    "format_duration",
    "format_money",
    "format_number",
    "format_rate",
    "nearest_rank",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "service_report",
]
