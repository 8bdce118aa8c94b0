"""The billing run's throughput: paygate's ``open_accounts`` and ``issue_bills`` beside a raw
set-based insert of the same rows, in the same database and the same invocation.

Run from the repository root::

    .venv/bin/python bench/billing.py --quick        # 5,000 rows: does the script still work?
    .venv/bin/python bench/billing.py                # 200,000 accounts and 200,000 bills
    .venv/bin/python bench/billing.py --n 1000000    # a million of each, with memory figures
    .venv/bin/python bench/billing.py --sqlite-only  # no PostgreSQL server needed

For each database (a fresh SQLite file; a fresh PostgreSQL database created beside
``--pg-url`` and dropped at the end) the script opens N accounts with paygate and N other
accounts with the raw insert, then issues one bill to each account, paygate's to its own,
the raw insert's to its own. The raw insert writes the same rows paygate writes — accounts,
their receivable ledger accounts and balance rows; bills, their journal entries, two postings
each, the balance moves — in chunks of the same size, one transaction per chunk, with no
check of any kind: on PostgreSQL COPY into a temporary table, then ``INSERT … SELECT`` and
``UPDATE … FROM``; on SQLite ``executemany``. paygate in addition validates each row, finds
replays and conflicts by joining to what is stored, locks the accounts and posts through the
one posting path. The input is a generator on both sides; the paygate side keeps counts only
(``keep_keys=False``). Resident memory (RSS) is sampled after every chunk of the paygate side:
the first sample and the highest are printed, so flat memory shows as two close figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg

from paygate import FixedClock, Gateway, Money, NewAccount, NewBill, Settings
from paygate.store import migrate
from paygate.store.partitions import MONTH_BITS, month_base, month_index

CURRENCY = "CNY"
PERIOD = "2026-11"
DUE = date(2026, 12, 15)
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
# The raw side's ids start half-way through this month's range of ids: far above the id
# counter's, and inside a partition that exists (on PostgreSQL the journal, postings and outbox
# are partitioned by the range of ids each month owns; paygate.store.partitions).
RAW_IDS = month_base(month_index(datetime.now(UTC).date())) + 2 ** (MONTH_BITS - 1)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def accounts(prefix: str, n: int) -> Iterator[NewAccount]:
    for i in range(n):
        yield NewAccount(account_no=f"{prefix}{i:08d}")


def bills(prefix: str, n: int) -> Iterator[NewBill]:
    for i in range(n):
        yield NewBill(
            account_no=f"{prefix}{i:08d}",
            bill_no=f"{prefix}-{PERIOD}-{i:08d}",
            amount=Money(5000 + i % 10000, CURRENCY),
            period=PERIOD,
            due_date=DUE,
        )


def chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, size)):
        yield chunk


@dataclass
class Memory:
    """RSS samples taken after each committed chunk."""

    first: float = 0.0
    peak: float = 0.0

    def sample(self, _done: int) -> None:
        now = rss_mb()
        self.first = self.first or now
        self.peak = max(self.peak, now)


# --- the raw side -----------------------------------------------------------------------------


class Raw:
    """The same rows, written with no checks: set-based per dialect."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.next_id = RAW_IDS
        self.energy = gateway.store.run(
            lambda tx: gateway.ledger_accounts.ensure(
                tx, f"revenue:energy:{CURRENCY}", _energy_kind(), CURRENCY
            )
        )

    def ids(self, n: int) -> int:
        start = self.next_id
        self.next_id += n
        return start

    def accounts(self, items: Iterator[NewAccount], size: int) -> None:
        for chunk in chunks(items, size):
            self.gateway.store.run(lambda tx, chunk=chunk: self._accounts(tx, chunk))

    def bills(self, items: Iterator[NewBill], size: int) -> None:
        for chunk in chunks(items, size):
            self.gateway.store.run(lambda tx, chunk=chunk: self._bills(tx, chunk))

    def _accounts(self, tx: Any, chunk: list[NewAccount]) -> None:
        base = self.ids(2 * len(chunk))
        rows = [
            (base + 2 * i, base + 2 * i + 1, f"receivable:{a.account_no}", a.account_no)
            for i, a in enumerate(chunk)
        ]
        now = tx.ts(NOW)
        conn = tx._conn
        if tx.dialect == "postgresql":
            conn.execute(
                "CREATE TEMP TABLE raw_acc (id bigint, lid bigint, code text, account_no text) "
                "ON COMMIT DROP"
            )
            with conn.cursor() as cur, cur.copy("COPY raw_acc FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["bigint", "bigint", "text", "text"])
                for row in rows:
                    cp.write_row(row)
            conn.execute("ANALYZE raw_acc")
            conn.execute(
                "INSERT INTO ledger_accounts (id, code, kind, currency, created_at) "
                "SELECT lid, code, 'customer_receivable', %s, %s FROM raw_acc",
                (CURRENCY, now),
            )
            conn.execute("INSERT INTO ledger_balances SELECT lid, 0, 0 FROM raw_acc")
            conn.execute(
                "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, "
                "currency, supply_state, receivable_account_id, created_at) SELECT id, "
                "account_no, NULL, 'residential', false, false, %s, 'connected', lid, %s "
                "FROM raw_acc",
                (CURRENCY, now),
            )
            return
        conn.executemany(
            "INSERT INTO ledger_accounts (id, code, kind, currency, created_at) "
            "VALUES (?, ?, 'customer_receivable', ?, ?)",
            [(lid, code, CURRENCY, now) for _, lid, code, _ in rows],
        )
        conn.executemany(
            "INSERT INTO ledger_balances (account_id, shard, balance) VALUES (?, 0, 0)",
            [(lid,) for _, lid, _, _ in rows],
        )
        conn.executemany(
            "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, currency, "
            "supply_state, receivable_account_id, created_at) "
            "VALUES (?, ?, NULL, 'residential', 0, 0, ?, 'connected', ?, ?)",
            [(aid, no, CURRENCY, lid, now) for aid, lid, _, no in rows],
        )

    def _bills(self, tx: Any, chunk: list[NewBill]) -> None:
        base = self.ids(4 * len(chunk))
        rows = [
            (
                base + 4 * i,
                base + 4 * i + 1,
                base + 4 * i + 2,
                base + 4 * i + 3,
                b.account_no,
                b.bill_no,
                b.amount.minor,
                b.due_date,
            )
            for i, b in enumerate(chunk)
        ]
        now = tx.ts(NOW)
        day = tx.day(NOW.date())
        conn = tx._conn
        total = sum(r[6] for r in rows)
        if tx.dialect == "postgresql":
            conn.execute(
                "CREATE TEMP TABLE raw_bill (bid bigint, eid bigint, p1 bigint, p2 bigint, "
                "account_no text, bill_no text, amount bigint, due date) ON COMMIT DROP"
            )
            with conn.cursor() as cur, cur.copy("COPY raw_bill FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["bigint"] * 4 + ["text", "text", "bigint", "date"])
                for row in rows:
                    cp.write_row(row)
            conn.execute("ANALYZE raw_bill")
            conn.execute(
                "INSERT INTO journal_entries (id, kind, reference, memo, business_date, "
                "posted_at) SELECT eid, 'bill', 'bill:' || bill_no, 'bill ' || bill_no || "
                "' for ' || %s, %s, %s FROM raw_bill",
                (PERIOD, day, now),
            )
            conn.execute(
                "INSERT INTO postings (id, entry_id, account_id, amount, currency) "
                "SELECT r.p1, r.eid, a.receivable_account_id, r.amount, %s FROM raw_bill r "
                "JOIN accounts a ON a.account_no = r.account_no "
                "UNION ALL SELECT p2, eid, %s, -amount, %s FROM raw_bill",
                (CURRENCY, self.energy, CURRENCY),
            )
            # The joins below as index probes, as paygate's (not around the postings: their
            # balance trigger is best left to the planner).
            conn.execute("SET LOCAL enable_hashjoin = off")
            conn.execute("SET LOCAL enable_mergejoin = off")
            conn.execute(
                "UPDATE ledger_balances b SET balance = b.balance + d.amount FROM "
                "(SELECT a.receivable_account_id AS id, SUM(r.amount) AS amount FROM raw_bill r "
                "JOIN accounts a ON a.account_no = r.account_no GROUP BY 1) d "
                "WHERE b.account_id = d.id AND b.shard = 0"
            )
            conn.execute(
                "UPDATE ledger_balances SET balance = balance - %s "
                "WHERE account_id = %s AND shard = 0",
                (total, self.energy),
            )
            conn.execute(
                "INSERT INTO bills (id, account_id, bill_no, period, amount, currency, due_date, "
                "principal_paid, late_fee_charged, late_fee_paid, late_fee_through, entry_id, "
                "issued_at) SELECT r.bid, a.id, r.bill_no, %s, r.amount, %s, r.due, 0, 0, 0, "
                "NULL, r.eid, %s FROM raw_bill r JOIN accounts a ON a.account_no = r.account_no",
                (PERIOD, CURRENCY, now),
            )
            return
        marks = ", ".join("?" for _ in rows)
        found = {
            str(no): (int(aid), int(recv))
            for aid, no, recv in conn.execute(
                f"SELECT id, account_no, receivable_account_id FROM accounts "
                f"WHERE account_no IN ({marks})",
                [r[4] for r in rows],
            )
        }
        conn.executemany(
            "INSERT INTO journal_entries (id, kind, reference, memo, business_date, posted_at) "
            "VALUES (?, 'bill', ?, ?, ?, ?)",
            [(r[1], f"bill:{r[5]}", f"bill {r[5]} for {PERIOD}", day, now) for r in rows],
        )
        conn.executemany(
            "INSERT INTO postings (id, entry_id, account_id, amount, currency) "
            "VALUES (?, ?, ?, ?, ?)",
            [(r[2], r[1], found[r[4]][1], r[6], CURRENCY) for r in rows]
            + [(r[3], r[1], self.energy, -r[6], CURRENCY) for r in rows],
        )
        conn.executemany(
            "UPDATE ledger_balances SET balance = balance + ? WHERE account_id = ? AND shard = 0",
            [(r[6], found[r[4]][1]) for r in rows] + [(-total, self.energy)],
        )
        conn.executemany(
            "INSERT INTO bills (id, account_id, bill_no, period, amount, currency, due_date, "
            "principal_paid, late_fee_charged, late_fee_paid, late_fee_through, entry_id, "
            "issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, NULL, ?, ?)",
            [
                (r[0], found[r[4]][0], r[5], PERIOD, r[6], CURRENCY, r[7].isoformat(), r[1], now)
                for r in rows
            ],
        )


def _energy_kind() -> Any:
    from paygate.ledger import AccountKind

    return AccountKind.ENERGY_REVENUE


# --- measuring --------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def count(gateway: Gateway, sql: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(sql), write=False))


def measure(label: str, url: str, n: int, chunk: int) -> None:
    settings = Settings(database_url=url, seal_every=0, billing_run_chunk=chunk)
    print(f"\n{label}: {n:,} accounts and {n:,} bills a side, chunks of {chunk:,}")
    with Gateway.open(settings=settings, clock=FixedClock(NOW)) as gateway:
        raw = Raw(gateway)
        memory = Memory()
        results = []
        for what, ours, theirs in (
            (
                "accounts",
                lambda: gateway.open_accounts(
                    accounts("P", n), keep_keys=False, progress=memory.sample
                ),
                lambda: raw.accounts(accounts("R", n), chunk),
            ),
            (
                "bills",
                lambda: gateway.issue_bills(bills("P", n), keep_keys=False, progress=memory.sample),
                lambda: raw.bills(bills("R", n), chunk),
            ),
        ):
            raw_s = timed(theirs)
            ours_s = timed(ours)
            results.append((what, n / ours_s, n / raw_s))
        for what, ours_rate, raw_rate in results:
            print(
                f"  {what:8s}  paygate {ours_rate:10,.0f} rows/s   raw set-based "
                f"{raw_rate:10,.0f} rows/s   ratio {ours_rate / raw_rate:.2f}"
            )
        print(
            f"  memory   RSS after the first chunk {memory.first:.0f} MiB, "
            f"highest {memory.peak:.0f} MiB"
        )
        for table in ("accounts", "bills"):
            mine = count(gateway, f"SELECT COUNT(*) FROM {table} WHERE id < {RAW_IDS}")
            theirs = count(gateway, f"SELECT COUNT(*) FROM {table} WHERE id >= {RAW_IDS}")
            assert mine == theirs == n, (table, mine, theirs)
        rerun = timed(lambda: gateway.issue_bills(bills("P", n), keep_keys=False))
        print(f"  re-run   the same bills again, all replayed: {n / rerun:,.0f} rows/s")
        report = gateway.verify()
        assert report.ok, report.findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 rows a side")
    parser.add_argument("--n", type=int, default=None, help="rows a side (default 200,000)")
    parser.add_argument("--chunk", type=int, default=5000, help="rows per transaction")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL admin URL")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgresql-only", action="store_true")
    parser.add_argument("--workdir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    n = args.n or (5000 if args.quick else 200_000)
    if not args.postgresql_only:
        directory = Path(args.workdir or tempfile.mkdtemp(prefix="paygate-bench-"))
        try:
            measure("SQLite", f"sqlite:///{directory / 'billing.db'}", n, args.chunk)
        finally:
            if args.workdir is None:
                shutil.rmtree(directory, ignore_errors=True)
    if args.sqlite_only:
        return
    name = f"paygate_bench_billing_{uuid.uuid4().hex[:8]}"
    base = args.pg_url.rsplit("/", 1)[0]
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{base}/{name}"
        migrate.upgrade(url)
        measure("PostgreSQL", url, n, args.chunk)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
