"""What can go wrong with a voucher card (the tree is drawn in :mod:`paygate.vouchers`)."""

from __future__ import annotations

from datetime import datetime

from paygate.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PaygateError,
)

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
