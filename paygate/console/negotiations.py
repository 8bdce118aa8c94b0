"""大客户停电协商: the negotiation with a protected account before its disconnection.

A protected account (a hospital, a water works) is never disconnected by the dunning policy.
A supervisor records the negotiation (who at the customer agreed, the agreed date, the terms),
and approving it creates the disconnection order through
:meth:`~paygate.gateway.Gateway.order_disconnection` (``negotiated=True``), whose own checks
(arrears owed, no order under way) still apply.

Invariant: one negotiation, at most one order. The order's reason names the negotiation, so an
approval asked again after a crash between the order and the negotiation's update finds that
order and links it instead of creating another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from paygate.errors import InvalidInputError, InvalidStateError, NotFoundError, UnknownAccountError
from paygate.gateway import Gateway
from paygate.store.engine import Tx

__all__ = ["Negotiation", "Negotiations"]


@dataclass(frozen=True, slots=True)
class Negotiation:
    """A recorded negotiation, approved or not."""

    id: int
    account_no: str
    counterpart: str
    agreed_on: date
    terms: str
    recorded_by: str
    recorded_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    order_id: int | None


def order_reason(negotiation_id: int) -> str:
    """The disconnection order's reason for negotiation ``negotiation_id``."""
    return f"大客户停电协商 #{negotiation_id}"


_COLUMNS = (
    "n.id, a.account_no, n.counterpart, n.agreed_on, n.terms, n.recorded_by, n.recorded_at, "
    "n.approved_by, n.approved_at, n.order_id"
)


def _negotiation(tx: Tx, r: tuple[object, ...]) -> Negotiation:
    return Negotiation(
        id=int(str(r[0])),
        account_no=str(r[1]),
        counterpart=str(r[2]),
        agreed_on=tx.read_day(r[3]),
        terms=str(r[4]),
        recorded_by=str(r[5]),
        recorded_at=tx.read_ts(r[6]),
        approved_by=None if r[7] is None else str(r[7]),
        approved_at=None if r[8] is None else tx.read_ts(r[8]),
        order_id=None if r[9] is None else int(str(r[9])),
    )


class Negotiations:
    """Negotiations with protected accounts, on ``gateway``'s database."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def record(
        self, account_no: str, *, counterpart: str, agreed_on: date, terms: str, recorded_by: str
    ) -> int:
        """Record a negotiation with a protected account; its id."""
        if not counterpart.strip():
            raise InvalidInputError("who at the customer agreed", field="counterpart")
        if not terms.strip():
            raise InvalidInputError("what was agreed", field="terms")
        now = self._gateway.clock.now()

        def work(tx: Tx) -> int:
            row = tx.one(
                "SELECT id, protected FROM accounts WHERE account_no = :a", {"a": account_no}
            )
            if row is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            if not row[1]:
                raise InvalidStateError(
                    f"account {account_no} is not protected: the dunning policy applies",
                    field="account_no",
                )
            negotiation_id = tx.ids.one()
            tx.execute(
                "INSERT INTO console_negotiations (id, account_id, counterpart, agreed_on, terms, "
                "recorded_by, recorded_at) VALUES (:id, :a, :c, :d, :t, :by, :now)",
                {
                    "id": negotiation_id,
                    "a": int(row[0]),
                    "c": counterpart.strip()[:200],
                    "d": tx.day(agreed_on),
                    "t": terms.strip(),
                    "by": recorded_by,
                    "now": tx.ts(now),
                },
            )
            return negotiation_id

        return self._gateway.store.run(work)

    def of_account(self, account_no: str) -> list[Negotiation]:
        """The account's negotiations, newest first."""

        def work(tx: Tx) -> list[Negotiation]:
            rows = tx.all(
                f"SELECT {_COLUMNS} FROM console_negotiations n "  # noqa: S608
                "JOIN accounts a ON a.id = n.account_id WHERE a.account_no = :a "
                "ORDER BY n.id DESC",
                {"a": account_no},
            )
            return [_negotiation(tx, r) for r in rows]

        return self._gateway.store.run(work, write=False)

    def get(self, negotiation_id: int) -> Negotiation:
        """One negotiation."""

        def work(tx: Tx) -> Negotiation:
            row = tx.one(
                f"SELECT {_COLUMNS} FROM console_negotiations n "  # noqa: S608
                "JOIN accounts a ON a.id = n.account_id WHERE n.id = :id",
                {"id": negotiation_id},
            )
            if row is None:
                raise NotFoundError(f"no negotiation {negotiation_id}", field="negotiation")
            return _negotiation(tx, row)

        return self._gateway.store.run(work, write=False)

    def approve(self, negotiation_id: int, *, approved_by: str) -> int:
        """Approve the negotiated disconnection: the order's id (created, or found again)."""
        found = self.get(negotiation_id)
        if found.order_id is not None:
            raise InvalidStateError(
                f"negotiation {negotiation_id} was approved (order {found.order_id})",
                field="negotiation",
            )
        reason = order_reason(negotiation_id)
        order_id = self._gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT id FROM supply_orders WHERE kind = 'disconnect' AND reason = :r",
                {"r": reason},
            ),
            write=False,
        )
        if order_id is None:
            order_id = self._gateway.order_disconnection(
                found.account_no, approved_by=approved_by, negotiated=True, reason=reason
            )
        now = self._gateway.clock.now()
        self._gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE console_negotiations SET approved_by = :by, approved_at = :now, "
                "order_id = :o WHERE id = :id AND order_id IS NULL",
                {"by": approved_by, "now": tx.ts(now), "o": int(order_id), "id": negotiation_id},
            )
        )
        return int(order_id)
