"""Reconciliation at scale: paygate's engine beside an in-memory Python dict join of the same lines.

Run from the repository root::

    .venv/bin/python bench/reconcile.py              # 250k and 1M lines, SQLite and PostgreSQL
    .venv/bin/python bench/reconcile.py --quick      # small counts: does the script still work?
                                                     # (fixed costs dominate the ratios there)
    .venv/bin/python bench/reconcile.py --sqlite-only

**The ledger is seeded directly, not through the Gateway.** N payments of one business day are
written with set-based SQL into the real tables (accounts with their receivable ledger
accounts, the payments, and one journal entry whose postings carry their total, so that the
ledger still verifies), because N calls of ``Gateway.pay`` would take hours and are measured
by ``bench/ingest.py`` instead. Every measurement runs on a fresh copy of that database
(SQLite: a file copy; PostgreSQL: ``CREATE DATABASE … TEMPLATE``), in its own process
(``multiprocessing``, spawn), and reports wall time and the process's peak RSS
(``resource.getrusage``).

The statement has a line for every payment, with known discrepancies injected per thousand
payments: one payment missing from the statement, one line with a changed amount, one line
listed twice, one payment reversed in the ledger with its refund line, one extra line of a known
account (posted by the policy as a late payment) and one of an unknown account (put in
suspense). Both sides consume the same line stream, generated on the fly (never held whole):

* ``baseline``: fetch the day's payments from the database into a dict keyed by channel
  transaction id, walk the lines probing it, and classify every line and payment in memory;
* ``paygate``: ``paygate.reconcile.reconcile`` with the default policy: lines staged into the
  database in chunks, classified in SQL, findings persisted, late payments posted and unknown
  accounts put in suspense.

Producing the lines costs the same on both sides; it is timed inside each run and reported, and
the ratio is taken on the times without it (the stricter comparison; ratios with it are printed
too). Both sides' class counts are checked against the injected discrepancies (``CHECK FAILED``
otherwise). Targets: paygate within 4x the dict join on PostgreSQL and 6x on SQLite, and peak
RSS under 400 MB at every size (it must not grow with the statement).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.engine import make_url

from paygate import FixedClock, Gateway, Money, PaymentIntent, Settings
from paygate.models import StatementLine, StatementLineKind
from paygate.reconcile import ReconcilePolicy, reconcile
from paygate.store import migrate

CHANNEL = "kiosk"
CURRENCY = "CNY"
DAY = date(2026, 11, 24)
ZONE = ZoneInfo("Asia/Shanghai")
DAY_START = datetime(2026, 11, 24, tzinfo=ZONE).astimezone(UTC)
CLOCK_AT = datetime(2026, 11, 25, 10, 0, tzinfo=ZONE)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGETS = {"sqlite": 6.0, "postgresql": 4.0}
RSS_TARGET_MB = 400.0
# Per thousand payments: which one is missing, changed, listed twice, reversed with a refund,
# and after which ones an extra line of a known and of an unknown account is added.
MISSING, CHANGED, TWICE, REVERSED, EXTRA_KNOWN, EXTRA_UNKNOWN = 3, 5, 9, 7, 11, 13


def accounts_for(n: int) -> int:
    """How many customer accounts share the ``n`` payments."""
    return max(100, n // 20)


def amount_of(i: int) -> int:
    """Payment ``i``'s amount in fen: 10.00 to 999.99 yuan."""
    return 1000 + (i * 7919) % 99_000


def expected(n: int) -> Counter[str]:
    """The class counts the injected discrepancies must produce."""
    per = n // 1000
    return Counter(
        {
            "matched": n - 2 * per,
            "amount_mismatch": per,
            "duplicate_in_statement": per,
            "only_in_statement": 2 * per,
            "reversal_matched": per,
            "only_in_ledger": per,
        }
    )


# --- the statement stream -------------------------------------------------------------------

_FIELDS = frozenset(StatementLine.model_fields)
_PAYMENT, _REFUND = StatementLineKind.PAYMENT, StatementLineKind.REFUND
_ZERO = Money(0, CURRENCY)


