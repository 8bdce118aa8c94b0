"""The reconciliation engine: stream a statement into the database, classify it there, in SQL.

Invariants:

* Memory does not grow with the statement. Lines are staged in chunks as they stream (binary
  COPY on PostgreSQL, ``executemany`` on SQLite) and compared with the ledger by set-based
  statements; only the findings that need a posting or a person are read back, a page at a time.
* Classifying a run is one transaction, one decision: its findings, its totals, the run it
  supersedes and the findings of earlier runs it closes commit together or not at all. Staging
  is preparation only; a file that fails part way leaves nothing behind.
* The same file for the same channel and day is the same run, whatever happens: it is
  neither classified nor resolved twice. A different file supersedes the current run, which
  keeps its rows as history (``superseded_by``); resolutions carry over by subject.
* Nothing here moves money. Postings are :mod:`paygate.reconcile.resolution`'s, each with its
  audit record in its own transaction.

How lines and payments are paired, in order:

1. a payment line with a channel transaction id pairs with the ledger payment of that id
   (``(channel, channel_txn_id)`` is the ledger's own key): same amount and currency is a
   match, otherwise an amount mismatch; a second line with an id already listed is a duplicate;
2. a refund, void or reversal line pairs with its original payment: reversed in the ledger is
   ``reversal_matched``, still posted is only in the statement (the ledger lacks the reversal);
3. a payment line without an id pairs with a payment of the run's day of the same account and
   amount within the policy's time window, closest first (mutual best, in rounds);
4. what is left: lines are only in the statement; the day's payments that no line (of this run
   or another current run of the channel) accounts for are only in the ledger, pending through
   the channel's grace days; a reversed payment shown on the statement whose reversal is not
   shown is only in the ledger too, as a reversal.

A payment belongs to one business day and only that day's run matches it. A line whose own
time falls on another business day (under the channel's cut-off), or that names a payment the
ledger has on another business day, is ``other_business_date``: never a match, never posted
late or parked in suspense, an open finding for a person. A statement none of whose lines is of
the run's day is the wrong file (or the wrong date): it is refused with a
:class:`~paygate.errors.ParseError` and leaves nothing behind.

A line paired by id with a payment of the run's business date, for the same amount, is the
plain case and has no finding row; every other outcome is a finding (see
:class:`~paygate.reconcile.model.FindingClass`). The run keeps the count and amount per class.

This module owns ``reconciliation_runs`` and ``reconciliation_lines`` (see
:mod:`paygate.store.schema`); the bank leg's runs are written here too
(:func:`record_bank_run`, :func:`set_summary`), in the bank leg's transactions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from paygate.channels.base import SettlementRules
from paygate.errors import (
    CurrencyMismatchError,
    InvalidInputError,
    ParseError,
    UnsupportedOperationError,
)
from paygate.ledger import AccountKind
from paygate.models import StatementLine, StatementLineKind
from paygate.reconcile.books import Books
from paygate.reconcile.config import StatementReader, channel_rules
from paygate.reconcile.matching import (
    carry_over,
    ledger_side,
    lines_without_id,
    matched_later,
    payment_lines_by_id,
    reversal_lines,
    suspense_not_on_statement,
)
from paygate.reconcile.model import (
    LEDGER_REVERSAL_KEY,
    FindingClass,
    ReconcilePolicy,
    ReconciliationRun,
    RunKind,
    RunStatus,
    class_amount,
    direction,
)
from paygate.reconcile.runs import load_run
from paygate.store.engine import Tx, UniqueViolation

__all__ = [
    "PreparedRun",
    "Progress",
    "class_totals",
    "day_bounds",
    "prepare_file",
    "reconcile",
    "reconcile_file",
    "record_bank_run",
    "set_summary",
    "sha256_of",
]

Progress = Callable[[int, int | None], None]
"""Called as staging goes: (lines or bytes done, total if known)."""

_LINE_COLUMNS = (
    "run_id",
    "seq",
    "line_no",
    "kind",
    "channel_txn_id",
    "original_txn_id",
    "account_no",
    "gross",
    "fee",
    "currency",
    "occurred_at",
    "reference",
    "line_key",
)
_LINE_PG_TYPES = (
    "int8",
    "int4",
    "int4",
    "text",
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "text",
    "timestamptz",
    "text",
    "text",
)
_MAX_ID = 128
_PAYMENT = StatementLineKind.PAYMENT


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reconcile(
    gateway: Books,
    channel: str,
    business_date: date,
    statement_lines: Iterable[StatementLine],
    *,
    file_sha256: str,
    policy: ReconcilePolicy | None = None,
    rules: SettlementRules | None = None,
    source: str | None = None,
    progress: Progress | None = None,
) -> ReconciliationRun:
    """Reconcile one channel's statement for one business date with the ledger.

    ``statement_lines`` is consumed once, streaming. ``file_sha256`` identifies the file: if
    this channel and day were reconciled from it before, that run is returned (``replayed``)
    and the lines are not read. Findings are values in the run; the policy's resolutions
    (late payments, suspense) are applied before it returns. ``rules`` default to the
    channel adapter's settlement rules (grace days, lag).
    """
    _check_channel(gateway, channel)
    chosen = policy if policy is not None else ReconcilePolicy()
    settlement = rules if rules is not None else channel_rules(channel)
    digest = checked_sha256(file_sha256)
    existing = gateway.store.run(
        lambda tx: _existing(tx, channel, business_date, digest), write=False
    )
    if existing is not None:
        return _finish(gateway, existing, chosen, settlement, replayed=True)
    return _prepare(
        gateway,
        channel,
        business_date,
        statement_lines,
        lambda: digest,
        chosen,
        settlement,
        source,
        progress,
    ).complete()


def reconcile_file(
    gateway: Books,
    channel: str,
    business_date: date,
    path: str | Path,
    *,
    reader: StatementReader,
    policy: ReconcilePolicy | None = None,
    rules: SettlementRules | None = None,
    progress: Progress | None = None,
) -> ReconciliationRun:
    """Reconcile a statement file, read with ``reader`` and hashed as it streams.

    ``reader`` is the channel's statement reader (``adapter.read_statement``, or
    :func:`~paygate.reconcile.config.statement_reader`). ``progress`` gets bytes read and the
    file's size. A file that cannot be read raises its :class:`~paygate.errors.ParseError`
    (file and line) and leaves nothing behind.
    """
    return prepare_file(
        gateway,
        channel,
        business_date,
        path,
        reader=reader,
        policy=policy,
        rules=rules,
        progress=progress,
    ).complete()


def prepare_file(
    gateway: Books,
    channel: str,
    business_date: date,
    path: str | Path,
    *,
    reader: StatementReader,
    policy: ReconcilePolicy | None = None,
    rules: SettlementRules | None = None,
    progress: Progress | None = None,
) -> PreparedRun:
    """Read and stage a statement file without deciding anything: the first half of a run.

    Every line is read and checked (a file that cannot be read raises its
    :class:`~paygate.errors.ParseError` and leaves nothing behind), but nothing is classified,
    posted or superseded until :meth:`PreparedRun.complete`; :meth:`PreparedRun.discard`
    removes the staged lines. A caller with several inputs reads them all before the first
    of them decides anything.
    """
    _check_channel(gateway, channel)
    chosen = policy if policy is not None else ReconcilePolicy()
    settlement = rules if rules is not None else channel_rules(channel)
    where = Path(path)
    size = where.stat().st_size
    if gateway.store.run(lambda tx: _reconciled_before(tx, channel, business_date), write=False):
        # A day reconciled before may be this very file again: hashing it first (one fast
        # read) spares staging a whole statement only to find out at the end.
        existing = gateway.store.run(
            lambda tx: _existing(tx, channel, business_date, sha256_of(where)), write=False
        )
        if existing is not None:
            return PreparedRun(gateway, chosen, settlement, replay_of=existing)
    with where.open("rb") as raw:
        stream = HashingReader(raw, name=str(where))
        report: Progress | None = None
        if progress is not None:
            callback = progress

            def report(_lines: int, _total: int | None) -> None:
                callback(stream.bytes_read, size)

        return _prepare(
            gateway,
            channel,
            business_date,
            reader(stream),  # type: ignore[arg-type]  # a binary stream, as readers take
            stream.hexdigest,
            chosen,
            settlement,
            str(where),
            report,
        )


def _check_channel(gateway: Books, channel: str) -> None:
    # A channel whose money is not collected into a clearing account (recharge vouchers: the
    # money was taken when the card was sold) has no payments to settle: its statement lists
    # card sales, and matching them with payments would park every line in suspense.
    kind = gateway.payments.debit_kind(channel)
    if kind is not AccountKind.CHANNEL_CLEARING:
        raise UnsupportedOperationError(
            f"channel {channel!r} books its payments against {kind.value}, not a clearing "
            "account: its statement is not reconciled against payments",
            field="channel",
        )


class HashingReader:
    """A binary stream that hashes every byte read through it, for readers that iterate lines.

    :meth:`hexdigest` reads what the reader left unread, so that the hash is the whole file's.
    """

    def __init__(self, raw: IO[bytes], *, name: str) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()
        self.name = name
        self.bytes_read = 0

    def _seen(self, data: bytes) -> bytes:
        self._digest.update(data)
        self.bytes_read += len(data)
        return data

    def readline(self, size: int = -1, /) -> bytes:
        """The next line, hashed."""
        return self._seen(self._raw.readline(size))

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes, hashed."""
        return self._seen(self._raw.read(size))

    def __iter__(self) -> Iterator[bytes]:
        for line in self._raw:
            yield self._seen(line)

    def hexdigest(self) -> str:
        """The SHA-256 of the whole file."""
        for block in iter(lambda: self._raw.read(1 << 20), b""):
            self._seen(block)
        return self._digest.hexdigest()


