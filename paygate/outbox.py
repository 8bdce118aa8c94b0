"""The transactional outbox and its dispatcher: supply orders to head-ends, events to sinks.

Events and orders are written in the transaction that caused them; this module delivers them
*at least once*. A dispatcher leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several dispatchers run side by side without taking the same row), delivers them outside any
database transaction, and records the result only while its lease still holds. A dispatcher
that dies mid-delivery loses its lease; the row is delivered again later with the same event id
(receivers deduplicate by it) or the same order idempotency key (head-ends act once).

Events of one account are delivered in the order they were written: an event is claimed only
with every earlier undelivered event of its account, ahead of it in the same pass, and when one
fails the account's later events wait for its retry. A dead-lettered event no longer holds its
account back (its ``outbox.dead_lettered`` alert says so); requeued, it goes first again.
Sinks receive each event as a CloudEvents envelope (:mod:`paygate.events`).

Failures are retried with capped exponential backoff and jitter. An event that keeps failing
is dead-lettered after ``max_attempts`` with an ``outbox.dead_lettered`` alert event, listed by
:func:`dead_letters` and put back by :func:`requeue`; an order is never given up (see
:mod:`paygate.supply`). Events are consumed only by a sink: with none configured they wait.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from paygate import records, supply
from paygate.backoff import Jitter, backoff
from paygate.clock import Clock
from paygate.config import Settings
from paygate.errors import (
    ConfigurationError,
    NotFoundError,
    PaygateError,
    UnsupportedOperationError,
)
from paygate.events import CONTENT_TYPE, DEFAULT_SOURCE, cloudevent, encode
from paygate.headend.base import HeadEnd, HeadEndRejected, HeadEndResult, HeadEndUnavailable
from paygate.records import EventRow
from paygate.refunds.dispatch import dispatch_refunds
from paygate.refunds.route import RefundRoute
from paygate.refunds.service import Refunds
from paygate.store.engine import Store, Tx
from paygate.supply import SupplyOrders

__all__ = [
    "CallbackSink",
    "DeadLetter",
    "DeliveryError",
    "DispatchReport",
    "Dispatcher",
    "EventSink",
    "OrderDesk",
    "WebhookSink",
    "dead_letters",
    "requeue",
]

log = logging.getLogger(__name__)


class OrderDesk(Protocol):
    """What the dispatcher needs of the core: the store, the clock, the settings and the
    supply orders (a :class:`~paygate.gateway.Gateway` is one)."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def supply(self) -> SupplyOrders: ...

    @property
    def refunds(self) -> Refunds: ...


class DeliveryError(PaygateError):
    """An event sink could not take an event now; it will be offered again."""

    code = "delivery_failed"


class EventSink(Protocol):
    """Where events go: a billing system's webhook, a message broker, an in-process callback.

    ``event`` is a CloudEvents envelope (:func:`paygate.events.cloudevent`). Returning means the
    event is safely taken (acknowledged by the receiver); anything else is a failed delivery,
    offered again later with the same ``id``.
    """

    name: str

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Take one event or raise DeliveryError; called again with the same ``id`` on retry."""
        ...


class CallbackSink:
    """Events to a function in the same process (a billing system that imports paygate)."""

    def __init__(self, callback: Callable[[Mapping[str, Any]], None], name: str = "callback"):
        self.name = name
        self._callback = callback

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Call the function; any exception it raises is a failed delivery, retried later."""
        try:
            self._callback(event)
        except Exception as exc:
            raise DeliveryError(f"callback {self.name} failed: {exc!r}") from exc


