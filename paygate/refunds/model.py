"""The records of refunds and closures as callers see them, and the checks on their ids.

A :class:`Refund` is what ``Gateway.refund`` answers and what a refund order is as it stands;
an :class:`AccountClosure` what ``Gateway.close_account`` answers; a :class:`RefundPass` what
one pass of :func:`paygate.refunds.dispatch.dispatch_refunds` did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paygate.errors import InvalidInputError
from paygate.models import SupplyState
from paygate.money import Money
from paygate.refunds.route import Payee

__all__ = [
    "AccountClosure",
    "Refund",
    "RefundOrderState",
    "RefundPass",
    "check_payee",
    "check_refund_id",
]

# The characters both wallets take in a refund request number (WeChat Pay's out_refund_no is
# the stricter: letters, digits and _-|*@), so that the id goes to every provider unchanged.
_ID = re.compile(r"^[0-9A-Za-z_\-|*@]+$")
# The orders of a refund split across payments are ``<id>*2``, ``<id>*3``… (paygate.refunds.split).
_PART = re.compile(r"\*[0-9]+$")


class RefundOrderState(StrEnum):
    """Where a refund order stands in paygate.

    ``pending`` (not yet accepted by the provider) → ``submitted`` (accepted, not final) →
    ``succeeded`` or ``failed``; an order may go from ``pending`` straight to a final state.
    """

    PENDING = "pending"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """Whether the order is settled for good."""
        return self in (RefundOrderState.SUCCEEDED, RefundOrderState.FAILED)


class Refund(BaseModel):
    """A refund order as it stands (amounts as :class:`~paygate.money.Money`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refund_id: str = Field(description="the caller's idempotency key, the provider's too")
    account_no: str
    amount: Money
    route: str
    reason: str
    state: RefundOrderState
    replayed: bool = Field(default=False, description="true when answered from an earlier call")
    channel: str | None = Field(
        default=None, description="the channel of the payment refunded against"
    )
    original_channel_txn_id: str | None = Field(
        default=None, description="the payment refunded against, by its channel transaction id"
    )
    payee_account_number: str | None = Field(
        default=None, description="the bank account a transfer refund goes to"
    )
    attempts: int = 0
    next_attempt_at: datetime | None = None
    provider_reference: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    last_error: str | None = Field(
        default=None, description="why the last attempt got no answer from the provider"
    )
    requested_at: datetime
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    entry_id: int = Field(description="the journal entry that moved the credit to refunds payable")
    final_entry_id: int | None = Field(
        default=None, description="the entry that paid it out, or gave it back as credit"
    )


class AccountClosure(BaseModel):
    """The answer to an account's closure (销户); identical every time it is replayed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    closure_id: str
    account_no: str
    reason: str
    replayed: bool = False
    final_bill_no: str | None = None
    credit_applied: Money = Field(description="credit spent on the final bill")
    refunds: tuple[Refund, ...] = Field(
        default=(),
        description="the refund orders of the credit that remained (one per payment refunded "
        "against, paygate.refunds.split), as they stood then; none when no credit remained",
    )
    supply_state: SupplyState
    closed_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _one_refund(cls, data: object) -> object:
        # A closure stored before refunds were split holds its one order as ``refund``.
        if isinstance(data, dict) and "refund" in data and "refunds" not in data:
            data = dict(data)
            one = data.pop("refund")
            data["refunds"] = () if one is None else (one,)
        return data

    @property
    def refund_amount(self) -> Money:
        """What the closure's refund orders pay back, together."""
        total = Money.zero(self.credit_applied.currency)
        for refund in self.refunds:
            total = total + refund.amount
        return total


@dataclass(slots=True)
class RefundPass:
    """What one pass over the due refund orders did."""

    submitted: int = 0
    """Orders the provider accepted and has not finished yet."""
    succeeded: int = 0
    failed: int = 0
    unavailable: int = 0
    """Orders whose provider could not be asked; each is tried again after its backoff."""
    alerts: list[str] = field(default_factory=list)
    """Refund ids that reached the alert threshold of attempts in this pass."""
    errors: list[str] = field(default_factory=list)
    """Refund ids whose route raised something else (logged; retried after the backoff)."""

    @property
    def handled(self) -> int:
        """Orders looked at in the pass."""
        return self.submitted + self.succeeded + self.failed + self.unavailable + len(self.errors)


def check_refund_id(
    value: object, name: str = "refund_id", *, longest: int = 64, new: bool = False
) -> str:
    """``value`` if it is a usable refund (or closure) id, else InvalidInputError naming
    ``name``; a ``new`` one (a caller's, for a request) may not end in ``*`` and digits, which
    name the orders of a split refund (:mod:`paygate.refunds.split`)."""
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise InvalidInputError(f"1-{longest} characters", field=name)
    if not _ID.match(value):
        raise InvalidInputError("letters, digits and _-|*@ only", field=name)
    if new and _PART.search(value):
        raise InvalidInputError(
            "may not end in * and digits: those name the orders of a split refund", field=name
        )
    return value


def check_payee(payee: object) -> Payee | None:
    """``payee`` if it is None or a complete :class:`Payee`, else InvalidInputError."""
    if payee is None:
        return None
    if not isinstance(payee, Payee):
        raise InvalidInputError("a Payee", field="payee")
    for name in ("name", "account_number", "bank_code"):
        value = getattr(payee, name)
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise InvalidInputError("1-200 characters", field=f"payee.{name}")
    return payee
