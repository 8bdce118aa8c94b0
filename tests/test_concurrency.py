"""Exactly-once under concurrent retries: 8 threads pay the same accounts with the same
channel transaction ids, in different orders, on PostgreSQL and on SQLite."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import IdempotencyConflictError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money

THREADS = 8
ACCOUNTS = 12
PAYMENTS = 120


def setup(gateway: Gateway) -> None:
    for n in range(ACCOUNTS):
        gateway.open_account(f"A{n}", category="non_residential" if n % 3 == 0 else "residential")
        gateway.issue_bill(
            f"A{n}",
            bill_no=f"B{n}",
            amount=Money(100_000, "CNY"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
        if n % 2 == 0:
            gateway.disconnect(f"A{n}", "arrears")


def intents(seed: int) -> list[PaymentIntent]:
    rng = random.Random(seed)
    base = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    return [
        PaymentIntent(
            channel=rng.choice(["kiosk", "mobile", "pos"]),
            channel_txn_id=f"T{i}",
            account_no=f"A{i % ACCOUNTS}",
            amount=Money(rng.randrange(1_000, 40_000), "CNY"),
            paid_at=base + timedelta(minutes=i),
        )
        for i in range(PAYMENTS)
    ]


def hammer(gateway: Gateway, work: list[PaymentIntent]) -> tuple[list[Receipt], list[Exception]]:
    receipts: list[list[Receipt]] = [[] for _ in range(THREADS)]
    errors: list[Exception] = []
    start = threading.Barrier(THREADS)

    def run(n: int) -> None:
        mine = list(work)
        random.Random(n).shuffle(mine)
        start.wait()
        for intent in mine:
            try:
                receipts[n].append(gateway.pay(intent))
            except IdempotencyConflictError as exc:
                errors.append(exc)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return [r for rs in receipts for r in rs], errors


def check(gateway: Gateway, work: list[PaymentIntent], receipts: list[Receipt]) -> None:
    by_txn: dict[tuple[str, str], list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_txn[(receipt.channel, receipt.channel_txn_id)].append(receipt)
    assert len(by_txn) == PAYMENTS
    for group in by_txn.values():
        assert len(group) == THREADS
        assert sum(not r.replayed for r in group) == 1  # posted once, replayed seven times
        assert len({r.model_copy(update={"replayed": False}) for r in group}) == 1
    count = gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM payments"), write=False)
    assert count == PAYMENTS
    posted = [r for r in receipts if not r.replayed]
    balances = gateway.ledger_balances()
    paid = Counter[str]()
    fees = Counter[str]()
    for r in posted:
        paid[r.account_no] += r.amount.minor
        fees[r.account_no] += r.late_fee.minor
    for n in range(ACCOUNTS):
        acct = f"A{n}"
        expected = 100_000 + fees[acct] - paid[acct]
        assert balances[f"receivable:{acct}"] == Money(expected, "CNY")
    for channel in ("kiosk", "mobile", "pos"):
        total = sum(i.amount.minor for i in work if i.channel == channel)
        assert balances[f"clearing:{channel}:CNY"] == Money(total, "CNY")
    orders = gateway.store.run(
        lambda tx: tx.all("SELECT account_id, COUNT(*) FROM supply_orders GROUP BY account_id"),
        write=False,
    )
    assert all(c == 1 for _, c in orders)  # never two reconnection orders for one account
    gateway.seal()
    report = gateway.verify()
    assert report.ok, report.findings


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_eight_threads_retrying_the_same_payments_post_each_once(
    kind: str, request: pytest.FixtureRequest, clock: FixedClock
) -> None:
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "pg_url")
    settings = Settings(database_url=url, seal_every=50)
    with Gateway.open(settings=settings, clock=clock) as gateway:
        setup(gateway)
        work = intents(seed=7)
        receipts, errors = hammer(gateway, work)
        assert errors == []
        check(gateway, work, receipts)


@pytest.mark.postgres
def test_conflicting_duplicates_under_concurrency_post_exactly_one_version(
    pg_url: str, clock: FixedClock
) -> None:
    with Gateway.open(settings=Settings(database_url=pg_url, seal_every=0), clock=clock) as gw:
        setup(gw)
        work = intents(seed=3)
        # each thread sends its own amount for the same ids: exactly one version wins per id
        variants = [
            [i.model_copy(update={"amount": Money(i.amount.minor + n, "CNY")}) for i in work]
            for n in range(THREADS)
        ]
        winners: dict[str, int] = {}
        conflicts = Counter[str]()
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def run(n: int) -> None:
            barrier.wait()
            for intent in variants[n]:
                try:
                    receipt = gw.pay(intent)
                except IdempotencyConflictError:
                    with lock:
                        conflicts[intent.channel_txn_id] += 1
                    continue
                assert not receipt.replayed
                with lock:
                    assert intent.channel_txn_id not in winners
                    winners[intent.channel_txn_id] = receipt.amount.minor

        threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert len(winners) == PAYMENTS
        assert all(conflicts[k] == THREADS - 1 for k in winners)
        stored = dict(
            gw.store.run(
                lambda tx: tx.all("SELECT channel_txn_id, amount FROM payments"), write=False
            )
        )
        assert stored == winners
        assert gw.verify().ok


@pytest.mark.postgres
def test_concurrent_batches_over_the_same_accounts_neither_deadlock_nor_double_post(
    pg_url: str, clock: FixedClock
) -> None:
    settings = Settings(database_url=pg_url, seal_every=0, pay_many_chunk=25)
    with Gateway.open(settings=settings, clock=clock) as gw:
        setup(gw)
        work = intents(seed=11)
        results: list[list[str]] = []
        barrier = threading.Barrier(4)

        def run(n: int) -> None:
            batch = list(work)
            random.Random(n).shuffle(batch)
            barrier.wait()
            results.append([o.status for o in gw.pay_many(batch)])

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        statuses = Counter(s for r in results for s in r)
        assert statuses == {"posted": PAYMENTS, "replayed": 3 * PAYMENTS}
        assert gw.verify().ok
