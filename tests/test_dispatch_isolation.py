"""The dispatcher keeps going: a head-end or sink that raises anything hurts only its own order
or event; events wait for a sink; dead letters can be listed and requeued; ``dispatch --once``
drains the backlog up to ``--max``. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.clock import FixedClock
from paygate.dispatch_config import check_dispatcher_options
from paygate.errors import ConfigurationError, NotFoundError
from paygate.gateway import Gateway
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.outbox import (
    CallbackSink,
    DeliveryError,
    Dispatcher,
    DispatchReport,
    dead_letters,
    requeue,
)

runner = CliRunner()


class Brittle(HeadEnd):
    """A head-end whose driver crashes (a bug, not an outage) on the meters it is told."""

    name = "brittle"

    def __init__(self, clock: FixedClock, crash_on: set[str]) -> None:
        self.clock = clock
        self.crash_on = crash_on
        self.sent: list[str] = []

    def send(self, command: SupplyCommand) -> HeadEndResult:
        if command.account_no in self.crash_on:
            raise KeyError("meter table corrupt")
        self.sent.append(command.account_no)
        return HeadEndResult(outcome=HeadEndOutcome.COMPLETED, at=self.clock.now())

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        return None


def reconnection_due(gateway: Gateway, account: str) -> int:
    gateway.open_account(account)
    gateway.set_meter(account, headend="brittle", meter_address="201905241006")
    gateway.issue_bill(
        account,
        bill_no=f"B-{account}",
        amount=Money(100, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )
    gateway.disconnect(account, "arrears")
    receipt = gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id=f"K-{account}",
            account_no=account,
            amount=Money(10_000, "CNY"),
            paid_at=gateway.clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    return receipt.reconnection_order_id


def order(gateway: Gateway, order_id: int) -> tuple[str, int, str | None, Any]:
    row = gateway.store.run(
        lambda tx: tx.one(
            "SELECT status, attempts, last_error, next_attempt_at FROM supply_orders "
            "WHERE id = :id",
            {"id": order_id},
        ),
        write=False,
    )
    assert row is not None
    return str(row[0]), int(row[1]), row[2], row[3]


def undelivered(gateway: Gateway) -> int:
    return int(
        gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"),
            write=False,
        )
    )


def test_a_crashing_head_end_hurts_only_its_own_order(gateway: Gateway, clock: FixedClock) -> None:
    bad = reconnection_due(gateway, "A0")
    good = [reconnection_due(gateway, f"A{n}") for n in range(1, 4)]
    headend = Brittle(clock, crash_on={"A0"})
    dispatcher = Dispatcher(gateway, headends={"brittle": headend}, sinks=[])
    report = dispatcher.dispatch_once()
    assert sorted(headend.sent) == ["A1", "A2", "A3"]
    assert report.orders_progressed == 3 and report.orders_retrying == 1
    assert all(order(gateway, o)[0] == "completed" for o in good)
    status, attempts, error, _ = order(gateway, bad)
    assert status == "open" and attempts == 1 and "KeyError" in (error or "")
    # backed off: the next pass at once does not claim it again
    assert dispatcher.dispatch_once().orders_attempted == 0
    clock.advance(timedelta(hours=2))
    headend.crash_on.clear()
    dispatcher.dispatch_once()
    assert order(gateway, bad)[0] == "completed"


def test_a_crashing_sink_does_not_stop_the_other_sinks_or_events(
    gateway: Gateway, clock: FixedClock
) -> None:
    reconnection_due(gateway, "A1")
    reconnection_due(gateway, "A2")
    seen: list[tuple[str, str]] = []

    def broken(event: Mapping[str, Any]) -> None:
        if event["type"] == "supply.disconnected" and event["subject"] == "A1":
            raise ValueError("template missing")

    class Raw:
        """A sink that raises something other than DeliveryError."""

        name = "raw"

        def deliver(self, event: Mapping[str, Any]) -> None:
            broken(event)

    dispatcher = Dispatcher(
        gateway,
        headends={"brittle": Brittle(clock, set())},
        sinks=[Raw(), CallbackSink(lambda e: seen.append((e["subject"], e["type"])))],
    )
    report = dispatcher.dispatch_once()
    assert report.orders_progressed == 2
    assert ("A1", "supply.disconnected") in seen  # the second sink was still offered it
    assert ("A2", "payment.posted") in seen and ("A2", "reconnection.completed") in seen
    # A1's later events wait behind the one that failed: they never overtake it
    assert [t for a, t in seen if a == "A1"] == ["supply.disconnected"]
    assert report.events_retrying == 1 and report.events_delivered >= 3


def test_the_run_loop_outlives_a_pass_that_raises(gateway: Gateway) -> None:
    stop = threading.Event()
    passes: list[int] = []

    class Flaky(Dispatcher):
        def dispatch_once(self, limit: int | None = None) -> DispatchReport:
            passes.append(1)
            if len(passes) == 1:
                raise RuntimeError("driver bug")
            stop.set()
            return DispatchReport()

    Flaky(gateway, headends={}).run(stop, idle_wait=0)
    assert len(passes) == 2


def test_without_a_sink_events_are_never_consumed(gateway: Gateway, clock: FixedClock) -> None:
    reconnection_due(gateway, "A1")
    before = undelivered(gateway)
    report = Dispatcher(gateway, headends={"brittle": Brittle(clock, set())}).dispatch_once()
    assert report.events_delivered == 0
    assert undelivered(gateway) > before  # the completion added one, nothing was consumed


def test_dead_letters_are_listed_and_requeued(gateway: Gateway, clock: FixedClock) -> None:
    reconnection_due(gateway, "A1")

    def down(event: Mapping[str, Any]) -> None:
        raise RuntimeError("billing system down")

    Dispatcher(gateway, headends={}, sinks=[CallbackSink(down)], max_attempts=1).dispatch_once()
    dead = dead_letters(gateway)
    assert dead and all("billing system down" in (d.last_error or "") for d in dead)
    with pytest.raises(NotFoundError):
        requeue(gateway, [dead[0].event_id, 999_999_999])
    assert len(dead_letters(gateway)) == len(dead)  # nothing was requeued
    assert requeue(gateway, [dead[0].event_id]) == 1
    assert requeue(gateway) == len(dead) - 1
    seen: list[int] = []
    Dispatcher(
        gateway, headends={}, sinks=[CallbackSink(lambda e: seen.append(int(e["id"])))]
    ).drain(1000)
    assert {d.event_id for d in dead} <= set(seen)
    assert dead_letters(gateway) == []


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_the_cli_lists_and_requeues_dead_letters(db_url: str, clock: FixedClock) -> None:
    with Gateway.open(db_url, clock=clock) as gateway:
        reconnection_due(gateway, "A1")
        reconnection_due(gateway, "A2")
        Dispatcher(
            gateway, headends={}, sinks=[CallbackSink(lambda e: 1 / 0)], max_attempts=1
        ).dispatch_once()
        dead = dead_letters(gateway)
    code, out = paygate("events", "dead", "--database-url", db_url)
    assert code == 0 and str(dead[0].event_id) in out and "ZeroDivisionError" in out
    code, out = paygate("events", "requeue", "424242", "--database-url", db_url)
    assert code == 2 and "no dead-lettered event 424242" in out
    code, out = paygate("events", "requeue", "--database-url", db_url)
    assert code == 2
    code, out = paygate("events", "requeue", "--all", "--database-url", db_url)
    assert code == 0 and f"{len(dead)} events requeued" in out
    code, out = paygate("events", "dead", "--database-url", db_url)
    assert code == 0 and "0 dead-lettered" in out


def test_dispatch_once_drains_the_backlog_up_to_max(db_url: str, clock: FixedClock) -> None:
    with Gateway.open(db_url, clock=clock) as gateway:
        for n in range(7):
            reconnection_due(gateway, f"A{n}")
        dispatcher = Dispatcher(gateway, headends={}, batch=2)
        first = dispatcher.drain(3)
        assert first.orders_attempted == 3
        rest = dispatcher.drain(100)
        assert rest.orders_attempted == 4 and rest.orders_failed == 4
    code, out = paygate("dispatch", "--once", "--max", "5", "--database-url", db_url)
    assert code == 0 and "0 attempted" in out and "no event sink configured" in out


def test_dispatch_once_tries_each_due_row_once_when_receivers_never_answer(
    gateway: Gateway, clock: FixedClock
) -> None:
    """A head-end and a sink that time out: the run takes longer than any backoff, yet each
    order and each account's first event due when it began is tried once (the account's later
    events wait behind it), and the run ends."""
    orders = [reconnection_due(gateway, f"A{n}") for n in range(3)]
    events = undelivered(gateway)

    class Hanging(HeadEnd):
        name = "brittle"

        def send(self, command: SupplyCommand) -> HeadEndResult:
            clock.advance(timedelta(hours=2))  # the read timeout, well past retry_cap
            raise HeadEndUnavailable("head-end did not answer in time")

        def poll(self, command: SupplyCommand) -> HeadEndResult | None:
            return None

    def hanging(event: Mapping[str, Any]) -> None:
        clock.advance(timedelta(hours=2))
        raise DeliveryError("sink did not answer in time")

    report = Dispatcher(
        gateway, headends={"brittle": Hanging()}, sinks=[CallbackSink(hanging)], batch=2
    ).drain(1000)
    assert report.orders_attempted == len(orders) and report.orders_retrying == len(orders)
    assert events > len(orders)
    assert report.events_handled == len(orders) and report.events_retrying == len(orders)
    assert all(order(gateway, o)[:2] == ("open", 1) for o in orders)


class Hanging:
    """A sink that takes its time over every event, like a receiver that never answers."""

    name = "hanging"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.offered = 0

    def deliver(self, event: Mapping[str, Any]) -> None:
        self.offered += 1
        time.sleep(self.seconds)
        raise DeliveryError("hanging: read timed out")


def test_a_hanging_sink_never_holds_reconnection_orders_behind_its_events(
    gateway: Gateway, clock: FixedClock
) -> None:
    for n in range(6):
        reconnection_due(gateway, f"E{n}")  # each leaves events for the sink
    headend = Brittle(clock, crash_on=set())
    sink = Hanging(0.2)
    dispatcher = Dispatcher(
        gateway,
        headends={"brittle": headend},
        sinks=[sink],
        event_budget=timedelta(seconds=0.5),
    )
    assert undelivered(gateway) > 10
    first = dispatcher.dispatch_once()
    assert first.orders_progressed == 6  # the orders went first
    # the events stopped at the budget; the rest are due, not claimed, for the next pass
    assert 1 <= first.events_handled <= 4 and sink.offered == first.events_handled
    assert first.events_deferred > 10 and not first.idle
    assert undelivered(gateway) == first.events_handled + first.events_deferred
    claimed = gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM outbox WHERE claim_token IS NOT NULL"),
        write=False,
    )
    assert claimed == 0
    # a payment that clears another account's arrears now: its order goes out on the next
    # pass, before that pass spends its budget on the events
    late = reconnection_due(gateway, "E9")
    started = time.monotonic()
    second = dispatcher.dispatch_once()
    assert order(gateway, late)[0] == "completed" and second.orders_progressed == 1
    assert time.monotonic() - started < 2.0


def test_the_event_budget_must_be_shorter_than_the_lease(gateway: Gateway) -> None:
    for budget in (timedelta(0), timedelta(minutes=2), timedelta(minutes=5)):
        with pytest.raises(ConfigurationError) as caught:
            Dispatcher(gateway, headends={}, event_budget=budget)
        assert caught.value.field == "event_budget"
    with pytest.raises(ConfigurationError, match=r"dispatcher\.event_budget_seconds"):
        check_dispatcher_options({"event_budget_seconds": 600})
    assert check_dispatcher_options({"event_budget_seconds": 30}) == {
        "event_budget": timedelta(seconds=30)
    }
