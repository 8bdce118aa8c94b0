"""``paygate accounts``: what a customer account owes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from paygate.billing_file import read_accounts
from paygate.cli._common import DatabaseUrl, guard, out, parse_day, settings_for
from paygate.cli._import import import_file
from paygate.gateway import Gateway

__all__ = ["accounts_app"]

accounts_app = typer.Typer(help="Customer accounts: open them, look at them.", no_args_is_help=True)


@accounts_app.command("status")
def accounts_status(
    account_no: str,
    database_url: DatabaseUrl = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Show what an account owes: arrears, late fee, bills, supply state."""

    def run() -> None:
        day = parse_day(as_of, "--as-of") if as_of else None
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            status = gateway.account_status(account_no, day)
        out.print(
            f"account {status.account_no} ({status.category.value}), supply "
            f"{status.supply_state.value}, as of {status.as_of}\n"
            f"balance {status.balance}  arrears {status.arrears}  late fee {status.late_fee}  "
            f"credit {status.credit}"
        )
        table = Table("bill", "period", "due", "amount", "principal due", "late fee", "overdue")
        for bill in status.bills:
            fee = bill.late_fee_charged - bill.late_fee_paid + bill.late_fee_accrued
            table.add_row(
                bill.bill_no,
                bill.period,
                str(bill.due_date),
                bill.amount.format(),
                bill.principal_due.format(),
                fee.format(),
                "yes" if bill.overdue else "",
            )
        out.print(table)

    guard(run)


@accounts_app.command("import")
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
