"""Ingest throughput: paygate's Gateway beside the plain driver doing the same writes.

Run from the repository root::

    .venv/bin/python bench/ingest.py              # SQLite and PostgreSQL, full counts
    .venv/bin/python bench/ingest.py --quick      # small counts: does the script still work?

Every measured run starts from its own fresh copy of one prepared database (SQLite: a copy of
the file; PostgreSQL: ``CREATE DATABASE … TEMPLATE``): the same migrated schema, the same
accounts, each with one bill that is ten days overdue. paygate and its raw-driver baseline
therefore write into the same tables, indexes and triggers from the same starting state, and
each figure is printed beside its baseline measured in the same invocation, with the ratio.
Each payment pays its bill in full: the late fee is charged and paid, the bill is fully
allocated, the account's arrears are cleared, and two outbox events are written. Every run is
a separate process (``multiprocessing``, spawn); concurrent writers pay distinct accounts.
After each run the rows written are counted and the cached balances are checked against the
postings, so a baseline that wrote less than paygate would be caught. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import multiprocessing
import os
import pstats
import queue
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.engine import make_url

from paygate import Gateway, Money, PaymentIntent, Settings
from paygate.billing import LateFeePolicy, OpenBill, accrue_late_fees
from paygate.models import Category, PayOutcome
from paygate.store import migrate
from paygate.store.schema import SQLITE_TIMESTAMP_FORMAT

CHANNEL = "kiosk"
CURRENCY = "CNY"
PERIOD = "2026-10"
DAYS_OVERDUE = 10
WARMUP = 12  # payments each writer makes before its timer starts
PG_WRITERS = 4
BATCH_FACTOR = 5  # batched runs post this many times --n payments
SEED_ACCOUNT = "3199999999"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLEARING_CODE = f"clearing:{CHANNEL}:{CURRENCY}"
LATE_FEE_CODE = f"revenue:late_fee:{CURRENCY}"
ENERGY_CODE = f"revenue:energy:{CURRENCY}"
IDS_PER_PAYMENT = 9  # payment, entry, 4 postings, 1 allocation, 2 events


# --- the prepared accounts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    """One customer's payment: the bill's principal plus its late fee, in minor units."""

    account_no: str
    txn_id: str
    amount: int


@dataclass(frozen=True)
class Book:
    """The prepared accounts (number, bill principal) and the instant they are all paid."""

    accounts: tuple[tuple[str, int], ...]
    paid_at: datetime
    pay_day: date
    due_date: date


def late_fee(principal: int, since: date, day: date) -> int:
    """Residential late fee: 0.1 % of the principal per day after ``since``, half up, >= 1.00."""
    days = (day - since).days
    if principal <= 0 or days <= 0:
        return 0
    return max((principal * days * 2 + 1000) // 2000, 100)


def make_book(count: int, seed: int = 2026) -> Book:
    """``count`` accounts with one bill each (3.00 to 900.00 yuan), due ten days before today."""
    rng = random.Random(seed)
    zone = ZoneInfo(Settings().timezone)
    paid_at = datetime.now(UTC).replace(microsecond=0)
    pay_day = paid_at.astimezone(zone).date()
    accounts = tuple((f"31{n:08d}", rng.randrange(300, 90_000)) for n in range(count))
    return Book(accounts, paid_at, pay_day, pay_day - timedelta(days=DAYS_OVERDUE))


def payments(book: Book, start: int, count: int) -> tuple[Payment, ...]:
    """The payments that clear accounts ``start`` … ``start + count - 1`` in full."""
    out = []
    for index in range(start, start + count):
        account_no, principal = book.accounts[index]
        fee = late_fee(principal, book.due_date, book.pay_day)
        out.append(Payment(account_no, f"BENCH-{index}", principal + fee))
    return tuple(out)


# --- preparing a database ------------------------------------------------------------------


def _seed(url: str, book: Book) -> None:
    """Create the ledger accounts a payment needs through the Gateway, with one real payment."""
    settings = Settings(database_url=url, sqlite_synchronous="OFF")
    principal = 10_000
    with Gateway.open(settings=settings) as gateway:
        gateway.open_account(SEED_ACCOUNT)
        gateway.issue_bill(
            SEED_ACCOUNT,
            bill_no=f"{SEED_ACCOUNT}-{PERIOD}",
            amount=Money(principal, CURRENCY),
            period=PERIOD,
            due_date=book.due_date,
        )
        fee = late_fee(principal, book.due_date, book.pay_day)
        gateway.pay(
            PaymentIntent(
                channel=CHANNEL,
                channel_txn_id="BENCH-SEED",
                account_no=SEED_ACCOUNT,
                amount=Money(principal + fee, CURRENCY),
                paid_at=book.paid_at,
            )
        )


@dataclass
class _BulkRows:
    """The rows ``open_account`` and ``issue_bill`` would write for every prepared account."""

    ledger_accounts: list[tuple[Any, ...]] = field(default_factory=list)
    ledger_balances: list[tuple[Any, ...]] = field(default_factory=list)
    accounts: list[tuple[Any, ...]] = field(default_factory=list)
    journal_entries: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    bills: list[tuple[Any, ...]] = field(default_factory=list)
    energy_deltas: dict[int, int] = field(default_factory=dict)


_BULK_COLUMNS = {
    "ledger_accounts": ("id", "code", "kind", "currency", "created_at"),
    "ledger_balances": ("account_id", "shard", "balance"),
    "accounts": (
        "id",
        "account_no",
        "name",
        "category",
        "prepaid",
        "protected",
        "currency",
        "supply_state",
        "receivable_account_id",
        "created_at",
    ),
    "journal_entries": ("id", "kind", "reference", "memo", "business_date", "posted_at"),
    "postings": ("id", "entry_id", "account_id", "amount", "currency"),
    "bills": (
        "id",
        "account_id",
        "bill_no",
        "period",
        "amount",
        "currency",
        "due_date",
        "principal_paid",
        "late_fee_charged",
        "late_fee_paid",
        "late_fee_through",
        "entry_id",
        "issued_at",
    ),
}


def _bulk_rows(
    book: Book,
    first_id: int,
    energy: int,
    energy_shards: int,
    ts: Any,
    day: Callable[[date], Any],
    false: Any,
) -> _BulkRows:
    rows = _BulkRows()
    today, due = day(book.pay_day), day(book.due_date)
    for index, (account_no, principal) in enumerate(book.accounts):
        recv, acct, bill, entry, debit, credit = range(
            first_id + 6 * index, first_id + 6 * index + 6
        )
        bill_no = f"{account_no}-{PERIOD}"
        rows.ledger_accounts.append(
            (recv, f"receivable:{account_no}", "customer_receivable", CURRENCY, ts)
        )
        rows.ledger_balances.append((recv, 0, principal))
        rows.accounts.append(
            (acct, account_no, None, "residential", false, false, CURRENCY, "connected", recv, ts)
        )
        rows.journal_entries.append(
            (entry, "bill", f"bill:{bill_no}", f"bill {bill_no} for {PERIOD}", today, ts)
        )
        rows.postings.append((debit, entry, recv, principal, CURRENCY))
        rows.postings.append((credit, entry, energy, -principal, CURRENCY))
        rows.bills.append(
            (bill, acct, bill_no, PERIOD, principal, CURRENCY, due, 0, 0, 0, None, entry, ts)
        )
        shard = acct % energy_shards
        rows.energy_deltas[shard] = rows.energy_deltas.get(shard, 0) - principal
    return rows


def _bulk_sqlite(path: Path, book: Book) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        energy = conn.execute(
            "SELECT id FROM ledger_accounts WHERE code = ?", (ENERGY_CODE,)
        ).fetchone()[0]
        shards = conn.execute(
            "SELECT count(*) FROM ledger_balances WHERE account_id = ?", (energy,)
        ).fetchone()[0]
        want = 6 * len(book.accounts)
        stop = conn.execute(
            "UPDATE id_blocks SET next_id = next_id + ? WHERE name = 'ids' RETURNING next_id",
            (want,),
        ).fetchone()[0]
        now = datetime.now(UTC).strftime(SQLITE_TIMESTAMP_FORMAT)
        rows = _bulk_rows(book, stop - want, energy, shards, now, date.isoformat, 0)
        for table, columns in _BULK_COLUMNS.items():
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                getattr(rows, table),
            )
        conn.executemany(
            "UPDATE ledger_balances SET balance = balance + ? WHERE account_id = ? AND shard = ?",
            [(delta, energy, shard) for shard, delta in sorted(rows.energy_deltas.items())],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _bulk_pg(url: str, book: Book) -> None:
    with psycopg.connect(url) as conn:
        energy = _scalar(conn, "SELECT id FROM ledger_accounts WHERE code = %s", (ENERGY_CODE,))
        shards = _scalar(
            conn, "SELECT count(*) FROM ledger_balances WHERE account_id = %s", (energy,)
        )
        want = 6 * len(book.accounts)
        first = _scalar(conn, "SELECT nextval('paygate_id_seq')")
        # The sequence hands out block starts; the next block must start after ours.
        conn.execute("SELECT setval('paygate_id_seq', %s)", (first + want,))
        now = datetime.now(UTC)
        rows = _bulk_rows(book, first, energy, shards, now, _same, False)
        with conn.cursor() as cur:
            for table, columns in _BULK_COLUMNS.items():
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in getattr(rows, table):
                        copy.write_row(row)
            cur.executemany(
                "UPDATE ledger_balances SET balance = balance + %s "
                "WHERE account_id = %s AND shard = %s",
                [(delta, energy, shard) for shard, delta in sorted(rows.energy_deltas.items())],
            )


def _check_prepared(url: str, book: Book) -> None:
    """Seal what was prepared, verify the ledger, and check paygate sees the expected arrears."""
    with Gateway.open(settings=Settings(database_url=url, sqlite_synchronous="OFF")) as gateway:
        gateway.seal()
        report = gateway.verify()
        if not report.ok:
            raise RuntimeError(f"the prepared ledger does not verify: {report.findings[:3]}")
        for account_no, principal in (book.accounts[0], book.accounts[-1]):
            status = gateway.account_status(account_no, as_of=book.pay_day)
            fee = late_fee(principal, book.due_date, book.pay_day)
            paygate_fee = accrue_late_fees(
                [OpenBill(0, "b", book.due_date, principal)],
                Category.RESIDENTIAL,
                book.pay_day,
                LateFeePolicy(),
            ).total
            if status.arrears.minor != principal + fee or paygate_fee != fee:
                raise RuntimeError(
                    f"account {account_no}: paygate says arrears {status.arrears}, late fee "
                    f"{paygate_fee}; the benchmark expected {principal + fee} and {fee}"
                )


def prepare_sqlite(path: Path, book: Book) -> None:
    """A migrated SQLite database holding ``book``, checkpointed, ready to be copied."""
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    _seed(url, book)
    _bulk_sqlite(path, book)
    _check_prepared(url, book)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def prepare_pg(url: str, book: Book) -> None:
    """A migrated PostgreSQL database holding ``book``, vacuumed and analyzed."""
    migrate.upgrade(url)
    _seed(url, book)
    _bulk_pg(url, book)
    _check_prepared(url, book)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def _scalar(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


# --- the raw-driver baselines ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LedgerIds:
    clearing: int
    clearing_shards: int
    late_fee: int
    late_fee_shards: int


@dataclass(slots=True)
class _Planned:
    """The rows one payment writes, decided from what was read under the account lock."""

    entry: tuple[Any, ...]
    postings: list[tuple[Any, ...]]
    deltas: list[tuple[int, int, int]]  # (delta, account_id, shard), in (account, shard) order
    payment: tuple[Any, ...]
    allocation: tuple[Any, ...]
    events: list[tuple[Any, ...]]
    bill: tuple[Any, ...]  # principal_paid, late_fee_charged, late_fee_paid, through, id


def _money(minor: int) -> dict[str, Any]:
    return {"minor": minor, "currency": CURRENCY}


def _read_day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _plan(
    p: Payment,
    paid_at: datetime,
    zone: ZoneInfo,
    account: Sequence[Any],
    balance: int,
    bills: Sequence[Sequence[Any]],
    ids: Sequence[int],
    ledger: _LedgerIds,
    ts: Callable[[datetime], Any],
    day: Callable[[date], Any],
) -> _Planned:
    """Late fee, allocation (late fee first), receipt and events of a one-bill payment."""
    acct_id, account_no, supply_state, recv = account[0], account[1], account[7], account[8]
    if len(bills) != 1:
        raise RuntimeError(f"account {account_no} has {len(bills)} open bills, expected one")
    bill_id, bill_no, due, amount, paid, charged, fee_paid, through = bills[0]
    payment_id, entry_id, p1, p2, p3, p4, alloc_id, ev1, ev2 = ids
    pay_day = paid_at.astimezone(zone).date()
    principal_due = amount - paid
    fee = late_fee(principal_due, _read_day(through or due), pay_day)
    fee_part = min(p.amount, charged + fee - fee_paid)
    principal_part = min(p.amount - fee_part, principal_due)
    credit = p.amount - fee_part - principal_part
    arrears_before = principal_due + charged + fee - fee_paid
    arrears_after = arrears_before - fee_part - principal_part
    balance_after = balance + fee - p.amount
    now = datetime.now(UTC)
    stamp = ts(now)
    legs = [(p1, entry_id, ledger.clearing, p.amount), (p2, entry_id, recv, -p.amount)]
    deltas = {
        (recv, 0): fee - p.amount,
        (ledger.clearing, acct_id % ledger.clearing_shards): p.amount,
    }
    if fee:
        legs += [(p3, entry_id, recv, fee), (p4, entry_id, ledger.late_fee, -fee)]
        deltas[(ledger.late_fee, acct_id % ledger.late_fee_shards)] = -fee
    paid_iso = paid_at.astimezone(UTC)
    terminal = ""  # kiosks name their terminal; these payments carry none (NULL)
    stamp_utc = paid_iso.isoformat(timespec="microseconds")
    canonical = f"{account_no}|{p.amount}|{CURRENCY}|{stamp_utc}|{terminal}"
    receipt = {
        "payment_id": payment_id,
        "channel": CHANNEL,
        "channel_txn_id": p.txn_id,
        "account_no": account_no,
        "amount": _money(p.amount),
        "paid_at": paid_at.isoformat(),
        "business_date": pay_day.isoformat(),
        "replayed": False,
        "late_fee": _money(fee),
        "allocations": [
            {"bill_no": bill_no, "late_fee": _money(fee_part), "principal": _money(principal_part)}
        ],
        "credit": _money(credit),
        "balance_after": _money(balance_after),
        "arrears_after": _money(arrears_after),
        "arrears_cleared": arrears_before > 0 and arrears_after == 0,
        "reconnection_order_id": None,
    }
    events = [
        (
            ev1,
            "payment.posted",
            account_no,
            {
                "payment_id": payment_id,
                "channel": CHANNEL,
                "channel_txn_id": p.txn_id,
                "amount": p.amount,
                "currency": CURRENCY,
                "paid_at": paid_at.isoformat(),
                "late_fee": fee,
                "balance_after": balance_after,
                "arrears_after": arrears_after,
            },
        )
    ]
    if receipt["arrears_cleared"]:
        events.append(
            (
                ev2,
                "arrears.cleared",
                account_no,
                {"payment_id": payment_id, "supply_state": supply_state},
            )
        )
    return _Planned(
        entry=(
            entry_id,
            "payment",
            f"payment:{CHANNEL}:{p.txn_id}",
            f"{CHANNEL} payment for {account_no}",
            day(pay_day),
            stamp,
        ),
        postings=[(*leg, CURRENCY) for leg in legs],
        deltas=[(d, a, s) for (a, s), d in sorted(deltas.items()) if d],
        payment=(
            payment_id,
            CHANNEL,
            p.txn_id,
            acct_id,
            p.amount,
            CURRENCY,
            ts(paid_at),
            day(pay_day),
            hashlib.sha256(canonical.encode()).hexdigest(),
            None,
            entry_id,
            fee,
            credit,
            "posted",
            json.dumps(receipt, separators=(",", ":")),
            stamp,
        ),
        allocation=(alloc_id, payment_id, bill_id, "payment", fee_part, principal_part, stamp),
        events=[
            (
                event_id,
                kind,
                account_no,
                json.dumps(
                    {
                        "event_id": event_id,
                        "type": kind,
                        "account_no": account_no,
                        "occurred_at": now.isoformat(),
                        "data": data,
                    },
                    separators=(",", ":"),
                ),
                stamp,
                stamp,
                0,
            )
            for event_id, kind, account_no, data in events
        ],
        bill=(paid + principal_part, charged + fee, fee_paid + fee_part, day(pay_day), bill_id),
    )


_ACCOUNT_COLUMNS = (
    "id, account_no, name, category, prepaid, protected, currency, supply_state, "
    "receivable_account_id"
)
_BILL_COLUMNS = (
    "id, bill_no, due_date, amount, principal_paid, late_fee_charged, late_fee_paid, "
    "late_fee_through"
)
_OPEN = "(principal_paid < amount OR late_fee_paid < late_fee_charged)"


class RawSqlite:
    """sqlite3 with the Gateway's pragmas, doing a payment's statements one by one."""

    ACCOUNT = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_no = ?"
    DUPLICATE = "SELECT fingerprint, receipt FROM payments WHERE channel = ? AND channel_txn_id = ?"
    BALANCE = "SELECT SUM(balance) FROM ledger_balances WHERE account_id = ?"
    BILLS = (
        f"SELECT {_BILL_COLUMNS} FROM bills WHERE account_id = ? AND {_OPEN} "
        "ORDER BY due_date, bill_no"
    )
    IDS = "UPDATE id_blocks SET next_id = next_id + ? WHERE name = 'ids' RETURNING next_id"
    ENTRY = (
        "INSERT INTO journal_entries (id, kind, reference, memo, business_date, posted_at) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    POSTING = (
        "INSERT INTO postings (id, entry_id, account_id, amount, currency) VALUES (?, ?, ?, ?, ?)"
    )
    SHARD = "UPDATE ledger_balances SET balance = balance + ? WHERE account_id = ? AND shard = ?"
    PAYMENT = (
        "INSERT INTO payments (id, channel, channel_txn_id, account_id, amount, currency, "
        "paid_at, business_date, fingerprint, terminal_id, entry_id, late_fee, unallocated, "
        "status, receipt, posted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    ALLOCATION = (
        "INSERT INTO allocations (id, payment_id, bill_id, source, late_fee, principal, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    EVENT = (
        "INSERT INTO outbox (id, event_type, account_no, payload, created_at, available_at, "
        "attempts) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    BILL = (
        "UPDATE bills SET principal_paid = ?, late_fee_charged = ?, late_fee_paid = ?, "
        "late_fee_through = ? WHERE id = ?"
    )

    def __init__(self, path: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=60000"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.zone = ZoneInfo(Settings().timezone)
        self.ledger = _LedgerIds(*self._ledger(CLEARING_CODE), *self._ledger(LATE_FEE_CODE))
        self._ids: Iterator[int] = iter(())

    def _ledger(self, code: str) -> tuple[int, int]:
        (account_id,) = self.conn.execute(
            "SELECT id FROM ledger_accounts WHERE code = ?", (code,)
        ).fetchone()
        (shards,) = self.conn.execute(
            "SELECT count(*) FROM ledger_balances WHERE account_id = ?", (account_id,)
        ).fetchone()
        return int(account_id), int(shards)

    @staticmethod
    def _ts(value: datetime) -> str:
        return value.astimezone(UTC).strftime(SQLITE_TIMESTAMP_FORMAT)

    def run(self, items: Sequence[Payment], paid_at: datetime, chunk: int) -> None:
        """Pay ``items``, ``chunk`` payments per transaction (1: a commit each)."""
        conn = self.conn
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            conn.execute("BEGIN IMMEDIATE")
            want = IDS_PER_PAYMENT * len(part)
            (stop,) = conn.execute(self.IDS, (want,)).fetchone()
            self._ids = iter(range(stop - want, stop))
            for p in part:
                self.pay(p, paid_at)
            conn.execute("COMMIT")

    def pay(self, p: Payment, paid_at: datetime) -> None:
        """A payment's statements inside the open transaction."""
        conn = self.conn
        account = conn.execute(self.ACCOUNT, (p.account_no,)).fetchone()
        if account is None:
            raise LookupError(f"no account {p.account_no}")
        if conn.execute(self.DUPLICATE, (CHANNEL, p.txn_id)).fetchone() is not None:
            raise RuntimeError(f"payment {p.txn_id} was posted before")
        (balance,) = conn.execute(self.BALANCE, (account[8],)).fetchone()
        bills = conn.execute(self.BILLS, (account[0],)).fetchall()
        ids = [next(self._ids) for _ in range(IDS_PER_PAYMENT)]
        plan = _plan(
            p,
            paid_at,
            self.zone,
            account,
            balance,
            bills,
            ids,
            self.ledger,
            self._ts,
            date.isoformat,
        )
        conn.execute(self.ENTRY, plan.entry)
        conn.executemany(self.POSTING, plan.postings)
        conn.executemany(self.SHARD, plan.deltas)
        conn.execute(self.PAYMENT, plan.payment)
        conn.execute(self.ALLOCATION, plan.allocation)
        conn.executemany(self.EVENT, plan.events)
        conn.execute(self.BILL, plan.bill)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class _PgIds:
    """Ids from the Gateway's sequence, a block of ``increment`` per nextval, like the Store."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.block = int(
            _scalar(
                conn,
                "SELECT increment_by FROM pg_sequences WHERE sequencename = 'paygate_id_seq'",
            )
        )
        conn.commit()
        self._next = 0
        self._stop = 0

    def take(self, n: int) -> list[int]:
        """``n`` fresh ids: one nextval round trip per block used up."""
        out: list[int] = []
        while len(out) < n:
            if self._next >= self._stop:
                self._next = int(_scalar(self.conn, "SELECT nextval('paygate_id_seq')"))
                self._stop = self._next + self.block
            take = min(n - len(out), self._stop - self._next)
            out.extend(range(self._next, self._next + take))
            self._next += take
        return out

    def take_many(self, n: int) -> list[int]:
        """``n`` fresh ids in one round trip: as many nextval blocks as needed at once."""
        blocks = -(-n // self.block)
        starts = self.conn.execute(
            "SELECT nextval('paygate_id_seq') FROM generate_series(1, %s)", (blocks,)
        ).fetchall()
        out = [i for (start,) in starts for i in range(start, start + self.block)]
        return out[:n]


class RawPgCommit:
    """psycopg, one transaction per payment, every statement its own round trip."""

    ACCOUNT = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_no = %s FOR UPDATE"
    DUPLICATE = RawSqlite.DUPLICATE.replace("?", "%s")
    BALANCE = RawSqlite.BALANCE.replace("?", "%s")
    BILLS = RawSqlite.BILLS.replace("?", "%s")
    ENTRY = RawSqlite.ENTRY.replace("?", "%s")
    SHARD = RawSqlite.SHARD.replace("?", "%s")
    PAYMENT = RawSqlite.PAYMENT.replace("?", "%s")
    ALLOCATION = RawSqlite.ALLOCATION.replace("?", "%s")
    BILL = RawSqlite.BILL.replace("?", "%s")

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        self.zone = ZoneInfo(Settings().timezone)
        self.ids = _PgIds(self.conn)
        self.ledger = _LedgerIds(
            *_pg_ledger(self.conn, CLEARING_CODE), *_pg_ledger(self.conn, LATE_FEE_CODE)
        )
        self.conn.commit()

    @staticmethod
    def _values(table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[Any]]:
        one = "(" + ", ".join("%s" for _ in rows[0]) + ")"
        sql = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join(one for _ in rows)
        return sql, [value for row in rows for value in row]

    def run(self, items: Sequence[Payment], paid_at: datetime) -> None:
        """Pay ``items``, each in its own transaction."""
        conn = self.conn
        for p in items:
            account = conn.execute(self.ACCOUNT, (p.account_no,)).fetchone()
            if account is None:
                raise LookupError(f"no account {p.account_no}")
            if conn.execute(self.DUPLICATE, (CHANNEL, p.txn_id)).fetchone() is not None:
                raise RuntimeError(f"payment {p.txn_id} was posted before")
            balance = _scalar(conn, self.BALANCE, (account[8],))
            bills = conn.execute(self.BILLS, (account[0],)).fetchall()
            ids = self.ids.take(IDS_PER_PAYMENT)
            plan = _plan(
                p, paid_at, self.zone, account, int(balance), bills, ids, self.ledger, _same, _same
            )
            conn.execute(self.ENTRY, plan.entry)
            conn.execute(
                *self._values(
                    "postings", "id, entry_id, account_id, amount, currency", plan.postings
                )
            )
            for delta in plan.deltas:
                conn.execute(self.SHARD, delta)
            conn.execute(self.PAYMENT, plan.payment)
            conn.execute(self.ALLOCATION, plan.allocation)
            conn.execute(
                *self._values(
                    "outbox",
                    "id, event_type, account_no, payload, created_at, available_at, attempts",
                    plan.events,
                )
            )
            conn.execute(self.BILL, plan.bill)
            conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _same(value: Any) -> Any:
    return value


def _pg_ledger(conn: psycopg.Connection[Any], code: str) -> tuple[int, int]:
    account_id = int(_scalar(conn, "SELECT id FROM ledger_accounts WHERE code = %s", (code,)))
    shards = int(
        _scalar(conn, "SELECT count(*) FROM ledger_balances WHERE account_id = %s", (account_id,))
    )
    return account_id, shards


class RawPgSet:
    """psycopg, set-based: COPY a chunk into a staging table, then one statement per table."""

    STAGE = """
        CREATE TEMP TABLE stage (
            seq integer NOT NULL, channel text NOT NULL, txn text NOT NULL,
            account_no text NOT NULL, amount bigint NOT NULL, paid_at timestamptz NOT NULL,
            pay_day date NOT NULL, business_date date NOT NULL, fingerprint text NOT NULL,
            payment_id bigint NOT NULL, entry_id bigint NOT NULL, alloc_id bigint NOT NULL,
            ev_posted bigint NOT NULL, ev_cleared bigint NOT NULL,
            p1 bigint NOT NULL, p2 bigint NOT NULL, p3 bigint NOT NULL, p4 bigint NOT NULL,
            account_id bigint, recv_id bigint, supply_state text, bill_id bigint, bill_no text,
            principal_due bigint, fee bigint, fee_part bigint, principal_part bigint,
            balance_after bigint, arrears_before bigint, arrears_after bigint
        ) ON COMMIT DELETE ROWS
    """
    COPY = (
        "COPY stage (seq, channel, txn, account_no, amount, paid_at, pay_day, business_date, "
        "fingerprint, payment_id, entry_id, alloc_id, ev_posted, ev_cleared, p1, p2, p3, p4) "
        "FROM STDIN"
    )
    LOCK = """
        WITH locked AS (
            SELECT a.id, a.account_no, a.receivable_account_id, a.supply_state FROM accounts a
             WHERE a.account_no IN (SELECT account_no FROM stage) ORDER BY a.id FOR UPDATE
        )
        UPDATE stage s SET account_id = l.id, recv_id = l.receivable_account_id,
               supply_state = l.supply_state
          FROM locked l WHERE l.account_no = s.account_no
    """
    DUPLICATES = (
        "SELECT count(*) FROM payments p JOIN stage s "
        "ON p.channel = s.channel AND p.channel_txn_id = s.txn"
    )
    DECIDE = """
        UPDATE stage s SET bill_id = x.bill_id, bill_no = x.bill_no,
               principal_due = x.principal_due, fee = x.fee, fee_part = x.fee_part,
               principal_part = LEAST(s.amount - x.fee_part, x.principal_due),
               balance_after = x.balance + x.fee - s.amount,
               arrears_before = x.principal_due + x.fee_due,
               arrears_after = x.principal_due + x.fee_due - x.fee_part
                               - LEAST(s.amount - x.fee_part, x.principal_due)
          FROM (
            SELECT t.seq, t.bill_id, t.bill_no, t.principal_due, t.fee, t.balance,
                   t.fee_due, LEAST(t.amount, t.fee_due) AS fee_part
              FROM (
                SELECT s2.seq, s2.amount, b.id AS bill_id, b.bill_no,
                       b.amount - b.principal_paid AS principal_due, f.fee,
                       b.late_fee_charged + f.fee - b.late_fee_paid AS fee_due,
                       (SELECT SUM(lb.balance) FROM ledger_balances lb
                         WHERE lb.account_id = s2.recv_id) AS balance
                  FROM stage s2
                  JOIN bills b ON b.account_id = s2.account_id
                   AND (b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged)
                 CROSS JOIN LATERAL (
                    SELECT CASE WHEN d.days > 0 AND b.amount > b.principal_paid
                           THEN GREATEST(((b.amount - b.principal_paid) * d.days * 2 + 1000)
                                         / 2000, 100)
                           ELSE 0 END AS fee
                      FROM (SELECT s2.pay_day - COALESCE(b.late_fee_through, b.due_date)
                                   AS days) d
                 ) f
              ) t
          ) x
         WHERE x.seq = s.seq
    """
    ENTRIES = """
        INSERT INTO journal_entries (id, kind, reference, memo, business_date, posted_at)
        SELECT entry_id, 'payment', 'payment:' || channel || ':' || txn,
               channel || ' payment for ' || account_no, business_date, %(now)s
          FROM stage ORDER BY seq
    """
    POSTINGS = """
        INSERT INTO postings (id, entry_id, account_id, amount, currency)
        SELECT v.id, s.entry_id, v.account_id, v.amount, %(cur)s::text
          FROM stage s CROSS JOIN LATERAL (VALUES
               (s.p1, %(clearing)s::bigint, s.amount), (s.p2, s.recv_id, -s.amount),
               (s.p3, s.recv_id, s.fee), (s.p4, %(late_fee)s::bigint, -s.fee)
          ) v(id, account_id, amount)
         WHERE v.amount <> 0
         ORDER BY s.seq, v.id
    """
    BALANCES = """
        UPDATE ledger_balances lb SET balance = lb.balance + d.delta
          FROM (
            SELECT account_id, shard, SUM(delta) AS delta FROM (
                SELECT recv_id, 0, fee - amount FROM stage
                UNION ALL SELECT %(clearing)s::bigint, account_id %% %(clearing_shards)s::bigint,
                                 amount FROM stage
                UNION ALL SELECT %(late_fee)s::bigint, account_id %% %(late_fee_shards)s::bigint,
                                 -fee FROM stage
            ) m(account_id, shard, delta)
             GROUP BY account_id, shard
          ) d
         WHERE lb.account_id = d.account_id AND lb.shard = d.shard AND d.delta <> 0
    """
    PAYMENTS = """
        INSERT INTO payments (id, channel, channel_txn_id, account_id, amount, currency, paid_at,
               business_date, fingerprint, terminal_id, entry_id, late_fee, unallocated, status,
               receipt, posted_at)
        SELECT payment_id, channel, txn, account_id, amount, %(cur)s::text, paid_at, business_date,
               fingerprint, NULL, entry_id, fee, amount - fee_part - principal_part, 'posted',
               json_build_object(
                   'payment_id', payment_id, 'channel', channel, 'channel_txn_id', txn,
                   'account_no', account_no,
                   'amount', json_build_object('minor', amount, 'currency', %(cur)s::text),
                   'paid_at', paid_at, 'business_date', business_date, 'replayed', false,
                   'late_fee', json_build_object('minor', fee, 'currency', %(cur)s::text),
                   'allocations', json_build_array(json_build_object(
                       'bill_no', bill_no,
                       'late_fee', json_build_object('minor', fee_part, 'currency', %(cur)s::text),
                       'principal', json_build_object('minor', principal_part,
                                                      'currency', %(cur)s::text))),
                   'credit', json_build_object('minor', amount - fee_part - principal_part,
                                               'currency', %(cur)s::text),
                   'balance_after', json_build_object('minor', balance_after,
                                                      'currency', %(cur)s::text),
                   'arrears_after', json_build_object('minor', arrears_after,
                                                      'currency', %(cur)s::text),
                   'arrears_cleared', arrears_before > 0 AND arrears_after = 0,
                   'reconnection_order_id', NULL)::text,
               %(now)s
          FROM stage ORDER BY seq
    """
    ALLOCATIONS = """
        INSERT INTO allocations (id, payment_id, bill_id, source, late_fee, principal, created_at)
        SELECT alloc_id, payment_id, bill_id, 'payment', fee_part, principal_part, %(now)s
          FROM stage WHERE fee_part + principal_part > 0 ORDER BY seq
    """
    EVENTS = """
        INSERT INTO outbox (id, event_type, account_no, payload, created_at, available_at,
               attempts)
        SELECT ev_posted, 'payment.posted', account_no,
               json_build_object('event_id', ev_posted, 'type', 'payment.posted',
                   'account_no', account_no, 'occurred_at', %(now)s,
                   'data', json_build_object('payment_id', payment_id, 'channel', channel,
                       'channel_txn_id', txn, 'amount', amount, 'currency', %(cur)s::text,
                       'paid_at', paid_at, 'late_fee', fee, 'balance_after', balance_after,
                       'arrears_after', arrears_after))::text,
               %(now)s, %(now)s, 0
          FROM stage
        UNION ALL
        SELECT ev_cleared, 'arrears.cleared', account_no,
               json_build_object('event_id', ev_cleared, 'type', 'arrears.cleared',
                   'account_no', account_no, 'occurred_at', %(now)s,
                   'data', json_build_object('payment_id', payment_id,
                                             'supply_state', supply_state))::text,
               %(now)s, %(now)s, 0
          FROM stage WHERE arrears_before > 0 AND arrears_after = 0
    """
    BILLS = """
        UPDATE bills b SET principal_paid = b.principal_paid + s.principal_part,
               late_fee_charged = b.late_fee_charged + s.fee,
               late_fee_paid = b.late_fee_paid + s.fee_part, late_fee_through = s.pay_day
          FROM stage s WHERE b.id = s.bill_id
    """

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        self.zone = ZoneInfo(Settings().timezone)
        self.ids = _PgIds(self.conn)
        clearing, clearing_shards = _pg_ledger(self.conn, CLEARING_CODE)
        fee_account, fee_shards = _pg_ledger(self.conn, LATE_FEE_CODE)
        self.params: dict[str, Any] = {
            "cur": CURRENCY,
            "clearing": clearing,
            "clearing_shards": clearing_shards,
            "late_fee": fee_account,
            "late_fee_shards": fee_shards,
        }
        self.conn.execute(self.STAGE)
        self.conn.commit()

    def run(self, items: Sequence[Payment], paid_at: datetime, chunk: int) -> None:
        """Pay ``items`` in transactions of ``chunk`` payments."""
        for start in range(0, len(items), chunk):
            self._chunk(items[start : start + chunk], paid_at)

    def _chunk(self, part: Sequence[Payment], paid_at: datetime) -> None:
        conn = self.conn
        ids = iter(self.ids.take_many(IDS_PER_PAYMENT * len(part)))
        pay_day = paid_at.astimezone(self.zone).date()
        stamp = paid_at.astimezone(UTC).isoformat(timespec="microseconds")
        with conn.cursor() as cur:
            with cur.copy(self.COPY) as copy:
                for seq, p in enumerate(part):
                    canonical = f"{p.account_no}|{p.amount}|{CURRENCY}|{stamp}|"
                    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
                    head = (seq, CHANNEL, p.txn_id, p.account_no, p.amount, paid_at, pay_day)
                    copy.write_row(
                        (*head, pay_day, fingerprint, *(next(ids) for _ in range(IDS_PER_PAYMENT)))
                    )
            if cur.execute(self.LOCK).rowcount != len(part):
                raise LookupError("a payment names an unknown account")
            if _scalar(conn, self.DUPLICATES):
                raise RuntimeError("a payment of the chunk was posted before")
            cur.execute(self.DECIDE)
            params = {**self.params, "now": datetime.now(UTC)}
            for statement in (
                self.ENTRIES,
                self.POSTINGS,
                self.BALANCES,
                self.PAYMENTS,
                self.ALLOCATIONS,
                self.EVENTS,
                self.BILLS,
            ):
                cur.execute(statement, params)
        conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# --- measured runs, each in its own process --------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One writer's part of a measured run."""

    kind: str  # gateway-pay, gateway-pay-many, sqlite, pg-commit, pg-set
    url: str
    warmup: tuple[Payment, ...]
    payments: tuple[Payment, ...]
    paid_at: datetime
    synchronous: str = "FULL"
    chunk: int = 1
    profile: bool = False