def _line(number: int, txn: str, account: str, minor: int, at: datetime, **extra: Any) -> Any:
    # Built the way model_construct builds (no validation): the stream should cost as little
    # as possible, since both sides pay for it.
    gross = Money(minor, CURRENCY)
    fee = Money(minor * 6 // 1000, CURRENCY)
    line = StatementLine.__new__(StatementLine)
    values = {
        "line_no": number,
        "channel_txn_id": txn,
        "account_no": account,
        "gross": gross,
        "fee": fee,
        "net": gross - fee,
        "occurred_at": at,
        "kind": extra.get("kind", _PAYMENT),
        "original_txn_id": extra.get("original"),
        "reference": None,
    }
    object.__setattr__(line, "__dict__", values)
    object.__setattr__(line, "__pydantic_fields_set__", _FIELDS)
    object.__setattr__(line, "__pydantic_extra__", None)
    object.__setattr__(line, "__pydantic_private__", None)
    return line


def statement(n: int) -> Iterator[StatementLine]:
    """The statement of ``n`` payments with the injected discrepancies, line by line."""
    k = accounts_for(n)
    number = 1
    for i in range(n):
        at = DAY_START + timedelta(seconds=i * 86_400 // n)
        account = f"B{i % k:07d}"
        txn = f"K{i:09d}"
        r = i % 1000
        if r != MISSING:
            number += 1
            yield _line(number, txn, account, amount_of(i) + (r == CHANGED), at)
        if r == TWICE:
            number += 1
            yield _line(number, txn, account, amount_of(i), at)
        if r == REVERSED:
            number += 1
            yield _line(number, f"F{i:09d}", account, amount_of(i), at, kind=_REFUND, original=txn)
        if r == EXTRA_KNOWN:
            number += 1
            yield _line(number, f"X{i:09d}", account, amount_of(i), at)
        if r == EXTRA_UNKNOWN:
            number += 1
            yield _line(number, f"Y{i:09d}", f"U{i:09d}", amount_of(i), at)


class TimedLines:
    """The statement stream, timing how long producing it takes (to subtract it later)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seconds = 0.0
        self.count = 0

    def __iter__(self) -> Iterator[StatementLine]:
        clock = time.perf_counter
        source = statement(self.n)
        while True:
            started = clock()
            line = next(source, None)
            self.seconds += clock() - started
            if line is None:
                return
            self.count += 1
            yield line


# --- preparing a database -------------------------------------------------------------------


def _seed_gateway(url: str) -> None:
    """Create the channel's clearing account the way a real payment does."""
    settings = Settings(database_url=url, sqlite_synchronous="OFF", seal_every=0)
    with Gateway.open(settings=settings) as gateway:
        gateway.open_account("SEED")
        gateway.pay(
            PaymentIntent(
                channel=CHANNEL,
                channel_txn_id="SEED-1",
                account_no="SEED",
                amount=Money(100, CURRENCY),
                paid_at=DAY_START - timedelta(days=3),
            )
        )
        gateway.seal()


def _seed_sql(n: int, k: int, base: int, clearing: int, pg: bool) -> list[str]:
    """Set-based statements writing ``k`` accounts and ``n`` payments from id ``base`` on."""
    now = "now()" if pg else "'2026-11-25 00:00:00.000000'"
    series_k = "generate_series(0::bigint, {m}) g" if pg else "g"
    entry = base + 2 * k
    pay0 = entry + 1
    post0 = pay0 + n
    pad = "lpad(g::text, 7, '0')" if pg else "printf('%07d', g)"
    pad9 = "lpad(g::text, 9, '0')" if pg else "printf('%09d', g)"
    paid_at = (
        f"'{DAY_START.isoformat()}'::timestamptz + (g::bigint * 86400 / {n}) * interval '1 second'"
        if pg
        else f"strftime('%Y-%m-%d %H:%M:%f', '{DAY_START:%Y-%m-%d %H:%M:%S}', "
        f"'+' || (g * 86400 / {n}) || ' seconds') || '000'"
    )

    def gen(m: int) -> str:
        if pg:
            return series_k.format(m=m)
        return f"(WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g < {m}) SELECT g FROM s)"  # noqa: E501

    reversed_ = f"g % 1000 = {REVERSED}"
    return [
        f"INSERT INTO ledger_accounts (id, code, kind, currency, created_at) SELECT {base} + g, "
        f"'receivable:B' || {pad}, 'customer_receivable', '{CURRENCY}', {now} FROM {gen(k - 1)}",
        "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, currency, "
        f"supply_state, receivable_account_id, created_at) SELECT {base} + {k} + g, 'B' || {pad}, "
        f"NULL, 'residential', {'false' if pg else 0}, {'false' if pg else 0}, '{CURRENCY}', "
        f"'connected', {base} + g, {now} FROM {gen(k - 1)}",
        "INSERT INTO journal_entries (id, kind, reference, memo, business_date, posted_at) "
        f"VALUES ({entry}, 'bench', 'bench:seed', 'payments loaded by bench/reconcile.py', "
        f"'{DAY.isoformat()}', {now})",
        "INSERT INTO payments (id, channel, channel_txn_id, account_id, amount, currency, "
        "paid_at, business_date, fingerprint, terminal_id, entry_id, late_fee, unallocated, "
        f"status, receipt, posted_at) SELECT {pay0} + g, '{CHANNEL}', 'K' || {pad9}, "
        f"{base} + {k} + g % {k}, 1000 + (g * 7919) % 99000, '{CURRENCY}', {paid_at}, "
        f"'{DAY.isoformat()}', 'bench', NULL, {entry}, 0, "
        f"CASE WHEN {reversed_} THEN 0 ELSE 1000 + (g * 7919) % 99000 END, "
        f"CASE WHEN {reversed_} THEN 'reversed' ELSE 'posted' END, '{{}}', {now} "
        f"FROM {gen(n - 1)}",
        # One statement, so that PostgreSQL's balance check sees the entry whole.
        "INSERT INTO postings (id, entry_id, account_id, amount, currency) "
        f"SELECT {post0}, {entry}, {clearing}, SUM(amount), '{CURRENCY}' FROM payments "
        f"WHERE entry_id = {entry} AND status = 'posted' UNION ALL "
        f"SELECT {post0} + 1 + a.id - {base} - {k}, {entry}, a.receivable_account_id, "
        f"-SUM(p.amount), '{CURRENCY}' FROM payments p JOIN accounts a ON a.id = p.account_id "
        f"WHERE p.entry_id = {entry} AND p.status = 'posted' "
        "GROUP BY a.id, a.receivable_account_id",
        # Balances set-based from the payments: each customer owes minus what it paid.
        "INSERT INTO ledger_balances (account_id, shard, balance) "
        "SELECT a.receivable_account_id, 0, -COALESCE(s.total, 0) FROM accounts a LEFT JOIN "
        "(SELECT account_id, SUM(amount) AS total FROM payments "
        f"WHERE entry_id = {entry} AND status = 'posted' GROUP BY account_id) s "
        f"ON s.account_id = a.id WHERE a.id BETWEEN {base} + {k} AND {base} + 2 * {k} - 1",
        "UPDATE ledger_balances SET balance = balance + (SELECT SUM(amount) FROM payments "
        f"WHERE entry_id = {entry} AND status = 'posted') "
        f"WHERE account_id = {clearing} AND shard = 0",
    ]


def prepare(url: str, n: int) -> None:
    """Migrate, seed through the Gateway, then load ``n`` payments with set-based SQL."""
    migrate.upgrade(url)
    _seed_gateway(url)
    k = accounts_for(n)
    span = 2 * k + 2 + 2 * n + k + 10
    clearing_code = f"clearing:{CHANNEL}:{CURRENCY}"
    if url.startswith("postgresql"):
        with psycopg.connect(url) as pg:
            clearing = pg.execute(
                "SELECT id FROM ledger_accounts WHERE code = %s", (clearing_code,)
            ).fetchone()
            first = pg.execute("SELECT nextval('paygate_id_seq')").fetchone()
            assert clearing is not None
            assert first is not None
            base = int(first[0])
            pg.execute("SELECT setval('paygate_id_seq', %s)", (base + span + 1000,))
            for sql in _seed_sql(n, k, base, int(clearing[0]), pg=True):
                pg.execute(sql)
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("VACUUM ANALYZE")
            pg.execute("CHECKPOINT")
        return
    path = make_url(url).database
    assert path is not None
    lite = sqlite3.connect(path, isolation_level=None)
    try:
        lite.execute("BEGIN IMMEDIATE")
        clearing_id = int(
            lite.execute(
                "SELECT id FROM ledger_accounts WHERE code = ?", (clearing_code,)
            ).fetchone()[0]
        )
        stop = int(
            lite.execute(
                "UPDATE id_blocks SET next_id = next_id + ? WHERE name = 'ids' RETURNING next_id",
                (span,),
            ).fetchone()[0]
        )
        for sql in _seed_sql(n, k, stop - span, clearing_id, pg=False):
            lite.execute(sql)
        lite.execute("COMMIT")
        lite.execute("ANALYZE")
        lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        lite.close()


def verify(url: str) -> bool:
    """The prepared ledger verifies (balances equal postings, entries balance)."""
    with Gateway.open(settings=Settings(database_url=url)) as gateway:
        return gateway.verify().ok


# --- the two sides --------------------------------------------------------------------------


def _payments(url: str) -> Iterator[tuple[str, int, int, str]]:
    query = (
        "SELECT channel_txn_id, id, amount, status FROM payments "
        "WHERE channel = {m} AND business_date = {m}"
    )
    if url.startswith("postgresql"):
        with psycopg.connect(url) as pg, pg.cursor(name="ledger") as cur:
            cur.itersize = 20_000
            cur.execute(query.format(m="%s"), (CHANNEL, DAY))
            yield from cur
        return
    path = make_url(url).database
    assert path is not None
    lite = sqlite3.connect(path)
    try:
        yield from lite.execute(query.format(m="?"), (CHANNEL, DAY.isoformat()))
    finally:
        lite.close()


def dict_join(url: str, lines: TimedLines) -> Counter[str]:
    """The in-memory baseline: every line and payment classified with a dict and a set."""
    ledger = {txn: (pid, amount, status) for txn, pid, amount, status in _payments(url)}
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    reversals: set[str] = set()
    for line in lines:
        txn = line.channel_txn_id
        assert txn is not None
        if line.kind is not _PAYMENT:
            original = ledger.get(line.original_txn_id or "")
            gross = line.gross.minor
            if original is not None and original[2] == "reversed" and original[1] == gross:
                counts["reversal_matched"] += 1
                reversals.add(line.original_txn_id or "")
            else:
                counts["only_in_statement"] += 1
            continue
        if txn in seen:
            counts["duplicate_in_statement"] += 1
            continue
        seen.add(txn)
        found = ledger.get(txn)
        if found is None:
            counts["only_in_statement"] += 1
        elif found[1] != line.gross.minor:
            counts["amount_mismatch"] += 1
        else:
            counts["matched"] += 1
    for txn, (_pid, _amount, status) in ledger.items():
        # Missing from the statement, or shown without the reversal the ledger has.
        if txn not in seen or (status == "reversed" and txn not in reversals):
            counts["only_in_ledger"] += 1
    return counts


def engine(gateway: Gateway, lines: TimedLines) -> Counter[str]:
    """paygate: reconcile() with the default policy, then the run's class counts."""
    run = reconcile(gateway, CHANNEL, DAY, lines, file_sha256="0" * 64, policy=ReconcilePolicy())
    return Counter({k.value: v.count for k, v in run.totals.items()})


@dataclass
class Measure:
    """One measured run."""

    side: str
    wall: float
    production: float
    rss_mb: float
    lines: int
    counts: dict[str, int]

    @property
    def own(self) -> float:
        """Wall time without producing the lines."""
        return self.wall - self.production


def _child(side: str, url: str, n: int, out: Any) -> None:
    lines = TimedLines(n)
    if side == "baseline":
        started = time.perf_counter()
        counts = dict_join(url, lines)
        wall = time.perf_counter() - started
    else:
        # Opening the Gateway (and SQLite's schema check) is not reconciliation: not timed.
        settings = Settings(database_url=url)
        with Gateway.open(settings=settings, clock=FixedClock(CLOCK_AT)) as gateway:
            started = time.perf_counter()
            counts = engine(gateway, lines)
            wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(Measure(side, wall, lines.seconds, rss, lines.count, dict(counts)))


def measure(ctx: Any, side: str, url: str, n: int) -> Measure:
    """Run one side in a fresh process and bring back its figures."""
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(side, url, n, queue))
    process.start()
    result: Measure = queue.get()
    process.join()
    if process.exitcode:
        raise SystemExit(f"{side} failed with exit code {process.exitcode}")
    return result


# --- copies of the prepared database --------------------------------------------------------


class Backend:
    """A prepared database and fresh copies of it."""

    def __init__(self, kind: str, admin: str | None, workdir: Path, n: int) -> None:
        self.kind = kind
        self.admin = admin
        self.workdir = workdir
        self.n = n
        self.copies: list[str] = []
        self.template = self._new("tpl")
        try:
            prepare(self.template, n)
            if not verify(self.template):
                raise SystemExit(f"the prepared {kind} ledger does not verify")
        except BaseException:
            self.drop()
            raise

    def _pg(self, name: str) -> str:
        assert self.admin is not None
        return self.admin.rsplit("/", 1)[0] + "/" + name

    def _new(self, label: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / f'{label}-{self.n}.db'}"
        name = f"paygate_rbench_{os.getpid()}_{label}_{self.n}"
        with psycopg.connect(self.admin or DEFAULT_PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.copies.append(name)
        return self._pg(name)

    def copy(self, label: str) -> str:
        if self.kind == "sqlite":
            source = make_url(self.template).database
            assert source is not None
            target = self.workdir / f"{label}-{self.n}.db"
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"
        name = f"paygate_rbench_{os.getpid()}_{label}_{self.n}"
        template = make_url(self.template).database
        with psycopg.connect(self.admin or DEFAULT_PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            conn.execute("CHECKPOINT")
        self.copies.append(name)
        return self._pg(name)

    def drop(self) -> None:
        if self.kind != "postgresql":
            return
        with psycopg.connect(self.admin or DEFAULT_PG_URL, autocommit=True) as conn:
            for name in self.copies:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--sizes", type=int, nargs="+", help="payments per run")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL admin URL")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--workdir", type=Path, help="where SQLite files go")
    args = parser.parse_args()
    sizes = args.sizes or ([5_000, 20_000] if args.quick else [250_000, 1_000_000])
    ctx = multiprocessing.get_context("spawn")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="paygate-rbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    print(f"reconcile bench: sizes {sizes}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    rows = []
    failures = 0
    for kind in kinds:
        for n in sizes:
            prepared = time.perf_counter()
            backend = Backend(kind, args.pg_url if kind == "postgresql" else None, workdir, n)
            print(
                f"{kind} {n:,} payments prepared in {time.perf_counter() - prepared:.1f} s",
                flush=True,
            )
            try:
                base = measure(ctx, "baseline", backend.copy("base"), n)
                mine = measure(ctx, "paygate", backend.copy("mine"), n)
            finally:
                backend.drop()
            print(
                f"  dict join {base.own:.2f} s (+{base.production:.2f} s producing lines), "
                f"{base.rss_mb:.0f} MB; paygate {mine.own:.2f} s "
                f"(+{mine.production:.2f} s), {mine.rss_mb:.0f} MB",
                flush=True,
            )
            want = expected(n)
            for m in (base, mine):
                if Counter(m.counts) != want:
                    failures += 1
                    print(f"CHECK FAILED: {kind} {m.side} counts {m.counts} != {dict(want)}")
            rows.append((kind, n, base, mine))
    print()
    header = (
        f"{'database':<10} {'lines':>9} {'produce s':>9} {'dict s':>7} {'paygate s':>9} "
        f"{'ratio':>6} {'w/ prod':>7} {'target':>6} {'time':>5} "
        f"{'dict MB':>8} {'paygate MB':>10} {'RSS':>5}"
    )
    print(header)
    print("-" * len(header))
    for kind, _n, base, mine in rows:
        ratio = mine.own / base.own
        ratio_all = mine.wall / base.wall
        target = TARGETS[kind]
        print(
            f"{kind:<10} {mine.lines:>9,} {mine.production:>9.2f} {base.own:>7.2f} "
            f"{mine.own:>9.2f} {ratio:>5.2f}x {ratio_all:>6.2f}x {target:>5.1f}x "
            f"{_verdict(ratio <= target):>5} {base.rss_mb:>8.0f} {mine.rss_mb:>10.0f} "
            f"{_verdict(mine.rss_mb < RSS_TARGET_MB):>5}"
        )
    print(
        "\nproduce s: producing the line stream (the same on both sides), measured in the paygate "
        "run and excluded from 'dict s' and 'paygate s'; ratio = paygate s / dict s "
        "(w/ prod: with it included on both sides). MB: peak RSS of the process."
    )
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
