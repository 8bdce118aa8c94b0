"""Reconnection through a real HTTP head-end on loopback, with faults injected.

The head-end simulator is down for hours, slow, answering 500s, and calls back twice; the
dispatcher retries, the breaches get the right severity, the account ends connected, and no
order ever reaches the head-end under two idempotency keys. A ``paygate dispatch`` process is
killed with SIGKILL mid-delivery and the order still goes out, under the same key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.headend.webhook import WebhookHeadEnd
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.outbox import Dispatcher
from tests.headend.simulator import (
    CALLBACK_SECRET,
    COMMAND_SECRET,
    CallbackReceiver,
    HeadEndSimulator,
)


def disconnected_customer_pays(gateway: Gateway, clock: FixedClock, n: int = 1) -> list[int]:
    orders = []
    for k in range(n):
        acct = f"31000000{k:02d}"
        gateway.open_account(acct)
        gateway.set_meter(acct, headend="ami", meter_address=f"2019052410{k:02d}")
        gateway.issue_bill(
            acct,
            bill_no=f"B{k}",
            amount=Money(50_000, "CNY"),
            period="2026-10",
            # Overdue by five days whatever the clock says: a fee of 250 that the 1,000 over
            # the bill still covers, so the payment clears the arrears on any day it runs.
            due_date=(clock.now() - timedelta(days=5)).date(),
        )
        gateway.disconnect(acct, "arrears")
        receipt = gateway.pay(
            PaymentIntent(
                channel="mobile",
                channel_txn_id=f"M{k}",
                account_no=acct,
                amount=Money(51_000, "CNY"),
                paid_at=clock.now(),
            )
        )
        assert receipt.reconnection_order_id is not None
        orders.append(receipt.reconnection_order_id)
    return orders


def breaches(gateway: Gateway) -> dict[tuple[int, str], str]:
    rows = gateway.store.run(
        lambda tx: tx.all("SELECT order_id, step, severity FROM breaches"), write=False
    )
    return {(int(o), str(s)): str(v) for o, s, v in rows}


def test_a_long_outage_then_recovery_over_http(
    gateway: Gateway, clock: FixedClock, simulator: HeadEndSimulator, webhook: WebhookHeadEnd
) -> None:
    start = clock.now()
    simulator.down(until=start + timedelta(hours=26))
    [order_id] = disconnected_customer_pays(gateway, clock)
    dispatcher = Dispatcher(
        gateway,
        headends={"ami": webhook},
        retry_base=timedelta(minutes=1),
        retry_cap=timedelta(minutes=20),
        poll_interval=timedelta(minutes=5),
    )
    completed_at = None
    while clock.now() < start + timedelta(hours=30):
        dispatcher.dispatch_once()
        key = f"paygate-order-{order_id}"
        if (
            completed_at is None
            and key in simulator.executions
            and (clock.now() >= start + timedelta(hours=26, minutes=30))
        ):
            simulator.complete(order_id)  # the meter's relay closed
            completed_at = clock.now()
        clock.advance(timedelta(minutes=5))
    assert gateway.account_status("3100000000").supply_state is SupplyState.CONNECTED
    posted = [r for r in simulator.requests if r.method == "POST"]
    assert len(posted) > 10  # retried through the outage
    assert {r.idempotency_key for r in posted} == {f"paygate-order-{order_id}"}
    assert simulator.actions == [f"paygate-order-{order_id}"]  # the head-end acted once
    assert breaches(gateway) == {
        (order_id, "dispatch"): "minor",
        (order_id, "acknowledge"): "minor",
        (order_id, "confirm"): "major",
    }


def test_500s_and_a_slow_head_end_are_retried_with_one_key(
    gateway: Gateway, clock: FixedClock, simulator: HeadEndSimulator, webhook: WebhookHeadEnd
) -> None:
    orders = disconnected_customer_pays(gateway, clock, n=3)
    simulator.answer_outcome = "completed"
    simulator.fail_next(4)
    dispatcher = Dispatcher(
        gateway,
        headends={"ami": webhook},
        retry_base=timedelta(seconds=30),
        retry_cap=timedelta(minutes=2),
    )
    for _ in range(12):
        dispatcher.dispatch_once()
        clock.advance(timedelta(minutes=2))
    for n in range(3):
        assert gateway.account_status(f"31000000{n:02d}").supply_state is SupplyState.CONNECTED
    keys_by_order: dict[int, set[str | None]] = {}
    for r in simulator.requests:
        if r.method == "POST":
            keys_by_order.setdefault(int(r.json()["order_id"]), set()).add(r.idempotency_key)
    assert keys_by_order == {o: {f"paygate-order-{o}"} for o in orders}
    assert sorted(simulator.actions) == sorted(f"paygate-order-{o}" for o in orders)
    assert breaches(gateway) == {}


def test_a_slow_answer_times_out_and_the_retry_finds_the_command_done(
    gateway: Gateway, clock: FixedClock, simulator: HeadEndSimulator, webhook: WebhookHeadEnd
) -> None:
    [order_id] = disconnected_customer_pays(gateway, clock)
    simulator.answer_outcome = "completed"
    simulator.slow(3.0)  # acts, then answers after the adapter's 2 s read timeout
    dispatcher = Dispatcher(gateway, headends={"ami": webhook}, retry_base=timedelta(seconds=10))
    assert dispatcher.dispatch_once().orders_retrying == 1
    simulator.slow(0)
    simulator.release()
    clock.advance(timedelta(minutes=1))
    dispatcher.dispatch_once()
    assert gateway.account_status("3100000000").supply_state is SupplyState.CONNECTED
    assert simulator.actions == [f"paygate-order-{order_id}"]


def test_duplicate_callbacks_complete_the_order_once(
    gateway: Gateway,
    clock: FixedClock,
    simulator: HeadEndSimulator,
    webhook: WebhookHeadEnd,
    callback_receiver: CallbackReceiver,
) -> None:
    [order_id] = disconnected_customer_pays(gateway, clock)
    Dispatcher(gateway, headends={"ami": webhook}).dispatch_once()
    clock.advance(timedelta(minutes=40))
    simulator.callback_copies = 2
    assert simulator.complete(order_id) == [204, 204]
    for delivery in callback_receiver.deliveries:  # the HTTP route does exactly this
        callback = webhook.verify_callback(delivery.body, delivery.headers, now=clock.now())
        gateway.record_order_progress(
            callback.order_id,
            callback.outcome,
            at=callback.at,
            actor="ami",
            reference=callback.reference,
        )
    completions = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'reconnection.completed'"
        ),
        write=False,
    )
    assert completions == 1
    assert gateway.account_status("3100000000").supply_state is SupplyState.CONNECTED
    assert gateway.record_order_progress(order_id, HeadEndOutcome.COMPLETED).value == "completed"


def test_sigkill_mid_delivery_then_restart_delivers_under_the_same_key(
    db_url: str, tmp_path: Path
) -> None:
    # The dispatcher processes sign with the real time, so the head-end keeps it too.
    real_clock_start = datetime.now(UTC)
    with HeadEndSimulator(
        secret=COMMAND_SECRET, callback_secret=CALLBACK_SECRET, clock=FixedClock(real_clock_start)
    ) as simulator:
        _sigkill_then_restart(db_url, tmp_path, simulator, real_clock_start)
        assert simulator.errors == []


def _sigkill_then_restart(
    db_url: str, tmp_path: Path, simulator: HeadEndSimulator, real_clock_start: datetime
) -> None:
    with Gateway.open(db_url, clock=FixedClock(real_clock_start)) as gateway:
        [order_id] = disconnected_customer_pays(gateway, FixedClock(real_clock_start))
    config = tmp_path / "dispatch.toml"
    config.write_text(
        "[headends.ami]\n"
        'type = "webhook"\n'
        f'url = "{simulator.commands_url}"\n'
        'secret_env = "PAYGATE_TEST_AMI_SECRET"\n'
        "read_timeout = 30.0\n"
        "[dispatcher]\n"
        "lease_seconds = 2\n"
    )
    env = {**os.environ, "PAYGATE_TEST_AMI_SECRET": COMMAND_SECRET.decode()}
    simulator.answer_outcome = "completed"
    simulator.slow(30.0)  # the head-end acts, then takes its time to answer
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paygate.cli",
            "dispatch",
            "--config",
            str(config),
            "--database-url",
            db_url,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not simulator.actions and time.monotonic() < deadline:
            time.sleep(0.05)
        assert simulator.actions, child.stderr.read() if child.poll() is not None else "no call"
        child.send_signal(signal.SIGKILL)  # mid-delivery: the answer never arrives
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)
    simulator.slow(0)
    simulator.release()
    time.sleep(2.2)  # the dead dispatcher's lease runs out
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "paygate.cli",
            "dispatch",
            "--once",
            "--config",
            str(config),
            "--database-url",
            db_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert code.returncode == 0, code.stderr + code.stdout
    keys = {r.idempotency_key for r in simulator.requests if r.method == "POST"}
    assert keys == {f"paygate-order-{order_id}"}
    assert len([r for r in simulator.requests if r.method == "POST"]) == 2
    assert simulator.actions == [f"paygate-order-{order_id}"]
    with Gateway.open(db_url) as gateway:
        assert gateway.account_status("3100000000").supply_state is SupplyState.CONNECTED
        payload = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT payload FROM outbox WHERE event_type = 'reconnection.completed'"
            ),
            write=False,
        )
        assert json.loads(payload)["data"]["order_id"] == order_id
