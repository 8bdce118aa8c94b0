"""One payment per commit: paygate beside the peer a user would pick, and beside the limit.

Run from the repository root, with the ``bench`` extra installed (django-hordak)::

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/peers.py              # PostgreSQL and SQLite
    .venv/bin/python bench/peers.py --quick      # small counts: does the script still work?

Three writers of one payment per transaction, each measured in its own process on a fresh
copy of its own prepared database, alternating which goes first, best of the rounds:

* **paygate** — ``Gateway.pay()``: an account with one overdue bill pays principal plus late
  fee; paygate charges the fee, allocates, clears the arrears, writes two outbox events
  (the same business case as ``bench/ingest.py``);
* **the peer** — django-hordak ``Account.transfer_to`` under ``transaction.atomic()``: a
  general-purpose double-entry ledger moving the same amount between two accounts, which is
  the least a payment is (one transaction row and two legs, with hordak's own database
  checks on PostgreSQL; on SQLite, which hordak's migrations refuse, its tables are made from
  its models without the triggers), and nothing of the rest;
* **the limit** (PostgreSQL) — paygate's own rows for the same payment, planned in Python
  from one read statement, written by ONE data-modifying statement (a CTE over every table),
  then COMMIT: three round trips, the fewest a read-decide-write payment takes.
  On SQLite, where there are no round trips, the limit is ``bench/ingest.py``'s sqlite3
  writer of the same rows, statement by statement.

Beside each rate, the CPU each payment took in the writer's process (client) and, when the
PostgreSQL server runs on this host, in its backends (server, from /proc): the machine's load
moves these much less than the rate, so they compare runs made at different hours.

After the paired runs, ``--growth K`` runs K consecutive batches of ``--n`` payments into ONE
database for paygate and for the peer and prints each batch's rate: how cost grows with data.
Absolute figures depend on the machine; compare the ratios, measured in the same invocation.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.engine import make_url

from paygate import Settings

# The sibling benchmark (accounts, payments, runners, databases) is loaded by path, and this
# folder is taken off the import path: bench/http.py would shadow the standard library's http.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
_spec = importlib.util.spec_from_file_location("ingest", _BENCH / "ingest.py")
if _spec is None or _spec.loader is None:
    raise ImportError(f"cannot load {_BENCH / 'ingest.py'}")
ingest = importlib.util.module_from_spec(_spec)
sys.modules["ingest"] = ingest
_spec.loader.exec_module(ingest)

PEER_LABEL = "django-hordak transfer_to, atomic()"
FLOOR_LABEL = "floor: one 1-row INSERT + COMMIT, nothing else"

HORDAK_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mptt",
    "djmoney",
    "hordak",
]


# --- django-hordak ---------------------------------------------------------------------------


def _django(url: str) -> None:
    """Configure Django for ``url`` (once per process)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    migration_modules: dict[str, str | None] = {}
    if url.startswith("sqlite"):
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": url.removeprefix("sqlite:///")}
        # hordak's migrations install PostgreSQL/MySQL triggers and refuse SQLite; its tables
        # are created from its models instead (its Python-side checks still run).
        migration_modules["hordak"] = None
    else:
        parsed = make_url(url)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parsed.database,
            "USER": parsed.username or "",
            "PASSWORD": parsed.password or "",
            "HOST": parsed.host or "",
            "PORT": str(parsed.port or ""),
        }
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=HORDAK_APPS,
        MIGRATION_MODULES=migration_modules,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        HORDAK_CURRENCIES=[ingest.CURRENCY],
        CURRENCIES=[ingest.CURRENCY],
        DEFAULT_CURRENCY=ingest.CURRENCY,
    )
    django.setup()


def prepare_hordak(url: str) -> None:
    """Migrate hordak's schema into ``url`` and create the two accounts a payment moves
    between; run in a process of its own (Django's settings are per process)."""
    _django(url)
    from django.core.management import call_command
    from hordak.models import Account

    call_command("migrate", verbosity=0, run_syncdb=url.startswith("sqlite"))
    if url.startswith("sqlite"):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
    Account.objects.create(name="Clearing", code="1", type="AS", currencies=[ingest.CURRENCY])
    Account.objects.create(name="Receivable", code="2", type="AS", currencies=[ingest.CURRENCY])