@dataclass(frozen=True)
class Result:
    """What a writer did: its timer's start and end (a clock shared by processes)."""

    start: float = 0.0
    end: float = 0.0
    count: int = 0
    error: str | None = None
    profile: str | None = None
    client_cpu: float = 0.0  # this process's CPU seconds over the timed part
    server_cpu: float | None = None  # the database's backends' (PostgreSQL on this host)


def _intents(job: Job, items: Sequence[Payment]) -> list[PaymentIntent]:
    return [
        PaymentIntent(
            channel=CHANNEL,
            channel_txn_id=p.txn_id,
            account_no=p.account_no,
            amount=Money(p.amount, CURRENCY),
            paid_at=job.paid_at,
        )
        for p in items
    ]


def _all_posted(outcomes: Sequence[PayOutcome]) -> None:
    for outcome in outcomes:
        if outcome.status != "posted":
            raise RuntimeError(f"item {outcome.index} {outcome.status}: {outcome.error}")


def _backends(url: str) -> list[int]:
    """The process ids of the server backends connected to ``url``'s database (the writer's
    own connections, opened by its warm-up), not counting the connection that asks."""
    if url.startswith("sqlite"):
        return []
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU of ``pids`` from /proc: None when the server is not on this host."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def _timed(job: Job, barrier: Barrier, body: Callable[[], None]) -> Result:
    pids = _backends(job.url)
    barrier.wait(timeout=900)
    profiler = cProfile.Profile() if job.profile else None
    server_before = _cpu_seconds(pids) if pids else None
    client_before = time.process_time()
    start = time.perf_counter()
    if profiler is None:
        body()
    else:
        profiler.runcall(body)
    end = time.perf_counter()
    client = time.process_time() - client_before
    server_after = _cpu_seconds(pids) if pids else None
    server = None if server_before is None or server_after is None else server_after - server_before
    text = None if profiler is None else _profile_text(profiler)
    return Result(start, end, len(job.payments), profile=text, client_cpu=client, server_cpu=server)


