"""The demo: a small utility's month, end to end, on a fresh database.

A few hundred accounts get two months of bills; some fall behind and are disconnected; their
customers pay through several channels (on time, late, partly, twice by mistake); payments
that clear a disconnected account's arrears raise reconnection orders, which a dispatcher sends
to a simulated AMI head-end every ten minutes — through a 28-hour outage of that head-end,
whose missed deadlines are recorded as breaches; one payment bounces and is reversed. The demo
ends by sealing the journal and verifying it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.ledger import VerifyReport
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.outbox import CallbackSink, Dispatcher

__all__ = ["DemoSummary", "run_demo"]

CHANNELS = ("kiosk", "mobile", "online", "pos", "bank_agent", "prepaid_card")
OUTAGE = (datetime(2026, 11, 23, 2, 0, tzinfo=UTC), datetime(2026, 11, 24, 6, 0, tzinfo=UTC))


class SimulatedHeadEnd(HeadEnd):
    """An AMI head-end in the demo: accepts commands, confirms supply about 20 minutes later,
    and is unreachable during ``OUTAGE``."""

    name = "demo-ami"

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.sent: dict[int, datetime] = {}
        self.refused = 0

    def _up(self) -> None:
        if OUTAGE[0] <= self.clock.now() < OUTAGE[1]:
            self.refused += 1
            raise HeadEndUnavailable("connection refused (head-end outage)")

    def send(self, command: SupplyCommand) -> HeadEndResult:
        self._up()
        self.sent.setdefault(command.order_id, self.clock.now())
        return HeadEndResult(outcome=HeadEndOutcome.DISPATCHED, at=self.clock.now())

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        self._up()
        age = self.clock.now() - self.sent.get(command.order_id, self.clock.now())
        if age >= timedelta(minutes=20):
            return HeadEndResult(outcome=HeadEndOutcome.COMPLETED, at=self.clock.now())
        if age >= timedelta(minutes=5):
            return HeadEndResult(outcome=HeadEndOutcome.ACKNOWLEDGED, at=self.clock.now())
        return None


@dataclass
class DemoSummary:
    """What the demo did, for printing."""

    accounts: int = 0
    bills: int = 0
    disconnected: int = 0
    payments: Counter[str] = field(default_factory=Counter)
    amounts: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    refused: int = 0
    late_fees: int = 0
    reconnection_orders: int = 0
    reconnected: int = 0
    reversals: int = 0
    batch_posted: int = 0
    verify: VerifyReport | None = None
    sealed: int = 0
    ledger: dict[str, Money] = field(default_factory=dict)
    step_minutes: dict[str, tuple[float, float]] = field(default_factory=dict)
    breaches: Counter[str] = field(default_factory=Counter)
    headend_refusals: int = 0
    events_delivered: int = 0


def run_demo(database_url: str, *, accounts: int = 300, seed: int = 2026) -> DemoSummary:
    """Run the demo against ``database_url`` (a fresh database) and return its summary."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible story, not a secret
    clock = FixedClock(datetime(2026, 10, 1, 1, 0, tzinfo=UTC))
    settings = Settings.from_env(database_url=database_url, seal_every=500)
    summary = DemoSummary()
    with Gateway.open(settings=settings, clock=clock) as gateway:
        numbers = [f"31{n:08d}" for n in range(1, accounts + 1)]
        for n, account_no in enumerate(numbers):
            gateway.open_account(
                account_no,
                category="non_residential" if n % 10 == 0 else "residential",
                protected=n % 97 == 0,
                name=f"Customer {n + 1}",
            )
        summary.accounts = len(numbers)

        amounts: dict[str, int] = {}
        for period, due in (("2026-09", date(2026, 10, 15)), ("2026-10", date(2026, 11, 15))):
            for account_no in numbers:
                minor = rng.randrange(3_000, 60_000) * (10 if account_no.endswith("0") else 1)
                amounts[account_no] = amounts.get(account_no, 0) + minor
                gateway.issue_bill(
                    account_no,
                    bill_no=f"{account_no}-{period}",
                    amount=Money(minor, "CNY"),
                    period=period,
                    due_date=due,
                )
                summary.bills += 1
            clock.set(datetime.combine(due, datetime.min.time(), UTC) - timedelta(days=2))
            if period == "2026-09":
                # Most customers pay the September bill; some do not.
                for account_no in numbers:
                    if rng.random() < 0.8:
                        _pay(gateway, summary, rng, clock, account_no, None)

        # November 20: those still owing September are disconnected (protected ones are not).
        clock.set(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
        for account_no in numbers:
            status = gateway.account_status(account_no)
            if any(b.period == "2026-09" and b.overdue for b in status.bills):
                if status.protected:
                    continue
                gateway.disconnect(account_no, "arrears over 30 days", actor="demo")
                summary.disconnected += 1

        # November 21-27: customers pay through every channel, at every hour; a dispatcher runs
        # every ten minutes and sends reconnection orders to the head-end.
        headend = SimulatedHeadEnd(clock)
        delivered: list[object] = []
        dispatcher = Dispatcher(
            gateway,
            headends={headend.name: headend},
            sinks=[CallbackSink(delivered.append, name="billing")],
            default_headend=headend.name,
            poll_interval=timedelta(minutes=5),
            retry_base=timedelta(minutes=2),
            retry_cap=timedelta(minutes=30),
            batch=200,
        )
        orders: list[int] = []
        receipts: list[Receipt] = []
        clock.set(datetime(2026, 11, 21, 0, 0, tzinfo=UTC))
        end = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
        while clock.now() < end:
            for account_no in numbers:
                if rng.random() < 0.12 / 144:
                    receipt = _pay(gateway, summary, rng, clock, account_no, None)
                    if receipt is not None:
                        receipts.append(receipt)
                        if receipt.reconnection_order_id is not None:
                            orders.append(receipt.reconnection_order_id)
            dispatcher.dispatch_once()
            clock.advance(timedelta(minutes=10))

        # A bank agent's daily file, with one line for an account that does not exist.
        batch = [
            PaymentIntent(
                channel="bank_agent",
                channel_txn_id=f"BA20261127{n:05d}",
                account_no=account_no,
                amount=Money(rng.randrange(1_000, 20_000), "CNY"),
                paid_at=clock.now(),
            )
            for n, account_no in enumerate(rng.sample(numbers, 40))
        ]
        batch.append(
            PaymentIntent(
                channel="bank_agent",
                channel_txn_id="BA2026112799999",
                account_no="3199999999",
                amount=Money(5_000, "CNY"),
                paid_at=clock.now(),
            )
        )
        for outcome in gateway.pay_many(batch):
            if outcome.status == "posted" and outcome.receipt is not None:
                summary.batch_posted += 1
                summary.payments["bank_agent"] += 1
                summary.amounts["bank_agent"] += outcome.receipt.amount.minor
                summary.late_fees += outcome.receipt.late_fee.minor
                if outcome.receipt.reconnection_order_id is not None:
                    orders.append(outcome.receipt.reconnection_order_id)
            elif outcome.status == "refused":
                summary.refused += 1

        # One mobile payment bounces and is reversed.
        bounced = next((r for r in receipts if r.channel == "mobile"), None)
        if bounced is not None:
            gateway.reverse(bounced.payment_id, "wallet reported the payment as fraudulent")
            summary.reversals += 1

        # The rest of the day: the dispatcher finishes what is under way.
        for _ in range(18):
            clock.advance(timedelta(minutes=10))
            dispatcher.dispatch_once()
        summary.reconnection_orders = len(orders)
        summary.headend_refusals = headend.refused
        summary.events_delivered = len(delivered)
        _order_figures(gateway, summary)

        summary.sealed = gateway.seal()
        summary.verify = gateway.verify()
        summary.ledger = gateway.ledger_balances()
    return summary


def _pay(
    gateway: Gateway,
    summary: DemoSummary,
    rng: random.Random,
    clock: FixedClock,
    account_no: str,
    amount: int | None,
) -> Receipt | None:
    status = gateway.account_status(account_no)
    owed = status.arrears.minor or status.outstanding.minor
    if amount is None:
        if owed <= 0:
            return None
        roll = rng.random()
        # Most pay what they owe; some pay part, some round up.
        if roll < 0.15:
            amount = max(100, owed // 2)
        elif roll < 0.3:
            amount = (owed // 10_000 + 1) * 10_000
        else:
            amount = owed
    channel = rng.choice(CHANNELS)
    txn = f"{channel[:3].upper()}{rng.getrandbits(48):012x}"
    intent = PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no=account_no,
        amount=Money(amount, "CNY"),
        paid_at=clock.now(),
    )
    receipt = gateway.pay(intent)
    summary.payments[channel] += 1
    summary.amounts[channel] += amount
    summary.late_fees += receipt.late_fee.minor
    if rng.random() < 0.05:
        # A kiosk that lost the reply sends the same payment again.
        again = gateway.pay(intent)
        summary.replays += int(again.replayed)
    return receipt


def _order_figures(gateway: Gateway, summary: DemoSummary) -> None:
    """Median and worst minutes per step of the reconnection orders, and breaches by severity."""

    def read(tx: Any) -> None:
        rows = tx.all(
            "SELECT created_at, dispatched_at, acknowledged_at, completed_at, status "
            "FROM supply_orders WHERE kind = 'reconnect'"
        )
        steps: dict[str, list[float]] = {"dispatched": [], "acknowledged": [], "restored": []}
        for created, dispatched, acknowledged, completed, status in rows:
            start = tx.read_ts(created)
            for label, value in (
                ("dispatched", dispatched),
                ("acknowledged", acknowledged),
                ("restored", completed),
            ):
                if value is not None:
                    steps[label].append((tx.read_ts(value) - start).total_seconds() / 60)
            summary.reconnected += status == "completed"
        for label, minutes in steps.items():
            if minutes:
                minutes.sort()
                summary.step_minutes[label] = (minutes[len(minutes) // 2], minutes[-1])
        for (severity,) in tx.all("SELECT severity FROM breaches"):
            summary.breaches[str(severity)] += 1

    gateway.store.run(read, write=False)
