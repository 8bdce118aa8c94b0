"""``paygate supply-orders``: list supply orders, confirm a work order, retry a failed order.

A supply order is a reconnection order or a disconnection order (its kind).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from paygate.cli._common import Actor, DatabaseUrl, actor_name, guard, out, settings_for
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.reconcile.report import terminal_text
from paygate.supply import OrderStatus, list_orders

__all__ = ["supply_orders_app"]

supply_orders_app = typer.Typer(
    help="Supply orders: reconnection and disconnection orders.", no_args_is_help=True
)


@supply_orders_app.command("list")
def supply_orders_list(
    database_url: DatabaseUrl = None,
    status: Annotated[
        str | None, typer.Option(help=", ".join(s.value for s in OrderStatus))
    ] = None,
) -> None:
    """List supply orders with their deadlines and progress."""

    def run() -> None:
        if status is not None and status not in set(OrderStatus):
            # A mistyped status would list nothing and look like "no such orders".
            known = ", ".join(s.value for s in OrderStatus)
            raise InvalidInputError(f"{status!r} is not a status ({known})", field="--status")
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            orders = gateway.store.run(lambda tx: list_orders(tx, status=status), write=False)
        # One line an order, whole (no table to truncate it): operators grep this.
        for order in orders:
            # The error quotes what a head-end answered: text, never markup or escapes.
            out.print(
                f"{order.id}\t{order.kind}\t{order.status.value}\t"
                f"{terminal_text(order.account_no)}\t"
                f"created {_stamp(order.created_at)}\tdue {_stamp(order.due_at)}\t"
                f"attempts {order.attempts}"
                + (f"\t{terminal_text(order.last_error)}" if order.last_error else ""),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    guard(run)


@supply_orders_app.command("confirm")
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


@supply_orders_app.command("retry")
def supply_orders_retry(order_id: int, database_url: DatabaseUrl = None) -> None:
    """Put a failed supply order back in the dispatch queue."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            gateway.retry_order(order_id)
        out.print(f"order {order_id} queued again")

    guard(run)


def _stamp(instant: datetime) -> str:
    # UTC as stored, in the one form both databases print alike.
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
