"""Reading runs and findings back: what a run found and what still waits for people.

Invariant: reading never changes anything (read-only transactions), and never holds more than
one page of findings in memory: :func:`findings` pages through a run by finding number, one
short transaction a page, however many findings the run has.

Whether a finding is an *open finding* (one that waits for a person) depends on the day: an
only-in-ledger payment stays pending through the channel's grace days (its ``due_on`` is the
last of them) and becomes an open finding after; every other unresolved finding is one at once.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from paygate.models import StatementLineKind
from paygate.money import Money
from paygate.reconcile.books import Books
from paygate.reconcile.errors import UnknownRunError
from paygate.reconcile.model import (
    ClassTotal,
    Finding,
    FindingClass,
    FindingStatus,
    ReconciliationRun,
    Resolution,
    ResolutionAction,
    RunKind,
    RunStatus,
    Settlement,
)
from paygate.store.engine import Tx

__all__ = [
    "bank_key",
    "findings",
    "is_open_finding",
    "list_runs",
    "load_run",
    "read_resolution",
    "today",
]

RUN_COLUMNS = (
    "id, kind, channel, business_date, file_sha256, source, status, currency, line_count, "
    "gross, fees, net, settlement_date, summary, actor, created_at, completed_at, superseded_by"
)

# A finding about a ledger payment has no line: the payment says what the line would have.
# The payment's status is read as it is now (a refund's original may be reversed since).
_FINDING_QUERY = (
    "SELECT f.seq, f.finding_class, f.status, f.line_key, f.amount, f.ledger_amount, f.currency, "
    "f.payment_id, f.due_on, f.value_date, f.reference, f.note, l.line_no, l.kind, "
    "CASE WHEN f.line_seq IS NULL THEN p.channel_txn_id ELSE l.channel_txn_id END, "
    "l.original_txn_id, COALESCE(l.account_no, a.account_no), "
    "CASE WHEN f.line_seq IS NULL THEN p.paid_at ELSE l.occurred_at END, r.id, r.run_id, "
    "r.finding_seq, r.channel, r.line_key, r.action, r.actor, r.at, r.account_no, r.payment_id, "
    "r.entry_id, r.amount, r.currency, r.note, p.status "
    "FROM reconciliation_findings f "
    "LEFT JOIN reconciliation_lines l ON l.run_id = f.run_id AND l.seq = f.line_seq "
    "LEFT JOIN payments p ON p.id = f.payment_id "
    "LEFT JOIN accounts a ON a.id = p.account_id AND f.line_seq IS NULL "
    "LEFT JOIN reconciliation_resolutions r ON r.id = f.resolution_id "
    "WHERE f.run_id = :run AND f.seq > :after"
)

# An open finding is for people now, except an only-in-ledger one still inside its grace days.
OPEN_FINDING_SQL = (
    "(f.status = 'open' AND (f.finding_class <> 'only_in_ledger' OR f.due_on IS NULL "
    "OR f.due_on < :as_of))"
)


def today(gateway: Books) -> date:
    """The current date in the utility's time zone."""
    return gateway.clock.now().astimezone(ZoneInfo(gateway.settings.timezone)).date()


def bank_key(business_date: date) -> str:
    """The subject of a channel day's bank leg: one settlement per channel and business date."""
    return f"bank:{business_date.isoformat()}"


def is_open_finding(
    finding_class: FindingClass, status: FindingStatus, due_on: date | None, as_of: date
) -> bool:
    """Whether a finding waits for a person on ``as_of``."""
    if status is not FindingStatus.OPEN:
        return False
    if finding_class is FindingClass.ONLY_IN_LEDGER and due_on is not None:
        return as_of > due_on
    return True


def load_run(
    gateway: Books, run_id: int, *, as_of: date | None = None, replayed: bool = False
) -> ReconciliationRun:
    """The run ``run_id`` with its totals and what waits for people on ``as_of`` (today)."""
    day = as_of if as_of is not None else today(gateway)
    return gateway.store.run(lambda tx: read_run(tx, run_id, day, replayed=replayed), write=False)