def _profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    out.write("top 15 by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(15)
    out.write("top 15 by own time:\n")
    stats.sort_stats("tottime").print_stats(15)
    lines = [
        line
        for line in out.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith(("Ordered by", "List reduced"))
    ]
    return "\n".join(lines)


def _run_gateway(job: Job, barrier: Barrier) -> Result:
    settings = Settings(database_url=job.url, sqlite_synchronous=job.synchronous)
    if job.kind == "gateway-pay-many":
        settings = settings.model_copy(update={"pay_many_chunk": job.chunk})
    warm, timed = _intents(job, job.warmup), _intents(job, job.payments)
    gateway = Gateway.open(settings=settings)
    try:
        if job.kind == "gateway-pay":
            for intent in warm:
                gateway.pay(intent)

            def body() -> None:
                for intent in timed:
                    gateway.pay(intent)

        else:
            _all_posted(gateway.pay_many(warm))

            def body() -> None:
                _all_posted(gateway.pay_many(timed))

        return _timed(job, barrier, body)
    finally:
        gateway.close()


def _run_sqlite(job: Job, barrier: Barrier) -> Result:
    raw = RawSqlite(job.url.removeprefix("sqlite:///"), job.synchronous)
    try:
        raw.run(job.warmup, job.paid_at, job.chunk)
        return _timed(job, barrier, lambda: raw.run(job.payments, job.paid_at, job.chunk))
    finally:
        raw.close()


def _run_pg_commit(job: Job, barrier: Barrier) -> Result:
    raw = RawPgCommit(job.url)
    try:
        raw.run(job.warmup, job.paid_at)
        return _timed(job, barrier, lambda: raw.run(job.payments, job.paid_at))
    finally:
        raw.close()


def _run_pg_set(job: Job, barrier: Barrier) -> Result:
    raw = RawPgSet(job.url)
    try:
        raw.run(job.warmup, job.paid_at, job.chunk)
        return _timed(job, barrier, lambda: raw.run(job.payments, job.paid_at, job.chunk))
    finally:
        raw.close()


_RUNNERS: dict[str, Callable[[Job, Barrier], Result]] = {
    "gateway-pay": _run_gateway,
    "gateway-pay-many": _run_gateway,
    "sqlite": _run_sqlite,
    "pg-commit": _run_pg_commit,
    "pg-set": _run_pg_set,
}


def _worker(job: Job, barrier: Barrier, results: Queue[Result]) -> None:
    try:
        results.put(_RUNNERS[job.kind](job, barrier))
    except BaseException as exc:
        barrier.abort()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        results.put(Result(error=f"{type(exc).__name__}: {first_line}"))


@dataclass(frozen=True)
class Measurement:
    """Payments per second over all writers, from the first start to the last end."""

    rate: float = 0.0
    error: str | None = None
    profile: str | None = None
    # CPU per payment in seconds, (client, server), for a run of one writer: the machine's
    # load moves it much less than the rate. Server is None off this host or on SQLite.
    cpu: tuple[float, float | None] | None = None


def measure(ctx: SpawnContext, jobs: Sequence[Job]) -> Measurement:
    """Run ``jobs`` as concurrent processes started together; their combined throughput."""
    barrier = ctx.Barrier(len(jobs))
    results: Queue[Result] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, barrier, results)) for job in jobs]
    for proc in procs:
        proc.start()
    got: list[Result] = []
    while len(got) < len(procs):
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if not any(proc.is_alive() for proc in procs) and results.empty():
                got.append(Result(error="a writer process died without a result"))
                break
    for proc in procs:
        proc.join()
    errors = [r.error for r in got if r.error]
    if errors:
        return Measurement(error=errors[0])
    elapsed = max(r.end for r in got) - min(r.start for r in got)
    cpu = None
    if len(got) == 1 and got[0].count:
        one = got[0]
        server = None if one.server_cpu is None else one.server_cpu / one.count
        cpu = (one.client_cpu / one.count, server)
    return Measurement(sum(r.count for r in got) / elapsed, profile=got[0].profile, cpu=cpu)


