"""The terminal's side of the HTTP gateway: signed, idempotent, retried only where safe.

Invariant: a call that moves money carries an ``Idempotency-Key`` (made when not given), every
request is signed with the device's Ed25519 key, and a retry never risks a second posting
(:mod:`paygate.client._core`). :class:`KioskClient` adds the offline mode: payments stored on
the device first and forwarded once, in order, when the gateway answers again.

::

    from paygate.client import KioskClient, PaygateClient, load_private_key
    from paygate.money import Money

    key = load_private_key("/etc/kiosk/device.key")
    with PaygateClient("https://pay.example", device_id="K0001", private_key=key,
                       timeout=5.0, max_retries=1) as client:
        status = client.account("3100000001")
        kiosk = KioskClient(client, "/var/lib/kiosk/payments.db")
        payment = kiosk.pay("3100000001", Money(101000, "CNY"))
        printer.print(payment.lines())

docs/kiosk-firmware.md walks through it.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paygate.api.schemas import Health, VoucherRedemption
from paygate.client._client import AsyncPaygateClient, PaygateClient
from paygate.client.errors import (
    AuthenticationFailedError,
    ClockSkewError,
    ConflictError,
    DeviceRevokedError,
    GatewayUnreachableError,
    IdempotencyConflictError,
    InvalidArgumentError,
    InvalidRequestError,
    NotFoundError,
    PaygateClientError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    UnknownAccountError,
)
from paygate.client.kiosk import (
    ForwardReport,
    KioskClient,
    KioskPayment,
    PaymentState,
    StoredPayment,
    pending_receipt_lines,
)

__all__ = [
    "AsyncPaygateClient",
    "AuthenticationFailedError",
    "ClockSkewError",
    "ConflictError",
    "DeviceRevokedError",
    "ForwardReport",
    "GatewayUnreachableError",
    "Health",
    "IdempotencyConflictError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "KioskClient",
    "KioskPayment",
    "NotFoundError",
    "PaygateClient",
    "PaygateClientError",
    "PaymentState",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
    "StoredPayment",
    "UnknownAccountError",
    "VoucherRedemption",
    "load_private_key",
    "pending_receipt_lines",
]


def load_private_key(
    source: str | Path | bytes, password: bytes | None = None
) -> Ed25519PrivateKey:
    """The device's Ed25519 private key from a PEM file (or its bytes), e.g. from
    ``openssl genpkey -algorithm ed25519``. The key is never shown in an error."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise InvalidArgumentError.of(
            "not a PEM private key (or the password is wrong)", "private_key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgumentError.of("the private key is not an Ed25519 key", "private_key")
    return key
