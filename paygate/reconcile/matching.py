"""The matching passes of reconciliation, and every write of its findings and resolutions.

:func:`~paygate.reconcile.engine.reconcile` stages a statement's lines and runs these passes
over them in the one transaction that classifies the run, in the order the engine's overview
gives (by id, reversals, without id, the ledger's side, carried over, suspense, matched
later). Each pass writes the findings of its kind in the database; the staged lines are never
read into memory.

This module owns ``reconciliation_findings`` and ``reconciliation_resolutions`` (see
:mod:`paygate.store.schema`): the passes write most of their rows, and the writes made after
classification are here too, each named for what its caller decides, each run in the caller's
transaction: the policy, people and suspense record resolutions and close the findings they
settle (:func:`record_resolution`, :class:`ResolutionBatch`, :func:`close_finding`,
:func:`close_suspense_findings`) or say why a finding stays open (:func:`annotate_finding`);
the bank leg records a bank statement's findings and the settlements its credits make
(:func:`insert_bank_findings`, :func:`record_settlement`, :func:`mark_settlement_mismatch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paygate.reconcile.model import FindingClass, FindingStatus, ReconcilePolicy, ResolutionAction
from paygate.store.engine import Tx

__all__ = [
    "NewResolution",
    "ResolutionBatch",
    "annotate_finding",
    "carry_over",
    "close_finding",
    "close_suspense_findings",
    "insert_bank_findings",
    "ledger_side",
    "lines_without_id",
    "mark_settlement_mismatch",
    "matched_later",
    "payment_lines_by_id",
    "record_resolution",
    "record_settlement",
    "reversal_lines",
    "suspense_not_on_statement",
]

_MATCH_ROUNDS = 5


def _seconds_apart(tx: Tx, a: str, b: str) -> str:
    if tx.dialect == "postgresql":
        return f"ABS(EXTRACT(EPOCH FROM ({a} - {b})))"
    return f"(ABS(julianday({a}) - julianday({b})) * 86400.0)"


# Findings about statement lines take the line's seq. ``later`` numbers the lines of each
# transaction the statement lists more than once (few): the first is paired, the others are
# duplicates, known as "txn:<id>#<n>" so that a resolution carries over between files.
# A payment line has a transaction id exactly when it has no line_key; the lines are selected
# by the latter, which no index covers, so that SQLite reads them in file order (through the
# primary key) instead of fetching each row at random through the transaction-id index. The
# CROSS JOIN makes SQLite start from the few duplicated ids (PostgreSQL plans it freely).
_BY_ID = """
WITH listed_twice AS (
    SELECT channel_txn_id FROM reconciliation_lines
    WHERE run_id = :run AND kind = 'payment' AND channel_txn_id IS NOT NULL
    GROUP BY channel_txn_id HAVING COUNT(*) > 1
), later AS (
    SELECT o.seq, ROW_NUMBER() OVER (PARTITION BY o.channel_txn_id ORDER BY o.seq) AS n
    FROM listed_twice t CROSS JOIN reconciliation_lines o
    WHERE o.run_id = :run AND o.channel_txn_id = t.channel_txn_id AND o.kind = 'payment'
)
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_seq, payment_id,
    line_key, amount, ledger_amount, currency, note)
SELECT :run, l.seq,
    CASE WHEN d.n > 1 THEN 'duplicate_in_statement'
         WHEN {outside} THEN 'other_business_date'
         WHEN p.id IS NULL THEN 'only_in_statement'
         WHEN p.business_date <> :d THEN 'other_business_date'
         WHEN p.amount <> l.gross OR p.currency <> l.currency THEN 'amount_mismatch'
         ELSE 'matched' END,
    'open',
    l.seq,
    CASE WHEN COALESCE(d.n, 1) = 1 THEN p.id END,
    CASE WHEN d.n > 1 THEN 'txn:' || l.channel_txn_id || '#' || d.n
         ELSE 'txn:' || l.channel_txn_id END,
    l.gross,
    CASE WHEN COALESCE(d.n, 1) = 1 THEN p.amount END,
    l.currency,
    CASE WHEN d.n > 1 THEN NULL
         WHEN p.id IS NOT NULL AND p.business_date <> :d
         THEN 'the ledger has it on business date ' || {payment_day}
         WHEN {outside} THEN {line_outside_note}
         WHEN p.id IS NOT NULL AND p.currency <> l.currency
         THEN 'the ledger has it in ' || p.currency END
