"""Resolving findings: what the policy settles by itself, what people settle, all audited.

Invariants:

* One decision, one transaction, with its audit record. A late payment is posted through
  :meth:`~paygate.payments.Payments.pay_within` (late fee, allocation, reconnection as for any
  payment) in the same transaction as the resolution that says who posted it and why; money
  put in suspense commits with its resolution; assigning a suspense item moves the money out
  of suspense and posts the customer's payment in one transaction.
* A subject is acted on at most once per action: ``reconciliation_resolutions`` is unique by
  (channel, subject, action), so a line is never posted, put in suspense or assigned twice,
  whichever runs or people ask again (:class:`SuspenseAlreadyAssignedError` says so).
* Nothing is reversed unless a person asks (:func:`resolve_finding`): the policy only posts
  what the statement proves was paid, parks what it cannot attribute, and confirms a payment
  the statement omits together with its reversal (it nets to zero).

Suspense postings debit the account the channel's payments are debited to (its clearing
account; voucher liability for recharge vouchers) and credit ``suspense:<CUR>``; assignment and
release post the opposite.

The resolutions and the findings they close are written by their owner,
:mod:`paygate.reconcile.matching`, in this module's transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from paygate.errors import InvalidInputError, PaygateError
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import PaymentIntent, Receipt, StatementLineKind
from paygate.money import Money
from paygate.reconcile.books import Books
from paygate.reconcile.errors import (
    FindingNotOpenError,
    SuspenseAlreadyAssignedError,
    UnknownFindingError,
    UnknownSuspenseItemError,
)
from paygate.reconcile.matching import (
    NewResolution,
    ResolutionBatch,
    annotate_finding,
    close_finding,
    close_suspense_findings,
    record_resolution,
)
from paygate.reconcile.model import (
    FindingClass,
    FindingStatus,
    ReconcilePolicy,
    Resolution,
    ResolutionAction,
    SuspenseItem,
)
from paygate.reconcile.runs import read_resolution
from paygate.store.engine import Tx, UniqueViolation

__all__ = [
    "apply_policy",
    "assign_suspense",
    "debit_account",
    "payment_txn_id",
    "release_suspense",
    "resolve_finding",
    "suspense_account",
    "suspense_items",
]

_ATTEMPTS = 4

T = TypeVar("T")


def debit_account(gateway: Books, tx: Tx, channel: str, currency: str) -> int:
    """The ledger account a channel's payments are debited to (the payment path's own rule)."""
    return gateway.payments.debit_account(tx, channel, currency)


def suspense_account(gateway: Books, tx: Tx, currency: str) -> int:
    """The suspense account of ``currency``: money that could not be attributed yet."""
    return gateway.payments.ledger_account(
        tx, f"suspense:{currency}", AccountKind.SUSPENSE, currency
    )


def _retrying(gateway: Books, work: Callable[[Tx], T]) -> T:
    # A concurrent writer that committed the same payment first: rolled back, asked again,
    # and the second time the payment path answers from what committed.
    for attempt in range(_ATTEMPTS):
        try:
            return gateway.store.run(work)
        except UniqueViolation as exc:
            if "reconciliation_resolutions" in exc.constraint or attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


# -- the policy -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    seq: int
    key: str
    txn: str | None
    account_no: str | None
    gross: int
    currency: str
    occurred_at: datetime
    line_no: int


_CANDIDATES = """
SELECT f.seq, f.line_key, l.channel_txn_id, l.account_no, l.gross, l.currency, l.occurred_at,
    l.line_no
FROM reconciliation_findings f
JOIN reconciliation_lines l ON l.run_id = f.run_id AND l.seq = f.line_seq
WHERE f.run_id = :run AND f.status = 'open' AND f.finding_class = 'only_in_statement'
  AND l.kind = 'payment' AND l.gross > 0 AND f.seq > :after
  AND {known} EXISTS (SELECT 1 FROM accounts a WHERE a.account_no = l.account_no)
