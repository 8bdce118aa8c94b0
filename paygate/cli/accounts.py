"""``paygate accounts``: what a customer account owes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from paygate.cli._common import DatabaseUrl, guard, out, parse_day, settings_for
from paygate.gateway import Gateway

__all__ = ["accounts_app"]

accounts_app = typer.Typer(help="Look at customer accounts.", no_args_is_help=True)


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
