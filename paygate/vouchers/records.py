"""Card states, the redemption policy, and the immutable records batches and redemptions
return."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paygate.errors import InvalidInputError
from paygate.money import Money

_IDENTIFIER = re.compile(r"^[\x21-\x7e]{1,64}$")
_MAX_SOURCE: Final = 200


# ── records ──────────────────────────────────────────────────────────────────────────────


class VoucherStatus(StrEnum):
    """The stored state of a card (expiry and the PIN lock are derived, not stored)."""

    ISSUED = "issued"
    ACTIVATED = "activated"
    REDEEMED = "redeemed"
    FROZEN = "frozen"
    """Frozen after it was sold: the liability stays on the books."""
    FROZEN_UNSOLD = "frozen_unsold"
    """Frozen before it was sold: never a liability, never sold."""


class AttemptOutcome(StrEnum):
    """What a redemption attempt came to, as ``voucher_attempts.outcome`` records it.

    A refusal by the core after the PIN verified (an unknown account, a currency mismatch)
    is recorded under the core's error code instead.
    """

    REDEEMED = "redeemed"
    REPLAYED = "replayed"
    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"
    UNKNOWN_SERIAL = "unknown_serial"
    BAD_SERIAL = "bad_serial"
    NOT_ACTIVATED = "not_activated"
    EXPIRED = "expired"
    FROZEN = "frozen"
    ALREADY_REDEEMED = "already_redeemed"
    THROTTLED_ACCOUNT = "throttled_account"
    THROTTLED_SOURCE = "throttled_source"


# The outcomes that are guesses: they count against the account's and the source's limit.
_FAILURES: Final = (AttemptOutcome.WRONG_PIN.value, AttemptOutcome.UNKNOWN_SERIAL.value)


class RedemptionPolicy(BaseModel):
    """How many wrong guesses a card, an account and a source are allowed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_wrong_pins: int = Field(default=5, ge=1, le=100, description="wrong PINs that lock a card")
    window: timedelta = Field(
        default=timedelta(hours=1), description="the sliding window the limits below count over"
    )
    account_failures: int = Field(
        default=10, ge=1, description="failed attempts per account within the window"
    )
    source_failures: int = Field(
        default=30, ge=1, description="failed attempts per source within the window"
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the throttling window must be a positive duration")
        return value


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IssuedBatch(_Record):
    """A batch as issued: its serials run from ``first_serial`` to ``last_serial``."""

    batch_no: str
    cards: int
    first_serial: str
    last_serial: str
    face_value: Money
    expires_on: date


class ActivatedBatch(_Record):
    """A batch sold to a retailer; ``created`` is false when it was activated before."""

    batch_no: str
    retailer: str
    cards: int
    amount: Money = Field(description="face value of the cards activated: the liability taken on")
    activated_at: datetime
    created: bool


class FreezeResult(_Record):
    """What a freeze changed: cards frozen after sale and before sale."""

    batch_no: str
    frozen: int = Field(description="sold cards frozen now (their liability stays)")
    frozen_unsold: int = Field(description="unsold cards frozen now")
    frozen_value: Money = Field(description="face value of the sold cards frozen now")


class BatchReport(_Record):
    """One batch's cards by state on a date, and what the utility owes for them."""

    batch_no: str
    status: str
    retailer: str | None
    face_value: Money
    expires_on: date
    cards: int
    issued: int
    activated: int = Field(description="sold, not redeemed, not expired, not frozen")
    redeemed: int
    expired: int = Field(description="past expiry and never redeemed (sold or not)")
    frozen: int = Field(description="frozen, after sale or before")
    locked: int = Field(description="activated cards locked by wrong PINs (included in activated)")
    outstanding: Money = Field(description="liability of the activated cards")
    expired_unredeemed: Money = Field(description="liability of sold cards past expiry")
    frozen_liability: Money = Field(description="liability of cards frozen after sale")


class VoucherReport(_Record):
    """Every batch on ``as_of``; card states are current, expiry is judged on ``as_of``."""

    as_of: date
    batches: tuple[BatchReport, ...]

    def liability(self, currency: str) -> Money:
        """The voucher liability the report accounts for in ``currency``."""
        total = Money.zero(currency)
        for batch in self.batches:
            if batch.face_value.currency == currency:
                total += batch.outstanding + batch.expired_unredeemed + batch.frozen_liability
        return total


def _check_identifier(value: str, field: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidInputError("1-64 printable ASCII characters, no spaces", field=field)
    return value


def _check_text(value: str, field: str, limit: int = _MAX_SOURCE) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > limit
        or not value.isprintable()
    ):
        raise InvalidInputError(f"1-{limit} printable characters", field=field)
    return value