FROM reconciliation_lines l
LEFT JOIN later d ON d.seq = l.seq
LEFT JOIN payments p ON p.channel = :c AND p.channel_txn_id = l.channel_txn_id
WHERE l.run_id = :run AND l.kind = 'payment' AND l.line_key IS NULL
  AND NOT (COALESCE(d.n, 1) = 1 AND p.id IS NOT NULL AND p.amount = l.gross
           AND p.currency = l.currency AND p.business_date = :d AND NOT {outside})
"""
# Every row _BY_ID writes is a finding for a person: the plain match has no row, and a line of
# another business day is never a match (see the module's docstring).


# A line whose own time is not of the run's business day (bound as :day_start, :day_end).
_OUTSIDE = "(l.occurred_at < :day_start OR l.occurred_at >= :day_end)"
_LINE_OUTSIDE_NOTE = "'its time is not on business date ' || :day_text"


def _payment_day(tx: Tx) -> str:
    # The ledger's business date as YYYY-MM-DD text (SQLite stores it so already).
    return "CAST(p.business_date AS TEXT)" if tx.dialect == "postgresql" else "p.business_date"


def payment_lines_by_id(tx: Tx, params: dict[str, Any]) -> None:
    tx.execute(
        _BY_ID.format(
            outside=_OUTSIDE, line_outside_note=_LINE_OUTSIDE_NOTE, payment_day=_payment_day(tx)
        ),
        params,
    )


_REVERSALS = """
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_seq, payment_id,
    line_key, amount, ledger_amount, currency, note)
SELECT :run, l.seq,
    CASE WHEN l.original_txn_id IS NOT NULL AND l.n > 1 THEN 'duplicate_in_statement'
         WHEN {outside} THEN 'other_business_date'
         WHEN p.id IS NULL THEN 'only_in_statement'
         WHEN p.amount <> l.gross OR p.currency <> l.currency THEN 'amount_mismatch'
         WHEN p.status = 'reversed' THEN 'reversal_matched'
         ELSE 'only_in_statement' END,
    CASE WHEN (l.original_txn_id IS NULL OR l.n = 1) AND p.id IS NOT NULL AND NOT {outside}
              AND p.amount = l.gross AND p.currency = l.currency AND p.status = 'reversed'
         THEN 'ok' ELSE 'open' END,
    l.seq,
    CASE WHEN l.original_txn_id IS NULL OR l.n = 1 THEN p.id END,
    'rev:' || COALESCE(l.original_txn_id, 'line' || l.seq) || '#' || l.n,
    l.gross,
    CASE WHEN l.original_txn_id IS NULL OR l.n = 1 THEN p.amount END,
    l.currency,
    CASE WHEN l.original_txn_id IS NULL THEN 'names no original payment'
         WHEN l.n > 1 THEN NULL
         WHEN {outside} THEN {line_outside_note}
         WHEN p.id IS NULL THEN 'the original payment is not in the ledger'
         WHEN p.currency <> l.currency THEN 'the ledger has the original in ' || p.currency
         WHEN p.amount = l.gross AND p.status = 'posted'
         THEN 'the original payment is not reversed in the ledger' END
FROM (
    SELECT seq, original_txn_id, gross, currency, occurred_at,
        ROW_NUMBER() OVER (PARTITION BY original_txn_id ORDER BY seq) AS n
    FROM reconciliation_lines WHERE run_id = :run AND kind <> 'payment'
) l
LEFT JOIN payments p ON p.channel = :c AND p.channel_txn_id = l.original_txn_id
"""


def reversal_lines(tx: Tx, params: dict[str, Any]) -> None:
    tx.execute(_REVERSALS.format(outside=_OUTSIDE, line_outside_note=_LINE_OUTSIDE_NOTE), params)


def lines_without_id(tx: Tx, params: dict[str, Any], policy: ReconcilePolicy) -> None:
    apart = _seconds_apart(tx, "p.paid_at", "l.occurred_at")
    # Mutual best: a line takes its closest payment and that payment its closest line; rounds
    # repeat with what is left, so a tie or a chain is settled in a few passes.
    pair = f"""
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_seq, payment_id,
    line_key, amount, ledger_amount, currency)
