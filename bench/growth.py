"""Payment cost as the ledger grows: pay() and pay_many() on PostgreSQL, 0 to 10 M postings.

Run from the repository root::

    .venv/bin/python bench/growth.py             # stages 0, 1 M, 3 M, 10 M postings
    .venv/bin/python bench/growth.py --quick     # stages 0, 50 k, 200 k: does the script work?
    .venv/bin/python bench/growth.py --explain plans.txt   # also write the plan of every
                                       # statement one pay() and one pay_many() of 500 run
                                       # per stage, grown and empty (auto_explain, foreign-key
                                       # checks and triggers too); print buffers, server time
                                       # and pay_many()'s costliest statements

One database grows in stages. Before any stage is measured, history is loaded set-based with
COPY: customers, their monthly bills, each bill's journal entry, the payment that paid it (its
journal entry, postings, payment row with receipt, allocation, two delivered outbox events),
and the cached balances, month after month back from the current month, as ``open_account``,
``issue_bill`` and ``pay`` would have written them; a share of the payments are late and carry a
late fee (four postings instead of two). Channel transaction ids look random, as a bank's
references do, so the idempotency index is probed at random like in production. The history is
then sealed (set-based, into exactly the blocks ``Gateway.seal()`` would make; ``--check-seal``
compares the two) and the database vacuumed and analyzed, as autovacuum would have by then.
The load phases run at a lower priority (``--nice``, default 10), the measured ones at normal
priority.

At each stage customers with history (fresh ones on the empty ledger) get one open bill ten
days overdue (as in bench/ingest.py) and pay it in full: first ``--n`` payments through
``Gateway.pay()`` (one payment per commit, one writer), then ``--batch`` payments through
``Gateway.pay_many()``. Beside every stage a fresh copy of the empty ledger (migrated, seeded,
its payers' bills open) is measured the same way, alternating which side goes first, ``--rounds``
times; the best of each side is kept. The ratio grown / empty therefore compares two figures
taken in the same minutes, which on a shared machine matters more than anything else; the
ratio to stage 0 is printed too. At the end ``Gateway.verify()`` recomputes every balance,
entry sum and seal over the whole ledger (skip it with ``--no-verify``; minutes at 10 M).

On a partitioned database (PostgreSQL at revision 0009) each month of history gets its month's
partitions and ids from its month's range, as if it had been written then.

The databases are ``paygate_growth_<pid>_*`` beside ``--pg-url`` and are dropped at the end
(``--keep`` keeps the grown one). A 10 M ledger takes about 8 GB of disk. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from paygate import Gateway, Money, PaymentIntent, Settings, ledger
from paygate.models import PayOutcome
from paygate.store import migrate, partitions
from paygate.store.partitions import month_base, month_index

CURRENCY = "CNY"
CHANNELS = ("kiosk", "bank", "wechat", "alipay")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ENERGY_CODE = f"revenue:energy:{CURRENCY}"
LATE_FEE_CODE = f"revenue:late_fee:{CURRENCY}"
LATE_SHARE = 0.3  # payments made after the due date, with a late fee (four postings)
DAYS_OVERDUE = 10  # the measured payments' bills fell due this many days before today
WARMUP = 20


def late_fee(principal: int, since: date, day: date) -> int:
    """Residential late fee: 0.1 % of the principal per day after ``since``, half up, >= 1.00."""
    days = (day - since).days
    if principal <= 0 or days <= 0:
        return 0
    return max((principal * days * 2 + 1000) // 2000, 100)


def month_start(day: date, back: int) -> date:
    """The first day of the month ``back`` months before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


# --- the ledger's fixed accounts -----------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    """Ids of the ledger accounts every payment touches, and how many shards each has."""

    energy: int
    late_fee: int
    clearing: dict[str, int]
    shards: dict[int, int]


def seed(url: str) -> Fixed:
    """A real overdue bill and its payment per channel through the Gateway: they create the
    ledger accounts (clearing per channel, energy and late-fee revenue)."""
    today = datetime.now(UTC)
    local_day = today.astimezone(ZoneInfo(Settings().timezone)).date()
    due = local_day - timedelta(days=DAYS_OVERDUE)
    owed = 10_000 + late_fee(10_000, due, local_day)
    with Gateway.open(settings=Settings(database_url=url)) as gateway:
        for n, channel in enumerate(CHANNELS):
            account_no = f"39{n:08d}"
            gateway.open_account(account_no)
            gateway.issue_bill(
                account_no,
                bill_no=f"{account_no}-seed",
                amount=Money(10_000, CURRENCY),
                period="seed",
                due_date=due,
            )
            gateway.pay(
                PaymentIntent(
                    channel=channel,
                    channel_txn_id=f"SEED-{channel}",
                    account_no=account_no,
                    amount=Money(owed, CURRENCY),
                    paid_at=today,
                )
            )
    with _connect(url) as conn:
        ids = dict(conn.execute("SELECT code, id FROM ledger_accounts").fetchall())
        shards = dict(
            conn.execute(
                "SELECT account_id, count(*) FROM ledger_balances GROUP BY account_id"
            ).fetchall()
        )
    return Fixed(
        energy=ids[ENERGY_CODE],
        late_fee=ids[LATE_FEE_CODE],
        clearing={c: ids[f"clearing:{c}:{CURRENCY}"] for c in CHANNELS},
        shards=shards,
    )


# --- history, loaded with COPY -------------------------------------------------------------

