"""The double-entry ledger: accounts, journal entries, postings, balances, seals.

Invariants this module keeps (and the database refuses to break, see the first migration):

* every journal entry has at least two postings, none of them zero, and they sum to zero per
  currency; an entry is checked here before it is written;
* the journal is append-only: a correction is a new, reversing entry;
* a cached balance always equals the sum of the account's postings. Balances are kept in
  shards so that a busy account (a channel's clearing account) is not one hot row: the balance
  is the sum of its shards, and a posting lands on the shard its ``shard_key`` picks;
* entries are sealed after they commit, in blocks whose SHA-256 hashes chain: editing or
  deleting a posting or an entry is detected by :func:`verify`.

Posting amounts are signed integers of minor units: positive is a debit, negative a credit.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

from paygate.errors import LedgerError
from paygate.store.engine import RowSet, Tx

__all__ = [
    "BALANCE_SHARDS",
    "AccountKind",
    "EntryDraft",
    "Finding",
    "LedgerAccounts",
    "PostingDraft",
    "account_balance",
    "open_receivables",
    "post",
    "post_sets",
    "seal",
    "verify",
]

BALANCE_SHARDS = 16
GENESIS_HASH = "0" * 64


class AccountKind(StrEnum):
    """What a ledger account records."""

    CUSTOMER_RECEIVABLE = "customer_receivable"
    CHANNEL_CLEARING = "channel_clearing"
    BANK = "bank"
    ENERGY_REVENUE = "energy_revenue"
    LATE_FEE_REVENUE = "late_fee_revenue"
    CHANNEL_FEES = "channel_fees"
    VOUCHER_LIABILITY = "voucher_liability"
    SUSPENSE = "suspense"
    REFUNDS_PAYABLE = "refunds_payable"


def shards_for(kind: AccountKind) -> int:
    """How many balance shards an account of ``kind`` has."""
    # A customer's receivable is only ever written under that customer's row lock.
    return 1 if kind is AccountKind.CUSTOMER_RECEIVABLE else BALANCE_SHARDS


@dataclass(frozen=True, slots=True)
class PostingDraft:
    """One leg of an entry: ``amount`` minor units on ``account_id`` (+ debit, - credit)."""

    account_id: int
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """A journal entry to be posted."""

    kind: str
    reference: str
    memo: str
    business_date: date
    posted_at: datetime
    postings: tuple[PostingDraft, ...]
    shard_key: int = 0
    entry_id: int | None = None


def check_entry(entry: EntryDraft) -> None:
    """Refuse an entry that would not balance."""
    if len(entry.postings) < 2:
        raise LedgerError(f"entry {entry.reference!r} needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for leg in entry.postings:
        if type(leg.amount) is not int:
            raise LedgerError(f"entry {entry.reference!r}: posting amount is not an integer")
        if leg.amount == 0:
            raise LedgerError(f"entry {entry.reference!r}: a posting of zero")
        totals[leg.currency] += leg.amount
    for currency, total in totals.items():
        if total != 0:
            raise LedgerError(
                f"entry {entry.reference!r} does not balance in {currency}: postings sum to {total}"
            )


class LedgerAccounts:
    """Finds or creates ledger accounts by code, remembering their ids and shard counts.

    ``now`` dates the accounts it creates: the Gateway's clock, so that an account opened by
    a decision carries the decision's time (the machine's clock if not given).
    """

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or _utcnow
        self._ids: dict[str, int] = {}
        self._shards: dict[int, int] = {}

    def shards(self, account_id: int) -> int:
        """The shard count of an account this cache has seen (1 if unknown: customer)."""
        return self._shards.get(account_id, 1)

    def remember(self, code: str, account_id: int, kind: AccountKind) -> None:
        """Record an account created elsewhere (a customer's receivable)."""
        self._ids[code] = account_id
        self._shards[account_id] = shards_for(kind)

    def ensure(self, tx: Tx, code: str, kind: AccountKind, currency: str) -> int:
        """Return the id of the account ``code``, creating it (race-free) if it is new."""
        cached = self._ids.get(code)
        if cached is not None:
            return cached
        # Created by this very transaction: known to it alone until it commits.
        created: dict[str, int] = tx.memo.setdefault("ledger_accounts", {})
        if code in created:
            return created[code]
        row = tx.one("SELECT id, kind FROM ledger_accounts WHERE code = :code", {"code": code})
        if row is None:
            new_id = tx.ids.one()
            tx.execute(
                "INSERT INTO ledger_accounts (id, code, kind, currency, created_at) "
                "VALUES (:id, :code, :kind, :currency, :now) ON CONFLICT (code) DO NOTHING",
                {
                    "id": new_id,
                    "code": code,
                    "kind": kind.value,
                    "currency": currency,
                    "now": tx.ts(self._now()),
                },
            )
            row = tx.one("SELECT id, kind FROM ledger_accounts WHERE code = :code", {"code": code})
            assert row is not None
            if int(row[0]) == new_id:
                tx.many(
                    "INSERT INTO ledger_balances (account_id, shard, balance) VALUES (:a, :s, 0)",
                    [{"a": new_id, "s": s} for s in range(shards_for(kind))],
                )
                # Remembered once committed: until then the row may still roll back.
                self._shards[new_id] = shards_for(kind)
                created[code] = new_id
                tx.after_commit(lambda: self.remember(code, new_id, kind))
                return new_id
        account_id = int(row[0])
        if AccountKind(row[1]) is not kind:
            raise LedgerError(f"ledger account {code!r} exists with kind {row[1]}, not {kind}")
        # Remembered once committed: the row found may be this transaction's own insert (a
        # second payment of the channel in one transaction), which a rollback takes away.
        tx.after_commit(lambda: self.remember(code, account_id, kind))
        return account_id


def _utcnow() -> datetime:
    return datetime.now(UTC)


def open_receivables(tx: Tx, staging: str, *, only_new_accounts: bool, now: datetime) -> None:
    """Create a customer receivable account, with its one balance shard, for each row of the
    billing run's staging table ``staging`` (columns ``ledger_id, code, currency,
    account_no``), as :meth:`LedgerAccounts.ensure` would one by one; codes already stored are
    left as they are. ``only_new_accounts`` filters out rows whose customer account is already
    stored (a probe per row, so only where the run found some). ``now`` dates the accounts."""
    known = (
        " AND NOT EXISTS (SELECT 1 FROM accounts x WHERE x.account_no = s.account_no)"
        if only_new_accounts
        else ""
    )
    ledger_rows = (
        "INSERT INTO ledger_accounts (id, code, kind, currency, created_at) "  # noqa: S608
        f"SELECT s.ledger_id, s.code, :kind, s.currency, :at FROM {staging} s "
        f"WHERE true{known} ON CONFLICT (code) DO NOTHING"
    )
    params = {"kind": AccountKind.CUSTOMER_RECEIVABLE.value, "at": tx.ts(now)}
    if tx.dialect == "postgresql":
        tx.execute(
            f"WITH new AS ({ledger_rows} RETURNING id) INSERT INTO ledger_balances "  # noqa: S608
            "(account_id, shard, balance) SELECT id, 0, 0 FROM new",
            params,
        )
    else:
        tx.execute(ledger_rows, params)
        tx.execute(
            "INSERT INTO ledger_balances (account_id, shard, balance) "  # noqa: S608
            f"SELECT s.ledger_id, 0, 0 FROM {staging} s "
            "JOIN ledger_accounts l ON l.id = s.ledger_id WHERE true"
        )


def post(tx: Tx, entries: Sequence[EntryDraft], shards: LedgerAccounts) -> list[int]:
    """Write ``entries`` and move the cached balances; return the new entry ids.

    Set-based, whatever the number of entries: on PostgreSQL the entries, their postings and
    the balance shards are one statement (the database checks balance per statement), on
    SQLite one ``executemany`` each. See :func:`post_sets` to write them with other rows.
    """
    entry_ids, sets = post_sets(tx, entries, shards)
    tx.write(sets)
    return entry_ids


ENTRY_COLUMNS = ("id", "kind", "reference", "memo", "business_date", "posted_at")
ENTRY_TYPES = ("bigint", "text", "text", "text", "date", "timestamptz")
POSTING_COLUMNS = ("id", "entry_id", "account_id", "amount", "currency")
POSTING_TYPES = ("bigint", "bigint", "bigint", "bigint", "text")

# Balance shards are locked in (account, shard) order by the subquery's ORDER BY … FOR UPDATE,
# whatever join the planner picks for the update itself: concurrent posters cannot deadlock.
_BALANCES_PG = (
    "UPDATE ledger_balances b SET balance = b.balance + d.delta FROM ("
    "SELECT l.account_id, l.shard, x.delta FROM ledger_balances l "
    "JOIN {rows} AS x(delta, account_id, shard) "
    "ON l.account_id = x.account_id AND l.shard = x.shard "
    "ORDER BY l.account_id, l.shard FOR UPDATE OF l) d "
    "WHERE b.account_id = d.account_id AND b.shard = d.shard"
)
_BALANCES_SQLITE = (
    "UPDATE ledger_balances SET balance = balance + ? WHERE account_id = ? AND shard = ?"
)


def post_sets(
    tx: Tx, entries: Sequence[EntryDraft], shards: LedgerAccounts
) -> tuple[list[int], list[RowSet]]:
    """Check ``entries`` and return their ids with the row sets that post them (journal
    entries, postings, balance deltas), for :meth:`~paygate.store.engine.Tx.write` to write
    alone or in one statement with a decision's other rows."""
    if not entries:
        return [], []
    for entry in entries:
        check_entry(entry)
    n_postings = sum(len(e.postings) for e in entries)
    missing = sum(1 for e in entries if e.entry_id is None)
    ids = tx.ids.take(missing + n_postings)
    fresh = iter(ids[:missing])
    entry_ids = [e.entry_id if e.entry_id is not None else next(fresh) for e in entries]
    posting_ids = iter(ids[missing:])
    entry_rows = []
    posting_rows = []
    deltas: dict[tuple[int, int], int] = defaultdict(int)
    for entry_id, entry in zip(entry_ids, entries, strict=True):
        entry_rows.append(
            (
                entry_id,
                entry.kind,
                entry.reference,
                entry.memo,
                tx.day(entry.business_date),
                tx.ts(entry.posted_at),
            )
        )
        for leg in entry.postings:
            posting_rows.append(
                (next(posting_ids), entry_id, leg.account_id, leg.amount, leg.currency)
            )
            shard = entry.shard_key % shards.shards(leg.account_id)
            deltas[(leg.account_id, shard)] += leg.amount
    return entry_ids, [
        RowSet.insert("journal_entries", ENTRY_COLUMNS, ENTRY_TYPES, entry_rows),
        RowSet.insert("postings", POSTING_COLUMNS, POSTING_TYPES, posting_rows),
        balance_set(deltas),
    ]


def balance_set(deltas: dict[tuple[int, int], int]) -> RowSet:
    """The row set adding ``deltas`` to the balance shards, in key order."""
    rows = [
        (delta, account_id, shard)
        for (account_id, shard), delta in sorted(deltas.items())
        if delta != 0
    ]
    return RowSet(_BALANCES_PG, _BALANCES_SQLITE, ("bigint", "bigint", "int"), rows)


def apply_balance_deltas(tx: Tx, deltas: dict[tuple[int, int], int]) -> None:
    """Add ``deltas`` to the balance shards, in key order (no deadlock between posters)."""
    tx.write([balance_set(deltas)])


def account_balance(tx: Tx, account_id: int) -> int:
    """The cached balance of an account: the sum of its shards."""
    value = tx.scalar(
        "SELECT COALESCE(SUM(balance), 0) FROM ledger_balances WHERE account_id = :a",
        {"a": account_id},
    )
    return int(value)


# --- sealing --------------------------------------------------------------------------------


def _entry_hash(entry: tuple[object, ...], legs: Iterable[tuple[object, ...]], tx: Tx) -> str:
    entry_id, kind, reference, memo, business_date, posted_at = entry
    canonical = [
        int(str(entry_id)),
        kind,
        reference,
        memo,
        tx.read_day(business_date).isoformat(),
        tx.read_ts(posted_at).isoformat(timespec="microseconds"),
        [[int(str(p)), int(str(a)), int(str(m)), c] for p, a, m, c in legs],
    ]
    data = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def _block_hash(prev_hash: str, block_no: int, pairs: Sequence[tuple[int, str]]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{prev_hash}|{block_no}|{len(pairs)}".encode())
    for entry_id, entry_hash in pairs:
        digest.update(f"|{entry_id}:{entry_hash}".encode())
    return digest.hexdigest()


def _load_entries(tx: Tx, entry_ids: Sequence[int]) -> dict[int, str]:
    """Entry hashes for ``entry_ids`` (those that still exist)."""
    hashes: dict[int, str] = {}
    for start in range(0, len(entry_ids), 500):
        part = list(entry_ids[start : start + 500])
        if tx.dialect == "postgresql":
            # One array parameter: a list of 500 parameters cost more to plan (and to prune
            # the partitions for) than reading the rows.
            params: dict[str, object] = {"ids": part}
            where = "= ANY(:ids)"
        else:
            params = {f"e{i}": v for i, v in enumerate(part)}
            where = "IN (" + ", ".join(f":e{i}" for i in range(len(part))) + ")"
        entries = tx.all(
            "SELECT id, kind, reference, memo, business_date, posted_at "  # noqa: S608
            f"FROM journal_entries WHERE id {where}",
            params,
        )
        legs: dict[int, list[tuple[object, ...]]] = defaultdict(list)
        for row in tx.all(
            "SELECT entry_id, id, account_id, amount, currency FROM postings "  # noqa: S608
            f"WHERE entry_id {where} ORDER BY id",
            params,
        ):
            legs[int(row[0])].append(tuple(row[1:]))
        for entry in entries:
            hashes[int(entry[0])] = _entry_hash(tuple(entry), legs[int(entry[0])], tx)
    return hashes


def seal(tx: Tx, now: datetime, *, limit: int = 5000, wait: bool = True) -> int:
    """Seal up to ``limit`` committed, unsealed entries into one new block; return how many.

    Runs in its own transaction after payments commit, never inside one. On PostgreSQL one
    sealer at a time holds an advisory lock; with ``wait=False`` a busy sealer is left alone.
    """
    if tx.dialect == "postgresql":
        if wait:
            tx.execute("SELECT pg_advisory_xact_lock(7303311)")
        elif not tx.scalar("SELECT pg_try_advisory_xact_lock(7303311)"):
            return 0
    queued = [
        int(r[0])
        for r in tx.all("SELECT entry_id FROM seal_queue ORDER BY entry_id LIMIT :n", {"n": limit})
    ]
    if not queued:
        return 0
    hashes = _load_entries(tx, queued)
    pairs = [(entry_id, hashes[entry_id]) for entry_id in queued if entry_id in hashes]
    last = tx.one("SELECT block_no, hash FROM seal_blocks ORDER BY block_no DESC LIMIT 1")
    block_no = 1 if last is None else int(last[0]) + 1
    prev_hash = GENESIS_HASH if last is None else str(last[1])
    block_hash = _block_hash(prev_hash, block_no, pairs)
    tx.execute(
        "INSERT INTO seal_blocks (block_no, prev_hash, hash, entry_count, first_entry_id, "
        "last_entry_id, sealed_at) VALUES (:b, :p, :h, :n, :first, :last, :at)",
        {
            "b": block_no,
            "p": prev_hash,
            "h": block_hash,
            "n": len(pairs),
            "first": pairs[0][0],
            "last": pairs[-1][0],
            "at": tx.ts(now),
        },
    )
    tx.insert(
        "journal_seals",
        ("entry_id", "block_no", "entry_hash"),
        [(entry_id, block_no, entry_hash) for entry_id, entry_hash in pairs],
    )
    if tx.dialect == "postgresql":
        tx.execute("DELETE FROM seal_queue WHERE entry_id = ANY(:ids)", {"ids": queued})
    else:
        tx.many("DELETE FROM seal_queue WHERE entry_id = :e", [{"e": e} for e in queued])
    return len(pairs)


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``verify`` found wrong, naming the entry, account or block."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` checked and found."""

    entries: int = 0
    accounts: int = 0
    blocks: int = 0
    sealed_entries: int = 0
    unsealed_entries: int = 0
    findings: list[Finding] = field(default_factory=list)
    head_block: int | None = None
    head_hash: str | None = None  # the latest block's hash: what operators record elsewhere
    block_hashes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.findings


def verify(tx: Tx) -> VerifyReport:
    """Recompute every balance and entry sum from the postings, and every seal from the entries."""
    report = VerifyReport()
    report.entries = int(tx.scalar("SELECT COUNT(*) FROM journal_entries"))
    for entry_id, currency, total in tx.all(
        "SELECT entry_id, currency, SUM(amount) FROM postings GROUP BY entry_id, currency "
        "HAVING SUM(amount) <> 0 ORDER BY entry_id"
    ):
        report.findings.append(
            Finding("unbalanced_entry", f"entry {entry_id}", f"{currency} postings sum to {total}")
        )
    for (entry_id,) in tx.all(
        "SELECT e.id FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id "
        "GROUP BY e.id HAVING COUNT(p.id) < 2 ORDER BY e.id"
    ):
        report.findings.append(
            Finding("short_entry", f"entry {entry_id}", "fewer than two postings")
        )
    cached = {
        int(a): int(b)
        for a, b in tx.all(
            "SELECT account_id, SUM(balance) FROM ledger_balances GROUP BY account_id"
        )
    }
    computed = {
        int(a): int(b)
        for a, b in tx.all("SELECT account_id, SUM(amount) FROM postings GROUP BY account_id")
    }
    codes = {int(a): str(c) for a, c in tx.all("SELECT id, code FROM ledger_accounts")}
    report.accounts = len(codes)
    for account_id in sorted(set(cached) | set(computed) | set(codes)):
        want, have = computed.get(account_id, 0), cached.get(account_id, 0)
        if want != have:
            report.findings.append(
                Finding(
                    "balance_mismatch",
                    f"account {codes.get(account_id, account_id)}",
                    f"cached {have}, postings sum to {want}",
                )
            )
    _verify_seals(tx, report)
    return report


def _verify_seals(tx: Tx, report: VerifyReport) -> None:
    prev_hash = GENESIS_HASH
    expected_no = 1
    for block_no, block_prev, block_hash, count in tx.all(
        "SELECT block_no, prev_hash, hash, entry_count FROM seal_blocks ORDER BY block_no"
    ):
        report.blocks += 1
        subject = f"seal block {block_no}"
        if int(block_no) != expected_no:
            report.findings.append(Finding("seal_gap", subject, f"expected block {expected_no}"))
        expected_no = int(block_no) + 1
        if block_prev != prev_hash:
            report.findings.append(
                Finding("seal_chain", subject, "previous-hash link does not match")
            )
        members = [
            (int(e), str(h))
            for e, h in tx.all(
                "SELECT entry_id, entry_hash FROM journal_seals WHERE block_no = :b "
                "ORDER BY entry_id",
                {"b": block_no},
            )
        ]
        report.sealed_entries += len(members)
        if len(members) != int(count):
            report.findings.append(
                Finding(
                    "seal_members", subject, f"{len(members)} sealed entries, block says {count}"
                )
            )
        current = _load_entries(tx, [e for e, _ in members])
        for entry_id, sealed_hash in members:
            now_hash = current.get(entry_id)
            if now_hash is None:
                report.findings.append(
                    Finding("entry_deleted", f"entry {entry_id}", f"sealed in block {block_no}")
                )
            elif now_hash != sealed_hash:
                report.findings.append(
                    Finding("entry_altered", f"entry {entry_id}", f"differs from block {block_no}")
                )
        if _block_hash(str(block_prev), int(block_no), members) != block_hash:
            report.findings.append(Finding("seal_hash", subject, "block hash does not match"))
        prev_hash = str(block_hash)
        report.head_block, report.head_hash = int(block_no), prev_hash
        report.block_hashes[prev_hash] = int(block_no)
    report.unsealed_entries = int(tx.scalar("SELECT COUNT(*) FROM seal_queue"))
    orphans = tx.scalar(
        "SELECT COUNT(*) FROM journal_entries e WHERE NOT EXISTS "
        "(SELECT 1 FROM journal_seals s WHERE s.entry_id = e.id) AND NOT EXISTS "
        "(SELECT 1 FROM seal_queue q WHERE q.entry_id = e.id)"
    )
    if orphans:
        report.findings.append(
            Finding("entry_unaccounted", "journal", f"{orphans} entries neither sealed nor queued")
        )


def iter_findings(report: VerifyReport) -> Iterator[str]:
    """The findings of a report as text lines."""
    for finding in report.findings:
        yield str(finding)


def entry_count(tx: Tx) -> int:
    """How many journal entries the ledger holds: a count that moves whenever money does."""
    return int(tx.scalar("SELECT COUNT(*) FROM journal_entries"))