def _run_hordak(job: ingest.Job, barrier: Barrier) -> ingest.Result:
    _django(job.url)
    from django.db import connection, transaction
    from djmoney.money import Money as DjMoney
    from hordak.models import Account

    if job.url.startswith("sqlite"):
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA synchronous={job.synchronous}")
    clearing = Account.objects.get(code="1")
    receivable = Account.objects.get(code="2")

    def pay(items: Sequence[ingest.Payment]) -> None:
        for p in items:
            with transaction.atomic():
                receivable.transfer_to(
                    clearing,
                    DjMoney(p.amount, ingest.CURRENCY) / 100,
                    description=f"{ingest.CHANNEL} {p.txn_id}",
                )

    pay(job.warmup)
    try:
        return ingest._timed(job, barrier, lambda: pay(job.payments))
    finally:
        connection.close()


def hordak_legs(url: str) -> int:
    """Legs written: two per payment, to check the peer did its part."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(conn.execute("SELECT count(*) FROM hordak_leg").fetchone()[0])
        finally:
            conn.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM hordak_leg").fetchone()
        return int(row[0]) if row else 0


# --- the limit: one read statement, one write statement, COMMIT ------------------------------


class RawPgOne:
    """psycopg: a payment read in one statement and written in one CTE, then COMMIT."""

    READ = f"""
        WITH acct AS (
            SELECT {ingest._ACCOUNT_COLUMNS} FROM accounts WHERE account_no = %(no)s FOR UPDATE
        )
        SELECT row_to_json(acct)::text,
               (SELECT count(*) FROM payments
                 WHERE channel = %(channel)s AND channel_txn_id = %(txn)s),
               (SELECT COALESCE(SUM(balance), 0) FROM ledger_balances b
                 WHERE b.account_id = acct.receivable_account_id),
               (SELECT COALESCE(json_agg(json_build_array({ingest._BILL_COLUMNS})
                                          ORDER BY due_date, bill_no), '[]')::text
                  FROM bills WHERE account_id = acct.id AND {ingest._OPEN})
          FROM acct
    """
    WRITE = """
        WITH entry AS (
            INSERT INTO journal_entries (id, kind, reference, memo, business_date, posted_at)
            VALUES (%(e0)s, %(e1)s, %(e2)s, %(e3)s, %(e4)s, %(e5)s)
        ), legs AS (
            INSERT INTO postings (id, entry_id, account_id, amount, currency)
            SELECT * FROM unnest(%(p_id)s::bigint[], %(p_entry)s::bigint[],
                                 %(p_account)s::bigint[], %(p_amount)s::bigint[],
                                 %(p_currency)s::text[])
        ), shards AS (
            UPDATE ledger_balances b SET balance = b.balance + d.delta
              FROM unnest(%(d_delta)s::bigint[], %(d_account)s::bigint[], %(d_shard)s::int[])
                   AS d(delta, account_id, shard)
             WHERE b.account_id = d.account_id AND b.shard = d.shard
        ), pay AS (
            INSERT INTO payments (id, channel, channel_txn_id, account_id, amount, currency,
                paid_at, business_date, fingerprint, terminal_id, entry_id, late_fee,
                unallocated, status, receipt, posted_at)
            VALUES (%(y0)s, %(y1)s, %(y2)s, %(y3)s, %(y4)s, %(y5)s, %(y6)s, %(y7)s, %(y8)s,
                    %(y9)s, %(y10)s, %(y11)s, %(y12)s, %(y13)s, %(y14)s, %(y15)s)
        ), alloc AS (
            INSERT INTO allocations (id, payment_id, bill_id, source, late_fee, principal,
                created_at)
            VALUES (%(a0)s, %(a1)s, %(a2)s, %(a3)s, %(a4)s, %(a5)s, %(a6)s)
        ), events AS (
            INSERT INTO outbox (id, event_type, account_no, payload, created_at, available_at,
                attempts)
            SELECT * FROM unnest(%(o_id)s::bigint[], %(o_type)s::text[], %(o_account)s::text[],
                                 %(o_payload)s::text[], %(o_created)s::timestamptz[],
                                 %(o_available)s::timestamptz[], %(o_attempts)s::int[])
        )
        UPDATE bills SET principal_paid = %(b0)s, late_fee_charged = %(b1)s,
               late_fee_paid = %(b2)s, late_fee_through = %(b3)s
         WHERE id = %(b4)s
    """

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        # The limit is the best way to write these rows, so each statement is planned once per
        # connection and on its indexes, as paygate's are. psycopg prepares a statement from
        # its sixth run; PostgreSQL then planned the read and the write afresh on every call
        # (the arrays' lengths make a custom plan look cheaper: 250 µs of server CPU a
        # payment), and the generic plan it kept for the idempotency count, made while
        # ``payments`` held a few dozen rows, was a sequential scan: one heap read per
        # payment stored before (801 a payment over a run of 1,500). Every statement here is a
        # key lookup or an insert: no plan of it wants a sequential scan.
        self.conn.execute("SET plan_cache_mode = force_generic_plan")
        self.conn.execute("SET enable_seqscan = off")
        self.zone = ZoneInfo(Settings().timezone)
        self.ids = ingest._PgIds(self.conn)
        self.ledger = ingest._LedgerIds(
            *ingest._pg_ledger(self.conn, ingest.CLEARING_CODE),
            *ingest._pg_ledger(self.conn, ingest.LATE_FEE_CODE),
        )
        self.conn.commit()

    def run(self, items: Sequence[ingest.Payment], paid_at: Any) -> None:
        """Pay ``items``, each in its own transaction of three round trips."""
        conn = self.conn
        for p in items:
            row = conn.execute(
                self.READ, {"no": p.account_no, "channel": ingest.CHANNEL, "txn": p.txn_id}
            ).fetchone()
            if row is None:
                raise LookupError(f"no account {p.account_no}")
            account_json, duplicates, balance, bills_json = row
            if duplicates:
                raise RuntimeError(f"payment {p.txn_id} was posted before")
            account = json.loads(account_json)
            fields = [account[k] for k in (c.strip() for c in ingest._ACCOUNT_COLUMNS.split(","))]
            bills = json.loads(bills_json)
            ids = self.ids.take(ingest.IDS_PER_PAYMENT)
            plan = ingest._plan(
                p,
                paid_at,
                self.zone,
                fields,
                int(balance),
                bills,
                ids,
                self.ledger,
                ingest._same,
                ingest._same,
            )
            conn.execute(self.WRITE, _params(plan))
            conn.commit()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _params(plan: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for prefix, row in (("e", plan.entry), ("y", plan.payment), ("a", plan.allocation)):
        params.update({f"{prefix}{i}": v for i, v in enumerate(row)})
    params.update({f"b{i}": v for i, v in enumerate(plan.bill)})
    legs = list(zip(*plan.postings, strict=True))
    for name, column in zip(("id", "entry", "account", "amount", "currency"), legs, strict=True):
        params[f"p_{name}"] = list(column)
    deltas = list(zip(*plan.deltas, strict=True))
    for name, column in zip(("delta", "account", "shard"), deltas, strict=True):
        params[f"d_{name}"] = list(column)
    events = list(zip(*plan.events, strict=True))
    names = ("id", "type", "account", "payload", "created", "available", "attempts")
    for name, column in zip(names, events, strict=True):
        params[f"o_{name}"] = list(column)
    return params


def _run_pg_one(job: ingest.Job, barrier: Barrier) -> ingest.Result:
    raw = RawPgOne(job.url)
    try:
        raw.run(job.warmup, job.paid_at)
        return ingest._timed(job, barrier, lambda: raw.run(job.payments, job.paid_at))
    finally:
        raw.close()


# --- the floor: one durable commit and nothing else ------------------------------------------

FLOOR_TABLE = "bench_commit_floor"


def _run_floor(job: ingest.Job, barrier: Barrier) -> ingest.Result:
    """One transaction per payment holding one one-row INSERT, then COMMIT: what a durable
    commit costs on this machine, with no ledger at all. No writer that commits each payment
    can beat it; its ratio to the peer bounds every ledger's ratio to the peer."""
    sqlite = job.url.startswith("sqlite")
    conn: Any
    if sqlite:
        import sqlite3

        conn = sqlite3.connect(job.url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={job.synchronous}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id INTEGER PRIMARY KEY, txn TEXT)")
        insert = f"INSERT INTO {FLOOR_TABLE} (txn) VALUES (?)"

        def pay(items: Sequence[ingest.Payment]) -> None:
            for p in items:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(insert, (p.txn_id,))
                conn.execute("COMMIT")

    else:
        conn = psycopg.connect(job.url)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id bigserial PRIMARY KEY, txn text)"
        )
        conn.commit()
        insert = f"INSERT INTO {FLOOR_TABLE} (txn) VALUES (%s)"

        def pay(items: Sequence[ingest.Payment]) -> None:
            for p in items:
                conn.execute(insert, (p.txn_id,))
                conn.commit()

    try:
        pay(job.warmup)
        return ingest._timed(job, barrier, lambda: pay(job.payments))
    finally:
        conn.close()


