"""Immutable records passed between layers: what a channel asks, what the core answers.

Every record here is a frozen pydantic model. Amounts are :class:`~paygate.money.Money`;
datetimes are aware. A channel adapter produces :class:`PaymentIntent` and
:class:`StatementLine`; the core answers with :class:`Receipt` and :class:`AccountStatus`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from paygate.errors import InvalidAmountError, InvalidInputError, NaiveDatetimeError, PaygateError
from paygate.money import Money
from paygate.renames import current_channel

__all__ = [
    "PAID_AT_CEILING",
    "PAID_AT_FLOOR",
    "AccountStatus",
    "Allocation",
    "AwareDatetime",
    "BillIssued",
    "BillStatus",
    "BulkIssue",
    "BulkResult",
    "Category",
    "DisconnectionCandidate",
    "Identifier",
    "Instant",
    "NewAccount",
    "NewBill",
    "PayOutcome",
    "PaymentIntent",
    "Receipt",
    "Reversal",
    "StatementLine",
    "StatementLineKind",
    "SupplyState",
]

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
]
"""An identifier from outside: 1-64 printable ASCII characters, no spaces."""

PAID_AT_FLOOR: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No payment is older than this: an earlier ``paid_at`` is a channel's placeholder or a bug."""
PAID_AT_CEILING: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""No payment is dated at or after this. The static bound only keeps every date conversion
safe; adapters also refuse a ``paid_at`` ahead of their own clock by more than the skew
their channel allows (``ChannelConfig.max_clock_skew``)."""


def _aware(value: datetime, info: ValidationInfo) -> datetime:
    # A plain datetime field would take a naive value (stored as if UTC, silently) and
    # AwareDatetime refuses it with pydantic's error; the documented error is this one.
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError("a datetime with a time zone is required", field=info.field_name)
    return value


Instant = Annotated[datetime, AfterValidator(_aware)]
"""An aware datetime; a naive one raises :class:`~paygate.errors.NaiveDatetimeError`."""


class Category(StrEnum):
    """Customer category; decides the late-fee rates."""

    RESIDENTIAL = "residential"
    NON_RESIDENTIAL = "non_residential"


class SupplyState(StrEnum):
    """Where an account's electricity supply stands."""

    CONNECTED = "connected"
    DISCONNECTION_PENDING = "disconnection_pending"
    DISCONNECTED = "disconnected"
    RECONNECTION_PENDING = "reconnection_pending"
    CLOSED = "closed"
    """The account is closed (销户): no supply, no payments taken."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PaymentIntent(_Frozen):
    """A customer's payment as a channel reports it: the one input to ``Gateway.pay``.

    ``(channel, channel_txn_id)`` identifies the payment for ever: the same pair again is a
    replay (same content) or an idempotency conflict (different content).
    """

    channel: Identifier
    channel_txn_id: Identifier
    account_no: Identifier
    amount: Money
    paid_at: Instant
    """When the customer paid: aware, and within [:data:`PAID_AT_FLOOR`,
    :data:`PAID_AT_CEILING`); otherwise :class:`~paygate.errors.NaiveDatetimeError` or
    :class:`~paygate.errors.InvalidInputError` naming ``paid_at``."""
    terminal_id: Identifier | None = None
    """The kiosk or POS terminal that took the payment, where there is one."""

    @field_validator("channel")
    @classmethod
    def _current_channel(cls, value: str) -> str:
        # A retired channel name is the same channel: its payments replay, never post twice.
        return current_channel(value, where="PaymentIntent.channel", stacklevel=6)

    @field_validator("paid_at")
    @classmethod
    def _sane_time(cls, value: datetime) -> datetime:
        # astimezone(UTC) of 0001-01-01 07:59+08:00 overflows: refused, not a crash.
        try:
            instant = value.astimezone(UTC)
        except OverflowError:
            raise InvalidInputError(
                f"paid_at is before {PAID_AT_FLOOR.date()}", field="paid_at"
            ) from None
        if not PAID_AT_FLOOR <= instant < PAID_AT_CEILING:
            raise InvalidInputError(
                f"paid_at {instant.isoformat()} is outside {PAID_AT_FLOOR.year}-"
                f"{PAID_AT_CEILING.year - 1}",
                field="paid_at",
            )
        return value


class Allocation(_Frozen):
    """What part of a payment went to one bill's late fee and principal."""

    bill_no: str
    late_fee: Money
    principal: Money


