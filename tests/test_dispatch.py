"""Arrears to reconnection, end to end, with an injected clock and an in-memory head-end:
orders are dispatched, retried through outages, completed; every missed deadline is a breach
with its severity; events reach their sinks at least once."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from paygate import supply
from paygate.backoff import backoff
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import InvalidStateError
from paygate.gateway import Gateway
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.outbox import CallbackSink, DeliveryError, Dispatcher


class FakeHeadEnd(HeadEnd):
    """A head-end whose behaviour the test sets: down until a time, refusing, slow."""

    name = "fake"

    def __init__(self, clock: FixedClock, *, outcome: HeadEndOutcome = HeadEndOutcome.COMPLETED):
        self.clock = clock
        self.outcome = outcome
        self.down_until: datetime | None = None
        self.reject = False
        self.delay = 0.0
        self.keys: list[tuple[int, str]] = []
        self.in_flight: Counter[int] = Counter()
        self.overlaps = 0
        self._lock = threading.Lock()

    def send(self, command: SupplyCommand) -> HeadEndResult:
        with self._lock:
            self.keys.append((command.order_id, command.idempotency_key))
            self.in_flight[command.order_id] += 1
            if self.in_flight[command.order_id] > 1:
                self.overlaps += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.down_until is not None and self.clock.now() < self.down_until:
                raise HeadEndUnavailable("connection refused")
            if self.reject:
                raise HeadEndRejected("unknown meter")
            return HeadEndResult(outcome=self.outcome, at=self.clock.now())
        finally:
            with self._lock:
                self.in_flight[command.order_id] -= 1

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        return HeadEndResult(outcome=HeadEndOutcome.COMPLETED, at=self.clock.now())


def events(gateway: Gateway, event_type: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", {"t": event_type}
        ),
        write=False,
    )
    return [json.loads(r[0]) for r in rows]


def order_row(gateway: Gateway, order_id: int) -> dict[str, Any]:
    def read(tx):  # type: ignore[no-untyped-def]
        cur = tx.execute("SELECT * FROM supply_orders WHERE id = :id", {"id": order_id})
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))

    return gateway.store.run(read, write=False)  # type: ignore[no-any-return]


def breaches(gateway: Gateway) -> dict[str, str]:
    return dict(
        gateway.store.run(
            lambda tx: tx.all("SELECT step, severity FROM breaches ORDER BY id"), write=False
        )
    )


@pytest.fixture
def disconnected(gateway: Gateway) -> Gateway:
    gateway.open_account("3100000001")
    gateway.set_meter("3100000001", headend="fake", meter_address="201905241006")
    gateway.issue_bill(
        "3100000001",
        bill_no="B1",
        amount=Money(50_000, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 15),
    )
    gateway.disconnect("3100000001", "arrears")
    return gateway


def pay_off(gateway: Gateway, clock: FixedClock, txn: str = "K1") -> int:
    receipt = gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id=txn,
            account_no="3100000001",
            amount=Money(60_000, "CNY"),
            paid_at=clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    return receipt.reconnection_order_id


def test_the_order_carries_deadlines_computed_backwards_from_the_promise(
    disconnected: Gateway, clock: FixedClock
) -> None:
    order_id = pay_off(disconnected, clock)
    row = order_row(disconnected, order_id)
    read = disconnected.store.run(lambda tx: tx.read_ts, write=False)
    created = read(row["created_at"])
    assert read(row["due_at"]) - created == timedelta(hours=24)
    assert read(row["ack_due_at"]) - created == timedelta(hours=4)
    assert read(row["dispatch_due_at"]) - created == timedelta(minutes=15)
    assert read(row["legal_due_at"]) - created == timedelta(days=3)


def test_power_is_back_within_the_promise_when_the_head_end_answers(
    disconnected: Gateway, clock: FixedClock
) -> None:
    headend = FakeHeadEnd(clock)
    seen: list[Mapping[str, Any]] = []
    dispatcher = Dispatcher(
        disconnected, headends={"fake": headend}, sinks=[CallbackSink(seen.append)]
    )
    order_id = pay_off(disconnected, clock)
    clock.advance(timedelta(minutes=2))
    report = dispatcher.dispatch_once()
    assert report.orders_progressed == 1 and report.breaches == []
    assert disconnected.account_status("3100000001").supply_state is SupplyState.CONNECTED
    [completed] = events(disconnected, "reconnection.completed")
    assert completed["data"]["order_id"] == order_id and completed["data"]["on_time"] is True
    assert completed["data"]["elapsed_seconds"] == 120
    dispatcher.dispatch_once()
    types = [e["type"] for e in seen]
    assert types[:2] == ["supply.disconnected", "payment.posted"]
    assert "reconnection.requested" in types and "reconnection.completed" in types
    assert len({e["id"] for e in seen}) == len(seen)
    assert dispatcher.dispatch_once().idle
    assert breaches(disconnected) == {}


def test_an_outage_is_retried_with_one_key_and_every_missed_step_is_a_breach(
    disconnected: Gateway, clock: FixedClock
) -> None:
    headend = FakeHeadEnd(clock)
    start = clock.now()
    headend.down_until = start + timedelta(hours=30)
    dispatcher = Dispatcher(
        disconnected,
        headends={"fake": headend},
        retry_base=timedelta(minutes=1),
        retry_cap=timedelta(minutes=30),
    )
    order_id = pay_off(disconnected, clock)
    seen_breaches = []
    while clock.now() < start + timedelta(hours=32):
        seen_breaches += dispatcher.dispatch_once().breaches
        clock.advance(timedelta(minutes=5))
    assert disconnected.account_status("3100000001").supply_state is SupplyState.CONNECTED
    assert {key for _, key in headend.keys} == {f"paygate-order-{order_id}"}
    assert len(headend.keys) > 20  # retried all through the outage, backing off
    assert breaches(disconnected) == {
        "dispatch": "minor",
        "acknowledge": "minor",
        "confirm": "major",
    }
    assert sorted(s.value for _, s, _ in seen_breaches) == ["acknowledge", "confirm", "dispatch"]
    row = order_row(disconnected, order_id)
    assert row["status"] == "completed" and row["attempts"] >= 20
    assert len(events(disconnected, "service.breach")) == 3
    assert len(events(disconnected, "order.alert")) == 1  # raised once, at the tenth attempt


def test_the_retry_backoff_draws_its_jitter_from_the_source_given(
    disconnected: Gateway, clock: FixedClock
) -> None:
    """A dispatcher given a jitter source waits what it draws (a simulation's seeded source
    replays the same waits, and so retries its orders in the same order); without one, a
    wait is drawn from the system between half the ceiling and all of it."""
    headend = FakeHeadEnd(clock)
    headend.down_until = clock.now() + timedelta(days=1)
    draws: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        draws.append((low, high))
        return 0.75

    dispatcher = Dispatcher(
        disconnected,
        headends={"fake": headend},
        retry_base=timedelta(minutes=4),
        retry_cap=timedelta(hours=1),
        jitter=jitter,
    )
    order_id = pay_off(disconnected, clock)
    read = disconnected.store.run(lambda tx: tx.read_ts, write=False)
    for attempt in (1, 2, 3):
        before = clock.now()
        dispatcher.dispatch_once()
        # attempt n waits 0.75 of min(cap, base * 2 ** (n - 1))
        wait = read(order_row(disconnected, order_id)["next_attempt_at"]) - before
        assert wait == timedelta(minutes=4 * 2 ** (attempt - 1)) * 0.75
        clock.advance(wait)
    assert draws == [(0.5, 1.0)] * 3

    seeded = [
        [backoff(n, base=timedelta(minutes=4), cap=timedelta(hours=1), jitter=r.uniform)
         for n in range(1, 8)]
        for r in (random.Random(7), random.Random(7))
    ]  # fmt: skip
    assert seeded[0] == seeded[1]
    system = [backoff(3, base=timedelta(minutes=4), cap=timedelta(hours=1)) for _ in range(50)]
    assert all(timedelta(minutes=8) <= w <= timedelta(minutes=16) for w in system)
    assert len(set(system)) > 1


def test_missing_the_legal_limit_is_critical(disconnected: Gateway, clock: FixedClock) -> None:
    headend = FakeHeadEnd(clock)
    headend.down_until = clock.now() + timedelta(days=5)
    dispatcher = Dispatcher(disconnected, headends={"fake": headend})
    pay_off(disconnected, clock)
    clock.advance(timedelta(days=3, minutes=1))
    dispatcher.dispatch_once()
    assert breaches(disconnected)["legal"] == "critical"


def test_a_refusal_for_good_fails_the_order_with_an_alert_until_a_person_retries(
    disconnected: Gateway, clock: FixedClock
) -> None:
    headend = FakeHeadEnd(clock)
    headend.reject = True
    dispatcher = Dispatcher(disconnected, headends={"fake": headend})
    order_id = pay_off(disconnected, clock)
    assert dispatcher.dispatch_once().orders_failed == 1
    assert order_row(disconnected, order_id)["status"] == "failed"
    [alert] = events(disconnected, "order.alert")
    assert alert["data"]["final"] is True and "unknown meter" in alert["data"]["error"]
    assert dispatcher.dispatch_once().orders_attempted == 0  # not retried on its own
    headend.reject = False
    disconnected.retry_order(order_id)
    dispatcher.dispatch_once()
    assert order_row(disconnected, order_id)["status"] == "completed"
    with pytest.raises(InvalidStateError):
        disconnected.retry_order(order_id)


def test_an_account_without_a_head_end_fails_loudly(gateway: Gateway, clock: FixedClock) -> None:
    gateway.open_account("3100000001")
    gateway.issue_bill(
        "3100000001",
        bill_no="B-3100000001",
        amount=Money(100, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )
    gateway.disconnect("3100000001", "arrears")
    order_id = pay_off(gateway, clock)
    Dispatcher(gateway, headends={}).dispatch_once()
    row = order_row(gateway, order_id)
    assert row["status"] == "failed" and "no head-end" in row["last_error"]


def test_callbacks_and_duplicate_callbacks(disconnected: Gateway, clock: FixedClock) -> None:
    headend = FakeHeadEnd(clock, outcome=HeadEndOutcome.DISPATCHED)
    dispatcher = Dispatcher(disconnected, headends={"fake": headend})
    order_id = pay_off(disconnected, clock)
    dispatcher.dispatch_once()
    assert order_row(disconnected, order_id)["status"] == "dispatched"
    clock.advance(timedelta(minutes=30))
    disconnected.record_order_progress(order_id, HeadEndOutcome.ACKNOWLEDGED, actor="callback")
    clock.advance(timedelta(minutes=30))
    for _ in range(2):  # the head-end calls back twice
        disconnected.record_order_progress(order_id, HeadEndOutcome.COMPLETED, actor="callback")
    assert len(events(disconnected, "reconnection.completed")) == 1
    # a late acknowledgement after completion changes nothing
    disconnected.record_order_progress(order_id, HeadEndOutcome.ACKNOWLEDGED)
    assert order_row(disconnected, order_id)["status"] == "completed"
    assert disconnected.account_status("3100000001").supply_state is SupplyState.CONNECTED


def test_events_are_retried_with_backoff_then_dead_lettered_with_an_alert(
    gateway: Gateway, clock: FixedClock
) -> None:
    calls: Counter[int] = Counter()

    def flaky(event: Mapping[str, Any]) -> None:
        calls[int(event["id"])] += 1
        if event["type"] == "supply.disconnected":
            raise RuntimeError("billing system down")

    dispatcher = Dispatcher(
        gateway,
        headends={},
        sinks=[CallbackSink(flaky)],
        max_attempts=3,
        retry_base=timedelta(seconds=10),
        retry_cap=timedelta(seconds=40),
    )
    gateway.open_account("A1")
    gateway.issue_bill(
        "A1",
        bill_no="B-A1",
        amount=Money(100, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )
    gateway.disconnect("A1", "arrears")
    for _ in range(10):
        dispatcher.dispatch_once()
        clock.advance(timedelta(minutes=1))
    [dead] = events(gateway, "supply.disconnected")
    assert calls[dead["event_id"]] == 3
    [alert] = events(gateway, "outbox.dead_lettered")
    assert alert["data"]["dead_event_id"] == dead["event_id"]
    assert calls[alert["event_id"]] == 1  # the alert itself was delivered


def test_the_dunning_path_notice_reminder_candidate_order_cut_and_back(
    disconnected: Gateway, clock: FixedClock
) -> None:
    gateway = disconnected
    gateway.open_account("H1", category="non_residential", protected=True)
    for acct in ("3100000002", "H1"):
        if acct != "H1":
            gateway.open_account(acct)
        gateway.issue_bill(
            acct,
            bill_no=f"B-{acct}",
            amount=Money(10_000, "CNY"),
            period="2026-09",
            due_date=date(2026, 10, 10),
        )
    gateway.set_meter("3100000002", headend="fake", meter_address="201905241007")
    gateway.serve_notice("3100000002")
    gateway.serve_notice("H1")
    assert gateway.account_status("3100000002").supply_state is SupplyState.DISCONNECTION_PENDING
    assert gateway.disconnection_candidates() == []  # the notice is too recent
    clock.advance(timedelta(days=7))
    assert gateway.disconnection_candidates() == []  # no final reminder yet
    gateway.serve_notice("3100000002", "final_reminder")
    gateway.serve_notice("H1", "final_reminder")
    clock.advance(timedelta(days=1))
    [candidate] = gateway.disconnection_candidates()
    assert candidate.account_no == "3100000002"  # the protected hospital is never offered
    with pytest.raises(InvalidStateError, match="not a disconnection candidate"):
        gateway.order_disconnection("H1", approved_by="ops")
    order_id = gateway.order_disconnection("3100000002", approved_by="ops")
    headend = FakeHeadEnd(clock)
    Dispatcher(gateway, headends={"fake": headend}).dispatch_once()
    assert gateway.account_status("3100000002").supply_state is SupplyState.DISCONNECTED
    assert order_row(gateway, order_id)["action"] == "trip"
    receipt = gateway.pay(
        PaymentIntent(
            channel="pos",
            channel_txn_id="P1",
            account_no="3100000002",
            amount=Money(20_000, "CNY"),
            paid_at=clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None


def test_paying_while_a_disconnection_is_pending_cancels_the_unsent_order(
    gateway: Gateway, clock: FixedClock
) -> None:
    gateway.open_account("A1")
    gateway.issue_bill(
        "A1",
        bill_no="B1",
        amount=Money(10_000, "CNY"),
        period="2026-09",
        due_date=date(2026, 10, 10),
    )
    gateway.serve_notice("A1")
    order_id = gateway.order_disconnection("A1", approved_by="ops", negotiated=True)
    gateway.pay(
        PaymentIntent(
            channel="pos",
            channel_txn_id="P1",
            account_no="A1",
            amount=Money(20_000, "CNY"),
            paid_at=clock.now(),
        )
    )
    assert order_row(gateway, order_id)["status"] == "cancelled"
    assert gateway.account_status("A1").supply_state is SupplyState.CONNECTED


def test_a_reversal_after_reconnection_reopens_arrears_but_never_cuts_by_itself(
    disconnected: Gateway, clock: FixedClock
) -> None:
    order_id = pay_off(disconnected, clock)
    disconnected.complete_reconnection(order_id)
    payment = disconnected.store.run(lambda tx: tx.scalar("SELECT MAX(id) FROM payments"))
    reversal = disconnected.reverse(int(payment), "direct debit returned")
    assert reversal.arrears_after.minor > 0
    assert reversal.supply_state is SupplyState.CONNECTED
    assert disconnected.disconnection_candidates() == []  # back on the path: a notice first
    disconnected.serve_notice("3100000001")
    assert disconnected.account_status("3100000001").supply_state is (
        SupplyState.DISCONNECTION_PENDING
    )


@pytest.mark.postgres
def test_two_dispatchers_never_deliver_the_same_order_at_once(
    pg_url: str, clock: FixedClock
) -> None:
    settings = Settings(database_url=pg_url, seal_every=0)
    with Gateway.open(settings=settings, clock=clock) as gateway:
        for n in range(12):
            acct = f"A{n}"
            gateway.open_account(acct)
            gateway.set_meter(acct, headend="fake", meter_address=f"{n:012d}")
            gateway.issue_bill(
                acct,
                bill_no=f"B-{acct}",
                amount=Money(100, "CNY"),
                period="2026-10",
                due_date=date(2026, 11, 1),
            )
            gateway.disconnect(acct, "arrears")
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=f"K{n}",
                    account_no=acct,
                    amount=Money(10_000, "CNY"),
                    paid_at=clock.now(),
                )
            )
        headend = FakeHeadEnd(clock)
        headend.delay = 0.05
        dispatchers = [Dispatcher(gateway, headends={"fake": headend}, batch=3) for _ in range(2)]
        barrier = threading.Barrier(2)

        def run(d: Dispatcher) -> None:
            barrier.wait()
            for _ in range(6):
                d.dispatch_once()

        threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert headend.overlaps == 0
        assert Counter(order for order, _ in headend.keys).most_common(1)[0][1] == 1
        states = {gateway.account_status(f"A{n}").supply_state for n in range(12)}
        assert states == {SupplyState.CONNECTED}


def test_the_lease_of_a_dead_dispatcher_runs_out_and_the_order_is_delivered_again(
    disconnected: Gateway, clock: FixedClock
) -> None:

    order_id = pay_off(disconnected, clock)
    # a dispatcher claims the order and dies before recording anything
    token, ids = disconnected.store.run(
        lambda tx: supply.claim_orders(tx, clock.now(), timedelta(minutes=2), 10)
    )
    assert ids == [order_id]
    headend = FakeHeadEnd(clock)
    dispatcher = Dispatcher(disconnected, headends={"fake": headend})
    assert dispatcher.dispatch_once().orders_attempted == 0  # still leased
    clock.advance(timedelta(minutes=3))
    dispatcher.dispatch_once()
    assert order_row(disconnected, order_id)["status"] == "completed"
    # the dead dispatcher's late answer is ignored
    disconnected.record_order_progress(order_id, HeadEndOutcome.DISPATCHED, claim_token=token)
    assert order_row(disconnected, order_id)["status"] == "completed"


def test_a_failing_sink_does_not_block_orders(disconnected: Gateway, clock: FixedClock) -> None:
    def down(event: Mapping[str, Any]) -> None:
        raise DeliveryError("down")

    dispatcher = Dispatcher(
        disconnected, headends={"fake": FakeHeadEnd(clock)}, sinks=[CallbackSink(down)]
    )
    pay_off(disconnected, clock)
    report = dispatcher.dispatch_once()
    assert report.orders_progressed == 1 and report.events_retrying > 0
    assert disconnected.account_status("3100000001").supply_state is SupplyState.CONNECTED
