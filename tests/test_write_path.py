"""The payment write path: its round trips, its set-based batches, and exactly-once under them.

On PostgreSQL a payment costs two statements besides BEGIN and COMMIT: one call that locks
the accounts and then reads, and every row of the decision in one statement. These tests
count what the driver is asked to do, so that a change adding a statement to the path fails
here. A batch
(``pay_many``) is decided in Python chunk by chunk and written one statement per chunk: a
duplicate inside a chunk, an item that fails and a concurrent writer of the same payment each
get their own outcome, and a failure while writing leaves nothing of the chunk behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from paygate import records
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store import engine
from paygate.store.engine import Tx

PAID_AT = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


class Crash(RuntimeError):
    """The process stopping before a statement reached the database."""


class Counter:
    """What the driver connection of every transaction was asked to send."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.round_trips = 0
        self.fail_at: int | None = None  # raise when the statement with this index is sent
        self._piped = 0

    def sent(self, sql: str) -> None:
        if self.fail_at is not None and len(self.statements) == self.fail_at:
            raise Crash("crash between statements")
        self.statements.append(sql)
        if not self._piped:
            self.round_trips += 1


class _Counting:
    """A driver connection that tells ``counter`` each statement and each round trip."""

    def __init__(self, conn: Any, counter: Counter) -> None:
        self._conn = conn
        self._counter = counter

    def execute(self, sql: Any, *args: Any) -> Any:
        self._counter.sent(str(sql))
        return self._conn.execute(sql, *args)

    def executemany(self, sql: Any, *args: Any) -> Any:
        self._counter.sent(str(sql))
        return self._conn.executemany(sql, *args)

    def cursor(self, *args: Any) -> Any:
        self._counter.sent("cursor")
        return self._conn.cursor(*args)

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        self._counter.round_trips += 1
        self._counter._piped += 1
        try:
            with self._conn.pipeline() as pipe:
                yield pipe
        finally:
            self._counter._piped -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    original = Tx.__init__

    def counting_init(self: Tx, store: engine.Store, conn: Any) -> None:
        original(self, store, _Counting(conn, counter))

    monkeypatch.setattr(Tx, "__init__", counting_init)
    real_raw = psycopg.RawCursor

    class CountingRawCursor(real_raw):  # type: ignore[misc,valid-type]
        """The cursor of native-placeholder statements (the decision's write)."""

        def __init__(self, conn: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(getattr(conn, "_conn", conn), *args, **kwargs)

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            counter.sent(str(query))
            return super().execute(query, *args, **kwargs)

    monkeypatch.setattr(psycopg, "RawCursor", CountingRawCursor)
    return counter


def _open(gateway: Gateway, accounts: int, *, amount: int = 10_000) -> None:
    for k in range(accounts):
        gateway.open_account(f"A{k}")
        gateway.issue_bill(
            f"A{k}",
            bill_no=f"B{k}",
            amount=Money(amount, "CNY"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )


def _intent(txn: str, account: str, amount: int = 500, channel: str = "kiosk") -> PaymentIntent:
    return PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no=account,
        amount=Money(amount, "CNY"),
        paid_at=PAID_AT,
    )


def _count(gateway: Gateway, sql: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(sql), write=False))


# --- round trips -------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_payment_is_two_statements_on_postgresql(pg_url: str, counter: Counter) -> None:
    settings = Settings(database_url=pg_url, seal_every=0)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 3)
        gateway.pay(_intent("warm", "A0"))  # ledger accounts known, an id block taken
        counter.statements.clear()
        counter.round_trips = 0
        pays = 20
        for n in range(pays):
            receipt = gateway.pay(_intent(f"K{n}", f"A{n % 3}"))
            assert not receipt.replayed
        # per payment: one read (lock, then read, in one function call), one write statement;
        # besides them only an id block now and then (one nextval per thousand ids)
        alone = [s for s in counter.statements if "nextval" not in s]
        assert counter.round_trips - (len(counter.statements) - len(alone)) == 2 * pays, [
            s[:60] for s in alone if not s.startswith(("WITH", "SELECT accounts, stored"))
        ]
        writes = [s for s in counter.statements if "INSERT" in s]
        assert len(writes) == pays, writes
        assert all(s.startswith("WITH") for s in writes)