class Receipt(_Frozen):
    """The core's answer to a payment; identical every time the same payment is replayed."""

    payment_id: int
    channel: str
    channel_txn_id: str
    account_no: str
    amount: Money
    paid_at: Instant
    business_date: date
    replayed: bool = False
    late_fee: Money
    allocations: tuple[Allocation, ...]
    credit: Money = Field(description="the part of the payment left as credit on the account")
    balance_after: Money = Field(description="customer balance after posting; positive = owes")
    arrears_after: Money
    arrears_cleared: bool = Field(
        description="true when this payment brought the account's arrears from above zero to zero"
    )
    reconnection_order_id: int | None = Field(
        default=None,
        description="the reconnection order this payment raised, also when arrears were "
        "already zero (a prepaid account whose balance this payment brought to zero or credit)",
    )
    reconnection_reason: str | None = Field(
        default=None,
        description="why the order was raised: 'arrears cleared' (this payment cleared them) "
        "or 'balance settled' (arrears were cleared earlier or never due)",
    )


class BillStatus(_Frozen):
    """One bill as the account status shows it."""

    bill_no: str
    period: str
    amount: Money
    due_date: date
    principal_paid: Money
    principal_due: Money
    late_fee_charged: Money
    late_fee_paid: Money
    late_fee_accrued: Money = Field(description="accrued to as_of and not yet charged")
    overdue: bool


class AccountStatus(_Frozen):
    """What an account owes at a date: what a kiosk shows before the customer pays."""

    account_no: str
    name: str | None
    category: Category
    prepaid: bool
    protected: bool
    currency: str
    as_of: date
    balance: Money = Field(description="ledger balance; positive = the customer owes")
    outstanding: Money = Field(description="all unpaid principal, due or not")
    arrears: Money = Field(description="overdue principal + unpaid late fees, accrued to as_of")
    late_fee: Money = Field(description="late fee accrued to as_of and not yet charged")
    credit: Money = Field(description="prepaid credit available for later bills")
    supply_state: SupplyState
    bills: tuple[BillStatus, ...]


class PayOutcome(_Frozen):
    """One item of ``Gateway.pay_many``: posted, replayed or refused with the reason."""

    index: int
    status: str = Field(pattern="^(posted|replayed|refused)$")
    receipt: Receipt | None = None
    error_code: str | None = None
    error: str | None = None


class StatementLineKind(StrEnum):
    """What a line of a channel's settlement statement records."""

    PAYMENT = "payment"
    REFUND = "refund"
    VOID = "void"
    REVERSAL = "reversal"


class StatementLine(_Frozen):
    """One line of a channel's settlement statement, as its reader yields it.

    ``gross`` is what the customer paid (positive for payments; positive too for the amount
    given back by a refund, void or reversal, whose ``kind`` says the direction); ``fee`` is the
    channel's charge; ``net = gross - fee`` is what the channel settles.
    """

    line_no: int
    channel_txn_id: str | None
    account_no: str | None
    gross: Money
    fee: Money
    net: Money
    occurred_at: Instant
    kind: StatementLineKind = StatementLineKind.PAYMENT
    original_txn_id: str | None = None
    reference: str | None = None


class Reversal(_Frozen):
    """The result of reversing a payment: what was re-opened and where the account stands."""

    payment_id: int
    reversal_entry_id: int
    reason: str
    reopened: tuple[Allocation, ...]
    balance_after: Money
    arrears_after: Money
    supply_state: SupplyState


class BillIssued(_Frozen):
    """A bill as issued: ``created`` is false when the same bill was issued before."""

    bill_no: str
    account_no: str
    amount: Money
    period: str
    due_date: date
    created: bool
    credit_applied: Money