COLUMNS = {
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
    "seal_queue": ("entry_id",),
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
    "payments": (
        "id",
        "channel",
        "channel_txn_id",
        "account_id",
        "amount",
        "currency",
        "paid_at",
        "business_date",
        "fingerprint",
        "terminal_id",
        "entry_id",
        "late_fee",
        "unallocated",
        "status",
        "receipt",
        "posted_at",
    ),
    "allocations": (
        "id",
        "payment_id",
        "bill_id",
        "source",
        "late_fee",
        "principal",
        "created_at",
    ),
    "outbox": (
        "id",
        "event_type",
        "account_no",
        "payload",
        "created_at",
        "available_at",
        "attempts",
        "delivered_at",
    ),
}


@dataclass
class Customer:
    """A customer the bench created: ids of its account and receivable, and its number."""

    account_id: int
    receivable: int
    account_no: str


def _text(value: Any) -> str:
    """One value in COPY's text format (the bench's values hold no tab, newline or backslash)."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@dataclass
class Rows:
    """Lines to COPY (text format), table by table, and what they move on the fixed accounts'
    balances. The history's hot rows are written as lines directly: formatting a tuple per row
    cost more than making it."""

    tables: dict[str, list[str]] = field(default_factory=lambda: {table: [] for table in COLUMNS})
    fixed_deltas: dict[int, int] = field(default_factory=dict)
    postings: int = 0

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.tables[table].append("\t".join(map(_text, row)) + "\n")

    def move(self, account_id: int, amount: int) -> None:
        self.fixed_deltas[account_id] = self.fixed_deltas.get(account_id, 0) + amount


class Ids:
    """Ids taken from paygate's sequence in one block, so the Gateway never hands them out."""

    def __init__(self, conn: psycopg.Connection[Any], count: int) -> None:
        first = conn.execute("SELECT nextval('paygate_id_seq')").fetchone()
        assert first is not None
        self.next = int(first[0])
        self.stop = self.next + count
        # The sequence hands out block starts; the next block must start after ours.
        conn.execute("SELECT setval('paygate_id_seq', %s)", (self.stop + 1000,))

    def take(self) -> int:
        if self.next >= self.stop:
            raise RuntimeError("the bench's id block ran out")
        value, self.next = self.next, self.next + 1
        return value


class MonthIds(Ids):
    """Ids from a past month's own range (partitioned tables): history lands in the partition
    of its month, as it would have had it been written then. The sequence is never there."""

    def __init__(self, start: int, count: int) -> None:
        self.next, self.stop = start, start + count


