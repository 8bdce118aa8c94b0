"""The PIN key and the keyed PIN hash.

Invariant: a PIN is kept only as ``HMAC-SHA256(pin_key, serial, PIN)``, compared in constant
time, and never shown; the key is refused when shorter than SHA-256's output.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from typing import Final

from pydantic import SecretBytes

from paygate.errors import ConfigurationError

PIN_KEY_ENV: Final = "PAYGATE_VOUCHER_PIN_KEY"
"""The environment variable holding the PIN key, base64."""
MIN_PIN_KEY_BYTES: Final = 32


_HASH_PREFIX: Final = "hmac-sha256:v1:"


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