def floor_rows(url: str) -> int:
    """Rows the floor writer committed."""
    if url.startswith("sqlite"):
        import sqlite3

        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(lite.execute(f"SELECT count(*) FROM {FLOOR_TABLE}").fetchone()[0])
        finally:
            lite.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {FLOOR_TABLE}").fetchone()
        return int(row[0]) if row else 0


# Registered at import, so that the spawned writer processes (which import this module as
# their main module) know them too.
ingest._RUNNERS["hordak"] = _run_hordak
ingest._RUNNERS["pg-one"] = _run_pg_one
ingest._RUNNERS["floor"] = _run_floor


# --- databases -------------------------------------------------------------------------------


class PeerDatabases(ingest.Databases):
    """paygate's prepared template (from ingest) and hordak's, with fresh copies of each."""

    @property
    def hordak_sqlite(self) -> Path:
        """The prepared hordak SQLite file."""
        return self.workdir / "hordak.db"

    def hordak_sqlite_copy(self) -> str:
        """A fresh copy of the hordak SQLite template."""
        self._copies += 1
        path = self.workdir / f"hordak{self._copies}.db"
        shutil.copyfile(self.hordak_sqlite, path)
        return f"sqlite:///{path}"

    @property
    def hordak_pg(self) -> str:
        """The name of the prepared hordak PostgreSQL database."""
        return f"{self.prefix}_hordak"

    def hordak_pg_create(self) -> str:
        """Create hordak's (empty) template database; its URL."""
        self.admin(f"CREATE DATABASE {self.hordak_pg}")
        self._pg_made.append(self.hordak_pg)
        return self.pg_url(self.hordak_pg)

    def hordak_pg_copy(self) -> str:
        """A fresh copy of hordak's template database."""
        self._copies += 1
        name = f"{self.prefix}_hrun{self._copies}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self.hordak_pg} STRATEGY file_copy")
        self._pg_made.append(name)
        self.admin("CHECKPOINT")
        return self.pg_url(name)