class WebhookSink:
    """Events POSTed as CloudEvents JSON (``application/cloudevents+json``), signed:
    ``X-Paygate-Signature`` = hex HMAC-SHA256 of ``timestamp + "." + body`` with the shared
    secret, ``X-Paygate-Timestamp`` in Unix seconds; ``X-Paygate-Event-Id`` (the envelope's
    ``id``) for dedup. Receivers check it all with :func:`paygate.events.verify_webhook`."""

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        *,
        name: str = "webhook",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._url = url
        self._secret = secret
        self._clock = clock
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def deliver(self, event: Mapping[str, Any]) -> None:
        """POST the event; 2xx is delivered, anything else is retried."""
        body = encode(event)
        stamp = str(int(self._clock()))
        signature = hmac.new(
            self._secret.get_secret_value().encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        try:
            response = self._client.post(
                self._url,
                content=body,
                headers={
                    "Content-Type": CONTENT_TYPE,
                    "X-Paygate-Event-Id": str(event.get("id")),
                    "X-Paygate-Timestamp": stamp,
                    "X-Paygate-Signature": signature,
                },
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{self.name}: HTTP {response.status_code}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, {self._url!r})"


@dataclass
class DispatchReport:
    """What one pass (or a drain of several passes) of the dispatcher did."""

    orders_attempted: int = 0
    orders_progressed: int = 0
    orders_retrying: int = 0
    orders_failed: int = 0
    events_delivered: int = 0
    events_retrying: int = 0
    events_dead: int = 0
    events_deferred: int = 0  # claimed, then left for the next pass when the budget ran out
    refunds_handled: int = 0  # refund orders sent or asked about (paygate.refunds.dispatch)
    breaches: list[tuple[int, supply.Step, supply.Severity]] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        """Nothing was due."""
        return not (
            self.orders_attempted
            or self.events_handled
            or self.events_deferred
            or self.refunds_handled
        )

    @property
    def events_handled(self) -> int:
        """Events offered to the sinks, whatever the outcome."""
        return self.events_delivered + self.events_retrying + self.events_dead

    def add(self, other: DispatchReport) -> None:
        """Count ``other``'s pass into this report."""
        self.orders_attempted += other.orders_attempted
        self.orders_progressed += other.orders_progressed
        self.orders_retrying += other.orders_retrying
        self.orders_failed += other.orders_failed
        self.events_delivered += other.events_delivered
        self.events_retrying += other.events_retrying
        self.events_dead += other.events_dead
        self.events_deferred += other.events_deferred
        self.refunds_handled += other.refunds_handled
        self.breaches += other.breaches


@dataclass(frozen=True)
class DeadLetter:
    """An event no sink took within ``max_attempts``: listed for a person, requeued by one."""

    event_id: int
    event_type: str
    account_no: str | None
    attempts: int
    dead_at: datetime
    last_error: str | None


class Dispatcher:
    """Delivers due supply orders to head-ends and outbox events to sinks."""

    def __init__(
        self,
        gateway: OrderDesk,
        *,
        headends: Mapping[str, HeadEnd],
        sinks: Sequence[EventSink] = (),
        default_headend: str | None = None,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=2),
        poll_interval: timedelta = timedelta(minutes=5),
        retry_base: timedelta = timedelta(seconds=30),
        retry_cap: timedelta = timedelta(hours=1),
        max_attempts: int = 12,
        alert_after: int = 10,
        event_budget: timedelta | None = None,
        source: str = DEFAULT_SOURCE,
        refund_routes: Mapping[str, RefundRoute] | None = None,
        jitter: Jitter | None = None,
    ) -> None:
        self.check(
            batch=batch,
            lease=lease,
            poll_interval=poll_interval,
            retry_base=retry_base,
            retry_cap=retry_cap,
            max_attempts=max_attempts,
            alert_after=alert_after,
            event_budget=event_budget,
        )
        self.gateway = gateway
        self.headends = dict(headends)
        self.sinks = list(sinks)
        self.source = source
        # Refund orders go through these (by route name) in every pass; none: not at all.
        self.refund_routes = dict(refund_routes or {})
        self.default_headend = default_headend or gateway.settings.default_headend
        self.batch = batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        # The retry backoff's random source (paygate.backoff): the system's unless given, as a
        # simulation gives a seeded one so that a seed replays its retries in the same order.
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.alert_after = alert_after
        # A sink that accepts connections and never answers costs its timeout per event: the
        # events of one pass stop after this long, so that the next pass's orders (the
        # service promise) never wait behind them, and a pass stays well inside its lease.
        self.event_budget = lease / 2 if event_budget is None else event_budget

    @staticmethod
    def check(
        *,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=2),
        poll_interval: timedelta = timedelta(minutes=5),
        retry_base: timedelta = timedelta(seconds=30),
        retry_cap: timedelta = timedelta(hours=1),
        max_attempts: int = 12,
        alert_after: int = 10,
        event_budget: timedelta | None = None,
    ) -> None:
        """Refuse timings and counts that cannot work (ConfigurationError, field named); the
        constructor and the ``[dispatcher]`` table of a dispatch configuration both use it."""
        for name, span in (
            ("lease", lease),
            ("poll_interval", poll_interval),
            ("retry_base", retry_base),
            ("retry_cap", retry_cap),
        ):
            if span <= timedelta(0):
                raise ConfigurationError(f"{name} must be positive", field=name)
        if retry_cap < retry_base:
            raise ConfigurationError("retry_cap must be at least retry_base", field="retry_cap")
        for name, count in (("batch", batch), ("max_attempts", max_attempts)):
            if count < 1:
                raise ConfigurationError(f"{name} must be at least 1", field=name)
        if alert_after < 1:
            raise ConfigurationError("alert_after must be at least 1", field="alert_after")
        if event_budget is not None and not timedelta(0) < event_budget < lease:
            raise ConfigurationError(
                "event_budget must be positive and shorter than the lease", field="event_budget"
            )

    # -- one pass -----------------------------------------------------------------------

    def dispatch_once(
        self, limit: int | None = None, *, due_by: datetime | None = None
    ) -> DispatchReport:
        """Attempt every due order, check deadlines, offer every due event once.

        Orders are attempted before deadlines are checked, and a deadline is judged by what
        the head-end last said (:meth:`~paygate.supply.SupplyOrders.check_deadlines` with
        this dispatcher's poll interval): a meter that finished before its deadline is never
        taken for a missed one. Each order and each event is handled on its own: whatever one
        head-end or sink raises is logged and recorded against that row alone (retried with
        backoff), and the pass goes on with the next. With ``due_by``, only rows due by then
        are taken.
        """
        room = self.batch if limit is None else min(self.batch, limit)
        report = DispatchReport()
        now = self.gateway.clock.now()
        token, order_ids = self.gateway.store.run(
            lambda tx: supply.claim_orders(tx, now, self.lease, room, due_by=due_by)
        )
        for order_id in order_ids:
            try:
                self._attempt_order(order_id, token, report)
            except Exception as exc:  # one order's fault must not stop the pass
                log.exception("supply order %s: delivery raised unexpectedly", order_id)
                self._order_crashed(order_id, token, exc, report)
        report.breaches = self.gateway.supply.check_deadlines(poll_interval=self.poll_interval)
        room -= len(order_ids) if limit is not None else 0
        if self.refund_routes and room > 0:
            refunds = dispatch_refunds(
                self.gateway, self.refund_routes, now, limit=room, retry_base=self.retry_base,
                retry_cap=self.retry_cap, alert_after=self.alert_after, jitter=self.jitter,
            )  # fmt: skip
            report.refunds_handled = refunds.handled
            room -= refunds.handled if limit is not None else 0
        if self.sinks and room > 0:
            # Without a sink an event has nowhere to go: it stays in the outbox, undelivered.
            self._deliver_events(report, room, due_by)
        return report

    def drain(self, limit: int) -> DispatchReport:
        """Passes until nothing is due or ``limit`` orders and events have been handled.

        The backlog is what was due when the drain began: a row that failed during it waits
        for its backoff and the next run, so a receiver that never answers costs one attempt
        per row, not attempts until ``limit``.
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        total = DispatchReport()
        began = self.gateway.clock.now()
        while True:
            report = self.dispatch_once(
                limit - total.orders_attempted - total.events_handled, due_by=began
            )
            total.add(report)
            if report.idle or total.orders_attempted + total.events_handled >= limit:
                return total

    def run(self, stop: threading.Event, *, idle_wait: float = 1.0) -> None:
        """Dispatch until ``stop`` is set; between idle passes wait ``idle_wait`` seconds.

        A pass that fails as a whole (the database unreachable, say) is logged and tried again
        after ``idle_wait``: the dispatcher itself never gives up.
        """
        while not stop.is_set():
            try:
                report = self.dispatch_once()
            except Exception:  # the loop outlives any one pass
                log.exception("dispatch pass failed; retrying")
                report = DispatchReport()
            if report.idle:
                stop.wait(idle_wait)

    def _order_crashed(
        self, order_id: int, token: str, exc: Exception, report: DispatchReport
    ) -> None:
        gateway = self.gateway
        try:
            attempts = gateway.store.run(
                lambda tx: tx.scalar(
                    "SELECT attempts FROM supply_orders WHERE id = :id", {"id": order_id}
                ),
                write=False,
            )
            retry = gateway.clock.now() + backoff(
                int(attempts or 0) + 1, base=self.retry_base, cap=self.retry_cap, jitter=self.jitter
            )
            gateway.supply.record_order_failure(
                order_id,
                f"unexpected {type(exc).__name__}: {exc}",
                claim_token=token,
                retry_at=retry,
                alert_after=self.alert_after,
            )
        except Exception:  # the lease runs out and the order is tried again
            log.exception("supply order %s: the failure could not be recorded", order_id)
        report.orders_retrying += 1

    # -- orders -------------------------------------------------------------------------

    def _attempt_order(self, order_id: int, token: str, report: DispatchReport) -> None:
        gateway = self.gateway
        order = gateway.store.run(lambda tx: supply.load_order(tx, order_id), write=False)
        if order is None:
            return
        report.orders_attempted += 1
        name = order.headend or self.default_headend
        headend = self.headends.get(name) if name else None
        where = {"order_id": order_id, "headend": name, "attempt": order.attempts + 1}
        if headend is None:
            log.error("supply order %s: no head-end configured", order_id, extra=where)
            gateway.supply.record_order_failure(
                order_id,
                f"no head-end configured for account {order.account_no} ({name or 'none'})",
                claim_token=token,
                retry_at=None,
            )
            report.orders_failed += 1
            return
        command = order.command()
        result: HeadEndResult | None
        log.debug(
            "supply order %s: %s to head-end %s", order_id, order.status.value, name, extra=where
        )
        try:
            if order.status is supply.OrderStatus.OPEN:
                result = headend.send(command)
            else:
                try:
                    result = headend.poll(command)
                except UnsupportedOperationError:
                    # This head-end reports by callback only: stop polling, keep the lease off.
                    gateway.supply.record_order_progress(
                        order_id,
                        supply.status_outcome(order.status),
                        claim_token=token,
                        next_attempt_at=None,
                        actor=headend.name,
                    )
                    return
                if result is None:
                    self._poll_later(order_id, order.status, token, headend.name)
                    return
        except HeadEndUnavailable as exc:
            retry = gateway.clock.now() + backoff(
                order.attempts + 1, base=self.retry_base, cap=self.retry_cap, jitter=self.jitter
            )
            gateway.supply.record_order_failure(
                order_id,
                f"{headend.name}: {exc}",
                claim_token=token,
                retry_at=retry,
                alert_after=self.alert_after,
            )
            log.warning(
                "supply order %s: head-end %s unavailable; retry at %s",
                order_id,
                name,
                retry.isoformat(),
                extra={**where, "retry_at": retry.isoformat(), "error": str(exc)},
            )
            report.orders_retrying += 1
            return
        except HeadEndRejected as exc:
            gateway.supply.record_order_failure(
                order_id, f"{headend.name}: {exc}", claim_token=token, retry_at=None
            )
            log.error(
                "supply order %s: rejected by head-end %s",
                order_id,
                name,
                extra={**where, "error": str(exc)},
            )
            report.orders_failed += 1
            return
        next_poll = gateway.clock.now() + self.poll_interval
        gateway.supply.record_order_progress(
            order_id,
            result.outcome,
            at=result.at,
            actor=headend.name,
            reference=result.reference,
            claim_token=token,
            next_attempt_at=next_poll,
        )
        log.info(
            "supply order %s: head-end %s reports %s",
            order_id,
            name,
            result.outcome,
            extra=where,
        )
        report.orders_progressed += 1

    def _poll_later(
        self, order_id: int, status: supply.OrderStatus, token: str, actor: str
    ) -> None:
        self.gateway.supply.record_order_progress(
            order_id,
            supply.status_outcome(status),
            claim_token=token,
            next_attempt_at=self.gateway.clock.now() + self.poll_interval,
            actor=actor,
        )

    # -- events -------------------------------------------------------------------------

    def _deliver_events(
        self, report: DispatchReport, room: int, due_by: datetime | None = None
    ) -> None:
        gateway = self.gateway
        now = gateway.clock.now()
        due = now if due_by is None else min(due_by, now)
        token, rows = gateway.store.run(lambda tx: _claim_events(tx, now, self.lease, room, due))
        stop_at = time.monotonic() + self.event_budget.total_seconds()
        held: set[str] = set()  # accounts whose earlier event was not delivered in this pass
        waiting: list[int] = []
        for index, (event_id, account_no, payload, attempts) in enumerate(rows):
            if time.monotonic() >= stop_at:
                left = [row[0] for row in rows[index:]]
                log.warning(
                    "events: %d left for the next pass after %s of deliveries",
                    len(left),
                    self.event_budget,
                )
                gateway.store.run(partial(_release_events, event_ids=left, token=token))
                report.events_deferred += len(left)
                break
            if account_no is not None and account_no in held:
                waiting.append(event_id)
                continue
            delivered = False
            try:
                delivered = self._deliver_event(event_id, payload, attempts, token, now, report)
            except Exception:  # the lease runs out and the event is offered again
                log.exception("outbox event %s: the outcome could not be recorded", event_id)
            if not delivered and account_no is not None:
                held.add(account_no)
        if waiting:
            # Behind an earlier event of their account that failed: they wait for its retry.
            gateway.store.run(partial(_release_events, event_ids=waiting, token=token))
            report.events_deferred += len(waiting)

    def _deliver_event(
        self,
        event_id: int,
        payload: str,
        attempts: int,
        token: str,
        now: datetime,
        report: DispatchReport,
    ) -> bool:
        gateway = self.gateway
        event = cloudevent(json.loads(payload), source=self.source)
        errors: list[str] = []
        # Every sink is offered the event even when one fails; a retry offers it to all
        # again, and sinks deduplicate by its id.
        for sink in self.sinks:
            try:
                sink.deliver(event)
            except DeliveryError as exc:
                log.debug(
                    "outbox event %s: sink %s failed",
                    event_id,
                    sink.name,
                    extra={"event_id": event_id, "sink": sink.name, "error": str(exc)},
                )
                errors.append(str(exc))
            except Exception as exc:  # a broken sink is a failed delivery
                log.exception("sink %s raised on event %s", sink.name, event_id)
                errors.append(f"{sink.name}: unexpected {type(exc).__name__}: {exc}")
        where = {"event_id": event_id, "attempt": attempts + 1}
        if not errors:
            gateway.store.run(partial(_event_delivered, event_id=event_id, token=token, now=now))
            log.info("outbox event %s: delivered", event_id, extra=where)
            report.events_delivered += 1
            return True
        attempts += 1
        dead = attempts >= self.max_attempts
        retry = gateway.clock.now() + backoff(
            attempts, base=self.retry_base, cap=self.retry_cap, jitter=self.jitter
        )
        failure = _Failure(event_id, token, attempts, dead, retry, "; ".join(errors))
        gateway.store.run(partial(_event_failed, gateway, failure=failure))
        if dead:
            log.error(
                "outbox event %s: dead-lettered after %d attempts",
                event_id,
                attempts,
                extra={**where, "error": failure.error},
            )
            report.events_dead += 1
        else:
            log.warning(
                "outbox event %s: delivery failed; retry at %s",
                event_id,
                retry.isoformat(),
                extra={**where, "retry_at": retry.isoformat(), "error": failure.error},
            )
            report.events_retrying += 1
        return False


def dead_letters(gateway: OrderDesk, *, limit: int = 1000, after: int = 0) -> list[DeadLetter]:
    """Dead-lettered events, oldest first; at most ``limit``, from the one after event
    ``after`` (in that order) on: a page."""
    page = (
        " AND (dead_at > (SELECT dead_at FROM outbox WHERE id = :after) OR "
        "(dead_at = (SELECT dead_at FROM outbox WHERE id = :after) AND id > :after))"
        if after
        else ""
    )

    def work(tx: Tx) -> list[DeadLetter]:
        return [
            DeadLetter(
                event_id=int(r[0]),
                event_type=str(r[1]),
                account_no=None if r[2] is None else str(r[2]),
                attempts=int(r[3]),
                dead_at=tx.read_ts(r[4]),
                last_error=r[5],
            )
            for r in tx.all(
                "SELECT id, event_type, account_no, attempts, dead_at, last_error FROM outbox "  # noqa: S608 - constant fragments
                "WHERE dead_at IS NOT NULL AND delivered_at IS NULL"
                + page
                + " ORDER BY dead_at, id LIMIT :n",
                {"n": limit, "after": after},
            )
        ]

    return gateway.store.run(work, write=False)


def requeue(gateway: OrderDesk, event_ids: Sequence[int] | None = None) -> int:
    """Put dead-lettered events (the named ones, or all with None) back in the queue, due now
    with a fresh attempt count; return how many. A named event that is not dead-lettered is
    refused, and nothing is requeued."""
    now = gateway.clock.now()

    def work(tx: Tx) -> int:
        dead = {
            int(r[0])
            for r in tx.all(
                "SELECT id FROM outbox WHERE dead_at IS NOT NULL AND delivered_at IS NULL"
            )
        }
        chosen = sorted(dead) if event_ids is None else list(dict.fromkeys(event_ids))
        missing = [i for i in chosen if i not in dead]
        if missing:
            raise NotFoundError(
                f"no dead-lettered event {', '.join(map(str, missing))}", field="event_id"
            )
        records.requeue_events(tx, chosen, now=now)
        return len(chosen)

    return gateway.store.run(work)


def _claim_events(
    tx: Tx, now: datetime, lease: timedelta, limit: int, due: datetime
) -> tuple[str, list[tuple[int, str | None, str, int]]]:
    skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    candidates = [
        (int(r[0]), None if r[1] is None else str(r[1]), str(r[2]), int(r[3]))
        for r in tx.all(
            "SELECT id, account_no, payload, attempts FROM outbox "  # noqa: S608
            "WHERE delivered_at IS NULL AND dead_at IS NULL AND available_at <= :due "
            "AND (claimed_until IS NULL OR claimed_until < :now) "
            # not behind an earlier event of its account that cannot go now (backing off after
            # a failure, or leased): the batch is not filled with events that must wait
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.account_no = outbox.account_no "
            "AND p.id < outbox.id AND p.delivered_at IS NULL AND p.dead_at IS NULL "
            "AND (p.available_at > :due OR p.claimed_until >= :now)) "
            # oldest first: an account's earlier event is in the batch before its later ones
            f"ORDER BY id LIMIT :n{skip}",
            {"now": tx.ts(now), "due": tx.ts(due), "n": limit},
        )
    ]
    rows = _in_account_order(tx, candidates)
    token = secrets.token_hex(16)
    records.lease_events(tx, [r[0] for r in rows], token=token, until=now + lease)
    return token, rows


def _in_account_order(
    tx: Tx, candidates: list[tuple[int, str | None, str, int]]
) -> list[tuple[int, str | None, str, int]]:
    """The candidates that may go now, in id order: for each account, the longest run of its
    undelivered events, oldest first, that were all taken here. An event whose account has an
    earlier undelivered one not in hand (not yet due, leased by another dispatcher, beyond
    the batch) is left alone, so no event overtakes an earlier one of its account."""
    accounts = sorted({c[1] for c in candidates if c[1] is not None})
    pending: dict[str, list[int]] = {a: [] for a in accounts}
    for start in range(0, len(accounts), 500):
        chunk = accounts[start : start + 500]
        names = {f"a{i}": a for i, a in enumerate(chunk)}
        for r in tx.all(
            "SELECT account_no, id FROM outbox WHERE delivered_at IS NULL "  # noqa: S608
            f"AND dead_at IS NULL AND account_no IN ({', '.join(':' + k for k in names)}) "
            "ORDER BY id",
            names,
        ):
            pending[str(r[0])].append(int(r[1]))
    taken = {c[0] for c in candidates}
    allowed: set[int] = set()
    for ids in pending.values():
        for event_id in ids:
            if event_id not in taken:
                break
            allowed.add(event_id)
    return sorted((c for c in candidates if c[1] is None or c[0] in allowed), key=lambda c: c[0])


def _release_events(tx: Tx, *, event_ids: Sequence[int], token: str) -> None:
    # Still due, no longer claimed: the next pass (this dispatcher's or another's) takes them.
    records.release_events(tx, event_ids, token=token)


def _event_delivered(tx: Tx, *, event_id: int, token: str, now: datetime) -> None:
    records.event_delivered(tx, event_id, token=token, now=now)


@dataclass(frozen=True)
class _Failure:
    event_id: int
    token: str
    attempts: int
    dead: bool
    retry: datetime
    error: str


def _event_failed(gateway: OrderDesk, tx: Tx, *, failure: _Failure) -> None:
    event_id, token, attempts, dead, retry, error = (
        failure.event_id,
        failure.token,
        failure.attempts,
        failure.dead,
        failure.retry,
        failure.error,
    )
    now = gateway.clock.now()
    recorded = records.event_failed(
        tx,
        event_id,
        token=token,
        attempts=attempts,
        error=error,
        retry_at=retry,
        dead_at=now if dead else None,
    )
    alerted = tx.scalar("SELECT event_type FROM outbox WHERE id = :id", {"id": event_id})
    # An alert that cannot be delivered is not itself alerted on, or alerts would breed.
    if dead and recorded and alerted != "outbox.dead_lettered":
        alert_id = tx.ids.one()
        payload = {
            "event_id": alert_id,
            "type": "outbox.dead_lettered",
            "account_no": None,
            "occurred_at": now.isoformat(),
            "data": {"dead_event_id": event_id, "attempts": attempts, "error": error[:500]},
        }
        row = EventRow(
            id=alert_id,
            event_type="outbox.dead_lettered",
            account_no=None,
            payload=json.dumps(payload, separators=(",", ":")),
            created_at=tx.ts(now),
            available_at=tx.ts(now),
            attempts=0,
        )
        records.queue_events(tx, [row])
