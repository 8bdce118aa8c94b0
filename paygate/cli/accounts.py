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
    close_routes,
    config_for,
    emit,
    guard,
    out,
    parse_day,
    refund_routes_for,
    settings_for,
)
from paygate.cli._import import import_file
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.models import NewBill
from paygate.money import Money
from paygate.refunds.route import Payee

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


@accounts_app.command(
    "close",
    epilog="Example: paygate accounts close 3100000001 --closure-id CL-2026-0042 "
    '--reason "moved away" --final-bill B-202611 --final-amount 40.00 --final-period 2026-11 '
    "--final-due 2026-12-20",
)
def accounts_close(
    account_no: str,
    closure_id: Annotated[str, typer.Option(help="Your id for the closure; a retry is safe.")],
    reason: Annotated[str, typer.Option(help="Why the account is closed.")],
    database_url: DatabaseUrl = None,
    final_bill: Annotated[str | None, typer.Option(help="The final bill's number.")] = None,
    final_amount: Annotated[str | None, typer.Option(help="Its amount, such as 40.00.")] = None,
    final_period: Annotated[str | None, typer.Option(help="Its period, such as 2026-11.")] = None,
    final_due: Annotated[str | None, typer.Option(help="Its due date, YYYY-MM-DD.")] = None,
    refund_route: Annotated[
        str | None, typer.Option(help="The refund route for credit left (required then).")
    ] = None,
    payee_name: Annotated[str | None, typer.Option(help="A transfer's payee name.")] = None,
    payee_account: Annotated[str | None, typer.Option(help="The payee's account.")] = None,
    payee_bank: Annotated[str | None, typer.Option(help="The payee bank's code.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the closure as JSON.")] = False,
) -> None:
    """Close an account (销户): the final bill, credit applied, refused while anything is
    owed (each bill listed), credit left refunded through --refund-route (one refund order per
    payment refunded against, each listed), supply closed."""

    def run() -> None:
        configured = config_for(database_url)
        settings = configured.settings
        bill = None
        given = (final_bill, final_amount, final_period, final_due)
        if any(v is not None for v in given):
            if final_bill is None or final_amount is None or final_period is None:
                raise InvalidInputError(
                    "--final-bill, --final-amount, --final-period and --final-due go together",
                    field="--final-bill",
                )
            if final_due is None:
                raise InvalidInputError("the final bill's due date", field="--final-due")
            bill = NewBill(
                account_no=account_no,
                bill_no=final_bill,
                amount=Money.parse(final_amount, settings.currency),
                period=final_period,
                due_date=parse_day(final_due, "--final-due"),
            )
        payee = None
        if payee_name or payee_account or payee_bank:
            payee = Payee(payee_name or "", payee_account or "", payee_bank or "")
        routes = refund_routes_for(configured) if refund_route is not None else {}
        try:
            with Gateway.open(settings=settings) as gateway:
                gateway.use_refund_routes(routes)
                closed = gateway.close_account(
                    account_no,
                    closure_id=closure_id,
                    final_bill=bill,
                    refund_route=refund_route,
                    payee=payee,
                    reason=reason,
                )
        finally:
            close_routes(routes)
        if as_json:
            out.print_json(closed.model_dump_json())
            return
        again = " (replayed)" if closed.replayed else ""
        orders = closed.refunds
        tail = ""
        if orders:
            counted = "1 refund order" if len(orders) == 1 else f"{len(orders)} refund orders"
            tail = f"; {closed.refund_amount} refunded in {counted}:"
        out.print(f"account {closed.account_no} closed{again}{tail}", markup=False)
        for order in orders:
            against = (
                f"against {order.channel} payment {order.original_channel_txn_id}"
                if order.original_channel_txn_id is not None
                else f"to {order.payee_account_number}"
            )
            out.print(
                f"  {order.refund_id}  {order.amount}  {order.route}  {against}  "
                f"{order.state.value}",
                markup=False,
            )

    guard(run)
