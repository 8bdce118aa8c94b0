"""The console's audit trail: every staff action, with the person, their role and the reason.

Invariant: an action leaves two append-only rows, one written *before* it runs (``requested``)
and one with what came of it (``done``, or ``refused`` with the refusal's words), so that a
crash between the action and its outcome still leaves the request on the trail. The trail
never holds a password or a session token: sign-ins are recorded by user name and outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from paygate.clock import Clock
from paygate.errors import InvalidInputError, PaygateError
from paygate.store.engine import Store, Tx

__all__ = ["AuditRecord", "AuditTrail"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the trail."""

    id: int
    at: datetime
    username: str
    role: str | None
    action: str
    subject: str | None
    outcome: str
    reason: str | None
    detail: str | None


class AuditTrail:
    """Writes and reads the console's audit trail in ``store``'s database."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(
        self,
        username: str,
        role: str | None,
        action: str,
        outcome: str,
        *,
        subject: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one row; its id."""
        now = self._clock.now()

        def work(tx: Tx) -> int:
            row_id = tx.ids.one()
            tx.execute(
                "INSERT INTO console_audit (id, at, username, role, action, subject, outcome, "
                "reason, detail) VALUES (:id, :at, :u, :r, :a, :s, :o, :why, :d)",
                {
                    "id": row_id,
                    "at": tx.ts(now),
                    "u": username[:64],
                    "r": role,
                    "a": action[:48],
                    "s": None if subject is None else subject[:160],
                    "o": outcome,
                    "why": reason,
                    "d": detail,
                },
            )
            return row_id

        return self._store.run(work)

    def act(
        self,
        username: str,
        role: str | None,
        action: str,
        subject: str,
        reason: str,
        work: Callable[[], T],
        describe: Callable[[T], str] | None = None,
    ) -> T:
        """Run a staff action under the trail: ``requested``, then ``done`` or ``refused``.

        A reason is required (the refusal names the field); a PaygateError from ``work`` is
        recorded with its words and raised again.
        """
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        reason = reason.strip()
        self.record(username, role, action, "requested", subject=subject, reason=reason)
        try:
            result = work()
        except PaygateError as exc:
            self.record(
                username, role, action, "refused", subject=subject, reason=reason, detail=str(exc)
            )
            raise
        detail = (describe(result) or None) if describe is not None else None
        self.record(username, role, action, "done", subject=subject, reason=reason, detail=detail)
        return result

    def recent(self, *, limit: int = 100, username: str | None = None) -> list[AuditRecord]:
        """The newest rows first, at most ``limit``; one person's only with ``username``."""

        def work(tx: Tx) -> list[AuditRecord]:
            where = " WHERE username = :u" if username is not None else ""
            rows = tx.all(
                "SELECT id, at, username, role, action, subject, outcome, reason, detail "  # noqa: S608
                f"FROM console_audit{where} ORDER BY at DESC, id DESC LIMIT :n",
                {"u": username, "n": limit},
            )
            return [
                AuditRecord(
                    id=int(r[0]),
                    at=tx.read_ts(r[1]),
                    username=str(r[2]),
                    role=r[3],
                    action=str(r[4]),
                    subject=r[5],
                    outcome=str(r[6]),
                    reason=r[7],
                    detail=r[8],
                )
                for r in rows
            ]

        return self._store.run(work, write=False)
