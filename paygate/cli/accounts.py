"""``paygate accounts``: what a customer account owes."""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.billing_file import read_accounts
from paygate.cli._common import (
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Listing,
    OutputFormat,
    chosen_format,
    emit,
    guard,
    parse_day,
    settings_for,
)
from paygate.cli._import import import_file
from paygate.gateway import Gateway

__all__ = ["accounts_app"]

accounts_app = typer.Typer(help="Customer accounts: open them, look at them.", no_args_is_help=True)


BILL_COLUMNS = (
    Column("bill_no", "bill"),
    Column("period", "period"),
    Column("due_date", "due"),
    Column("amount", "amount"),
    Column("principal_due", "principal due"),
    Column("late_fee", "late fee"),
    Column("overdue", "overdue"),
)


@accounts_app.command(
    "status", epilog="Example: paygate accounts status 3100000001 --as-of 2026-11-30 --json"
)
def accounts_status(
    account_no: str,
    database_url: DatabaseUrl = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
) -> None:
    """Show what an account owes: arrears, late fee, bills, supply state."""

    def run() -> Listing:
        day = parse_day(as_of, "--as-of") if as_of else None
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            status = gateway.account_status(account_no, day)
            zone = gateway.settings.timezone
        head: dict[str, Cell] = {
            "account_no": status.account_no,
            "category": status.category.value,
            "supply_state": status.supply_state.value,
            "as_of": status.as_of,
            "balance": status.balance,
            "arrears": status.arrears,
            "late_fee": status.late_fee,
            "credit": status.credit,
        }
        rows: list[dict[str, Cell]] = [
            {
                "bill_no": bill.bill_no,
                "period": bill.period,
                "due_date": bill.due_date,
                "amount": bill.amount,
                "principal_due": bill.principal_due,
                "late_fee": bill.late_fee_charged - bill.late_fee_paid + bill.late_fee_accrued,
                "overdue": bill.overdue,
            }
            for bill in status.bills
        ]
        return Listing(BILL_COLUMNS, rows, zone, head=head)

    emit(guard(run), chosen_format(as_json, fmt))


@accounts_app.command(
    "import",
    epilog="Example: paygate accounts import accounts-2026-11.csv --json",
)
def accounts_import(
    file: Annotated[str, typer.Argument(help="CSV file with a header line, or - for stdin.")],
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Open every account of a CSV file (account_no, category, prepaid, protected, name,
    currency; only account_no required).

    The whole file is checked first: a malformed line refuses the file, naming its line and
    field, and nothing is written (exit 2). Then each account is created, replayed (open
    already with the same attributes) or a conflict (open with other attributes), and the
    conflicts are listed (exit 1). Running the same file again is safe.
    """
    settings = settings_for(database_url)
    with guard(lambda: Gateway.open(settings=settings)) as gateway:
        import_file(
            file,
            what="accounts",
            read=lambda lines, name: read_accounts(lines, source=name),
            write=lambda accounts, progress: gateway.open_accounts(
                accounts, keep_keys=False, progress=progress
            ),
            as_json=as_json,
        )
