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
  ``channel_debit_accounts`` routes channel ``voucher`` there). So the liability's
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

The package keeps one concept per module, each importing only the ones before it:
:mod:`~paygate.vouchers.errors`, :mod:`~paygate.vouchers.serials`,
:mod:`~paygate.vouchers.pins` (the PIN key and hash), :mod:`~paygate.vouchers.records`
(states, policy, results), :mod:`~paygate.vouchers.batches` (:class:`VoucherBatches`) and
:mod:`~paygate.vouchers.service` (:class:`VoucherService`). Every public name is imported from
here.
"""

from __future__ import annotations

from paygate.vouchers.batches import VoucherBatches
from paygate.vouchers.errors import (
    DuplicateBatchError,
    InvalidSerialError,
    RedemptionThrottledError,
    UnknownBatchError,
    UnknownVoucherError,
    VoucherAlreadyRedeemedError,
    VoucherExpiredError,
    VoucherFrozenError,
    VoucherLockedError,
    VoucherNotActivatedError,
    WrongPinError,
)
from paygate.vouchers.pins import MIN_PIN_KEY_BYTES, PIN_KEY_ENV, PinHasher, load_pin_key
from paygate.vouchers.records import (
    ActivatedBatch,
    AttemptOutcome,
    BatchReport,
    FreezeResult,
    IssuedBatch,
    RedemptionPolicy,
    VoucherReport,
    VoucherStatus,
)
from paygate.vouchers.serials import (
    SERIAL_LENGTH,
    check_serial,
    luhn_check_digit,
    make_serial,
    serial_is_valid,
)
from paygate.vouchers.service import (
    CHANNEL,
    DEFAULT_PIN_LENGTH,
    MAX_BATCH_CARDS,
    PRINTER_COLUMNS,
    VoucherService,
)

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
