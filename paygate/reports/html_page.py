"""The service report as one self-contained HTML page: tables and inline SVG charts, every
value escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import timedelta

from paygate.reports.report import (
    NO_CHANNEL,
    SEVERITIES,
    STEP_TITLES,
    STEPS,
    ReportStep,
    ServiceReport,
    StepStats,
)
from paygate.reports.text import _local, format_duration, format_rate
from paygate.supply import Severity

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