class History:
    """Generates customers and their paid bills, month by month, with realistic rows."""

    def __init__(self, fixed: Fixed, zone: ZoneInfo, seed: int = 2026) -> None:
        self.fixed = fixed
        self.zone = zone
        self.rng = random.Random(seed)
        self.customers: list[Customer] = []
        self.opened = 0
        self.txn = 0
        self.month_next: dict[date, int] = {}  # next id of a month's range (partitioned)

    def open_customers(
        self, rows: Rows, ids: Ids, count: int, created: datetime, *, history: bool = True
    ) -> list[Customer]:
        """``count`` new customers: history ones (numbers 31…) or fresh payers (32…)."""
        opened = []
        for _ in range(count):
            recv, acct = ids.take(), ids.take()
            self.opened += 1
            account_no = f"{31 if history else 32}{self.opened:08d}"
            rows.add(
                "ledger_accounts",
                (recv, f"receivable:{account_no}", "customer_receivable", CURRENCY, created),
            )
            rows.add("ledger_balances", (recv, 0, 0))
            rows.add(
                "accounts",
                (
                    acct,
                    account_no,
                    None,
                    "residential",
                    False,
                    False,
                    CURRENCY,
                    "connected",
                    recv,
                    created,
                ),
            )
            opened.append(Customer(acct, recv, account_no))
        if history:
            self.customers.extend(opened)
        return opened

    def _instant(self, day: date, hour: int) -> datetime:
        local = datetime(
            day.year, day.month, day.day, hour, self.rng.randrange(60), tzinfo=self.zone
        )
        return local.astimezone(UTC)

    def bill(
        self, rows: Rows, ids: Ids, customer: Customer, issued: date, period: str, principal: int
    ) -> tuple[int, int, str]:
        """An issued bill: its entry and two postings. Returns (bill id, entry id, bill no)."""
        bill_id, entry = ids.take(), ids.take()
        bill_no = f"{customer.account_no}-{period}"
        at = self._instant(issued, 2)
        rows.add(
            "journal_entries",
            (entry, "bill", f"bill:{bill_no}", f"bill {bill_no} for {period}", issued, at),
        )
        rows.add("seal_queue", (entry,))
        rows.add("postings", (ids.take(), entry, customer.receivable, principal, CURRENCY))
        rows.add("postings", (ids.take(), entry, self.fixed.energy, -principal, CURRENCY))
        rows.postings += 2
        rows.move(self.fixed.energy, -principal)
        return bill_id, entry, bill_no

    def paid_bill(self, rows: Rows, ids: Ids, customer: Customer, month: date) -> None:
        """A bill of ``month`` and the payment that paid it in full, on time or late.

        The rows are written as COPY lines and the JSON as templates: this runs millions of
        times, and the same text through tuples and ``json.dumps`` took twice as long."""
        rng = self.rng
        principal = rng.randrange(300, 90_000)
        due = month + timedelta(days=20)
        period = f"{month.year:04d}-{month.month:02d}"
        take = ids.take
        bill_id, bill_entry, bill_leg1, bill_leg2 = take(), take(), take(), take()
        account_no = customer.account_no
        receivable = customer.receivable
        bill_no = f"{account_no}-{period}"
        bill_at = self._instant(month, 2).isoformat()
        entries, postings = rows.tables["journal_entries"], rows.tables["postings"]
        entries.append(
            f"{bill_entry}\tbill\tbill:{bill_no}\tbill {bill_no} for {period}\t{month}\t{bill_at}\n"
        )
        postings.append(f"{bill_leg1}\t{bill_entry}\t{receivable}\t{principal}\t{CURRENCY}\n")
        postings.append(
            f"{bill_leg2}\t{bill_entry}\t{self.fixed.energy}\t{-principal}\t{CURRENCY}\n"
        )
        rows.move(self.fixed.energy, -principal)
        late = rng.random() < LATE_SHARE
        pay_day = (
            due + timedelta(days=rng.randrange(1, 8))
            if late
            else due - timedelta(days=rng.randrange(0, 15))
        )
        fee = late_fee(principal, due, pay_day)
        amount = principal + fee
        channel = CHANNELS[rng.randrange(len(CHANNELS))]
        self.txn += 1
        txn_id = hashlib.blake2b(f"h{self.txn}".encode(), digest_size=10).hexdigest().upper()
        paid_at = self._instant(pay_day, rng.randrange(8, 22))
        posted = (paid_at + timedelta(milliseconds=40)).isoformat()
        payment_id, entry, alloc, ev1, ev2 = take(), take(), take(), take(), take()
        clearing = self.fixed.clearing[channel]
        entries.append(
            f"{entry}\tpayment\tpayment:{channel}:{txn_id}\t{channel} payment for {account_no}"
            f"\t{pay_day}\t{posted}\n"
        )
        queue = rows.tables["seal_queue"]
        queue.append(f"{bill_entry}\n")
        queue.append(f"{entry}\n")
        postings.append(f"{take()}\t{entry}\t{clearing}\t{amount}\t{CURRENCY}\n")
        postings.append(f"{take()}\t{entry}\t{receivable}\t{-amount}\t{CURRENCY}\n")
        rows.move(clearing, amount)
        if fee:
            postings.append(f"{take()}\t{entry}\t{receivable}\t{fee}\t{CURRENCY}\n")
            postings.append(f"{take()}\t{entry}\t{self.fixed.late_fee}\t{-fee}\t{CURRENCY}\n")
            rows.move(self.fixed.late_fee, -fee)
            rows.postings += 6
        else:
            rows.postings += 4
        issued_at = self._instant(month, 2).isoformat()
        through = pay_day if fee else "\\N"
        rows.tables["bills"].append(
            f"{bill_id}\t{customer.account_id}\t{bill_no}\t{period}\t{principal}\t{CURRENCY}"
            f"\t{due}\t{principal}\t{fee}\t{fee}\t{through}\t{bill_entry}\t{issued_at}\n"
        )
        paid = paid_at.isoformat()
        stamp = paid_at.isoformat(timespec="microseconds")
        canonical = f"{account_no}|{amount}|{CURRENCY}|{stamp}|"
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()

        def money(minor: int) -> str:
            return f'{{"minor":{minor},"currency":"{CURRENCY}"}}'

        zero = money(0)
        receipt = (
            f'{{"payment_id":{payment_id},"channel":"{channel}","channel_txn_id":"{txn_id}",'
            f'"account_no":"{account_no}","amount":{money(amount)},"paid_at":"{paid}",'
            f'"business_date":"{pay_day}","replayed":false,"late_fee":{money(fee)},'
            f'"allocations":[{{"bill_no":"{bill_no}","late_fee":{money(fee)},'
            f'"principal":{money(principal)}}}],"credit":{zero},"balance_after":{zero},'
            f'"arrears_after":{zero},"arrears_cleared":true,"reconnection_order_id":null}}'
        )
        rows.tables["payments"].append(
            f"{payment_id}\t{channel}\t{txn_id}\t{customer.account_id}\t{amount}\t{CURRENCY}"
            f"\t{paid}\t{pay_day}\t{fingerprint}\t\\N\t{entry}\t{fee}\t0\tposted\t{receipt}"
            f"\t{posted}\n"
        )
        rows.tables["allocations"].append(
            f"{alloc}\t{payment_id}\t{bill_id}\tpayment\t{fee}\t{principal}\t{posted}\n"
        )
        outbox = rows.tables["outbox"]
        for event_id, kind, data in (
            (ev1, "payment.posted", f'{{"payment_id":{payment_id},"amount":{amount}}}'),
            (
                ev2,
                "arrears.cleared",
                f'{{"payment_id":{payment_id},"supply_state":"connected"}}',
            ),
        ):
            payload = (
                f'{{"event_id":{event_id},"type":"{kind}","account_no":"{account_no}",'
                f'"occurred_at":"{posted}","data":{data}}}'
            )
            outbox.append(
                f"{event_id}\t{kind}\t{account_no}\t{payload}\t{posted}\t{posted}\t1\t{posted}\n"
            )

    def open_bills(
        self, rows: Rows, ids: Ids, customers: Sequence[Customer], today: date
    ) -> list[tuple[Customer, int]]:
        """One open bill ten days overdue for each of ``customers``; their balances move."""
        due = today - timedelta(days=DAYS_OVERDUE)
        issued = due - timedelta(days=20)
        period = f"{today.isoformat()}-open"
        owed = []
        for customer in customers:
            principal = self.rng.randrange(300, 90_000)
            bill_id, entry, bill_no = self.bill(rows, ids, customer, issued, period, principal)
            rows.add(
                "bills",
                (
                    bill_id,
                    customer.account_id,
                    bill_no,
                    period,
                    principal,
                    CURRENCY,
                    due,
                    0,
                    0,
                    0,
                    None,
                    entry,
                    self._instant(issued, 2),
                ),
            )
            owed.append((customer, principal + late_fee(principal, due, today)))
            rows.move(customer.receivable, principal)
        return owed


