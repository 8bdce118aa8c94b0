"""The feeds: payments (with reversals), supply orders and outbox events, read in commit order
with an opaque cursor that resumes exactly after the last item seen, on both databases.

The hazard the cursor is built against: ids are allocated in blocks per process, so a
transaction holding lower ids can commit after one holding higher ids, and a consumer that
resumed after "the highest id seen" would skip it. The tests below make exactly that happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import InvalidInputError, UnknownAccountError, UnknownOrderError
from paygate.feeds import (
    MAX_PAGE,
    Cursor,
    FeedName,
    InvalidCursorError,
    PaymentItem,
    PaymentItemKind,
    PaymentPage,
    SupplyOrder,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money

PAID_AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def intent(account_no: str, txn: str, minor: int = 1000, channel: str = "online") -> PaymentIntent:
    return PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no=account_no,
        amount=Money(minor, "CNY"),
        paid_at=PAID_AT,
    )


def open_accounts(gateway: Gateway, *numbers: str, due: date = date(2026, 12, 15)) -> None:
    for number in numbers:
        gateway.open_account(number)
        gateway.issue_bill(
            number,
            bill_no=f"B-{number}",
            amount=Money(100_000, "CNY"),
            period="2026-10",
            due_date=due,
        )


def drain(
    read: Callable[[str | None, int], Any], cursor: str | None, *, limit: int, expect: int
) -> tuple[list[Any], str | None]:
    """Page through a feed until ``expect`` items came (PostgreSQL may show an item a moment
    after its commit, once older transactions have finished) and the feed says no more."""
    items: list[Any] = []
    deadline = time.monotonic() + 30
    while True:
        page = read(cursor, limit)
        assert len(page.items) <= limit
        items.extend(page.items)
        if page.items:
            assert page.next_cursor == page.items[-1].cursor
        else:
            assert page.next_cursor == (cursor or Cursor.decode(None, _feed(page)).encode())
        cursor = page.next_cursor
        if not page.has_more and len(items) >= expect:
            return items, cursor
        if not page.has_more:
            assert time.monotonic() < deadline, f"only {len(items)} of {expect} items came"
            time.sleep(0.01)


def _feed(page: Any) -> FeedName:
    return {
        "PaymentPage": FeedName.PAYMENTS,
        "SupplyOrderPage": FeedName.SUPPLY_ORDERS,
        "EventPage": FeedName.EVENTS,
    }[type(page).__name__]


def keys(items: list[PaymentItem]) -> list[tuple[str, int]]:
    return [(item.kind.value, item.payment_id) for item in items]


# ── the cursor ────────────────────────────────────────────────────────────────────────────

positions = st.integers(min_value=0, max_value=2**63 - 1)


@given(feed=st.sampled_from(list(FeedName)), major=positions, minor=positions)
def test_a_cursor_round_trips_through_its_token(feed: FeedName, major: int, minor: int) -> None:
    cursor = Cursor(feed, major, minor)
    token = cursor.encode()
    assert Cursor.decode(token, feed) == cursor
    assert token.isascii() and "=" not in token and len(token) <= 200


@given(feed=st.sampled_from(list(FeedName)), major=positions, minor=positions)
def test_a_cursor_is_refused_by_another_feed(feed: FeedName, major: int, minor: int) -> None:
    token = Cursor(feed, major, minor).encode()
    for other in FeedName:
        if other is not feed:
            with pytest.raises(InvalidCursorError, match="belongs to"):
                Cursor.decode(token, other)


@given(text=st.text(max_size=80))
def test_any_other_text_is_refused_by_name_or_is_a_token_we_would_give(text: str) -> None:
    refusal: InvalidCursorError | None = None
    try:
        cursor = Cursor.decode(text, FeedName.PAYMENTS)
    except InvalidCursorError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.field == "after"
    else:
        assert text == "" or cursor.encode() == text


@pytest.mark.parametrize(
    "token",
    [
        "not a cursor",
        "MTpwYXltZW50czowOjI=",  # padded: not the token given out
        Cursor(FeedName.PAYMENTS, 0, 2).encode() + "A",
        "MTpwYXltZW50czowMTox",  # "1:payments:01:1": a leading zero
        "x" * 201,
    ],
)
def test_malformed_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursorError):
        Cursor.decode(token, FeedName.PAYMENTS)


def test_positions_out_of_range_are_refused() -> None:
    with pytest.raises(InvalidCursorError):
        Cursor(FeedName.EVENTS, -1, 0)
    with pytest.raises(InvalidCursorError):
        Cursor(FeedName.EVENTS, 0, 2**63)


# ── the payment feed ──────────────────────────────────────────────────────────────────────


def test_payments_and_reversals_page_to_the_end_exactly_once(gateway: Gateway) -> None:
    open_accounts(gateway, "A1", "A2")
    receipts = [gateway.pay(intent("A1" if n % 2 else "A2", f"t{n}", 1000 + n)) for n in range(7)]
    gateway.reverse(receipts[2].payment_id, "charged twice")
    gateway.pay(intent("A1", "t7"))
    expected = [("payment", r.payment_id) for r in receipts]
    expected.append(("reversal", receipts[2].payment_id))
    expected.append(("payment", gateway.pay(intent("A1", "t7")).payment_id))  # a replay: no item

    for limit in (1, 2, 3, 9, 10, MAX_PAGE):
        items, cursor = drain(gateway.payments_since, None, limit=limit, expect=9)
        assert keys(items) == expected
        empty = gateway.payments_since(cursor, limit)
        assert empty.items == () and not empty.has_more and empty.next_cursor == cursor

    reversal = items[7]
    assert reversal.kind is PaymentItemKind.REVERSAL and reversal.reason == "charged twice"
    assert reversal.amount == Money(1002, "CNY") and reversal.entry_id != items[2].entry_id
    first = items[0]
    assert (first.account_no, first.channel, first.channel_txn_id) == ("A2", "online", "t0")
    assert first.paid_at == PAID_AT and first.business_date == date(2026, 11, 25)


def test_resuming_from_any_item_continues_right_after_it(gateway: Gateway) -> None:
    open_accounts(gateway, "A1")
    for n in range(5):
        gateway.pay(intent("A1", f"t{n}"))
    items, _ = drain(gateway.payments_since, None, limit=MAX_PAGE, expect=5)
    for index, item in enumerate(items):
        rest, _ = drain(gateway.payments_since, item.cursor, limit=2, expect=4 - index)
        assert keys(rest) == keys(items[index + 1 :])


def test_an_accounts_payments_share_the_feeds_positions(gateway: Gateway) -> None:
    open_accounts(gateway, "A1", "A2")
    mine = [gateway.pay(intent("A1", f"a{n}")).payment_id for n in range(3)]
    gateway.pay(intent("A2", "b0"))
    gateway.reverse(mine[1], "mistake")
    items, _ = drain(
        lambda c, n: gateway.account_payments_since("A1", c, n), None, limit=2, expect=4
    )
    assert keys(items) == [*(("payment", p) for p in mine), ("reversal", mine[1])]
    everything, _ = drain(gateway.payments_since, None, limit=MAX_PAGE, expect=5)
    assert [i.cursor for i in everything if i.account_no == "A1"] == [i.cursor for i in items]
    with pytest.raises(UnknownAccountError):
        gateway.account_payments_since("nobody", None)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, True])
def test_a_page_size_out_of_bounds_is_refused(gateway: Gateway, limit: int) -> None:
    with pytest.raises(InvalidInputError) as refused:
        gateway.payments_since(None, limit)
    assert refused.value.field == "limit"


def test_a_cursor_of_another_feed_is_refused(gateway: Gateway) -> None:
    token = gateway.events_since(None).next_cursor
    with pytest.raises(InvalidCursorError):
        gateway.payments_since(token)


# ── supply orders and events ──────────────────────────────────────────────────────────────


def test_supply_orders_and_events_are_fed_in_commit_order(gateway: Gateway) -> None:
    open_accounts(gateway, "A1", due=date(2026, 11, 1))
    gateway.disconnect("A1", "arrears")
    receipt = gateway.pay(intent("A1", "clears", 200_000))
    assert receipt.reconnection_order_id is not None

    orders, _ = drain(gateway.supply_orders_since, None, limit=1, expect=1)
    assert [o.order_id for o in orders] == [receipt.reconnection_order_id]
    order = orders[0]
    assert (order.account_no, order.kind) == ("A1", "reconnect")
    assert order.payment_id == receipt.payment_id
    assert gateway.supply_order(order.order_id) == SupplyOrder.model_validate(
        order.model_dump(exclude={"cursor"})
    )
    with pytest.raises(UnknownOrderError):
        gateway.supply_order(order.order_id + 10_000)

    events, cursor = drain(gateway.events_since, None, limit=2, expect=1)
    types = [e.event_type for e in events]
    assert "payment.posted" in types
    assert len({e.event_id for e in events}) == len(events)
    posted = next(e for e in events if e.event_type == "payment.posted")
    assert posted.payload["data"]["payment_id"] == receipt.payment_id
    gateway.reverse(receipt.payment_id, "bounced")
    later, _ = drain(gateway.events_since, cursor, limit=5, expect=1)
    assert "payment.reversed" in [e.event_type for e in later]
    assert not {e.event_id for e in later} & {e.event_id for e in events}


# ── commit order, not id order ────────────────────────────────────────────────────────────


def _settings(url: str) -> Settings:
    return Settings(database_url=url, seal_every=0, sqlite_synchronous="NORMAL")


@pytest.fixture
def two_gateways(db_url: str) -> Iterator[tuple[Gateway, Gateway]]:
    """Two processes' worth of gateways (each its own store and id blocks) on one database."""
    clock = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    with (
        Gateway.open(settings=_settings(db_url), clock=clock) as first,
        Gateway.open(settings=_settings(db_url), clock=clock) as second,
    ):
        yield first, second


