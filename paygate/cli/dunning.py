"""``paygate dunning``: notices served, disconnection candidates, disconnection orders."""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.cli._common import (
    After,
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Limit,
    Listing,
    OutputFormat,
    chosen_format,
    emit,
    guard,
    out,
    page,
    settings_for,
)
from paygate.gateway import Gateway

__all__ = ["dunning_app"]

dunning_app = typer.Typer(help="Notices and disconnection candidates.", no_args_is_help=True)


@dunning_app.command(
    "notice", epilog="Example: paygate dunning notice 3100000001 --served-by meter-reader-4"
)
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


CANDIDATE_COLUMNS = (
    Column("account_no", "account"),
    Column("arrears", "arrears"),
    Column("oldest_due_date", "oldest due"),
    Column("notice_served_at", "notice"),
    Column("final_reminder_at", "final reminder"),
)


@dunning_app.command("candidates", epilog="Example: paygate dunning candidates --format csv")
def dunning_candidates(
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """Accounts the dunning policy allows to be disconnected now (never protected ones), by
    account number."""

    def run() -> Listing:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            candidates = gateway.disconnection_candidates()
            zone = gateway.settings.timezone
        ordered = sorted(candidates, key=lambda c: c.account_no)
        if after is not None:
            ordered = [c for c in ordered if c.account_no > after]
        shown, cursor = page(ordered, limit, lambda c: c.account_no)
        rows: list[dict[str, Cell]] = [
            {
                "account_no": c.account_no,
                "arrears": c.arrears,
                "oldest_due_date": c.oldest_due_date,
                "notice_served_at": c.notice_served_at,
                "final_reminder_at": c.final_reminder_at,
            }
            for c in shown
        ]
        return Listing(CANDIDATE_COLUMNS, rows, zone, next=cursor)

    emit(guard(run), chosen_format(as_json, fmt))


@dunning_app.command(
    "order", epilog="Example: paygate dunning order 3100000001 --approved-by ops-lead"
)
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