SELECT :run, c.seq, 'matched', 'ok', c.seq, c.pid, c.line_key, c.gross, c.gross, c.currency
FROM (
    SELECT l.seq, p.id AS pid, l.line_key, l.gross, l.currency,
        ROW_NUMBER() OVER (PARTITION BY l.seq ORDER BY {apart}, p.id) AS by_line,
        ROW_NUMBER() OVER (PARTITION BY p.id ORDER BY {apart}, l.seq) AS by_payment
    FROM reconciliation_lines l
    JOIN accounts a ON a.account_no = l.account_no
    JOIN payments p ON p.account_id = a.id AND p.channel = :c AND p.business_date = :d
        AND p.amount = l.gross AND p.currency = l.currency
    WHERE l.run_id = :run AND l.kind = 'payment' AND l.channel_txn_id IS NULL
      AND NOT {_OUTSIDE} AND {apart} <= :window
      AND NOT EXISTS (SELECT 1 FROM reconciliation_findings f
                      WHERE f.run_id = :run AND f.seq = l.seq)
      AND NOT EXISTS (SELECT 1 FROM reconciliation_lines o
                      WHERE o.run_id = :run AND o.channel_txn_id = p.channel_txn_id
                        AND o.kind = 'payment')
      AND NOT EXISTS (SELECT 1 FROM reconciliation_findings f JOIN reconciliation_runs r
                      ON r.id = f.run_id
                      WHERE f.payment_id = p.id AND r.channel = :c
                        AND r.superseded_by IS NULL AND r.status <> 'staging'
                        AND f.finding_class IN ('matched', 'amount_mismatch'))
) c WHERE c.by_line = 1 AND c.by_payment = 1
"""  # noqa: S608 - the interpolated expression is ours
    window = {**params, "window": policy.time_window.total_seconds()}
    for _round in range(_MATCH_ROUNDS):
        if not tx.execute(pair, window).rowcount:
            break
    tx.execute(
        f"""
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_seq, line_key,
    amount, currency, note)
SELECT :run, l.seq,
    CASE WHEN l.same > 1 THEN 'duplicate_in_statement'
         WHEN {_OUTSIDE} THEN 'other_business_date' ELSE 'only_in_statement' END,
    'open', l.seq,
    CASE WHEN l.same > 1 THEN l.line_key || '#' || l.n ELSE l.line_key END,
    l.gross, l.currency,
    CASE WHEN l.same > 1 THEN 'the statement lists this line ' || l.same || ' times'
         WHEN {_OUTSIDE} THEN {_LINE_OUTSIDE_NOTE} END
FROM (
    SELECT seq, line_key, gross, currency, occurred_at,
        ROW_NUMBER() OVER (PARTITION BY line_key ORDER BY seq) AS n,
        COUNT(*) OVER (PARTITION BY line_key) AS same
    FROM reconciliation_lines
    WHERE run_id = :run AND kind = 'payment' AND channel_txn_id IS NULL
) l
WHERE NOT EXISTS (SELECT 1 FROM reconciliation_findings f WHERE f.run_id = :run AND f.seq = l.seq)
""",  # noqa: S608 - the interpolated expressions are ours
        params,
    )


def _next_seq(tx: Tx, run_id: int, after: int) -> int:
    value = tx.scalar(
        "SELECT MAX(seq) FROM reconciliation_findings WHERE run_id = :run", {"run": run_id}
    )
    return max(after, 0 if value is None else int(value))


# A payment counts as shown on a statement when a line of this run names it, or a finding of
# another current run of the channel paired it (a line with the payment's id on another day's
# statement, or a line without an id).
_SHOWN_ELSEWHERE = """
    SELECT 1 FROM reconciliation_findings f JOIN reconciliation_runs r ON r.id = f.run_id
    WHERE f.payment_id = p.id AND r.channel = :c AND r.superseded_by IS NULL
      AND r.status <> 'staging' AND f.finding_class IN ({classes})"""


def ledger_side(tx: Tx, params: dict[str, Any], line_count: int) -> None:
    shown = _SHOWN_ELSEWHERE.format(classes="'matched', 'amount_mismatch'")
    start = _next_seq(tx, params["run"], line_count)
    tx.execute(
        f"""
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, payment_id, line_key,
    amount, currency, due_on, note)
SELECT :run, :start + ROW_NUMBER() OVER (ORDER BY p.id), 'only_in_ledger', 'open', p.id,
    'payment:' || p.id, p.amount, p.currency, :due,
    CASE WHEN p.status = 'reversed' THEN 'reversed in the ledger' END
