"""Events of one account reach the sinks in the order they were written: a failed event holds
its account's later events back (and no one else's), also with dispatchers side by side."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.outbox import CallbackSink, DeliveryError, Dispatcher, dead_letters, requeue
from tests.databases import fresh_sqlite_url

START = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def three_events(gateway: Gateway, account_no: str) -> None:
    """dunning.notice, dunning.final_reminder, supply.disconnected, in that order."""
    gateway.open_account(account_no)
    gateway.issue_bill(
        account_no,
        bill_no=f"B-{account_no}",
        amount=Money(10_000, "CNY"),
        period="2026-09",
        due_date=date(2026, 10, 10),
    )
    gateway.serve_notice(account_no)
    gateway.serve_notice(account_no, "final_reminder")
    gateway.disconnect(account_no, "arrears")


def outbox_ids(gateway: Gateway) -> dict[str, list[int]]:
    by_account: dict[str, list[int]] = {}
    for account_no, event_id in gateway.store.run(
        lambda tx: tx.all("SELECT account_no, id FROM outbox ORDER BY id"), write=False
    ):
        by_account.setdefault(str(account_no), []).append(int(event_id))
    return by_account


def first_deliveries(log: list[tuple[str, int]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for account_no, event_id in log:
        ids = seen.setdefault(account_no, [])
        if event_id not in ids:
            ids.append(event_id)
    return seen


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    failures=st.lists(st.booleans(), min_size=1, max_size=40),
    batch=st.integers(min_value=1, max_value=7),
)
def test_no_event_overtakes_an_earlier_one_of_its_account(failures: list[bool], batch: int) -> None:
    """Whatever fails when, every event is delivered, and the first delivery of each event
    of an account comes after the first delivery of every earlier one of that account."""
    clock = FixedClock(START)
    with tempfile.TemporaryDirectory() as folder:
        url = fresh_sqlite_url(Path(folder))
        with Gateway.open(
            settings=Settings(database_url=url, seal_every=0), clock=clock
        ) as gateway:
            for n in range(3):
                three_events(gateway, f"A{n}")
            delivered: list[tuple[str, int]] = []
            outcomes = iter(failures)

            def flaky(event: Mapping[str, Any]) -> None:
                if next(outcomes, False):
                    raise DeliveryError("receiver busy")
                delivered.append((event["subject"], int(event["id"])))

            dispatcher = Dispatcher(
                gateway,
                headends={},
                sinks=[CallbackSink(flaky)],
                batch=batch,
                retry_base=timedelta(seconds=5),
                retry_cap=timedelta(seconds=20),
                max_attempts=100,
            )
            for _ in range(200):
                dispatcher.dispatch_once()
                if not _undelivered(gateway):
                    break
                clock.advance(timedelta(seconds=30))
            assert first_deliveries(delivered) == outbox_ids(gateway)


def _undelivered(gateway: Gateway) -> list[int]:
    return [
        int(r[0])
        for r in gateway.store.run(
            lambda tx: tx.all("SELECT id FROM outbox WHERE delivered_at IS NULL"), write=False
        )
    ]


def test_a_requeued_dead_letter_goes_before_its_accounts_later_events(
    gateway: Gateway, clock: FixedClock
) -> None:
    three_events(gateway, "A1")
    down = True
    delivered: list[int] = []

    def sink(event: Mapping[str, Any]) -> None:
        if down:
            raise DeliveryError("down")
        delivered.append(int(event["id"]))

    dispatcher = Dispatcher(gateway, headends={}, sinks=[CallbackSink(sink)], max_attempts=1)
    dispatcher.dispatch_once()
    [dead] = dead_letters(gateway)
    first, *later = outbox_ids(gateway)["A1"]
    assert dead.event_id == first
    # dead, it no longer holds the account back: the later ones go, in order
    down = False
    dispatcher.drain(100)
    assert delivered[: len(later)] == later
    delivered.clear()
    three_events(gateway, "A2")  # another account's events meanwhile
    gateway.serve_notice("A1", "final_reminder")  # and a newer one of A1
    newest = outbox_ids(gateway)["A1"][-1]
    down = True
    dispatcher.dispatch_once()  # A1's newest fails and dies too
    down = False
    requeue(gateway)
    dispatcher.drain(100)
    a1 = [i for i in delivered if i in (dead.event_id, newest)]
    assert a1 == [dead.event_id, newest]  # requeued: the oldest goes first again


@pytest.mark.postgres
def test_two_dispatchers_keep_each_accounts_order(pg_url: str, clock: FixedClock) -> None:
    with Gateway.open(settings=Settings(database_url=pg_url, seal_every=0), clock=clock) as gw:
        accounts = [f"A{n}" for n in range(4)]
        for account_no in accounts:
            three_events(gw, account_no)
        log: list[tuple[str, int]] = []
        lock = threading.Lock()

        def slow(event: Mapping[str, Any]) -> None:
            time.sleep(0.02)  # long enough for the other dispatcher to claim meanwhile
            with lock:
                log.append((event["subject"], int(event["id"])))

        dispatchers = [
            Dispatcher(gw, headends={}, sinks=[CallbackSink(slow)], batch=2) for _ in range(2)
        ]
        barrier = threading.Barrier(2)

        def run(d: Dispatcher) -> None:
            barrier.wait()
            for _ in range(20):
                d.dispatch_once()

        threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert first_deliveries(log) == outbox_ids(gw)
        assert len(log) == len(set(log)) == 3 * len(accounts)  # and none twice
