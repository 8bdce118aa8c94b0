"""Monthly partitions of the journal, postings and outbox on PostgreSQL (migration 0009).

A populated database is converted (and converted back) with every balance and seal intact; the
maintenance creates months ahead and moves new ids into them; a payment never needs it; the
journal stays append-only partition by partition; SQLite is left as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from paygate import Gateway, Money, PaymentIntent, Settings
from paygate.cli import app
from paygate.clock import FixedClock
from paygate.store import migrate, partitions
from paygate.store.partitions import (
    MONTH_BITS,
    is_partition,
    month_base,
    month_index,
    month_of_id,
    partition_name,
)

CNY = "CNY"


def _plain(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(_plain(url)) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def _relkind(url: str, table: str) -> str:
    return str(_rows(url, "SELECT relkind FROM pg_class WHERE relname = %s", (table,))[0][0])


def _populate(gateway: Gateway, clock: FixedClock, accounts: int = 6) -> None:
    """Accounts with bills, payments (one late, with a fee), credit, and one reversal."""
    for n in range(accounts):
        account_no = f"31{n:08d}"
        gateway.open_account(account_no)
        gateway.issue_bill(
            account_no,
            bill_no=f"{account_no}-2026-10",
            amount=Money(10_000 + n, CNY),
            period="2026-10",
            due_date=date(2026, 11, 10),
        )
        gateway.pay(
            PaymentIntent(
                channel="kiosk" if n % 2 else "bank",
                channel_txn_id=f"T{n}",
                account_no=account_no,
                amount=Money(12_000 + n, CNY),
                paid_at=clock.now(),
            )
        )
    gateway.reverse_by_channel_txn("bank", "T0", "customer paid twice")
    gateway.seal()


def _counts(url: str) -> dict[str, int]:
    return {
        table: int(_rows(url, f"SELECT count(*) FROM {table}")[0][0])
        for table in ("journal_entries", "postings", "outbox", "payments", "seal_queue")
    }


def _where(url: str, table: str, ids: list[int]) -> set[str]:
    rows = _rows(
        url,
        f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE id = ANY(%s)",
        (ids,),
    )
    return {str(r[0]) for r in rows}


@pytest.fixture
def migrated_pg(empty_pg_url: str) -> str:
    """A database of its own (maintenance changes the sequence and adds partitions)."""
    migrate.upgrade(empty_pg_url)
    return empty_pg_url


@pytest.fixture
def pg_gateway(migrated_pg: str, clock: FixedClock) -> Iterator[Gateway]:
    with Gateway.open(settings=Settings(database_url=migrated_pg, seal_every=0), clock=clock) as gw:
        yield gw


@pytest.mark.postgres
def test_a_populated_database_is_converted_back_and_forth_intact(
    migrated_pg: str, clock: FixedClock
) -> None:
    settings = Settings(database_url=migrated_pg, seal_every=0)
    with Gateway.open(settings=settings, clock=clock) as gateway:
        _populate(gateway, clock)
        balances = gateway.ledger_balances()
        report = gateway.verify()
        assert report.ok and report.entries > 12
    counts = _counts(migrated_pg)

    migrate.downgrade(migrated_pg, "0008")
    for table in partitions.PARTITIONED_TABLES:
        assert _relkind(migrated_pg, table) == "r"
    assert not [
        t for (t,) in _rows(migrated_pg, "SELECT relname FROM pg_class") if is_partition(str(t))
    ]
    assert _counts(migrated_pg) == counts

    # A populated database at the previous revision is converted in place.
    migrate.upgrade(migrated_pg)
    for table in partitions.PARTITIONED_TABLES:
        assert _relkind(migrated_pg, table) == "p"
        initial = f"{table}_initial"
        assert _rows(migrated_pg, f"SELECT count(*) FROM {initial}")[0][0] == counts[table]
    assert _counts(migrated_pg) == counts
    with Gateway.open(settings=settings, clock=clock) as gateway:
        report = gateway.verify()
        assert report.ok, report.findings
        assert report.entries == counts["journal_entries"]
        assert gateway.ledger_balances() == balances
        receipt = gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="AFTER",
                account_no="3100000003",
                amount=Money(500, CNY),
                paid_at=clock.now(),
            )
        )
        gateway.seal()
        assert gateway.verify().ok
    # The same payment again is still exactly-once across the conversion.
    assert receipt.payment_id is not None
    assert _counts(migrated_pg)["payments"] == counts["payments"] + 1


@pytest.mark.postgres
def test_a_fresh_database_takes_ids_from_this_months_partition(pg_gateway: Gateway) -> None:
    receipt = pg_gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="P1",
            account_no=_account(pg_gateway),
            amount=Money(1_000, CNY),
            paid_at=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        )
    )
    month = month_index(datetime.now(UTC).date())
    url = pg_gateway.store.safe_url()
    entry = _rows(url, "SELECT entry_id FROM payments WHERE id = %s", (receipt.payment_id,))
    entry_id = int(str(entry[0][0]))
    assert month_of_id(entry_id) == date(2000 + month // 12, month % 12 + 1, 1)
    assert _where(url, "journal_entries", [entry_id]) == {partition_name("journal_entries", month)}
    legs = [
        int(str(r[0]))
        for r in _rows(url, "SELECT id FROM postings WHERE entry_id = %s", (entry_id,))
    ]
    assert _where(url, "postings", legs) == {partition_name("postings", month)}


def _account(gateway: Gateway, account_no: str = "3100000001") -> str:
    gateway.open_account(account_no)
    return account_no


@pytest.mark.postgres
def test_maintenance_creates_months_ahead_and_moves_new_ids_there(pg_gateway: Gateway) -> None:
    today = datetime.now(UTC).date()
    later = (today.replace(day=1) + timedelta(days=100)).replace(day=1)  # three months on
    report = pg_gateway.store.run(lambda tx: partitions.maintain(tx, later, months_ahead=1))
    index = month_index(later)
    assert sorted(report.created) == sorted(
        partition_name(t, i) for t in partitions.PARTITIONED_TABLES for i in (index, index + 1)
    )
    assert report.sequence_moved_to == month_base(index)
    # Nothing left to do: the same call again creates nothing and moves nothing.
    again = pg_gateway.store.run(lambda tx: partitions.maintain(tx, later, months_ahead=1))
    assert again.created == [] and again.sequence_moved_to is None
    receipt = pg_gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="LATER",
            account_no=_account(pg_gateway),
            amount=Money(700, CNY),
            paid_at=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        )
    )
    assert receipt.payment_id is not None
    url = pg_gateway.store.safe_url()
    entry_id = int(str(_rows(url, "SELECT entry_id FROM payments")[0][0]))
    assert _where(url, "journal_entries", [entry_id]) == {partition_name("journal_entries", index)}
    pg_gateway.seal()
    assert pg_gateway.verify().ok


@pytest.mark.postgres
def test_a_payment_needs_no_maintenance_whatever_month_it_is(
    migrated_pg: str,
) -> None:
    """Years after the last maintenance, a payment still lands in the partition of the range
    the sequence is in."""
    far = FixedClock(datetime(2031, 7, 1, 2, 0, tzinfo=UTC))
    settings = Settings(database_url=migrated_pg, seal_every=0)
    with Gateway.open(settings=settings, clock=far) as gateway:
        gateway.open_account("3100000009")
        gateway.issue_bill(
            "3100000009",
            bill_no="B-2031-06",
            amount=Money(3_000, CNY),
            period="2031-06",
            due_date=date(2031, 6, 20),
        )
        receipt = gateway.pay(
            PaymentIntent(
                channel="bank",
                channel_txn_id="FAR",
                account_no="3100000009",
                amount=Money(3_100, CNY),
                paid_at=far.now(),
            )
        )
        assert receipt.arrears_after == Money(0, CNY)
        gateway.seal()
        assert gateway.verify().ok
    assert not _rows(migrated_pg, "SELECT 1 FROM pg_class WHERE relname LIKE '%%_p2031_%%'")


@pytest.mark.postgres
def test_past_months_get_partitions_only_outside_the_initial_one(pg_gateway: Gateway) -> None:
    created = pg_gateway.store.run(lambda tx: partitions.ensure_month(tx, date(2025, 3, 1)))
    assert created == [
        partition_name(t, month_index(date(2025, 3, 1))) for t in partitions.PARTITIONED_TABLES
    ]
    # January 2000's range holds the ids handed out before the upgrade: it is the initial one.
    assert pg_gateway.store.run(lambda tx: partitions.ensure_month(tx, date(2000, 1, 1))) == []


@pytest.mark.postgres
def test_every_partition_of_the_journal_stays_append_only(
    pg_gateway: Gateway, clock: FixedClock
) -> None:
    _populate(pg_gateway, clock, accounts=2)
    url = _plain(pg_gateway.store.safe_url())
    month = month_index(datetime.now(UTC).date())
    refused = psycopg.errors.RaiseException  # the journal's own guard
    referenced = psycopg.errors.FeatureNotSupported  # the foreign keys to the journal
    for sql, error in (
        ("UPDATE postings SET amount = amount + 1", refused),
        ("DELETE FROM journal_entries", refused),
        (f"DELETE FROM {partition_name('postings', month)}", refused),
        (f"UPDATE {partition_name('journal_entries', month)} SET memo = 'x'", refused),
        (f"TRUNCATE {partition_name('postings', month)}", refused),
        ("TRUNCATE postings_initial", refused),
        (f"TRUNCATE {partition_name('journal_entries', month)}", referenced),
    ):
        with psycopg.connect(url) as conn, pytest.raises(error):
            conn.execute(sql)
    assert pg_gateway.verify().ok


@pytest.mark.postgres
def test_an_unbalanced_statement_is_refused_on_the_partitioned_postings(
    pg_gateway: Gateway, clock: FixedClock
) -> None:
    _populate(pg_gateway, clock, accounts=1)
    url = _plain(pg_gateway.store.safe_url())
    entry_id, account_id = _rows(url, "SELECT entry_id, account_id FROM postings LIMIT 1")[0]
    base = int(str(_rows(url, "SELECT nextval('paygate_id_seq')")[0][0]))
    for legs in ([5], [5, -4]):
        rows = [(base + i, entry_id, account_id, amount, CNY) for i, amount in enumerate(legs)]
        marks = ", ".join("(%s, %s, %s, %s, %s)" for _ in rows)
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                f"INSERT INTO postings (id, entry_id, account_id, amount, currency) VALUES {marks}",
                [v for row in rows for v in row],
            )
    assert pg_gateway.verify().ok


def test_sqlite_has_no_partitions_and_maintenance_says_so(sqlite_url: str) -> None:
    with Gateway.open(settings=Settings(database_url=sqlite_url)) as gateway:
        report = gateway.store.run(lambda tx: partitions.maintain(tx, date(2026, 12, 1)))
        assert not report.supported and report.created == []
        assert gateway.store.run(partitions.partitions) == []
    result = CliRunner().invoke(app, ["db", "partitions", "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output


@pytest.mark.postgres
def test_the_partitions_command_lists_them_as_json(migrated_pg: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["db", "partitions", "--months-ahead", "2", "--json", "--database-url", migrated_pg]
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    month = month_index(datetime.now(UTC).date())
    assert listing["created"] == [
        partition_name(t, month + 2) for t in partitions.PARTITIONED_TABLES
    ]
    names = {p["partition"] for p in listing["partitions"]}
    for table in partitions.PARTITIONED_TABLES:
        assert {f"{table}_initial", *(partition_name(table, month + i) for i in range(3))} <= names
    first = next(
        p for p in listing["partitions"] if p["partition"] == partition_name("postings", month)
    )
    assert (first["first_id"], first["end_id"]) == (month_base(month), month_base(month + 1))


@given(
    st.integers(min_value=0, max_value=12 * 8000 - 1),  # up to December 9999
    st.integers(min_value=0, max_value=2**MONTH_BITS - 1),
)
def test_every_id_of_a_months_range_reads_back_as_that_month(index: int, offset: int) -> None:
    month = month_of_id(month_base(index) + offset)
    assert month_index(month) == index
    name = partition_name("postings", index)
    assert is_partition(name) and name.endswith(f"{month.year:04d}_{month.month:02d}")
    assert month_base(index + 1) - month_base(index) == 2**MONTH_BITS
    assert month_base(index + 1) <= 2**53  # exact in a JSON reader that holds doubles