# --- databases for the runs -------------------------------------------------------------------


class Databases:
    """The prepared template of each engine and fresh copies of it, all removed at the end."""

    def __init__(self, workdir: Path, pg_admin: str | None) -> None:
        self.workdir = workdir
        self.pg_admin = pg_admin
        self.prefix = f"paygate_bench_{os.getpid()}"
        self._pg_made: list[str] = []
        self._copies = 0

    # SQLite
    @property
    def sqlite_template(self) -> Path:
        """The prepared SQLite file."""
        return self.workdir / "template.db"

    def sqlite_copy(self) -> str:
        """A fresh copy of the SQLite template, flushed to disk; its URL."""
        self._copies += 1
        path = self.workdir / f"run{self._copies}.db"
        shutil.copyfile(self.sqlite_template, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return f"sqlite:///{path}"

    def sqlite_drop(self, url: str) -> None:
        """Delete a copy and its WAL files."""
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)

    # PostgreSQL
    def pg_url(self, name: str) -> str:
        """The URL of database ``name`` on the admin connection's server."""
        assert self.pg_admin is not None
        url = make_url(self.pg_admin).set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        """Run ``sql`` on the admin connection, outside any transaction."""
        assert self.pg_admin is not None
        admin = make_url(self.pg_admin).set(drivername="postgresql")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(sql)

    @property
    def pg_template(self) -> str:
        """The name of the prepared PostgreSQL database."""
        return f"{self.prefix}_template"

    def pg_create_template(self) -> str:
        """Create the (empty) template database; its URL."""
        self.admin(f"CREATE DATABASE {self.pg_template}")
        self._pg_made.append(self.pg_template)
        return self.pg_url(self.pg_template)

    def pg_copy(self) -> str:
        """A fresh copy of the template, with a checkpoint so that the run starts clean."""
        self._copies += 1
        name = f"{self.prefix}_run{self._copies}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self.pg_template} STRATEGY file_copy")
        self._pg_made.append(name)
        self.admin("CHECKPOINT")
        return self.pg_url(name)

    def pg_drop(self, url: str) -> None:
        """Drop a copy."""
        name = make_url(url).database
        assert name is not None
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self._pg_made:
            self._pg_made.remove(name)

    def close(self) -> None:
        """Drop every database made and delete the work directory."""
        for name in list(self._pg_made):
            try:
                self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except psycopg.Error as exc:
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)