def copy_rows(
    conn: psycopg.Connection[Any],
    rows: Rows,
    tables: Sequence[str] = tuple(COLUMNS),
    *,
    balances: bool = True,
) -> None:
    """COPY ``rows`` of ``tables`` and (``balances``) move the cached balances, with triggers
    off (the load is trusted and checked afterwards: balances against postings, seals,
    ``verify`` at the end). The caller commits."""
    with conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            columns = COLUMNS[table]
            data = rows.tables[table]
            if not data:
                continue
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for start in range(0, len(data), 5_000):
                    copy.write("".join(data[start : start + 5_000]))
        if not balances:
            return
        cur.executemany(
            "UPDATE ledger_balances SET balance = balance + %s WHERE account_id = %s AND shard = 0",
            [(delta, account_id) for account_id, delta in sorted(rows.fixed_deltas.items())],
        )


# --- priority: the load yields the machine, the measured phases do not ---------------------


class Priority:
    """While loading, this process and the server backends it loads through run at a lower
    priority (``nice``), so that others on a shared machine are not starved; the measured
    phases run at normal priority (their backends are new connections, never reniced)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.active = False
        self.warned = False

    def _set(self, pid: int, level: int) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, level)
        except PermissionError:
            if not self.warned:
                print(f"  (cannot set priority {level}: not permitted)", flush=True)
                self.warned = True

    def backend(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """Lower the priority of ``conn``'s server backend while loading; returns ``conn``."""
        if self.active and self.level:
            self._set(conn.info.backend_pid, self.level)
        return conn

    def __enter__(self) -> Priority:
        if self.level:
            self._set(0, self.level)
        self.active = True
        return self

    def __exit__(self, *_exc: object) -> None:
        self.active = False
        if self.level:
            self._set(0, 0)


PRIORITY = Priority(0)


def _connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return PRIORITY.backend(psycopg.connect(url, autocommit=autocommit))


# --- sealing the loaded history, set-based ---------------------------------------------------

SEAL_BLOCK = 5000  # entries per block: ledger.seal's limit, which Gateway.seal() keeps
SEAL_LOCK = 7303311  # ledger.seal's advisory lock: one sealer at a time

# An entry's hash as paygate.ledger._entry_hash computes it: SHA-256 of the compact JSON array
# [id, kind, reference, memo, business date, posted_at (UTC, microseconds), [[posting id,
# account, amount, currency], ...] by posting id]. to_json escapes a string as json.dumps
# (ensure_ascii off) does: quote, backslash and control characters only.
_ENTRY_JSON = """
    '[' || e.id || ',' || to_json(e.kind) || ',' || to_json(e.reference) || ','
    || to_json(e.memo) || ',"' || to_char(e.business_date, 'YYYY-MM-DD') || '","'
    || to_char(e.posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00",['
    || coalesce(l.legs, '') || ']]'
"""


