"""Recharge voucher cards (充值卡): batches, PINs kept only as keyed hashes, and redemption.

A utility issues batches of cards — serial number, secret PIN, face value, expiry — sells
them to retailers, and customers redeem them against their electricity account. This module
keeps these invariants:

* **A PIN exists in clear only in the printer file.** :meth:`VoucherService.issue_batch`
  generates PINs with the operating system's CSPRNG and writes them to the printer file it is
  given; the database holds only ``HMAC-SHA256(pin_key, serial, PIN)``. Binding the serial
  into the hash means two cards never share a hash, and without the server key a stolen
  database cannot be searched for PINs. PINs are compared in constant time and never appear
  in a log, a repr, an error or the attempts table.
* **A card pays at most once.** Redemption is one transaction: the card's row is locked
  (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already admits one writer),
  its state and PIN are checked, the payment is posted through the Gateway's own payment
  path (:meth:`~paygate.payments.Payments.pay_within`: late fee, allocation, reconnection)
  and the card is marked redeemed with the payment's id — all commit together or not at all.
  Of concurrent redemptions one wins; the same customer asking again gets the original
  receipt back, marked replayed; anyone else gets :class:`VoucherAlreadyRedeemedError`.
* **Every attempt is audited, refusals included.** Each redemption attempt leaves one row in
  ``voucher_attempts`` (serial, account, source, outcome, time). A refusal is decided and
  recorded inside the transaction, which commits; only then is the error raised — so a
  wrong PIN is counted even though nothing else changes.
* **Brute force is bounded.** A card locks after ``max_wrong_pins`` wrong PINs, and a locked
  card refuses even the right PIN. Failed guesses (a wrong PIN, a serial that does not exist)
  are limited per account and per source over a sliding window counted from
  ``voucher_attempts``; the limit holds under concurrency because, on PostgreSQL, the check
  and the record are serialized per account and per source by transaction-scoped advisory
  locks. A serial whose check digit (Luhn) fails is a typing error caught before any card is
  looked at: it is audited but never counted as a PIN attempt.
* **The ledger tells the same story.** Activating a batch (selling it to a retailer) posts
  one entry in the same transaction as the status change: debit ``clearing:voucher_sales:
  <CUR>``, credit ``voucher_liability:<CUR>`` for the face value of the cards activated.
  Redeeming posts debit ``voucher_liability:<CUR>``, credit the customer (the Gateway's
  ``channel_debit_accounts`` routes channel ``prepaid_card`` there). So the liability's
  balance is always the face value of the cards sold and not redeemed — outstanding, expired
  or frozen — which :meth:`VoucherBatches.report` breaks down.

Card states: ``issued`` → ``activated`` (sold) → ``redeemed``; ``frozen`` (a lost batch or
serial range, after sale: the liability stays until finance decides) and ``frozen_unsold``
(frozen before sale: never a liability). Expiry and the PIN lock are not stored states:
a card is expired after its batch's ``expires_on`` (in the utility's time zone), and locked
once its ``failed_attempts`` reach the policy's limit.

::

    PaygateError
    ├── InvalidInputError
    │   └── InvalidSerialError             not a serial, or its check digit fails
    ├── NotFoundError
    │   ├── UnknownVoucherError            no card with that serial
    │   └── UnknownBatchError              no batch with that number
    ├── ConflictError
    │   ├── DuplicateBatchError            the batch number is already issued
    │   └── InvalidStateError
    │       ├── VoucherNotActivatedError   the card was never sold
    │       ├── VoucherExpiredError        past the batch's expiry date
    │       ├── VoucherFrozenError         frozen (lost batch or range)
    │       ├── VoucherLockedError         locked after too many wrong PINs
    │       └── VoucherAlreadyRedeemedError redeemed, by another account or earlier
    ├── AuthenticationError
    │   └── WrongPinError                  the PIN does not verify (attempts_left)
    └── RedemptionThrottledError           too many failures for the account or source
                                           (retry_at)
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, BinaryIO, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, field_validator

from paygate.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    IdempotencyConflictError,
    IntegrityError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PaygateError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.store.engine import Tx, UniqueViolation

if TYPE_CHECKING:
    from paygate.gateway import Gateway

__all__ = [
    "CHANNEL",
    "DEFAULT_PIN_LENGTH",
    "MAX_BATCH_CARDS",
    "MIN_PIN_KEY_BYTES",
    "PIN_KEY_ENV",
    "PRINTER_COLUMNS",
    "SERIAL_LENGTH",
    "ActivatedBatch",
    "AttemptOutcome",
    "BatchReport",
    "DuplicateBatchError",
    "FreezeResult",
    "InvalidSerialError",
    "IssuedBatch",
    "PinHasher",
    "RedemptionPolicy",
    "RedemptionThrottledError",
    "UnknownBatchError",
    "UnknownVoucherError",
    "VoucherAlreadyRedeemedError",
    "VoucherBatches",
    "VoucherExpiredError",
    "VoucherFrozenError",
    "VoucherLockedError",
    "VoucherNotActivatedError",
    "VoucherReport",
    "VoucherService",
    "VoucherStatus",
    "WrongPinError",
    "check_serial",
    "load_pin_key",
    "luhn_check_digit",
    "make_serial",
    "serial_is_valid",
]

_log = logging.getLogger("paygate.vouchers")

CHANNEL: Final = "prepaid_card"
"""The payment channel of redemptions: ``PaymentIntent.channel``, with the serial as its id."""

PIN_KEY_ENV: Final = "PAYGATE_VOUCHER_PIN_KEY"
"""The environment variable holding the PIN key, base64."""
MIN_PIN_KEY_BYTES: Final = 32

SERIAL_LENGTH: Final = 12
"""Digits in a serial: an 11-digit number and its Luhn check digit."""
# Serials count up from here, so every serial has exactly SERIAL_LENGTH digits and none
# starts with 0: text order is number order, and a serial is never mistaken for a PIN,
# which is longer.
_FIRST_SERIAL_NUMBER: Final = 10**10
_LAST_SERIAL_NUMBER: Final = 10**11 - 1

DEFAULT_PIN_LENGTH: Final = 16
_MIN_PIN_LENGTH: Final = 16
_MAX_PIN_LENGTH: Final = 32
MAX_BATCH_CARDS: Final = 1_000_000

PRINTER_COLUMNS: Final = ("batch_no", "serial", "pin", "face_value", "currency", "expires_on")
"""The header of the printer file."""

_HASH_PREFIX: Final = "hmac-sha256:v1:"
_IDENTIFIER = re.compile(r"^[\x21-\x7e]{1,64}$")
_MAX_SOURCE: Final = 200
_PIN_SEPARATORS = re.compile(r"[\s-]+")

# Advisory lock classes (PostgreSQL's two-key form): serial allocation, and the attempts of
# one account and of one source. Distinct classes cannot collide with each other, nor with
# the ledger sealer's single-key lock.
_LOCK_ISSUE: Final = 7303312
_LOCK_ACCOUNT: Final = 7303313
_LOCK_SOURCE: Final = 7303314


# ── errors ───────────────────────────────────────────────────────────────────────────────


class InvalidSerialError(InvalidInputError):
    """Not a card serial, or its check digit fails: a typing error, not a PIN attempt."""

    code = "invalid_serial"


class UnknownVoucherError(NotFoundError):
    """No card with that serial."""

    code = "unknown_voucher"


class UnknownBatchError(NotFoundError):
    """No voucher batch with that number."""

    code = "unknown_batch"


class DuplicateBatchError(ConflictError):
    """The batch number is already issued; a batch is issued once."""

    code = "duplicate_batch"


class VoucherNotActivatedError(InvalidStateError):
    """The card was never sold (its batch is not activated)."""

    code = "voucher_not_activated"


class VoucherExpiredError(InvalidStateError):
    """The card is past its batch's expiry date."""

    code = "voucher_expired"


