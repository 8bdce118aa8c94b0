"""``paygate dunning``: notices served, disconnection candidates, disconnection orders."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from paygate.cli._common import DatabaseUrl, guard, out, settings_for
from paygate.gateway import Gateway

__all__ = ["dunning_app"]

dunning_app = typer.Typer(help="Notices and disconnection candidates.", no_args_is_help=True)


@dunning_app.command("notice")
def dunning_notice(
    account_no: str,
    database_url: DatabaseUrl = None,
    final: Annotated[bool, typer.Option(help="The final reminder, not the first notice.")] = False,
    served_by: str = "operator",
) -> None:
    """Record that a written notice (or the final reminder) was served."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            gateway.serve_notice(
                account_no, "final_reminder" if final else "notice", served_by=served_by
            )
        out.print(f"{'final reminder' if final else 'notice'} recorded for {account_no}")

    guard(run)


@dunning_app.command("candidates")
def dunning_candidates(database_url: DatabaseUrl = None) -> None:
    """Accounts the dunning policy allows to be disconnected now (never protected ones)."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            candidates = gateway.disconnection_candidates()
        table = Table("account", "arrears", "oldest due", "notice", "final reminder")
        for c in candidates:
            table.add_row(
                c.account_no,
                str(c.arrears),
                str(c.oldest_due_date),
                c.notice_served_at.isoformat(timespec="minutes"),
                c.final_reminder_at.isoformat(timespec="minutes") if c.final_reminder_at else "",
            )
        out.print(table)

    guard(run)


@dunning_app.command("order")
def dunning_order(
    account_no: str,
    approved_by: Annotated[str, typer.Option(help="Who approved the disconnection.")],
    database_url: DatabaseUrl = None,
    negotiated: Annotated[
        bool, typer.Option(help="A negotiated order (required for protected accounts).")
    ] = False,
) -> None:
    """Order the disconnection of a candidate account."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            order_id = gateway.order_disconnection(
                account_no, approved_by=approved_by, negotiated=negotiated
            )
        out.print(f"disconnection order {order_id} for {account_no}")

    guard(run)