def test_a_lower_id_committed_later_is_not_skipped_sqlite(sqlite_url: str) -> None:
    # A writer whose id block is older (as a process that cached one would have) commits
    # after a consumer already read past higher ids.
    with Gateway.open(settings=_settings(sqlite_url)) as gateway:
        open_accounts(gateway, "A1")
        high = gateway.pay(intent("A1", "high")).payment_id
        seen, cursor = drain(gateway.payments_since, None, limit=10, expect=1)
        assert keys(seen) == [("payment", high)]
        gateway.store.run(lambda tx: tx.execute("UPDATE id_blocks SET next_id = 100"))
        low = gateway.pay(intent("A1", "low")).payment_id
        assert low < high
        after, _ = drain(gateway.payments_since, cursor, limit=10, expect=1)
        assert keys(after) == [("payment", low)]


@pytest.mark.postgres
def test_a_lower_id_committed_later_is_not_skipped_postgresql(pg_url: str) -> None:
    clock = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    with (
        Gateway.open(settings=_settings(pg_url), clock=clock) as low_ids,
        Gateway.open(settings=_settings(pg_url), clock=clock) as high_ids,
    ):
        open_accounts(low_ids, "A1")  # low_ids takes the first block of ids
        open_accounts(high_ids, "A2")  # high_ids the next one
        started, release = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def slow_writer() -> None:
            try:
                with low_ids.store.transaction() as tx:
                    # another channel: no clearing-account row shared with the other writer
                    low_ids.post_within(tx, [intent("A1", "slow", channel="bank_agent")])
                    started.set()
                    assert release.wait(30)
            except BaseException as exc:
                failures.append(exc)
                started.set()

        # A transaction with the higher ids begins writing first and commits first ...
        with high_ids.store.transaction() as tx:
            high_ids.post_within(tx, [intent("A2", "fast")])
            writer = threading.Thread(target=slow_writer)
            writer.start()
            assert started.wait(30)
        fast = high_ids.payments_since(None, 10)
        deadline = time.monotonic() + 30
        while not fast.items and time.monotonic() < deadline:
            time.sleep(0.01)
            fast = high_ids.payments_since(None, 10)
        assert [i.channel_txn_id for i in fast.items] == ["fast"]
        # ... and the consumer has read past it when the lower ids commit.
        release.set()
        writer.join(30)
        assert not failures
        slow, _ = drain(high_ids.payments_since, fast.next_cursor, limit=10, expect=1)
        assert [i.channel_txn_id for i in slow] == ["slow"]
        assert slow[0].payment_id < fast.items[0].payment_id


