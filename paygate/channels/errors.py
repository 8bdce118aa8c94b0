"""Refusals specific to channel messages, placed under the one hierarchy of :mod:`paygate.errors`.

Invariant: each refusal a channel adapter makes has its own ``code`` so that an operator (and
the channel's retry logic) can tell a forged signature from a stale timestamp from a wrong
amount, and none of them ever leaves a payment posted.

::

    InvalidInputError
    ├── PayloadTooLargeError          body over the adapter's size limit, refused unread
    └── MissingAccountError           a verified payment that names no account number
    AuthenticationError
    ├── SignatureError                missing, malformed or non-verifying signature
    ├── UnknownKeyError               no configured key for the serial the message names
    ├── DecryptionError               an encrypted resource that does not decrypt
    ├── MerchantMismatchError         a verified message addressed to another merchant
    ├── MalformedRequestError         device authentication headers or target not in form
    ├── UnknownDeviceError            a signed request from a device never registered
    ├── DeviceRevokedError            a signed request from a revoked device
    ├── DeviceChannelMismatchError    a device registered for another channel
    ├── UnknownTerminalError          no MAC key for the POS terminal: unknown or revoked
    └── ReplayError
        ├── StaleTimestampError       timestamp outside the allowed window
        └── NonceReusedError          nonce already seen within the window
    NotFoundError
    ├── UnknownPaymentOrderError      a notify for a payment order never created
    └── DeviceNotFoundError           an administrative action on a device never registered
    ConflictError
    ├── AmountMismatchError           notified amount differs from the payment order's
    ├── DuplicateDeviceError          a device id (or public key) already registered
    ├── KioskCloseConflictError       a kiosk's day closed again with different figures
    └── InvalidStateError
        ├── OrderExpiredError         a notify for a payment order past its expiry
        └── BatchSettledError         a POS sale or void for a batch already settled
"""

from __future__ import annotations

from paygate.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    ReplayError,
)

__all__ = [
    "AmountMismatchError",
    "BatchSettledError",
    "DecryptionError",
    "DeviceChannelMismatchError",
    "DeviceNotFoundError",
    "DeviceRevokedError",
    "DuplicateDeviceError",
    "KioskCloseConflictError",
    "MalformedRequestError",
    "MerchantMismatchError",
    "MissingAccountError",
    "NonceReusedError",
    "OrderExpiredError",
    "PayloadTooLargeError",
    "SignatureError",
    "StaleTimestampError",
    "UnknownDeviceError",
    "UnknownKeyError",
    "UnknownPaymentOrderError",
    "UnknownTerminalError",
]


class PayloadTooLargeError(InvalidInputError):
    """A request body larger than the adapter accepts; refused before any parsing."""

    code = "payload_too_large"


class MissingAccountError(InvalidInputError):
    """A verified payment message that carries no usable customer account number."""

    code = "missing_account"


class SignatureError(AuthenticationError):
    """A signature that is missing, malformed, of an unsupported kind, or does not verify."""

    code = "invalid_signature"


class UnknownKeyError(AuthenticationError):
    """The message names a key (certificate serial) that is not configured."""

    code = "unknown_key"


class DecryptionError(AuthenticationError):
    """An encrypted resource whose authentication tag does not verify with the configured key."""

    code = "decryption_failed"


class MerchantMismatchError(AuthenticationError):
    """A verified message addressed to a merchant or application other than the configured one."""

    code = "merchant_mismatch"


class StaleTimestampError(ReplayError):
    """A message timestamp outside the window allowed around the adapter's clock."""

    code = "stale_timestamp"


class NonceReusedError(ReplayError):
    """A nonce already seen within its window: the same signed request sent again."""

    code = "nonce_reused"


class UnknownPaymentOrderError(NotFoundError):
    """A notification for a payment order this utility never created."""

    code = "unknown_payment_order"


class AmountMismatchError(ConflictError):
    """The amount (or currency) notified differs from the one the payment order fixed."""

    code = "amount_mismatch"


class OrderExpiredError(InvalidStateError):
    """A notification for a payment order after its expiry and late-notify window."""

    code = "order_expired"


class MalformedRequestError(AuthenticationError):
    """A device request whose authentication headers or target are missing or not in form."""

    code = "malformed_request"


class UnknownDeviceError(AuthenticationError):
    """A signed request naming a device that is not registered."""

    code = "unknown_device"


class DeviceRevokedError(AuthenticationError):
    """A signed request from a device that has been revoked."""

    code = "device_revoked"


class DeviceChannelMismatchError(AuthenticationError):
    """A verified request from a device registered for another channel."""

    code = "device_channel_mismatch"


class DeviceNotFoundError(NotFoundError):
    """An administrative action (revoke, look-up) on a device that is not registered."""

    code = "device_not_found"


class DuplicateDeviceError(ConflictError):
    """A device id, or an Ed25519 public key, that is already registered."""

    code = "duplicate_device"


class KioskCloseConflictError(ConflictError):
    """A kiosk's business day closed again with figures other than those first recorded."""

    code = "close_conflict"


class UnknownTerminalError(AuthenticationError):
    """A terminal for which no MAC key is issued: never registered, or revoked."""

    code = "unknown_terminal"


class BatchSettledError(InvalidStateError):
    """A POS sale or void for a batch the terminal has already settled."""

    code = "batch_settled"