# -- staging --------------------------------------------------------------------------------


def day_bounds(rules: SettlementRules, business_date: date) -> tuple[datetime, datetime]:
    """The instants (UTC) a channel business day starts at and ends before, under its cut-off.

    The inverse of :meth:`~paygate.channels.base.SettlementRules.business_date`: an instant
    ``t`` is of ``business_date`` exactly when ``start <= t < end``. (In a zone with daylight
    saving, a cut-off inside a clock change is read at the offset before it.)
    """
    zone = ZoneInfo(rules.timezone)
    if rules.cutoff == time(0, 0):
        first, last = business_date, business_date + timedelta(days=1)
    else:
        first, last = business_date - timedelta(days=1), business_date
    start = datetime.combine(first, rules.cutoff, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last, rules.cutoff, tzinfo=zone).astimezone(UTC)
    return start, end


@dataclass(slots=True)
class _Staged:
    """What staging learned while the lines went by: totals, without keeping any line."""

    dialect: str
    day_start: datetime
    day_end: datetime
    currency: str | None = None
    count: int = 0
    gross: int = 0
    fees: int = 0
    id_payments: int = 0
    id_payments_gross: int = 0
    without_id: int = 0
    reversals: int = 0
    in_day: int = 0
    first_outside: tuple[int, datetime] | None = field(default=None)

    def row(self, run_id: int, line: StatementLine) -> tuple[Any, ...]:
        if not isinstance(line, StatementLine):
            raise TypeError("statement lines must be StatementLine records")
        gross, fee = line.gross, line.fee
        currency = gross.currency
        if self.currency is None:
            self.currency = currency
        if currency != self.currency or fee.currency != currency:
            raise CurrencyMismatchError(
                f"statement line {line.line_no} is in {currency}, the statement in {self.currency}",
                field="currency",
            )
        # An empty id is no id: the classification tells id lines by their missing line_key.
        txn = line.channel_txn_id or None
        original, account = line.original_txn_id or None, line.account_no
        for value, name in ((txn, "channel_txn_id"), (original, "original_txn_id")):
            if value is not None and len(value) > _MAX_ID:
                raise InvalidInputError(
                    f"statement line {line.line_no}: {name} longer than {_MAX_ID} characters",
                    field=name,
                )
        if account is not None and len(account) > _MAX_ID:
            account = account[:_MAX_ID]  # longer than any account number: unknown either way
        kind = line.kind
        self.count += 1
        sign = direction(kind, "")
        self.gross += sign * gross.minor
        self.fees += sign * fee.minor
        key = None
        if kind is not _PAYMENT:
            self.reversals += 1
        elif txn is not None:
            self.id_payments += 1
            self.id_payments_gross += gross.minor
        else:
            self.without_id += 1
            key = line_key(line)
        at = line.occurred_at
        if self.day_start <= at < self.day_end:
            self.in_day += 1
        elif self.first_outside is None:
            self.first_outside = (line.line_no, at)
        return (
            run_id,
            self.count,
            line.line_no,
            kind.value,
            txn,
            original,
            account,
            gross.minor,
            fee.minor,
            currency,
            at if self.dialect == "postgresql" else _sqlite_instant(at),
            line.reference,
            key,
        )