ORDER BY f.seq LIMIT :n
"""


def _candidates(tx: Tx, run_id: int, after: int, size: int, *, known: bool) -> list[_Candidate]:
    rows = tx.all(
        _CANDIDATES.format(known="" if known else "NOT"),
        {"run": run_id, "after": after, "n": size},
    )
    return [
        _Candidate(
            seq=int(r[0]),
            key=str(r[1]),
            txn=r[2],
            account_no=r[3],
            gross=int(r[4]),
            currency=str(r[5]),
            occurred_at=tx.read_ts(r[6]),
            line_no=int(r[7]),
        )
        for r in rows
    ]


def _run_facts(tx: Tx, run_id: int) -> tuple[str, date]:
    row = tx.one(
        "SELECT channel, business_date FROM reconciliation_runs WHERE id = :id", {"id": run_id}
    )
    assert row is not None
    return str(row[0]), tx.read_day(row[1])


def payment_txn_id(key: str, txn: str | None) -> str:
    """The channel transaction id a line is posted under: its own, or one made from its key."""
    if txn is not None:
        return txn
    # A line without an id is known by the digest of what it says ("line:<digest>").
    return "recon-" + key.removeprefix("line:").split("#", 1)[0]


def apply_policy(gateway: Books, run_id: int, policy: ReconcilePolicy) -> None:
    """Resolve what ``policy`` allows on a classified run; each page one transaction."""
    if policy.post_late_payments:
        _post_late_payments(gateway, run_id, policy)
    if policy.suspense_unknown_accounts:
        _to_suspense(gateway, run_id, policy)
    if policy.confirm_netted_reversals:
        _confirm_netted(gateway, run_id, policy)


def _post_late_payments(gateway: Books, run_id: int, policy: ReconcilePolicy) -> None:
    after = 0
    while True:

        def page(tx: Tx, after: int = after) -> int | None:
            channel, _day = _run_facts(tx, run_id)
            found = _candidates(tx, run_id, after, policy.post_chunk, known=True)
            if not found:
                return None
            now = gateway.clock.now()
            postable: list[tuple[_Candidate, PaymentIntent]] = []
            for cand in found:
                if policy.max_late_payment is not None and cand.gross > policy.max_late_payment:
                    annotate_finding(
                        tx, run_id, cand.seq, "above the policy's limit for late payments"
                    )
                    continue
                try:
                    intent = PaymentIntent(
                        channel=channel,
                        channel_txn_id=payment_txn_id(cand.key, cand.txn),
                        account_no=str(cand.account_no),
                        amount=Money(cand.gross, cand.currency),
                        paid_at=cand.occurred_at,
                    )
                except ValidationError as exc:
                    problem = exc.errors(include_input=False, include_url=False)[0]
                    where = ".".join(str(p) for p in problem["loc"])
                    annotate_finding(
                        tx, run_id, cand.seq, f"cannot be posted: {where}: {problem['msg']}"
                    )
                    continue
                postable.append((cand, intent))
            results = gateway.payments.pay_within(tx, [intent for _, intent in postable])
            audit = ResolutionBatch()
            for (cand, _intent), result in zip(postable, results, strict=True):
                if isinstance(result, PaygateError):
                    annotate_finding(tx, run_id, cand.seq, f"not posted: {result}")
                    continue
                audit.add(
                    tx,
                    NewResolution(
                        run_id=run_id,
                        seq=cand.seq,
                        channel=channel,
                        key=cand.key,
                        action=ResolutionAction.POSTED,
                        actor=policy.actor,
                        at=now,
                        account_no=cand.account_no,
                        payment_id=result.payment_id,
                        amount=cand.gross,
                        currency=cand.currency,
                        note="already in the ledger"
                        if result.replayed
                        else "late-arriving payment",
                    ),
                    FindingStatus.RESOLVED,
                )
            audit.write(tx)
            return found[-1].seq

        last = _retrying(gateway, page)
        if last is None:
            return
        after = last


def _parked(tx: Tx, channel: str, keys: Sequence[str]) -> set[str]:
    marks = ", ".join(f":k{i}" for i in range(len(keys)))
    params: dict[str, Any] = {f"k{i}": key for i, key in enumerate(keys)}
    params["c"] = channel
    return {
        str(row[0])
        for row in tx.all(
            "SELECT line_key FROM reconciliation_resolutions WHERE channel = :c "  # noqa: S608
            f"AND action = 'suspense' AND line_key IN ({marks})",
            params,
        )
    }


def _to_suspense(gateway: Books, run_id: int, policy: ReconcilePolicy) -> None:
    after = 0
    while True:

        def page(tx: Tx, after: int = after) -> int | None:
            channel, day = _run_facts(tx, run_id)
            found = _candidates(tx, run_id, after, policy.post_chunk, known=False)
            if not found:
                return None
            now = gateway.clock.now()
            entries: list[EntryDraft] = []
            records: list[tuple[_Candidate, int]] = []
            parked = _parked(tx, channel, [cand.key for cand in found])
            for cand in found:
                if cand.key in parked:
                    continue  # parked meanwhile by a run of another file of the day
                entry_id = tx.ids.one()
                clearing = debit_account(gateway, tx, channel, cand.currency)
                suspense = suspense_account(gateway, tx, cand.currency)
                stated = cand.account_no or "no account"
                entries.append(
                    EntryDraft(
                        kind="suspense",
                        reference=f"suspense:{channel}:{cand.key}"[:100],
                        memo=f"{channel} statement of {day}, line {cand.line_no}: "
                        f"{stated!r} is not a known account"[:2000],
                        business_date=day,
                        posted_at=now,
                        postings=(
                            PostingDraft(clearing, cand.gross, cand.currency),
                            PostingDraft(suspense, -cand.gross, cand.currency),
                        ),
                        shard_key=entry_id,
                        entry_id=entry_id,
                    )
                )
                records.append((cand, entry_id))
            gateway.payments.post(tx, entries)
            audit = ResolutionBatch()
            for cand, entry_id in records:
                audit.add(
                    tx,
                    NewResolution(
                        run_id=run_id,
                        seq=cand.seq,
                        channel=channel,
                        key=cand.key,
                        action=ResolutionAction.SUSPENSE,
                        actor=policy.actor,
                        at=now,
                        account_no=None if cand.account_no is None else cand.account_no[:64],
                        entry_id=entry_id,
                        amount=cand.gross,
                        currency=cand.currency,
                        note="account unknown",
                    ),
                    FindingStatus.SUSPENSE,
                )
            audit.write(tx)
            return found[-1].seq

        last = _retrying(gateway, page)
        if last is None:
            return
        after = last


def _confirm_netted(gateway: Books, run_id: int, policy: ReconcilePolicy) -> None:
    def work(tx: Tx) -> None:
        channel, _day = _run_facts(tx, run_id)
        now = gateway.clock.now()
        rows = tx.all(
            "SELECT f.seq, f.line_key, f.payment_id, f.amount, f.currency "
            "FROM reconciliation_findings f JOIN payments p ON p.id = f.payment_id "
            "WHERE f.run_id = :run AND f.status = 'open' AND f.finding_class = 'only_in_ledger' "
            "AND f.line_key LIKE 'payment:%' AND p.status = 'reversed' "
            "AND NOT EXISTS (SELECT 1 FROM reconciliation_findings m JOIN reconciliation_runs r "
            "ON r.id = m.run_id WHERE m.payment_id = p.id AND r.channel = :c "
            "AND r.superseded_by IS NULL AND m.finding_class = 'reversal_matched') "
            "ORDER BY f.seq",
            {"run": run_id, "c": channel},
        )
        audit = ResolutionBatch()
        for seq, key, payment_id, amount, currency in rows:
            audit.add(
                tx,
                NewResolution(
                    run_id=run_id,
                    seq=int(seq),
                    channel=channel,
                    key=str(key),
                    action=ResolutionAction.CONFIRMED,
                    actor=policy.actor,
                    at=now,
                    payment_id=int(payment_id),
                    amount=int(amount),
                    currency=str(currency),
                    note="reversed in the ledger and absent from the statement with its reversal: "
                    "nets to zero",
                ),
                FindingStatus.RESOLVED,
            )
        audit.write(tx)

    gateway.store.run(work)


# -- people ---------------------------------------------------------------------------------


def _open_finding(tx: Tx, run_id: int, seq: int) -> tuple[Any, ...]:
    row = tx.one(
        "SELECT f.finding_class, f.status, f.line_key, f.payment_id, f.amount, f.currency, "
        "r.channel, r.superseded_by, l.kind FROM reconciliation_findings f "
        "JOIN reconciliation_runs r ON r.id = f.run_id "
        "LEFT JOIN reconciliation_lines l ON l.run_id = f.run_id AND l.seq = f.line_seq "
        "WHERE f.run_id = :run AND f.seq = :seq",
        {"run": run_id, "seq": seq},
    )
    if row is None:
        raise UnknownFindingError(f"no finding {run_id}:{seq}", field="finding")
    if row[7] is not None:
        raise FindingNotOpenError(
            f"run {run_id} was superseded by run {row[7]}; resolve the finding there",
            field="finding",
        )
    if row[1] != FindingStatus.OPEN.value:
        raise FindingNotOpenError(f"finding {run_id}:{seq} is {row[1]}", field="finding")
    return row


def resolve_finding(
    gateway: Books,
    run_id: int,
    seq: int,
    action: ResolutionAction | str,
    *,
    actor: str,
    reason: str,
) -> Resolution:
    """A person's resolution of an open finding: ``confirmed`` or ``reversed``.

    ``confirmed`` accepts the ledger as it stands (any open finding). ``reversed`` reverses
    through :meth:`~paygate.payments.Payments.reverse` the payment an only-in-ledger finding
    names, or the original of a refund the ledger has not reversed; on money left in suspense
    by an earlier file it releases it. The reversal is idempotent: asked again after a crash
    between reversing and recording, it records the reversal that happened.
    """
    chosen = ResolutionAction(action)
    if not actor or not reason or not reason.strip():
        raise InvalidInputError("who resolves, and why, are required", field="reason")
    if chosen not in (ResolutionAction.CONFIRMED, ResolutionAction.REVERSED):
        raise FindingNotOpenError(
            f"a person resolves a finding with confirmed or reversed, not {chosen.value}",
            field="action",
        )
    row = gateway.store.run(lambda tx: _open_finding(tx, run_id, seq), write=False)
    klass, key = FindingClass(row[0]), str(row[2])
    if chosen is ResolutionAction.CONFIRMED:
        return _record_person(gateway, run_id, seq, chosen, actor, reason, None, None)
    if klass is FindingClass.ONLY_IN_LEDGER and key.startswith("suspense:"):
        item = int(key.removeprefix("suspense:"))

        def release(tx: Tx) -> None:
            # Out of suspense already (assigned, or released by `paygate suspense release`):
            # only the person's resolution is recorded.
            with contextlib.suppress(SuspenseAlreadyAssignedError):
                _release(gateway, tx, item, _suspense_row(tx, item), actor, reason)

        # The release and the person's resolution are one decision: one transaction.
        return _record_person(
            gateway, run_id, seq, chosen, actor, reason, None, None, before=release
        )
    reversible = (klass is FindingClass.ONLY_IN_LEDGER and key.startswith("payment:")) or (
        klass is FindingClass.ONLY_IN_STATEMENT
        and row[8] is not None
        and StatementLineKind(row[8]) is not StatementLineKind.PAYMENT
        and row[3] is not None
    )
    if not reversible:
        raise FindingNotOpenError(
            f"finding {run_id}:{seq} ({klass.value}) has no payment to reverse; confirm it",
            field="action",
        )
    payment_id = int(row[3])
    status, reversal_entry = gateway.store.run(
        lambda tx: tx.one(
            "SELECT status, reversal_entry_id FROM payments WHERE id = :id", {"id": payment_id}
        ),
        write=False,
    ) or (None, None)
    if status == "posted":
        reversal_entry = gateway.payments.reverse(payment_id, reason).reversal_entry_id
    return _record_person(
        gateway,
        run_id,
        seq,
        chosen,
        actor,
        reason,
        payment_id,
        None if reversal_entry is None else int(reversal_entry),
    )


def _record_person(
    gateway: Books,
    run_id: int,
    seq: int,
    action: ResolutionAction,
    actor: str,
    reason: str,
    payment_id: int | None,
    entry_id: int | None,
    *,
    before: Callable[[Tx], None] | None = None,
) -> Resolution:
    def work(tx: Tx) -> Resolution:
        row = _open_finding(tx, run_id, seq)
        if before is not None:
            before(tx)
        channel, key = str(row[6]), str(row[2])
        now = gateway.clock.now()
        existing = tx.scalar(
            "SELECT id FROM reconciliation_resolutions WHERE channel = :c AND line_key = :k "
            "AND action = :a",
            {"c": channel, "k": key, "a": action.value},
        )
        resolution_id = (
            int(existing)
            if existing is not None
            else record_resolution(
                tx,
                NewResolution(
                    run_id=run_id,
                    seq=seq,
                    channel=channel,
                    key=key,
                    action=action,
                    actor=actor,
                    at=now,
                    payment_id=payment_id,
                    entry_id=entry_id,
                    amount=int(row[4]),
                    currency=str(row[5]),
                    note=reason[:2000],
                ),
            )
        )
        close_finding(tx, run_id, seq, FindingStatus.RESOLVED, resolution_id)
        return read_resolution(tx, resolution_id)

    return gateway.store.run(work)


# -- suspense -------------------------------------------------------------------------------

_SUSPENSE_QUERY = """
SELECT s.id, s.channel, r.business_date, s.run_id, s.finding_seq, l.line_no, l.channel_txn_id,
    s.account_no, s.amount, s.currency, l.occurred_at, s.at, s.entry_id, s.line_key