def list_runs(
    gateway: Books,
    *,
    channel: str | None = None,
    business_date: date | None = None,
    include_superseded: bool = False,
    as_of: date | None = None,
    limit: int | None = None,
    after: int | None = None,
) -> list[ReconciliationRun]:
    """Finished runs, newest business date first; superseded ones only when asked; at most
    ``limit`` of them, from the one after run ``after`` (in that order) on: a page."""
    day = as_of if as_of is not None else today(gateway)

    def work(tx: Tx) -> list[ReconciliationRun]:
        clauses = ["status <> 'staging'"]
        params: dict[str, Any] = {}
        if channel is not None:
            clauses.append("channel = :c")
            params["c"] = channel
        if business_date is not None:
            clauses.append("business_date = :d")
            params["d"] = tx.day(business_date)
        if not include_superseded:
            clauses.append("superseded_by IS NULL")
        ids = tx.all(
            "SELECT id FROM reconciliation_runs WHERE "  # noqa: S608 - clauses are ours
            + " AND ".join(clauses)
            + " ORDER BY business_date DESC, channel, id DESC",
            params,
        )
        order = [int(row[0]) for row in ids]
        if after is not None:
            order = order[order.index(after) + 1 :] if after in order else []
        if limit is not None:
            order = order[:limit]
        return [read_run(tx, run_id, day) for run_id in order]

    return gateway.store.run(work, write=False)


def read_run(tx: Tx, run_id: int, as_of: date, *, replayed: bool = False) -> ReconciliationRun:
    """Read one run inside ``tx``."""
    row = tx.one(
        f"SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = :id",  # noqa: S608
        {"id": run_id},
    )
    if row is None:
        raise UnknownRunError(f"no reconciliation run {run_id}", field="run_id")
    currency = str(row[7])
    summary: dict[str, list[int]] = json.loads(row[13])
    totals = {
        FindingClass(name): ClassTotal(count=int(count), amount=Money(int(amount), currency))
        for name, (count, amount) in summary.items()
        if count
    }
    open_findings = pending = in_suspense = resolved = 0
    for finding_class, status, due_on, count in tx.all(
        "SELECT finding_class, status, due_on, COUNT(*) FROM reconciliation_findings "
        "WHERE run_id = :run AND status <> 'ok' GROUP BY finding_class, status, due_on",
        {"run": run_id},
    ):
        klass, state = FindingClass(finding_class), FindingStatus(status)
        due = None if due_on is None else tx.read_day(due_on)
        if state is FindingStatus.SUSPENSE:
            in_suspense += int(count)
        elif state is FindingStatus.RESOLVED:
            resolved += int(count)
        elif is_open_finding(klass, state, due, as_of):
            open_findings += int(count)
        else:
            pending += int(count)
    supersedes = tx.scalar(
        "SELECT MAX(id) FROM reconciliation_runs WHERE superseded_by = :id", {"id": run_id}
    )
    kind = RunKind(row[1])
    business_date = tx.read_day(row[3])
    return ReconciliationRun(
        id=int(row[0]),
        kind=kind,
        channel=str(row[2]),
        business_date=business_date,
        file_sha256=row[4],
        source=row[5],
        status=RunStatus(row[6]),
        currency=currency,
        line_count=int(row[8]),
        gross=Money(int(row[9]), currency),
        fees=Money(int(row[10]), currency),
        net=Money(int(row[11]), currency),
        settlement_date=None if row[12] is None else tx.read_day(row[12]),
        actor=str(row[14]),
        created_at=tx.read_ts(row[15]),
        completed_at=None if row[16] is None else tx.read_ts(row[16]),
        superseded_by=None if row[17] is None else int(row[17]),
        supersedes=None if supersedes is None else int(supersedes),
        replayed=replayed,
        totals=totals,
        as_of=as_of,
        open_findings=open_findings,
        pending=pending,
        in_suspense=in_suspense,
        resolved=resolved,
        settlement=read_settlement(tx, str(row[2]), business_date)
        if kind is RunKind.CHANNEL
        else None,
    )


def read_settlement(tx: Tx, channel: str, business_date: date) -> Settlement | None:
    """The bank leg posted for a channel's business date, if it was."""
    row = tx.one(
        "SELECT r.run_id, r.entry_id, r.at, r.currency, f.value_date, f.reference "
        "FROM reconciliation_resolutions r LEFT JOIN reconciliation_findings f "
        "ON f.run_id = r.run_id AND f.seq = r.finding_seq "
        "WHERE r.channel = :c AND r.line_key = :k AND r.action = 'settled'",
        {"c": channel, "k": bank_key(business_date)},
    )
    if row is None or row[1] is None:
        return None
    currency = str(row[3])
    legs = {
        str(kind): int(total)
        for kind, total in tx.all(
            "SELECT l.kind, SUM(p.amount) FROM postings p JOIN ledger_accounts l "
            "ON l.id = p.account_id WHERE p.entry_id = :e GROUP BY l.kind",
            {"e": row[1]},
        )
    }
    fees = legs.get("channel_fees", 0)
    gross = -sum(v for k, v in legs.items() if k not in ("bank", "channel_fees"))
    return Settlement(
        bank_run_id=int(row[0]),
        entry_id=int(row[1]),
        gross=Money(gross, currency),
        fees=Money(fees, currency),
        net=Money(legs.get("bank", 0), currency),
        settled_at=tx.read_ts(row[2]),
        value_date=None if row[4] is None else tx.read_day(row[4]),
        reference=row[5],
    )


