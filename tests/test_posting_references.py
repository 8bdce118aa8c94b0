"""Every posting names an existing journal entry and ledger account, on both databases.

SQLite declares the two foreign keys; PostgreSQL checks them once per statement in the
postings' statement trigger (migration 0022) and refuses deleting or renumbering a ledger
account. Each test writes around the ledger's Python checks, as a faulty writer would, and
shows the database refusing the whole statement and keeping what it had.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store.engine import Tx

REFUSED = (psycopg.errors.ForeignKeyViolation, sqlite3.IntegrityError)
COLUMNS = ("id", "entry_id", "account_id", "amount", "currency")
# No ledger account has this id: ids come from blocks far below it. A missing journal entry
# is a fresh id never written (it must fall in a partition that exists).
MISSING = 9_000_000_000_000


def _paid(gateway: Gateway) -> None:
    gateway.open_account("A1")
    gateway.issue_bill(
        "A1",
        bill_no="B1",
        amount=Money(50_000, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 15),
    )
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K1",
            account_no="A1",
            amount=Money(30_000, "CNY"),
            paid_at=datetime(2026, 11, 25, 3, tzinfo=UTC),
        )
    )


def _ledger_accounts(gateway: Gateway) -> list[int]:
    return gateway.store.run(
        lambda tx: [int(r[0]) for r in tx.all("SELECT id FROM ledger_accounts ORDER BY id")],
        write=False,
    )


def _counts(gateway: Gateway) -> tuple[int, int]:
    def work(tx: Tx) -> tuple[int, int]:
        return (
            int(tx.scalar("SELECT COUNT(*) FROM journal_entries")),
            int(tx.scalar("SELECT COUNT(*) FROM postings")),
        )

    return gateway.store.run(work, write=False)


def _write(
    gateway: Gateway,
    entries: Sequence[int],
    legs: Sequence[tuple[int, int, int]],
) -> None:
    """Insert ``entries`` (ids) and balanced ``legs`` ((entry_id, account_id, amount)) in one
    transaction, the postings in one statement (COPY from 64 rows on PostgreSQL)."""

    def work(tx: Tx) -> None:
        ids = tx.ids.take(len(legs))
        tx.insert(
            "journal_entries",
            ("id", "kind", "reference", "memo", "business_date", "posted_at"),
            [
                (e, "test", f"ref-{e}", "memo", tx.day(date(2026, 11, 25)), tx.ts(_NOW))
                for e in entries
            ],
        )
        tx.insert(
            "postings",
            COLUMNS,
            [(i, e, a, amount, "CNY") for i, (e, a, amount) in zip(ids, legs, strict=True)],
        )

    gateway.store.run(work)


_NOW = datetime(2026, 11, 25, 3, tzinfo=UTC)


def _new_entries(gateway: Gateway, n: int) -> list[int]:
    return gateway.store.run(lambda tx: tx.ids.take(n))


def test_a_posting_naming_a_missing_journal_entry_is_refused(gateway: Gateway) -> None:
    _paid(gateway)
    a, b = _ledger_accounts(gateway)[:2]
    (never_written,) = _new_entries(gateway, 1)
    before = _counts(gateway)
    with pytest.raises(REFUSED):
        _write(gateway, [], [(never_written, a, 100), (never_written, b, -100)])
    assert _counts(gateway) == before
    assert gateway.verify().ok


def test_a_posting_naming_a_missing_ledger_account_is_refused(gateway: Gateway) -> None:
    _paid(gateway)
    a = _ledger_accounts(gateway)[0]
    (entry,) = _new_entries(gateway, 1)
    before = _counts(gateway)
    with pytest.raises(REFUSED):
        _write(gateway, [entry], [(entry, a, 100), (entry, MISSING, -100)])
    assert _counts(gateway) == before
    assert gateway.verify().ok


def test_one_bad_posting_among_many_refuses_the_whole_statement(gateway: Gateway) -> None:
    """Seventy postings: on PostgreSQL they go by COPY, one statement all the same."""
    _paid(gateway)
    a, b = _ledger_accounts(gateway)[:2]
    entries = _new_entries(gateway, 35)
    legs = [leg for e in entries for leg in ((e, a, 100), (e, b, -100))]
    legs[-1] = (entries[-1], MISSING, -100)
    before = _counts(gateway)
    with pytest.raises(REFUSED):
        _write(gateway, entries, legs)
    assert _counts(gateway) == before
    legs[-1] = (entries[-1], b, -100)
    _write(gateway, entries, legs)  # the same statement with the account it should name
    assert _counts(gateway) == (before[0] + 35, before[1] + 70)


@pytest.mark.postgres
def test_a_ledger_account_is_never_deleted_nor_renumbered(pg_url: str) -> None:
    with Gateway.open(pg_url) as gateway:
        _paid(gateway)
        account = _ledger_accounts(gateway)[0]
        for sql in (
            "DELETE FROM ledger_accounts WHERE id = :a",
            "UPDATE ledger_accounts SET id = id + 1 WHERE id = :a",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="ledger account"):
                gateway.store.run(lambda tx, sql=sql: tx.execute(sql, {"a": account}))
        # a new code is not a new id: renaming stays allowed
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE ledger_accounts SET code = code || '-renamed' WHERE id = :a",
                {"a": account},
            )
        )
        assert account in _ledger_accounts(gateway)
        assert gateway.verify().ok


@pytest.mark.postgres
def test_postgresql_checks_the_keys_per_statement_not_per_row(pg_url: str) -> None:
    with Gateway.open(pg_url) as gateway:
        keys = gateway.store.run(
            lambda tx: tx.all(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = 'postings'::regclass AND contype = 'f'"
            ),
            write=False,
        )
    assert keys == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(1, 10_000)), min_size=1, max_size=8
    )
)
def test_a_statement_is_written_exactly_when_every_reference_exists(
    gateway: Gateway, spec: list[tuple[bool, bool, int]]
) -> None:
    """Each entry is a balanced pair of postings; each names a real or a missing entry and a
    real or a missing ledger account. The statement is written if and only if all are real."""
    if not _ledger_accounts(gateway):
        _paid(gateway)
    a, b = _ledger_accounts(gateway)[:2]
    entries = _new_entries(gateway, len(spec))
    legs = []
    written = []
    for entry, (entry_real, account_real, amount) in zip(entries, spec, strict=True):
        if entry_real:
            written.append(entry)
        legs += [(entry, a if account_real else MISSING + entry, amount), (entry, b, -amount)]
    before = _counts(gateway)
    if all(entry_real and account_real for entry_real, account_real, _ in spec):
        _write(gateway, written, legs)
        assert _counts(gateway) == (before[0] + len(spec), before[1] + 2 * len(spec))
    else:
        with pytest.raises(REFUSED):
            _write(gateway, written, legs)
        assert _counts(gateway) == before