def seal_queue_set_based(conn: psycopg.Connection[Any]) -> int:
    """Seal every queued entry as ``Gateway.seal()`` would, in one transaction: the queue in
    entry-id order, cut into blocks of ``SEAL_BLOCK``, each block chained to the one before.

    The entry hashes are computed by the server over the whole queue at once; only the chain
    (one SHA-256 per block over its members' hashes) is computed here. ``Gateway.seal()``
    reads each block's entries and postings back by id and hashes them one at a time, which
    took most of the load's time at millions of entries. ``--check-seal`` compares the two
    on a copy of the database, byte for byte.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SEAL_LOCK,))
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute(
            "CREATE TEMP TABLE bench_seal ON COMMIT DROP AS "
            "WITH q AS (SELECT entry_id, (row_number() OVER (ORDER BY entry_id) - 1) / %s AS blk "
            "FROM seal_queue), "
            "l AS (SELECT p.entry_id, string_agg('[' || p.id || ',' || p.account_id || ',' "
            "|| p.amount || ',' || to_json(p.currency) || ']', ',' ORDER BY p.id) AS legs "
            "FROM postings p WHERE p.entry_id IN (SELECT entry_id FROM q) GROUP BY p.entry_id) "
            "SELECT q.entry_id, q.blk, encode(sha256(convert_to("
            f"{_ENTRY_JSON}, 'UTF8')), 'hex') AS hash "
            "FROM q JOIN journal_entries e ON e.id = q.entry_id "
            "LEFT JOIN l ON l.entry_id = q.entry_id",
            (SEAL_BLOCK,),
        )
        last = cur.execute(
            "SELECT block_no, hash FROM seal_blocks ORDER BY block_no DESC LIMIT 1"
        ).fetchone()
        first_no = 1 if last is None else int(last[0]) + 1
        prev = ledger.GENESIS_HASH if last is None else str(last[1])
        blocks: list[tuple[int, str, str, int, int, int, datetime]] = []
        with conn.cursor(name="bench_seal_blocks") as blocks_cur:
            blocks_cur.itersize = 20
            blocks_cur.execute(
                "SELECT blk, count(*), min(entry_id), max(entry_id), "
                "string_agg('|' || entry_id || ':' || hash, '' ORDER BY entry_id) "
                "FROM bench_seal GROUP BY blk ORDER BY blk"
            )
            for blk, count, first, last_id, members in blocks_cur:
                block_no = first_no + int(blk)
                if block_no != first_no + len(blocks):
                    raise RuntimeError(f"seal: block {blk} has no entry left to seal")
                digest = hashlib.sha256(f"{prev}|{block_no}|{count}".encode())
                digest.update(members.encode())
                block_hash = digest.hexdigest()
                blocks.append(
                    (block_no, prev, block_hash, count, first, last_id, datetime.now(UTC))
                )
                prev = block_hash
        cur.executemany(
            "INSERT INTO seal_blocks (block_no, prev_hash, hash, entry_count, first_entry_id, "
            "last_entry_id, sealed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            blocks,
        )
        cur.execute(
            "INSERT INTO journal_seals (entry_id, block_no, entry_hash) "
            "SELECT entry_id, blk + %s, hash FROM bench_seal",
            (first_no,),
        )
        cur.execute("DELETE FROM seal_queue WHERE entry_id IN (SELECT entry_id FROM bench_seal)")
        sealed = sum(int(b[3]) for b in blocks)
    conn.commit()
    return sealed


def seal_digest(url: str) -> tuple[str, str, int]:
    """MD5 of every seal block (all but when it was sealed) and of every entry's seal, in order,
    and the number of entries sealed: what must be equal however the seal was made."""
    with _connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT md5(string_agg(concat_ws(',', block_no, prev_hash, hash, entry_count, "
            "first_entry_id, last_entry_id), ';' ORDER BY block_no)) FROM seal_blocks), "
            "(SELECT md5(string_agg(concat_ws(',', entry_id, block_no, entry_hash), ';' "
            "ORDER BY entry_id)) FROM journal_seals), (SELECT count(*) FROM journal_seals)"
        ).fetchone()
        assert row is not None
        return str(row[0]), str(row[1]), int(row[2])


# Seconds the history load spent making rows, and waiting for COPY beyond that.
LOAD_TIMES = {"generate": 0.0, "copy": 0.0}


# The history's tables in two groups of about the same server work (index entries per row),
# each COPYed through its own connection while the next chunk is made: two cores, used.
COPY_GROUPS = (
    ("journal_entries", "seal_queue", "postings"),
    ("bills", "payments", "allocations", "outbox"),
)


def _copy_group(
    conn: psycopg.Connection[Any], rows: Rows, tables: Sequence[str], balances: bool
) -> None:
    copy_rows(conn, rows, tables, balances=balances)
    conn.commit()


def load_history(
    url: str, history: History, months: Sequence[date], customers: int, chunk: int = 20_000
) -> int:
    """Bills and payments of ``months`` for the first ``customers`` customers; postings written.

    While one chunk is COPYed (its tables in two groups, on two connections, in two threads)
    the next is made; each group commits on its own, and the whole is checked afterwards."""
    written = 0
    with (
        _connect(url) as conn,
        _connect(url) as other,
        ThreadPoolExecutor(max_workers=len(COPY_GROUPS)) as pool,
    ):
        partitioned = conn.execute(
            "SELECT 1 FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid "
            "WHERE c.relname = 'postings'"
        ).fetchone()
        if partitioned:
            with Gateway.open(settings=Settings(database_url=url)) as gateway:
                for month in months:
                    gateway.store.run(lambda tx, m=month: partitions.ensure_month(tx, m))
        if len(history.customers) < customers:
            rows = Rows()
            ids = Ids(conn, 2 * (customers - len(history.customers)))
            created = datetime.combine(months[0], datetime.min.time(), UTC)
            history.open_customers(rows, ids, customers - len(history.customers), created)
            copy_rows(conn, rows)
            conn.commit()
        pending: list[Future[None]] = []

        def wait() -> None:
            started = time.perf_counter()
            for job in pending:
                job.result()
            pending.clear()
            LOAD_TIMES["copy"] += time.perf_counter() - started

        for month in months:
            for start in range(0, customers, chunk):
                part = history.customers[start : min(start + chunk, customers)]
                rows = Rows()
                if partitioned:
                    first = history.month_next.get(month, month_base(month_index(month)))
                    ids: Ids = MonthIds(first, 14 * len(part))
                    history.month_next[month] = first + 14 * len(part)
                else:
                    wait()  # the sequence is read on a connection a COPY may still be using
                    ids = Ids(conn, 14 * len(part))
                started = time.perf_counter()
                for customer in part:
                    history.paid_bill(rows, ids, customer, month)
                LOAD_TIMES["generate"] += time.perf_counter() - started
                wait()
                for group, connection in zip(COPY_GROUPS, (conn, other), strict=True):
                    pending.append(
                        pool.submit(_copy_group, connection, rows, group, connection is conn)
                    )
                written += rows.postings
        wait()
    return written


# --- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One stage: the grown ledger's rates and the empty ledger's, measured side by side."""

    postings: int
    pay_rate: float
    pay_many_rate: float
    empty_pay_rate: float
    empty_pay_many_rate: float

    @property
    def pay_ratio(self) -> float:
        return self.pay_rate / self.empty_pay_rate

    @property
    def pay_many_ratio(self) -> float:
        return self.pay_many_rate / self.empty_pay_many_rate


def _intents(owed: Sequence[tuple[Customer, int]], tag: str) -> list[PaymentIntent]:
    now = datetime.now(UTC)
    return [
        PaymentIntent(
            channel="kiosk",
            channel_txn_id=f"{tag}-{n}",
            account_no=customer.account_no,
            amount=Money(amount, CURRENCY),
            paid_at=now,
        )
        for n, (customer, amount) in enumerate(owed)
    ]


def _all_posted(outcomes: Sequence[PayOutcome]) -> None:
    bad = [o for o in outcomes if o.status != "posted"]
    if bad:
        raise RuntimeError(f"{len(bad)} payments not posted, first: {bad[0]}")


def measure(
    url: str, owed: Sequence[tuple[Customer, int]], n: int, tag: str
) -> tuple[float, float]:
    """pay() ``n`` times one per commit, then pay_many() on the rest; payments per second."""
    intents = _intents(owed, tag)
    warm, single, batch = intents[:WARMUP], intents[WARMUP : WARMUP + n], intents[WARMUP + n :]
    with Gateway.open(settings=Settings(database_url=url)) as gateway:
        for intent in warm:
            gateway.pay(intent)
        start = time.perf_counter()
        for intent in single:
            gateway.pay(intent)
        pay_rate = len(single) / (time.perf_counter() - start)
        start = time.perf_counter()
        _all_posted(gateway.pay_many(batch))
        pay_many_rate = len(batch) / (time.perf_counter() - start)
        gateway.seal()
    return pay_rate, pay_many_rate


