"""The service report as one self-contained HTML page, in Chinese or English: tables and inline
SVG charts, every value escaped.

Every word comes from :mod:`paygate.reports.i18n` and every count from its
:func:`~paygate.reports.i18n.format_number`; every chart's axis covers the largest value drawn on
it (:mod:`paygate.reports.axis`), so no bar is clipped and no two different values draw alike.
"""

from __future__ import annotations

from datetime import timedelta

from paygate.reports.axis import duration_axis, number_axis
from paygate.reports.i18n import DEFAULT_LANG, Words
from paygate.reports.page import CSS, axis_marks, e, row, svg_open, table, td, thead
from paygate.reports.report import (
    ALL_CHANNELS,
    NO_CHANNEL,
    SEVERITIES,
    STEP_TITLES,
    STEPS,
    ChannelReport,
    ReportStep,
    ServiceReport,
    StepStats,
)
from paygate.reports.text import _local, format_duration, format_rate
from paygate.supply import Severity

__all__ = ["render_html"]

_MEDIAN_COLOUR = "#2f6690"
_P95_COLOUR = "#9cc3e0"
_DEADLINE_COLOUR = "#b3261e"
_SEVERITY_COLOURS = {
    Severity.MINOR: "#f2c14e",
    Severity.MAJOR: "#e4572e",
    Severity.CRITICAL: "#7a1e1e",
}
# The utility's own names of the three breach severities.
SEVERITY_NAMES = {
    Severity.MINOR: "minor",
    Severity.MAJOR: "major",
    Severity.CRITICAL: "critical",
}
STEP_NAMES = {
    ReportStep.DISPATCH: "dispatch",
    ReportStep.ACKNOWLEDGE: "acknowledge",
    ReportStep.CONFIRM: "confirm",
    ReportStep.END_TO_END: "end to end",
}


def _rate_class(stats: StepStats) -> str:
    # In integers, like format_rate: the colour never disagrees with the figure shown.
    if not stats.judged:
        return ""
    if stats.on_time * 100 >= 95 * stats.judged:
        return "good"
    return "warn" if stats.on_time * 100 >= 80 * stats.judged else "bad"


def _name(channel: ChannelReport, w: Words) -> str:
    # The two labels the report makes up are words; a channel's own name is data.
    if channel.channel == ALL_CHANNELS:
        return w("all channels")
    if channel.channel == NO_CHANNEL:
        return w("— (no payment)")
    return channel.channel


def render_html(report: ServiceReport, *, lang: str = DEFAULT_LANG) -> str:
    """A self-contained page for a service manager: headline, tables and inline SVG charts.

    ``lang`` is ``"zh-CN"`` (the default) or ``"en"``. No external assets and no script; every
    string from the data is escaped, and the page is well-formed XML as well as HTML.
    """
    w = Words(lang)
    head = report.headline
    period = w("{start} to {end}", start=report.start, end=report.end)
    promise = format_duration(report.budget(ReportStep.END_TO_END))
    overall = report.overall
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{w.lang}">',
        "<head>",
        '<meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>{e(w('Service report, {period}', period=period))}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{e(w('Service report: supply orders against the promise'))}</h1>",
        '<p class="sub">'
        + e(
            w(
                "Orders created {period} ({zone}), open orders judged as of {as_of}. "
                "Reconnection orders count under the channel of the payment that cleared the "
                "arrears; disconnection orders under {none}.",
                period=period,
                zone=report.timezone,
                as_of=_local(report.as_of, report.timezone),
                none=w("— (no payment)"),
            )
        )
        + "</p>",
        "</header>",
        '<section class="headline">',
        f'<div class="rate {_rate_class(head)}">{e(format_rate(head))}</div>',
        "<div>",
        "<strong>"
        + e(
            w(
                "of {judged} orders judged were confirmed within the promise ({promise})",
                judged=w.number(head.judged),
                promise=promise,
            )
        )
        + "</strong><br />",
        e(
            w(
                "{on_time} on time, {late} confirmed late, {open_late} still open past the "
                "promise; {orders} orders created, {open} still open.",
                on_time=w.number(head.on_time),
                late=w.number(head.late),
                open_late=w.number(head.open_late),
                orders=w.number(overall.orders),
                open=w.number(overall.open_orders),
            )
        ),
        "<br />",
        e(
            w(
                "{breaches} breaches ({critical} critical): missed deadlines of single steps, "
                "counted once per order and step. The rate above is of whole orders against "
                "the promise, so an order confirmed in time can still have breached its "
                "dispatch or acknowledge deadline.",
                breaches=w.number(overall.breaches.total),
                critical=w.number(overall.breaches.critical),
            )
        ),
        "</div>",
        "</section>",
        f"<h2>{e(w('By channel'))}</h2>",
        _channel_table(report, w),
        f"<h2>{e(w('By step'))}</h2>",
        _step_table(report, w),
        f"<h2>{e(w('Time per step'))}</h2>",
        *(_duration_chart(report, step, w) for step in STEPS),
        f"<h2>{e(w('Breaches by severity'))}</h2>",
        _breach_chart(report, w),
        _breach_table(report, w),
        f"<h2>{e(w('Step by channel'))}</h2>",
        _detail_table(report, w),
        f"<h2>{e(w('How to read this report'))}</h2>",
        _definitions(report, w),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _step_label(step: ReportStep, w: Words) -> str:
    return w("{step}: {title}", step=w(STEP_NAMES[step]), title=w(STEP_TITLES[step]))