_TALLY_TABLES = ("journal_entries", "postings", "payments", "allocations", "outbox")


def tally(url: str) -> dict[str, int]:
    """Rows per table, open bills, unallocated money and balance shards that disagree with the
    postings: what a run left behind, to compare paygate's database with its baseline's."""
    queries = {table: f"SELECT count(*) FROM {table}" for table in _TALLY_TABLES}
    queries["open bills"] = f"SELECT count(*) FROM bills WHERE {_OPEN}"
    queries["unallocated"] = "SELECT COALESCE(SUM(unallocated), 0) FROM payments"
    queries["balance mismatches"] = (
        "SELECT count(*) FROM (SELECT account_id, SUM(balance) AS b FROM ledger_balances "
        "GROUP BY account_id) c LEFT JOIN (SELECT account_id, SUM(amount) AS s FROM postings "
        "GROUP BY account_id) p ON p.account_id = c.account_id WHERE c.b <> COALESCE(p.s, 0)"
    )
    credit = (
        "SELECT channel_txn_id, amount, late_fee, unallocated FROM payments "
        "WHERE unallocated > 0 ORDER BY id LIMIT 3"
    )
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            counts = {k: int(conn.execute(q).fetchone()[0]) for k, q in queries.items()}
            sample = conn.execute(credit).fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as pg:
            counts = {k: int(_scalar(pg, q)) for k, q in queries.items()}
            sample = pg.execute(credit).fetchall()
    if sample:
        print(f"    payments left with credit (txn, amount, late fee, unallocated): {sample}")
    return counts


