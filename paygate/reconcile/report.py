"""Reconciliation reports: every finding as CSV or JSON, and a page for finance (HTML).

Invariants: a report only reads; findings are streamed page by page into the output, so a run
of a million findings is written in constant memory; every string that came from a statement or
a person is escaped (HTML) or defused (CSV: text that a spreadsheet would run as a formula gets
a leading apostrophe); amounts are exact decimals of their currency, never floats. The HTML page
is self-contained: no script, no external asset, the chart is inline SVG.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Group
from rich.table import Column, Table
from rich.text import Text

from paygate.errors import InvalidInputError
from paygate.money import Money
from paygate.reconcile.books import Books
from paygate.reconcile.model import (
    Finding,
    FindingClass,
    FindingStatus,
    ReconciliationRun,
    RunKind,
)
from paygate.reconcile.runs import findings

__all__ = [
    "CSV_COLUMNS",
    "MATCHED_CLASSES",
    "check_report_path",
    "render_csv",
    "render_html",
    "render_json",
    "summary_table",
    "terminal_text",
    "unbalanced_statements",
    "write_report",
]

CSV_COLUMNS = (
    "run_id",
    "channel",
    "business_date",
    "finding",
    "class",
    "status",
    "open_finding",
    "line_no",
    "kind",
    "channel_txn_id",
    "original_txn_id",
    "account_no",
    "occurred_at",
    "amount",
    "ledger_amount",
    "currency",
    "payment_id",
    "due_on",
    "value_date",
    "reference",
    "note",
    "resolution",
    "resolved_by",
    "resolved_at",
    "suspense_item",
)

MATCHED_CLASSES = frozenset(
    {FindingClass.MATCHED, FindingClass.REVERSAL_MATCHED, FindingClass.SETTLEMENT_MATCHED}
)
"""Classes whose money agrees between the statement and the ledger (or the bank)."""

CLASS_TITLES: dict[FindingClass, tuple[str, str]] = {
    FindingClass.MATCHED: (
        "Matched",
        "The statement line and the ledger payment agree.",
    ),
    FindingClass.REVERSAL_MATCHED: (
        "Refund or reversal matched",
        "A refund, void or reversal line whose original payment the ledger has reversed.",
    ),
    FindingClass.ONLY_IN_STATEMENT: (
        "Only in the statement",
        "The channel took money the ledger does not have. A known account is posted as a "
        "late payment; an unknown one goes to suspense; a refund the ledger has not reversed "
        "waits for a person (reverse or confirm).",
    ),
    FindingClass.ONLY_IN_LEDGER: (
        "Only in the ledger",
        "The ledger has a payment (or a reversal, or money in suspense) the statement does not "
        "show. Pending through the channel's grace days; after them an open finding: reverse it "
        "or confirm it. Never reversed automatically.",
    ),
    FindingClass.AMOUNT_MISMATCH: (
        "Amount mismatch",
        "The same transaction with a different amount or currency: an open finding for a person.",
    ),
    FindingClass.OTHER_BUSINESS_DATE: (
        "Another business day",
        "A line whose time, or whose payment in the ledger, is of another business day than "
        "the run's. A payment is matched by its own day's run only: an open finding for a person; "
        "never posted late or put in suspense.",
    ),
    FindingClass.DUPLICATE_IN_STATEMENT: (
        "Duplicate in the statement",
        "A transaction listed again: an open finding for a person; never posted twice.",
    ),
    FindingClass.SETTLEMENT_MATCHED: (
        "Settlement matched",
        "A bank credit that is a channel day's net settlement: clearing closed, fees posted.",
    ),
    FindingClass.SETTLEMENT_MISMATCH: (
        "Settlement mismatch",
        "A bank credit whose reference names a channel day that should settle another amount.",
    ),
    FindingClass.BANK_UNMATCHED: (
        "Bank credit unmatched",
        "Money on the bank statement no channel settlement accounts for (yet).",
    ),
    FindingClass.BANK_DEBIT: (
        "Bank debit",
        "Money out of the utility's bank account (a bank charge, a returned credit): nothing "
        "posts it automatically; finance books it and confirms the finding.",
    ),
    FindingClass.BANK_UNBALANCED: (
        "Bank statement does not balance",
        "Opening balance plus entries is not the closing balance the bank states.",
    ),
}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HTML_OPEN_FINDINGS_LIMIT = 500


# C0 and C1 controls and DEL: a line break or tab would split a one-line-per-item listing, and
# an escape sequence would drive the reader's terminal.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_text(value: str) -> str:
    """``value`` safe to print on a terminal: each control character shown as its escape.

    Statement text (references, details, notes) comes from outside and is not trusted.
    """
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)


def _text(value: str | None) -> str:
    # A spreadsheet runs a cell that starts like a formula; statement text is not trusted.
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _amount(money: Money | None) -> str:
    return "" if money is None else money.format()


def _csv_row(run: ReconciliationRun, f: Finding) -> list[str]:
    resolution = f.resolution
    return [
        str(run.id),
        run.channel,
        run.business_date.isoformat(),
        str(f.seq),
        f.finding_class.value,
        f.status.value,
        "yes" if f.open_finding else "",
        "" if f.line_no is None else str(f.line_no),
        "" if f.kind is None else f.kind.value,
        _text(f.channel_txn_id),
        _text(f.original_txn_id),
        _text(f.account_no),
        "" if f.occurred_at is None else f.occurred_at.isoformat(),
        _amount(f.amount),
        _amount(f.ledger_amount),
        f.amount.currency,
        "" if f.payment_id is None else str(f.payment_id),
        "" if f.due_on is None else f.due_on.isoformat(),
        "" if f.value_date is None else f.value_date.isoformat(),
        _text(f.reference),
        _text(f.note),
        "" if resolution is None else resolution.action.value,
        "" if resolution is None else _text(resolution.actor),
        "" if resolution is None else resolution.at.isoformat(),
        "" if f.suspense_item is None else str(f.suspense_item),
    ]


def render_csv(gateway: Books, runs: Sequence[ReconciliationRun], out: TextIO) -> None:
    """Every finding of ``runs``, one CSV row each, with a header."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for run in runs:
        for finding in findings(gateway, run.id, as_of=run.as_of):
            writer.writerow(_csv_row(run, finding))