def line_key(line: StatementLine) -> str:
    """The subject of a line without a channel transaction id: a digest of what it says."""
    text = "|".join(
        (
            line.kind.value,
            line.account_no or "",
            str(line.gross.minor),
            line.gross.currency,
            line.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        )
    )
    return "line:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _sqlite_instant(value: datetime) -> str:
    # Exactly what Tx.ts stores on SQLite ("%Y-%m-%d %H:%M:%S.%f" in UTC), made by isoformat,
    # which costs a fraction of strftime: this runs once a line.
    return value.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")[:26]


def checked_sha256(value: str) -> str:
    """``value`` as a lower-case SHA-256 hex digest, or refused."""
    text = value.lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidInputError("not a SHA-256 in hex", field="file_sha256")
    return text


def _existing(tx: Tx, channel: str, day: date, digest: str) -> int | None:
    value = tx.scalar(
        "SELECT id FROM reconciliation_runs WHERE channel = :c AND business_date = :d "
        "AND file_sha256 = :s",
        {"c": channel, "d": tx.day(day), "s": digest},
    )
    return None if value is None else int(value)


def _reconciled_before(tx: Tx, channel: str, day: date) -> bool:
    return bool(
        tx.scalar(
            "SELECT COUNT(*) FROM reconciliation_runs WHERE channel = :c AND business_date = :d "
            "AND file_sha256 IS NOT NULL",
            {"c": channel, "d": tx.day(day)},
        )
    )