# --- the report -----------------------------------------------------------------------------


@dataclass
class Pair:
    """One line of the report: paygate and its baseline, best of the rounds."""

    label: str
    baseline: str
    target: float | None
    paygate: float = 0.0
    raw: float = 0.0
    paygate_error: str | None = None
    raw_error: str | None = None
    notes: list[str] = field(default_factory=list)
    rounds: list[tuple[float, float]] = field(default_factory=list)

    def line(self) -> str:
        """The figures, the ratio and PASS/MISS."""
        mine = f"{self.paygate:>9,.0f}" if self.paygate else f"{'failed':>9}"
        theirs = f"{self.raw:>9,.0f}" if self.raw else f"{'failed':>9}"
        if self.paygate and self.raw:
            ratio = self.paygate / self.raw
            verdict = (
                f">= {self.target:.2f}  {'PASS' if ratio >= self.target else 'MISS'}"
                if self.target is not None
                else "(for scale)"
            )
            return f"{self.label:<46} {mine} {theirs} {ratio:>6.2f}  {verdict}"
        verdict = "FAIL" if self.target is not None else ""
        return f"{self.label:<46} {mine} {theirs} {'-':>6}  {verdict}"


def _side(
    dbs: Databases,
    ctx: SpawnContext,
    dialect: str,
    make_jobs: Callable[[str], list[Job]],
) -> tuple[Measurement, dict[str, int] | None]:
    url = dbs.sqlite_copy() if dialect == "sqlite" else dbs.pg_copy()
    try:
        result = measure(ctx, make_jobs(url))
        counts = None if result.error else tally(url)
        return result, counts
    finally:
        dbs.sqlite_drop(url) if dialect == "sqlite" else dbs.pg_drop(url)


