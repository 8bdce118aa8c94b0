"""Group commit: concurrent payments share one transaction, each caller keeps its own outcome.

On SQLite and PostgreSQL: many threads paying at once post every payment exactly once; a bad
payment, an unexpected error on one payment or a crash of the whole group never costs the
others anything nor posts anything half; duplicates within a group and across groups are
replays; the window is honoured; with the window at 0 nothing is grouped. A hypothesis
property checks that payments posted in groups come out as if paid one by one.

To make a group of exactly the payments a test names, :func:`grouped` keeps the committer busy
with a blocker (a payment whose preparation waits), so that none of the test's callers is
alone, joins the callers one after another (so their arrival order is known), and seals the
group when the last has joined (``group_commit_max``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from paygate.billing import AllocationPart, OldestFirst, OpenBill
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import (
    ConfigurationError,
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    PaygateError,
    UnknownAccountError,
)
from paygate.gateway import Gateway
from paygate.group_commit import Batcher
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.payments import Payments
from paygate.store.engine import Tx

PAID_AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)

Outcome = Receipt | BaseException


def intent(txn: str, account: str, minor: int, channel: str = "kiosk", **kw: Any) -> PaymentIntent:
    return PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no=account,
        amount=Money(minor, kw.pop("currency", "CNY")),
        paid_at=kw.pop("paid_at", PAID_AT),
        **kw,
    )


def customer(gateway: Gateway, account: str, owes: int = 10_000, *, overdue: bool = False) -> None:
    gateway.open_account(account)
    gateway.issue_bill(
        account,
        bill_no=f"B-{account}",
        amount=Money(owes, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 15) if overdue else date(2026, 12, 15),
    )


def count(gateway: Gateway, table: str) -> int:
    return int(
        gateway.store.run(lambda tx: tx.scalar(f"SELECT COUNT(*) FROM {table}"), write=False)
    )


@pytest.fixture
def sizes(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every call of pay_within the gateway makes (a group's, or a lone one's)."""
    seen: list[int] = []
    real = gateway.payments.pay_within

    def recording(tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        seen.append(len(intents))
        return real(tx, intents)

    monkeypatch.setattr(gateway.payments, "pay_within", recording)
    return seen


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def grouped(gateway: Gateway, calls: Sequence[Callable[[], Receipt]]) -> list[Outcome]:
    """Run ``calls`` (each paying once) as one group, joined in the order given."""
    group = gateway.payment_group
    gateway.settings = gateway.settings.model_copy(
        update={"group_commit_window_ms": 30_000.0, "group_commit_max": len(calls)}
    )
    entered, release = threading.Event(), threading.Event()

    def hold(_tx: Tx) -> PaymentIntent | PaygateError:
        entered.set()
        release.wait(30)
        return InvalidInputError("the blocker posts nothing", field="blocker")

    def blocker() -> None:
        with pytest.raises(InvalidInputError):
            group.pay_prepared(hold)

    outcomes: list[Outcome | None] = [None] * len(calls)

    def call(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except BaseException as exc:
            outcomes[index] = exc

    holder = threading.Thread(target=blocker)
    holder.start()
    entered.wait(30)
    threads = []
    for index in range(len(calls)):
        thread = threading.Thread(target=call, args=(index,))
        thread.start()
        threads.append(thread)
        # Joined: counted in flight, or already answered. On PostgreSQL two groups run at once,
        # so the group the last caller completes may run and finish beside the blocker's before
        # this thread looks.
        _wait_for(
            lambda index=index: group.in_flight == index + 2 or outcomes[index] is not None,  # type: ignore[misc]
            "a caller to join",
        )
    release.set()
    for thread in [holder, *threads]:
        thread.join(60)
    assert not any(t.is_alive() for t in [holder, *threads])
    gateway.settings = gateway.settings.model_copy(
        update={"group_commit_window_ms": 2.0, "group_commit_max": 64}
    )
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def paying(gateway: Gateway, *intents: PaymentIntent) -> list[Callable[[], Receipt]]:
    return [lambda i=i: gateway.pay(i) for i in intents]  # type: ignore[misc]


def receipt(outcome: Outcome) -> Receipt:
    assert isinstance(outcome, Receipt), outcome
    return outcome


def same_decision(a: Receipt, b: Receipt) -> dict[str, Any]:
    """What differs between two receipts beyond their identities (ids, account, txn)."""
    ignore = {"payment_id", "channel_txn_id", "account_no", "reconnection_order_id"}
    left, right = a.model_dump(exclude=ignore), b.model_dump(exclude=ignore)
    for side in (left, right):  # bills are numbered after their account
        side["allocations"] = [{**x, "bill_no": None} for x in side["allocations"]]
    return {k: (left[k], right[k]) for k in left if left[k] != right[k]}


# ── a group of named payments ────────────────────────────────────────────────────────────


def test_payments_arriving_together_share_one_transaction_each_with_its_own_receipt(
    gateway: Gateway, sizes: list[int]
) -> None:
    for n in range(6):
        customer(gateway, f"A{n}")
    outcomes = grouped(
        gateway, paying(gateway, *(intent(f"T{n}", f"A{n}", 1000) for n in range(6)))
    )
    assert sizes == [6]
    for n, outcome in enumerate(outcomes):
        got = receipt(outcome)
        assert (got.channel_txn_id, got.account_no, got.replayed) == (f"T{n}", f"A{n}", False)
        assert got.balance_after == Money(9000, "CNY")
    assert count(gateway, "payments") == 6
    assert gateway.verify().ok


def test_two_payments_of_one_account_in_a_group_are_applied_in_arrival_order(
    gateway: Gateway, sizes: list[int]
) -> None:
    for account in ("G", "S"):
        customer(gateway, account, overdue=True)
        gateway.disconnect(account, "arrears")
    outcomes = grouped(gateway, paying(gateway, intent("G1", "G", 3000), intent("G2", "G", 9000)))
    assert sizes == [2]
    first, second = receipt(outcomes[0]), receipt(outcomes[1])
    # The same payments, one by one: the same decisions.
    alone_first = gateway.pay(intent("S1", "S", 3000))
    alone_second = gateway.pay(intent("S2", "S", 9000))
    assert same_decision(first, alone_first) == {}
    assert same_decision(second, alone_second) == {}
    assert first.late_fee.minor > 0 and second.late_fee.minor == 0
    assert not first.arrears_cleared and second.arrears_cleared
    assert second.reconnection_order_id is not None
    assert gateway.account_status("G").balance == gateway.account_status("S").balance
    assert gateway.verify().ok


def test_a_duplicate_within_a_group_is_a_replay_of_the_first_and_a_changed_one_a_conflict(
    gateway: Gateway, sizes: list[int]
) -> None:
    customer(gateway, "A1")
    outcomes = grouped(
        gateway,
        paying(
            gateway,
            intent("T1", "A1", 1000),
            intent("T1", "A1", 1000),
            intent("T1", "A1", 2000),
            intent("T2", "A1", 500),
        ),
    )
    assert sizes == [4]
    first, replay = receipt(outcomes[0]), receipt(outcomes[1])
    assert not first.replayed and replay.replayed
    assert replay.payment_id == first.payment_id and replay.amount == first.amount
    assert isinstance(outcomes[2], IdempotencyConflictError)
    assert receipt(outcomes[3]).balance_after == Money(8500, "CNY")
    assert count(gateway, "payments") == 2


def test_bad_payments_among_good_ones_fail_alone(gateway: Gateway, sizes: list[int]) -> None:
    for account in ("A1", "A2", "A3"):
        customer(gateway, account)
    gateway.pay(intent("OLD", "A3", 700))
    sizes.clear()
    outcomes = grouped(
        gateway,
        paying(
            gateway,
            intent("T1", "A1", 1000),
            intent("T2", "NOBODY", 1000),
            intent("T3", "A2", 1000, currency="USD"),
            intent("OLD", "A3", 9999),  # posted before with another amount
            intent("T5", "A3", 300),
        ),
    )
    assert sizes == [5]
    assert isinstance(outcomes[1], UnknownAccountError)
    assert isinstance(outcomes[2], CurrencyMismatchError)
    assert isinstance(outcomes[3], IdempotencyConflictError)
    assert receipt(outcomes[0]).balance_after == Money(9000, "CNY")
    assert receipt(outcomes[4]).balance_after == Money(9000, "CNY")
    assert count(gateway, "payments") == 3
    # A payment no account could take is refused before it joins any group.
    with pytest.raises(InvalidAmountError):
        gateway.pay(intent("T6", "A1", 0))
    assert gateway.payment_group.in_flight == 0
    assert gateway.verify().ok


class _Exploding:
    """Oldest first, except that an amount of 666.00 blows up the allocation."""

    def __init__(self) -> None:
        self.armed = True

    def allocate(self, amount: int, bills: Sequence[OpenBill]) -> list[AllocationPart]:
        if self.armed and amount == 66_600:
            raise RuntimeError("the allocation exploded")
        return OldestFirst().allocate(amount, bills)


def test_an_unexpected_error_on_one_payment_fails_it_alone_and_its_retry_posts_once(
    gateway: Gateway, sizes: list[int]
) -> None:
    for account in ("A1", "A2", "A3", "A4"):
        customer(gateway, account, owes=100_000)
    policy = _Exploding()
    gateway.allocation = policy
    bad = intent("BAD", "A2", 66_600)
    outcomes = grouped(
        gateway,
        paying(
            gateway,
            intent("T1", "A1", 1000),
            bad,
            intent("T3", "A3", 1000),
            intent("T4", "A4", 1000),
        ),
    )
    assert isinstance(outcomes[1], RuntimeError)
    assert [receipt(outcomes[i]).replayed for i in (0, 2, 3)] == [False] * 3
    assert sizes[0] == 4 and len(sizes) > 1  # the group failed, then was split
    assert count(gateway, "payments") == 3
    assert gateway.account_status("A2").balance == Money(100_000, "CNY")
    assert gateway.verify().ok
    policy.armed = False
    retried = gateway.pay(bad)
    assert not retried.replayed
    assert gateway.pay(bad).replayed
    assert count(gateway, "payments") == 4


def test_an_error_in_a_members_own_step_rolls_back_its_writes_alone(
    gateway: Gateway, sizes: list[int]
) -> None:
    for account in ("A1", "A2", "A3"):
        customer(gateway, account)
    expires = gateway.store.run(lambda tx: tx.ts(datetime(2030, 1, 1, tzinfo=UTC)), write=False)

    def prepared(n: int, fail: bool) -> Callable[[], Receipt]:
        def prepare(tx: Tx) -> PaymentIntent:
            tx.execute(
                "INSERT INTO nonces (nonce_key, expires_at) VALUES (:k, :e)",
                {"k": f"n{n}", "e": expires},
            )
            if fail:
                raise ValueError("the request could not be read")
            return intent(f"T{n}", f"A{n}", 1000)

        return lambda: gateway.payment_group.pay_prepared(prepare)

    outcomes = grouped(gateway, [prepared(1, False), prepared(2, True), prepared(3, False)])
    assert isinstance(outcomes[1], ValueError)
    assert receipt(outcomes[0]).account_no == "A1" and receipt(outcomes[2]).account_no == "A3"
    keys = gateway.store.run(
        lambda tx: sorted(str(k) for (k,) in tx.all("SELECT nonce_key FROM nonces")), write=False
    )
    assert keys == ["n1", "n3"]
    assert count(gateway, "payments") == 2
    assert sizes == [2]  # the first attempt failed before posting; the rest went again


@pytest.mark.parametrize("failures", [1, 1000], ids=["once", "always"])
def test_a_crash_of_the_whole_group_posts_nothing_half_and_each_retry_posts_once(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    for n in range(4):
        customer(gateway, f"A{n}")
    real = gateway.payments.pay_within
    left = [failures]

    def crashing(tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        results = real(tx, intents)  # every row written, then the process "crashes"
        if left[0] > 0:
            left[0] -= 1
            raise ConnectionError("the database went away before the commit")
        return results

    monkeypatch.setattr(gateway.payments, "pay_within", crashing)
    payments = [intent(f"T{n}", f"A{n}", 1000) for n in range(4)]
    tables = ("payments", "journal_entries", "postings", "allocations", "outbox", "bills")
    before = {table: count(gateway, table) for table in tables}
    outcomes = grouped(gateway, paying(gateway, *payments))
    if failures == 1:
        # Failed once, then posted in halves: every payment once, nobody told of an error.
        assert [receipt(o).replayed for o in outcomes] == [False] * 4
        assert count(gateway, "payments") == 4
    else:
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        assert {table: count(gateway, table) for table in tables} == before
        left[0] = 0
        assert [gateway.pay(i).replayed for i in payments] == [False] * 4
        assert [gateway.pay(i).replayed for i in payments] == [True] * 4
        assert count(gateway, "payments") == 4
    assert gateway.verify().ok


def test_entries_of_a_group_count_toward_the_seal_once_committed(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.settings = gateway.settings.model_copy(update={"seal_every": 5})
    for n in range(3):
        customer(gateway, f"A{n}")  # three bills: three entries
    assert gateway.payments.pending_seal == 3
    grouped(gateway, paying(gateway, *(intent(f"T{n}", f"A{n}", 100) for n in range(3))))
    # 3 + 3 >= 5: sealed, and nothing is counted twice
    assert gateway.payments.pending_seal == 0
    assert count(gateway, "seal_queue") == 0
    real = gateway.payments.pay_within

    def failing(tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        real(tx, intents)
        raise ConnectionError("rolled back")

    monkeypatch.setattr(gateway.payments, "pay_within", failing)
    outcomes = grouped(gateway, paying(gateway, intent("X1", "A0", 100), intent("X2", "A1", 100)))
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert gateway.payments.pending_seal == 0  # rolled back: nothing counted


# ── many threads at once ─────────────────────────────────────────────────────────────────

THREADS = 16


def hammer(gateway: Gateway, work: list[PaymentIntent]) -> tuple[list[Receipt], list[Exception]]:
    """Every thread pays every intent, in its own order, all at once."""
    receipts: list[Receipt] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def run(n: int) -> None:
        mine = list(work)
        random.Random(n).shuffle(mine)
        start.wait()
        for item in mine:
            try:
                got = gateway.pay(item)
            except Exception as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                receipts.append(got)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    return receipts, errors


def test_many_threads_paying_the_same_payments_post_each_exactly_once(
    gateway: Gateway, sizes: list[int]
) -> None:
    for n in range(8):
        customer(gateway, f"A{n}", owes=1_000_000)
    rng = random.Random(5)
    work = [
        intent(
            f"T{i}",
            f"A{i % 8}",
            rng.randrange(100, 5000),
            channel=rng.choice(["kiosk", "alipay", "pos"]),
            paid_at=PAID_AT + timedelta(seconds=i),
        )
        for i in range(40)
    ]
    receipts, errors = hammer(gateway, work)
    assert errors == []
    assert len(receipts) == THREADS * len(work)
    by_txn: dict[tuple[str, str], list[Receipt]] = defaultdict(list)
    for got in receipts:
        by_txn[(got.channel, got.channel_txn_id)].append(got)
    for item in work:
        mine = by_txn[(item.channel, item.channel_txn_id)]
        assert len(mine) == THREADS
        assert sum(not r.replayed for r in mine) == 1  # posted once, replayed to the others
        assert {r.payment_id for r in mine} == {mine[0].payment_id}
        assert {(r.account_no, r.amount) for r in mine} == {(item.account_no, item.amount)}
    assert count(gateway, "payments") == len(work)
    assert max(sizes) > 1  # payments did share transactions
    total = sum(i.amount.minor for i in work)
    owed = sum(gateway.account_status(f"A{n}").balance.minor for n in range(8))
    assert owed == 8 * 1_000_000 - total
    assert gateway.verify().ok


# ── disabled ─────────────────────────────────────────────────────────────────────────────


def test_with_the_window_at_zero_every_payment_is_its_own_transaction(
    gateway: Gateway, sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.settings = gateway.settings.model_copy(update={"group_commit_window_ms": 0.0})
    assert not gateway.payment_group.enabled
    calls: list[PaymentIntent] = []
    real = Payments.pay

    def counting(self: Payments, item: PaymentIntent) -> Receipt:
        calls.append(item)
        return real(self, item)

    monkeypatch.setattr(Payments, "pay", counting)
    for n in range(4):
        customer(gateway, f"A{n}")
    receipts, errors = [], []
    barrier = threading.Barrier(4)

    def run(n: int) -> None:
        barrier.wait()
        try:
            receipts.append(gateway.pay(intent(f"T{n}", f"A{n}", 1000)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(receipts) == 4
    assert len(calls) == 4 and sizes == [1, 1, 1, 1]
    assert gateway.payment_group.in_flight == 0
    # A prepared payment runs in the caller's own thread and transaction.
    threads_seen: list[threading.Thread] = []

    def prepare(_tx: Tx) -> PaymentIntent:
        threads_seen.append(threading.current_thread())
        return intent("P1", "A0", 100)

    assert not gateway.payment_group.pay_prepared(prepare).replayed
    assert threads_seen == [threading.current_thread()]


def test_a_lone_caller_gets_what_it_got_without_grouping(gateway: Gateway) -> None:
    customer(gateway, "G", overdue=True)
    customer(gateway, "S", overdue=True)
    grouped_receipt = gateway.pay(intent("G1", "G", 4000))
    gateway.settings = gateway.settings.model_copy(update={"group_commit_window_ms": 0.0})
    plain = gateway.pay(intent("S1", "S", 4000))
    assert same_decision(grouped_receipt, plain) == {}
    with pytest.raises(UnknownAccountError):
        gateway.pay(intent("X", "NOBODY", 100))
    gateway.settings = gateway.settings.model_copy(update={"group_commit_window_ms": 2.0})
    with pytest.raises(UnknownAccountError):
        gateway.pay(intent("X", "NOBODY", 100))
    with pytest.raises(TypeError):
        gateway.pay("not an intent")  # type: ignore[arg-type]


# ── the property: grouped = one by one ───────────────────────────────────────────────────

_examples = iter(range(10**9))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[str, int, str]], list[int]]:
    """Payments (txn, amount, account) with duplicates and unknowns, and group sizes."""
    n = draw(st.integers(1, 8))
    payments = [
        (
            f"T{draw(st.integers(0, 5))}",
            draw(st.sampled_from([500, 1500, 4000, 12_000])),
            draw(st.sampled_from(["A", "B", "NOBODY"])),
        )
        for _ in range(n)
    ]
    cuts: list[int] = []
    left = n
    while left:
        size = draw(st.integers(1, left))
        cuts.append(size)
        left -= size
    return payments, cuts


@hsettings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_payments_posted_in_groups_decide_as_if_paid_one_by_one(
    gateway: Gateway, scenario: tuple[list[tuple[str, int, str]], list[int]]
) -> None:
    payments, cuts = scenario
    run = next(_examples)
    for side in ("g", "s"):
        for name in ("A", "B"):
            customer(gateway, f"{side}{run}{name}", overdue=name == "A")

    def made(side: str, txn: str, amount: int, account: str) -> PaymentIntent:
        owner = account if account == "NOBODY" else f"{side}{run}{account}"
        return intent(f"{side}{run}{txn}", owner, amount)

    grouped_outcomes: list[Outcome] = []
    start = 0
    for size in cuts:
        part = payments[start : start + size]
        start += size
        grouped_outcomes += grouped(gateway, paying(gateway, *(made("g", *p) for p in part)))
    gateway.settings = gateway.settings.model_copy(update={"group_commit_window_ms": 0.0})
    alone: list[Outcome] = []
    for p in payments:
        try:
            alone.append(gateway.pay(made("s", *p)))
        except PaygateError as exc:
            alone.append(exc)
    gateway.settings = gateway.settings.model_copy(update={"group_commit_window_ms": 2.0})
    for together, single in zip(grouped_outcomes, alone, strict=True):
        if isinstance(single, Receipt):
            assert same_decision(receipt(together), single) == {}
        else:
            assert type(together) is type(single)
    accepted = {
        (p[0], p[2]) for p, o in zip(payments, alone, strict=True) if isinstance(o, Receipt)
    }
    posted = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM payments WHERE channel_txn_id LIKE :p", {"p": f"g{run}T%"}
        ),
        write=False,
    )
    assert posted == len({txn for txn, _ in accepted})
    assert gateway.verify().ok


# ── the batcher alone: the window, the size, the slots ───────────────────────────────────


def _fake_group(
    batcher: Batcher[str], runs: list[tuple[float, list[str]]], gate: threading.Event | None = None
) -> Callable[[str], Future[Receipt]]:
    """join + lead for ``batcher``, whose groups are recorded (time, items) and answered."""

    def run(members: list[tuple[str, Future[Receipt]]]) -> None:
        runs.append((time.monotonic(), [item for item, _ in members]))
        if gate is not None and members[0][0] == "A":
            gate.wait(30)
        for _, future in members:
            future.set_exception(InvalidInputError("answered", field="x"))

    def submit(item: str) -> Future[Receipt]:
        future, batch = batcher.join(item)
        if batch is not None:
            threading.Thread(target=batcher.lead, args=(batch, run)).start()
        return future

    return submit


def _settle(*futures: Future[Receipt]) -> Iterator[BaseException | None]:
    for future in futures:
        yield future.exception(30)


def test_a_lone_caller_does_not_wait_for_the_window() -> None:
    runs: list[tuple[float, list[str]]] = []
    batcher: Batcher[str] = Batcher(lambda: 5.0, lambda: 64)
    submit = _fake_group(batcher, runs)
    began = time.monotonic()
    list(_settle(submit("A")))
    assert time.monotonic() - began < 1.0
    assert [items for _, items in runs] == [["A"]]


def test_a_group_waits_out_its_window_then_commits_what_joined() -> None:
    runs: list[tuple[float, list[str]]] = []
    gate = threading.Event()
    window = 0.3
    batcher: Batcher[str] = Batcher(lambda: window, lambda: 64, parallel=2)
    submit = _fake_group(batcher, runs, gate)
    a = submit("A")  # alone: runs at once, and is held
    _wait_for(lambda: len(runs) == 1, "A to run")
    opened = time.monotonic()
    b = submit("B")
    time.sleep(0.05)
    c = submit("C")
    _wait_for(lambda: len(runs) == 2, "B's group to run")
    ran_at, items = runs[1]
    assert items == ["B", "C"]
    assert window <= ran_at - opened < window + 0.25
    gate.set()
    list(_settle(a, b, c))
    assert batcher.in_flight == 0


def test_a_full_group_commits_before_its_window() -> None:
    runs: list[tuple[float, list[str]]] = []
    gate = threading.Event()
    batcher: Batcher[str] = Batcher(lambda: 10.0, lambda: 3, parallel=2)
    submit = _fake_group(batcher, runs, gate)
    a = submit("A")
    _wait_for(lambda: len(runs) == 1, "A to run")
    began = time.monotonic()
    rest = [submit(x) for x in "BCD"]
    _wait_for(lambda: len(runs) == 2, "the full group to run")
    assert runs[1][1] == ["B", "C", "D"] and runs[1][0] - began < 1.0
    gate.set()
    list(_settle(a, *rest))


def test_a_group_waiting_for_its_turn_keeps_taking_members() -> None:
    runs: list[tuple[float, list[str]]] = []
    gate = threading.Event()
    batcher: Batcher[str] = Batcher(lambda: 0.05, lambda: 64, parallel=1)
    submit = _fake_group(batcher, runs, gate)
    a = submit("A")
    _wait_for(lambda: len(runs) == 1, "A to run")
    b = submit("B")
    time.sleep(0.2)  # B's window is over, but A still holds the one slot
    c = submit("C")
    assert len(runs) == 1
    gate.set()
    list(_settle(a, b, c))
    assert [items for _, items in runs] == [["A"], ["B", "C"]]


def test_a_group_whose_run_dies_answers_every_member() -> None:
    batcher: Batcher[str] = Batcher(lambda: 0.0, lambda: 64)
    future, batch = batcher.join("A")
    assert batch is not None

    def dying(members: list[tuple[str, Future[Receipt]]]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batcher.lead(batch, dying)
    assert isinstance(future.exception(1), KeyboardInterrupt)
    assert batcher.in_flight == 0


def test_settings_read_the_window_from_the_environment() -> None:
    settings = Settings.from_env(
        {"PAYGATE_GROUP_COMMIT_WINDOW_MS": "0.5", "PAYGATE_GROUP_COMMIT_MAX": "16"}
    )
    assert (settings.group_commit_window_ms, settings.group_commit_max) == (0.5, 16)
    assert Settings().group_commit_window_ms == 2.0
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ConfigurationError, match="PAYGATE_GROUP_COMMIT_WINDOW_MS"):
            Settings.from_env({"PAYGATE_GROUP_COMMIT_WINDOW_MS": bad})


def test_a_disconnected_account_paid_off_in_a_group_gets_one_reconnection_order(
    gateway: Gateway, clock: FixedClock
) -> None:
    customer(gateway, "A1", overdue=True)
    gateway.disconnect("A1", "arrears")
    outcomes = grouped(
        gateway,
        paying(gateway, intent("T1", "A1", 20_000), intent("T2", "A1", 20_000)),
    )
    orders = Counter(receipt(o).reconnection_order_id is not None for o in outcomes)
    assert orders == Counter({True: 1, False: 1})
    assert count(gateway, "supply_orders") == 1


def test_what_a_member_does_after_its_payment_runs_in_the_group_and_fails_alone(
    gateway: Gateway, sizes: list[int]
) -> None:
    for account in ("A1", "A2", "A3"):
        customer(gateway, account)
    seen: list[tuple[str, int]] = []

    def member(n: int, account: str, fail: bool = False) -> Callable[[], Receipt]:
        def after(tx: Tx, got: Receipt) -> None:
            # Inside the group's transaction: the payment's own row is already there.
            rows = tx.scalar(
                "SELECT COUNT(*) FROM payments WHERE channel_txn_id = :t", {"t": got.channel_txn_id}
            )
            seen.append((got.channel_txn_id, int(rows)))
            if fail:
                raise LookupError("the close could not be read")

        return lambda: gateway.payment_group.pay_prepared(
            lambda _tx: intent(f"T{n}", account, 1000), after
        )

    outcomes = grouped(
        gateway, [member(1, "A1"), member(2, "A2", fail=True), member(3, "NOBODY"), member(4, "A3")]
    )
    assert isinstance(outcomes[1], LookupError)
    assert isinstance(outcomes[2], UnknownAccountError)  # a refusal: no after
    assert receipt(outcomes[0]).account_no == "A1" and receipt(outcomes[3]).account_no == "A3"
    assert ("T3", 0) not in seen and all(rows == 1 for _, rows in seen)
    assert sizes == [4, 3]  # the whole group, then without the member whose step failed
    assert count(gateway, "payments") == 2


def test_coroutines_pay_through_the_group_without_a_thread_each(gateway: Gateway) -> None:
    for n in range(8):
        customer(gateway, f"A{n}")
    payments = [intent(f"T{n}", f"A{n % 8}", 100 + n) for n in range(24)]

    async def main() -> list[Receipt | BaseException]:
        first = await asyncio.gather(
            *(gateway.payment_group.pay_async(p) for p in payments), return_exceptions=True
        )
        again = await asyncio.gather(
            *(gateway.payment_group.pay_async(p) for p in payments[:4]), return_exceptions=True
        )
        return [*first, *again]

    outcomes = asyncio.run(main())
    assert [receipt(o).channel_txn_id for o in outcomes[:24]] == [
        p.channel_txn_id for p in payments
    ]
    assert [receipt(o).replayed for o in outcomes] == [False] * 24 + [True] * 4
    assert count(gateway, "payments") == 24
    assert gateway.verify().ok


def test_a_caller_that_stops_waiting_costs_the_others_nothing(gateway: Gateway) -> None:
    for account in ("A1", "A2", "A3"):
        customer(gateway, account)
    group = gateway.payment_group
    gateway.settings = gateway.settings.model_copy(
        update={"group_commit_window_ms": 30_000.0, "group_commit_max": 3}
    )
    entered, release = threading.Event(), threading.Event()

    def hold(_tx: Tx) -> PaymentIntent | PaygateError:
        entered.set()
        release.wait(30)
        return InvalidInputError("the blocker posts nothing", field="blocker")

    def blocker() -> None:
        with pytest.raises(InvalidInputError):
            group.pay_prepared(hold)

    holder = threading.Thread(target=blocker)
    holder.start()
    entered.wait(30)

    async def main() -> list[Receipt | BaseException]:
        async def joined(n: int) -> None:
            while group.in_flight < n:
                await asyncio.sleep(0.001)

        first = asyncio.ensure_future(group.pay_async(intent("T1", "A1", 1000)))
        await joined(2)
        second = asyncio.ensure_future(group.pay_async(intent("T2", "A2", 1000)))
        await joined(3)
        first.cancel()  # its caller goes away (a client hung up): its payment still stands
        third = asyncio.ensure_future(group.pay_async(intent("T3", "A3", 1000)))
        await joined(4)
        release.set()
        return list(await asyncio.gather(first, second, third, return_exceptions=True))

    outcomes = asyncio.run(main())
    holder.join(30)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert receipt(outcomes[1]).account_no == "A2" and receipt(outcomes[2]).account_no == "A3"
    _wait_for(lambda: group.in_flight == 0, "the group to end")
    assert count(gateway, "payments") == 3  # the cancelled caller's payment was posted


# ── a process killed in the middle of its groups ─────────────────────────────────────────

GROUPING_CHILD = textwrap.dedent(
    """
    import sys, threading
    from datetime import UTC, datetime
    from paygate.config import Settings
    from paygate.gateway import Gateway
    from paygate.models import PaymentIntent
    from paygate.money import Money

    url = sys.argv[1]
    lock = threading.Lock()
    settings = Settings(database_url=url, seal_every=25, group_commit_window_ms=5)
    with Gateway.open(settings=settings) as gateway:
        def payer(t):
            n = 0
            while True:
                n += 1
                receipt = gateway.pay(PaymentIntent(
                    channel="kiosk", channel_txn_id=f"K{t}-{n}", account_no=f"A{n % 5}",
                    amount=Money(1000 + n, "CNY"), paid_at=datetime.now(UTC)))
                with lock:
                    sys.stdout.write(f"{receipt.payment_id}\\n")
                    sys.stdout.flush()
        for t in range(8):
            threading.Thread(target=payer, args=(t,), daemon=True).start()
        threading.Event().wait()
    """
)


def test_a_process_killed_in_the_middle_of_its_groups_loses_nothing_acknowledged(
    db_url: str,
) -> None:
    with Gateway.open(db_url) as gateway:
        for k in range(5):
            customer(gateway, f"A{k}", owes=10**7)
    child = subprocess.Popen(
        [sys.executable, "-c", GROUPING_CHILD, db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first.strip().isdigit(), child.stderr.read() if child.stderr else first
    time.sleep(0.8)
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=60)
    acknowledged = {int(first), *(int(line) for line in rest.split())}
    with Gateway.open(db_url) as gateway:
        stored = set(
            gateway.store.run(
                lambda tx: [int(r[0]) for r in tx.all("SELECT id FROM payments")], write=False
            )
        )
        assert acknowledged <= stored
        half = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT COUNT(*) FROM payments p LEFT JOIN journal_entries e ON e.id = p.entry_id "
                "WHERE e.id IS NULL"
            ),
            write=False,
        )
        assert half == 0
        gateway.seal()
        report = gateway.verify()
        assert report.ok, report.findings
        assert report.entries == 5 + len(stored)
