"""Sending refund orders through their routes, and settling them on the provider's answer.

One pass (:func:`dispatch_refunds`) takes the orders that are due, oldest first, and for each:

1. counts the attempt and schedules the next one (capped exponential backoff), committed
   *before* the provider is called: a crash after the call leaves the order marked as
   attempted, and a second dispatcher that read the same order finds the count moved and
   leaves it alone;
2. asks the provider: an order never attempted is submitted; an order attempted before — a
   crash, an unreachable provider, or one already accepted — is first *queried*, and
   submitted again only while the provider still calls it pending (the provider
   de-duplicates on the refund id, so a repeated submission never pays twice);
3. records the answer, each in one transaction: ``succeeded`` and ``failed`` settle the order
   (:meth:`~paygate.refunds.service.Refunds.settle`: the ledger entries, the events);
   ``pending`` makes it ``submitted``, asked again at its next attempt.

An unreachable provider (:class:`~paygate.refunds.route.RefundRouteUnavailable`) never fails
an order: nothing is known about the refund, and returning the money to the customer while
the provider may have paid it would pay twice. The order keeps its state and is tried again,
for as long as it takes; when its attempts reach ``alert_after`` a ``refund.alert`` event says
a person should look (and settle it with ``complete_refund`` / ``fail_refund`` once the
provider's own records say how it ended).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from paygate.backoff import Jitter, backoff
from paygate.errors import PaygateError
from paygate.records import Writes, event, queue_events
from paygate.refunds import orders
from paygate.refunds.model import RefundOrderState, RefundPass
from paygate.refunds.orders import OrderRow
from paygate.refunds.route import RefundOutcome, RefundRoute, RefundRouteUnavailable, RefundState
from paygate.refunds.service import Refunds
from paygate.store.engine import Store, Tx

__all__ = ["RefundDesk", "dispatch_refunds"]

log = logging.getLogger(__name__)


class RefundDesk(Protocol):
    """What a pass needs of the gateway: the refund orders' owner."""

    @property
    def refunds(self) -> Refunds:
        """The refund orders' owner (its store and clock too)."""
        ...


def dispatch_refunds(
    gateway: RefundDesk,
    routes: Mapping[str, RefundRoute],
    now: datetime | None = None,
    *,
    limit: int = 50,
    retry_base: timedelta = timedelta(seconds=30),
    retry_cap: timedelta = timedelta(hours=1),
    alert_after: int = 10,
    jitter: Jitter | None = None,
) -> RefundPass:
    """One pass over the refund orders due at ``now`` (default: the gateway's clock): at most
    ``limit`` of them, each submitted or queried through ``routes`` (by route name) and its
    answer recorded. Whatever one route raises is recorded against that order alone."""
    if limit < 1 or alert_after < 1 or retry_base <= timedelta(0) or retry_cap < retry_base:
        raise ValueError("limit and alert_after must be positive, 0 < retry_base <= retry_cap")
    when = gateway.refunds.clock.now() if now is None else now
    result = RefundPass()
    due = gateway.refunds.store.run(lambda tx: orders.due_orders(tx, when, limit), write=False)
    for refund_id in due:
        _one(gateway, routes, refund_id, when, result, retry_base, retry_cap, alert_after, jitter)
    return result


def _one(
    gateway: RefundDesk,
    routes: Mapping[str, RefundRoute],
    refund_id: str,
    now: datetime,
    result: RefundPass,
    retry_base: timedelta,
    retry_cap: timedelta,
    alert_after: int,
    jitter: Jitter | None,
) -> None:
    store = gateway.refunds.store
    order = store.run(lambda tx: orders.load_order(tx, refund_id), write=False)
    if order is None or order.state.final:
        return
    attempt = order.attempts + 1
    next_at = now + backoff(attempt, base=retry_base, cap=retry_cap, jitter=jitter)

    def claim(tx: Tx) -> bool:
        current = orders.load_order(tx, refund_id, lock=True)
        if current is None or current.state.final or current.attempts != order.attempts:
            return False  # settled, or taken by another dispatcher, since it was read
        orders.record_attempt(tx, order.id, attempts=attempt, next_attempt_at=next_at, now=now)
        if attempt == alert_after:
            writes = Writes()
            event(
                tx,
                writes,
                "refund.alert",
                order.account_no,
                now,
                {"refund_id": refund_id, "route": order.route, "attempts": attempt},
            )
            queue_events(tx, writes.events)
            result.alerts.append(refund_id)
        return True

    if not store.run(claim):
        return
    route = routes.get(order.route)
    if route is None:
        _note(store, order, f"refund route {order.route!r} is not configured")
        result.errors.append(refund_id)
        return
    try:
        outcome = _ask(route, order)
    except RefundRouteUnavailable as exc:
        _note(store, order, f"{type(exc).__name__}: {exc}")
        result.unavailable += 1
        return
    except Exception as exc:  # one route's fault must not stop the pass
        log.exception("refund %s: route %s raised unexpectedly", refund_id, order.route)
        _note(store, order, f"{type(exc).__name__}: {exc}")
        result.errors.append(refund_id)
        return
    try:
        _record(gateway.refunds, store, order, outcome, next_at, now, result)
    except PaygateError as exc:  # settled the other way meanwhile (complete/fail by a person)
        log.error("refund %s: the provider's answer was not recorded: %s", refund_id, exc)
        _note(store, order, f"answer not recorded: {exc}")
        result.errors.append(refund_id)


def _ask(route: RefundRoute, order: OrderRow) -> RefundOutcome:
    request = order.request()
    if order.attempts == 0 and order.state is RefundOrderState.PENDING:
        return route.submit(request)
    outcome = route.query(request)
    if outcome.state is RefundState.PENDING and order.state is RefundOrderState.PENDING:
        # Attempted before without an answer: the provider de-duplicates on the refund id.
        return route.submit(request)
    return outcome


def _record(
    refunds: Refunds,
    store: Store,
    order: OrderRow,
    outcome: RefundOutcome,
    next_at: datetime,
    now: datetime,
    result: RefundPass,
) -> None:
    if outcome.state is RefundState.SUCCEEDED:
        refunds.settle(
            order.refund_id, RefundOrderState.SUCCEEDED, outcome.provider_reference, None, None
        )
        result.succeeded += 1
    elif outcome.state is RefundState.FAILED:
        refunds.settle(
            order.refund_id,
            RefundOrderState.FAILED,
            None,
            (outcome.failure_code or "failed")[:64],
            outcome.failure_message or "",
        )
        result.failed += 1
    else:

        def submitted(tx: Tx) -> None:
            current = orders.load_order(tx, order.refund_id, lock=True)
            if current is not None and not current.state.final:
                orders.record_submitted(
                    tx,
                    order.id,
                    provider_reference=outcome.provider_reference,
                    next_attempt_at=next_at,
                    now=now,
                )

        store.run(submitted)
        result.submitted += 1


def _note(store: Store, order: OrderRow, error: str) -> None:
    store.run(lambda tx: orders.record_error(tx, order.id, error))
