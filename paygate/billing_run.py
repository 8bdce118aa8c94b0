"""The billing run: opening accounts and issuing bills by the hundred thousand.

Invariant: a bill written by a run has every effect :meth:`Accounts.issue_bill
<paygate.accounts.Accounts.issue_bill>` would have given it — the same journal entry posted
through :class:`~paygate.payments.Payments` (the one posting path), the same ``bills`` row,
the same credit applied — and an account opened by a run is the row
:meth:`Accounts.open_account <paygate.accounts.Accounts.open_account>` would have written.
Items are decided in input order, as if issued one by one.

How: the input is read a chunk at a time (``Settings.billing_run_chunk``), so memory stays flat
however long the file. Each chunk is one transaction: its rows are copied into a temporary
staging table (COPY on PostgreSQL, ``executemany`` on SQLite), replays and conflicts are found
by joining the staging table to what is stored, and the new rows are written by set statements
(``INSERT … SELECT … ON CONFLICT DO NOTHING``) checked for the count expected; a concurrent
writer that got in first makes the chunk roll back and be decided again. A crash loses at most
the chunk under way, and a re-run finds every committed row a replay. An account that holds
credit has its new bills issued one by one (:meth:`Accounts.issue_within
<paygate.accounts.Accounts.issue_within>`), since each bill spends what the one before left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any, NamedTuple, TypeVar

from paygate import ledger, records
from paygate.accounts import Accounts
from paygate.errors import (
    AccountClosedError,
    BillConflictError,
    ConflictError,
    CurrencyMismatchError,
    DuplicateAccountError,
    InvalidInputError,
    PaygateError,
    UnknownAccountError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import BulkIssue, BulkResult, NewAccount, NewBill, SupplyState
from paygate.payments import Payments
from paygate.records import Core, lock_account
from paygate.store.engine import Tx, UniqueViolation

__all__ = ["BillingRun", "Progress"]

Progress = Callable[[int], None]
"""Called after each committed chunk with how many items the run has decided so far."""

T = TypeVar("T", NewAccount, NewBill)

_ATTEMPTS = 5

_ACCOUNT_STAGE = "paygate_account_stage"
_ACCOUNT_STAGE_COLUMNS = (
    "seq",
    "account_id",
    "ledger_id",
    "code",
    "account_no",
    "name",
    "category",
    "prepaid",
    "protected",
    "currency",
)
_ACCOUNT_STAGE_TYPES = (
    "bigint",
    "bigint",
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "bool",
    "bool",
    "text",
)
_BILL_STAGE = "paygate_bill_stage"
_BILL_STAGE_COLUMNS = (
    "seq",
    "bill_id",
    "entry_id",
    "account_no",
    "bill_no",
    "period",
    "amount",
    "currency",
    "due_date",
)
_BILL_STAGE_TYPES = ("bigint", "bigint", "bigint", "text", "text", "text", "bigint", "text", "date")


class _Payee(NamedTuple):
    """What a new bill needs of its (locked) account."""

    id: int
    currency: str
    receivable_id: int
    closed: bool


class _Raced(Exception):
    """A concurrent writer stored one of the chunk's keys after the chunk looked: decide again."""


@dataclass(slots=True)
class _Tally:
    """The run's result as it grows, chunk by committed chunk."""

    keep_keys: bool
    created: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    conflicts: list[BulkIssue] = field(default_factory=list)
    refused: list[BulkIssue] = field(default_factory=list)
    created_count: int = 0
    replayed_count: int = 0

    def add(self, chunk: _Chunk) -> None:
        self.created_count += len(chunk.created)
        self.replayed_count += len(chunk.replayed)
        if self.keep_keys:
            self.created.extend(chunk.created)
            self.replayed.extend(chunk.replayed)
        self.conflicts.extend(chunk.conflicts)
        self.refused.extend(chunk.refused)

    def result(self) -> BulkResult:
        return BulkResult(
            created_count=self.created_count,
            replayed_count=self.replayed_count,
            conflict_count=len(self.conflicts),
            refused_count=len(self.refused),
            created=tuple(self.created),
            replayed=tuple(self.replayed),
            conflicts=tuple(self.conflicts),
            refused=tuple(self.refused),
        )


@dataclass(slots=True)
class _Chunk:
    """What one chunk decided (kept only once its transaction has committed)."""

    created: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    conflicts: list[BulkIssue] = field(default_factory=list)
    refused: list[BulkIssue] = field(default_factory=list)

    def issue(self, index: int, key: str, exc: PaygateError) -> None:
        target = self.conflicts if isinstance(exc, ConflictError) else self.refused
        target.append(
            BulkIssue(index=index, key=key, code=exc.code, field=exc.field, error=str(exc))
        )