FROM payments p
WHERE p.channel = :c AND p.business_date = :d
  AND NOT EXISTS (SELECT 1 FROM reconciliation_lines l
                  WHERE l.run_id = :run AND l.channel_txn_id = p.channel_txn_id
                    AND l.kind = 'payment')
  AND NOT EXISTS ({shown})
""",  # noqa: S608 - the subquery is ours
        {**params, "start": start},
    )
    reversal_shown = _SHOWN_ELSEWHERE.format(classes="'reversal_matched'")
    start = _next_seq(tx, params["run"], line_count)
    tx.execute(
        f"""
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, payment_id, line_key,
    amount, currency, due_on, note)
SELECT :run, :start + ROW_NUMBER() OVER (ORDER BY p.id), 'only_in_ledger', 'open', p.id,
    'reversal:' || p.id, p.amount, p.currency, :due,
    'reversed in the ledger; the statement shows the payment but not its reversal'
FROM payments p
WHERE p.channel = :c AND p.business_date = :d AND p.status = 'reversed'
  AND EXISTS (SELECT 1 FROM reconciliation_lines l
              WHERE l.run_id = :run AND l.channel_txn_id = p.channel_txn_id
                AND l.kind = 'payment')
  AND NOT EXISTS ({reversal_shown})
""",  # noqa: S608 - the subquery is ours
        {**params, "start": start},
    )


# A finding closed by a resolution: ``resolved``, or ``suspense`` while its money is parked.
_CLOSE = (
    "UPDATE reconciliation_findings SET status = :s, resolution_id = :r "
    "WHERE run_id = :run AND seq = :seq"
)


def carry_over(tx: Tx, params: dict[str, Any]) -> None:
    """Findings resolved in a run this one supersedes stay resolved: same subject, same answer.

    Not a later match (re-derived by every run from the statements themselves).
    """
    rows = tx.all(
        "SELECT f.seq, r.id, r.action FROM reconciliation_findings f "
        "JOIN reconciliation_resolutions r ON r.channel = :c AND r.line_key = f.line_key "
        "WHERE f.run_id = :run AND f.status = 'open' "
        "AND r.action NOT IN ('matched_later', 'settled') ORDER BY f.seq, r.id",
        params,
    )
    chosen: dict[int, tuple[int, str]] = {}
    for seq, resolution_id, action in rows:
        held = chosen.get(int(seq))
        # A suspense posting is superseded by its assignment or release; any other action
        # closes the subject.
        if held is None or held[1] == "suspense":
            chosen[int(seq)] = (int(resolution_id), str(action))
    tx.many(
        _CLOSE,
        [
            {
                "s": "suspense" if action == "suspense" else "resolved",
                "r": resolution_id,
                "run": params["run"],
                "seq": seq,
            }
            for seq, (resolution_id, action) in sorted(chosen.items())
        ],
    )


def suspense_not_on_statement(tx: Tx, params: dict[str, Any]) -> None:
    """Money put in suspense from an earlier file of this day that this file no longer shows."""
    start = _next_seq(tx, params["run"], 0)
    tx.execute(
        """
INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_key, amount,
    currency, due_on, resolution_id, note)
SELECT :run, :start + ROW_NUMBER() OVER (ORDER BY s.id), 'only_in_ledger', 'open',
    'suspense:' || s.id, s.amount, s.currency, :due, NULL,
    'in suspense from an earlier statement of this day, which this one does not show'
FROM reconciliation_resolutions s JOIN reconciliation_runs r ON r.id = s.run_id
WHERE s.channel = :c AND s.action = 'suspense' AND r.business_date = :d AND r.id <> :run
  AND NOT EXISTS (SELECT 1 FROM reconciliation_resolutions x
                  WHERE x.channel = s.channel AND x.line_key = s.line_key
                    AND x.action IN ('assigned', 'released'))
  AND NOT EXISTS (SELECT 1 FROM reconciliation_findings f
                  WHERE f.run_id = :run AND f.resolution_id = s.id)
""",
        {**params, "start": start},
    )
    carry_over(tx, params)


def matched_later(tx: Tx, params: dict[str, Any], policy: ReconcilePolicy) -> None:
    """Close only-in-ledger findings of other current runs that this statement accounts for."""
    rows = tx.all(
        """