def _in_process(ctx: SpawnContext, target: Callable[[str], None], url: str) -> None:
    proc = ctx.Process(target=target, args=(url,))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed (exit {proc.exitcode})")


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One writer's best rate over the rounds, with what it left behind."""

    label: str
    rate: float = 0.0
    error: str | None = None
    check: str | None = None
    rounds: list[float] | None = None
    cpus: list[tuple[float, float | None]] = field(default_factory=list)


def _measure(
    ctx: SpawnContext,
    kind: str,
    url: str,
    book: ingest.Book,
    n: int,
    start: int,
    **extra: Any,
) -> ingest.Measurement:
    warm = ingest.payments(book, start, ingest.WARMUP)
    timed = ingest.payments(book, start + ingest.WARMUP, n)
    return ingest.measure(ctx, [ingest.Job(kind, url, warm, timed, book.paid_at, **extra)])


def paired(
    dbs: PeerDatabases,
    ctx: SpawnContext,
    dialect: str,
    book: ingest.Book,
    n: int,
    rounds: int,
) -> list[Row]:
    """paygate, the peer and the limit, each on a fresh copy, alternating order."""
    sqlite = dialect == "sqlite"
    sides: list[tuple[Row, Callable[[], str], Callable[[str], None], str, dict[str, Any]]] = [
        (
            Row("paygate Gateway.pay()"),
            dbs.sqlite_copy if sqlite else dbs.pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
            "gateway-pay",
            {"synchronous": "FULL"},
        ),
        (
            Row(PEER_LABEL),
            dbs.hordak_sqlite_copy if sqlite else dbs.hordak_pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
            "hordak",
            {"synchronous": "FULL"},
        ),
        (
            Row(
                "limit: sqlite3, paygate's rows, statement by statement"
                if sqlite
                else "limit: paygate's rows, 1 read + 1 CTE write + COMMIT"
            ),
            dbs.sqlite_copy if sqlite else dbs.pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
            "sqlite" if sqlite else "pg-one",
            {"synchronous": "FULL", "chunk": 1} if sqlite else {},
        ),
        (
            Row(FLOOR_LABEL),
            dbs.sqlite_copy if sqlite else dbs.pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
            "floor",
            {"synchronous": "FULL"},
        ),
    ]
    for row, *_ in sides:
        row.rounds = []
    for round_no in range(rounds):
        order = sides if round_no % 2 == 0 else list(reversed(sides))
        for row, copy, drop, kind, extra in order:
            url = copy()
            try:
                result = _measure(ctx, kind, url, book, n, 0, **extra)
                assert row.rounds is not None
                row.rounds.append(result.rate)
                if result.cpu is not None:
                    row.cpus.append(result.cpu)
                row.rate = max(row.rate, result.rate)
                row.error = row.error or result.error
                if result.error is None:
                    row.check = _check(kind, url, n)
            finally:
                drop(url)
    return rows_of(sides)