def _channel_table(report: ServiceReport, w: Words) -> str:
    rows = []
    for channel in (*report.channels, report.overall):
        e2e = channel.step(ReportStep.END_TO_END)
        rows.append(
            row(
                [
                    td(_name(channel, w)),
                    td(w.number(channel.orders)),
                    td(w.number(channel.completed)),
                    td(w.number(channel.open_orders)),
                    td(format_rate(e2e), _rate_class(e2e)),
                    td(w.number(e2e.open_late)),
                    td(format_duration(e2e.median)),
                    td(format_duration(e2e.p95)),
                    td(format_duration(e2e.worst)),
                    td(w.number(channel.breaches.total)),
                ],
                css="total" if channel is report.overall else "",
            )
        )
    head = thead(
        w("channel"),
        w("orders"),
        w("completed"),
        w("open"),
        w("on time (end to end)"),
        w("open past the promise"),
        w("median"),
        w("p95"),
        w("worst"),
        w("breaches"),
    )
    return table(head, rows)


def _step_table(report: ServiceReport, w: Words) -> str:
    rows = [
        row(
            [
                td(_step_label(stats.step, w)),
                td(format_duration(report.budget(stats.step))),
                td(w.number(stats.reached)),
                td(format_rate(stats), _rate_class(stats)),
                td(w.number(stats.late)),
                td(w.number(stats.open_late)),
                td(format_duration(stats.median)),
                td(format_duration(stats.p95)),
                td(format_duration(stats.worst)),
            ]
        )
        for stats in report.overall.steps
    ]
    head = thead(
        w("step (all channels)"),
        w("budget"),
        w("reached"),
        w("on time"),
        w("reached late"),
        w("open late"),
        w("median"),
        w("p95"),
        w("worst"),
    )
    return table(head, rows)


def _breach_table(report: ServiceReport, w: Words) -> str:
    rows = [
        row(
            [
                td(_name(channel, w)),
                *(td(w.number(channel.breaches.of(s))) for s in SEVERITIES),
                td(w.number(channel.breaches.total)),
            ],
            css="total" if channel is report.overall else "",
        )
        for channel in (*report.channels, report.overall)
    ]
    head = thead(w("channel"), *(w(SEVERITY_NAMES[s]) for s in SEVERITIES), w("total"))
    return table(head, rows)


def _detail_table(report: ServiceReport, w: Words) -> str:
    rows = [
        row(
            [
                td(_name(channel, w)),
                td(w(STEP_NAMES[stats.step]), "text"),
                td(w.number(stats.reached)),
                td(format_rate(stats), _rate_class(stats)),
                td(w.number(stats.open_late)),
                td(format_duration(stats.median)),
                td(format_duration(stats.p95)),
                td(format_duration(stats.worst)),
            ]
        )
        for channel in report.channels
        for stats in channel.steps
    ]
    head = thead(
        w("channel"),
        w("step"),
        w("reached"),
        w("on time"),
        w("open late"),
        w("median"),
        w("p95"),
        w("worst"),
    )
    return table(head, rows)


