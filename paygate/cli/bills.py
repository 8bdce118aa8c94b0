"""``paygate bills``: the monthly billing run from a CSV file."""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.billing_file import read_bills
from paygate.cli._common import DatabaseUrl, guard, settings_for
from paygate.cli._import import import_file
from paygate.gateway import Gateway

__all__ = ["bills_app"]

bills_app = typer.Typer(help="Issue bills: the billing run.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@bills_app.command("import", epilog="Example: paygate bills import bills-2026-11.csv --json")
def bills_import(
    file: Annotated[str, typer.Argument(help="CSV file with a header line, or - for stdin.")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue every bill of a CSV file (account_no, bill_no, amount, period, due_date, and
    currency where it is not the settings' one).

    The whole file is checked first: a malformed line refuses the file, naming its line and
    field, and nothing is written (exit 2). Then each bill is created, replayed (issued
    before with the same data), a conflict (same bill number, other data) or refused (unknown
    account, other currency); conflicts and refusals are listed (exit 1). Running the same
    file again is safe: what was issued is replayed.
    """
    settings = settings_for(database_url)
    with guard(lambda: Gateway.open(settings=settings)) as gateway:
        import_file(
            file,
            what="bills",
            read=lambda lines, name: read_bills(lines, currency=settings.currency, source=name),
            write=lambda bills, progress: gateway.issue_bills(
                bills, keep_keys=False, progress=progress
            ),
            as_json=as_json,
        )