# --- plans of what pay() runs --------------------------------------------------------------


EXPLAIN_BATCH = 500  # payments of the pay_many() whose plans --explain captures


def explain(
    url: str, owed: Sequence[tuple[Customer, int]], out: Any, stage: int, side: str
) -> None:
    """Pay bills with auto_explain on: every statement's plan, ANALYZE and BUFFERS, including
    those run inside triggers and foreign-key checks; of one ``pay()`` (the third of ``owed``),
    then of one ``pay_many()`` of the rest."""
    notices: list[str] = []

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        with dbapi_conn.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            for name, value in (
                ("auto_explain.log_min_duration", "0"),
                ("auto_explain.log_analyze", "on"),
                ("auto_explain.log_buffers", "on"),
                ("auto_explain.log_nested_statements", "on"),
                ("auto_explain.log_level", "notice"),
            ):
                cur.execute(f"SET {name} = {value}")
        dbapi_conn.commit()

    event.listen(Engine, "connect", on_connect)
    try:
        intents = _intents(owed, f"X{stage}{side[0]}")
        with Gateway.open(settings=Settings(database_url=url, seal_every=0)) as gateway:
            for intent in intents[:2]:
                gateway.pay(intent)
            notices.clear()
            gateway.pay(intents[2])
            single = list(notices)
            notices.clear()
            _all_posted(gateway.pay_many(intents[3:]))
            many = list(notices)
    finally:
        event.remove(Engine, "connect", on_connect)
    for title, captured in (("one pay()", single), (f"pay_many() of {len(intents) - 3}", many)):
        out.write(f"---- {side}: {title} ----\n")
        for text in captured:
            out.write(text + "\n\n")
        statements, hit, read, server_ms = plan_totals(captured)
        print(
            f"  {side} {title}: {statements} statements, {hit} buffers hit + {read} read, "
            f"{server_ms:.2f} ms of execution in the server (sealing left out)",
            flush=True,
        )
        if captured is many:
            for sql, ms, b_hit, b_read in _top_statements(captured):
                print(f"    {ms:8.1f} ms {b_hit:7d} hit {b_read:6d} read  {sql}", flush=True)


def _top_statements(notices: Sequence[str], top: int = 6) -> list[tuple[str, float, int, int]]:
    """The statements that spent the most server time, by their first words, with buffers."""
    totals: dict[str, list[float]] = {}
    for text in notices:
        duration = re.search(r"duration: ([\d.]+) ms", text)
        query = re.search(r"Query Text: (.*)", text)
        if duration is None or query is None:
            continue
        key = " ".join(query.group(1).split())[:70]
        buffers = re.search(r"Buffers: shared([^\n]*)", text)
        hits = re.search(r"hit=(\d+)", buffers.group(1)) if buffers else None
        reads = re.search(r"read=(\d+)", buffers.group(1)) if buffers else None
        row = totals.setdefault(key, [0.0, 0, 0])
        row[0] += float(duration.group(1))
        row[1] += int(hits.group(1)) if hits else 0
        row[2] += int(reads.group(1)) if reads else 0
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
    return [(sql, ms, int(h), int(r)) for sql, (ms, h, r) in ranked]


_SEALING = ("advisory", "seal_blocks", "journal_seals", "FROM seal_queue", "WHERE id IN (")
_SEALING_LEGS = "WHERE entry_id IN ("


def plan_totals(notices: Sequence[str]) -> tuple[int, int, int, float]:
    """Statements, shared buffers hit and read, and execution time of one payment's plans:
    the top node of each statement (foreign-key checks and triggers are statements of their
    own), leaving out a seal that ran in the same call."""
    statements = hit = read = 0
    server_ms = 0.0
    for text in notices:
        duration = re.search(r"duration: ([\d.]+) ms", text)
        query = re.search(r"Query Text: (.*)", text)
        sql = query.group(1) if query else ""
        if duration is None or any(k in sql for k in _SEALING) or _SEALING_LEGS in sql:
            continue
        statements += 1
        server_ms += float(duration.group(1))
        buffers = re.search(r"Buffers: shared([^\n]*)", text)
        if buffers:
            hits = re.search(r"hit=(\d+)", buffers.group(1))
            reads = re.search(r"read=(\d+)", buffers.group(1))
            hit += int(hits.group(1)) if hits else 0
            read += int(reads.group(1)) if reads else 0
    return statements, hit, read, server_ms


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Plan:
    stages: tuple[int, ...]
    customers: int
    n: int
    batch: int
    rounds: int
    nice: int = 10
    check_seal: bool = False


def _admin(url: str, sql: str) -> None:
    with _connect(url, autocommit=True) as conn:
        conn.execute(sql)


def _check_balances(url: str) -> None:
    """Cached balances equal the sum of postings, account by account (cheap beside verify)."""
    with _connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT account_id, sum(balance) b FROM ledger_balances "
            "GROUP BY account_id) c FULL JOIN (SELECT account_id, sum(amount) s FROM postings "
            "GROUP BY account_id) p USING (account_id) WHERE coalesce(b, 0) <> coalesce(s, 0)"
        ).fetchone()
        assert row is not None
        if row[0]:
            raise RuntimeError(f"CHECK FAILED: {row[0]} cached balances differ from postings")


