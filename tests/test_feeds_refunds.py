"""Refunds and closed accounts in the payment feed, on SQLite and PostgreSQL.

Each refund order's movements — requested, then succeeded or failed — are items of their own
kinds at the position of the transaction that moved the money, paged with the same cursor as
payments and reversals; a billing system keeps the account's balance from the feed alone. A
payment to a closed account is fed with the status ``suspense``, and no bill is issued to a
closed account, one by one or in bulk.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import AccountClosedError
from paygate.feeds import (
    MAX_PAGE,
    Cursor,
    FeedName,
    PaymentFeedItem,
    PaymentItem,
    PaymentItemKind,
    PaymentStatus,
    RefundItem,
)
from paygate.gateway import Gateway
from paygate.models import NewBill, PaymentIntent
from paygate.money import Money
from paygate.refunds.route import Payee
from tests.refund_fakes import ScriptedRoute
from tests.test_feeds import drain

ACCT = "3100000001"
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")
PAID_AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def pay(gateway: Gateway, txn: str, amount: str, account_no: str = ACCT) -> int:
    return gateway.pay(
        PaymentIntent(
            channel="mobile",
            channel_txn_id=txn,
            account_no=account_no,
            amount=yuan(amount),
            paid_at=PAID_AT,
        )
    ).payment_id


def bill(bill_no: str, amount: str = "100.00", account_no: str = ACCT) -> NewBill:
    return NewBill(
        account_no=account_no, bill_no=bill_no, amount=yuan(amount), period="2026-10",
        due_date=date(2026, 12, 10),
    )  # fmt: skip


def issue(gateway: Gateway, new: NewBill) -> Any:
    return gateway.issue_bill(
        new.account_no, bill_no=new.bill_no, amount=new.amount, period=new.period,
        due_date=new.due_date,
    )  # fmt: skip


def key(item: PaymentFeedItem) -> tuple[str, str]:
    if isinstance(item, RefundItem):
        return item.kind.value, item.refund_id
    return item.kind.value, str(item.payment_id)


def feed_credit(items: Sequence[PaymentFeedItem]) -> int:
    """What the account holds from payments, as a billing system sums it from the feed."""
    sign = {
        PaymentItemKind.PAYMENT: 1,
        PaymentItemKind.REVERSAL: -1,
        PaymentItemKind.REFUND_REQUESTED: -1,
        PaymentItemKind.REFUND_SUCCEEDED: 0,
        PaymentItemKind.REFUND_FAILED: 1,
    }
    total = 0
    for item in items:
        if isinstance(item, PaymentItem) and item.status is PaymentStatus.SUSPENSE:
            continue
        total += sign[item.kind] * item.amount.minor
    return total


@pytest.fixture
def refunding(gateway: Gateway) -> Gateway:
    gateway.use_refund_routes(
        {"alipay": ScriptedRoute("alipay", "mobile"), "transfer": ScriptedRoute("transfer", None)}
    )
    gateway.open_account(ACCT)
    issue(gateway, bill("B-1"))
    return gateway


def test_each_refund_movement_is_fed_once_in_commit_order(refunding: Gateway) -> None:
    gateway = refunding
    first = pay(gateway, "T-1", "300.00")  # 200.00 credit
    gateway.refund(ACCT, yuan("50.00"), refund_id="R-ok", route="alipay", reason="overpaid")
    gateway.refund(ACCT, yuan("30.00"), refund_id="R-bad", route="alipay")
    gateway.complete_refund("R-ok", "PR-9")
    second = pay(gateway, "T-2", "20.00")
    gateway.fail_refund("R-bad", "PAYER_CLOSED", "the payer's account is closed")
    gateway.complete_refund("R-ok", "PR-9")  # settled already: no movement, no item
    expected = [
        ("payment", str(first)),
        ("refund_requested", "R-ok"),
        ("refund_requested", "R-bad"),
        ("refund_succeeded", "R-ok"),
        ("payment", str(second)),
        ("refund_failed", "R-bad"),
    ]
    for limit in (1, 2, 4, MAX_PAGE):
        items, cursor = drain(gateway.payments_since, None, limit=limit, expect=6)
        assert [key(i) for i in items] == expected
        assert gateway.payments_since(cursor, limit).items == ()

    requested, succeeded, failed = items[1], items[3], items[5]
    assert isinstance(requested, RefundItem) and isinstance(succeeded, RefundItem)
    assert isinstance(failed, RefundItem)
    assert (requested.amount, requested.route, requested.reason) == (
        yuan("50.00"), "alipay", "overpaid",
    )  # fmt: skip
    assert (requested.payment_id, requested.channel) == (first, "mobile")
    assert requested.original_channel_txn_id == "T-1"
    assert requested.provider_reference is None and requested.failure_code is None
    assert succeeded.provider_reference == "PR-9" and succeeded.entry_id != requested.entry_id
    assert (failed.failure_code, failed.failure_message) == (
        "PAYER_CLOSED", "the payer's account is closed",
    )  # fmt: skip
    assert failed.amount == yuan("30.00")
    entries = {i.entry_id for i in items}
    assert len(entries) == len(items)
    # The balance a billing system keeps from the feed is the gateway's.
    assert gateway.account_status(ACCT).balance.minor == 10_000 - feed_credit(items)

    for index, item in enumerate(items):
        rest, _ = drain(gateway.payments_since, item.cursor, limit=2, expect=5 - index)
        assert [key(i) for i in rest] == expected[index + 1 :]


def test_an_accounts_part_of_the_feed_has_its_refunds_at_the_same_positions(
    refunding: Gateway,
) -> None:
    gateway = refunding
    gateway.open_account("OTHER")
    pay(gateway, "T-1", "300.00")
    pay(gateway, "T-x", "10.00", account_no="OTHER")
    gateway.refund(ACCT, yuan("60.00"), refund_id="R-1", route="alipay")
    gateway.refund("OTHER", yuan("10.00"), refund_id="R-x", route="alipay")
    gateway.fail_refund("R-1", "NOPE", "refused")
    mine, _ = drain(
        lambda c, n: gateway.account_payments_since(ACCT, c, n), None, limit=1, expect=3
    )
    assert [i.kind for i in mine] == [
        PaymentItemKind.PAYMENT, PaymentItemKind.REFUND_REQUESTED, PaymentItemKind.REFUND_FAILED,
    ]  # fmt: skip
    everything, _ = drain(gateway.payments_since, None, limit=MAX_PAGE, expect=5)
    assert [i.cursor for i in everything if i.account_no == ACCT] == [i.cursor for i in mine]
    assert gateway.account_status(ACCT).balance.minor == 10_000 - feed_credit(mine)


def test_a_payment_to_a_closed_account_is_fed_as_suspense_and_the_closure_refund_too(
    refunding: Gateway,
) -> None:
    gateway = refunding
    posted = pay(gateway, "T-1", "150.00")  # 50.00 credit, refunded at closure
    gateway.close_account(ACCT, closure_id="CL-1", refund_route="alipay", reason="moved away")
    late = pay(gateway, "T-2", "80.00")
    items, _ = drain(
        lambda c, n: gateway.account_payments_since(ACCT, c, n), None, limit=10, expect=3
    )
    assert [key(i) for i in items] == [
        ("payment", str(posted)), ("refund_requested", "close-CL-1"), ("payment", str(late)),
    ]  # fmt: skip
    first, last = items[0], items[2]
    assert isinstance(first, PaymentItem) and first.status is PaymentStatus.POSTED
    assert isinstance(last, PaymentItem) and last.status is PaymentStatus.SUSPENSE
    assert last.amount == yuan("80.00")
    status = gateway.account_status(ACCT)
    assert status.balance.minor == 10_000 - feed_credit(items) == 0


_accounts = itertools.count()
_step = st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 50_000)),
    st.tuples(st.just("refund"), st.integers(1, 50_000)),
    st.tuples(st.sampled_from(["complete", "fail"]), st.integers(0, 20)),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, max_size=12))
def test_the_feed_keeps_the_balance_after_any_payments_and_refunds(
    refunding: Gateway, steps: list[tuple[str, int]]
) -> None:
    gateway = refunding
    account_no = f"H{next(_accounts)}"
    gateway.open_account(account_no)
    issue(gateway, bill(f"B-{account_no}", account_no=account_no))
    refunds: list[str] = []
    movements = 0
    for n, (what, value) in enumerate(steps):
        if what == "pay":
            pay(gateway, f"{account_no}-{n}", f"{value / 100:.2f}", account_no=account_no)
            movements += 1
        elif what == "refund":
            held = gateway.account_status(account_no).credit.minor
            if held == 0:
                continue
            refund_id = f"R-{account_no}-{n}"
            amount = Money(min(value, held), "CNY")
            gateway.refund(account_no, amount, refund_id=refund_id, route="transfer", payee=PAYEE)
            refunds.append(refund_id)
            movements += 1
        elif refunds:
            refund_id = refunds[value % len(refunds)]
            if gateway.refund_order(refund_id).state.final:
                continue
            if what == "complete":
                gateway.complete_refund(refund_id, "PR")
            else:
                gateway.fail_refund(refund_id, "NOPE", "refused")
            movements += 1
    items, _ = drain(
        lambda c, n: gateway.account_payments_since(account_no, c, n),
        None,
        limit=3,
        expect=movements,
    )
    assert len(items) == movements and len({key(i) for i in items}) == movements
    assert gateway.account_status(account_no).balance.minor == 10_000 - feed_credit(items)


# ── concurrent writers ─────────────────────────────────────────────────────────────────────


@pytest.fixture
def two_gateways(db_url: str) -> Iterator[tuple[Gateway, Gateway]]:
    """Two processes' worth of gateways (each its own store and id blocks) on one database."""
    clock = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    settings = Settings(database_url=db_url, seal_every=0, sqlite_synchronous="NORMAL")
    with (
        Gateway.open(settings=settings, clock=clock) as first,
        Gateway.open(settings=settings, clock=clock) as second,
    ):
        for gateway in (first, second):
            gateway.use_refund_routes({"alipay": ScriptedRoute("alipay", "mobile")})
        yield first, second