def _prepare(
    gateway: Books,
    channel: str,
    business_date: date,
    lines: Iterable[StatementLine],
    digest: Callable[[], str],
    policy: ReconcilePolicy,
    rules: SettlementRules,
    source: str | None,
    progress: Progress | None,
) -> PreparedRun:
    store = gateway.store
    now = gateway.clock.now()
    settlement_date = rules.settlement_date(business_date)
    policy_json = policy.model_dump_json()
    currency = gateway.settings.currency

    def create(tx: Tx) -> int:
        run_id = tx.ids.one()
        tx.execute(
            "INSERT INTO reconciliation_runs (id, kind, channel, business_date, file_sha256, "
            "source, status, currency, line_count, gross, fees, net, settlement_date, summary, "
            "policy, actor, created_at) VALUES (:id, :kind, :c, :d, NULL, :src, :status, :cur, "
            "0, 0, 0, 0, :sd, '{}', :policy, :actor, :now)",
            {
                "id": run_id,
                "kind": RunKind.CHANNEL.value,
                "c": channel,
                "d": tx.day(business_date),
                "src": source,
                "status": RunStatus.STAGING.value,
                "cur": currency,
                "sd": tx.day(settlement_date),
                "policy": policy_json,
                "actor": policy.actor,
                "now": tx.ts(now),
            },
        )
        return run_id

    run_id = store.run(create)
    try:
        staged = _stage(gateway, run_id, lines, policy, rules, business_date, progress)
        sha = digest()
        _check_day(staged, business_date, rules, source)
    except BaseException:
        _discard(gateway, run_id)
        raise
    return PreparedRun(
        gateway,
        policy,
        rules,
        channel=channel,
        business_date=business_date,
        run_id=run_id,
        staged=staged,
        sha=sha,
        now=now,
    )


def _check_day(
    staged: _Staged, business_date: date, rules: SettlementRules, source: str | None
) -> None:
    """Refuse a statement none of whose lines is of the run's business day."""
    if staged.in_day or staged.first_outside is None:
        return
    line_no, at = staged.first_outside
    local = at.astimezone(ZoneInfo(rules.timezone))
    raise ParseError(
        f"no line of this statement is of business date {business_date.isoformat()}: the "
        f"first, at {local.isoformat(sep=' ', timespec='seconds')}, is of business date "
        f"{rules.business_date(at).isoformat()} (the wrong file, or the wrong --date)",
        source=source,
        line=line_no,
        field="occurred_at",
    )


