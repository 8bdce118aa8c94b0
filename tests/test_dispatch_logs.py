"""Every delivery attempt and its outcome is a log record with its fields: supply orders to
head-ends (reported, unavailable and retried, rejected) and events to sinks (delivered,
retried, dead-lettered)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.outbox import CallbackSink, Dispatcher
from tests.test_dispatch import FakeHeadEnd, pay_off
from tests.test_dispatch import disconnected as disconnected  # the fixture


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "paygate.outbox"]


def test_order_attempts_and_their_outcomes_are_logged(
    disconnected: Gateway, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paygate.outbox")
    headend = FakeHeadEnd(clock)
    headend.down_until = clock.now() + timedelta(minutes=5)
    dispatcher = Dispatcher(
        disconnected, headends={"fake": headend}, retry_base=timedelta(minutes=1)
    )
    order_id = pay_off(disconnected, clock)
    dispatcher.dispatch_once()
    [attempt, down] = [r for r in records(caplog) if getattr(r, "order_id", None) == order_id]
    assert (attempt.levelname, attempt.order_id, attempt.attempt) == ("DEBUG", order_id, 1)  # type: ignore[attr-defined]
    assert down.levelname == "WARNING" and "unavailable; retry at" in down.getMessage()
    assert (down.headend, down.attempt, down.error) == ("fake", 1, "connection refused")  # type: ignore[attr-defined]
    assert down.retry_at  # type: ignore[attr-defined]
    caplog.clear()
    clock.advance(timedelta(minutes=10))
    dispatcher.dispatch_once()
    reported = [r for r in records(caplog) if r.levelname == "INFO" and hasattr(r, "order_id")]
    assert [(r.order_id, r.attempt) for r in reported] == [(order_id, 2)]  # type: ignore[attr-defined]
    assert "head-end fake reports completed" in reported[0].getMessage()


def test_a_rejected_order_is_an_error_record(
    disconnected: Gateway, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    headend = FakeHeadEnd(clock)
    headend.reject = True
    order_id = pay_off(disconnected, clock)
    Dispatcher(disconnected, headends={"fake": headend}).dispatch_once()
    [rejected] = [r for r in records(caplog) if r.levelname == "ERROR"]
    assert rejected.order_id == order_id and rejected.error == "unknown meter"  # type: ignore[attr-defined]


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_event_deliveries_retries_and_dead_letters_are_logged(
    disconnected: Gateway, clock: FixedClock, caplog: pytest.LogCaptureFixture, max_attempts: int
) -> None:
    caplog.set_level(logging.INFO, logger="paygate.outbox")
    down = [True]

    def billing(event: object) -> None:
        if down[0]:
            raise RuntimeError("billing is down")

    pay_off(disconnected, clock)
    dispatcher = Dispatcher(
        disconnected,
        headends={"fake": FakeHeadEnd(clock)},
        sinks=[CallbackSink(billing, name="billing")],
        max_attempts=max_attempts,
        retry_base=timedelta(seconds=1),
    )
    dispatcher.dispatch_once()
    failed = {r.event_id: r for r in records(caplog) if hasattr(r, "event_id") and r.levelno > 20}  # type: ignore[attr-defined]
    assert failed and all(r.attempt == 1 and "billing is down" in r.error for r in failed.values())  # type: ignore[attr-defined]
    if max_attempts == 1:
        assert {r.levelname for r in failed.values()} == {"ERROR"}
        assert all("dead-lettered after 1 attempts" in r.getMessage() for r in failed.values())
        return
    assert {r.levelname for r in failed.values()} == {"WARNING"}
    assert all(f"retry at {r.retry_at}" in r.getMessage() for r in failed.values())  # type: ignore[attr-defined]
    caplog.clear()
    down[0] = False
    clock.advance(timedelta(minutes=5))
    dispatcher.dispatch_once()
    delivered = {r.event_id: r for r in records(caplog) if r.getMessage().endswith(": delivered")}  # type: ignore[attr-defined]
    # the failed events, and the later events of their accounts held behind them (in order)
    assert set(failed) <= set(delivered)
    assert all(r.levelname == "INFO" for r in delivered.values())
    assert all(delivered[e].attempt == 2 for e in failed)  # type: ignore[attr-defined]
