"""``paygate refunds``: refund orders (退费) and where each stands.

A refund order is raised by ``Gateway.refund`` (or an account's closure) and settled through
its route by ``paygate dispatch``; docs/refunds.md has the states and the ledger entries.
"""

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
    int_cursor,
    page,
    settings_for,
)
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.refunds.model import RefundOrderState

__all__ = ["refunds_app"]

refunds_app = typer.Typer(
    help="Refund orders: credit paid back to customers.", no_args_is_help=True
)

REFUND_COLUMNS = (
    Column("refund_id", "REFUND"),
    Column("account_no", "account"),
    Column("amount", "amount"),
    Column("route", "route"),
    Column("state", "state"),
    Column("original_channel_txn_id", "paid by"),
    Column("requested_at", "requested"),
    Column("finished_at", "finished"),
    Column("attempts", "attempts"),
    Column("provider_reference", "provider ref"),
    Column("failure", "failure"),
    Column("last_error", "last error"),
)


@refunds_app.command("list", epilog="Example: paygate refunds list --state pending --json")
def refunds_list(
    database_url: DatabaseUrl = None,
    state: Annotated[
        str | None, typer.Option(help=", ".join(s.value for s in RefundOrderState))
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's refunds.")] = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """List refund orders, oldest first, with their state at the provider."""

    def run() -> Listing:
        if state is not None and state not in set(RefundOrderState):
            known = ", ".join(s.value for s in RefundOrderState)
            raise InvalidInputError(f"{state!r} is not a state ({known})", field="--state")
        start = int_cursor(after)
        more = None if limit is None else limit + 1
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            found = gateway.refund_orders(
                state=None if state is None else RefundOrderState(state),
                account_no=account,
                after=start,
                limit=more,
            )
            zone = gateway.settings.timezone
        shown, cursor = page(found, limit, lambda item: str(item[0]))
        rows: list[dict[str, Cell]] = [
            {
                "refund_id": r.refund_id,
                "account_no": r.account_no,
                "amount": r.amount,
                "route": r.route,
                "state": r.state.value,
                "original_channel_txn_id": r.original_channel_txn_id,
                "requested_at": r.requested_at,
                "finished_at": r.finished_at,
                "attempts": r.attempts,
                "provider_reference": r.provider_reference,
                "failure": None
                if r.failure_code is None
                else f"{r.failure_code}: {r.failure_message or ''}",
                "last_error": r.last_error,
            }
            for _, r in shown
        ]
        return Listing(REFUND_COLUMNS, rows, zone, next=cursor)

    emit(guard(run), chosen_format(as_json, fmt))