def _load() -> str:
    """The load average over 1, 5 and 15 minutes, as ``uptime`` prints it."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _scalar(url: str, sql: str) -> Any:
    with _connect(url) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


class Databases:
    """The grown database, the empty template, and the empty copies, all dropped at the end."""

    def __init__(self, admin: str, keep: bool) -> None:
        self.admin, self.keep = admin, keep
        self.prefix = f"paygate_growth_{os.getpid()}"
        self.made: list[str] = []

    def url(self, suffix: str) -> str:
        name = f"{self.prefix}_{suffix}"
        return make_url(self.admin).set(database=name).render_as_string(hide_password=False)

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        like = f" TEMPLATE {self.prefix}_{template} STRATEGY file_copy" if template else ""
        _admin(self.admin, f"CREATE DATABASE {name}{like}")
        self.made.append(name)
        return self.url(suffix)

    def drop(self, suffix: str) -> None:
        name = f"{self.prefix}_{suffix}"
        _admin(self.admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.made.remove(name)

    def close(self, keep_suffix: str) -> None:
        for name in list(self.made):
            if self.keep and name.endswith(f"_{keep_suffix}"):
                print(f"kept database {name}")
                continue
            _admin(self.admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pay_bills(url: str, history: History, payers: Sequence[Customer], today: date) -> Any:
    rows = Rows()
    with _connect(url) as conn:
        ids = Ids(conn, 6 * len(payers) + 10)
        owed = history.open_bills(rows, ids, payers, today)
        copy_rows(conn, rows)
    return owed


@dataclass
class Settled:
    """What settling a stage took: entries sealed, and the seconds of each step."""

    sealed: int
    seal_seconds: float
    vacuum_seconds: float
    check_seconds: float
    gateway_seal_seconds: float | None = None  # Gateway.seal() on a copy (--check-seal)


def _settle(dbs: Databases, suffix: str, *, check_seal: bool) -> Settled:
    """Seal what is unsealed (set-based), vacuum and analyze, check the balances: as
    production would be. With ``check_seal`` a copy of the database is sealed by
    ``Gateway.seal()`` first and both seals are compared byte for byte."""
    url = dbs.url(suffix)
    gateway_seconds = None
    if check_seal:
        copy_url = dbs.create("sealcheck", template=suffix)
        started = time.perf_counter()
        with Gateway.open(settings=Settings(database_url=copy_url)) as gateway:
            gateway.seal()
        gateway_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with _connect(url) as conn:
        sealed = seal_queue_set_based(conn)
    seal_seconds = time.perf_counter() - started
    if check_seal:
        mine, theirs = seal_digest(url), seal_digest(copy_url)
        dbs.drop("sealcheck")
        if mine != theirs:
            raise RuntimeError(f"CHECK FAILED: set-based seal {mine} != Gateway.seal() {theirs}")
        print(
            f"  seal check: {mine[2]:,} sealed entries, blocks and entry hashes identical to "
            f"Gateway.seal()'s ({gateway_seconds:.1f} s there, {seal_seconds:.1f} s set-based)",
            flush=True,
        )
    started = time.perf_counter()
    _admin(url, "VACUUM (ANALYZE)")
    vacuum_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _check_balances(url)
    return Settled(
        sealed, seal_seconds, vacuum_seconds, time.perf_counter() - started, gateway_seconds
    )


def run(admin: str, plan: Plan, *, keep: bool, verify: bool, explain_to: Any) -> list[Figure]:
    dbs = Databases(admin, keep)
    figures: list[Figure] = []
    zone = ZoneInfo(Settings().timezone)
    today = datetime.now(UTC).astimezone(zone).date()
    per_round = WARMUP + plan.n + plan.batch
    try:
        # The empty ledger: migrated, seeded, fresh payers with one overdue bill each. Every
        # stage measures a new copy of it beside the grown ledger, so that both figures share
        # the machine's conditions of the moment.
        empty_url = dbs.create("empty")
        migrate.upgrade(empty_url)
        empty_history = History(seed(empty_url), zone)
        with _connect(empty_url) as conn:
            rows = Rows()
            ids = Ids(conn, 2 * per_round)
            empty_payers = empty_history.open_customers(
                rows, ids, per_round, datetime.now(UTC), history=False
            )
            copy_rows(conn, rows)
        empty_owed = _pay_bills(empty_url, empty_history, empty_payers, today)
        _settle(dbs, "empty", check_seal=plan.check_seal)

        url = dbs.create("grown")
        migrate.upgrade(url)
        history = History(seed(url), zone)
        per_month = plan.customers * (2 + (1 - LATE_SHARE) * 2 + LATE_SHARE * 4)
        next_back = max(1, round(plan.stages[-1] / per_month))  # months back, oldest first
        PRIORITY.level = plan.nice
        load_seconds = settle_seconds = 0.0
        used = 0  # history customers already given a measured bill
        for stage, target in enumerate(plan.stages):
            have = int(_scalar(url, "SELECT count(*) FROM postings"))
            months: list[date] = []
            while have + len(months) * per_month < target and next_back > 0:
                months.append(month_start(today, next_back))
                next_back -= 1
            with PRIORITY:
                started = time.perf_counter()
                if months:
                    load_history(url, history, months, plan.customers)
                loaded = time.perf_counter() - started
                load_seconds += loaded
                extra = 3 + EXPLAIN_BATCH if explain_to is not None else 0
                want = per_round * plan.rounds + extra
                if used + want <= len(history.customers):
                    payers = history.customers[used : used + want]  # customers with history
                    used += want
                else:
                    with _connect(url) as conn:
                        rows = Rows()
                        fresh = history.open_customers(
                            rows, Ids(conn, 2 * want), want, datetime.now(UTC), history=False
                        )
                        copy_rows(conn, rows)
                    payers = fresh
                owed = _pay_bills(url, history, payers, today)
                settled = _settle(dbs, "grown", check_seal=plan.check_seal)
                settle_seconds += settled.seal_seconds + settled.vacuum_seconds
                postings = int(_scalar(url, "SELECT count(*) FROM postings"))
                size = _scalar(url, "SELECT pg_database_size(current_database())")
            print(
                f"stage {stage}: {postings:,} postings ({size / 2**30:.2f} GiB); loaded "
                f"{len(months)} months in {loaded:.0f} s (so far rows made in "
                f"{LOAD_TIMES['generate']:.0f} s, COPY waited for {LOAD_TIMES['copy']:.0f} s); "
                f"sealed {settled.sealed:,} entries in "
                f"{settled.seal_seconds:.0f} s, vacuumed and analyzed in "
                f"{settled.vacuum_seconds:.0f} s, balances checked in "
                f"{settled.check_seconds:.0f} s; load average {_load()}",
                flush=True,
            )
            if explain_to is not None:
                explain_to.write(f"==== stage {stage}: {postings:,} postings ====\n")
                explain(url, owed[-extra:], explain_to, stage, "grown")
                owed = owed[:-extra]
                copy_url = dbs.create("copy", template="empty")
                explain(copy_url, empty_owed[-extra:], explain_to, stage, "empty")
                dbs.drop("copy")
            grown: list[tuple[float, float]] = []
            empty: list[tuple[float, float]] = []
            for r in range(plan.rounds):
                mine = owed[r * per_round : (r + 1) * per_round]
                for side in ("grown", "empty") if r % 2 == 0 else ("empty", "grown"):
                    if side == "grown":
                        _admin(url, "CHECKPOINT")
                        grown.append(measure(url, mine, plan.n, f"G{stage}R{r}"))
                    else:
                        copy_url = dbs.create("copy", template="empty")
                        _admin(copy_url, "CHECKPOINT")
                        empty.append(measure(copy_url, empty_owed, plan.n, "E"))
                        dbs.drop("copy")
            figure = Figure(
                postings,
                max(g[0] for g in grown),
                max(g[1] for g in grown),
                max(e[0] for e in empty),
                max(e[1] for e in empty),
            )
            figures.append(figure)
            print(
                f"  pay()      {figure.pay_rate:8.1f}/s  empty {figure.empty_pay_rate:8.1f}/s  "
                f"ratio {figure.pay_ratio:5.2f}\n"
                f"  pay_many() {figure.pay_many_rate:8.1f}/s  empty "
                f"{figure.empty_pay_many_rate:8.1f}/s  ratio {figure.pay_many_ratio:5.2f}\n"
                f"  rounds (pay, pay_many) grown {_rounds(grown)}, empty {_rounds(empty)}; "
                f"load average {_load()}",
                flush=True,
            )
        print(
            f"history load (COPY, all stages): {load_seconds:.0f} s; "
            f"sealing, vacuum and analyze: {settle_seconds:.0f} s"
        )
        if verify:
            started = time.perf_counter()
            with Gateway.open(settings=Settings(database_url=url)) as gateway:
                report = gateway.verify()
            print(
                f"verify: {'clean' if report.ok else 'FINDINGS'} over {report.entries:,} entries "
                f"in {time.perf_counter() - started:.0f} s"
            )
            if not report.ok:
                raise RuntimeError(f"CHECK FAILED: verify: {report.findings[:3]}")
    finally:
        dbs.close("grown")
    return figures


def _rounds(rates: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{a:.0f}/{b:.0f}" for a, b in rates)


def _table(figures: Sequence[Figure]) -> Iterator[str]:
    base = figures[0]
    yield (
        "| postings | pay()/s | empty | ratio | vs stage 0 | pay_many()/s | empty | ratio "
        "| vs stage 0 |"
    )
    yield "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for f in figures:
        yield (
            f"| {f.postings:,} | {f.pay_rate:.0f} | {f.empty_pay_rate:.0f} | {f.pay_ratio:.2f} "
            f"| {f.pay_rate / base.pay_rate:.2f} | {f.pay_many_rate:.0f} "
            f"| {f.empty_pay_many_rate:.0f} | {f.pay_many_ratio:.2f} "
            f"| {f.pay_many_rate / base.pay_many_rate:.2f} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="stages 0, 50 k, 200 k postings")
    parser.add_argument("--stages", help="comma-separated posting counts (first should be 0)")
    parser.add_argument("--customers", type=int, help="customers in the history")
    parser.add_argument("--n", type=int, help="pay() payments measured per stage")
    parser.add_argument("--batch", type=int, help="pay_many() payments measured per stage")
    parser.add_argument("--rounds", type=int, help="rounds per stage; the best is kept")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="admin connection")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--no-verify", action="store_true", help="skip the final verify")
    parser.add_argument("--explain", metavar="FILE", help="write pay()'s plans per stage here")
    parser.add_argument(
        "--nice", type=int, default=10, help="priority of the load phases (0: unchanged)"
    )
    parser.add_argument(
        "--check-seal",
        action="store_true",
        help="at each stage also seal a copy with Gateway.seal() and compare the two seals",
    )
    args = parser.parse_args(argv)
    if args.quick:
        plan = Plan((0, 50_000, 200_000), 10_000, 300, 1_500, 1)
    else:
        plan = Plan((0, 1_000_000, 3_000_000, 10_000_000), 100_000, 1_500, 6_000, 2)
    if args.stages:
        plan.stages = tuple(int(s) for s in args.stages.split(","))
    plan.customers = args.customers or plan.customers
    plan.n = args.n or plan.n
    plan.batch = args.batch or plan.batch
    plan.rounds = args.rounds or plan.rounds
    plan.nice, plan.check_seal = args.nice, args.check_seal
    out = open(args.explain, "w") if args.explain else None  # noqa: SIM115
    try:
        figures = run(args.pg_url, plan, keep=args.keep, verify=not args.no_verify, explain_to=out)
    finally:
        if out is not None:
            out.close()
    print("\n".join(_table(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
