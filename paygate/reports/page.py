"""What every HTML report shares: the style sheet, escaping, tables that scroll inside their own
box, and chart axes.

Invariants: every value put on a page goes through :func:`e` (escaped for text and attributes);
a table is always wrapped in a box that scrolls sideways (``.scroll``), so a wide table never
widens the page; a chart draws its marks (``class="mark"``, each with the
``data-value`` it stands for) inside its plot area (``class="plot"``, with its axis' ``data-top``),
whose axis is scaled to cover them (:mod:`paygate.reports.axis`): a reader, or a test, can check
every mark's length against its value.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable

from paygate.reports.axis import Axis

__all__ = ["CSS", "axis_marks", "e", "row", "svg_open", "table", "td", "thead"]

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
  "WenQuanYi Zen Hei", "PingFang SC", "Microsoft YaHei", sans-serif; color: #1f2933;
  margin: 2rem auto; max-width: 84rem; padding: 0 1.25rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #d9dee4;
  padding-bottom: .25rem; }
.sub { color: #52606d; margin: 0; overflow-wrap: anywhere; }
.headline { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: center; margin: 1.5rem 0;
  padding: 1rem 1.25rem; border-radius: 6px; background: #f0f4f8; }
.headline .rate { font-size: 2.6rem; font-weight: 700; }
.headline > div { flex: 1 1 18rem; min-width: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.2rem 0; }
.card { flex: 1 1 12rem; padding: .8rem 1rem; border-radius: 6px; background: #f0f4f8; }
.card .big { font-size: 1.8rem; font-weight: 700; }
.good { color: #1b7a3d; } .warn { color: #a05a00; } .bad { color: #b3261e; }
.scroll { overflow-x: auto; max-width: 100%; margin: .5rem 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .3rem .45rem; border-bottom: 1px solid #e4e7eb; text-align: right;
  white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child, td.text { text-align: left; }
td.text { white-space: normal; min-width: 6rem; max-width: 24rem; overflow-wrap: anywhere; }
tr.total td { font-weight: 600; border-top: 2px solid #9aa5b1; }
figure { margin: 1rem 0 1.5rem; }
svg { display: block; max-width: 100%; height: auto; }
figcaption { color: #52606d; font-size: .9rem; }
dl { color: #3e4c59; } dt { font-weight: 600; margin-top: .6rem; } dd { margin-left: 1rem; }
@media (max-width: 60rem) { th { white-space: nowrap; } }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
  .scroll { overflow: visible; } }
"""
"""The style sheet of every report page."""

_AXIS_COLOUR = "#9aa5b1"
_GRID_COLOUR = "#e4e7eb"
_TICK_TEXT = "#52606d"


def e(value: object) -> str:
    """``value`` as text, escaped for an element's content and for a quoted attribute."""
    return html.escape(str(value), quote=True)


def td(value: object, css: str = "") -> str:
    """One cell, its text escaped, with an optional class."""
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{e(value)}</td>"


def row(cells: Iterable[str], *, css: str = "") -> str:
    """One table row of cells made by :func:`td`."""
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>" + "".join(cells) + "</tr>"


def thead(*names: str) -> str:
    """A header row, each name escaped."""
    return "<thead><tr>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr></thead>"


def table(head: str, rows: Iterable[str]) -> str:
    """A table in its own sideways-scrolling box: a wide table never widens the page."""
    return (
        '<div class="scroll"><table>' + head + "<tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def svg_open(width: int, height: int, label: str, key: str) -> str:
    """The opening of an inline chart: its size, and ``label`` as its accessible title."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{key}" '
        'font-family="system-ui, sans-serif" font-size="12">'
        f'<title id="{key}">{e(label)}</title>'
    )


def axis_marks(
    axis: Axis,
    *,
    left: float,
    width: float,
    top: float,
    bottom: float,
    label: Callable[[float], str],
) -> str:
    """The plot area ``left…left+width`` × ``top…bottom``: its box (``class="plot"``), a grid
    line and a labelled tick at every step of ``axis``, and the baseline."""
    out = [
        f'<rect class="plot" x="{left}" y="{top}" width="{width}" height="{bottom - top}" '
        f'fill="none" data-top="{axis.top:g}" />'
    ]
    for value in axis.ticks:
        x = left + width * axis.position(value)
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{_GRID_COLOUR}" '
            'stroke-width="1" />'
            f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle" fill="{_TICK_TEXT}">'
            f"{e(label(value))}</text>"
        )
    out.append(
        f'<line x1="{left}" y1="{bottom}" x2="{left + width}" y2="{bottom}" '
        f'stroke="{_AXIS_COLOUR}" stroke-width="1" />'
    )
    return "".join(out)