@pytest.mark.postgres
def test_a_replay_is_one_round_trip_on_postgresql(pg_url: str, counter: Counter) -> None:
    settings = Settings(database_url=pg_url, seal_every=0)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 1)
        gateway.pay(_intent("K1", "A0"))
        counter.statements.clear()
        counter.round_trips = 0
        assert gateway.pay(_intent("K1", "A0")).replayed
        assert counter.round_trips == 1, counter.statements


def test_statements_of_a_payment_on_sqlite(sqlite_url: str, counter: Counter) -> None:
    settings = Settings(database_url=sqlite_url, seal_every=0, sqlite_synchronous="OFF")
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 3)
        gateway.pay(_intent("warm", "A0"))
        counter.statements.clear()
        pays = 20
        for n in range(pays):
            gateway.pay(_intent(f"K{n}", f"A{n % 3}"))
        # lock, balances, bills, stored payments; entries, postings, balances, payments,
        # allocations, events, bills (one executemany each); BEGIN and COMMIT; an id block
        # every few payments
        per_payment = [s for s in counter.statements if "id_blocks" not in s]
        assert len(per_payment) <= 13 * pays, per_payment[:20]


@pytest.mark.postgres
def test_a_chunk_is_one_write_statement_on_postgresql(pg_url: str, counter: Counter) -> None:
    settings = Settings(database_url=pg_url, seal_every=0, pay_many_chunk=50)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 10)
        gateway.pay(_intent("warm", "A0"))
        counter.statements.clear()
        outcomes = gateway.pay_many(_intent(f"M{n}", f"A{n % 10}", 100) for n in range(200))
        assert [o.status for o in outcomes] == ["posted"] * 200
        writes = [s for s in counter.statements if "INSERT" in s]
        assert len(writes) == 4  # one per chunk of 50
        assert all(s.startswith("WITH") for s in writes)


# --- batches: per-item outcomes ----------------------------------------------------------


def test_duplicates_inside_one_chunk(gateway: Gateway) -> None:
    _open(gateway, 2)
    first = _intent("D1", "A0", 700)
    changed = _intent("D1", "A0", 701)
    outcomes = gateway.pay_many([first, _intent("D2", "A1"), first, changed])
    assert [o.status for o in outcomes] == ["posted", "posted", "replayed", "refused"]
    assert outcomes[3].error_code == "idempotency_conflict"
    assert outcomes[2].receipt is not None and outcomes[0].receipt is not None
    assert outcomes[2].receipt.payment_id == outcomes[0].receipt.payment_id
    assert _count(gateway, "SELECT COUNT(*) FROM payments") == 2
    assert gateway.verify().ok


def test_a_failing_item_does_not_fail_the_others(gateway: Gateway) -> None:
    _open(gateway, 2)
    items = [
        _intent("F1", "A0"),
        _intent("F2", "NOPE"),
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="F3",
            account_no="A1",
            amount=Money(500, "USD"),
            paid_at=PAID_AT,
        ),
        _intent("F4", "A1"),
    ]
    outcomes = gateway.pay_many(items)
    assert [o.status for o in outcomes] == ["posted", "refused", "refused", "posted"]
    assert outcomes[1].error_code == "unknown_account"
    assert outcomes[2].error_code == "currency_mismatch"
    assert _count(gateway, "SELECT COUNT(*) FROM payments") == 2
    assert gateway.verify().ok


def test_a_chunk_replays_what_an_earlier_chunk_posted(db_url: str) -> None:
    settings = Settings(database_url=db_url, seal_every=0, pay_many_chunk=3)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 3)
        items = [_intent(f"C{n}", f"A{n % 3}") for n in range(7)]
        outcomes = gateway.pay_many([*items, items[0], items[4]])
        assert [o.status for o in outcomes] == ["posted"] * 7 + ["replayed"] * 2
        again = gateway.pay_many(items)
        assert {o.status for o in again} == {"replayed"}
        assert _count(gateway, "SELECT COUNT(*) FROM payments") == 7
        assert gateway.verify().ok


