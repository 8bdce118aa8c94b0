"""The records reconciliation hands out: runs, findings, resolutions, suspense items, policy.

Invariant: every record is immutable and every amount is :class:`~paygate.money.Money` (integer
minor units). A finding is a value, never an exception; whether it still waits for a person
depends on the day it is looked at (an only-in-ledger payment is pending through the channel's
grace days), so records that say so carry the ``as_of`` date they were computed for.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from paygate.models import StatementLineKind
from paygate.money import Money

__all__ = [
    "LEDGER_REVERSAL_KEY",
    "ClassTotal",
    "Finding",
    "FindingClass",
    "FindingStatus",
    "PaymentState",
    "ReconcilePolicy",
    "ReconciliationRun",
    "Resolution",
    "ResolutionAction",
    "RunKind",
    "RunStatus",
    "Settlement",
    "SignedAmounts",
    "SuspenseItem",
    "class_amount",
    "direction",
    "signed_amounts",
]


class FindingClass(StrEnum):
    """What reconciliation found about a statement line, a ledger payment or a bank entry."""

    MATCHED = "matched"
    """Line and payment agree, on the run's business day. Only pairs not made by the channel
    transaction id have a finding row (lines without ids)."""
    ONLY_IN_LEDGER = "only_in_ledger"
    """A payment (or its reversal, or money in suspense) the statement does not show."""
    ONLY_IN_STATEMENT = "only_in_statement"
    """A line the ledger does not have (a refund whose original is not reversed, too)."""
    AMOUNT_MISMATCH = "amount_mismatch"
    """Line and payment have the same transaction id and different amounts or currencies."""
    DUPLICATE_IN_STATEMENT = "duplicate_in_statement"
    """A second line for a transaction the statement already listed."""
    OTHER_BUSINESS_DATE = "other_business_date"
    """A line of another business day than the run's (by its own time under the channel's
    cut-off), or naming a payment the ledger has on another day: never a match, never posted
    or parked; an open finding for a person."""
    REVERSAL_MATCHED = "reversal_matched"
    """A refund, void or reversal line whose original payment is reversed in the ledger."""
    SETTLEMENT_MATCHED = "settlement_matched"
    """A bank credit that is a channel's net settlement; the bank leg was posted."""
    SETTLEMENT_MISMATCH = "settlement_mismatch"
    """A bank credit whose reference names a channel's settlement of another amount."""
    BANK_UNMATCHED = "bank_unmatched"
    """A bank credit no channel settlement accounts for."""
    BANK_DEBIT = "bank_debit"
    """Money out of the utility's bank account (a charge, a returned credit): for a person."""
    BANK_UNBALANCED = "bank_unbalanced"
    """A bank statement whose opening balance plus entries is not its closing balance."""


class FindingStatus(StrEnum):
    """Where a finding stands."""

    OK = "ok"
    """Nothing to do."""
    OPEN = "open"
    """Waiting for a person (an only-in-ledger payment: once its grace days are over)."""
    SUSPENSE = "suspense"
    """The money is in suspense, waiting to be assigned to an account."""
    RESOLVED = "resolved"
    """Resolved, automatically or by a person; the resolution says how."""


class ResolutionAction(StrEnum):
    """What a resolution did."""

    POSTED = "posted"
    """Posted a line as a late-arriving payment through the payment path."""
    SUSPENSE = "suspense"
    """Posted an unidentified line to suspense (clearing debited, suspense credited)."""
    ASSIGNED = "assigned"
    """Moved a suspense item to an account and posted its payment."""
    RELEASED = "released"
    """Took a suspense item back out of suspense (the statement no longer shows it)."""
    REVERSED = "reversed"
    """Reversed a payment through the payment path."""
    CONFIRMED = "confirmed"
    """A person (or the policy, for netted reversals) confirmed the ledger as it stands."""
    MATCHED_LATER = "matched_later"
    """A later statement showed the payment: the finding closed itself."""
    SETTLED = "settled"
    """The channel's net settlement arrived at the bank: clearing closed, fees posted."""


class RunKind(StrEnum):
    """What a run reconciled."""

    CHANNEL = "channel"
    BANK = "bank"