def _definitions(report: ServiceReport, w: Words) -> str:
    budgets = w(", ").join(
        w("{step} {budget}", step=w(STEP_NAMES[step]), budget=format_duration(budget))
        for step, budget in report.budgets
    )
    items = [
        (
            w("Orders"),
            w(
                "Reconnection and disconnection orders created in the period (dates in "
                "{zone}). A reconnection order counts under the channel of the payment that "
                "cleared the arrears; disconnection orders, and reconnection orders no payment "
                "created, count under {none}.",
                zone=report.timezone,
                none=w("— (no payment)"),
            ),
        ),
        (
            w("Steps"),
            w(
                "dispatch: created → dispatched to the head-end; acknowledge: dispatched → "
                "acknowledged by it; confirm: acknowledged → supply confirmed; end to end: "
                "created → supply confirmed. A later step reached implies the earlier ones."
            ),
        ),
        (
            w("On time"),
            w(
                "Reached by the step's own deadline, stored on the order when it was created "
                "(the promise counted backwards). The rate is on time ÷ (reached + still open "
                "past the deadline): the orders judged. Orders whose deadline has not come "
                "yet, and cancelled orders, are left out. Failed orders are still open: they "
                "are still owed. The headline's rate is this figure for end to end over every "
                "channel."
            ),
        ),
        (
            w("Median, p95, worst"),
            w(
                "Nearest-rank percentiles of the exact durations: the value at rank "
                "⌈p × n / 100⌉ of the n durations in ascending order, always a time some order "
                "actually took (for an even count, the median is the lower middle value). "
                "Durations are shown h:mm, rounded up to the minute."
            ),
        ),
        (
            w("Budgets"),
            w(
                "The time each step is allowed under the current promise: {budgets}. The "
                "charts mark it; on-time is judged against each order's own deadlines.",
                budgets=budgets,
            ),
        ),
        (
            w("Breaches"),
            w(
                "A missed step deadline, recorded once per order and step when first seen: "
                "minor while the promise still held, major once the promise was missed, "
                "critical once the legal limit was missed. Breaches are counts of missed "
                "deadlines, not a share of orders: one late order can add up to four."
            ),
        ),
    ]
    return (
        "<dl>" + "".join(f"<dt>{e(term)}</dt><dd>{e(text)}</dd>" for term, text in items) + "</dl>"
    )


_CHART_WIDTH = 860
_LABEL_WIDTH = 150
_VALUE_WIDTH = 230
_LABEL_CHARS = 20
_ROW_HEIGHT = 34
_TOP = 34


def _short(channel: str) -> str:
    # A channel name may be up to 64 characters; the bar's tooltip carries it whole.
    return channel if len(channel) <= _LABEL_CHARS else channel[: _LABEL_CHARS - 1] + "…"


def _duration_chart(report: ServiceReport, step: ReportStep, w: Words) -> str:
    """Median and p95 of one step per channel as horizontal bars, the step's budget marked.

    The axis runs from zero to a round duration at or above the longest p95 (and the budget),
    ticks at whole minutes or hours: every bar ends where its figure is.
    """
    channels = (*report.channels, report.overall)
    budget = report.budget(step)
    longest = [c.step(step).p95 or timedelta(0) for c in channels]
    axis = duration_axis(max([budget, *longest]).total_seconds())
    plot = _CHART_WIDTH - _LABEL_WIDTH - _VALUE_WIDTH - 16
    bottom = _TOP + _ROW_HEIGHT * len(channels)
    title = w("{step}, budget {budget}", step=_step_label(step, w), budget=format_duration(budget))

    def x(value: timedelta) -> float:
        return _LABEL_WIDTH + plot * axis.position(value.total_seconds())

    out = [
        svg_open(
            _CHART_WIDTH,
            bottom + 40,
            w("Time per channel, {title}", title=title),
            f"chart-{step.value}",
        ),
        f'<text x="0" y="16" font-weight="600">{e(title)}</text>',
        axis_marks(
            axis,
            left=_LABEL_WIDTH,
            width=plot,
            top=_TOP - 6,
            bottom=bottom,
            label=lambda seconds: format_duration(timedelta(seconds=seconds)),
        ),
    ]
    for index, channel in enumerate(channels):
        stats = channel.step(step)
        name = _name(channel, w)
        y = _TOP + index * _ROW_HEIGHT
        out.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{e(name)}</title>{e(_short(name))}</text>"
        )
        if stats.p95 is None or stats.median is None:
            label = w("no order reached this step")
        else:
            p95 = format_duration(stats.p95)
            median = format_duration(stats.median)
            out.append(
                f'<rect class="mark" x="{_LABEL_WIDTH}" y="{y + 2}" '
                f'width="{x(stats.p95) - _LABEL_WIDTH:.1f}" height="18" fill="{_P95_COLOUR}" '
                f'data-value="{stats.p95.total_seconds():g}">'
                f"<title>{e(f'{name} p95 {p95}')}</title></rect>"
                f'<rect class="mark" x="{_LABEL_WIDTH}" y="{y + 6}" '
                f'width="{x(stats.median) - _LABEL_WIDTH:.1f}" height="10" '
                f'fill="{_MEDIAN_COLOUR}" data-value="{stats.median.total_seconds():g}">'
                f"<title>{e(name)} {e(w('median'))} {e(median)}</title></rect>"
            )
            label = w(
                "median {median} · p95 {p95} · n={n}",
                median=median,
                p95=p95,
                n=w.number(stats.reached),
            )
        out.append(
            f'<text x="{_CHART_WIDTH - _VALUE_WIDTH + 6}" y="{y + 15}" fill="#3e4c59">'
            f"{e(label)}</text>"
        )
    mark = x(budget)
    out.append(
        f'<line class="mark" x1="{mark:.1f}" y1="{_TOP - 6}" x2="{mark:.1f}" y2="{bottom}" '
        f'stroke="{_DEADLINE_COLOUR}" stroke-width="2" stroke-dasharray="5 3" '
        f'data-value="{budget.total_seconds():g}" />'
        f'<text x="{mark:.1f}" y="{bottom + 32}" text-anchor="middle" '
        f'fill="{_DEADLINE_COLOUR}">'
        f"{e(w('budget {budget}', budget=format_duration(budget)))}</text>"
    )
    legend = _CHART_WIDTH - 210
    out.append(
        f'<rect x="{legend}" y="8" width="12" height="10" fill="{_MEDIAN_COLOUR}" />'
        f'<text x="{legend + 16}" y="17">{e(w("median"))}</text>'
        f'<rect x="{legend + 70}" y="8" width="12" height="10" fill="{_P95_COLOUR}" />'
        f'<text x="{legend + 86}" y="17">p95</text>'
        f'<line x1="{legend + 124}" y1="13" x2="{legend + 140}" y2="13" '
        f'stroke="{_DEADLINE_COLOUR}" stroke-width="2" stroke-dasharray="5 3" />'
        f'<text x="{legend + 146}" y="17">{e(w("budget"))}</text>'
    )
    out.append("</svg>")
    caption = w(
        "Bars: median (dark) inside p95 (light) per channel; the dashed line is the time the "
        "step is allowed under the current promise. The axis (h:mm) runs to the longest p95."
    )
    return f"<figure>{''.join(out)}<figcaption>{e(caption)}</figcaption></figure>"


