"""``paygate report``: reports for operations, starting with the service report.

Invariant: a report only reads. It runs in one read-only transaction and never changes an
order, a breach or the ledger. A file given with ``--output`` appears whole or not at all: the
report is computed and rendered first, written to a temporary file beside it, then renamed over
it, so a failed run never leaves a half-written report for someone to send on.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). Errors (a bad date, a period that ends before it starts, an
unreachable database, a file that cannot be written) are printed as one line naming the
problem, exit code 2.
"""

from __future__ import annotations

import io
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from paygate.cli._common import AsJson, DatabaseUrl, config_for, guard, out, parse_day
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.reports import (
    ServiceReport,
    render_csv,
    render_html,
    render_json,
    render_table,
    service_report,
)
from paygate.reports.i18n import LANGS, Words

__all__ = ["ReportFormat", "reports_app"]


reports_app = typer.Typer(
    help="Reports for operations: the service report of supply orders against the promise.",
    no_args_is_help=True,
)


# Declared here rather than imported from paygate.cli: that module mounts this one.

# A table written to a file or a pipe is not wrapped to a terminal: wide enough for every
# column.
FILE_TABLE_WIDTH = 200


class ReportFormat(StrEnum):
    """How a report is written."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


def _render(report: ServiceReport, fmt: ReportFormat, lang: str) -> str:
    if fmt is ReportFormat.CSV:
        buffer = io.StringIO(newline="")
        render_csv(report, buffer)
        return buffer.getvalue()
    if fmt is ReportFormat.JSON:
        return render_json(report)
    if fmt is ReportFormat.HTML:
        return render_html(report, lang=lang)
    buffer = io.StringIO()
    Console(file=buffer, width=FILE_TABLE_WIDTH, color_system=None).print(render_table(report))
    return buffer.getvalue()


def _language(value: str) -> str:
    try:
        return Words(value).lang
    except InvalidInputError as exc:
        raise InvalidInputError(exc.message, field="--lang") from None


@reports_app.command(
    "service",
    epilog="Example: paygate report service --from 2026-11-01 --to 2026-11-30 --format html "
    "--lang zh-CN --output service.html",
)
def service(
    first: Annotated[
        str,
        typer.Option(
            "--from",
            help="First day of the period, YYYY-MM-DD (utility's zone).",
            show_default=False,
        ),
    ],
    last: Annotated[
        str,
        typer.Option(
            "--to", help="Last day of the period, YYYY-MM-DD, inclusive.", show_default=False
        ),
    ],
    fmt: Annotated[ReportFormat, typer.Option("--format", help="Output format.")] = (
        ReportFormat.TABLE
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write the report to FILE instead of the terminal."),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            help=f"Language of the HTML page: {', '.join(LANGS)} (default: \\[reports] lang).",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Orders created in the period: time per step, on-time rates and breaches, per channel."""

    def run() -> tuple[ServiceReport, str]:
        # Dates and language first: a mistyped one should not open (or create) a database.
        start = parse_day(first, "--from")
        end = parse_day(last, "--to")
        if end < start:
            raise InvalidInputError(
                f"the period ends ({end}) before it starts ({start})", field="--to"
            )
        if lang is not None:
            _language(lang)
        config = config_for(database_url)
        chosen = lang if lang is not None else config.reports.lang
        with Gateway.open(settings=config.settings) as gateway:
            return service_report(gateway, start=start, end=end), chosen

    report, chosen = guard(run)
    if as_json:
        fmt = ReportFormat.JSON
    if output is None:
        if fmt is ReportFormat.TABLE and out.is_terminal:
            out.print(render_table(report))
        else:  # piped, a table too is written whole, as to a file: never cut to 80 columns
            typer.echo(_render(report, fmt, chosen), nl=False)
        return
    text = _render(report, fmt, chosen)

    def write() -> None:
        partial = output.with_name(f".{output.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as stream:
                stream.write(text)
            os.replace(partial, output)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise InvalidInputError(
                f"cannot write {output}: {exc.strerror}", field="--output"
            ) from None

    guard(write)
    out.print(
        f"service report {report.start} to {report.end} ({fmt.value}) written to {output}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
