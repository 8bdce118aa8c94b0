"""Reconciliation reports: every finding as CSV or JSON, and a page for finance (HTML).

Invariants: a report only reads; findings are streamed page by page into the output, so a run
of a million findings is written in constant memory; every string that came from a statement or
a person is escaped (HTML) or defused (CSV: text that a spreadsheet would run as a formula gets
a leading apostrophe); amounts are exact decimals of their currency, never floats. The HTML page
is self-contained: no script, no external asset, the chart is inline SVG. It is written in
Chinese or English with the service report's words, number formatter, scales and style
(:mod:`paygate.reports.i18n`, :mod:`paygate.reports.page`), and its totals per class add up to
the gross they are shown beside (:func:`statement_totals`).
"""

from __future__ import annotations

import csv
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
    ClassTotal,
    Finding,
    FindingClass,
    FindingStatus,
    ReconciliationRun,
    RunKind,
)
from paygate.reconcile.runs import findings
from paygate.reports.axis import number_axis
from paygate.reports.i18n import DEFAULT_LANG, Words, format_amount
from paygate.reports.page import CSS, axis_marks, e, svg_open, td, thead
from paygate.reports.page import row as html_row
from paygate.reports.page import table as html_table

__all__ = [
    "CSV_COLUMNS",
    "MATCHED_CLASSES",
    "apart_totals",
    "check_report_path",
    "render_csv",
    "render_html",
    "render_json",
    "statement_totals",
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
    "signed_statement",
    "signed_ledger",
    "difference",
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
    resolution, signed = f.resolution, f.signed
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
        _amount(signed.statement),
        _amount(signed.ledger),
        _amount(signed.difference),
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


_MORE = "… and {more} more: every finding is in the CSV or JSON report."
_MATCHED_COLOUR = "#2f6690"
_UNMATCHED_COLOUR = "#e4572e"


def _count_class(value: int, when_some: str) -> str:
    # The colour follows the figure it colours: none is good news, some is ``when_some``.
    return "good" if value == 0 else when_some


def _state(run: ReconciliationRun) -> tuple[str, str]:
    if run.superseded_by is not None:
        return "superseded", "warn"
    if run.fully_reconciled:
        return "fully reconciled", "good"
    return "open findings remain", "bad"


def _cards(runs: Sequence[ReconciliationRun], w: Words) -> str:
    open_findings = sum(r.open_findings for r in runs)
    pending = sum(r.pending for r in runs)
    suspense = sum(r.in_suspense for r in runs)
    lines = sum(r.line_count for r in runs)
    cards = (
        (open_findings, _count_class(open_findings, "bad"), w("open findings")),
        (suspense, _count_class(suspense, "warn"), w("items in suspense")),
        (pending, "", w("pending (within grace days)")),
        (lines, "", w("statement lines and bank entries")),
    )
    return (
        '<section class="cards">'
        + "".join(
            f'<div class="card"><div class="big {css}">{e(w.number(value))}</div>{e(label)}</div>'
            for value, css, label in cards
        )
        + "</section>"
    )


def _bank_leg(run: ReconciliationRun, w: Words) -> str:
    if run.kind is RunKind.BANK:
        return w("bank statement")
    if run.settlement is not None:
        return w(
            "settled {net} on {day}",
            net=w.money(run.settlement.net),
            day=run.settlement.value_date or "?",
        )
    return w("not settled yet (due {day})", day=run.settlement_date)


def _runs_table(runs: Sequence[ReconciliationRun], w: Words) -> str:
    rows = []
    for run in runs:
        state, css = _state(run)
        rows.append(
            html_row(
                [
                    td(run.channel),
                    td(run.business_date),
                    td(run.id),
                    td(Path(run.source).name if run.source else "", "text"),
                    td(w.number(run.line_count)),
                    td(w.money(run.gross)),
                    td(w.money(run.fees)),
                    td(w.money(run.net)),
                    td(
                        w.number(run.open_findings),
                        _count_class(run.open_findings, "bad"),
                    ),
                    td(w.number(run.in_suspense), _count_class(run.in_suspense, "warn")),
                    td(w.number(run.pending)),
                    td(_bank_leg(run, w), "text"),
                    td(w(state), css + " text"),
                ]
            )
        )
    head = thead(
        w("channel"),
        w("business date"),
        w("run"),
        w("file"),
        w("lines"),
        w("gross"),
        w("fees"),
        w("net"),
        w("open findings"),
        w("suspense"),
        w("pending"),
        w("bank leg"),
        w("state"),
    )
    return html_table(head, rows)


_APART_FROM_GROSS = frozenset(
    {FindingClass.ONLY_IN_LEDGER, FindingClass.BANK_DEBIT, FindingClass.BANK_UNBALANCED}
)
"""Classes that are no line (or credit) of the statement, and so no part of its gross."""


def statement_totals(run: ReconciliationRun) -> dict[FindingClass, ClassTotal]:
    """The count and signed amount of each class over what makes the run's gross.

    For a channel statement, its lines: a payment counts positive, a refund, void or reversal
    negative, as in the gross; so the classes add up to :attr:`ReconciliationRun.gross` exactly
    (a line has one class). For a bank statement, its credits (the gross of a bank run). The
    amounts are the run's own :attr:`~ReconciliationRun.totals`
    (:func:`paygate.reconcile.engine.class_totals`); what is no part of the gross is in
    :func:`apart_totals`.
    """
    return {c: t for c, t in run.totals.items() if c not in _APART_FROM_GROSS}


def apart_totals(run: ReconciliationRun) -> dict[FindingClass, ClassTotal]:
    """The count and amount of each class that is no part of the run's gross: for a channel
    statement, the findings about no line of it (payments, reversals (negative) and money in
    suspense only the ledger has, at their ledger amounts); for a bank statement, its debits
    (negative) and the differences of statements that do not balance (their sizes)."""
    return {c: t for c, t in run.totals.items() if c in _APART_FROM_GROSS}


def _totals_table(runs: Sequence[ReconciliationRun], w: Words) -> str:
    sides = [(run, statement_totals(run), apart_totals(run)) for run in runs]
    shown = [c for c in FindingClass if any(c in own for _, own, _ in sides)]
    apart = [c for c in FindingClass if any(c in other for _, _, other in sides)]
    head = thead(
        w("channel"),
        w("business date"),
        *(w(CLASS_TITLES[c][0]) for c in shown),
        w("sum of the classes (= gross)"),
        *(w("{title} (not in the gross)", title=w(CLASS_TITLES[c][0])) for c in apart),
    )
    rows = []
    for run, own, other in sides:
        cells = [td(run.channel), td(run.business_date)]
        for klass in shown:
            total = own.get(klass)
            cells.append(
                td("" if total is None else f"{w.number(total.count)} · {w.money(total.amount)}")
            )
        whole = sum((t.amount for t in own.values()), Money(0, run.currency))
        cells.append(td(w.money(whole)))
        for klass in apart:
            total = other.get(klass)
            cells.append(
                td("" if total is None else f"{w.number(total.count)} · {w.money(total.amount)}")
            )
        rows.append(html_row(cells))
    return html_table(head, rows)


def _split(run: ReconciliationRun) -> tuple[int, int]:
    # Bars are sizes: each class's signed total without its sign.
    matched = sum(abs(t.amount.minor) for c, t in run.totals.items() if c in MATCHED_CLASSES)
    unmatched = sum(abs(t.amount.minor) for c, t in run.totals.items() if c not in MATCHED_CLASSES)
    return matched, unmatched


def _chart(runs: Sequence[ReconciliationRun], w: Words) -> str:
    """Matched and unmatched amounts per channel day, as pairs of horizontal bars on an amount
    axis that runs to a round figure at or above the largest of them."""
    width, label, value, row_height, top = 880, 190, 210, 46, 34
    plot = width - label - value - 12
    splits = [(run, *_split(run)) for run in runs]
    axis = number_axis(max([0, *(max(m, u) for _, m, u in splits)]), most=4)
    currencies = {run.currency for run in runs}
    currency = next(iter(currencies)) if len(currencies) == 1 else None
    bottom = top + row_height * len(splits) + 4
    not_matched = w("not matched (absolute amounts)")
    out = [
        svg_open(width, bottom + 24, w("Matched and unmatched amounts by channel"), "chart-title"),
        f'<rect x="{label}" y="6" width="12" height="10" fill="{_MATCHED_COLOUR}" />'
        f'<text x="{label + 16}" y="15">{e(w("matched"))}</text>'
        f'<rect x="{label + 110}" y="6" width="12" height="10" fill="{_UNMATCHED_COLOUR}" />'
        f'<text x="{label + 126}" y="15">{e(not_matched)}</text>',
        axis_marks(
            axis,
            left=label,
            width=plot,
            top=top - 6,
            bottom=bottom,
            label=lambda minor: (
                w.money(Money(round(minor), currency), whole=True)
                if currency is not None
                else w.number(round(minor))
            ),
        ),
    ]
    for index, (run, matched, unmatched) in enumerate(splits):
        y = top + index * row_height
        name = f"{run.channel} {run.business_date}"
        shown = name if len(name) <= 28 else name[:27] + "…"
        out.append(
            f'<text x="{label - 8}" y="{y + 19}" text-anchor="end"><title>{e(name)}</title>'
            f"{e(shown)}</text>"
        )
        for offset, amount, colour, what in (
            (0, matched, _MATCHED_COLOUR, w("matched")),
            (20, unmatched, _UNMATCHED_COLOUR, w("not matched")),
        ):
            text = w.money(Money(amount, run.currency))
            bar = plot * axis.position(amount)
            out.append(
                f'<rect class="mark" x="{label}" y="{y + offset}" width="{bar:.1f}" height="16" '
                f'fill="{colour}" data-value="{amount}">'
                f"<title>{e(f'{name} {what}: {text}')}</title></rect>"
                f'<text x="{label + bar + 6:.1f}" y="{y + offset + 12}" fill="#3e4c59">'
                f"{e(text)}</text>"
            )
    out.append("</svg>")
    caption = w(
        "Amounts per channel day (statement amounts; ledger amounts for what only the ledger "
        "has). Currencies differ between days only when the channels do."
    )
    return f"<figure>{''.join(out)}<figcaption>{e(caption)}</figcaption></figure>"


def _finding_id(run: ReconciliationRun, f: Finding, w: Words) -> str:
    # Money in suspense is known by its item number, as `paygate suspense list` shows it.
    if f.suspense_item is None:
        return f"{run.id}:{f.seq}"
    if f.status is FindingStatus.SUSPENSE:
        return w("suspense item {item}", item=f.suspense_item)
    return w("{run}:{seq} (suspense item {item})", run=run.id, seq=f.seq, item=f.suspense_item)


def _findings_table(
    gateway: Books, runs: Sequence[ReconciliationRun], w: Words, *, open_only: bool
) -> str:
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
            state = (
                w("in suspense")
                if f.status is FindingStatus.SUSPENSE
                else ("" if f.due_on is None else str(f.due_on))
            )
            signed = f.signed
            rows.append(
                html_row(
                    [
                        td(f"{run.channel} {run.business_date}", "text"),
                        td(_finding_id(run, f, w)),
                        td(w(CLASS_TITLES[f.finding_class][0]), "text"),
                        td(
                            subject
                            if f.line_no is None
                            else w(
                                "{subject} (line {line})", subject=subject, line=w.number(f.line_no)
                            ),
                            "text",
                        ),
                        td(f.account_no or ""),
                        td("" if signed.statement is None else w.money(signed.statement)),
                        td("" if signed.ledger is None else w.money(signed.ledger)),
                        td(w.money(signed.difference)),
                        td(state),
                        td(f.note or "", "text"),
                    ]
                )
            )
    if not rows:
        return f'<p class="sub">{e(w("None."))}</p>'
    tail = (
        '<p class="sub">'
        + e(
            w("… and {more} more: every finding is in the CSV or JSON report.", more=w.number(more))
        )
        + "</p>"
        if more
        else ""
    )
    head = thead(
        w("channel day"),
        w("finding"),
        w("class"),
        w("transaction / reference"),
        w("account"),
        w("statement"),
        w("ledger"),
        w("difference"),
        w("due / state"),
        w("note"),
    )
    return html_table(head, rows) + tail


def _definitions(w: Words) -> str:
    items = "".join(
        f"<dt>{e(w(title))}</dt><dd>{e(w(text))}</dd>" for title, text in CLASS_TITLES.values()
    )
    figures = (
        (
            "Gross",
            "Payments less refunds, voids and reversals on the statement (for a bank "
            "statement, its credits). The totals per class count a refund, void or reversal as "
            "negative, so the statement's classes add up to the gross; what only the ledger "
            "has, bank debits and the differences of bank statements that do not balance are "
            "no part of it, and are shown apart.",
        ),
        (
            "Statement, ledger, difference",
            "A finding's money with its direction: a payment positive, a refund, void or "
            "reversal negative (money back to the customer). For a refund the ledger shows the "
            "original payment's reversal, or 0.00 while the original is still posted, so the "
            "difference shows the money that left and the ledger has not given back.",
        ),
        ("Fees", "What the channel keeps: the statement's fees, refunds' fees less."),
        ("Net", "What the channel settles to the utility's bank account: gross less fees."),
        (
            "Open findings",
            "Findings that wait for a person now; red when there are any. Items in suspense are "
            "money from lines that named no known account.",
        ),
    )
    items += "".join(f"<dt>{e(w(t))}</dt><dd>{e(w(text))}</dd>" for t, text in figures)
    return f"<dl>{items}</dl>"


def render_html(
    gateway: Books,
    runs: Sequence[ReconciliationRun],
    out: TextIO,
    *,
    lang: str = DEFAULT_LANG,
) -> None:
    """A page for finance: state per channel day, totals per class, a chart, the open findings.

    ``lang`` is ``"zh-CN"`` (the default) or ``"en"``; amounts are grouped, with their currency.
    """
    w = Words(lang)
    days = sorted({r.business_date for r in runs})
    when = w(", ").join(str(d) for d in days) or w("no run")
    as_of = max((r.as_of for r in runs), default=None)
    out.write(
        "\n".join(
            [
                "<!DOCTYPE html>",
                f'<html lang="{w.lang}">',
                "<head>",
                '<meta charset="utf-8" />',
                '<meta name="viewport" content="width=device-width, initial-scale=1" />',
                f"<title>{e(w('Reconciliation, {when}', when=when))}</title>",
                f"<style>{CSS}</style>",
                "</head>",
                "<body>",
                "<header>",
                f"<h1>{e(w('Reconciliation: {when}', when=when))}</h1>",
                '<p class="sub">'
                + e(
                    w(
                        "Each channel statement and bank statement against the ledger, as of "
                        "{as_of}. Open findings wait for a person; pending items are still "
                        "inside their channel's grace days.",
                        as_of=as_of or "",
                    )
                )
                + "</p>",
                "</header>",
                _cards(runs, w),
                f"<h2>{e(w('Runs'))}</h2>",
                _runs_table(runs, w),
                f"<h2>{e(w('Totals per class'))}</h2>",
                _totals_table(runs, w),
                f"<h2>{e(w('Matched and unmatched amounts by channel'))}</h2>",
                _chart(runs, w),
                f"<h2>{e(w('Open findings'))}</h2>",
                _findings_table(gateway, runs, w, open_only=True),
                f"<h2>{e(w('Pending and in suspense'))}</h2>",
                _findings_table(gateway, runs, w, open_only=False),
                f"<h2>{e(w('What each figure and class means'))}</h2>",
                _definitions(w),
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


def write_report(
    gateway: Books,
    runs: Sequence[ReconciliationRun],
    path: str | Path,
    *,
    lang: str = DEFAULT_LANG,
) -> None:
    """Write the report the file's suffix names (.html, .csv, .json), whole or not at all.

    ``lang`` (``"zh-CN"`` or ``"en"``) is the HTML page's language; CSV and JSON are data, the
    same in every language.
    """
    target = Path(path)
    check_report_path(target)
    words = Words(lang)  # a wrong language is refused before anything is written
    render = _RENDERERS[target.suffix.lower()]
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            if render is render_html:
                render_html(gateway, runs, stream, lang=words.lang)
            else:
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
            bank = f"bank leg settled {format_amount(run.settlement.net)}"
        else:
            bank = f"bank leg open (due {run.settlement_date})"
        state, _ = _state(run)
        headers = ["class", "count", f"amount ({run.currency})"]
        rows = [
            [CLASS_TITLES[klass][0], f"{total.count:,}", format_amount(total.amount)]
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
                f"{state}: {run.open_findings:,} open "
                f"finding{'' if run.open_findings == 1 else 's'}, "
                f"{run.in_suspense:,} in suspense, "
                f"{run.pending:,} pending; {bank}\n"
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
        f"{format_amount(f.amount)} {f.amount.currency}" + (f" ({f.note})" if f.note else "")
        for f in findings(gateway, run.id, classes=[FindingClass.BANK_UNBALANCED], as_of=run.as_of)
    ]
    return Text("\n".join(terminal_text(line) for line in lines) + "\n")