class DisconnectionCandidate(_Frozen):
    """An account the dunning policy allows to be disconnected, with why."""

    account_no: str
    arrears: Money
    oldest_due_date: date
    notice_served_at: Instant
    final_reminder_at: Instant | None


def _text(value: object, field: str, limit: int, *, printable: bool = True) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInputError(f"1-{limit} characters", field=field)
    if printable and not value.isprintable():
        raise InvalidInputError(f"1-{limit} printable characters", field=field)
    return value


class NewAccount(_Frozen):
    """One account of a billing run (``Gateway.open_accounts``): the arguments of
    ``Gateway.open_account``, checked the same way, each refusal naming its field.

    ``account_no`` is the key: the same account again with the same attributes is a replay;
    with others, a conflict. ``currency`` None means the settings' currency.
    """

    account_no: str
    category: Category = Category.RESIDENTIAL
    prepaid: bool = False
    protected: bool = False
    name: str | None = None
    currency: str | None = None

    @field_validator("account_no", mode="before")
    @classmethod
    def _account_no(cls, value: object) -> str:
        return _text(value, "account_no", 64)

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, value: object) -> Category:
        try:
            return Category(str(value))
        except ValueError:
            raise InvalidInputError(
                f"unknown category {value!r}; use one of {[c.value for c in Category]}",
                field="category",
            ) from None

    @field_validator("prepaid", "protected", mode="before")
    @classmethod
    def _flag(cls, value: object, info: ValidationInfo) -> bool:
        if not isinstance(value, bool):
            raise InvalidInputError("true or false", field=info.field_name)
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str | None:
        return None if value is None else _text(value, "name", 200, printable=False)

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidInputError("an ISO 4217 code such as CNY", field="currency")
        try:
            Money.zero(value)
        except PaygateError as exc:
            raise InvalidInputError(exc.message, field="currency") from None
        return value


class NewBill(_Frozen):
    """One bill of a billing run (``Gateway.issue_bills``): the arguments of
    ``Gateway.issue_bill``, checked the same way, each refusal naming its field.

    ``bill_no`` is the key: the same bill again with the same data is a replay; with other
    data, a conflict.
    """

    account_no: str
    bill_no: str
    amount: Money
    period: str
    due_date: date

    @field_validator("account_no", mode="before")
    @classmethod
    def _account_no(cls, value: object) -> str:
        return _text(value, "account_no", 64)

    @field_validator("bill_no", mode="before")
    @classmethod
    def _bill_no(cls, value: object) -> str:
        return _text(value, "bill_no", 64, printable=False)

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: object) -> str:
        if not isinstance(value, str) or not value or len(value) > 16:
            raise InvalidInputError("1-16 characters, such as 2026-10", field="period")
        return value

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: object) -> Money:
        if not isinstance(value, Money):
            raise InvalidAmountError("Money", field="amount")
        if value.minor <= 0:
            raise InvalidAmountError("a bill amount must be positive", field="amount")
        return value

    @field_validator("due_date", mode="before")
    @classmethod
    def _due_date(cls, value: object) -> date:
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidInputError("a date", field="due_date")
        return value


class BulkIssue(_Frozen):
    """An item of a billing run that was not written: a conflict or a refusal, with why."""

    index: int = Field(description="the item's position in the input, from 0")
    key: str = Field(description="the item's account_no (accounts) or bill_no (bills)")
    code: str = Field(description="the error code, as the single call would raise it")
    field: str | None
    error: str


class BulkResult(_Frozen):
    """What a billing run did: counts, and the keys and issues behind them.

    ``created`` and ``replayed`` list the keys when the run was asked to keep them (the
    default); a run of millions of rows may decline, and keep the counts only. Conflicts and
    refusals are always listed.
    """

    created_count: int = 0
    replayed_count: int = 0
    conflict_count: int = 0
    refused_count: int = 0
    created: tuple[str, ...] = ()
    replayed: tuple[str, ...] = ()
    conflicts: tuple[BulkIssue, ...] = ()
    refused: tuple[BulkIssue, ...] = ()

    @property
    def total(self) -> int:
        """How many items the run read."""
        return self.created_count + self.replayed_count + self.conflict_count + self.refused_count