def run_pair(
    pair: Pair,
    dbs: Databases,
    ctx: SpawnContext,
    dialect: str,
    rounds: int,
    gateway_jobs: Callable[[str], list[Job]],
    raw_jobs: Callable[[str], list[Job]],
    expected_payments: int,
) -> Pair:
    """Measure both sides ``rounds`` times (alternating which goes first); keep the best."""
    for round_no in range(rounds):
        sides = [("paygate", gateway_jobs), ("raw", raw_jobs)]
        if round_no % 2:
            sides.reverse()
        counts: dict[str, dict[str, int]] = {}
        rates: dict[str, float] = {}
        for name, make_jobs in sides:
            result, tallied = _side(dbs, ctx, dialect, make_jobs)
            rates[name] = result.rate
            if name == "paygate":
                pair.paygate = max(pair.paygate, result.rate)
                pair.paygate_error = pair.paygate_error or result.error
            else:
                pair.raw = max(pair.raw, result.rate)
                pair.raw_error = pair.raw_error or result.error
            if tallied is not None:
                counts[name] = tallied
        pair.rounds.append((rates["paygate"], rates["raw"]))
        pair.notes.extend(_check_counts(counts, expected_payments))
    return pair


def _check_counts(counts: dict[str, dict[str, int]], expected_payments: int) -> list[str]:
    problems = []
    for name, tallied in counts.items():
        if tallied["balance mismatches"] or tallied["unallocated"]:
            problems.append(f"{name}: {tallied}")
        if tallied["payments"] != expected_payments:
            problems.append(f"{name}: {tallied['payments']} payments, expected {expected_payments}")
    if len(counts) == 2:
        mine, theirs = counts["paygate"], counts["raw"]
        differ = {
            k: (mine[k], theirs[k]) for k in (*_TALLY_TABLES, "open bills") if mine[k] != theirs[k]
        }
        if differ:
            problems.append(f"rows differ (paygate, raw): {differ}")
    return problems


# --- main -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Counts for one invocation."""

    per_commit: int
    batched: int
    rounds: int
    profile: int
    chunk: int

    @property
    def accounts(self) -> int:
        """Accounts to prepare: every writer's warm-up, then the largest run."""
        return WARMUP * PG_WRITERS + max(self.per_commit, self.batched)


def _slices(book: Book, total: int, writers: int) -> list[tuple[tuple[Payment, ...], ...]]:
    """Each writer's (warm-up, measured) payments; writers never share an account."""
    each = total // writers
    return [
        (
            payments(book, w * WARMUP, WARMUP),
            payments(book, WARMUP * PG_WRITERS + w * each, each),
        )
        for w in range(writers)
    ]