@pytest.mark.postgres
def test_a_concurrent_duplicate_in_a_chunk(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer commits a payment under one of the chunk's ids between the chunk's read
    and its write: the unique key refuses the chunk's write, the chunk is decided again, and
    that item alone is refused (same id, another account) while the others post once."""
    settings = Settings(database_url=pg_url, seal_every=0, pay_many_chunk=10)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 5)
        items = [_intent(f"R{n}", f"A{n % 4}") for n in range(6)]
        raced: dict[str, Any] = {}
        real = records.read_decision
        calls = 0

        def read_then_race(tx: Tx, *args: Any) -> Any:
            nonlocal calls
            found = real(tx, *args)
            if threading.current_thread() is not threading.main_thread():
                return found  # the other writer's own read
            calls += 1
            if calls == 1:
                # A4 is not in the chunk, so the other writer does not wait for its locks
                racer = threading.Thread(
                    target=lambda: raced.setdefault("receipt", gateway.pay(_intent("R1", "A4")))
                )
                racer.start()
                racer.join(timeout=30)
            return found

        monkeypatch.setattr("paygate.payments.read_decision", read_then_race)
        outcomes = gateway.pay_many(items)
        assert calls == 2  # decided again after the unique key refused the write
        assert [o.status for o in outcomes] == ["posted", "refused"] + ["posted"] * 4
        assert outcomes[1].error_code == "idempotency_conflict"
        assert raced["receipt"].account_no == "A4"
        assert _count(gateway, "SELECT COUNT(*) FROM payments") == 6
        assert gateway.verify().ok


# --- a failure while writing: nothing or everything ----------------------------------------

_TABLES = ("payments", "journal_entries", "postings", "allocations", "outbox", "seal_queue")


def _state(gateway: Gateway) -> dict[str, int]:
    counts = {t: _count(gateway, f"SELECT COUNT(*) FROM {t}") for t in _TABLES}
    counts["balances"] = _count(gateway, "SELECT SUM(ABS(balance)) FROM ledger_balances")
    counts["bills"] = _count(gateway, "SELECT SUM(principal_paid + late_fee_paid) FROM bills")
    return counts


def test_a_failure_between_statements_leaves_nothing(db_url: str, counter: Counter) -> None:
    settings = Settings(database_url=db_url, seal_every=0, pay_many_chunk=50)
    with Gateway.open(settings=settings, clock=FixedClock(PAID_AT)) as gateway:
        _open(gateway, 5)
        before = _state(gateway)
        items = [_intent(f"X{n}", f"A{n % 5}") for n in range(20)]
        crash_at = 1
        while True:  # a crash before each statement the chunk sends, COMMIT last
            counter.statements.clear()
            counter.fail_at = crash_at
            try:
                outcomes = gateway.pay_many(items)
            except Crash:
                counter.fail_at = None
                assert _state(gateway) == before, crash_at
                crash_at += 1
                continue
            finally:
                counter.fail_at = None
            break
        assert crash_at >= 3  # the reads, the writes (SQLite: one per table), COMMIT
        assert {o.status for o in outcomes} == {"posted"}
        after = _state(gateway)
        assert after["payments"] == before["payments"] + 20
        assert after["journal_entries"] == before["journal_entries"] + 20
        gateway.seal()
        assert gateway.verify().ok


def test_a_payment_is_never_deleted(gateway: Gateway) -> None:
    """Allocations name their payment without a foreign key; the payment cannot go away."""
    _open(gateway, 1)
    receipt = gateway.pay(_intent("K1", "A0"))
    with pytest.raises(Exception, match="never deleted"):
        gateway.store.run(
            lambda tx: tx.execute("DELETE FROM payments WHERE id = :p", {"p": receipt.payment_id})
        )
    assert _count(gateway, "SELECT COUNT(*) FROM payments") == 1
