"""The service promise judged by the facts, on both databases, with a fixed clock and a
scripted head-end: a step is judged by when the head-end says it happened, a deadline that
passed while the head-end held news of the step is judged only after the dispatcher asked it,
and a reconnection raised by a cut that landed after the customer paid starts its clock when
paygate learns of the cut."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.outbox import Dispatcher
from paygate.promise import Severity
from paygate.supply import breach_counts

ACCOUNT = "3100000001"


class ScriptedMeter(HeadEnd):
    """Acknowledges every command when sent; the meter finishes at ``done_at``, which a poll
    reports (with that time) once the clock has passed it."""

    name = "scripted"

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.done_at: datetime | None = None
        self.polls: list[datetime] = []
        self.down = False

    def send(self, command: SupplyCommand) -> HeadEndResult:
        return HeadEndResult(outcome=HeadEndOutcome.ACKNOWLEDGED, at=self.clock.now())

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        self.polls.append(self.clock.now())
        if self.down:
            raise HeadEndUnavailable("connection refused")
        if self.done_at is None or self.clock.now() < self.done_at:
            return None
        return HeadEndResult(outcome=HeadEndOutcome.COMPLETED, at=self.done_at)


def in_arrears(gateway: Gateway) -> None:
    gateway.open_account(ACCOUNT)
    gateway.set_meter(ACCOUNT, headend="scripted", meter_address="201905241006")
    gateway.issue_bill(
        ACCOUNT, bill_no="B1", amount=Money(50_000, "CNY"), period="2026-10",
        due_date=date(2026, 11, 1),
    )  # fmt: skip


def pay_off(gateway: Gateway, txn: str = "K1") -> None:
    gateway.pay(
        PaymentIntent(
            channel="kiosk", channel_txn_id=txn, account_no=ACCOUNT,
            amount=gateway.account_status(ACCOUNT).arrears, paid_at=gateway.clock.now(),
        )
    )  # fmt: skip


def breaches(gateway: Gateway) -> list[tuple[int, str, str]]:
    rows = gateway.store.run(
        lambda tx: tx.all("SELECT order_id, step, severity FROM breaches ORDER BY id"),
        write=False,
    )
    return [(int(o), str(s), str(v)) for o, s, v in rows]


def order_times(gateway: Gateway, order_id: int) -> tuple[datetime, datetime, datetime]:
    """(created, dispatch deadline, promise) of one order, as stored."""

    def read(tx):  # type: ignore[no-untyped-def]
        row = tx.one(
            "SELECT created_at, dispatch_due_at, due_at FROM supply_orders WHERE id = :id",
            {"id": order_id},
        )
        return tuple(tx.read_ts(v) for v in row)

    return gateway.store.run(read, write=False)  # type: ignore[no-any-return]


def reconnection_id(gateway: Gateway) -> int:
    return int(
        gateway.store.run(
            lambda tx: tx.scalar("SELECT id FROM supply_orders WHERE kind = 'reconnect'"),
            write=False,
        )
    )


def test_supply_back_before_the_promise_is_no_breach_though_reported_after_it(
    gateway: Gateway, clock: FixedClock
) -> None:
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    meter = ScriptedMeter(clock)
    dispatcher = Dispatcher(
        gateway, headends={"scripted": meter}, poll_interval=timedelta(minutes=5)
    )
    dispatcher.dispatch_once()  # sent at once: acknowledged, in time
    # The meter closes its relay a minute before the promise; the next pass comes after it.
    meter.done_at = promise - timedelta(minutes=1)
    clock.set(promise + timedelta(minutes=4))
    report = dispatcher.dispatch_once()
    assert meter.polls == [promise + timedelta(minutes=4)]
    assert report.breaches == []
    assert breaches(gateway) == []
    assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED


def test_a_step_still_unfinished_after_the_poll_is_a_breach(
    gateway: Gateway, clock: FixedClock
) -> None:
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    meter = ScriptedMeter(clock)
    dispatcher = Dispatcher(
        gateway, headends={"scripted": meter}, poll_interval=timedelta(minutes=5)
    )
    dispatcher.dispatch_once()
    meter.done_at = promise + timedelta(hours=1)  # the relay closes only after the promise
    clock.set(promise + timedelta(minutes=4))
    report = dispatcher.dispatch_once()
    assert [(o, s.value, v.value) for o, s, v in report.breaches] == [
        (order_id, "confirm", "major")
    ]
    assert breaches(gateway) == [(order_id, "confirm", "major")]


def test_a_meter_that_finished_between_two_polls_is_judged_by_the_next_poll(
    gateway: Gateway, clock: FixedClock
) -> None:
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    meter = ScriptedMeter(clock)
    dispatcher = Dispatcher(
        gateway, headends={"scripted": meter}, poll_interval=timedelta(minutes=5)
    )
    dispatcher.dispatch_once()
    clock.set(promise - timedelta(minutes=3))
    dispatcher.dispatch_once()  # a poll: not yet; the next one is due two minutes after the promise
    meter.done_at = promise - timedelta(minutes=1)
    clock.set(promise + timedelta(minutes=1))  # the deadline has passed, no poll is due yet
    assert dispatcher.dispatch_once().breaches == []
    assert breaches(gateway) == []
    clock.set(promise + timedelta(minutes=2))
    assert dispatcher.dispatch_once().breaches == []
    assert meter.polls == [promise - timedelta(minutes=3), promise + timedelta(minutes=2)]
    assert breaches(gateway) == []
    assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED


def test_a_step_a_poll_after_the_deadline_found_unfinished_is_a_breach(
    gateway: Gateway, clock: FixedClock
) -> None:
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    meter = ScriptedMeter(clock)
    dispatcher = Dispatcher(
        gateway, headends={"scripted": meter}, poll_interval=timedelta(minutes=5)
    )
    dispatcher.dispatch_once()
    clock.set(promise - timedelta(minutes=3))
    dispatcher.dispatch_once()
    clock.set(promise + timedelta(minutes=2))
    report = dispatcher.dispatch_once()  # asked after the deadline: not done
    assert [(o, s.value, v.value) for o, s, v in report.breaches] == [
        (order_id, "confirm", "major")
    ]
    # The facts decide, whoever asks: the gateway's own check records no second breach.
    assert gateway.check_deadlines() == []
    assert breaches(gateway) == [(order_id, "confirm", "major")]


def outage_over_the_promise(gateway: Gateway, clock: FixedClock, done_at: timedelta) -> int:
    """The head-end takes the order, then cannot be reached from two hours before the promise
    until an hour after it; the meter finishes ``done_at`` after the promise."""
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    meter = ScriptedMeter(clock)
    dispatcher = Dispatcher(
        gateway, headends={"scripted": meter}, poll_interval=timedelta(minutes=5),
        retry_base=timedelta(minutes=1), retry_cap=timedelta(minutes=10),
    )  # fmt: skip
    dispatcher.dispatch_once()
    meter.done_at = promise + done_at
    meter.down = True
    clock.set(promise - timedelta(hours=2))
    while clock.now() < promise + timedelta(hours=1):
        assert dispatcher.dispatch_once().breaches == []
        clock.advance(timedelta(minutes=1))
    meter.down = False
    clock.advance(timedelta(minutes=10))
    dispatcher.dispatch_once()
    assert meter.polls[-1] == clock.now()
    return order_id


def test_a_meter_done_in_time_during_an_outage_is_no_breach(
    gateway: Gateway, clock: FixedClock
) -> None:
    outage_over_the_promise(gateway, clock, done_at=-timedelta(minutes=30))
    assert breaches(gateway) == []
    assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED


def test_a_meter_not_done_when_the_outage_ends_is_a_breach(
    gateway: Gateway, clock: FixedClock
) -> None:
    order_id = outage_over_the_promise(gateway, clock, done_at=timedelta(hours=3))
    assert breaches(gateway) == [(order_id, "confirm", "major")]


def test_a_reconnection_raised_by_a_late_cut_is_dated_when_paygate_learns_of_the_cut(
    gateway: Gateway, clock: FixedClock
) -> None:
    in_arrears(gateway)
    cut = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
    gateway.record_order_progress(cut, HeadEndOutcome.DISPATCHED)
    pay_off(gateway)
    # The meter cut supply at 10:10; the head-end's callback reaches paygate at 10:40.
    cut_at = clock.now() + timedelta(minutes=10)
    clock.advance(timedelta(minutes=40))
    learned_at = clock.now()
    gateway.record_order_progress(cut, HeadEndOutcome.COMPLETED, at=cut_at)
    order_id = reconnection_id(gateway)
    created, dispatch_due, promise = order_times(gateway, order_id)
    assert created == learned_at
    assert dispatch_due == learned_at + timedelta(minutes=15)
    assert promise == learned_at + timedelta(hours=24)
    meter = ScriptedMeter(clock)
    report = Dispatcher(gateway, headends={"scripted": meter}).dispatch_once()
    assert report.orders_progressed == 1
    assert report.breaches == []
    assert breaches(gateway) == []
    # The cut itself keeps the meter's time: the account's history says when supply went.
    cut_row = gateway.store.run(
        lambda tx: tx.one("SELECT completed_at FROM supply_orders WHERE id = :id", {"id": cut}),
        write=False,
    )
    assert gateway.store.run(lambda tx: tx.read_ts(cut_row[0]), write=False) == cut_at


def standing_breaches(gateway: Gateway) -> list[tuple[str, str]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT step, severity FROM breaches WHERE withdrawn_at IS NULL ORDER BY id"
        ),
        write=False,
    )
    return [(str(s), str(v)) for s, v in rows]


def withdrawn_events(gateway: Gateway) -> list[dict[str, object]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = 'service.breach_withdrawn' ORDER BY id"
        ),
        write=False,
    )
    return [json.loads(r[0]) for r in rows]


def callback_order_judged_by_the_clock(gateway: Gateway, clock: FixedClock) -> tuple[int, datetime]:
    """A reconnection taken by a head-end that reports by callback only, judged by the clock
    two hours past its promise: its confirmation is a major breach."""
    in_arrears(gateway)
    gateway.disconnect(ACCOUNT, "arrears")
    pay_off(gateway)
    order_id = reconnection_id(gateway)
    _, _, promise = order_times(gateway, order_id)
    gateway.record_order_progress(order_id, HeadEndOutcome.ACKNOWLEDGED, at=clock.now())
    clock.set(promise + timedelta(hours=2))
    judged = gateway.check_deadlines()
    assert [(o, s.value, v.value) for o, s, v in judged] == [(order_id, "confirm", "major")]
    return order_id, promise


def test_a_clock_judged_breach_is_withdrawn_when_the_head_end_reports_the_step_in_time(
    gateway: Gateway, clock: FixedClock
) -> None:
    order_id, promise = callback_order_judged_by_the_clock(gateway, clock)
    done = promise - timedelta(minutes=10)
    gateway.record_order_progress(order_id, HeadEndOutcome.COMPLETED, at=done)
    assert standing_breaches(gateway) == []
    assert breaches(gateway) == [(order_id, "confirm", "major")]  # the record stays
    reason = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT withdrawn_reason FROM breaches WHERE order_id = :o", {"o": order_id}
        ),
        write=False,
    )
    assert reason == f"confirm done at {done.isoformat()}, by its deadline"
    assert gateway.store.run(breach_counts, write=False) == {}
    [withdrawn] = withdrawn_events(gateway)
    assert withdrawn["data"] == {
        "order_id": order_id,
        "kind": "reconnect",
        "step": "confirm",
        "severity": "major",
        "deadline": promise.isoformat(),
        "done_at": done.isoformat(),
    }
    # A duplicate callback withdraws nothing twice.
    gateway.record_order_progress(order_id, HeadEndOutcome.COMPLETED, at=done)
    assert len(withdrawn_events(gateway)) == 1
    assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED


def test_a_step_reported_done_after_its_deadline_keeps_its_breach(
    gateway: Gateway, clock: FixedClock
) -> None:
    order_id, promise = callback_order_judged_by_the_clock(gateway, clock)
    gateway.record_order_progress(
        order_id, HeadEndOutcome.COMPLETED, at=promise + timedelta(minutes=1)
    )
    assert standing_breaches(gateway) == [("confirm", "major")]
    assert gateway.store.run(breach_counts, write=False) == {Severity.MAJOR: 1}
    assert withdrawn_events(gateway) == []