def rows_of(sides: Sequence[tuple[Row, Any, Any, Any, Any]]) -> list[Row]:
    """The rows of ``sides``."""
    return [row for row, *_ in sides]


def _check(kind: str, url: str, n: int) -> str | None:
    expected = n + ingest.WARMUP
    if kind == "floor":
        rows = floor_rows(url)
        return None if rows == expected else f"{rows} rows, expected {expected}"
    if kind == "hordak":
        legs = hordak_legs(url)
        return None if legs == 2 * expected else f"{legs} legs, expected {2 * expected}"
    counts = ingest.tally(url)
    seeded = 1  # the seed payment made while preparing
    if counts["payments"] != expected + seeded:
        return f"{counts['payments']} payments, expected {expected + seeded}"
    if counts["balance mismatches"] or counts["unallocated"]:
        return f"ledger check: {counts}"
    return None


def growth(
    dbs: PeerDatabases,
    ctx: SpawnContext,
    dialect: str,
    book: ingest.Book,
    n: int,
    batches: int,
) -> list[tuple[str, list[float]]]:
    """``batches`` consecutive runs of ``n`` payments into ONE database per writer."""
    sqlite = dialect == "sqlite"
    out = []
    step = n + ingest.WARMUP
    for label, kind, copy, drop in (
        (
            "paygate Gateway.pay()",
            "gateway-pay",
            dbs.sqlite_copy if sqlite else dbs.pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
        ),
        (
            "django-hordak transfer_to",
            "hordak",
            dbs.hordak_sqlite_copy if sqlite else dbs.hordak_pg_copy,
            dbs.sqlite_drop if sqlite else dbs.pg_drop,
        ),
    ):
        url = copy()
        rates = []
        try:
            for batch in range(batches):
                result = _measure(ctx, kind, url, book, n, batch * step, synchronous="FULL")
                rates.append(result.rate if result.error is None else 0.0)
        finally:
            drop(url)
        out.append((label, rates))
    return out


def report(title: str, rows: Sequence[Row], targets: dict[str, float]) -> None:
    """Print the rows, and paygate's ratio to each of the others."""
    print(f"\n{title}")
    print(f"{'':<58} {'payments/s':>10}   each round")
    for row in rows:
        figure = f"{row.rate:>10,.0f}" if row.rate else f"{'failed':>10}"
        each = ", ".join(f"{r:,.0f}" for r in row.rounds or [])
        print(f"{row.label:<58} {figure}   {each}")
        if row.cpus:
            print(f"    CPU per payment, each round: {_cpu_text(row.cpus)}")
        if row.error:
            print(f"    failed: {row.error}")
        if row.check:
            print(f"    CHECK FAILED: {row.check}")
    mine = rows[0]
    for other in rows[1:]:
        if mine.rate and other.rate:
            ratio = mine.rate / other.rate
            target = targets.get(other.label)
            verdict = (
                f"target >= {target:.2f}: {'PASS' if ratio >= target else 'MISS'}"
                if target is not None
                else ""
            )
            print(f"  paygate / {other.label}: {ratio:.2f}  {verdict}")
    floor = next((r for r in rows if r.label == FLOOR_LABEL), None)
    peer = next((r for r in rows if r.label == PEER_LABEL), None)
    if floor is not None and peer is not None and floor.rate and peer.rate:
        # No writer that commits each payment outruns one durable commit of one row: the
        # floor over the peer is the most any ledger's ratio to the peer can be here.
        print(
            f"  ceiling: the floor / {PEER_LABEL}: {floor.rate / peer.rate:.2f} "
            "(no payment per commit can be faster than the floor)"
        )
    print(f"  load average: {_load()}")
    sys.stdout.flush()


