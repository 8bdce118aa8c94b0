"""The transactional outbox and its dispatcher: supply orders to head-ends, events to sinks.

Events and orders are written in the transaction that caused them; this module delivers them
*at least once*. A dispatcher leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several dispatchers run side by side without taking the same row), delivers them outside any
database transaction, and records the result only while its lease still holds. A dispatcher
that dies mid-delivery loses its lease; the row is delivered again later with the same event id
(receivers deduplicate by it) or the same order idempotency key (head-ends act once).

Failures are retried with capped exponential backoff and jitter. An event that keeps failing
is dead-lettered after ``max_attempts`` with an ``outbox.dead_lettered`` alert event; an order
is never given up (see :mod:`paygate.supply`).
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

from paygate import supply
from paygate.errors import PaygateError, UnsupportedOperationError
from paygate.gateway import Gateway
from paygate.headend.base import HeadEnd, HeadEndRejected, HeadEndResult, HeadEndUnavailable
from paygate.store.engine import Tx

__all__ = [
    "CallbackSink",
    "DeliveryError",
    "DispatchReport",
    "Dispatcher",
    "EventSink",
    "WebhookSink",
]

log = logging.getLogger(__name__)


class DeliveryError(PaygateError):
    """An event sink could not take an event now; it will be offered again."""

    code = "delivery_failed"


class EventSink(Protocol):
    """Where events go: a billing system's webhook, an in-process callback."""

    name: str

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Take one event or raise DeliveryError; called again with the same event_id on retry."""
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
    """Events POSTed as JSON, signed: ``X-Paygate-Signature`` = hex HMAC-SHA256 of
    ``timestamp + "." + body`` with the shared secret; ``X-Paygate-Event-Id`` for dedup."""

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
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        stamp = str(int(self._clock()))
        signature = hmac.new(
            self._secret.get_secret_value().encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        try:
            response = self._client.post(
                self._url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Paygate-Event-Id": str(event.get("event_id")),
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
    """What one pass of the dispatcher did."""

    orders_attempted: int = 0
    orders_progressed: int = 0
    orders_retrying: int = 0
    orders_failed: int = 0
    events_delivered: int = 0
    events_retrying: int = 0
    events_dead: int = 0
    breaches: list[tuple[int, supply.Step, supply.Severity]] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        """Nothing was due."""
        return not (self.orders_attempted or self.events_delivered or self.events_retrying)


class Dispatcher:
    """Delivers due supply orders to head-ends and outbox events to sinks."""

    def __init__(
        self,
        gateway: Gateway,
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
    ) -> None:
        if lease <= timedelta(0) or batch < 1 or max_attempts < 1:
            raise ValueError("lease, batch and max_attempts must be positive")
        self.gateway = gateway
        self.headends = dict(headends)
        self.sinks = list(sinks)
        self.default_headend = default_headend or gateway.settings.default_headend
        self.batch = batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_attempts = max_attempts
        self.alert_after = alert_after

    # -- one pass -----------------------------------------------------------------------

    def dispatch_once(self) -> DispatchReport:
        """Check deadlines, attempt every due order, offer every due event once."""
        report = DispatchReport()
        report.breaches = self.gateway.check_deadlines()
        now = self.gateway.clock.now()
        token, order_ids = self.gateway.store.run(
            lambda tx: supply.claim_orders(tx, now, self.lease, self.batch)
        )
        for order_id in order_ids:
            self._attempt_order(order_id, token, report)
        self._deliver_events(report)
        return report

    def run(self, stop: threading.Event, *, idle_wait: float = 1.0) -> None:
        """Dispatch until ``stop`` is set; between idle passes wait ``idle_wait`` seconds."""
        while not stop.is_set():
            try:
                report = self.dispatch_once()
            except PaygateError:
                log.exception("dispatch pass failed; retrying")
                report = DispatchReport()
            if report.idle:
                stop.wait(idle_wait)

    # -- orders -------------------------------------------------------------------------

    def _attempt_order(self, order_id: int, token: str, report: DispatchReport) -> None:
        gateway = self.gateway
        order = gateway.store.run(lambda tx: supply.load_order(tx, order_id), write=False)
        if order is None:
            return
        report.orders_attempted += 1
        name = order.headend or self.default_headend
        headend = self.headends.get(name) if name else None
        if headend is None:
            gateway.record_order_failure(
                order_id,
                f"no head-end configured for account {order.account_no} ({name or 'none'})",
                claim_token=token,
                retry_at=None,
            )
            report.orders_failed += 1
            return
        command = order.command()
        result: HeadEndResult | None
        try:
            if order.status is supply.OrderStatus.OPEN:
                result = headend.send(command)
            else:
                try:
                    result = headend.poll(command)
                except UnsupportedOperationError:
                    # This head-end reports by callback only: stop polling, keep the lease off.
                    gateway.record_order_progress(
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
            retry = gateway.clock.now() + supply.backoff(
                order.attempts + 1, base=self.retry_base, cap=self.retry_cap
            )
            gateway.record_order_failure(
                order_id,
                f"{headend.name}: {exc}",
                claim_token=token,
                retry_at=retry,
                alert_after=self.alert_after,
            )
            report.orders_retrying += 1
            return
        except HeadEndRejected as exc:
            gateway.record_order_failure(
                order_id, f"{headend.name}: {exc}", claim_token=token, retry_at=None
            )
            report.orders_failed += 1
            return
        next_poll = gateway.clock.now() + self.poll_interval
        gateway.record_order_progress(
            order_id,
            result.outcome,
            at=result.at,
            actor=headend.name,
            reference=result.reference,
            claim_token=token,
            next_attempt_at=next_poll,
        )
        report.orders_progressed += 1

    def _poll_later(
        self, order_id: int, status: supply.OrderStatus, token: str, actor: str
    ) -> None:
        self.gateway.record_order_progress(
            order_id,
            supply.status_outcome(status),
            claim_token=token,
            next_attempt_at=self.gateway.clock.now() + self.poll_interval,
            actor=actor,
        )

    # -- events -------------------------------------------------------------------------

    def _deliver_events(self, report: DispatchReport) -> None:
        gateway = self.gateway
        now = gateway.clock.now()
        token, rows = gateway.store.run(lambda tx: _claim_events(tx, now, self.lease, self.batch))
        for event_id, payload, attempts in rows:
            event = json.loads(payload)
            try:
                for sink in self.sinks:
                    sink.deliver(event)
            except DeliveryError as exc:
                attempts += 1
                dead = attempts >= self.max_attempts
                retry = gateway.clock.now() + supply.backoff(
                    attempts, base=self.retry_base, cap=self.retry_cap
                )
                failure = _Failure(event_id, token, attempts, dead, retry, str(exc))
                gateway.store.run(partial(_event_failed, gateway, failure=failure))
                if dead:
                    report.events_dead += 1
                else:
                    report.events_retrying += 1
                continue
            gateway.store.run(partial(_event_delivered, event_id=event_id, token=token, now=now))
            report.events_delivered += 1


def _claim_events(
    tx: Tx, now: datetime, lease: timedelta, limit: int
) -> tuple[str, list[tuple[int, str, int]]]:
    skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    rows = [
        (int(r[0]), str(r[1]), int(r[2]))
        for r in tx.all(
            "SELECT id, payload, attempts FROM outbox WHERE delivered_at IS NULL "  # noqa: S608
            "AND dead_at IS NULL AND available_at <= :now "
            "AND (claimed_until IS NULL OR claimed_until < :now) "
            f"ORDER BY available_at, id LIMIT :n{skip}",
            {"now": tx.ts(now), "n": limit},
        )
    ]
    token = secrets.token_hex(16)
    tx.many(
        "UPDATE outbox SET claimed_until = :until, claim_token = :t WHERE id = :id",
        [{"until": tx.ts(now + lease), "t": token, "id": r[0]} for r in rows],
    )
    return token, rows


def _event_delivered(tx: Tx, *, event_id: int, token: str, now: datetime) -> None:
    tx.execute(
        "UPDATE outbox SET delivered_at = :now, claimed_until = NULL, claim_token = NULL "
        "WHERE id = :id AND claim_token = :t",
        {"now": tx.ts(now), "id": event_id, "t": token},
    )


@dataclass(frozen=True)
class _Failure:
    event_id: int
    token: str
    attempts: int
    dead: bool
    retry: datetime
    error: str


def _event_failed(gateway: Gateway, tx: Tx, *, failure: _Failure) -> None:
    event_id, token, attempts, dead, retry, error = (
        failure.event_id,
        failure.token,
        failure.attempts,
        failure.dead,
        failure.retry,
        failure.error,
    )
    now = gateway.clock.now()
    cur = tx.execute(
        "UPDATE outbox SET attempts = :n, last_error = :e, available_at = :r, dead_at = :d, "
        "claimed_until = NULL, claim_token = NULL WHERE id = :id AND claim_token = :t",
        {
            "n": attempts,
            "e": error[:2000],
            "r": tx.ts(retry),
            "d": tx.ts(now) if dead else None,
            "id": event_id,
            "t": token,
        },
    )
    alerted = tx.scalar("SELECT event_type FROM outbox WHERE id = :id", {"id": event_id})
    # An alert that cannot be delivered is not itself alerted on, or alerts would breed.
    if dead and cur.rowcount and alerted != "outbox.dead_lettered":
        alert_id = tx.ids.one()
        payload = {
            "event_id": alert_id,
            "type": "outbox.dead_lettered",
            "account_no": None,
            "occurred_at": now.isoformat(),
            "data": {"dead_event_id": event_id, "attempts": attempts, "error": error[:500]},
        }
        tx.insert(
            "outbox",
            ("id", "event_type", "account_no", "payload", "created_at", "available_at", "attempts"),
            [
                (
                    alert_id,
                    "outbox.dead_lettered",
                    None,
                    json.dumps(payload, separators=(",", ":")),
                    tx.ts(now),
                    tx.ts(now),
                    0,
                )
            ],
        )
