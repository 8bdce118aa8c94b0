"""How a refund is split across the payments its route refunds against.

A provider route (Alipay, WeChat Pay, the online gateway) refunds against one original payment
at a time, and at most what that payment has left to refund: its amount less the refunds
against it that have not failed. A refund larger than any one payment's remainder is split
into one refund order per payment:

* when one payment's remainder covers the whole amount, the newest such payment takes it
  all (one order, as before splits existed);
* otherwise the payments are taken newest first, each up to its remainder, until the amount
  is covered; if the channel's payments cannot cover it, the refund is refused with
  :class:`RefundShortfallError`, which names what they cover and what is left uncovered.

A transfer route (no channel) pays one order to the payee. The first order keeps the refund id
the caller gave; order ``k`` (from 2) is ``<refund id>*k`` (:func:`part_id`). Caller ids may
not end in ``*`` and digits (:func:`~paygate.refunds.model.check_refund_id`), so a part's id is
never a caller's: the orders of one refund are found from its id alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from paygate.errors import InvalidInputError, UnknownPaymentError
from paygate.money import Money
from paygate.store.engine import Tx

__all__ = [
    "LONGEST_ID",
    "Piece",
    "RefundShortfallError",
    "Refundable",
    "part_id",
    "plan",
    "refundable_payments",
    "shortfall",
]

LONGEST_ID: Final = 64
"""The longest refund order id: what Alipay's ``out_request_no`` and WeChat Pay's
``out_refund_no`` take."""


@dataclass(frozen=True, slots=True)
class Refundable:
    """A payment a provider route can refund against, and what it has left to refund."""

    payment_id: int
    channel_txn_id: str
    amount: int
    """The payment's amount, in minor units."""
    remainder: int
    """Its amount less the refunds against it that have not failed."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One refund order of a split: ``amount`` against ``payment`` (None: a transfer)."""

    payment: Refundable | None
    amount: int


class RefundShortfallError(UnknownPaymentError):
    """The route's payments cannot cover the refund: ``covered`` of it, ``uncovered`` left."""

    code = "refund_shortfall"

    def __init__(
        self, message: str, *, covered: Money, uncovered: Money, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.covered = covered
        self.uncovered = uncovered


def refundable_payments(tx: Tx, account_id: int, channel: str) -> list[Refundable]:
    """The account's posted (not reversed) payments on ``channel`` with something left to
    refund, newest first."""
    rows = tx.all(
        "SELECT p.id, p.channel_txn_id, p.amount, p.amount - COALESCE((SELECT SUM(r.amount) "
        "FROM refund_orders r WHERE r.payment_id = p.id AND r.state <> 'failed'), 0) "
        "FROM payments p WHERE p.account_id = :a AND p.channel = :c AND p.status = 'posted' "
        "ORDER BY p.paid_at DESC, p.id DESC",
        {"a": account_id, "c": channel},
    )
    return [
        Refundable(int(pid), str(txn), int(amount), int(left))
        for pid, txn, amount, left in rows
        if int(left) > 0
    ]


def plan(payments: Sequence[Refundable], amount: int) -> list[Piece] | None:
    """The pieces of a refund of ``amount`` against ``payments`` (newest first), or None when
    their remainders cannot cover it.

    One piece when a payment's remainder covers ``amount`` (the newest that does); else the
    payments newest first, each up to its remainder.
    """
    if amount <= 0:
        raise ValueError("a refund amount is positive")
    for payment in payments:
        if payment.remainder >= amount:
            return [Piece(payment, amount)]
    pieces: list[Piece] = []
    left = amount
    for payment in payments:
        take = min(left, payment.remainder)
        if take <= 0:
            continue
        pieces.append(Piece(payment, take))
        left -= take
        if left == 0:
            return pieces
    return None


def shortfall(
    account_no: str,
    channel: str,
    payments: Sequence[Refundable],
    amount: Money,
    field: str,
) -> RefundShortfallError:
    """The refusal of a refund of ``amount`` that ``payments`` cannot cover."""
    cur = amount.currency
    covered = Money(sum(p.remainder for p in payments), cur)
    uncovered = amount - covered
    if not payments:
        message = (
            f"account {account_no} has no {channel} payment, not reversed, with anything left "
            f"to refund against: {amount} is not covered"
        )
    else:
        listed = ", ".join(f"{p.channel_txn_id} {Money(p.remainder, cur)}" for p in payments)
        message = (
            f"account {account_no}'s {channel} payments can refund {covered} of the {amount} "
            f"asked ({listed}): a shortfall of {uncovered} is not covered"
        )
    return RefundShortfallError(
        message + "; refund the rest through another route (a bank transfer)",
        covered=covered,
        uncovered=uncovered,
        field=field,
    )


def part_id(refund_id: str, part: int, field: str = "refund_id") -> str:
    """The refund id of order ``part`` (from 1) of the refund ``refund_id``."""
    if part == 1:
        return refund_id
    made = f"{refund_id}*{part}"
    if len(made) > LONGEST_ID:
        raise InvalidInputError(
            f"the refund {refund_id} is split into orders up to {made}, longer than "
            f"{LONGEST_ID} characters: shorten the id by {len(made) - LONGEST_ID}",
            field=field,
        )
    return made
