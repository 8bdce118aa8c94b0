"""The database-backed nonce store, order store and kiosk ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from paygate.channels.base import AdapterContext
from paygate.channels.kiosk import KioskCloseRecord, KioskTotals, MethodTotal
from paygate.channels.online import OnlineAdapter, OnlineConfig
from paygate.channels.orders import Order
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore, SqlOrderStore
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import ConflictError, IntegrityError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store.engine import Store
from tests.channels import support

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str, gateway: Gateway) -> Store:
    return gateway.store


# ── nonces ────────────────────────────────────────────────────────────────────────────────


def test_a_nonce_is_accepted_once_until_it_expires(store: Store) -> None:
    nonces = SqlNonceStore(store)
    later = NOW + timedelta(minutes=5)
    assert nonces.add("device:K1:abc", expires_at=later, now=NOW)
    assert not nonces.add("device:K1:abc", expires_at=later, now=NOW + timedelta(minutes=1))
    assert nonces.add("device:K2:abc", expires_at=later, now=NOW)
    # Expired: the key may be used again (its timestamp would be refused first anyway).
    assert nonces.add("device:K1:abc", expires_at=later + timedelta(minutes=5), now=later)


def test_a_second_process_sees_the_first_ones_nonces(store: Store) -> None:
    first, second = SqlNonceStore(store), SqlNonceStore(store)
    assert first.add("wechatpay:n1", expires_at=NOW + timedelta(minutes=5), now=NOW)
    assert not second.add("wechatpay:n1", expires_at=NOW + timedelta(minutes=5), now=NOW)


def test_long_keys_are_stored_by_their_hash(store: Store) -> None:
    nonces = SqlNonceStore(store)
    long_key = "device:K1:" + "n" * 300
    assert nonces.add(long_key, expires_at=NOW + timedelta(minutes=5), now=NOW)
    assert not nonces.add(long_key, expires_at=NOW + timedelta(minutes=5), now=NOW)
    assert nonces.add(long_key[:-1], expires_at=NOW + timedelta(minutes=5), now=NOW)
    assert nonces.add("wechatpay:随机串", expires_at=NOW + timedelta(minutes=5), now=NOW)
    widths = store.run(lambda tx: tx.all("SELECT nonce_key FROM nonces"), write=False)
    assert all(len(row[0]) <= 200 and row[0].isascii() for row in widths)


def test_expired_nonces_are_purged_in_batches(store: Store) -> None:
    nonces = SqlNonceStore(store, purge_every=1000, purge_batch=3)
    for n in range(5):
        nonces.add(f"old:{n}", expires_at=NOW + timedelta(seconds=n), now=NOW)
    nonces.add("fresh", expires_at=NOW + timedelta(hours=1), now=NOW)
    later = NOW + timedelta(minutes=1)
    assert nonces.purge(later) == 3
    assert nonces.purge(later) == 2
    assert nonces.purge(later) == 0
    left = store.run(lambda tx: tx.all("SELECT nonce_key FROM nonces"), write=False)
    assert [row[0] for row in left] == ["fresh"]


def test_adding_purges_opportunistically(store: Store) -> None:
    nonces = SqlNonceStore(store, purge_every=4)
    for n in range(3):
        nonces.add(f"old:{n}", expires_at=NOW, now=NOW - timedelta(minutes=1))
    nonces.add("new", expires_at=NOW + timedelta(minutes=5), now=NOW + timedelta(seconds=1))
    count = store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM nonces"), write=False)
    assert count == 1


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="time zone"):
        SqlNonceStore(store).add("k", expires_at=datetime(2026, 1, 1), now=NOW)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url, pool_size=8)
    try:
        yield store
    finally:
        store.dispose()


def race(store: Store, key: str, threads: int = 8) -> list[bool]:
    """``threads`` stores (as many gateway processes) add ``key`` at one instant."""
    start = threading.Barrier(threads)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        nonces = SqlNonceStore(store)
        start.wait()
        try:
            won = nonces.add(key, expires_at=NOW + timedelta(minutes=5), now=NOW)
        except BaseException as exc:  # re-raised by the caller's assertion
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(won)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return results


@pytest.mark.postgres
def test_eight_threads_adding_one_nonce_on_postgresql_one_wins(pg_store: Store) -> None:
    for round_no in range(5):
        assert sorted(race(pg_store, f"device:K1:race-{round_no}")) == [False] * 7 + [True]


def test_eight_threads_adding_one_nonce_on_sqlite_one_wins(sqlite_url: str) -> None:
    with Gateway.open(sqlite_url) as gateway:
        assert sorted(race(gateway.store, "device:K1:race")) == [False] * 7 + [True]


# ── payment orders ────────────────────────────────────────────────────────────────────────


def order(**changes: object) -> Order:
    values: dict[str, object] = {
        "order_id": "20261125100000a1b2c3d4e5f60718",
        "channel": "online",
        "account_no": "0101234567",
        "amount": Money(15000, "CNY"),
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=15),
    }
    values.update(changes)
    return Order.model_validate(values)


def test_orders_are_stored_once_and_never_change(store: Store) -> None:
    orders = SqlOrderStore(store)
    assert orders.get("20261125100000a1b2c3d4e5f60718") is None
    orders.put(order())
    orders.put(order())
    assert orders.get("20261125100000a1b2c3d4e5f60718") == order()
    with pytest.raises(ConflictError):
        orders.put(order(amount=Money(15001, "CNY")))
    assert orders.get("20261125100000a1b2c3d4e5f60718") == order()


def test_orders_survive_the_gateway_that_created_them(db_url: str, clock: FixedClock) -> None:
    key = support.rsa_key("unionpay")
    config = OnlineConfig(
        merchant_id=support.ONLINE_MERCHANT, gateway_public_keys=(support.public_pem(key),)
    )
    settings = Settings(database_url=db_url, seal_every=0, sqlite_synchronous="NORMAL")
    with Gateway.open(settings=settings, clock=clock) as first:
        first.open_account("0101234567")
        online = OnlineAdapter(
            config, AdapterContext(clock=clock, orders=SqlOrderStore(first.store))
        )
        created = online.create_order("0101234567", Money(15000, "CNY"), now=clock.now())
    with Gateway.open(settings=settings, clock=clock) as second:
        orders = SqlOrderStore(second.store)
        assert orders.get(created.order_id) == created
        online = OnlineAdapter(config, AdapterContext(clock=clock, orders=orders))
        params = support.unionpay_params(
            created.order_id, 15000, txnTime="20261125100500", traceTime="1125100530"
        )
        result = online.handle_notify(support.unionpay_body(params, key), {}, second)
        assert result.ok, result.error
        assert result.receipt is not None and result.receipt.account_no == "0101234567"


# ── the kiosk ledger ──────────────────────────────────────────────────────────────────────


def kiosk_payment(
    txn: str, minor: int, *, terminal: str = "K0001", at: datetime = NOW, account: str = "A1"
) -> PaymentIntent:
    return PaymentIntent(
        channel="kiosk",
        channel_txn_id=f"{terminal}:{txn}",
        account_no=account,
        amount=Money(minor, "CNY"),
        paid_at=at,
        terminal_id=terminal,
    )


def test_terminal_totals_count_posted_payments_of_the_day_by_method(gateway: Gateway) -> None:
    gateway.open_account("A1")
    for intent in (
        kiosk_payment("cash-1", 10000),
        kiosk_payment("cash-2", 5050),
        kiosk_payment("card-3", 20000),
        kiosk_payment("cash-4", 700, terminal="K0002"),
        kiosk_payment("cash-5", 900, at=NOW - timedelta(days=1)),
        kiosk_payment("card-6", 3000),
    ):
        gateway.pay(intent)
    gateway.reverse_by_channel_txn("kiosk", "K0001:card-6", "operator cancelled")
    # Another channel's payment with the same terminal id is not the kiosk's.
    gateway.pay(
        PaymentIntent(
            channel="pos",
            channel_txn_id="K0001:cash-7",
            account_no="A1",
            amount=Money(100, "CNY"),
            paid_at=NOW,
            terminal_id="K0001",
        )
    )
    totals, held = SqlKioskLedger(gateway.store).terminal_totals("K0001", date(2026, 11, 25), "CNY")
    assert held == KioskTotals.zero("CNY")
    assert totals == KioskTotals(
        cash=MethodTotal(count=2, amount=Money(15050, "CNY")),
        card=MethodTotal(count=1, amount=Money(20000, "CNY")),
    )
    assert totals.count == 3 and totals.amount == Money(35050, "CNY")
    empty = SqlKioskLedger(gateway.store).terminal_totals("K0009", date(2026, 11, 25), "CNY")
    assert empty == (KioskTotals.zero("CNY"), KioskTotals.zero("CNY"))


def test_terminal_totals_count_cash_taken_for_a_closed_account_and_show_it_apart(
    gateway: Gateway,
) -> None:
    gateway.open_account("A1")
    gateway.pay(kiosk_payment("cash-1", 10000))
    gateway.open_account("A2")
    gateway.close_account("A2", closure_id="CL-A2", reason="moved away")
    gateway.pay(kiosk_payment("cash-2", 3000, account="A2"))  # held in suspense
    gateway.pay(kiosk_payment("card-3", 2000, account="A2"))  # held in suspense
    gateway.pay(kiosk_payment("card-4", 500))
    taken, held = SqlKioskLedger(gateway.store).terminal_totals("K0001", date(2026, 11, 25), "CNY")
    assert taken == KioskTotals(
        cash=MethodTotal(count=2, amount=Money(13000, "CNY")),
        card=MethodTotal(count=2, amount=Money(2500, "CNY")),
    )
    assert held == KioskTotals(
        cash=MethodTotal(count=1, amount=Money(3000, "CNY")),
        card=MethodTotal(count=1, amount=Money(2000, "CNY")),
    )


def test_a_kiosk_payment_without_a_method_prefix_is_an_integrity_error(gateway: Gateway) -> None:
    gateway.open_account("A1")
    gateway.pay(kiosk_payment("000123", 100))
    with pytest.raises(IntegrityError, match="K0001:000123"):
        SqlKioskLedger(gateway.store).terminal_totals("K0001", date(2026, 11, 25), "CNY")


def test_a_day_is_closed_once(gateway: Gateway, clock: FixedClock) -> None:
    ledger = SqlKioskLedger(gateway.store)
    record = KioskCloseRecord(
        terminal_id="K0001",
        business_date=date(2026, 11, 24),
        currency="CNY",
        counted_cash=50000,
        reported_count=4,
        reported_total=62000,
        ledger_count=4,
        ledger_total=62000,
        closed_at=clock.now(),
    )
    assert ledger.close_of("K0001", date(2026, 11, 24)) is None
    assert ledger.record_close(record) == (record, True)
    again = record.model_copy(update={"counted_cash": 1, "closed_at": NOW + timedelta(hours=1)})
    assert ledger.record_close(again) == (record, False)
    assert ledger.close_of("K0001", date(2026, 11, 24)) == record
    other_day = record.model_copy(update={"business_date": date(2026, 11, 25)})
    assert ledger.record_close(other_day) == (other_day, True)
