"""The bank leg: each channel's net settlement arriving on the utility's bank statement.

A channel collects a business day's payments into its clearing account and, ``lag_days``
later, pays the utility the day's gross less its fees. When that credit is on the bank
statement, one entry closes the day's clearing and books the fees:

    debit  bank:<CUR>                 net
    debit  fees:<channel>:<CUR>       fees
    credit clearing:<channel>:<CUR>   gross

Invariants:

* a channel's business day is settled at most once (the resolution ``settled`` is unique per
  channel and day), and each bank credit settles at most one channel day;
* a credit is matched by the channel's bank reference pattern (then its amount must be the
  day's net, or it is a ``settlement_mismatch`` for people), or, without a reference, by the
  exact net amount, currency and value date, and only when exactly one unsettled channel day
  fits; a credit nothing accounts for is a ``bank_unmatched`` finding, and a statement that
  does not balance is a ``bank_unbalanced`` one;
* a bank statement file is a run like a channel statement: the same file again is the same run.
  Its unmatched credits are tried again whenever the bank leg runs, so a channel reconciled
  after its bank statement still finds its money;
* only the utility's own account is taken: a statement in another currency than the
  utility's, of another account than the configured one, or of a period that cannot hold the
  business date's settlements is refused whole (a :class:`~paygate.errors.ParseError` naming
  the statement's line) and records nothing;
* money out of the account (bank charges, returned credits) is never dropped: each debit is a
  ``bank_debit`` finding for a person.

Each settlement (entry, resolution and the finding it closes) is one transaction. The rows are
written by their tables' owners: the run by :mod:`paygate.reconcile.engine`, its findings and
resolutions by :mod:`paygate.reconcile.matching`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from paygate.errors import ParseError
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.reconcile.bank import (
    BankEntry,
    BankFormat,
    BankStatement,
    CsvLayout,
    read_bank_statement,
)
from paygate.reconcile.books import Books
from paygate.reconcile.config import reference_pattern
from paygate.reconcile.engine import (
    HashingReader,
    checked_sha256,
    class_totals,
    record_bank_run,
    set_summary,
)
from paygate.reconcile.matching import (
    annotate_finding,
    insert_bank_findings,
    mark_settlement_mismatch,
    record_settlement,
)
from paygate.reconcile.model import (
    FindingClass,
    FindingStatus,
    ReconciliationRun,
)
from paygate.reconcile.resolution import debit_account
from paygate.reconcile.runs import bank_key, load_run, today
from paygate.store.engine import Tx, UniqueViolation

__all__ = [
    "BANK_CHANNEL",
    "BankFile",
    "check_bank_statements",
    "read_bank_file",
    "reconcile_bank",
    "reconcile_bank_file",
    "settle_bank_credits",
]

BANK_CHANNEL = "bank"
"""The channel name bank statement runs are filed under."""

_SEARCH_LIMIT = 2000
# How far before the oldest open credit an unsettled channel day is still looked at.
_LOOKBACK = timedelta(days=45)


@dataclass(frozen=True, slots=True)
class BankFile:
    """A bank statement file read whole: its statements, its SHA-256 and where it came from."""

    statements: tuple[BankStatement, ...]
    sha256: str
    source: str


def read_bank_file(
    path: str | Path,
    *,
    format: BankFormat | str = "auto",
    csv_layout: CsvLayout | None = None,
) -> BankFile:
    """Read a bank statement file (MT940, camt.053, BAI2 or CSV) whole, hashing it as it goes.

    Touches no database. A file that cannot be read raises its
    :class:`~paygate.errors.ParseError` (or :class:`OSError`).
    """
    where = Path(path)
    with where.open("rb") as raw:
        stream = HashingReader(raw, name=str(where))
        # The readers yield statements before they reach an error further down: read the whole
        # file first, so that a refused file records nothing.
        statements = tuple(read_bank_statement(stream, format, csv_layout))
        digest = stream.hexdigest()
    return BankFile(statements=statements, sha256=digest, source=str(where))


def _period(statement: BankStatement) -> tuple[date | None, date | None]:
    dates = [
        d
        for entry in statement.entries
        for d in (entry.booking_date, entry.value_date)
        if d is not None
    ]
    first = statement.opening_date or (min(dates) if dates else statement.closing_date)
    last = statement.closing_date or (max(dates) if dates else statement.opening_date)
    return first, last


def check_bank_statements(
    statements: Iterable[BankStatement],
    *,
    currency: str,
    account: str | None = None,
    business_date: date | None = None,
    window_days: int = 7,
    source: str | None = None,
) -> None:
    """Refuse statements that are not the utility's bank account for the business date.

    Each statement must be in ``currency``, of ``account`` when one is configured (compared
    without spaces, case-insensitively: IBANs are printed in groups), and, when
    ``business_date`` is given, of a period that can hold its settlements: ending on or after
    it and starting at most ``window_days`` after it. The first statement that is not raises
    a :class:`~paygate.errors.ParseError` naming its line.
    """
    wanted = _account_key(account) if account else None
    for statement in statements:
        named = f"statement of account {statement.account_id or '(not stated)'}"
        if statement.currency != currency:
            raise ParseError(
                f"{named} is in {statement.currency}; the utility's bank account is in {currency}",
                source=source,
                line=statement.line_no,
                field="currency",
            )
        if wanted is not None and _account_key(statement.account_id or "") != wanted:
            raise ParseError(
                f"{named} is not the utility's bank account {account}",
                source=source,
                line=statement.line_no,
                field="account",
            )
        if business_date is None:
            continue
        first, last = _period(statement)
        latest = business_date + timedelta(days=window_days)
        if (last is not None and last < business_date) or (first is not None and first > latest):
            raise ParseError(
                f"{named} covers {first} to {last}, which cannot hold the settlements of "
                f"business date {business_date.isoformat()} (expected between "
                f"{business_date.isoformat()} and {latest.isoformat()})",
                source=source,
                line=statement.line_no,
                field="period",
            )


def _account_key(text: str) -> str:
    return "".join(text.split()).upper()


def reconcile_bank_file(
    gateway: Books,
    path: str | Path,
    *,
    format: BankFormat | str = "auto",
    csv_layout: CsvLayout | None = None,
    references: Mapping[str, str] | None = None,
    actor: str = "reconciliation",
    account: str | None = None,
    currency: str | None = None,
    business_date: date | None = None,
    window_days: int = 7,
) -> ReconciliationRun:
    """Reconcile a bank statement file (MT940, camt.053, BAI2 or CSV), hashed as it is read.

    A file that cannot be read, or that is not the utility's account (see
    :func:`check_bank_statements`), raises its :class:`~paygate.errors.ParseError` and records
    nothing.
    """
    read = read_bank_file(path, format=format, csv_layout=csv_layout)
    return reconcile_bank(
        gateway,
        read.statements,
        file_sha256=read.sha256,
        source=read.source,
        references=references,
        actor=actor,
        account=account,
        currency=currency,
        business_date=business_date,
        window_days=window_days,
    )


def reconcile_bank(
    gateway: Books,
    statements: Iterable[BankStatement],
    *,
    file_sha256: str,
    source: str | None = None,
    references: Mapping[str, str] | None = None,
    actor: str = "reconciliation",
    account: str | None = None,
    currency: str | None = None,
    business_date: date | None = None,
    window_days: int = 7,
) -> ReconciliationRun:
    """Record a bank statement's credits and debits as a run; settle the channel days it pays.

    ``references`` maps a channel to its bank reference pattern (see
    :func:`~paygate.reconcile.config.reference_pattern`). The statements are checked first
    with :func:`check_bank_statements`: in ``currency`` (default: the utility's), and of
    ``account``, ``business_date`` and ``window_days`` when given. The same file again
    returns the same run (``replayed``) and only retries its unmatched credits.
    """
    digest = checked_sha256(file_sha256)
    read = list(statements)
    check_bank_statements(
        read,
        currency=currency or gateway.settings.currency,
        account=account,
        business_date=business_date,
        window_days=window_days,
        source=source,
    )
    day = max(
        (s.closing_date for s in read if s.closing_date is not None),
        default=today(gateway),
    )
    now = gateway.clock.now()

    def record(tx: Tx) -> tuple[int, bool]:
        found = tx.scalar(
            "SELECT id FROM reconciliation_runs WHERE channel = :c AND file_sha256 = :s",
            {"c": BANK_CHANNEL, "s": digest},
        )
        if found is not None:
            return int(found), False
        fallback = gateway.settings.currency
        return _record_statements(tx, read, digest, source, day, actor, now, fallback), True

    try:
        run_id, fresh = gateway.store.run(record)
    except UniqueViolation:
        run_id, fresh = gateway.store.run(record)
    settle_bank_credits(gateway, references or {}, actor=actor)
    return load_run(gateway, run_id, replayed=not fresh)


def _search_text(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)[:_SEARCH_LIMIT]


def _record_statements(
    tx: Tx,
    statements: Sequence[BankStatement],
    digest: str,
    source: str | None,
    day: date,
    actor: str,
    now: datetime,
    fallback_currency: str,
) -> int:
    run_id = tx.ids.one()
    currency = statements[0].currency if statements else fallback_currency
    rows: list[dict[str, Any]] = []
    credits = 0
    entries = 0
    for index, statement in enumerate(statements, start=1):
        where = f"statement {statement.statement_id or index} of {statement.account_id or '?'}"
        if statement.balanced is False:
            difference = statement.balance_difference
            assert difference is not None
            rows.append(
                {
                    "class": FindingClass.BANK_UNBALANCED.value,
                    "status": FindingStatus.OPEN.value,
                    "key": f"bank:{digest[:16]}:{index}",
                    "amount": difference.minor,
                    "cur": statement.currency,
                    "value_date": statement.closing_date,
                    "reference": where,
                    "note": f"line {statement.line_no}: opening {statement.opening_balance} + "
                    f"entries {statement.total} - closing {statement.closing_balance} = "
                    f"{difference}",
                }
            )
        for entry in statement.entries:
            entries += 1
            if not entry.booked or entry.amount.minor == 0:
                continue
            if entry.amount.minor < 0:
                # Money out of the utility's account: a charge, a returned credit. Nothing in
                # paygate posts it; finance books it and confirms the finding.
                kind = "reversal of a credit" if entry.reversal else "debit"
                code = f" ({entry.type_code})" if entry.type_code else ""
                rows.append(
                    _entry_row(
                        FindingClass.BANK_DEBIT,
                        f"bank:{digest[:16]}:{index}",
                        statement,
                        entry,
                        f"{where}, line {entry.line_no}: {kind} of {-entry.amount}{code}",
                    )
                )
                continue
            if entry.amount.currency == currency:
                credits += entry.amount.minor
            rows.append(
                _entry_row(
                    FindingClass.BANK_UNMATCHED,
                    f"bank:{digest[:16]}:{index}",
                    statement,
                    entry,
                    f"{where}, line {entry.line_no}",
                )
            )
    record_bank_run(
        tx,
        run_id,
        channel=BANK_CHANNEL,
        business_date=day,
        file_sha256=digest,
        source=source,
        currency=currency,
        line_count=entries,
        credits=credits,
        summary={},
        actor=actor,
        now=now,
    )
    insert_bank_findings(tx, run_id, rows)
    set_summary(tx, run_id, class_totals(tx, run_id))
    return run_id


def _entry_row(
    finding_class: FindingClass,
    statement_key: str,
    statement: BankStatement,
    entry: BankEntry,
    note: str,
) -> dict[str, Any]:
    """The finding row of one bank entry, open for matching or for a person."""
    return {
        "class": finding_class.value,
        "status": FindingStatus.OPEN.value,
        "key": f"{statement_key}:{entry.line_no}",
        "amount": entry.amount.minor,
        "cur": entry.amount.currency,
        "value_date": entry.value_date or entry.booking_date or statement.closing_date,
        "reference": _search_text(
            entry.customer_reference,
            entry.bank_reference,
            entry.details,
            entry.supplementary_details,
        ),
        "note": note,
    }


@dataclass(frozen=True, slots=True)
class _Credit:
    run_id: int
    seq: int
    amount: int
    currency: str
    value_date: date | None
    text: str


@dataclass(frozen=True, slots=True)
class _Day:
    run_id: int
    channel: str
    business_date: date
    settlement_date: date
    gross: int
    fees: int
    net: int
    currency: str


def settle_bank_credits(
    gateway: Books, references: Mapping[str, str], *, actor: str = "reconciliation"
) -> int:
    """Match every open bank credit with the unsettled channel days; return how many settled."""
    credits, days = gateway.store.run(_open_credits_and_days, write=False)
    if not credits:
        return 0
    patterns = {
        (d.run_id): reference_pattern(references[d.channel], d.business_date, d.settlement_date)
        for d in days
        if references.get(d.channel)
    }
    settled = 0
    taken: set[int] = set()
    for credit in credits:
        by_reference = [
            d for d in days if d.run_id in patterns and _found(patterns[d.run_id], credit.text)
        ]
        if by_reference:
            fitting = [
                d for d in by_reference if d.net == credit.amount and d.currency == credit.currency
            ]
            choice = [d for d in fitting if d.run_id not in taken]
            if len(choice) == 1:
                settled += _settle(gateway, credit, choice[0], actor)
                taken.add(choice[0].run_id)
            else:
                _mismatch(gateway, credit, by_reference, ambiguous=len(choice) > 1)
            continue
        fitting = [
            d
            for d in days
            if d.run_id not in taken
            and d.net == credit.amount
            and d.currency == credit.currency
            and credit.value_date == d.settlement_date
        ]
        if len(fitting) == 1:
            settled += _settle(gateway, credit, fitting[0], actor)
            taken.add(fitting[0].run_id)
        elif len(fitting) > 1:
            _annotate(
                gateway,
                credit,
                "the amount and date fit "
                + ", ".join(f"{d.channel} {d.business_date}" for d in fitting)
                + "; name the channel in its bank reference pattern",
            )
    return settled


def _found(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.search(text) is not None


def _open_credits_and_days(tx: Tx) -> tuple[list[_Credit], list[_Day]]:
    credits = [
        _Credit(
            run_id=int(r[0]),
            seq=int(r[1]),
            amount=int(r[2]),
            currency=str(r[3]),
            value_date=None if r[4] is None else tx.read_day(r[4]),
            text=str(r[5] or ""),
        )
        for r in tx.all(
            "SELECT f.run_id, f.seq, f.amount, f.currency, f.value_date, f.reference "
            "FROM reconciliation_findings f JOIN reconciliation_runs r ON r.id = f.run_id "
            "WHERE r.kind = 'bank' AND f.status = 'open' "
            "AND f.finding_class IN ('bank_unmatched', 'settlement_mismatch') "
            "ORDER BY f.run_id, f.seq"
        )
    ]
    if not credits:
        return [], []
    dated = [c.value_date for c in credits if c.value_date is not None]
    since = (min(dated) if dated else date.min + _LOOKBACK) - _LOOKBACK
    days = [
        _Day(
            run_id=int(r[0]),
            channel=str(r[1]),
            business_date=tx.read_day(r[2]),
            settlement_date=tx.read_day(r[3]),
            gross=int(r[4]),
            fees=int(r[5]),
            net=int(r[6]),
            currency=str(r[7]),
        )
        for r in tx.all(
            "SELECT r.id, r.channel, r.business_date, r.settlement_date, r.gross, r.fees, r.net, "
            "r.currency FROM reconciliation_runs r WHERE r.kind = 'channel' "
            "AND r.status = 'done' AND r.superseded_by IS NULL AND r.net > 0 "
            "AND r.settlement_date >= :since ORDER BY r.settlement_date, r.channel, r.id",
            {"since": tx.day(since)},
        )
    ]
    settled = {
        (str(channel), str(key))
        for channel, key in tx.all(
            "SELECT channel, line_key FROM reconciliation_resolutions "
            "WHERE action = 'settled' AND line_key >= :first",
            {"first": bank_key(since)},
        )
    }
    return credits, [d for d in days if (d.channel, bank_key(d.business_date)) not in settled]


def _settle(gateway: Books, credit: _Credit, day: _Day, actor: str) -> int:
    def work(tx: Tx) -> int:
        status = tx.scalar(
            "SELECT status FROM reconciliation_findings WHERE run_id = :run AND seq = :seq",
            {"run": credit.run_id, "seq": credit.seq},
        )
        if status != FindingStatus.OPEN.value:
            return 0  # settled by a concurrent run of the bank leg
        now = gateway.clock.now()
        cur = day.currency
        bank = gateway.payments.ledger_account(tx, f"bank:{cur}", AccountKind.BANK, cur)
        legs = [PostingDraft(bank, day.net, cur)]
        if day.fees:
            fees = gateway.payments.ledger_account(
                tx, f"fees:{day.channel}:{cur}", AccountKind.CHANNEL_FEES, cur
            )
            legs.append(PostingDraft(fees, day.fees, cur))
        legs.append(PostingDraft(debit_account(gateway, tx, day.channel, cur), -day.gross, cur))
        entry_id = tx.ids.one()
        gateway.payments.post(
            tx,
            [
                EntryDraft(
                    kind="settlement",
                    reference=f"settlement:{day.channel}:{day.business_date.isoformat()}",
                    memo=f"{day.channel} settlement of {day.business_date} "
                    f"(reconciliation run {day.run_id}) from bank statement run {credit.run_id}",
                    business_date=credit.value_date or day.settlement_date,
                    posted_at=now,
                    postings=tuple(legs),
                    shard_key=entry_id,
                    entry_id=entry_id,
                )
            ],
        )
        record_settlement(
            tx,
            run_id=credit.run_id,
            seq=credit.seq,
            channel=day.channel,
            key=bank_key(day.business_date),
            actor=actor,
            at=now,
            entry_id=entry_id,
            amount=day.net,
            currency=cur,
            note=f"gross {day.gross}, fees {day.fees}, net {day.net} (run {day.run_id})",
            finding_note=f"settles {day.channel} {day.business_date} (run {day.run_id})",
        )
        _recount(tx, credit.run_id)
        return 1

    try:
        settled: int = gateway.store.run(work)
    except UniqueViolation:
        return 0  # the day was settled by another credit that committed first
    return settled


def _mismatch(gateway: Books, credit: _Credit, days: Sequence[_Day], *, ambiguous: bool) -> None:
    named = ", ".join(f"{d.channel} {d.business_date} (net {d.net} {d.currency})" for d in days[:5])
    note = (
        f"the reference fits several days: {named}"
        if ambiguous
        else f"the reference names {named}; the bank credited {credit.amount} {credit.currency}"
    )

    def work(tx: Tx) -> None:
        mark_settlement_mismatch(tx, credit.run_id, credit.seq, note)
        _recount(tx, credit.run_id)

    gateway.store.run(work)


def _annotate(gateway: Books, credit: _Credit, note: str) -> None:
    gateway.store.run(lambda tx: annotate_finding(tx, credit.run_id, credit.seq, note))


def _recount(tx: Tx, run_id: int) -> None:
    """A bank run's class totals follow its credits as they get matched."""
    set_summary(tx, run_id, class_totals(tx, run_id))