FROM reconciliation_resolutions s
JOIN reconciliation_runs r ON r.id = s.run_id
LEFT JOIN reconciliation_findings f ON f.run_id = s.run_id AND f.seq = s.finding_seq
LEFT JOIN reconciliation_lines l ON l.run_id = f.run_id AND l.seq = f.line_seq
WHERE s.action = 'suspense'
  AND NOT EXISTS (SELECT 1 FROM reconciliation_resolutions x WHERE x.channel = s.channel
                  AND x.line_key = s.line_key AND x.action IN ('assigned', 'released'))
"""


def _item(tx: Tx, row: Sequence[Any]) -> SuspenseItem:
    return SuspenseItem(
        id=int(row[0]),
        channel=str(row[1]),
        business_date=tx.read_day(row[2]),
        run_id=int(row[3]),
        finding_seq=int(row[4]),
        line_no=None if row[5] is None else int(row[5]),
        channel_txn_id=row[6],
        account_no=row[7],
        amount=Money(int(row[8]), str(row[9])),
        occurred_at=None if row[10] is None else tx.read_ts(row[10]),
        since=tx.read_ts(row[11]),
        entry_id=None if row[12] is None else int(row[12]),
    )


def suspense_items(
    gateway: Books, *, channel: str | None = None, limit: int | None = None, after: int = 0
) -> list[SuspenseItem]:
    """Money in suspense, waiting for a person to name its account; oldest first; at most
    ``limit`` items, from the one after item ``after`` on (a page)."""

    def work(tx: Tx) -> list[SuspenseItem]:
        extra = " AND s.channel = :c" if channel is not None else ""
        extra += " AND s.id > :after" if after else ""
        extra += " ORDER BY s.id" + (" LIMIT :n" if limit is not None else "")
        rows = tx.all(_SUSPENSE_QUERY + extra, {"c": channel, "after": after, "n": limit})
        return [_item(tx, row) for row in rows]

    return gateway.store.run(work, write=False)


def _suspense_row(tx: Tx, item_id: int) -> tuple[Any, ...]:
    lock = " FOR UPDATE OF s" if tx.dialect == "postgresql" else ""
    row = tx.one(
        "SELECT s.id, s.channel, r.business_date, s.run_id, s.finding_seq, l.line_no, "  # noqa: S608
        "l.channel_txn_id, s.account_no, s.amount, s.currency, l.occurred_at, s.at, s.entry_id, "
        "s.line_key FROM reconciliation_resolutions s "
        "JOIN reconciliation_runs r ON r.id = s.run_id "
        "LEFT JOIN reconciliation_findings f ON f.run_id = s.run_id AND f.seq = s.finding_seq "
        "LEFT JOIN reconciliation_lines l ON l.run_id = f.run_id AND l.seq = f.line_seq "
        f"WHERE s.id = :id AND s.action = 'suspense'{lock}",
        {"id": item_id},
    )
    if row is None:
        raise UnknownSuspenseItemError(f"no suspense item {item_id}", field="item")
    done = tx.one(
        "SELECT action, account_no, actor, at FROM reconciliation_resolutions "
        "WHERE channel = :c AND line_key = :k AND action IN ('assigned', 'released')",
        {"c": row[1], "k": row[13]},
    )
    if done is not None:
        action, account_no, actor, at = done
        where = f" to account {account_no}" if account_no else ""
        raise SuspenseAlreadyAssignedError(
            f"suspense item {item_id} was already {action}{where} by {actor} at "
            f"{tx.read_ts(at).isoformat(timespec='seconds')}; nothing was posted",
            field="item",
        )
    return row


def _out_of_suspense(gateway: Books, tx: Tx, item: SuspenseItem, memo: str, now: datetime) -> int:
    entry_id = tx.ids.one()
    currency = item.amount.currency
    suspense = suspense_account(gateway, tx, currency)
    gateway.payments.post(
        tx,
        [
            EntryDraft(
                kind="suspense",
                reference=f"suspense-out:{item.channel}:{item.id}"[:100],
                memo=memo[:2000],
                business_date=now.astimezone(ZoneInfo(gateway.settings.timezone)).date(),
                posted_at=now,
                postings=(
                    PostingDraft(suspense, item.amount.minor, currency),
                    PostingDraft(
                        debit_account(gateway, tx, item.channel, currency),
                        -item.amount.minor,
                        currency,
                    ),
                ),
                shard_key=entry_id,
                entry_id=entry_id,
            )
        ],
    )
    return entry_id


def assign_suspense(
    gateway: Books, item_id: int, account_no: str, *, actor: str = "finance"
) -> Receipt:
    """Move a suspense item to ``account_no``: out of suspense, posted as its payment, at once.

    The payment goes through :meth:`~paygate.payments.Payments.pay_within` under the line's
    channel transaction id (late fee, allocation and reconnection as for any payment), in the
    same transaction as the entry that takes the money out of suspense and the resolution that
    records who assigned it. A second assignment raises
    :class:`~paygate.reconcile.errors.SuspenseAlreadyAssignedError` and posts nothing.
    """

    def work(tx: Tx) -> Receipt:
        row = _suspense_row(tx, item_id)
        item = _item(tx, row)
        key = str(row[13])
        now = gateway.clock.now()
        intent = PaymentIntent(
            channel=item.channel,
            channel_txn_id=payment_txn_id(key, item.channel_txn_id),
            account_no=account_no,
            amount=item.amount,
            paid_at=item.occurred_at or item.since,
        )
        [result] = gateway.payments.pay_within(tx, [intent])
        if isinstance(result, PaygateError):
            raise result
        entry_id = _out_of_suspense(
            gateway,
            tx,
            item,
            f"suspense item {item_id} assigned to {account_no} by {actor}",
            now,
        )
        resolution_id = record_resolution(
            tx,
            NewResolution(
                run_id=item.run_id,
                seq=item.finding_seq,
                channel=item.channel,
                key=key,
                action=ResolutionAction.ASSIGNED,
                actor=actor,
                at=now,
                account_no=account_no,
                payment_id=result.payment_id,
                entry_id=entry_id,
                amount=item.amount.minor,
                currency=item.amount.currency,
                note="the payment was already in the ledger" if result.replayed else None,
            ),
        )
        close_suspense_findings(tx, item_id, resolution_id)
        return result

    try:
        receipt = _retrying(gateway, work)
    except UniqueViolation:
        # Another person assigned it in the same instant and committed first.
        gateway.store.run(lambda tx: _suspense_row(tx, item_id), write=False)
        raise
    return receipt


def _release(
    gateway: Books, tx: Tx, item_id: int, row: Sequence[Any], actor: str, reason: str
) -> int:
    item = _item(tx, row)
    now = gateway.clock.now()
    entry_id = _out_of_suspense(
        gateway, tx, item, f"suspense item {item_id} released by {actor}: {reason}", now
    )
    resolution_id = record_resolution(
        tx,
        NewResolution(
            run_id=item.run_id,
            seq=item.finding_seq,
            channel=item.channel,
            key=str(row[13]),
            action=ResolutionAction.RELEASED,
            actor=actor,
            at=now,
            entry_id=entry_id,
            amount=item.amount.minor,
            currency=item.amount.currency,
            note=reason[:2000],
        ),
    )
    close_suspense_findings(tx, item_id, resolution_id)
    return entry_id


def release_suspense(gateway: Books, item_id: int, *, actor: str, reason: str) -> int:
    """Take a suspense item back out (debit suspense, credit clearing); the entry id.

    For money parked from a line that a corrected statement no longer shows.
    """
    if not reason or not reason.strip():
        raise InvalidInputError("a reason is required", field="reason")

    def work(tx: Tx) -> int:
        return _release(gateway, tx, item_id, _suspense_row(tx, item_id), actor, reason)

    try:
        released: int = gateway.store.run(work)
    except UniqueViolation:
        gateway.store.run(lambda tx: _suspense_row(tx, item_id), write=False)
        raise
    return released