def test_concurrent_writers_never_make_a_reader_skip_or_repeat(
    two_gateways: tuple[Gateway, Gateway],
) -> None:
    first, second = two_gateways
    accounts = [f"C{n}" for n in range(4)]
    open_accounts(first, *accounts[:2])
    open_accounts(second, *accounts[2:])
    writers_done = threading.Event()
    failures: list[BaseException] = []
    expected: list[tuple[str, int]] = []
    lock = threading.Lock()

    def write(gateway: Gateway, account_no: str) -> None:
        try:
            for n in range(20):
                receipt = gateway.pay(intent(account_no, f"{account_no}-{n}", 100 + n))
                with lock:
                    expected.append(("payment", receipt.payment_id))
                if n % 6 == 0:
                    gateway.reverse(receipt.payment_id, "test")
                    with lock:
                        expected.append(("reversal", receipt.payment_id))
        except BaseException as exc:
            failures.append(exc)

    seen: list[PaymentItem] = []

    def read() -> None:
        cursor: str | None = None
        try:
            while not writers_done.is_set():
                page: PaymentPage = first.payments_since(cursor, 7)
                seen.extend(page.items)
                cursor = page.next_cursor
            rest, _ = drain(first.payments_since, cursor, limit=7, expect=len(expected) - len(seen))
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
    got = keys(seen)
    assert len(got) == len(set(got)), "an item was repeated"
    assert sorted(got) == sorted(expected), "an item was skipped"
    positions = [Cursor.decode(i.cursor, FeedName.PAYMENTS) for i in seen]
    assert [(p.major, p.minor) for p in positions] == sorted((p.major, p.minor) for p in positions)
    for kind, payment_id in got:
        if kind == "reversal":
            assert got.index(("payment", payment_id)) < got.index(("reversal", payment_id))


def test_the_feeds_write_nothing(gateway: Gateway) -> None:
    open_accounts(gateway, "A1")
    gateway.pay(intent("A1", "t1"))

    def counts() -> tuple[int, ...]:
        return gateway.store.run(
            lambda tx: tuple(
                int(tx.scalar(f"SELECT COUNT(*) FROM {t}"))
                for t in ("feed_log", "journal_entries", "outbox", "supply_orders")
            ),
            write=False,
        )

    before = counts()
    for _ in range(3):
        gateway.payments_since(None)
        gateway.events_since(None)
        gateway.supply_orders_since(None)
    assert counts() == before