def findings(
    gateway: Books,
    run_id: int,
    *,
    classes: Sequence[FindingClass] | None = None,
    open_findings_only: bool = False,
    as_of: date | None = None,
    page_size: int = 1000,
    exceptions_only: bool | None = None,
    after: int = 0,
) -> Iterator[Finding]:
    """The findings of a run in order (from the one after number ``after`` on), a page at a
    time (each page its own read).

    ``exceptions_only`` is the retired name of ``open_findings_only`` (deprecated).
    """
    if exceptions_only is not None:
        warnings.warn(
            "findings(exceptions_only=...) is deprecated; use open_findings_only",
            DeprecationWarning,
            stacklevel=2,
        )
        open_findings_only = exceptions_only
    day = as_of if as_of is not None else today(gateway)
    extra = ""
    params: dict[str, Any] = {"run": run_id, "n": page_size}
    if classes is not None:
        marks = ", ".join(f":k{i}" for i in range(len(classes)))
        extra += f" AND f.finding_class IN ({marks})"
        params.update({f"k{i}": FindingClass(c).value for i, c in enumerate(classes)})
    if open_findings_only:
        extra += f" AND {OPEN_FINDING_SQL}"

    def page(tx: Tx, after: int) -> list[Finding]:
        if open_findings_only:
            params["as_of"] = tx.day(day)
        rows = tx.all(
            _FINDING_QUERY + extra + " ORDER BY f.seq LIMIT :n",
            {**params, "after": after},
        )
        return [finding_from_row(tx, run_id, row, day) for row in rows]

    while True:
        batch = gateway.store.run(functools.partial(page, after=after), write=False)
        yield from batch
        if len(batch) < page_size:
            return
        after = batch[-1].seq


_RESOLUTION_COLUMNS = (
    "r.id, r.run_id, r.finding_seq, r.channel, r.line_key, r.action, r.actor, r.at, "
    "r.account_no, r.payment_id, r.entry_id, r.amount, r.currency, r.note"
)


def read_resolution(tx: Tx, resolution_id: int) -> Resolution:
    """One resolution, by id."""
    row = tx.one(
        f"SELECT {_RESOLUTION_COLUMNS} FROM reconciliation_resolutions r "  # noqa: S608
        "WHERE r.id = :id",
        {"id": resolution_id},
    )
    assert row is not None
    return _resolution(tx, row)


def _resolution(tx: Tx, row: Sequence[Any]) -> Resolution:
    return Resolution(
        id=int(row[0]),
        run_id=int(row[1]),
        finding_seq=int(row[2]),
        channel=str(row[3]),
        line_key=str(row[4]),
        action=ResolutionAction(row[5]),
        actor=str(row[6]),
        at=tx.read_ts(row[7]),
        account_no=row[8],
        payment_id=None if row[9] is None else int(row[9]),
        entry_id=None if row[10] is None else int(row[10]),
        amount=None if row[11] is None else Money(int(row[11]), str(row[12])),
        note=row[13],
    )


def finding_from_row(tx: Tx, run_id: int, row: Sequence[Any], as_of: date) -> Finding:
    """A :class:`Finding` from a row of the finding query."""
    currency = str(row[6])
    klass, status = FindingClass(row[1]), FindingStatus(row[2])
    due_on = None if row[8] is None else tx.read_day(row[8])
    resolution = None if row[18] is None else _resolution(tx, row[18:32])
    key = str(row[3])
    # Money in suspense is known by one number everywhere: its suspense item (the resolution
    # that parked it), whichever run's finding shows it.
    item = None
    if status is FindingStatus.SUSPENSE and resolution is not None:
        item = resolution.id
    elif key.startswith("suspense:"):
        item = int(key.removeprefix("suspense:"))
    return Finding(
        run_id=run_id,
        seq=int(row[0]),
        finding_class=klass,
        status=status,
        open_finding=is_open_finding(klass, status, due_on, as_of),
        line_key=key,
        amount=Money(int(row[4]), currency),
        ledger_amount=None if row[5] is None else Money(int(row[5]), currency),
        payment_id=None if row[7] is None else int(row[7]),
        payment_status=None if row[32] is None else row[32],
        due_on=due_on,
        value_date=None if row[9] is None else tx.read_day(row[9]),
        reference=row[10],
        note=row[11],
        line_no=None if row[12] is None else int(row[12]),
        kind=None if row[13] is None else StatementLineKind(row[13]),
        channel_txn_id=row[14],
        original_txn_id=row[15],
        account_no=row[16],
        occurred_at=None if row[17] is None else tx.read_ts(row[17]),
        resolution=resolution,
        suspense_item=item,
    )