SELECT f.run_id, f.seq, f.line_key, f.payment_id, f.amount, f.currency
FROM reconciliation_findings f JOIN reconciliation_runs r ON r.id = f.run_id
WHERE f.status = 'open' AND f.finding_class = 'only_in_ledger' AND f.payment_id IS NOT NULL
  AND r.channel = :c AND r.superseded_by IS NULL AND r.id <> :run
  AND EXISTS (SELECT 1 FROM reconciliation_findings m
              WHERE m.run_id = :run AND m.payment_id = f.payment_id
                AND ((f.line_key LIKE 'payment:%'
                      AND m.finding_class IN ('matched', 'amount_mismatch'))
                  OR (f.line_key LIKE 'reversal:%' AND m.finding_class = 'reversal_matched')))
ORDER BY f.run_id, f.seq
""",
        params,
    )
    for run_id, seq, key, payment_id, amount, currency in rows:
        resolution_id = tx.ids.one()
        tx.execute(
            "INSERT INTO reconciliation_resolutions (id, run_id, finding_seq, channel, line_key, "
            "action, actor, at, payment_id, amount, currency, note) VALUES (:id, :run, :seq, :c, "
            ":key, 'matched_later', :actor, :at, :pid, :amount, :cur, :note) "
            "ON CONFLICT (channel, line_key, action) DO NOTHING",
            {
                "id": resolution_id,
                "run": run_id,
                "seq": seq,
                "c": params["c"],
                "key": key,
                "actor": policy.actor,
                "at": params["now"],
                "pid": payment_id,
                "amount": amount,
                "cur": currency,
                "note": f"shown by run {params['run']}",
            },
        )
        tx.execute(
            "UPDATE reconciliation_findings SET status = 'resolved', resolution_id = "
            "(SELECT id FROM reconciliation_resolutions WHERE channel = :c AND line_key = :key "
            "AND action = 'matched_later') WHERE run_id = :run AND seq = :seq",
            {"c": params["c"], "key": key, "run": run_id, "seq": seq},
        )


# -- after classification: resolutions, and the findings they close ------------------------

_RESOLUTION_COLUMNS = (
    "id",
    "run_id",
    "finding_seq",
    "channel",
    "line_key",
    "action",
    "actor",
    "at",
    "account_no",
    "payment_id",
    "entry_id",
    "amount",
    "currency",
    "note",
)


@dataclass(frozen=True, slots=True)
class NewResolution:
    """Who did what (``action``) about the subject ``key`` of finding ``run_id:seq``, and the
    money it moved: one row of reconciliation_resolutions, its id aside."""

    run_id: int
    seq: int
    channel: str
    key: str
    action: ResolutionAction
    actor: str
    at: datetime
    account_no: str | None = None
    payment_id: int | None = None
    entry_id: int | None = None
    amount: int | None = None
    currency: str | None = None
    note: str | None = None

    def row(self, tx: Tx, resolution_id: int) -> tuple[Any, ...]:
        """The row, in _RESOLUTION_COLUMNS order."""
        return (
            resolution_id,
            self.run_id,
            self.seq,
            self.channel,
            self.key,
            self.action.value,
            self.actor[:64],
            tx.ts(self.at),
            self.account_no,
            self.payment_id,
            self.entry_id,
            self.amount,
            self.currency,
            self.note,
        )


def record_resolution(tx: Tx, resolution: NewResolution) -> int:
    """Record ``resolution``; its id.

    ``(channel, key, action)`` is unique: a second resolution of a subject for the same action
    raises :class:`~paygate.store.engine.UniqueViolation`.
    """
    resolution_id = tx.ids.one()
    tx.insert(
        "reconciliation_resolutions", _RESOLUTION_COLUMNS, [resolution.row(tx, resolution_id)]
    )
    return resolution_id


def close_finding(tx: Tx, run_id: int, seq: int, status: FindingStatus, resolution_id: int) -> None:
    """Finding ``run_id:seq`` is closed by resolution ``resolution_id``, now ``status``."""
    tx.execute(_CLOSE, {"s": status.value, "r": resolution_id, "run": run_id, "seq": seq})


@dataclass(slots=True)
class ResolutionBatch:
    """The resolutions of one page and the findings they close, written together."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, tx: Tx, resolution: NewResolution, status: FindingStatus) -> None:
        """``resolution`` of its finding, which it leaves ``status``; its id is taken now."""
        resolution_id = tx.ids.one()
        self.rows.append(resolution.row(tx, resolution_id))
        self.closes.append(
            {"s": status.value, "r": resolution_id, "run": resolution.run_id, "seq": resolution.seq}
        )

    def write(self, tx: Tx) -> None:
        """Write the resolutions, then close their findings."""
        tx.insert("reconciliation_resolutions", _RESOLUTION_COLUMNS, self.rows)
        tx.many(_CLOSE, self.closes)


