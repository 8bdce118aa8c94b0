"""RSA public keys and SHA256withRSA signature checks, as the Chinese payment channels use them;
the merchant's own RSA private key that signs requests to them (the refund routes); and the
explicit reading of shared keys given as text (:class:`KeyEncoding`).

Invariant: a signature either verifies against a configured key or raises
:class:`~paygate.channels.errors.SignatureError`; nothing in this module returns "maybe".
Keys shorter than 2048 bits are refused when configured, not when a message arrives.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from paygate.channels.errors import SignatureError

__all__ = [
    "MIN_RSA_BITS",
    "KeyEncoding",
    "VerifyingKey",
    "canonical_string",
    "decode_secret",
    "decode_signature",
    "load_signing_key",
    "load_verifying_key",
    "sign_sha256_rsa",
    "verify_sha256_rsa",
]

MIN_RSA_BITS: Final = 2048


class KeyEncoding(StrEnum):
    """How a shared key given as text in configuration becomes the key's bytes.

    Said explicitly because the parties disagree: one bank hands over its HMAC key as a
    printable string whose UTF-8 bytes are the key, another as hex digits, another in base64.
    Reading hex digits as UTF-8 gives a different key that verifies nothing.
    """

    UTF8 = "utf-8"
    """The text's UTF-8 bytes are the key."""
    HEX = "hex"
    """Hexadecimal digits, two per byte (either case)."""
    BASE64 = "base64"
    """Standard base64 with padding."""


def decode_secret(text: str, encoding: KeyEncoding) -> bytes:
    """The bytes of a key given as ``text`` in ``encoding``.

    Raises ``ValueError`` (for a configuration validator) that never quotes the text: it is
    a secret.
    """
    if encoding is KeyEncoding.UTF8:
        return text.encode("utf-8")
    stripped = text.strip()
    try:
        if encoding is KeyEncoding.HEX:
            return bytes.fromhex(stripped)
        return base64.b64decode(stripped, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"the key is not valid {encoding.value}") from None


@dataclass(frozen=True)
class VerifyingKey:
    """A channel's RSA public key, with the certificate it came from when there was one."""

    public_key: RSAPublicKey
    certificate: x509.Certificate | None = None

    @property
    def serial_hex(self) -> str | None:
        """The certificate's serial number in upper-case hex, without leading zeros."""
        if self.certificate is None:
            return None
        return f"{self.certificate.serial_number:X}"

    def valid_at(self, instant: datetime) -> bool:
        """True when there is no certificate, or ``instant`` is within its validity period."""
        if self.certificate is None:
            return True
        cert = self.certificate
        return cert.not_valid_before_utc <= instant <= cert.not_valid_after_utc


def load_verifying_key(text: str) -> VerifyingKey:
    """Load an RSA public key from a PEM certificate, a PEM public key or bare base64 DER.

    Channels hand out keys in all three forms (Alipay's console shows bare base64). Raises
    ``ValueError`` for anything else, so that pydantic reports it as a configuration error.
    """
    stripped = text.strip()
    certificate: x509.Certificate | None = None
    key: object
    try:
        if "-----BEGIN CERTIFICATE-----" in stripped:
            certificate = x509.load_pem_x509_certificate(stripped.encode("ascii"))
            key = certificate.public_key()
        elif stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        else:
            der = base64.b64decode("".join(stripped.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error):
        raise ValueError("not a PEM certificate, PEM public key or base64 DER public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the key is not an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_RSA_BITS} bits are refused")
    return VerifyingKey(public_key=key, certificate=certificate)


def canonical_string(
    params: Mapping[str, str], *, exclude: Collection[str], drop_empty: bool
) -> str:
    """``k=v&k=v…`` over ``params`` sorted by key, leaving out ``exclude`` (and empty values).

    Values are used as received (already URL-decoded), never re-encoded: that is the string
    the channels sign. Keys sort by code point, which for the ASCII names in use is the
    byte order the channels specify.
    """
    pairs = (
        f"{key}={value}"
        for key, value in sorted(params.items())
        if key not in exclude and not (drop_empty and value == "")
    )
    return "&".join(pairs)


def decode_signature(signature: str | None, *, field: str) -> bytes:
    """The raw bytes of a base64 signature; missing or malformed is a SignatureError."""
    if not signature:
        raise SignatureError("signature missing", field=field)
    try:
        return base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not base64", field=field) from None


def verify_sha256_rsa(
    keys: VerifyingKey | Iterable[VerifyingKey], message: bytes, signature: bytes, *, field: str
) -> VerifyingKey:
    """Check a SHA256withRSA (PKCS#1 v1.5) ``signature`` of ``message``; return the key used.

    With several keys (a channel rotating its key) any one of them may verify.
    """
    candidates = [keys] if isinstance(keys, VerifyingKey) else list(keys)
    for candidate in candidates:
        try:
            candidate.public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return candidate
    raise SignatureError("signature does not verify", field=field)


def load_signing_key(pem: bytes, password: bytes | None = None) -> RSAPrivateKey:
    """Load the merchant's RSA private key (PEM, PKCS#8 or PKCS#1, optionally encrypted).

    Raises ``ValueError`` that never quotes the key: for a configuration validator.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise ValueError("not a PEM RSA private key, or the passphrase does not open it") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_RSA_BITS} bits are refused")
    return key


def sign_sha256_rsa(key: RSAPrivateKey, message: bytes) -> str:
    """The base64 SHA256withRSA (PKCS#1 v1.5) signature of ``message``: what the channels
    call RSA2 and check with :func:`verify_sha256_rsa` on their side."""
    raw = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")
