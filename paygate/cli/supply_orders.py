"""``paygate supply-orders``: list supply orders, confirm a work order, retry a failed order.

A supply order is a reconnection order or a disconnection order (its kind).
"""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.cli._common import (
    Actor,
    After,
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Limit,
    Listing,
    OutputFormat,
    actor_name,
    chosen_format,
    emit,
    guard,
    int_cursor,
    out,
    page,
    settings_for,
)
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.supply import OrderStatus, list_orders

__all__ = ["supply_orders_app"]

supply_orders_app = typer.Typer(
    help="Supply orders: reconnection and disconnection orders.", no_args_is_help=True
)


ORDER_COLUMNS = (
    Column("id", "ORDER"),
    Column("kind", "kind"),
    Column("status", "status"),
    Column("account_no", "account"),
    Column("created_at", "created"),
    Column("due_at", "due"),
    Column("dispatched_at", "dispatched"),
    Column("acknowledged_at", "acknowledged"),
    Column("completed_at", "completed"),
    Column("attempts", "attempts"),
    Column("last_error", "last error"),
)


@supply_orders_app.command(
    "list", epilog="Example: paygate supply-orders list --status failed --limit 50 --json"
)
def supply_orders_list(
    database_url: DatabaseUrl = None,
    status: Annotated[
        str | None, typer.Option(help=", ".join(s.value for s in OrderStatus))
    ] = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """List supply orders, oldest first, with their deadlines and progress."""

    def run() -> Listing:
        if status is not None and status not in set(OrderStatus):
            # A mistyped status would list nothing and look like "no such orders".
            known = ", ".join(s.value for s in OrderStatus)
            raise InvalidInputError(f"{status!r} is not a status ({known})", field="--status")
        start = int_cursor(after)
        more = None if limit is None else limit + 1
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            orders = gateway.store.run(
                lambda tx: list_orders(tx, status=status, limit=more, after=start), write=False
            )
            zone = gateway.settings.timezone
        shown, cursor = page(orders, limit, lambda o: str(o.id))
        rows: list[dict[str, Cell]] = [
            {
                "id": o.id,
                "kind": o.kind,
                "status": o.status.value,
                "account_no": o.account_no,
                "created_at": o.created_at,
                "due_at": o.due_at,
                "dispatched_at": o.dispatched_at,
                "acknowledged_at": o.acknowledged_at,
                "completed_at": o.completed_at,
                "attempts": o.attempts,
                # What a head-end answered: text, never markup or escapes.
                "last_error": o.last_error,
            }
            for o in shown
        ]
        return Listing(ORDER_COLUMNS, rows, zone, next=cursor)

    emit(guard(run), chosen_format(as_json, fmt))


@supply_orders_app.command(
    "confirm", epilog="Example: paygate supply-orders confirm 42 --actor crew-7"
)
def supply_orders_confirm(
    order_id: int,
    database_url: DatabaseUrl = None,
    actor: Actor = None,
) -> None:
    """Confirm that a supply order's work order was carried out: supply restored (or cut)."""
    from paygate.headend.base import HeadEndOutcome

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            status = gateway.record_order_progress(
                order_id, HeadEndOutcome.COMPLETED, actor=actor_name(actor)
            )
        out.print(f"order {order_id}: {status.value}")

    guard(run)


@supply_orders_app.command("retry", epilog="Example: paygate supply-orders retry 42")
def supply_orders_retry(order_id: int, database_url: DatabaseUrl = None) -> None:
    """Put a failed supply order back in the dispatch queue."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            gateway.retry_order(order_id)
        out.print(f"order {order_id} queued again")

    guard(run)
