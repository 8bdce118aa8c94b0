"""The billing run: many accounts and bills per call, chunked, each decided as the single call
would decide it (created, replayed, conflict, refused), on SQLite and PostgreSQL."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from pydantic import ValidationError

from paygate import BulkResult, Gateway, Money, NewAccount, NewBill, PaymentIntent
from paygate.billing_run import _probes
from paygate.config import Settings
from paygate.errors import InvalidAmountError, InvalidInputError
from paygate.models import Category
from paygate.store.engine import Tx

DUE = date(2026, 12, 15)


def bill(no: str, account: str = "A1", minor: int = 10000, **change: object) -> NewBill:
    values: dict[str, object] = {
        "account_no": account,
        "bill_no": no,
        "amount": Money(minor, "CNY"),
        "period": "2026-11",
        "due_date": DUE,
    }
    values.update(change)
    return NewBill.model_validate(values)


def test_accounts_are_created_replayed_and_conflicting(gateway: Gateway) -> None:
    result = gateway.open_accounts(
        [
            NewAccount(account_no="A1", name="Zhang San"),
            NewAccount(account_no="A2", category=Category.NON_RESIDENTIAL, protected=True),
            NewAccount(account_no="A1", name="Zhang San"),
            NewAccount(account_no="A2", prepaid=True),
        ]
    )
    assert result.created == ("A1", "A2")
    assert result.replayed == ("A1",)
    assert [(c.index, c.key, c.code, c.field) for c in result.conflicts] == [
        (3, "A2", "duplicate_account", "account_no")
    ]
    assert (result.created_count, result.replayed_count, result.conflict_count) == (2, 1, 1)
    status = gateway.account_status("A2")
    assert status.protected and not status.prepaid
    assert status.category is Category.NON_RESIDENTIAL
    again = gateway.open_accounts([NewAccount(account_no="A1", name="Zhang San")])
    assert again.replayed == ("A1",) and again.created_count == 0
    # open_account agrees with what the run wrote
    gateway.open_account("A1", name="Zhang San")


def test_bills_are_created_replayed_conflicting_and_refused(gateway: Gateway) -> None:
    gateway.open_accounts(
        [NewAccount(account_no="A1"), NewAccount(account_no="U1", currency="USD")]
    )
    result = gateway.issue_bills(
        [
            bill("B1"),
            bill("B2", minor=2500),
            bill("B1"),  # same again in the same run: replayed
            bill("B1", minor=1),  # other data: a conflict, not written
            bill("B3", account="NOPE"),
            bill("B4", account="U1"),  # CNY on a USD account
        ],
        chunk_size=4,
    )
    assert result.created == ("B1", "B2")
    assert result.replayed == ("B1",)
    assert [(c.index, c.code, c.field) for c in result.conflicts] == [
        (3, "bill_conflict", "bill_no")
    ]
    assert [(r.index, r.key, r.code, r.field) for r in result.refused] == [
        (4, "B3", "unknown_account", "account_no"),
        (5, "B4", "currency_mismatch", "amount"),
    ]
    status = gateway.account_status("A1")
    assert status.balance == Money(12500, "CNY")
    assert [b.bill_no for b in status.bills] == ["B1", "B2"]
    assert gateway.ledger_balances()["receivable:A1"] == Money(12500, "CNY")
    assert gateway.verify().ok
    # The single call sees the run's bill as its own.
    issued = gateway.issue_bill(
        "A1", bill_no="B1", amount=Money(10000, "CNY"), period="2026-11", due_date=DUE
    )
    assert not issued.created


def test_a_second_run_of_the_same_input_is_all_replayed(gateway: Gateway) -> None:
    gateway.open_accounts(NewAccount(account_no=f"A{i}") for i in range(30))
    bills = [bill(f"B{i}", account=f"A{i % 30}", minor=100 + i) for i in range(150)]
    first = gateway.issue_bills(bills, chunk_size=40)
    assert first.created_count == 150
    entries = gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM journal_entries"))
    second = gateway.issue_bills(iter(bills), chunk_size=7)
    assert second == BulkResult(replayed_count=150, replayed=tuple(b.bill_no for b in bills))
    assert gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM journal_entries")) == (
        entries
    )


def test_a_bill_for_an_account_in_credit_spends_the_credit_in_input_order(
    gateway: Gateway,
) -> None:
    gateway.open_accounts([NewAccount(account_no="A1"), NewAccount(account_no="A2")])
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="T1",
            account_no="A1",
            amount=Money(10000, "CNY"),
            paid_at=gateway.clock.now(),
        )
    )
    # Issued one by one, the later-due bill first takes 8000, the earlier-due one the rest.
    result = gateway.issue_bills(
        [
            bill("LATE", minor=8000, due_date=date(2027, 1, 15)),
            bill("EARLY", minor=5000, due_date=date(2026, 12, 15)),
            bill("OTHER", account="A2", minor=700),
        ]
    )
    assert result.created == ("LATE", "EARLY", "OTHER")
    status = gateway.account_status("A1")
    paid = {b.bill_no: b.principal_paid.minor for b in status.bills}
    assert paid == {"EARLY": 2000}  # LATE is paid in full, no longer open
    assert status.credit == Money(0, "CNY")
    assert status.balance == Money(3000, "CNY")
    assert gateway.verify().ok


def test_items_of_the_wrong_type_are_refused_before_anything_is_written(gateway: Gateway) -> None:
    with pytest.raises(InvalidInputError) as caught:
        gateway.open_accounts(["A1"])  # type: ignore[list-item]
    assert caught.value.field == "items"
    with pytest.raises(InvalidInputError):
        gateway.issue_bills([bill("B1"), NewAccount(account_no="A1")])  # type: ignore[list-item]
    assert gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts")) == 0


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({"account_no": ""}, "account_no", InvalidInputError),
        ({"account_no": "x" * 65}, "account_no", InvalidInputError),
        ({"bill_no": ""}, "bill_no", InvalidInputError),
        ({"period": "x" * 17}, "period", InvalidInputError),
        ({"amount": Money(0, "CNY")}, "amount", InvalidAmountError),
        ({"amount": Money(-5, "CNY")}, "amount", InvalidAmountError),
        ({"amount": 100}, "amount", InvalidAmountError),
        ({"due_date": "2026-12-15"}, "due_date", InvalidInputError),
    ],
)
def test_a_bad_bill_names_its_field(
    change: dict[str, object], field: str, error: type[InvalidInputError]
) -> None:
    with pytest.raises(error) as caught:
        bill("B1", **change)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account_no": "bad\nno"}, "account_no"),
        ({"category": "industrial"}, "category"),
        ({"prepaid": "yes"}, "prepaid"),
        ({"currency": "XXX"}, "currency"),
        ({"name": "n" * 201}, "name"),
    ],
)
def test_a_bad_account_names_its_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        NewAccount.model_validate({"account_no": "A1", **change})
    assert caught.value.field == field


def test_records_are_frozen() -> None:
    with pytest.raises(ValidationError):
        bill("B1").bill_no = "B2"  # type: ignore[misc]


def test_the_input_is_read_a_chunk_at_a_time(gateway: Gateway) -> None:
    """The run never holds more than a chunk of the input: a generator is drawn lazily."""
    drawn: list[int] = []
    seen_at_commit: list[int] = []

    def accounts() -> Iterator[NewAccount]:
        for i in range(25):
            drawn.append(i)
            yield NewAccount(account_no=f"A{i}")

    result = gateway.open_accounts(
        accounts(), chunk_size=10, keep_keys=False, progress=lambda n: seen_at_commit.append(n)
    )
    assert seen_at_commit == [10, 20, 25]
    assert result.created_count == 25 and result.created == ()


def test_memory_stays_flat_with_the_input_size(gateway: Gateway) -> None:
    """Ten times the bills cost about the same peak memory (kept counts only)."""
    gateway.open_accounts(NewAccount(account_no=f"A{i}") for i in range(50))

    def peak(n: int, prefix: str) -> int:
        tracemalloc.start()
        try:
            gateway.issue_bills(
                (bill(f"{prefix}{i}", account=f"A{i % 50}", minor=1 + i) for i in range(n)),
                chunk_size=200,
                keep_keys=False,
            )
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(400, "S"), peak(4000, "L")
    assert large < small * 2, (small, large)


def test_the_chunk_size_comes_from_the_settings_and_the_environment() -> None:
    from paygate import Settings
    from paygate.errors import ConfigurationError

    assert Settings().billing_run_chunk == 5000
    assert Settings.from_env({"PAYGATE_BILLING_RUN_CHUNK": "250"}).billing_run_chunk == 250
    with pytest.raises(ConfigurationError, match="PAYGATE_BILLING_RUN_CHUNK"):
        Settings.from_env({"PAYGATE_BILLING_RUN_CHUNK": "0"})


@pytest.mark.parametrize("what", ["accounts", "bills"])
def test_two_runs_of_the_same_file_at_once_write_each_item_once(db_url: str, what: str) -> None:
    """Concurrent runs collide on keys; the loser's chunk is decided again and replays."""
    from concurrent.futures import ThreadPoolExecutor

    from paygate import Settings

    n = 300
    settings = Settings(database_url=db_url, seal_every=0)
    # One Gateway, two threads: each call is its own transactions on its own connection.
    with Gateway.open(settings=settings) as shared:
        shared.open_accounts(NewAccount(account_no=f"X{i}") for i in range(50))

        def run(order: int) -> BulkResult:
            if what == "accounts":
                items = [NewAccount(account_no=f"A{i}") for i in range(n)]
                return shared.open_accounts(items[::order], chunk_size=60)
            bills = [bill(f"B{i}", account=f"X{i % 50}", minor=100 + i) for i in range(n)]
            return shared.issue_bills(bills[::order], chunk_size=60)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run, [1, -1]))
    assert sum(r.created_count for r in results) == n
    for r in results:
        assert r.created_count + r.replayed_count == n
        assert r.conflict_count == r.refused_count == 0
    with Gateway.open(settings=settings) as gateway:
        table = "accounts" if what == "accounts" else "bills"
        stored = gateway.store.run(lambda tx: tx.scalar(f"SELECT COUNT(*) FROM {table}"))
        assert stored == n + (50 if what == "accounts" else 0)
        if what == "bills":
            entries = gateway.store.run(
                lambda tx: tx.scalar("SELECT COUNT(*) FROM journal_entries")
            )
            assert entries == n
        assert gateway.verify().ok


def test_a_deadlock_inside_a_runs_planner_settings_is_retried_not_masked(pg_url: str) -> None:
    """A statement of a billing run that deadlocks aborts its transaction; the run's planner
    settings are not reset in it (that statement would fail in turn and hide the deadlock,
    which the store retries), so the chunk is tried again and commits."""
    gateway = Gateway.open(settings=Settings(database_url=pg_url))
    attempts: list[int] = []

    def work(tx: Tx) -> str:
        attempts.append(1)
        with _probes(tx):
            if len(attempts) == 1:
                tx.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' "
                    "USING ERRCODE = 'deadlock_detected'; END $$"
                )
            return str(tx.scalar("SHOW enable_hashjoin"))

    try:
        assert gateway.store.run(work) == "off"
        assert len(attempts) == 2

        def fails(tx: Tx) -> None:
            with _probes(tx):
                tx.execute("SELECT 1 / 0")

        with pytest.raises(psycopg.errors.DivisionByZero):
            gateway.store.run(fails)
    finally:
        gateway.close()