class RunStatus(StrEnum):
    """How far a run got."""

    STAGING = "staging"
    """Lines are being staged; nothing is decided yet."""
    MATCHED = "matched"
    """Every line and payment is classified; the policy's resolutions are being applied."""
    DONE = "done"
    """Classified and automatically resolved."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReconcilePolicy(_Frozen):
    """What reconciliation may resolve without a person, and how it works through a file.

    Everything else becomes an open finding for people. Every automatic resolution is recorded
    with ``actor``.
    """

    post_late_payments: bool = Field(
        default=True,
        description="post an only-in-statement payment of a known account through the Gateway",
    )
    max_late_payment: int | None = Field(
        default=None,
        ge=1,
        description="minor units; a larger late payment is left for a person",
    )
    suspense_unknown_accounts: bool = Field(
        default=True,
        description="post an only-in-statement payment of an unknown account to suspense",
    )
    confirm_netted_reversals: bool = Field(
        default=True,
        description="confirm a ledger payment the statement omits together with its reversal",
    )
    time_window: timedelta = Field(
        default=timedelta(minutes=30),
        description="how far apart a line without a transaction id and its payment may be",
    )
    stage_chunk: int = Field(default=20_000, ge=64, le=1_000_000)
    post_chunk: int = Field(default=500, ge=1, le=10_000)
    actor: str = Field(default="reconciliation", min_length=1, max_length=64)

    @field_validator("time_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=1):
            raise ValueError("the time window must be between zero and one day")
        return value


class ClassTotal(_Frozen):
    """How many findings of one class a run has, and their statement (or ledger) amount."""

    count: int
    amount: Money


class Settlement(_Frozen):
    """The bank leg of a channel run: the bank credit that settled it and the entry posted."""

    bank_run_id: int
    entry_id: int
    gross: Money
    fees: Money
    net: Money
    settled_at: datetime
    value_date: date | None
    reference: str | None


PaymentState = Literal["posted", "suspense", "reversed"]
"""Where a ledger payment stands now: posted, held in suspense (its account was closed), or
reversed (its money given back)."""

LEDGER_REVERSAL_KEY = "reversal:"
"""How the line key of a reversal only the ledger has begins (``reversal:<payment id>``)."""


def direction(kind: StatementLineKind | None, line_key: str) -> Literal[1, -1]:
    """Which way a finding's money goes: 1 in (a payment), -1 back to the customer.

    A statement line goes the way its ``kind`` says: a payment in, a refund, void or reversal
    back. What only the ledger has goes in, except a reversal (``reversal:`` key), which goes
    back. A bank entry (no kind, no ledger key of that form) is 1: its amount carries its own
    sign (a debit is negative). The one sign rule of reconciliation: the statement's gross,
    the class totals and every finding's signed amounts and difference follow it.
    """
    if kind is not None:
        return 1 if kind is StatementLineKind.PAYMENT else -1
    return -1 if line_key.startswith(LEDGER_REVERSAL_KEY) else 1


class SignedAmounts(_Frozen):
    """A finding's money with its direction: what the statement shows, what the ledger has for
    the same subject, and ``statement - ledger``.

    ``None`` where a side has nothing about the subject (counted as zero in the difference).
    A refund's difference is negative when money left that the ledger has not given back.
    """

    statement: Money | None
    ledger: Money | None
    difference: Money


def signed_amounts(
    finding_class: FindingClass,
    kind: StatementLineKind | None,
    line_key: str,
    amount: Money,
    ledger_amount: Money | None,
    payment_status: PaymentState | None,
) -> SignedAmounts:
    """A finding's :class:`SignedAmounts`, by :func:`direction` and the payment's status now.

    * A payment line: the statement ``+amount``; the ledger ``+ledger_amount`` (its payment).
    * A refund, void or reversal line: the statement ``-amount``; the ledger has given the
      original back (``-ledger_amount``) when the original payment is ``reversed``, and nothing
      (``0``) while it is not (``posted``, or held in ``suspense`` for a closed account): then
      the whole refund is the difference. Without an original in the ledger, the ledger side
      is ``None``.
    * Only in the ledger: no statement side; the ledger ``+amount`` (a payment, money in
      suspense) or ``-amount`` (a reversal).
    * A bank entry: the statement is the amount as the bank states it (a debit negative).
    """
    sign = direction(kind, line_key)
    zero = Money(0, amount.currency)
    statement: Money | None
    ledger: Money | None
    if finding_class is FindingClass.ONLY_IN_LEDGER:
        statement, ledger = None, amount * sign
    elif sign > 0 or ledger_amount is None:
        statement = amount * sign
        ledger = None if ledger_amount is None else ledger_amount * sign
    else:
        statement = amount * sign
        ledger = ledger_amount * sign if payment_status == "reversed" else zero
    difference = (statement or zero) - (ledger or zero)
    return SignedAmounts(statement=statement, ledger=ledger, difference=difference)


def class_amount(
    finding_class: FindingClass, kind: StatementLineKind | None, line_key: str, amount: int
) -> int:
    """How ``amount`` minor units of a finding count in its class's total.

    The statement's side (or the ledger's, for what only the ledger has) by :func:`direction`,
    as the statement's gross counts it, so that a statement's classes add up to its gross;
    except the difference of a bank statement that does not balance, counted by its size so
    that two statements off in opposite directions do not add up to nothing.
    """
    if finding_class is FindingClass.BANK_UNBALANCED:
        return abs(amount)
    return direction(kind, line_key) * amount


class Resolution(_Frozen):
    """One resolution: what was done about a finding, by whom, when, and what it posted."""

    id: int
    run_id: int
    finding_seq: int
    channel: str
    line_key: str
    action: ResolutionAction
    actor: str
    at: datetime
    account_no: str | None = None
    payment_id: int | None = None
    entry_id: int | None = None
    amount: Money | None = None
    note: str | None = None


class Finding(_Frozen):
    """One finding of a run, with the statement line or payment it is about.

    ``open_finding`` says whether it waits for a person on ``as_of`` (the day the run was
    read): an *open finding*. ``exception`` is its retired name (deprecated).
    """

    run_id: int
    seq: int
    finding_class: FindingClass
    status: FindingStatus
    open_finding: bool
    line_key: str
    amount: Money = Field(
        description="the line's amount as the statement gives it (a refund's too: positive; "
        "``kind`` says the direction), or the ledger's for what only the ledger has"
    )
    ledger_amount: Money | None = Field(
        default=None, description="the amount of the ledger payment the line names"
    )
    payment_id: int | None = None
    payment_status: PaymentState | None = Field(
        default=None, description="the status of that payment now: posted, suspense, reversed"
    )
    line_no: int | None = None
    kind: StatementLineKind | None = None
    channel_txn_id: str | None = None
    original_txn_id: str | None = None
    account_no: str | None = None
    occurred_at: datetime | None = None
    due_on: date | None = None
    value_date: date | None = None
    reference: str | None = None
    note: str | None = None
    resolution: Resolution | None = None
    suspense_item: int | None = Field(
        default=None,
        description="the suspense item the finding is about: what `paygate suspense` takes",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def signed(self) -> SignedAmounts:
        """The statement's and the ledger's amounts with their direction, and the difference
        (:func:`signed_amounts`): what every listing of findings shows."""
        return signed_amounts(
            self.finding_class,
            self.kind,
            self.line_key,
            self.amount,
            self.ledger_amount,
            self.payment_status,
        )

    @property
    def exception(self) -> bool:
        """Deprecated: :attr:`open_finding`."""
        warnings.warn(
            "Finding.exception is deprecated; use open_finding", DeprecationWarning, stacklevel=2
        )
        return self.open_finding


class ReconciliationRun(_Frozen):
    """One statement file reconciled: its totals, its findings by class, where it stands.

    ``replayed`` is true when the same file was given again and this is the run it made then.
    Counts of what waits for people are as of ``as_of``.
    """

    id: int
    kind: RunKind
    channel: str
    business_date: date
    file_sha256: str | None
    source: str | None
    status: RunStatus
    currency: str
    line_count: int
    gross: Money = Field(description="payments minus refunds, voids and reversals")
    fees: Money
    net: Money = Field(description="what the channel settles: gross - fees")
    settlement_date: date | None
    actor: str
    created_at: datetime
    completed_at: datetime | None
    superseded_by: int | None = None
    supersedes: int | None = None
    replayed: bool = False
    totals: dict[FindingClass, ClassTotal]
    as_of: date
    open_findings: int = Field(description="findings waiting for a person on as_of")
    pending: int = Field(description="only-in-ledger findings still within grace days")
    in_suspense: int
    resolved: int
    settlement: Settlement | None = None

    @property
    def fully_reconciled(self) -> bool:
        """No open finding left for people and nothing in suspense."""
        return self.open_findings == 0 and self.in_suspense == 0

    @property
    def exceptions(self) -> int:
        """Deprecated: :attr:`open_findings`."""
        warnings.warn(
            "ReconciliationRun.exceptions is deprecated; use open_findings",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.open_findings

    def total(self, finding_class: FindingClass) -> ClassTotal:
        """The count and amount of ``finding_class`` (zero if the run has none)."""
        return self.totals.get(finding_class, ClassTotal(count=0, amount=Money(0, self.currency)))


class SuspenseItem(_Frozen):
    """Money from a statement line that named no known account, waiting in suspense."""

    id: int
    channel: str
    business_date: date
    run_id: int
    finding_seq: int
    line_no: int | None
    channel_txn_id: str | None
    account_no: str | None = Field(description="the account the line named, if any")
    amount: Money
    occurred_at: datetime | None
    since: datetime
    entry_id: int | None
