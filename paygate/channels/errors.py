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
    └── ReplayError
        ├── StaleTimestampError       timestamp outside the allowed window
        └── NonceReusedError          nonce already seen within the window
    NotFoundError
    └── UnknownPaymentOrderError      a notify for a payment order never created
    ConflictError
    ├── AmountMismatchError           notified amount differs from the payment order's
    └── InvalidStateError
        └── OrderExpiredError         a notify for a payment order past its expiry
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
    "DecryptionError",
    "MerchantMismatchError",
    "MissingAccountError",
    "NonceReusedError",
    "OrderExpiredError",
    "PayloadTooLargeError",
    "SignatureError",
    "StaleTimestampError",
    "UnknownKeyError",
    "UnknownPaymentOrderError",
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