def _cpu_text(cpus: Sequence[tuple[float, float | None]]) -> str:
    client = ", ".join(f"{c * 1e6:,.0f}" for c, _ in cpus)
    text = f"client {client} µs"
    if all(server is not None for _, server in cpus):
        server = ", ".join(f"{(s or 0.0) * 1e6:,.0f}" for _, s in cpus)
        text += f"; server {server} µs"
    return text


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report_growth(title: str, lines: Sequence[tuple[str, list[float]]], n: int) -> None:
    """Print each writer's consecutive batch rates and the last batch over the first."""
    print(f"\n{title}: {len(lines[0][1])} consecutive batches of {n:,} into one database")
    for label, rates in lines:
        each = ", ".join(f"{r:,.0f}" for r in rates)
        trend = f"last/first {rates[-1] / rates[0]:.2f}" if rates and rates[0] else ""
        print(f"  {label:<32} {each}   {trend}")
    # the same batch of each writer ran minutes apart on a shared machine: the ratio of the
    # trends says more than either trend alone
    mine, peer = lines[0][1], lines[1][1]
    if len(mine) == len(peer) and all(mine) and all(peer):
        each = ", ".join(f"{m / p:.2f}" for m, p in zip(mine, peer, strict=True))
        print(f"  {'paygate / peer, batch by batch':<32} {each}")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, prepare the databases, run and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="payments per measured run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each trio")
    parser.add_argument("--growth", type=int, default=None, help="consecutive batches (0: none)")
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--pg-url", default=ingest.DEFAULT_PG_URL, help="PostgreSQL admin URL")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg-only", action="store_true", help="skip SQLite")
    parser.add_argument("--workdir", type=Path, default=None, help="where SQLite files go")
    args = parser.parse_args(argv)
    try:
        import hordak  # noqa: F401
    except ImportError:
        print("django-hordak is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    n = args.n or (200 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 2)
    batches = args.growth if args.growth is not None else (2 if args.quick else 3)
    book = ingest.make_book(ingest.WARMUP + max(n + ingest.WARMUP, batches * (n + ingest.WARMUP)))
    ctx = multiprocessing.get_context("spawn")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="paygate-peers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dbs = PeerDatabases(workdir, None if args.sqlite_only else args.pg_url)
    print(
        f"{n:,} payments per run, best of {rounds}; {os.cpu_count()} cores, load average {_load()}"
    )
    try:
        if not args.sqlite_only:
            started = time.perf_counter()
            ingest.prepare_pg(dbs.pg_create_template(), book)
            _in_process(ctx, prepare_hordak, dbs.hordak_pg_create())
            print(f"PostgreSQL templates ready in {time.perf_counter() - started:.1f} s")
            report(
                "PostgreSQL, one payment per commit, 1 client",
                paired(dbs, ctx, "pg", book, n, rounds),
                {PEER_LABEL: 2.0},
            )
            if batches:
                report_growth("PostgreSQL growth", growth(dbs, ctx, "pg", book, n, batches), n)
        if args.pg_only:
            return 0
        started = time.perf_counter()
        ingest.prepare_sqlite(dbs.sqlite_template, book)
        _in_process(ctx, prepare_hordak, f"sqlite:///{dbs.hordak_sqlite}")
        print(f"\nSQLite templates ready in {time.perf_counter() - started:.1f} s")
        report(
            "SQLite WAL, synchronous=FULL, one payment per commit",
            paired(dbs, ctx, "sqlite", book, n, rounds),
            {PEER_LABEL: 1.5},
        )
        if batches:
            report_growth("SQLite growth", growth(dbs, ctx, "sqlite", book, n, batches), n)
    finally:
        dbs.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
