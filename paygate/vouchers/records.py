"""Card states, the redemption policy, the immutable records batches and redemptions
return, and every write of the voucher tables.

This module owns ``voucher_batches``, ``vouchers`` and ``voucher_attempts`` (see
:mod:`paygate.store.schema`): :mod:`paygate.vouchers.service` and
:mod:`paygate.vouchers.batches` decide, and write through the functions at the end of this
module, in their own transactions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paygate.errors import InvalidInputError
from paygate.money import Money
from paygate.store.engine import Tx

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


# ── writes ───────────────────────────────────────────────────────────────────────────────

CARD_COLUMNS: Final = ("id", "serial", "batch_id", "pin_hash", "status", "failed_attempts")
"""The columns of a new card's row, in the order :func:`insert_cards` takes them."""


def insert_batch(
    tx: Tx,
    batch_id: int,
    batch_no: str,
    face_value: Money,
    card_count: int,
    expires_on: date,
    now: datetime,
) -> None:
    """A batch as issued. Its number is unique: an issued one raises ``UniqueViolation``."""
    tx.execute(
        "INSERT INTO voucher_batches (id, batch_no, face_value, currency, card_count, "
        "expires_on, status, retailer, created_at, activated_at, frozen_at) VALUES "
        "(:id, :no, :face, :cur, :n, :exp, 'issued', NULL, :now, NULL, NULL)",
        {
            "id": batch_id,
            "no": batch_no,
            "face": face_value.minor,
            "cur": face_value.currency,
            "n": card_count,
            "exp": tx.day(expires_on),
            "now": tx.ts(now),
        },
    )


def insert_cards(tx: Tx, rows: Sequence[Sequence[Any]]) -> None:
    """A batch's cards as issued, each row in :data:`CARD_COLUMNS` order."""
    tx.insert("vouchers", CARD_COLUMNS, rows)


def move_cards(
    tx: Tx,
    batch_id: int,
    before: VoucherStatus,
    after: VoucherStatus,
    *,
    serials: tuple[str, str] | None = None,
) -> int:
    """Cards of the batch (from serial to serial, if given) in ``before`` are now ``after``.

    Returns the driver's count of cards moved. A card another transaction holds (a redemption
    in flight) is waited for, then moved only if it is still ``before``.
    """
    where = "batch_id = :b"
    params: dict[str, Any] = {"b": batch_id}
    if serials is not None:
        where += " AND serial BETWEEN :f AND :l"
        params.update(f=serials[0], l=serials[1])
    count: int = tx.execute(
        f"UPDATE vouchers SET status = :to WHERE {where} AND status = :from",  # noqa: S608
        {**params, "to": after.value, "from": before.value},
    ).rowcount
    return count


def mark_batch_activated(tx: Tx, batch_id: int, retailer: str, now: datetime) -> None:
    """The batch is sold to ``retailer`` at ``now``."""
    tx.execute(
        "UPDATE voucher_batches SET status = 'activated', retailer = :r, "
        "activated_at = :now WHERE id = :id",
        {"r": retailer, "now": tx.ts(now), "id": batch_id},
    )


def mark_batch_frozen(tx: Tx, batch_id: int, now: datetime) -> None:
    """The batch is frozen; a batch frozen before keeps its first freeze's time."""
    tx.execute(
        "UPDATE voucher_batches SET status = 'frozen', "
        "frozen_at = COALESCE(frozen_at, :now) WHERE id = :id",
        {"now": tx.ts(now), "id": batch_id},
    )


def mark_redeemed(tx: Tx, card_id: int, account_no: str, payment_id: int, now: datetime) -> None:
    """The card paid ``payment_id`` to ``account_no`` at ``now``."""
    tx.execute(
        "UPDATE vouchers SET status = :s, redeemed_at = :at, account_no = :acct, "
        "payment_id = :p WHERE id = :id",
        {
            "s": VoucherStatus.REDEEMED.value,
            "at": tx.ts(now),
            "acct": account_no,
            "p": payment_id,
            "id": card_id,
        },
    )


def count_wrong_pin(tx: Tx, card_id: int) -> None:
    """One more wrong PIN against the card."""
    tx.execute(
        "UPDATE vouchers SET failed_attempts = failed_attempts + 1 WHERE id = :id",
        {"id": card_id},
    )


def record_attempt(
    tx: Tx, serial: str, account_no: str, source: str, outcome: str, now: datetime
) -> None:
    """One redemption attempt and what it came to (an :class:`AttemptOutcome` or an error
    code), for the audit trail and the throttling counts."""
    tx.execute(
        "INSERT INTO voucher_attempts (id, serial, account_no, source, outcome, at) "
        "VALUES (:id, :serial, :acct, :source, :outcome, :at)",
        {
            "id": tx.ids.one(),
            "serial": serial,
            "acct": account_no,
            "source": source,
            "outcome": str(outcome),
            "at": tx.ts(now),
        },
    )