class PreparedRun:
    """A statement staged for one channel and day, not yet decided.

    :meth:`complete` classifies it and applies the policy (the run's one decision and its
    resolutions); :meth:`discard` drops the staged lines, leaving nothing behind. A prepared
    run for a file reconciled before is its earlier run, replayed.
    """

    def __init__(
        self,
        gateway: Books,
        policy: ReconcilePolicy,
        rules: SettlementRules,
        *,
        replay_of: int | None = None,
        channel: str = "",
        business_date: date = date.min,
        run_id: int | None = None,
        staged: _Staged | None = None,
        sha: str = "",
        now: datetime | None = None,
    ) -> None:
        self._gateway = gateway
        self._policy = policy
        self._rules = rules
        self._replay_of = replay_of
        self._channel = channel
        self._day = business_date
        self._run_id = run_id
        self._staged = staged
        self._sha = sha
        self._now = now

    def complete(self) -> ReconciliationRun:
        """Classify the staged lines against the ledger and apply the policy."""
        gateway, policy, rules = self._gateway, self._policy, self._rules
        if self._replay_of is not None:
            return _finish(gateway, self._replay_of, policy, rules, replayed=True)
        run_id, staged, now = self._run_id, self._staged, self._now
        if run_id is None or staged is None or now is None:
            raise UnsupportedOperationError("this prepared run was completed or discarded")
        self._run_id = None
        channel, business_date, sha = self._channel, self._day, self._sha
        store = gateway.store
        currency = gateway.settings.currency
        try:
            decided = store.run(
                lambda tx: _classify(
                    tx, run_id, channel, business_date, sha, staged, policy, rules, currency, now
                )
            )
        except UniqueViolation:
            # The same file was reconciled concurrently and committed first: answer from it.
            _discard(gateway, run_id)
            found = store.run(lambda tx: _existing(tx, channel, business_date, sha), write=False)
            if found is None:
                raise
            return _finish(gateway, found, policy, rules, replayed=True)
        except BaseException:
            _discard(gateway, run_id)
            raise
        if decided != run_id:
            return _finish(gateway, decided, policy, rules, replayed=True)
        return _finish(gateway, run_id, policy, rules, replayed=False)

    def discard(self) -> None:
        """Drop the staged lines; the ledger and every run stay as they were."""
        if self._run_id is not None:
            _discard(self._gateway, self._run_id)
            self._run_id = None


def _stage(
    gateway: Books,
    run_id: int,
    lines: Iterable[StatementLine],
    policy: ReconcilePolicy,
    rules: SettlementRules,
    business_date: date,
    progress: Progress | None,
) -> _Staged:
    start, end = day_bounds(rules, business_date)
    staged = _Staged(dialect=gateway.store.dialect, day_start=start, day_end=end)
    source = iter(lines)
    while True:
        rows = []
        for line in source:
            rows.append(staged.row(run_id, line))
            if len(rows) == policy.stage_chunk:
                break
        if not rows:
            return staged
        gateway.store.run(
            lambda tx, rows=rows: tx.insert(  # type: ignore[misc]
                "reconciliation_lines", _LINE_COLUMNS, rows, types=_LINE_PG_TYPES
            )
        )
        if progress is not None:
            progress(staged.count, None)
        if len(rows) < policy.stage_chunk:
            return staged


def _discard(gateway: Books, run_id: int) -> None:
    """Remove a run that was never classified, with its staged lines."""

    def work(tx: Tx) -> None:
        status = tx.scalar("SELECT status FROM reconciliation_runs WHERE id = :id", {"id": run_id})
        if status != RunStatus.STAGING.value:
            return
        tx.execute("DELETE FROM reconciliation_lines WHERE run_id = :id", {"id": run_id})
        tx.execute("DELETE FROM reconciliation_runs WHERE id = :id", {"id": run_id})

    gateway.store.run(work)