class VoucherFrozenError(InvalidStateError):
    """The card is frozen (reported lost with its batch or serial range)."""

    code = "voucher_frozen"


class VoucherLockedError(InvalidStateError):
    """The card is locked after too many wrong PINs; the right PIN is refused too."""

    code = "voucher_locked"


class VoucherAlreadyRedeemedError(InvalidStateError):
    """The card was redeemed already (by another account, or concurrently)."""

    code = "voucher_already_redeemed"


class WrongPinError(AuthenticationError):
    """The PIN does not verify; ``attempts_left`` before the card locks."""

    code = "wrong_pin"

    def __init__(self, message: str, *, attempts_left: int) -> None:
        super().__init__(message, field="pin")
        self.attempts_left = attempts_left


class RedemptionThrottledError(PaygateError):
    """Too many failed attempts for the account or the source; retry at ``retry_at``."""

    code = "redemption_throttled"

    def __init__(self, message: str, *, scope: str, retry_at: datetime) -> None:
        super().__init__(message, field=scope)
        self.scope = scope
        self.retry_at = retry_at


# ── serials ──────────────────────────────────────────────────────────────────────────────


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (ASCII digits), as one character."""
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("Luhn check digits are computed over ASCII digits")
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def make_serial(number: int) -> str:
    """The serial of card ``number``: its 11 digits and their check digit."""
    if not _FIRST_SERIAL_NUMBER <= number <= _LAST_SERIAL_NUMBER:
        raise ValueError(f"a card number has 11 digits, not {number}")
    body = str(number)
    return body + luhn_check_digit(body)


def _normalize(text: str) -> str:
    # Serials and PINs are printed in groups; customers type them with spaces or dashes.
    return _PIN_SEPARATORS.sub("", text)


def serial_is_valid(serial: str) -> bool:
    """True when ``serial`` (spaces and dashes aside) is a serial with a good check digit."""
    text = _normalize(serial)
    return (
        len(text) == SERIAL_LENGTH
        and text.isascii()
        and text.isdigit()
        and text[0] != "0"
        and luhn_check_digit(text[:-1]) == text[-1]
    )


def check_serial(serial: str, *, field: str = "serial") -> str:
    """Return ``serial`` normalized, or refuse it with :class:`InvalidSerialError`."""
    if not isinstance(serial, str):
        raise InvalidSerialError("a serial is text", field=field)
    text = _normalize(serial)
    if not (len(text) == SERIAL_LENGTH and text.isascii() and text.isdigit() and text[0] != "0"):
        # Not echoed: a PIN typed into the serial field must not reach an error or a log.
        raise InvalidSerialError(f"a serial is {SERIAL_LENGTH} digits", field=field)
    if luhn_check_digit(text[:-1]) != text[-1]:
        raise InvalidSerialError(f"serial {text}: the check digit does not match", field=field)
    return text


def _serial_number(serial: str) -> int:
    return int(serial[:-1])


# ── PIN key and hashing ──────────────────────────────────────────────────────────────────


def _checked_key(key: SecretBytes) -> SecretBytes:
    if not isinstance(key, SecretBytes):
        raise ConfigurationError("the PIN key must be given as SecretBytes", field="pin_key")
    if len(key.get_secret_value()) < MIN_PIN_KEY_BYTES:
        raise ConfigurationError(
            f"the PIN key must be at least {MIN_PIN_KEY_BYTES} bytes", field="pin_key"
        )
    return key


def load_pin_key(environ: Mapping[str, str] | None = None) -> SecretBytes:
    """The PIN key from ``PAYGATE_VOUCHER_PIN_KEY`` (base64 of at least 32 random bytes).

    A missing, unreadable or short key is a :class:`~paygate.errors.ConfigurationError`
    that never quotes the value.
    """
    env = os.environ if environ is None else environ
    text = env.get(PIN_KEY_ENV, "").strip()
    if not text:
        raise ConfigurationError(
            f"{PIN_KEY_ENV} is not set: vouchers need the PIN key (base64 of at least "
            f"{MIN_PIN_KEY_BYTES} random bytes)",
            field=PIN_KEY_ENV,
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{PIN_KEY_ENV} is not valid base64", field=PIN_KEY_ENV) from None
    if len(raw) < MIN_PIN_KEY_BYTES:
        raise ConfigurationError(
            f"{PIN_KEY_ENV} decodes to {len(raw)} bytes; at least {MIN_PIN_KEY_BYTES} are needed",
            field=PIN_KEY_ENV,
        )
    return SecretBytes(raw)


class PinHasher:
    """Keyed PIN hashes: ``HMAC-SHA256(key, serial ":" PIN)``, verified in constant time."""

    __slots__ = ("_key",)

    def __init__(self, key: SecretBytes) -> None:
        self._key = _checked_key(key)

    def hash(self, serial: str, pin: str) -> str:
        """The stored form of ``pin`` for card ``serial``."""
        message = f"paygate-voucher-pin:{serial}:{pin}".encode()
        digest = hmac.new(self._key.get_secret_value(), message, hashlib.sha256).hexdigest()
        return _HASH_PREFIX + digest

    def verify(self, serial: str, pin: str, stored: str) -> bool:
        """True when ``pin`` is the PIN of card ``serial`` whose stored hash is ``stored``."""
        return hmac.compare_digest(self.hash(serial, pin).encode(), stored.encode())

    def __repr__(self) -> str:
        return "<PinHasher hmac-sha256>"


def _new_pin(length: int) -> str:
    return f"{secrets.randbelow(10**length):0{length}d}"


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


# ── batches: activation, freezing, reports (no PIN key needed) ──────────────────────────


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


@dataclass(frozen=True, slots=True)
class _Batch:
    id: int
    batch_no: str
    face_value: int
    currency: str
    card_count: int
    expires_on: date
    status: str
    retailer: str | None
    activated_at: datetime | None


_BATCH_COLUMNS: Final = (
    "id, batch_no, face_value, currency, card_count, expires_on, status, retailer, activated_at"
)


class VoucherBatches:
    """The life of voucher batches that needs no PIN: activation, freezing and reports.

    Finance and operations use this; only :class:`VoucherService` holds the PIN key.
    """

    def __init__(self, gateway: Gateway, *, policy: RedemptionPolicy | None = None) -> None:
        self.gateway = gateway
        self.policy = policy if policy is not None else RedemptionPolicy()
        self._zone = ZoneInfo(gateway.settings.timezone)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _today(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    @staticmethod
    def _batch(tx: Tx, row: tuple[Any, ...]) -> _Batch:
        return _Batch(
            id=int(row[0]),
            batch_no=str(row[1]),
            face_value=int(row[2]),
            currency=str(row[3]),
            card_count=int(row[4]),
            expires_on=tx.read_day(row[5]),
            status=str(row[6]),
            retailer=None if row[7] is None else str(row[7]),
            activated_at=None if row[8] is None else tx.read_ts(row[8]),
        )

    def _lock_batch(self, tx: Tx, batch_no: str) -> _Batch:
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        row = tx.one(
            f"SELECT {_BATCH_COLUMNS} FROM voucher_batches WHERE batch_no = :no{lock}",  # noqa: S608
            {"no": batch_no},
        )
        if row is None:
            raise UnknownBatchError(f"no voucher batch {batch_no}", field="batch_no")
        return self._batch(tx, row)

    # -- activation ---------------------------------------------------------------------

    def activate(self, batch_no: str, *, retailer: str) -> ActivatedBatch:
        """Sell batch ``batch_no`` to ``retailer``: its unfrozen cards become redeemable.

        Posts one entry in the same transaction: debit ``clearing:voucher_sales:<CUR>``,
        credit ``voucher_liability:<CUR>``, for the face value of the cards activated.
        Activating again for the same retailer returns the activation (``created=False``).
        """
        _check_identifier(batch_no, "batch_no")
        _check_text(retailer, "retailer")
        now = self.gateway.clock.now()

        def work(tx: Tx) -> ActivatedBatch:
            batch = self._lock_batch(tx, batch_no)
            face = Money(batch.face_value, batch.currency)
            if batch.activated_at is not None:
                if batch.retailer != retailer:
                    raise InvalidStateError(
                        f"batch {batch_no} was activated for another retailer", field="retailer"
                    )
                sold = int(
                    tx.scalar(
                        "SELECT COUNT(*) FROM vouchers WHERE batch_id = :b AND status <> :unsold",
                        {"b": batch.id, "unsold": VoucherStatus.FROZEN_UNSOLD.value},
                    )
                )
                return ActivatedBatch(
                    batch_no=batch_no,
                    retailer=retailer,
                    cards=sold,
                    amount=face * sold,
                    activated_at=batch.activated_at,
                    created=False,
                )
            if batch.status == "frozen":
                raise VoucherFrozenError(f"batch {batch_no} is frozen", field="batch_no")
            if self._today(now) > batch.expires_on:
                raise VoucherExpiredError(
                    f"batch {batch_no} expired on {batch.expires_on}", field="batch_no"
                )
            cards = tx.execute(
                "UPDATE vouchers SET status = :to WHERE batch_id = :b AND status = :from",
                {
                    "to": VoucherStatus.ACTIVATED.value,
                    "b": batch.id,
                    "from": VoucherStatus.ISSUED.value,
                },
            ).rowcount
            if cards <= 0:
                raise InvalidStateError(
                    f"batch {batch_no} has no card left to sell: all are frozen", field="batch_no"
                )
            amount = face * cards
            payments = self.gateway.payments
            cur = batch.currency
            clearing = payments.ledger_account(
                tx, f"clearing:voucher_sales:{cur}", AccountKind.CHANNEL_CLEARING, cur
            )
            liability = payments.ledger_account(
                tx, f"voucher_liability:{cur}", AccountKind.VOUCHER_LIABILITY, cur
            )
            payments.post(
                tx,
                [
                    EntryDraft(
                        kind="voucher_sale",
                        reference=f"voucher_sale:{batch_no}",
                        memo=f"voucher batch {batch_no}: {cards} cards sold to {retailer}",
                        business_date=self._today(now),
                        posted_at=now,
                        postings=(
                            PostingDraft(clearing, amount.minor, cur),
                            PostingDraft(liability, -amount.minor, cur),
                        ),
                        shard_key=batch.id,
                    )
                ],
            )
            tx.execute(
                "UPDATE voucher_batches SET status = 'activated', retailer = :r, "
                "activated_at = :now WHERE id = :id",
                {"r": retailer, "now": tx.ts(now), "id": batch.id},
            )
            return ActivatedBatch(
                batch_no=batch_no,
                retailer=retailer,
                cards=cards,
                amount=amount,
                activated_at=now,
                created=True,
            )

        activated = self.gateway.store.run(work)
        if activated.created:
            _log.info(
                "voucher batch %s activated: %d cards, %s, retailer %r",
                batch_no,
                activated.cards,
                activated.amount,
                retailer,
            )
        return activated

    # -- freezing -----------------------------------------------------------------------

    def freeze_batch(self, batch_no: str, *, reason: str) -> FreezeResult:
        """Freeze every unredeemed card of batch ``batch_no`` (a lost batch)."""
        _check_identifier(batch_no, "batch_no")
        _check_text(reason, "reason")
        now = self.gateway.clock.now()

        def work(tx: Tx) -> FreezeResult:
            batch = self._lock_batch(tx, batch_no)
            result = self._freeze(tx, batch, "batch_id = :b", {"b": batch.id})
            tx.execute(
                "UPDATE voucher_batches SET status = 'frozen', "
                "frozen_at = COALESCE(frozen_at, :now) WHERE id = :id",
                {"now": tx.ts(now), "id": batch.id},
            )
            return result

        result = self.gateway.store.run(work)
        _log.warning(
            "voucher batch %s frozen (%d sold, %d unsold cards): %r",
            batch_no,
            result.frozen,
            result.frozen_unsold,
            reason,
        )
        return result

    def freeze_serials(self, first: str, last: str, *, reason: str) -> FreezeResult:
        """Freeze the unredeemed cards from serial ``first`` to ``last`` (one batch)."""
        first = check_serial(first, field="first")
        last = check_serial(last, field="last")
        _check_text(reason, "reason")
        if first > last:
            raise InvalidInputError("the range's first serial is after its last", field="first")

        def work(tx: Tx) -> FreezeResult:
            ends = tx.all(
                "SELECT v.serial, b.batch_no FROM vouchers v "
                "JOIN voucher_batches b ON b.id = v.batch_id WHERE v.serial IN (:f, :l)",
                {"f": first, "l": last},
            )
            found = {str(serial): str(batch_no) for serial, batch_no in ends}
            for serial, field in ((first, "first"), (last, "last")):
                if serial not in found:
                    raise UnknownVoucherError(f"no card {serial}", field=field)
            if found[first] != found[last]:
                raise InvalidInputError(
                    f"serials {first} and {last} are in different batches; freeze each batch's "
                    "range on its own",
                    field="last",
                )
            # The batch first, as activation and batch freezes do: one lock order, no deadlock.
            batch = self._lock_batch(tx, found[first])
            return self._freeze(
                tx,
                batch,
                "batch_id = :b AND serial BETWEEN :f AND :l",
                {"b": batch.id, "f": first, "l": last},
            )

        result = self.gateway.store.run(work)
        _log.warning(
            "vouchers %s-%s of batch %s frozen (%d sold, %d unsold cards): %r",
            first,
            last,
            result.batch_no,
            result.frozen,
            result.frozen_unsold,
            reason,
        )
        return result

    @staticmethod
    def _freeze(tx: Tx, batch: _Batch, where: str, params: dict[str, Any]) -> FreezeResult:
        # Redeemed cards are left alone: their money is already the customer's. A redemption
        # in flight holds the card's row; this UPDATE waits for it and then skips the card.
        counts = []
        for before, after in (
            (VoucherStatus.ACTIVATED, VoucherStatus.FROZEN),
            (VoucherStatus.ISSUED, VoucherStatus.FROZEN_UNSOLD),
        ):
            counts.append(
                tx.execute(
                    f"UPDATE vouchers SET status = :to WHERE {where} AND status = :from",  # noqa: S608
                    {**params, "to": after.value, "from": before.value},
                ).rowcount
            )
        sold, unsold = (max(0, int(c)) for c in counts)
        return FreezeResult(
            batch_no=batch.batch_no,
            frozen=sold,
            frozen_unsold=unsold,
            frozen_value=Money(batch.face_value * sold, batch.currency),
        )

    # -- report -------------------------------------------------------------------------

    def report(self, as_of: date | None = None) -> VoucherReport:
        """Per batch: cards by state, the outstanding liability (activated, not redeemed,
        not expired), the expired-but-unredeemed value and the frozen liability.

        Card states are as they stand now; expiry is judged on ``as_of`` (default: today in
        the utility's time zone). The three amounts add up to the voucher liability.
        """
        day = as_of if as_of is not None else self._today(self.gateway.clock.now())
        if not isinstance(day, date) or isinstance(day, datetime):
            raise InvalidInputError("a date", field="as_of")
        max_wrong = self.policy.max_wrong_pins

        def work(tx: Tx) -> list[tuple[_Batch, dict[str, int], int]]:
            batches = {
                int(row[0]): self._batch(tx, row)
                for row in tx.all(
                    f"SELECT {_BATCH_COLUMNS} FROM voucher_batches ORDER BY batch_no"  # noqa: S608
                )
            }
            counts: dict[int, dict[str, int]] = {b: {} for b in batches}
            locked: dict[int, int] = dict.fromkeys(batches, 0)
            for batch_id, status, count, lock_count in tx.all(
                "SELECT batch_id, status, COUNT(*), "
                "SUM(CASE WHEN failed_attempts >= :max THEN 1 ELSE 0 END) "
                "FROM vouchers GROUP BY batch_id, status",
                {"max": max_wrong},
            ):
                counts[int(batch_id)][str(status)] = int(count)
                if status == VoucherStatus.ACTIVATED.value:
                    locked[int(batch_id)] = int(lock_count or 0)
            return [(b, counts[b.id], locked[b.id]) for b in batches.values()]

        rows = self.gateway.store.run(work, write=False)
        return VoucherReport(
            as_of=day,
            batches=tuple(self._batch_report(b, c, lk, day) for b, c, lk in rows),
        )

    @staticmethod
    def _batch_report(batch: _Batch, counts: dict[str, int], locked: int, day: date) -> BatchReport:
        face = Money(batch.face_value, batch.currency)
        issued = counts.get(VoucherStatus.ISSUED.value, 0)
        activated = counts.get(VoucherStatus.ACTIVATED.value, 0)
        redeemed = counts.get(VoucherStatus.REDEEMED.value, 0)
        frozen_sold = counts.get(VoucherStatus.FROZEN.value, 0)
        frozen_unsold = counts.get(VoucherStatus.FROZEN_UNSOLD.value, 0)
        expired_sold = expired_unsold = 0
        if day > batch.expires_on:
            expired_sold, expired_unsold = activated, issued
            activated = issued = locked = 0
        return BatchReport(
            batch_no=batch.batch_no,
            status=batch.status,
            retailer=batch.retailer,
            face_value=face,
            expires_on=batch.expires_on,
            cards=batch.card_count,
            issued=issued,
            activated=activated,
            redeemed=redeemed,
            expired=expired_sold + expired_unsold,
            frozen=frozen_sold + frozen_unsold,
            locked=locked,
            outstanding=face * activated,
            expired_unredeemed=face * expired_sold,
            frozen_liability=face * frozen_sold,
        )


# ── the service: issuing and redeeming (holds the PIN key) ───────────────────────────────


@dataclass(frozen=True, slots=True)
class _Card:
    id: int
    status: VoucherStatus
    failed_attempts: int
    pin_hash: str
    account_no: str | None
    payment_id: int | None
    face_value: Money
    expires_on: date


_CARD_QUERY: Final = (
    "SELECT v.id, v.status, v.failed_attempts, v.pin_hash, v.account_no, v.payment_id, "
    "b.face_value, b.currency, b.expires_on FROM vouchers v "
    "JOIN voucher_batches b ON b.id = v.batch_id WHERE v.serial = :s"
)


class VoucherService(VoucherBatches):
    """Issue voucher batches and redeem cards; the only holder of the PIN key.

    ``pin_key`` is :class:`~pydantic.SecretBytes` of at least 32 bytes (see
    :func:`load_pin_key`); without it the service refuses to be built. ``policy`` sets the
    wrong-PIN lock and the throttling limits.

    :meth:`redeem` implements the ``VoucherRedeemer`` protocol of the ``prepaid_card`` channel.
    """

    def __init__(
        self,
        gateway: Gateway,
        pin_key: SecretBytes,
        *,
        policy: RedemptionPolicy | None = None,
    ) -> None:
        self._pins = PinHasher(pin_key)
        super().__init__(gateway, policy=policy)

    @classmethod
    def from_env(
        cls,
        gateway: Gateway,
        *,
        environ: Mapping[str, str] | None = None,
        policy: RedemptionPolicy | None = None,
    ) -> VoucherService:
        """A service whose PIN key comes from ``PAYGATE_VOUCHER_PIN_KEY``."""
        return cls(gateway, load_pin_key(environ), policy=policy)

    def __repr__(self) -> str:
        return f"<VoucherService max_wrong_pins={self.policy.max_wrong_pins}>"

    # -- issuing ------------------------------------------------------------------------

    def issue_batch(
        self,
        batch_no: str,
        count: int,
        face_value: Money,
        expires_on: date,
        out: BinaryIO,
        *,
        pin_length: int = DEFAULT_PIN_LENGTH,
    ) -> IssuedBatch:
        """Issue ``count`` cards and write the printer file (CSV, UTF-8) to ``out``.

        The printer file — header :data:`PRINTER_COLUMNS`, one card per line — is the only
        place the PINs ever exist in clear; the database keeps their keyed hashes. It is
        written inside the transaction, before the commit: when this method returns, the
        batch is issued and ``out`` holds all of it; when it raises, nothing was issued and
        whatever reached ``out`` must be destroyed.
        """
        _check_identifier(batch_no, "batch_no")
        if type(count) is not int or not 1 <= count <= MAX_BATCH_CARDS:
            raise InvalidInputError(f"1 to {MAX_BATCH_CARDS} cards", field="count")
        if not isinstance(face_value, Money):
            raise TypeError("face_value must be Money")
        if face_value.minor <= 0:
            raise InvalidAmountError("a face value must be positive", field="face_value")
        if not isinstance(expires_on, date) or isinstance(expires_on, datetime):
            raise InvalidInputError("a date", field="expires_on")
        if type(pin_length) is not int or not _MIN_PIN_LENGTH <= pin_length <= _MAX_PIN_LENGTH:
            raise InvalidInputError(
                f"{_MIN_PIN_LENGTH} to {_MAX_PIN_LENGTH} digits", field="pin_length"
            )
        now = self.gateway.clock.now()
        if expires_on < self._today(now):
            raise InvalidInputError("the expiry date is in the past", field="expires_on")

        # One attempt, not Store.run: a retry would write the printer file twice.
        with self.gateway.store.transaction() as tx:
            issued = self._issue(tx, batch_no, count, face_value, expires_on, out, pin_length, now)
        _log.info(
            "voucher batch %s issued: %d cards %s-%s of %s, expiring %s",
            batch_no,
            count,
            issued.first_serial,
            issued.last_serial,
            face_value,
            expires_on,
        )
        return issued

    def _issue(
        self,
        tx: Tx,
        batch_no: str,
        count: int,
        face_value: Money,
        expires_on: date,
        out: BinaryIO,
        pin_length: int,
        now: datetime,
    ) -> IssuedBatch:
        if tx.dialect == "postgresql":
            # Serials are allocated from the highest one issued: one issuer at a time.
            tx.execute("SELECT pg_advisory_xact_lock(CAST(:k AS integer), 0)", {"k": _LOCK_ISSUE})
        if tx.scalar("SELECT 1 FROM voucher_batches WHERE batch_no = :no", {"no": batch_no}):
            raise DuplicateBatchError(f"batch {batch_no} is already issued", field="batch_no")
        highest = tx.scalar("SELECT MAX(serial) FROM vouchers")
        start = _FIRST_SERIAL_NUMBER if highest is None else _serial_number(str(highest)) + 1
        if start + count - 1 > _LAST_SERIAL_NUMBER:
            raise InvalidStateError("card serial numbers are exhausted", field="count")
        batch_id = tx.ids.one()
        try:
            tx.execute(
                "INSERT INTO voucher_batches (id, batch_no, face_value, currency, card_count, "
                "expires_on, status, retailer, created_at, activated_at, frozen_at) VALUES "
                "(:id, :no, :face, :cur, :n, :exp, 'issued', NULL, :now, NULL, NULL)",
                {
                    "id": batch_id,
                    "no": batch_no,
                    "face": face_value.minor,
                    "cur": face_value.currency,
                    "n": count,
                    "exp": tx.day(expires_on),
                    "now": tx.ts(now),
                },
            )
        except UniqueViolation:
            raise DuplicateBatchError(
                f"batch {batch_no} is already issued", field="batch_no"
            ) from None
        face_text = face_value.format()
        writer_buffer = io.StringIO()
        writer = csv.writer(writer_buffer, lineterminator="\n")
        writer.writerow(PRINTER_COLUMNS)
        rows: list[tuple[Any, ...]] = []
        for card_id, number in zip(tx.ids.take(count), range(start, start + count), strict=True):
            serial = make_serial(number)
            pin = _new_pin(pin_length)
            rows.append(
                (
                    card_id,
                    serial,
                    batch_id,
                    self._pins.hash(serial, pin),
                    VoucherStatus.ISSUED.value,
                    0,
                )
            )
            writer.writerow(
                (batch_no, serial, pin, face_text, face_value.currency, expires_on.isoformat())
            )
            if writer_buffer.tell() >= 1 << 16:
                out.write(writer_buffer.getvalue().encode("utf-8"))
                writer_buffer.seek(0)
                writer_buffer.truncate()
        tx.insert(
            "vouchers",
            ("id", "serial", "batch_id", "pin_hash", "status", "failed_attempts"),
            rows,
        )
        out.write(writer_buffer.getvalue().encode("utf-8"))
        out.flush()
        return IssuedBatch(
            batch_no=batch_no,
            cards=count,
            first_serial=make_serial(start),
            last_serial=make_serial(start + count - 1),
            face_value=face_value,
            expires_on=expires_on,
        )

    # -- redeeming ----------------------------------------------------------------------

    def redeem(self, account_no: str, serial: str, pin: str | SecretStr, *, source: str) -> Receipt:
        """Redeem card ``serial`` with ``pin`` for ``account_no``: post its face value.

        ``source`` names where the attempt came from (an app, a terminal, an address) for
        throttling and the audit trail. The payment goes through the Gateway's payment path
        as channel ``prepaid_card`` with the serial as its transaction id, so late fees,
        allocation and reconnection apply as to any payment. The same account redeeming the
        same card again (with its PIN) gets the original receipt, ``replayed=True``.

        Refusals, each recorded in ``voucher_attempts`` before it is raised:
        :class:`InvalidSerialError`, :class:`RedemptionThrottledError`,
        :class:`UnknownVoucherError`, :class:`VoucherAlreadyRedeemedError`,
        :class:`VoucherFrozenError`, :class:`VoucherLockedError`,
        :class:`VoucherNotActivatedError`, :class:`VoucherExpiredError`,
        :class:`WrongPinError`, and the core's own (an unknown account …). Input that cannot
        be an attempt at all — a malformed account number or source, an empty PIN — is
        refused with :class:`~paygate.errors.InvalidInputError` and not recorded.
        """
        _check_identifier(account_no, "account_no")
        _check_text(source, "source")
        secret = pin.get_secret_value() if isinstance(pin, SecretStr) else pin
        if not isinstance(secret, str):
            raise InvalidInputError("a PIN is text", field="pin")
        secret = _normalize(secret)
        if not secret:
            raise InvalidInputError("a PIN is required", field="pin")
        now = self.gateway.clock.now()
        for _attempt in range(3):
            try:
                decided = self.gateway.store.run(
                    lambda tx: self._redeem_within(tx, account_no, serial, secret, source, now)
                )
            except UniqueViolation:
                continue  # a concurrent payment with this id committed first: decide again
            outcome, result = decided
            _log.info(
                "voucher %s: %s for account %s from %r",
                _loggable_serial(serial),
                outcome,
                account_no,
                source,
            )
            if isinstance(result, PaygateError):
                raise result
            return result
        raise IdempotencyConflictError(
            "the redemption keeps colliding with a concurrent payment; retry", field="serial"
        )

    def _redeem_within(
        self, tx: Tx, account_no: str, serial: str, pin: str, source: str, now: datetime
    ) -> tuple[str, Receipt | PaygateError]:
        """Decide one attempt inside ``tx``, record it, and return (outcome, result).

        Refusals are returned, not raised, so that the transaction commits the record.
        """
        if tx.dialect == "postgresql":
            # Account first, then source: one order for every redemption, so no deadlock.
            for lock_class, key in ((_LOCK_ACCOUNT, account_no), (_LOCK_SOURCE, source)):
                tx.execute(
                    "SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(:v))",
                    {"k": lock_class, "v": key},
                )

        def decided(
            outcome: str, result: Receipt | PaygateError, recorded_serial: str
        ) -> tuple[str, Receipt | PaygateError]:
            tx.execute(
                "INSERT INTO voucher_attempts (id, serial, account_no, source, outcome, at) "
                "VALUES (:id, :serial, :acct, :source, :outcome, :at)",
                {
                    "id": tx.ids.one(),
                    "serial": recorded_serial,
                    "acct": account_no,
                    "source": source,
                    "outcome": str(outcome),
                    "at": tx.ts(now),
                },
            )
            return outcome, result

        try:
            serial = check_serial(serial)
        except InvalidSerialError as exc:
            return decided(AttemptOutcome.BAD_SERIAL, exc, _loggable_serial(serial))

        throttled = self._throttle(tx, account_no, source, now)
        if throttled is not None:
            return decided(throttled[0], throttled[1], serial)

        card = self._lock_card(tx, serial)
        if card is None:
            return decided(
                AttemptOutcome.UNKNOWN_SERIAL,
                UnknownVoucherError(f"no card {serial}", field="serial"),
                serial,
            )
        if card.status is VoucherStatus.REDEEMED:
            if card.account_no != account_no:
                return decided(
                    AttemptOutcome.ALREADY_REDEEMED,
                    VoucherAlreadyRedeemedError(
                        f"card {serial} is already redeemed", field="serial"
                    ),
                    serial,
                )
            if not self._pins.verify(serial, pin, card.pin_hash):
                return decided(AttemptOutcome.WRONG_PIN, self._wrong_pin(tx, card, serial), serial)
            return decided(AttemptOutcome.REPLAYED, self._original_receipt(tx, card), serial)
        if card.status in (VoucherStatus.FROZEN, VoucherStatus.FROZEN_UNSOLD):
            return decided(
                AttemptOutcome.FROZEN,
                VoucherFrozenError(f"card {serial} is frozen", field="serial"),
                serial,
            )
        if card.failed_attempts >= self.policy.max_wrong_pins:
            return decided(
                AttemptOutcome.LOCKED,
                VoucherLockedError(
                    f"card {serial} is locked after {card.failed_attempts} wrong PINs; "
                    "customer service can check the card",
                    field="serial",
                ),
                serial,
            )
        if card.status is VoucherStatus.ISSUED:
            return decided(
                AttemptOutcome.NOT_ACTIVATED,
                VoucherNotActivatedError(f"card {serial} has not been sold", field="serial"),
                serial,
            )
        if self._today(now) > card.expires_on:
            return decided(
                AttemptOutcome.EXPIRED,
                VoucherExpiredError(f"card {serial} expired on {card.expires_on}", field="serial"),
                serial,
            )
        if not self._pins.verify(serial, pin, card.pin_hash):
            return decided(AttemptOutcome.WRONG_PIN, self._wrong_pin(tx, card, serial), serial)

        [posted] = self.gateway.payments.pay_within(
            tx, [self._intent(account_no, serial, card.face_value, now)]
        )
        if isinstance(posted, PaygateError):
            # The PIN was right but the core refused (an unknown account, another currency):
            # the card stays unredeemed and the refusal is recorded under the core's code.
            return decided(posted.code, posted, serial)
        if posted.replayed:
            # A payment with this serial exists that this card did not make: never post twice.
            return decided(
                AttemptOutcome.ALREADY_REDEEMED,
                VoucherAlreadyRedeemedError(f"card {serial} has a payment already", field="serial"),
                serial,
            )
        tx.execute(
            "UPDATE vouchers SET status = :s, redeemed_at = :at, account_no = :acct, "
            "payment_id = :p WHERE id = :id",
            {
                "s": VoucherStatus.REDEEMED.value,
                "at": tx.ts(now),
                "acct": account_no,
                "p": posted.payment_id,
                "id": card.id,
            },
        )
        return decided(AttemptOutcome.REDEEMED, posted, serial)

    @staticmethod
    def _intent(account_no: str, serial: str, amount: Money, paid_at: datetime) -> PaymentIntent:
        return PaymentIntent(
            channel=CHANNEL,
            channel_txn_id=serial,
            account_no=account_no,
            amount=amount,
            paid_at=paid_at,
        )

    @staticmethod
    def _original_receipt(tx: Tx, card: _Card) -> Receipt:
        # Read, never re-posted: a replay cannot move money whatever the stored rows say.
        stored = tx.scalar("SELECT receipt FROM payments WHERE id = :p", {"p": card.payment_id})
        if stored is None:
            raise IntegrityError(f"voucher {card.id} is redeemed but its payment is missing")
        return Receipt.model_validate_json(stored).model_copy(update={"replayed": True})

    def _lock_card(self, tx: Tx, serial: str) -> _Card | None:
        # Only the card's row is locked: its batch is read, and stays free for other cards.
        lock = " FOR UPDATE OF v" if tx.dialect == "postgresql" else ""
        row = tx.one(_CARD_QUERY + lock, {"s": serial})
        if row is None:
            return None
        return _Card(
            id=int(row[0]),
            status=VoucherStatus(row[1]),
            failed_attempts=int(row[2]),
            pin_hash=str(row[3]),
            account_no=None if row[4] is None else str(row[4]),
            payment_id=None if row[5] is None else int(row[5]),
            face_value=Money(int(row[6]), str(row[7])),
            expires_on=tx.read_day(row[8]),
        )

    def _wrong_pin(self, tx: Tx, card: _Card, serial: str) -> WrongPinError:
        tx.execute(
            "UPDATE vouchers SET failed_attempts = failed_attempts + 1 WHERE id = :id",
            {"id": card.id},
        )
        left = max(0, self.policy.max_wrong_pins - card.failed_attempts - 1)
        if left == 0:
            message = f"wrong PIN for card {serial}; the card is now locked"
        else:
            message = (
                f"wrong PIN for card {serial}; {left} "
                f"{'attempt' if left == 1 else 'attempts'} left before the card is locked"
            )
        return WrongPinError(message, attempts_left=left)

    def _throttle(
        self, tx: Tx, account_no: str, source: str, now: datetime
    ) -> tuple[AttemptOutcome, RedemptionThrottledError] | None:
        """The refusal when the account or the source used up its failures in the window."""
        since = now - self.policy.window
        limits = (
            (
                "account_no",
                account_no,
                self.policy.account_failures,
                AttemptOutcome.THROTTLED_ACCOUNT,
            ),
            ("source", source, self.policy.source_failures, AttemptOutcome.THROTTLED_SOURCE),
        )
        for column, value, limit, outcome in limits:
            where = f"{column} = :v AND at > :since AND outcome IN (:f0, :f1)"  # column is ours
            params = {"v": value, "since": tx.ts(since), "f0": _FAILURES[0], "f1": _FAILURES[1]}
            failures = int(
                tx.scalar(f"SELECT COUNT(*) FROM voucher_attempts WHERE {where}", params)  # noqa: S608
            )
            if failures < limit:
                continue
            # The window slides: retrying is possible once enough failures have left it.
            oldest_needed = tx.scalar(
                f"SELECT at FROM voucher_attempts WHERE {where} "  # noqa: S608
                "ORDER BY at LIMIT 1 OFFSET :skip",
                {**params, "skip": failures - limit},
            )
            retry_at = tx.read_ts(oldest_needed) + self.policy.window
            label = "account" if column == "account_no" else "source"
            return outcome, RedemptionThrottledError(
                f"too many failed card attempts for this {label}: {failures} within "
                f"{_duration(self.policy.window)}; retry after {retry_at.isoformat()}",
                scope=column,
                retry_at=retry_at,
            )
        return None


def _loggable_serial(serial: object) -> str:
    """``serial`` as it may be logged or audited: only if it has a serial's shape.

    Anything else — a PIN typed into the serial field — is replaced, never shown.
    """
    if isinstance(serial, str):
        text = _normalize(serial)
        if len(text) == SERIAL_LENGTH and text.isascii() and text.isdigit():
            return text
    return "?"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