def _run_json(run: ReconciliationRun) -> dict[str, Any]:
    data = run.model_dump(mode="json")
    data["fully_reconciled"] = run.fully_reconciled
    # Deprecated key, kept for the scripts docs/finance.md documents: open_findings.
    data["exceptions"] = run.open_findings
    return data


def _finding_json(finding: Finding) -> dict[str, Any]:
    data = finding.model_dump(mode="json")
    # Deprecated key, kept for the scripts docs/finance.md documents: open_finding.
    data["exception"] = finding.open_finding
    return data


def render_json(gateway: Books, runs: Sequence[ReconciliationRun], out: TextIO) -> None:
    """``{"runs": [{…run…, "findings": […]}, …]}``; findings streamed, amounts in minor units."""
    out.write('{"runs": [')
    for index, run in enumerate(runs):
        head = json.dumps(_run_json(run), ensure_ascii=False)
        out.write(("," if index else "") + "\n" + head[:-1] + ', "findings": [')
        for number, finding in enumerate(findings(gateway, run.id, as_of=run.as_of)):
            text = json.dumps(_finding_json(finding), ensure_ascii=False)
            out.write(("," if number else "") + "\n  " + text)
        out.write("\n]}")
    out.write("\n]}\n")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC",
  "Microsoft YaHei", sans-serif; color: #1f2933; margin: 2rem auto; max-width: 74rem;
  padding: 0 1.25rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #d9dee4;
  padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