def _jobs(
    kind: str, book: Book, total: int, writers: int = 1, **extra: Any
) -> Callable[[str], list[Job]]:
    def make(url: str) -> list[Job]:
        return [
            Job(kind, url, warm, timed, book.paid_at, **extra)
            for warm, timed in _slices(book, total, writers)
        ]

    return make


def _print_pairs(title: str, pairs: Sequence[Pair]) -> None:
    print(f"\n{title}")
    print(f"{'':<46} {'paygate/s':>9} {'raw/s':>9} {'ratio':>6}  target")
    for pair in pairs:
        print(pair.line())
    for pair in pairs:
        print(f"  {pair.label.strip()}: baseline = {pair.baseline}")
        if len(pair.rounds) > 1:
            each = "; ".join(
                f"{mine:,.0f}/{theirs:,.0f} = {mine / theirs:.2f}" if mine and theirs else "-"
                for mine, theirs in pair.rounds
            )
            print(f"    each round (paygate/raw): {each}")
        if pair.paygate_error:
            print(f"    paygate failed: {pair.paygate_error}")
        if pair.raw_error:
            print(f"    baseline failed: {pair.raw_error}")
        for note in pair.notes:
            print(f"    CHECK FAILED: {note}")
    sys.stdout.flush()


def run_sqlite(dbs: Databases, ctx: SpawnContext, book: Book, plan: Plan) -> None:
    """SQLite: pay() and pay_many() against sqlite3, then the profile of pay()."""
    started = time.perf_counter()
    prepare_sqlite(dbs.sqlite_template, book)
    print(
        f"SQLite template: {len(book.accounts):,} accounts in {time.perf_counter() - started:.1f} s"
    )
    n, nb = plan.per_commit, plan.batched
    # the seed payment plus each writer's warm-up payments come before the timed ones
    done = 1 + WARMUP
    pairs = []
    for sync, target in (("FULL", 0.35), ("NORMAL", None)):
        pair = Pair(
            f"pay(), commit each, synchronous={sync}",
            f"sqlite3, a payment's statements one by one, COMMIT each, synchronous={sync}",
            target,
        )
        run_pair(
            pair,
            dbs,
            ctx,
            "sqlite",
            plan.rounds,
            _jobs("gateway-pay", book, n, synchronous=sync),
            _jobs("sqlite", book, n, synchronous=sync, chunk=1),
            done + n,
        )
        pairs.append(pair)
    pair = Pair(
        f"pay_many(), chunk {plan.chunk}, synchronous=FULL",
        f"sqlite3, the same statements row by row, COMMIT per {plan.chunk} payments",
        0.5,
    )
    run_pair(
        pair,
        dbs,
        ctx,
        "sqlite",
        plan.rounds,
        _jobs("gateway-pay-many", book, nb, chunk=plan.chunk),
        _jobs("sqlite", book, nb, chunk=plan.chunk),
        done + nb,
    )
    pairs.append(pair)
    _print_pairs(f"SQLite {sqlite3.sqlite_version}, WAL (payments/s, best of {plan.rounds})", pairs)

    url = dbs.sqlite_copy()
    try:
        profiled = measure(ctx, _jobs("gateway-pay", book, plan.profile, profile=True)(url))
    finally:
        dbs.sqlite_drop(url)
    print(f"\nProfile of Gateway.pay() on SQLite, {plan.profile:,} payments (cProfile):")
    print(profiled.error or profiled.profile)


def run_pg(dbs: Databases, ctx: SpawnContext, book: Book, plan: Plan) -> None:
    """PostgreSQL: pay() with 1 and 4 writers, pay_many() against a set-based baseline."""
    started = time.perf_counter()
    prepare_pg(dbs.pg_create_template(), book)
    print(
        f"\nPostgreSQL template: {len(book.accounts):,} accounts in "
        f"{time.perf_counter() - started:.1f} s"
    )
    n, nb = plan.per_commit, plan.batched
    pairs = []
    for writers, target in ((1, None), (PG_WRITERS, 0.7)):
        each = n // writers
        pair = Pair(
            f"pay(), {writers} writer{'s' if writers > 1 else ''}, commit each",
            f"psycopg, {writers} process(es), a payment's statements each its own round "
            "trip, COMMIT each",
            target,
        )
        run_pair(
            pair,
            dbs,
            ctx,
            "postgresql",
            plan.rounds,
            _jobs("gateway-pay", book, n, writers),
            _jobs("pg-commit", book, n, writers),
            1 + (WARMUP + each) * writers,
        )
        pairs.append(pair)
    pair = Pair(
        f"pay_many(), chunk {plan.chunk}",
        f"psycopg, COPY {plan.chunk} payments into a staging table, then set-based "
        "INSERT…SELECT / UPDATE…FROM, COMMIT per chunk",
        0.5,
    )
    run_pair(
        pair,
        dbs,
        ctx,
        "postgresql",
        plan.rounds,
        _jobs("gateway-pay-many", book, nb, chunk=plan.chunk),
        _jobs("pg-set", book, nb, chunk=plan.chunk),
        1 + WARMUP + nb,
    )
    pairs.append(pair)
    with psycopg.connect(dbs.pg_url(dbs.pg_template)) as conn:
        version = _scalar(conn, "SHOW server_version")
    _print_pairs(f"PostgreSQL {version} (payments/s, best of {plan.rounds})", pairs)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, prepare, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument(
        "--n",
        type=int,
        help="payments per commit-each run (default 10000); "
        f"batched runs post {BATCH_FACTOR} times as many",
    )
    parser.add_argument("--rounds", type=int, help="rounds per pair, best kept (default 2)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL admin connection")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--workdir", help="directory for the SQLite files (default: a temp dir)")
    args = parser.parse_args(argv)
    per_commit = args.n or (300 if args.quick else 10_000)
    plan = Plan(
        per_commit=per_commit,
        batched=BATCH_FACTOR * per_commit,
        rounds=args.rounds or (1 if args.quick else 2),
        profile=min(per_commit, 2_000),
        chunk=Settings().pay_many_chunk,
    )
    if plan.per_commit < PG_WRITERS:
        parser.error(f"--n must be at least {PG_WRITERS}")
    book = make_book(plan.accounts)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"paygate ingest benchmark: {os.cpu_count()} cores (load average {load}), "
        f"Python {sys.version.split()[0]}, psycopg {psycopg.__version__}"
    )
    print(
        f"{plan.per_commit:,} payments per commit-each run, {plan.batched:,} per batched run; "
        f"{WARMUP} warm-up payments per writer before each timer"
    )
    print(
        f"each payment clears one bill {DAYS_OVERDUE} days overdue: late fee charged and paid, "
        "bill fully allocated, 2 outbox events"
    )
    print(
        "baselines write rows of the same shape into the same tables (same indexes and "
        "triggers) of a fresh copy of the same prepared database"
    )
    sys.stdout.flush()
    workdir = Path(tempfile.mkdtemp(prefix="paygate_bench_", dir=args.workdir))
    dbs = Databases(workdir, None if args.sqlite_only else args.pg_url)
    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    try:
        run_sqlite(dbs, ctx, book, plan)
        if not args.sqlite_only:
            try:
                dbs.admin("SELECT 1")
            except psycopg.Error as exc:
                print(f"\nPostgreSQL skipped: cannot connect to {args.pg_url}: {exc}")
                return 1
            run_pg(dbs, ctx, book, plan)
    finally:
        dbs.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