def test_refunds_under_concurrent_writers_are_never_skipped_or_repeated(
    two_gateways: tuple[Gateway, Gateway],
) -> None:
    first, second = two_gateways
    accounts = [f"C{n}" for n in range(4)]
    for gateway, account_no in zip((first, first, second, second), accounts, strict=True):
        gateway.open_account(account_no)
    writers_done = threading.Event()
    failures: list[BaseException] = []
    expected: list[tuple[str, str]] = []
    lock = threading.Lock()

    def write(gateway: Gateway, account_no: str) -> None:
        try:
            for n in range(8):
                payment_id = pay(gateway, f"{account_no}-{n}", "10.00", account_no=account_no)
                refund_id = f"R-{account_no}-{n}"
                gateway.refund(account_no, yuan("4.00"), refund_id=refund_id, route="alipay")
                if n % 2:
                    gateway.fail_refund(refund_id, "NOPE", "refused")
                else:
                    gateway.complete_refund(refund_id, f"PR-{account_no}-{n}")
                final = "refund_failed" if n % 2 else "refund_succeeded"
                with lock:
                    expected.extend(
                        [
                            ("payment", str(payment_id)),
                            ("refund_requested", refund_id),
                            (final, refund_id),
                        ]
                    )
        except BaseException as exc:
            failures.append(exc)

    seen: list[Any] = []

    def read() -> None:
        cursor: str | None = None
        try:
            while not writers_done.is_set():
                page = first.payments_since(cursor, 5)
                seen.extend(page.items)
                cursor = page.next_cursor
            rest, _ = drain(first.payments_since, cursor, limit=5, expect=len(expected) - len(seen))
            seen.extend(rest)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(gateway, account_no))
        for gateway, account_no in zip((first, first, second, second), accounts, strict=True)
    ]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    writers_done.set()
    reader.join(120)
    assert not failures, failures
    got = [key(i) for i in seen]
    assert len(got) == len(set(got)), "an item was repeated"
    assert sorted(got) == sorted(expected), "an item was skipped"
    positions = [Cursor.decode(i.cursor, FeedName.PAYMENTS) for i in seen]
    assert [(p.major, p.minor) for p in positions] == sorted((p.major, p.minor) for p in positions)
    for kind, refund_id in got:
        if kind in ("refund_succeeded", "refund_failed"):
            assert got.index(("refund_requested", refund_id)) < got.index((kind, refund_id))
    for account_no in accounts:
        mine = [i for i in seen if i.account_no == account_no]
        assert first.account_status(account_no).balance.minor == -feed_credit(mine)