def _breach_chart(report: ServiceReport, w: Words) -> str:
    """Breaches per channel as horizontal bars stacked by severity, on a count axis."""
    channels = (*report.channels, report.overall)
    axis = number_axis(max(c.breaches.total for c in channels))
    plot = _CHART_WIDTH - _LABEL_WIDTH - _VALUE_WIDTH - 16
    bottom = _TOP + _ROW_HEIGHT * len(channels)
    out = [
        svg_open(
            _CHART_WIDTH, bottom + 24, w("Breaches per channel by severity"), "chart-breaches"
        ),
        f'<text x="0" y="16" font-weight="600">{e(w("Breaches by severity"))}</text>',
        axis_marks(
            axis,
            left=_LABEL_WIDTH,
            width=plot,
            top=_TOP - 6,
            bottom=bottom,
            label=lambda value: w.number(round(value)),
        ),
    ]
    legend_x = _CHART_WIDTH - 250
    for severity in SEVERITIES:
        out.append(
            f'<rect x="{legend_x}" y="8" width="12" height="10" '
            f'fill="{_SEVERITY_COLOURS[severity]}" />'
            f'<text x="{legend_x + 16}" y="17">{e(w(SEVERITY_NAMES[severity]))}</text>'
        )
        legend_x += 80
    for index, channel in enumerate(channels):
        name = _name(channel, w)
        y = _TOP + index * _ROW_HEIGHT
        out.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"<title>{e(name)}</title>{e(_short(name))}</text>"
        )
        done = 0
        for severity in SEVERITIES:
            count = channel.breaches.of(severity)
            if not count:
                continue
            left = _LABEL_WIDTH + plot * axis.position(done)
            done += count
            width = _LABEL_WIDTH + plot * axis.position(done) - left
            what = w(SEVERITY_NAMES[severity])
            out.append(
                f'<rect class="mark" x="{left:.1f}" y="{y + 2}" width="{width:.1f}" '
                f'height="18" fill="{_SEVERITY_COLOURS[severity]}" data-value="{count}">'
                f"<title>{e(name)}: {count} {e(what)}</title></rect>"
            )
        b = channel.breaches
        text = w(
            "{total} ({minor} minor, {major} major, {critical} critical)",
            total=w.number(b.total),
            minor=w.number(b.minor),
            major=w.number(b.major),
            critical=w.number(b.critical),
        )
        out.append(
            f'<text x="{_CHART_WIDTH - _VALUE_WIDTH + 6}" y="{y + 15}" fill="#3e4c59">'
            f"{e(text)}</text>"
        )
    out.append("</svg>")
    caption = w(
        "Each bar is a channel's recorded breaches, minor, major and critical stacked; the "
        "axis counts breaches."
    )
    return f"<figure>{''.join(out)}<figcaption>{e(caption)}</figcaption></figure>"