def close_suspense_findings(tx: Tx, item_id: int, resolution_id: int) -> None:
    """Suspense item ``item_id`` left suspense by resolution ``resolution_id``.

    Every finding about the item closes with it: those that parked it, and the open one a
    corrected statement raised ("in suspense from an earlier statement ... does not show").
    """
    tx.execute(
        "UPDATE reconciliation_findings SET status = 'resolved', resolution_id = :r "
        "WHERE (status = 'suspense' AND resolution_id = :item) "
        "OR (status = 'open' AND finding_class = 'only_in_ledger' AND line_key = :key)",
        {"r": resolution_id, "item": item_id, "key": f"suspense:{item_id}"},
    )


def annotate_finding(tx: Tx, run_id: int, seq: int, note: str) -> None:
    """Finding ``run_id:seq`` stays as it is, with ``note`` saying why (2000 characters)."""
    tx.execute(
        "UPDATE reconciliation_findings SET note = :n WHERE run_id = :run AND seq = :seq",
        {"n": note[:2000], "run": run_id, "seq": seq},
    )


# -- the bank leg's findings ----------------------------------------------------------------


def insert_bank_findings(tx: Tx, run_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """The findings of bank statement run ``run_id``, numbered from 1 in the order given.

    Each row has ``class``, ``status``, ``key`` (the line key), ``amount``, ``cur``,
    ``value_date`` (a date or None), ``reference`` and ``note``.
    """
    tx.many(
        "INSERT INTO reconciliation_findings (run_id, seq, finding_class, status, line_key, "
        "amount, currency, value_date, reference, note) VALUES (:run, :seq, :class, :status, "
        ":key, :amount, :cur, :value_date, :reference, :note)",
        [
            {
                **row,
                "run": run_id,
                "seq": seq,
                "value_date": None if row["value_date"] is None else tx.day(row["value_date"]),
            }
            for seq, row in enumerate(rows, start=1)
        ],
    )


def record_settlement(
    tx: Tx,
    *,
    run_id: int,
    seq: int,
    channel: str,
    key: str,
    actor: str,
    at: datetime,
    entry_id: int,
    amount: int,
    currency: str,
    note: str,
    finding_note: str,
) -> int:
    """Bank credit ``run_id:seq`` settles ``channel``'s day ``key``; the resolution's id.

    Records the ``settled`` resolution (unique per channel and day: a second settlement of
    the day raises :class:`~paygate.store.engine.UniqueViolation`), then makes the credit's
    finding ``settlement_matched`` and ``ok``, noted ``finding_note``.
    """
    resolution_id = tx.ids.one()
    tx.execute(
        "INSERT INTO reconciliation_resolutions (id, run_id, finding_seq, channel, line_key, "
        "action, actor, at, entry_id, amount, currency, note) VALUES (:id, :run, :seq, :c, "
        ":key, :action, :actor, :at, :entry, :amount, :cur, :note)",
        {
            "id": resolution_id,
            "run": run_id,
            "seq": seq,
            "c": channel,
            "key": key,
            "action": ResolutionAction.SETTLED.value,
            "actor": actor[:64],
            "at": tx.ts(at),
            "entry": entry_id,
            "amount": amount,
            "cur": currency,
            "note": note,
        },
    )
    tx.execute(
        "UPDATE reconciliation_findings SET finding_class = :class, status = 'ok', "
        "resolution_id = :r, note = :note WHERE run_id = :run AND seq = :seq",
        {
            "class": FindingClass.SETTLEMENT_MATCHED.value,
            "r": resolution_id,
            "note": finding_note,
            "run": run_id,
            "seq": seq,
        },
    )
    return resolution_id


def mark_settlement_mismatch(tx: Tx, run_id: int, seq: int, note: str) -> None:
    """Open bank credit ``run_id:seq`` names channel days it does not fit: for a person."""
    tx.execute(
        "UPDATE reconciliation_findings SET finding_class = :class, note = :note "
        "WHERE run_id = :run AND seq = :seq AND status = 'open'",
        {
            "class": FindingClass.SETTLEMENT_MISMATCH.value,
            "note": note[:2000],
            "run": run_id,
            "seq": seq,
        },
    )