def _chunks(items: Iterable[T], size: int, kind: type[T]) -> Iterator[list[tuple[int, T]]]:
    """The input, numbered and cut into lists of ``size``, read lazily."""
    numbered = enumerate(items)
    while True:
        chunk = list(islice(numbered, size))
        if not chunk:
            return
        for index, item in chunk:
            if not isinstance(item, kind):
                raise InvalidInputError(
                    f"item {index} is a {type(item).__name__}, not a {kind.__name__}",
                    field="items",
                )
        yield chunk


def _unique_runs(chunk: Sequence[tuple[int, T]], key: Callable[[T], str]) -> list[list[int]]:
    """Positions in ``chunk`` cut into consecutive runs with no key twice: a key seen again
    starts a new run, decided after the first one has written (as one by one would)."""
    runs: list[list[int]] = [[]]
    seen: set[str] = set()
    for pos, (_, item) in enumerate(chunk):
        k = key(item)
        if k in seen:
            runs.append([])
            seen = set()
        seen.add(k)
        runs[-1].append(pos)
    return runs


def _stage(
    tx: Tx, table: str, columns: Sequence[str], types: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """``rows`` in a temporary staging table of this connection (created on first use)."""
    decls = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    suffix = " ON COMMIT DELETE ROWS" if tx.dialect == "postgresql" else ""
    tx.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({decls}){suffix}")
    tx.execute(f"DELETE FROM {table}")  # noqa: S608 - the name is ours
    tx.insert(table, columns, rows, types=types)
    if tx.dialect == "postgresql":
        tx.execute(f"ANALYZE {table}")


@contextmanager
def _probes(tx: Tx) -> Iterator[None]:
    """The staging table's joins as index probes on PostgreSQL, whatever the statistics.

    A chunk probes a few thousand keys into tables of millions. A table filled by a first run
    has stale statistics, and left to them the planner hashes the whole of accounts or bills
    for every chunk. Only around the run's own statements: elsewhere (the journal's balance
    trigger) a forced nested loop would be the slow plan. A statement that fails leaves them
    set: the transaction is aborted and rolls back with them, and a statement sent to reset
    them would only fail in turn, hiding the error (a deadlock, which the store retries).
    """
    if tx.dialect != "postgresql":
        yield
        return
    tx.execute("SET LOCAL enable_hashjoin = off")
    tx.execute("SET LOCAL enable_mergejoin = off")
    yield
    tx.execute("SET LOCAL enable_hashjoin TO DEFAULT")
    tx.execute("SET LOCAL enable_mergejoin TO DEFAULT")


class BillingRun:
    """``open_accounts`` and ``issue_bills``: chunked, set-based, idempotent."""

    def __init__(self, core: Core, accounts: Accounts, payments: Payments) -> None:
        self._core = core
        self._accounts = accounts
        self._payments = payments

    # -- the loop both runs share -----------------------------------------------------------

    def _run(
        self,
        items: Iterable[T],
        kind: type[T],
        decide: Callable[[Tx, list[tuple[int, T]], _Chunk], None],
        *,
        chunk_size: int | None,
        keep_keys: bool,
        progress: Progress | None,
    ) -> BulkResult:
        size = chunk_size or self._core.settings.billing_run_chunk
        if size < 1:
            raise InvalidInputError("at least 1", field="chunk_size")
        tally = _Tally(keep_keys=keep_keys)
        done = 0
        for chunk in _chunks(items, size, kind):
            tally.add(self._commit_chunk(chunk, decide))
            done += len(chunk)
            if progress is not None:
                progress(done)
        return tally.result()

    def _commit_chunk(
        self, chunk: list[tuple[int, T]], decide: Callable[[Tx, list[tuple[int, T]], _Chunk], None]
    ) -> _Chunk:
        def work(tx: Tx) -> _Chunk:
            # A fresh tally per attempt: store.run retries a transaction from the start.
            out = _Chunk()
            decide(tx, chunk, out)
            return out

        for _attempt in range(_ATTEMPTS):
            try:
                return self._core.store.run(work)
            except (_Raced, UniqueViolation):
                continue
        raise ConflictError(
            "a billing run chunk keeps colliding with concurrent writers; run it again",
            field="items",
        )

    # -- accounts ---------------------------------------------------------------------------

    def open_accounts(
        self,
        items: Iterable[NewAccount],
        *,
        chunk_size: int | None = None,
        keep_keys: bool = True,
        progress: Progress | None = None,
    ) -> BulkResult:
        """Open every account of ``items``, a chunk per transaction."""
        return self._run(
            items,
            NewAccount,
            self._accounts_chunk,
            chunk_size=chunk_size,
            keep_keys=keep_keys,
            progress=progress,
        )

    def _accounts_chunk(self, tx: Tx, chunk: list[tuple[int, NewAccount]], out: _Chunk) -> None:
        for run in _unique_runs(chunk, lambda a: a.account_no):
            with _probes(tx):  # no journal here: every join of the run is a probe
                self._accounts_run(tx, [chunk[p] for p in run], out)

    def _accounts_run(self, tx: Tx, items: list[tuple[int, NewAccount]], out: _Chunk) -> None:
        now = self._core.clock.now()
        default = self._core.settings.currency
        ids = tx.ids.take(2 * len(items))
        _stage(
            tx,
            _ACCOUNT_STAGE,
            _ACCOUNT_STAGE_COLUMNS,
            _ACCOUNT_STAGE_TYPES,
            [
                (
                    index,
                    ids[2 * pos],
                    ids[2 * pos + 1],
                    f"receivable:{a.account_no}",
                    a.account_no,
                    a.name,
                    a.category.value,
                    a.prepaid,
                    a.protected,
                    a.currency or default,
                )
                for pos, (index, a) in enumerate(items)
            ],
        )
        stored = {
            int(r[0]): (str(r[1]), bool(r[2]), bool(r[3]), r[4], str(r[5]))
            for r in tx.all(
                "SELECT s.seq, a.category, a.prepaid, a.protected, a.name, a.currency "  # noqa: S608
                f"FROM {_ACCOUNT_STAGE} s JOIN accounts a ON a.account_no = s.account_no"
            )
        }
        fresh = 0
        created: list[str] = []
        for index, a in items:
            have = stored.get(index)
            if have is None:
                fresh += 1
                created.append(a.account_no)
            elif have == (a.category.value, a.prepaid, a.protected, a.name, a.currency or default):
                out.replayed.append(a.account_no)
            else:
                out.issue(
                    index,
                    a.account_no,
                    DuplicateAccountError(
                        f"account {a.account_no} is already open with other attributes",
                        field="account_no",
                    ),
                )
        if not fresh:
            return
        # Rows already stored are filtered out; when there are none, the filter would only
        # cost a probe per row (the unique constraints still guard against a racing writer).
        # First, as ledger.ensure does, a receivable account (one balance shard) per customer.
        ledger.open_receivables(tx, _ACCOUNT_STAGE, only_new_accounts=bool(stored), now=now)
        written = records.insert_accounts_from_staging(
            tx, _ACCOUNT_STAGE, only_new=bool(stored), now=now
        )
        if written != fresh:
            raise _Raced
        out.created.extend(created)

    # -- bills ------------------------------------------------------------------------------

    def issue_bills(
        self,
        items: Iterable[NewBill],
        *,
        chunk_size: int | None = None,
        keep_keys: bool = True,
        progress: Progress | None = None,
    ) -> BulkResult:
        """Issue every bill of ``items``, a chunk per transaction."""
        return self._run(
            items,
            NewBill,
            self._bills_chunk,
            chunk_size=chunk_size,
            keep_keys=keep_keys,
            progress=progress,
        )

    def _bills_chunk(self, tx: Tx, chunk: list[tuple[int, NewBill]], out: _Chunk) -> None:
        for run in _unique_runs(chunk, lambda b: b.bill_no):
            self._bills_run(tx, [chunk[p] for p in run], out)

    def _bills_run(self, tx: Tx, items: list[tuple[int, NewBill]], out: _Chunk) -> None:
        now = self._core.clock.now()
        ids = tx.ids.take(2 * len(items))
        ids_of = {index: (ids[2 * pos], ids[2 * pos + 1]) for pos, (index, _) in enumerate(items)}
        _stage(
            tx,
            _BILL_STAGE,
            _BILL_STAGE_COLUMNS,
            _BILL_STAGE_TYPES,
            [
                (
                    index,
                    *ids_of[index],
                    b.account_no,
                    b.bill_no,
                    b.period,
                    b.amount.minor,
                    b.amount.currency,
                    tx.day(b.due_date),
                )
                for index, b in items
            ],
        )
        with _probes(tx):
            accts = self._lock_accounts(tx)
            stored = {
                int(r[0]): (str(r[1]), int(r[2]), str(r[3]), str(r[4]), tx.read_day(r[5]))
                for r in tx.all(
                    "SELECT s.seq, a.account_no, b.amount, b.currency, b.period, b.due_date "  # noqa: S608
                    f"FROM {_BILL_STAGE} s JOIN bills b ON b.bill_no = s.bill_no "
                    "JOIN accounts a ON a.id = b.account_id"
                )
            }
            with_credit = {
                int(r[0])
                for r in tx.all(
                    "SELECT DISTINCT p.account_id FROM payments p "  # noqa: S608
                    "JOIN accounts a ON a.id = p.account_id "
                    f"WHERE a.account_no IN (SELECT account_no FROM {_BILL_STAGE}) "
                    "AND p.unallocated > 0 AND p.status = 'posted'"
                )
            }
        entries: list[EntryDraft] = []
        one_by_one: list[tuple[int, NewBill]] = []
        created: list[tuple[int, str]] = []
        business_date = self._core.local_date(now)
        for index, b in items:
            decided = self._decide_bill(index, b, accts.get(b.account_no), stored.get(index), out)
            if decided is None:
                continue
            if decided.id in with_credit:
                one_by_one.append((index, b))
                continue
            created.append((index, b.bill_no))
            energy = self._core.ledger.ensure(
                tx,
                f"revenue:energy:{decided.currency}",
                AccountKind.ENERGY_REVENUE,
                decided.currency,
            )
            entries.append(
                EntryDraft(
                    kind="bill",
                    reference=f"bill:{b.bill_no}",
                    memo=f"bill {b.bill_no} for {b.period}",
                    business_date=business_date,
                    posted_at=now,
                    postings=(
                        PostingDraft(decided.receivable_id, b.amount.minor, decided.currency),
                        PostingDraft(energy, -b.amount.minor, decided.currency),
                    ),
                    shard_key=decided.id,
                    entry_id=ids_of[index][1],
                )
            )
        if entries:
            self._payments.post(tx, entries)
            # Filters only where they can exclude a row (each costs a probe per row).
            with _probes(tx):
                written = records.insert_bills_from_staging(
                    tx,
                    _BILL_STAGE,
                    only_new=bool(stored),
                    only_without_credit=bool(with_credit),
                    now=now,
                )
            if written != len(entries):
                raise _Raced
        for index, b in one_by_one:
            self._accounts.issue_within(
                tx,
                lock_account(tx, b.account_no),
                bill_no=b.bill_no,
                amount=b.amount.minor,
                period=b.period,
                due_date=b.due_date,
                now=now,
            )
            created.append((index, b.bill_no))
        out.created.extend(no for _, no in sorted(created))

    @staticmethod
    def _lock_accounts(tx: Tx) -> dict[str, _Payee]:
        """Lock the staged bills' accounts in id order, as every decision does."""
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        rows = tx.all(
            "SELECT a.id, a.account_no, a.currency, a.receivable_account_id, a.supply_state "  # noqa: S608
            f"FROM accounts a WHERE a.account_no IN (SELECT account_no FROM {_BILL_STAGE}) "
            f"ORDER BY a.id{lock}"
        )
        return {
            str(r[1]): _Payee(int(r[0]), str(r[2]), int(r[3]), r[4] == SupplyState.CLOSED)
            for r in rows
        }

    @staticmethod
    def _decide_bill(
        index: int,
        b: NewBill,
        acct: _Payee | None,
        stored: tuple[str, int, str, str, date] | None,
        out: _Chunk,
    ) -> _Payee | None:
        """The account a new bill goes to, or None once the bill is replayed or refused; the
        checks in the order ``issue_bill`` makes them."""
        if acct is None:
            out.issue(
                index,
                b.bill_no,
                UnknownAccountError(f"no account {b.account_no}", field="account_no"),
            )
            return None
        if stored is not None:
            mine = (b.account_no, b.amount.minor, b.amount.currency, b.period, b.due_date)
            if stored == mine:
                out.replayed.append(b.bill_no)
            else:
                out.issue(
                    index,
                    b.bill_no,
                    BillConflictError(
                        f"bill {b.bill_no} was issued before with other data", field="bill_no"
                    ),
                )
            return None
        if acct.closed:
            out.issue(
                index,
                b.bill_no,
                AccountClosedError(
                    f"account {b.account_no} is closed; it takes no new bill", field="account_no"
                ),
            )
            return None
        if b.amount.currency != acct.currency:
            out.issue(
                index,
                b.bill_no,
                CurrencyMismatchError(
                    f"account {b.account_no} is in {acct.currency}", field="amount"
                ),
            )
            return None
        return acct