.sub { color: #52606d; margin: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.2rem 0; }
.card { flex: 1 1 15rem; padding: .8rem 1rem; border-radius: 6px; background: #f0f4f8; }
.card .big { font-size: 1.8rem; font-weight: 700; }
.good { color: #1b7a3d; } .warn { color: #a05a00; } .bad { color: #b3261e; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #e4e7eb; text-align: right;
  white-space: nowrap; }
th { background: #f5f7fa; font-weight: 600; }
th:first-child, td:first-child, td.text { text-align: left; }
td.text { white-space: normal; max-width: 28rem; overflow-wrap: anywhere; }
figure { margin: 1rem 0 1.5rem; }
svg { max-width: 100%; height: auto; }
figcaption { color: #52606d; font-size: .9rem; }
dl { color: #3e4c59; } dt { font-weight: 600; margin-top: .6rem; } dd { margin-left: 1rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""

_MATCHED_COLOUR = "#2f6690"
_UNMATCHED_COLOUR = "#e4572e"


def _thead(*names: str) -> str:
    return "<thead><tr>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr></thead>"


def _td(value: object, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{_e(value)}</td>"


def _state(run: ReconciliationRun) -> tuple[str, str]:
    if run.superseded_by is not None:
        return "superseded", "warn"
    if run.fully_reconciled:
        return "fully reconciled", "good"
    return "open findings remain", "bad"


def _cards(runs: Sequence[ReconciliationRun]) -> str:
    open_findings = sum(r.open_findings for r in runs)
    pending = sum(r.pending for r in runs)
    suspense = sum(r.in_suspense for r in runs)
    lines = sum(r.line_count for r in runs)
    css = "good" if open_findings == 0 and suspense == 0 else "bad"
    return (
        '<section class="cards">'
        f'<div class="card"><div class="big {css}">{open_findings}</div>open findings</div>'
        f'<div class="card"><div class="big">{suspense}</div>items in suspense</div>'
        f'<div class="card"><div class="big">{pending}</div>pending (within grace days)</div>'
        f'<div class="card"><div class="big">{lines:,}</div>statement lines and bank entries'
        "</div></section>"
    )


def _runs_table(runs: Sequence[ReconciliationRun]) -> str:
    rows = []
    for run in runs:
        state, css = _state(run)
        if run.kind is RunKind.BANK:
            bank = "bank statement"
        elif run.settlement is not None:
            bank = f"settled {run.settlement.net.format()} on {run.settlement.value_date or '?'}"
        else:
            bank = f"not settled yet (due {run.settlement_date})"
        rows.append(
            "<tr>"
            + _td(run.channel)
            + _td(run.business_date)
            + _td(run.id)
            + _td(Path(run.source).name if run.source else "")
            + _td(f"{run.line_count:,}")
            + _td(f"{run.gross.format()} {run.currency}")
            + _td(run.fees.format())
            + _td(run.net.format())
            + _td(run.open_findings)
            + _td(run.in_suspense)
            + _td(run.pending)
            + _td(bank, "text")
            + _td(state, css)
            + "</tr>"
        )
    return (
        "<table>"
        + _thead(
            "channel",
            "business date",
            "run",
            "file",
            "lines",
            "gross",
            "fees",
            "net",
            "open findings",
            "suspense",
            "pending",
            "bank leg",
            "state",
        )
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _totals_table(runs: Sequence[ReconciliationRun]) -> str:
    present = [c for c in FindingClass if any(c in r.totals for r in runs)]
    head = _thead("channel", "business date", *(CLASS_TITLES[c][0] for c in present))
    rows = []
    for run in runs:
        cells = [_td(run.channel), _td(run.business_date)]
        for klass in present:
            total = run.totals.get(klass)
            cells.append(_td("" if total is None else f"{total.count:,} · {total.amount.format()}"))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + head + "<tbody>" + "".join(rows) + "</tbody></table>"


def _split(run: ReconciliationRun) -> tuple[int, int]:
    matched = sum(t.amount.minor for c, t in run.totals.items() if c in MATCHED_CLASSES)
    unmatched = sum(abs(t.amount.minor) for c, t in run.totals.items() if c not in MATCHED_CLASSES)
    return matched, unmatched


def _chart(runs: Sequence[ReconciliationRun]) -> str:
    """Matched and unmatched amounts per channel day, as pairs of horizontal bars."""
    width, label, value, row = 880, 190, 210, 46
    plot = width - label - value - 12
    splits = [(run, *_split(run)) for run in runs]
    scale = max([1, *(max(m, u) for _, m, u in splits)])
    top = 34
    height = top + row * len(splits) + 14
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title" '
        'font-family="system-ui, sans-serif" font-size="12">'
        '<title id="chart-title">Matched and unmatched amounts by channel</title>'
        f'<rect x="{label}" y="6" width="12" height="10" fill="{_MATCHED_COLOUR}" />'
        f'<text x="{label + 16}" y="15">matched</text>'
        f'<rect x="{label + 90}" y="6" width="12" height="10" fill="{_UNMATCHED_COLOUR}" />'
        f'<text x="{label + 106}" y="15">not matched (absolute amounts)</text>'
    ]
    for index, (run, matched, unmatched) in enumerate(splits):
        y = top + index * row
        name = f"{run.channel} {run.business_date}"
        shown = name if len(name) <= 28 else name[:27] + "…"
        out.append(
            f'<text x="{label - 8}" y="{y + 19}" text-anchor="end"><title>{_e(name)}</title>'
            f"{_e(shown)}</text>"
        )
        for offset, amount, colour, what in (
            (0, matched, _MATCHED_COLOUR, "matched"),
            (20, unmatched, _UNMATCHED_COLOUR, "not matched"),
        ):
            text = f"{Money(amount, run.currency).format()} {run.currency}"
            bar = plot * amount / scale
            out.append(
                f'<rect x="{label}" y="{y + offset}" width="{bar:.1f}" height="16" '
                f'fill="{colour}"><title>{_e(f"{name} {what}: {text}")}</title></rect>'
                f'<text x="{label + bar + 6:.1f}" y="{y + offset + 12}" fill="#3e4c59">'
                f"{_e(text)}</text>"
            )
    out.append("</svg>")
    caption = (
        "Amounts per channel day (statement amounts; ledger amounts for what only the ledger "
        "has). Currencies differ between days only when the channels do."
    )
    return f"<figure>{''.join(out)}<figcaption>{_e(caption)}</figcaption></figure>"


def _finding_id(run: ReconciliationRun, f: Finding) -> str:
    # Money in suspense is known by its item number, as `paygate suspense list` shows it.
    if f.suspense_item is None:
        return f"{run.id}:{f.seq}"
    if f.status is FindingStatus.SUSPENSE:
        return f"suspense item {f.suspense_item}"
    return f"{run.id}:{f.seq} (suspense item {f.suspense_item})"


def _findings_table(gateway: Books, runs: Sequence[ReconciliationRun], *, open_only: bool) -> str:
    rows: list[str] = []
    more = 0
    for run in runs:
        if open_only:
            found: Iterable[Finding] = findings(
                gateway, run.id, open_findings_only=True, as_of=run.as_of
            )
        else:
            found = (
                f
                for f in findings(
                    gateway,
                    run.id,
                    classes=[FindingClass.ONLY_IN_LEDGER, FindingClass.ONLY_IN_STATEMENT],
                    as_of=run.as_of,
                )
                if f.status in (FindingStatus.OPEN, FindingStatus.SUSPENSE) and not f.open_finding
            )
        for f in found:
            if len(rows) >= _HTML_OPEN_FINDINGS_LIMIT:
                more += 1
                continue
            subject = f.channel_txn_id or f.reference or f.line_key
            rows.append(
                "<tr>"
                + _td(f"{run.channel} {run.business_date}")
                + _td(_finding_id(run, f))
                + _td(CLASS_TITLES[f.finding_class][0])
                + _td("" if f.line_no is None else f.line_no)
                + _td(subject, "text")
                + _td(f.account_no or "")
                + _td(f"{f.amount.format()} {f.amount.currency}")
                + _td("" if f.ledger_amount is None else f.ledger_amount.format())
                + _td("in suspense" if f.status is FindingStatus.SUSPENSE else (f.due_on or ""))
                + _td(f.note or "", "text")
                + "</tr>"
            )
    if not rows:
        return '<p class="sub">None.</p>'
    tail = (
        f'<p class="sub">… and {more:,} more: every finding is in the CSV or JSON report.</p>'
        if more
        else ""
    )
    return (
        "<table>"
        + _thead(
            "channel day",
            "finding",
            "class",
            "line",
            "transaction / reference",
            "account",
            "amount",
            "ledger",
            "due / state",
            "note",
        )
        + "<tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + tail
    )


def _definitions() -> str:
    items = "".join(
        f"<dt>{_e(title)}</dt><dd>{_e(text)}</dd>" for title, text in CLASS_TITLES.values()
    )
    return f"<dl>{items}</dl>"


def render_html(gateway: Books, runs: Sequence[ReconciliationRun], out: TextIO) -> None:
    """A page for finance: state per channel day, totals per class, a chart, the open findings."""
    days = sorted({r.business_date for r in runs})
    when = ", ".join(str(d) for d in days) or "no run"
    as_of = max((r.as_of for r in runs), default=None)
    out.write(
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8" />',
                '<meta name="viewport" content="width=device-width, initial-scale=1" />',
                f"<title>{_e(f'Reconciliation, {when}')}</title>",
                f"<style>{_CSS}</style>",
                "</head>",
                "<body>",
                "<header>",
                f"<h1>Reconciliation: {_e(when)}</h1>",
                f'<p class="sub">Each channel statement and bank statement against the ledger, '
                f"as of {_e(as_of or '')}. Open findings wait for a person; pending items are "
                "still inside their channel's grace days.</p>",
                "</header>",
                _cards(runs),
                "<h2>Runs</h2>",
                _runs_table(runs),
                "<h2>Totals per class</h2>",
                _totals_table(runs),
                "<h2>Matched and unmatched amounts by channel</h2>",
                _chart(runs),
                "<h2>Open findings</h2>",
                _findings_table(gateway, runs, open_only=True),
                "<h2>Pending and in suspense</h2>",
                _findings_table(gateway, runs, open_only=False),
                "<h2>What each class means</h2>",
                _definitions(),
                "</body>",
                "</html>",
            ]
        )
        + "\n"
    )


_RENDERERS: dict[str, Callable[[Books, Sequence[ReconciliationRun], TextIO], None]] = {
    ".html": render_html,
    ".htm": render_html,
    ".csv": render_csv,
    ".json": render_json,
}


def check_report_path(path: str | Path) -> None:
    """Refuse a report path that cannot be written: an unknown suffix, a missing or read-only
    folder, a folder in its place. Checked before a run decides anything."""
    target = Path(path)
    if target.suffix.lower() not in _RENDERERS:
        raise InvalidInputError(f"{target.name}: a report is .html, .csv or .json", field="report")
    folder = target.parent
    if target.is_dir():
        raise InvalidInputError(f"cannot write {target}: it is a folder", field="report")
    if not folder.is_dir():
        raise InvalidInputError(f"cannot write {target}: no folder {folder}", field="report")
    if not os.access(folder, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise InvalidInputError(f"cannot write {target}: permission denied", field="report")


def write_report(gateway: Books, runs: Sequence[ReconciliationRun], path: str | Path) -> None:
    """Write the report the file's suffix names (.html, .csv, .json), whole or not at all."""
    target = Path(path)
    check_report_path(target)
    render = _RENDERERS[target.suffix.lower()]
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            render(gateway, runs, stream)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {target}: {exc.strerror}", field="report") from None


def summary_table(runs: Sequence[ReconciliationRun]) -> Group:
    """The terminal summary: per run, count and amount of each class and what waits for people.

    Narrow on purpose (three columns a run), so that it reads in an 80-column terminal.
    """
    parts: list[Text | Table] = []
    for run in runs:
        title = f"{run.channel} {run.business_date} · run {run.id}"
        if run.replayed:
            title += " (same file)"
        if run.supersedes is not None:
            title += f" · supersedes run {run.supersedes}"
        if run.kind is RunKind.BANK:
            bank = "bank statement"
        elif run.settlement is not None:
            bank = f"bank leg settled {run.settlement.net.format()}"
        else:
            bank = f"bank leg open (due {run.settlement_date})"
        state, _ = _state(run)
        headers = ["class", "count", f"amount ({run.currency})"]
        rows = [
            [CLASS_TITLES[klass][0], f"{total.count:,}", total.amount.format()]
            for klass in FindingClass
            if (total := run.totals.get(klass)) is not None
        ] or [["(no lines, no payments)", "0", "0"]]
        # Each column as wide as its widest cell: however narrow the terminal, an amount is
        # never shortened (the terminal wraps the line instead).
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        table = Table(
            *(
                Column(h, min_width=w, overflow="fold")
                for h, w in zip(headers, widths, strict=True)
            ),
            width=sum(widths) + 3 * len(widths) + 1,
        )
        for row in rows:
            table.add_row(*row)
        parts += [
            Text(title, style="bold"),
            table,
            Text(
                f"{state}: {run.open_findings} open "
                f"finding{'' if run.open_findings == 1 else 's'}, "
                f"{run.in_suspense} in suspense, "
                f"{run.pending} pending; {bank}\n"
            ),
        ]
    return Group(*parts)


def unbalanced_statements(gateway: Books, run: ReconciliationRun) -> Text | None:
    """One line per bank statement that does not balance, with its own difference.

    The summary table adds the differences' sizes into one figure per class; the finance
    officer correcting a file needs each statement's own figure and sign.
    """
    if run.kind is not RunKind.BANK or FindingClass.BANK_UNBALANCED not in run.totals:
        return None
    lines = [
        f"{f.reference or 'a statement'} does not balance by "
        f"{f.amount.format()} {f.amount.currency}" + (f" ({f.note})" if f.note else "")
        for f in findings(gateway, run.id, classes=[FindingClass.BANK_UNBALANCED], as_of=run.as_of)
    ]
    return Text("\n".join(terminal_text(line) for line in lines) + "\n")
