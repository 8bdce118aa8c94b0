"""The rows of ``payment_finding_resolutions``: what finance did about each payment finding.

This module owns the table (the workflow is :mod:`paygate.refunds.findings`). A row is
written when a finding is resolved, holding it (``settles_finding_id`` is the finding's id,
unique: a second resolution that holds is refused by the database); :func:`reopen` lets go of
it when the refund it raised fails (:mod:`paygate.refunds.service`), and the finding is open
again. Rows are never deleted: a finding's resolutions are its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from paygate.store.engine import Tx

__all__ = ["NewFindingResolution", "insert_resolution", "reopen"]


@dataclass(frozen=True, slots=True)
class NewFindingResolution:
    """One resolution as written: the caller's ``resolution_id``, the finding, what was done
    (``assigned`` or ``refunded``), the money, and what it made (payment, refund, entry)."""

    resolution_id: str
    finding_id: int
    action: str
    amount: int
    currency: str
    reason: str
    actor: str
    at: datetime
    account_id: int | None = None
    payment_id: int | None = None
    refund_id: str | None = None
    entry_id: int | None = None


def insert_resolution(tx: Tx, row: NewFindingResolution) -> None:
    """Write ``row``, holding its finding; a finding held already, or a resolution id taken
    already, raises :class:`~paygate.store.engine.UniqueViolation`."""
    tx.execute(
        "INSERT INTO payment_finding_resolutions (id, resolution_id, finding_id, "
        "settles_finding_id, action, amount, currency, account_id, payment_id, refund_id, "
        "entry_id, reason, actor, resolved_at) VALUES (:id, :rid, :f, :f, :action, :amount, "
        ":cur, :account, :payment, :refund, :entry, :reason, :actor, :at)",
        {
            "id": tx.ids.one(),
            "rid": row.resolution_id,
            "f": row.finding_id,
            "action": row.action,
            "amount": row.amount,
            "cur": row.currency,
            "account": row.account_id,
            "payment": row.payment_id,
            "refund": row.refund_id,
            "entry": row.entry_id,
            "reason": row.reason,
            "actor": row.actor[:64],
            "at": tx.ts(row.at),
        },
    )


def reopen(tx: Tx, refund_id: str, now: datetime) -> None:
    """The refund ``refund_id`` failed: if it resolved a payment finding, that finding is open
    again (its money is back in suspense, posted by the caller in ``tx``)."""
    tx.execute(
        "UPDATE payment_finding_resolutions SET settles_finding_id = NULL, reopened_at = :now "
        "WHERE refund_id = :r AND settles_finding_id IS NOT NULL",
        {"r": refund_id, "now": tx.ts(now)},
    )
