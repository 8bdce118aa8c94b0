"""The voucher service: issuing batches (PINs to the printer file, keyed hashes to the
database) and redeeming cards, one transaction per redemption. Holds the PIN key."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from pydantic import SecretBytes, SecretStr

from paygate.errors import (
    IdempotencyConflictError,
    IntegrityError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
)
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.store.engine import Tx, UniqueViolation
from paygate.vouchers.batches import VoucherBatches
from paygate.vouchers.errors import (
    DuplicateBatchError,
    InvalidSerialError,
    RedemptionThrottledError,
    UnknownVoucherError,
    VoucherAlreadyRedeemedError,
    VoucherExpiredError,
    VoucherFrozenError,
    VoucherLockedError,
    VoucherNotActivatedError,
    WrongPinError,
)
from paygate.vouchers.pins import PinHasher, _new_pin, load_pin_key
from paygate.vouchers.records import (
    _FAILURES,
    AttemptOutcome,
    IssuedBatch,
    RedemptionPolicy,
    VoucherStatus,
    _check_identifier,
    _check_text,
    count_wrong_pin,
    insert_batch,
    insert_cards,
    mark_redeemed,
    record_attempt,
)
from paygate.vouchers.serials import (
    _FIRST_SERIAL_NUMBER,
    _LAST_SERIAL_NUMBER,
    SERIAL_LENGTH,
    _normalize,
    _serial_number,
    check_serial,
    make_serial,
)

if TYPE_CHECKING:
    from paygate.gateway import Gateway


_log = logging.getLogger("paygate.vouchers")


CHANNEL: Final = "voucher"
"""The payment channel of redemptions: ``PaymentIntent.channel``, with the serial as its id."""


DEFAULT_PIN_LENGTH: Final = 16
_MIN_PIN_LENGTH: Final = 16
_MAX_PIN_LENGTH: Final = 32
MAX_BATCH_CARDS: Final = 1_000_000

PRINTER_COLUMNS: Final = ("batch_no", "serial", "pin", "face_value", "currency", "expires_on")
"""The header of the printer file."""


# Advisory lock classes (PostgreSQL's two-key form): serial allocation, and the attempts of
# one account and of one source. Distinct classes cannot collide with each other, nor with
# the ledger sealer's single-key lock.
_LOCK_ISSUE: Final = 7303312
_LOCK_ACCOUNT: Final = 7303313
_LOCK_SOURCE: Final = 7303314


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

    :meth:`redeem` implements the ``VoucherRedeemer`` protocol of the ``voucher`` channel.
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
            insert_batch(tx, batch_id, batch_no, face_value, count, expires_on, now)
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
        insert_cards(tx, rows)
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
        as channel ``voucher`` with the serial as its transaction id, so late fees,
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
            record_attempt(tx, recorded_serial, account_no, source, outcome, now)
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
        mark_redeemed(tx, card.id, account_no, posted.payment_id, now)
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
        count_wrong_pin(tx, card.id)
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