def _finish(
    gateway: Books,
    run_id: int,
    policy: ReconcilePolicy,
    rules: SettlementRules,
    *,
    replayed: bool,
) -> ReconciliationRun:
    """Apply the policy to a classified run (again, harmlessly, if it was cut short)."""
    from paygate.reconcile.resolution import apply_policy

    status = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT status FROM reconciliation_runs WHERE id = :id", {"id": run_id}
        ),
        write=False,
    )
    if status == RunStatus.MATCHED.value:
        apply_policy(gateway, run_id, policy)
        now = gateway.clock.now()
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE reconciliation_runs SET status = :done, completed_at = :now "
                "WHERE id = :id AND status = :matched",
                {
                    "done": RunStatus.DONE.value,
                    "matched": RunStatus.MATCHED.value,
                    "now": tx.ts(now),
                    "id": run_id,
                },
            )
        )
    return load_run(gateway, run_id, replayed=replayed)


# -- classification -------------------------------------------------------------------------


def _classify(
    tx: Tx,
    run_id: int,
    channel: str,
    business_date: date,
    sha: str,
    staged: _Staged,
    policy: ReconcilePolicy,
    rules: SettlementRules,
    default_currency: str,
    now: datetime,
) -> int:
    """Classify a staged run; return its id, or the id of the run this file already made."""
    found = _existing(tx, channel, business_date, sha)
    if found is not None:
        tx.execute("DELETE FROM reconciliation_lines WHERE run_id = :id", {"id": run_id})
        tx.execute("DELETE FROM reconciliation_runs WHERE id = :id", {"id": run_id})
        return found
    if tx.dialect == "postgresql":
        # Hashing a million lines against a million payments wants more than the default
        # 4 MB; LOCAL ends with this transaction. Fresh statistics keep the plan a hash join.
        tx.execute("SET LOCAL work_mem = '256MB'")
        tx.execute("ANALYZE reconciliation_lines")

    lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
    previous = tx.scalar(
        "SELECT id FROM reconciliation_runs WHERE channel = :c AND business_date = :d "  # noqa: S608
        f"AND kind = 'channel' AND status <> 'staging' AND superseded_by IS NULL{lock}",
        {"c": channel, "d": tx.day(business_date)},
    )
    if previous is not None:
        tx.execute(
            "UPDATE reconciliation_runs SET superseded_by = :run WHERE id = :prev",
            {"run": run_id, "prev": previous},
        )
    currency = staged.currency or default_currency
    tx.execute(
        "UPDATE reconciliation_runs SET file_sha256 = :sha, status = :status, currency = :cur, "
        "line_count = :n, gross = :gross, fees = :fees, net = :net WHERE id = :id",
        {
            "sha": sha,
            "status": RunStatus.MATCHED.value,
            "cur": currency,
            "n": staged.count,
            "gross": staged.gross,
            "fees": staged.fees,
            "net": staged.gross - staged.fees,
            "id": run_id,
        },
    )
    params: dict[str, Any] = {
        "run": run_id,
        "c": channel,
        "d": tx.day(business_date),
        "due": tx.day(business_date + timedelta(days=rules.grace_days)),
        "cur": currency,
        "now": tx.ts(now),
        "day_start": tx.ts(staged.day_start),
        "day_end": tx.ts(staged.day_end),
        "day_text": business_date.isoformat(),
    }
    payment_lines_by_id(tx, params)
    if staged.reversals:
        reversal_lines(tx, params)
    if staged.without_id:
        lines_without_id(tx, params, policy)
    ledger_side(tx, params, staged.count)
    carry_over(tx, params)
    suspense_not_on_statement(tx, params)
    matched_later(tx, params, policy)
    set_summary(tx, run_id, _summary(tx, run_id, staged))
    return run_id


def _summary(tx: Tx, run_id: int, staged: _Staged) -> dict[str, list[int]]:
    """The run's class totals (:func:`class_totals`); the plain id matches are the payment
    lines with an id and without a finding."""
    return class_totals(tx, run_id, plain=(staged.id_payments, staged.id_payments_gross))