# ── no bill for a closed account ───────────────────────────────────────────────────────────


def _count(gateway: Gateway, table: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(f"SELECT COUNT(*) FROM {table}")))


def test_a_bill_for_a_closed_account_is_refused_one_by_one_and_in_bulk(
    refunding: Gateway,
) -> None:
    gateway = refunding
    gateway.open_account("OPEN")
    pay(gateway, "T-1", "100.00")
    gateway.close_account(ACCT, closure_id="CL-1", reason="moved away")
    before = (_count(gateway, "bills"), _count(gateway, "journal_entries"))
    with pytest.raises(AccountClosedError) as refused:
        issue(gateway, bill("B-2"))
    assert refused.value.field == "account_no" and ACCT in str(refused.value)
    assert (_count(gateway, "bills"), _count(gateway, "journal_entries")) == before
    # The bill issued before the closure is still answered as it was: a retry is no error.
    assert not issue(gateway, bill("B-1")).created

    result = gateway.issue_bills([bill("B-3", account_no="OPEN"), bill("B-4"), bill("B-1")])
    assert result.created == ("B-3",) and result.replayed == ("B-1",)
    [refusal] = result.refused
    assert (refusal.index, refusal.key, refusal.code, refusal.field) == (
        1, "B-4", "account_closed", "account_no",
    )  # fmt: skip
    assert ACCT in refusal.error and result.conflicts == ()
    assert _count(gateway, "bills") == before[0] + 1
    assert gateway.verify().ok