def class_totals(tx: Tx, run_id: int, *, plain: tuple[int, int] = (0, 0)) -> dict[str, list[int]]:
    """Run ``run_id``'s count and signed amount per finding class: the one computation of the
    totals every output shows (stored with the run, the JSON report, the terminal summary,
    the HTML page, the console).

    Each finding counts as :func:`~paygate.reconcile.model.class_amount` says (the one sign
    rule, :func:`~paygate.reconcile.model.direction`): as the statement's gross counts it, so
    that the classes of the statement's lines add up to the run's gross exactly;
    ``only_in_ledger`` is no line of the statement and no part of the gross. ``plain`` is
    (count, gross) of the payment lines with a channel transaction id, of which those without
    a finding are the plain matches (they have no row of their own). Read in ``tx``, summed
    in the database by what the rule looks at (class, line kind, a ledger reversal's key, the
    amount's sign); lines are not read.
    """
    totals: dict[str, list[int]] = {c.value: [0, 0] for c in FindingClass}
    with_findings, with_findings_gross = 0, 0
    for klass, kind, key, count, amount, by_id, by_id_gross in tx.all(
        "SELECT f.finding_class, l.kind, "  # noqa: S608 - the key is ours
        f"CASE WHEN f.line_key LIKE '{LEDGER_REVERSAL_KEY}%' THEN '{LEDGER_REVERSAL_KEY}' "
        "ELSE '' END AS subject, "
        "COUNT(*), COALESCE(SUM(f.amount), 0), "
        "SUM(CASE WHEN f.line_key LIKE 'txn:%' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN f.line_key LIKE 'txn:%' THEN f.amount ELSE 0 END) "
        "FROM reconciliation_findings f LEFT JOIN reconciliation_lines l "
        "ON l.run_id = f.run_id AND l.seq = f.line_seq "
        "WHERE f.run_id = :run "
        "GROUP BY f.finding_class, l.kind, subject, CASE WHEN f.amount < 0 THEN 1 ELSE 0 END",
        {"run": run_id},
    ):
        finding_class = FindingClass(klass)
        line_kind = None if kind is None else StatementLineKind(kind)
        total = totals[finding_class.value]
        total[0] += int(count)
        total[1] += class_amount(finding_class, line_kind, str(key), int(amount))
        with_findings += int(by_id or 0)
        with_findings_gross += int(by_id_gross or 0)
    matched = totals[FindingClass.MATCHED.value]
    matched[0] += plain[0] - with_findings
    matched[1] += plain[1] - with_findings_gross
    return {k: v for k, v in totals.items() if v[0]}


def set_summary(tx: Tx, run_id: int, summary: dict[str, list[int]]) -> None:
    """Run ``run_id``'s count and amount per finding class."""
    tx.execute(
        "UPDATE reconciliation_runs SET summary = :s WHERE id = :id",
        {"s": json.dumps(summary, separators=(",", ":")), "id": run_id},
    )


# -- bank statement runs --------------------------------------------------------------------


def record_bank_run(
    tx: Tx,
    run_id: int,
    *,
    channel: str,
    business_date: date,
    file_sha256: str,
    source: str | None,
    currency: str,
    line_count: int,
    credits: int,
    summary: dict[str, list[int]],
    actor: str,
    now: datetime,
) -> None:
    """A bank statement file's run, done as it is recorded (:mod:`paygate.reconcile.bank_leg`).

    Its gross and net are the ``credits`` in ``currency``; it has no fees and no settlement
    date, and no policy (the bank leg resolves by settling, not by a policy).
    """
    tx.execute(
        "INSERT INTO reconciliation_runs (id, kind, channel, business_date, file_sha256, source, "
        "status, currency, line_count, gross, fees, net, settlement_date, summary, policy, actor, "
        "created_at, completed_at) VALUES (:id, :kind, :c, :d, :sha, :src, :status, :cur, :n, "
        ":gross, 0, :gross, NULL, :summary, '{}', :actor, :now, :now)",
        {
            "id": run_id,
            "kind": RunKind.BANK.value,
            "c": channel,
            "d": tx.day(business_date),
            "sha": file_sha256,
            "src": source,
            "status": RunStatus.DONE.value,
            "cur": currency,
            "n": line_count,
            "gross": credits,
            "summary": json.dumps(summary, separators=(",", ":")),
            "actor": actor[:64],
            "now": tx.ts(now),
        },
    )
