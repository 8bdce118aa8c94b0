"""Terminals and their keys, and the request signing every device request carries.

Invariant: a signed request is accepted only from a registered, active device, with an
Ed25519 signature that verifies under that device's key over the canonical request, a
timestamp inside the window, and a nonce not seen before. The nonce is remembered only after
the signature verified, so a forger cannot burn a real device's nonces; and the device row
is read on every request, so a revocation refuses the very next one. A symmetric MAC key is
stored only encrypted under the deployment's key-encryption key, and no key ever appears in
a repr, a log line or an error message.

The signing scheme (written once, here, for the server and for the client):

* canonical request = five lines, each ending in ``\\n``: the method in upper case; the
  request target (path and query, normalised by :func:`canonical_target`); the timestamp
  (Unix seconds, decimal); the nonce (at least 128 random bits, base64url without padding);
  the lower-case hex SHA-256 of the body (of the empty string when there is none);
* headers: ``X-Paygate-Device`` (the device id), ``X-Paygate-Timestamp``,
  ``X-Paygate-Nonce`` and ``X-Paygate-Signature`` (standard base64 of the 64-byte Ed25519
  signature of the canonical request's UTF-8 bytes).

Unix seconds rather than RFC 3339: one spelling per instant, nothing to parse but digits,
and the embedded clock of a kiosk keeps them without a time-zone database.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import os
import re
import secrets
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretBytes

from paygate.channels.base import NonceStore
from paygate.channels.errors import (
    DeviceNotFoundError,
    DeviceRevokedError,
    DuplicateDeviceError,
    MalformedRequestError,
    NonceReusedError,
    SignatureError,
    StaleTimestampError,
    UnknownDeviceError,
    UnknownKeyError,
)
from paygate.channels.wire import Headers, shown
from paygate.clock import Clock, require_aware
from paygate.errors import ConfigurationError, InvalidInputError, ParseError
from paygate.renames import current_channel
from paygate.store.engine import Store, Tx, UniqueViolation

__all__ = [
    "DEFAULT_WINDOW",
    "HEADER_DEVICE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "KEY_ENCRYPTION_KEY_ENV",
    "Device",
    "DeviceDirectory",
    "DeviceRegistry",
    "DeviceStatus",
    "KeyKind",
    "SignedHeaders",
    "canonical_request",
    "canonical_target",
    "ed25519_pem",
    "key_encryption_key_from_env",
    "load_public_key",
    "new_nonce",
    "read_signed_headers",
    "sign_request",
    "verify_request",
]

HEADER_DEVICE: Final = "X-Paygate-Device"
HEADER_TIMESTAMP: Final = "X-Paygate-Timestamp"
HEADER_NONCE: Final = "X-Paygate-Nonce"
HEADER_SIGNATURE: Final = "X-Paygate-Signature"

DEFAULT_WINDOW: Final = timedelta(minutes=5)
"""How far a request's timestamp may be from the verifier's clock, either way."""

KEY_ENCRYPTION_KEY_ENV: Final = "PAYGATE_KEY_ENCRYPTION_KEY"
"""The variable holding the key-encryption key: 32 bytes, base64."""

# Device ids are short enough that a kiosk's "<device id>:<transaction id>" fits the 64
# characters of a channel transaction id, and contain no ':' so that the split is unique.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{1,31}\Z")
_TIMESTAMP = re.compile(r"^[0-9]{1,10}\Z")
# 22 base64url characters carry 132 bits: the least that holds 128 random bits.
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,64}\Z")
_METHOD = re.compile(r"^[A-Z]{1,16}\Z")
_SIGNATURE_BYTES = 64
_MAC_KEY_SIZES = range(16, 65)
_LABEL_MAX = 200

_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
_SUB_DELIMS: Final = frozenset("!$&'()*+,;=")
_PATH_SAFE: Final = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
# Inside a query name or value, '&' and '=' are separators, so they stay percent-encoded.
_QUERY_SAFE: Final = (_UNRESERVED | _SUB_DELIMS | frozenset(":@/?")) - frozenset("&=")

_SEALED_PREFIX: Final = "aesgcm1:"


# ── key handling ─────────────────────────────────────────────────────────────────────────


def load_public_key(data: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or the raw 32 bytes in base64.

    Standard and URL-safe base64 are both accepted, as key tools print either. Anything
    else is an :class:`~paygate.errors.InvalidInputError` naming ``public_key``.
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    stripped = raw.strip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            key: object = serialization.load_pem_public_key(stripped)
        else:
            text = b"".join(stripped.split()).replace(b"-", b"+").replace(b"_", b"/")
            decoded = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
            key = Ed25519PublicKey.from_public_bytes(decoded)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        raise InvalidInputError(
            "not an Ed25519 public key in PEM or base64 of the raw 32 bytes", field="public_key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInputError("the public key is not an Ed25519 key", field="public_key")
    return key


def ed25519_pem(key: Ed25519PublicKey) -> str:
    """``key`` as PEM (SubjectPublicKeyInfo), the form ``paygate devices add`` registers."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_encryption_key_from_env(environ: Mapping[str, str] | None = None) -> SecretBytes | None:
    """The key-encryption key from ``PAYGATE_KEY_ENCRYPTION_KEY`` (base64, 32 bytes), or None.

    A value that is not base64 of exactly 32 bytes is a
    :class:`~paygate.errors.ConfigurationError` that does not repeat the value.
    """
    env = os.environ if environ is None else environ
    text = env.get(KEY_ENCRYPTION_KEY_ENV)
    if text is None or not text.strip():
        return None
    return SecretBytes(_decode_kek(text))


def _decode_kek(text: str) -> bytes:
    try:
        value = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"{KEY_ENCRYPTION_KEY_ENV} is not base64", field=KEY_ENCRYPTION_KEY_ENV
        ) from None
    if len(value) != 32:
        raise ConfigurationError(
            f"{KEY_ENCRYPTION_KEY_ENV} must be 32 bytes (AES-256), base64-encoded",
            field=KEY_ENCRYPTION_KEY_ENV,
        )
    return value


def _kek_bytes(kek: bytes | SecretBytes | None) -> bytes | None:
    if kek is None:
        return None
    value = kek.get_secret_value() if isinstance(kek, SecretBytes) else kek
    if not isinstance(value, bytes) or len(value) != 32:
        raise ConfigurationError(
            "the key-encryption key must be 32 bytes (AES-256)", field="key_encryption_key"
        )
    return value


def _key_aad(device_id: str) -> bytes:
    # Binds a sealed key to its device: a ciphertext copied onto another row does not open.
    return b"paygate device mac key\x00" + device_id.encode("ascii")


def _seal(kek: bytes, device_id: str, key: bytes) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(kek).encrypt(nonce, key, _key_aad(device_id))
    return _SEALED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def _open(kek: bytes, device_id: str, text: str) -> bytes:
    if not text.startswith(_SEALED_PREFIX):
        raise ConfigurationError(
            f"the MAC key of device {device_id!r} is stored in an unknown form", field="devices"
        )
    try:
        data = base64.b64decode(text[len(_SEALED_PREFIX) :], validate=True)
        return AESGCM(kek).decrypt(data[:12], data[12:], _key_aad(device_id))
    except (binascii.Error, ValueError, InvalidTag):
        raise ConfigurationError(
            f"the MAC key of device {device_id!r} does not decrypt under the configured "
            "key-encryption key",
            field=KEY_ENCRYPTION_KEY_ENV,
        ) from None


# ── devices ──────────────────────────────────────────────────────────────────────────────


class KeyKind(StrEnum):
    """How a device authenticates."""

    ED25519 = "ed25519"
    """Signs requests with its Ed25519 private key; paygate holds the public key."""
    MAC = "mac"
    """MACs messages with a symmetric key that paygate holds encrypted (POS terminals)."""


class DeviceStatus(StrEnum):
    """Whether a device may still be heard."""

    ACTIVE = "active"
    REVOKED = "revoked"


class Device(BaseModel):
    """A registered terminal. Carries its public key (public by nature), never a secret one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    channel: str
    key_kind: KeyKind
    public_key_pem: str | None = None
    label: str | None = None
    status: DeviceStatus
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @property
    def active(self) -> bool:
        """True until the device is revoked."""
        return self.status is DeviceStatus.ACTIVE

    @property
    def fingerprint(self) -> str | None:
        """``SHA256:`` and the unpadded base64 SHA-256 of the raw public key (as ssh shows)."""
        if self.public_key_pem is None:
            return None
        digest = hashlib.sha256(_raw_public(load_public_key(self.public_key_pem))).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def verifying_key(self) -> Ed25519PublicKey:
        """The device's Ed25519 public key; a device without one cannot sign requests."""
        if self.key_kind is not KeyKind.ED25519 or self.public_key_pem is None:
            raise UnknownKeyError(
                f"device {self.device_id!r} has no Ed25519 key to sign requests with",
                field=HEADER_DEVICE,
            )
        return load_public_key(self.public_key_pem)


class DeviceDirectory(Protocol):
    """Where :func:`verify_request` looks devices up; :class:`DeviceRegistry` implements it."""

    def get(self, device_id: str) -> Device | None:
        """The device registered as ``device_id`` (active or revoked), or None."""
        ...


def _check_device_id(device_id: object) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise InvalidInputError(
            "a device id is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="device_id",
        )
    return device_id


_DEVICE_COLUMNS = "device_id, channel, key_kind, public_key, label, status, created_at, revoked_at"


class DeviceRegistry:
    """The terminals a deployment knows, in the ``devices`` table.

    ``kek`` is the key-encryption key (32 bytes; see :func:`key_encryption_key_from_env`);
    without it MAC keys can be neither stored nor read, and Ed25519 devices work as usual.
    Every look-up reads the database, so a revocation takes effect on the next request.
    """

    def __init__(self, store: Store, clock: Clock, kek: bytes | SecretBytes | None = None) -> None:
        self._store = store
        self._clock = clock
        raw = _kek_bytes(kek)
        self._kek = SecretBytes(raw) if raw is not None else None

    def __repr__(self) -> str:
        kek = "set" if self._kek is not None else "none"
        return f"<DeviceRegistry {self._store.safe_url()} key-encryption-key={kek}>"

    def add(
        self,
        device_id: str,
        channel: str,
        *,
        public_key_pem: str | bytes | None = None,
        public_key_raw: bytes | None = None,
        mac_key: bytes | SecretBytes | None = None,
        label: str | None = None,
    ) -> Device:
        """Register a device with exactly one key: an Ed25519 public key or a MAC key.

        An id already registered (even revoked: ids are never reused) or an Ed25519 key
        already held by another device is a
        :class:`~paygate.channels.errors.DuplicateDeviceError`. A MAC key needs the
        key-encryption key (:class:`~paygate.errors.ConfigurationError` otherwise).
        """
        _check_device_id(device_id)
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise InvalidInputError("not a channel name", field="channel")
        channel = current_channel(channel, where="device channel", category=FutureWarning)
        if label is not None and (
            not isinstance(label, str) or len(label) > _LABEL_MAX or not label.isprintable()
        ):
            raise InvalidInputError(
                f"a label is at most {_LABEL_MAX} printable characters", field="label"
            )
        given = [k for k in (public_key_pem, public_key_raw, mac_key) if k is not None]
        if len(given) != 1:
            raise InvalidInputError(
                "give exactly one key: public_key_pem, public_key_raw or mac_key", field="key"
            )
        public_pem: str | None = None
        sealed: str | None = None
        if public_key_pem is not None:
            public_pem = ed25519_pem(load_public_key(public_key_pem))
            kind = KeyKind.ED25519
        elif public_key_raw is not None:
            try:
                key = Ed25519PublicKey.from_public_bytes(bytes(public_key_raw))
            except ValueError:
                raise InvalidInputError(
                    "a raw Ed25519 public key is exactly 32 bytes", field="public_key"
                ) from None
            public_pem = ed25519_pem(key)
            kind = KeyKind.ED25519
        else:
            assert mac_key is not None
            secret = mac_key.get_secret_value() if isinstance(mac_key, SecretBytes) else mac_key
            if not isinstance(secret, bytes) or len(secret) not in _MAC_KEY_SIZES:
                raise InvalidInputError("a MAC key is 16 to 64 bytes", field="mac_key")
            if self._kek is None:
                raise ConfigurationError(
                    f"refusing to store a MAC key without a key-encryption key "
                    f"(set {KEY_ENCRYPTION_KEY_ENV})",
                    field=KEY_ENCRYPTION_KEY_ENV,
                )
            sealed = _seal(self._kek.get_secret_value(), device_id, secret)
            kind = KeyKind.MAC
        now = self._clock.now()

        def work(tx: Tx) -> None:
            if public_pem is not None:
                holder = tx.scalar(
                    "SELECT device_id FROM devices WHERE public_key = :pem", {"pem": public_pem}
                )
                if holder is not None:
                    raise DuplicateDeviceError(
                        f"this public key is already registered to device {holder!r}",
                        field="public_key",
                    )
            tx.execute(
                "INSERT INTO devices (id, device_id, channel, key_kind, public_key, "
                "key_ciphertext, label, status, created_at, revoked_at) VALUES (:id, :device, "
                ":channel, :kind, :pem, :sealed, :label, :status, :now, NULL)",
                {
                    "id": tx.ids.one(),
                    "device": device_id,
                    "channel": channel,
                    "kind": kind.value,
                    "pem": public_pem,
                    "sealed": sealed,
                    "label": label,
                    "status": DeviceStatus.ACTIVE.value,
                    "now": tx.ts(now),
                },
            )

        try:
            self._store.run(work)
        except UniqueViolation:
            raise DuplicateDeviceError(
                f"device {device_id!r} is already registered", field="device_id"
            ) from None
        device = self.get(device_id)
        assert device is not None
        return device

    def revoke(self, device_id: str) -> Device:
        """Revoke a device at once; revoking it again keeps the first revocation time."""
        _check_device_id(device_id)
        now = self._clock.now()

        def work(tx: Tx) -> Device | None:
            tx.execute(
                "UPDATE devices SET status = :revoked, revoked_at = :now "
                "WHERE device_id = :device AND status = :active",
                {
                    "revoked": DeviceStatus.REVOKED.value,
                    "active": DeviceStatus.ACTIVE.value,
                    "now": tx.ts(now),
                    "device": device_id,
                },
            )
            return self._read(tx, device_id)

        device = self._store.run(work)
        if device is None:
            raise DeviceNotFoundError(f"no device {device_id!r}", field="device_id")
        return device

    def get(self, device_id: str) -> Device | None:
        """The device registered as ``device_id`` (active or revoked), or None."""
        if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
            return None
        return self._store.run(lambda tx: self._read(tx, device_id), write=False)

    @staticmethod
    def read(tx: Tx, device_id: str) -> Device | None:
        """:meth:`get` inside the caller's transaction ``tx`` (one transaction with other work)."""
        if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
            return None
        return DeviceRegistry._read(tx, device_id)

    def list(self, *, limit: int | None = None, after: str = "") -> builtins.list[Device]:
        """Every registered device, by id; at most ``limit``, from the id after ``after`` on."""
        query = (
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id > :after "  # noqa: S608 - constant
            "ORDER BY device_id" + (" LIMIT :n" if limit is not None else "")
        )
        rows = self._store.run(lambda tx: tx.all(query, {"after": after, "n": limit}), write=False)
        return [_device(row) for row in rows]

    def public_key(self, device_id: str) -> Ed25519PublicKey | None:
        """The Ed25519 key of an active device, or None (unknown, revoked, or a MAC device)."""
        device = self.get(device_id)
        if device is None or not device.active or device.key_kind is not KeyKind.ED25519:
            return None
        return device.verifying_key()

    def mac_key(self, terminal_id: str) -> bytes | None:
        """The MAC key of an active MAC terminal, decrypted; None for any other device.

        This is the POS adapter's ``TerminalKeys`` protocol. Without the key-encryption key,
        or with another one, it is a :class:`~paygate.errors.ConfigurationError`.
        """
        if not isinstance(terminal_id, str) or not _DEVICE_ID.match(terminal_id):
            return None
        row = self._store.run(
            lambda tx: tx.one(
                "SELECT status, key_kind, key_ciphertext FROM devices WHERE device_id = :d",
                {"d": terminal_id},
            ),
            write=False,
        )
        if row is None or row[0] != DeviceStatus.ACTIVE.value or row[1] != KeyKind.MAC.value:
            return None
        if self._kek is None:
            raise ConfigurationError(
                f"MAC keys cannot be read without a key-encryption key (set "
                f"{KEY_ENCRYPTION_KEY_ENV})",
                field=KEY_ENCRYPTION_KEY_ENV,
            )
        return _open(self._kek.get_secret_value(), terminal_id, str(row[2]))

    @staticmethod
    def _read(tx: Tx, device_id: str) -> Device | None:
        row = tx.one(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = :d",  # noqa: S608 - constant
            {"d": device_id},
        )
        return None if row is None else _device(row)


def _device(row: tuple[Any, ...]) -> Device:
    return Device(
        device_id=row[0],
        channel=row[1],
        key_kind=KeyKind(row[2]),
        public_key_pem=row[3],
        label=row[4],
        status=DeviceStatus(row[5]),
        created_at=Tx.read_ts(row[6]),
        revoked_at=None if row[7] is None else Tx.read_ts(row[7]),
    )


# ── the canonical request ────────────────────────────────────────────────────────────────


def _normalize(component: str, safe: frozenset[str], field: str) -> str:
    """Percent-encoding normalised (RFC 3986 §6.2.2): unreserved decoded, hex upper-case."""
    out: list[str] = []
    i = 0
    while i < len(component):
        char = component[i]
        if char == "%":
            pair = component[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in string.hexdigits for c in pair):
                raise MalformedRequestError("malformed %-escape in the request target", field=field)
            byte = int(pair, 16)
            out.append(chr(byte) if chr(byte) in _UNRESERVED else f"%{byte:02X}")
            i += 3
            continue
        if char in safe:
            out.append(char)
        else:
            try:
                encoded = char.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedRequestError(
                    "the request target is not valid text", field=field
                ) from None
            out.append("".join(f"%{b:02X}" for b in encoded))
        i += 1
    return "".join(out)


def canonical_target(target: str) -> str:
    """The request target as signed: path and query with percent-encoding normalised.

    Unreserved characters are decoded, every other escape is upper-case hex, characters
    outside the URI grammar are percent-encoded as UTF-8; ``.`` and ``..`` segments are
    refused (a router might resolve them where the signer did not). Query pairs are sorted
    by name, then value, and always written ``name=value``; an empty query disappears.
    """
    if not isinstance(target, str) or not target.startswith("/"):
        raise MalformedRequestError("the request target must start with '/'", field="path")
    path, question, query = target.partition("?")
    canonical = _normalize(path, _PATH_SAFE, "path")
    if any(segment in (".", "..") for segment in canonical.split("/")):
        raise MalformedRequestError("'.' and '..' segments are refused", field="path")
    if question:
        pairs = []
        for part in query.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            pairs.append(
                (_normalize(name, _QUERY_SAFE, "query"), _normalize(value, _QUERY_SAFE, "query"))
            )
        if pairs:
            canonical += "?" + "&".join(f"{name}={value}" for name, value in sorted(pairs))
    return canonical


def canonical_request(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a device signs: method, target, timestamp, nonce, body SHA-256, one per line."""
    if not isinstance(method, str) or not _METHOD.match(method.upper()):
        raise MalformedRequestError("not an HTTP method", field="method")
    if not isinstance(body, bytes):
        raise TypeError("a request body is bytes")
    lines = (
        method.upper(),
        canonical_target(target),
        timestamp,
        nonce,
        hashlib.sha256(body).hexdigest(),
    )
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


# ── signing (the device's side) ──────────────────────────────────────────────────────────


def new_nonce() -> str:
    """A fresh nonce: 128 random bits, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def sign_request(
    private_key: Ed25519PrivateKey,
    device_id: str,
    method: str,
    path: str,
    body: bytes,
    *,
    now: datetime,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request from ``device_id``.

    ``path`` is the request target as sent (path and query); ``now`` the device's clock.
    Every request, a retry included, is signed afresh with a new nonce.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError("private_key must be an Ed25519PrivateKey")
    _check_device_id(device_id)
    nonce = new_nonce() if nonce is None else nonce
    _check_nonce(nonce)
    seconds = int(require_aware(now, "now").timestamp())
    if seconds < 0:
        raise InvalidInputError("the device clock is before 1970", field="now")
    timestamp = str(seconds)
    signature = private_key.sign(canonical_request(method, path, timestamp, nonce, body))
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(signature).decode("ascii"),
    }


# ── verifying (the server's side) ────────────────────────────────────────────────────────


class SignedHeaders(BaseModel):
    """The authentication headers of a request, each checked for its form (not yet trusted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    timestamp: str
    nonce: str
    signature: bytes


def _check_nonce(nonce: object) -> str:
    if not isinstance(nonce, str) or not _NONCE.match(nonce) or len(nonce) % 4 == 1:
        raise MalformedRequestError(
            "the nonce must be 22-64 base64url characters (at least 128 bits)",
            field=HEADER_NONCE,
        )
    return nonce


def read_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Read and check the form of the four headers; any problem is a MalformedRequestError."""
    try:
        found = Headers(headers, source="device")
    except ParseError as exc:
        raise MalformedRequestError(exc.message, field=exc.field) from None
    values: dict[str, str] = {}
    for name in (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE):
        value = found.get(name)
        if value is None or value == "":
            raise MalformedRequestError(f"header {name} missing", field=name)
        values[name] = value
    device_id = values[HEADER_DEVICE]
    if not _DEVICE_ID.match(device_id):
        raise MalformedRequestError(f"not a device id: {shown(device_id)}", field=HEADER_DEVICE)
    if not _TIMESTAMP.match(values[HEADER_TIMESTAMP]):
        raise MalformedRequestError("the timestamp must be Unix seconds", field=HEADER_TIMESTAMP)
    nonce = _check_nonce(values[HEADER_NONCE])
    try:
        signature = base64.b64decode(values[HEADER_SIGNATURE], validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequestError("the signature is not base64", field=HEADER_SIGNATURE) from None
    if len(signature) != _SIGNATURE_BYTES:
        raise MalformedRequestError(
            f"an Ed25519 signature is {_SIGNATURE_BYTES} bytes", field=HEADER_SIGNATURE
        )
    return SignedHeaders(
        device_id=device_id, timestamp=values[HEADER_TIMESTAMP], nonce=nonce, signature=signature
    )


def verify_request(
    registry: DeviceDirectory,
    nonces: NonceStore,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> Device:
    """Authenticate a signed request and return its device; refuse it with a specific error.

    In order: the headers' form (``malformed_request``); the device (``unknown_device``,
    ``device_revoked``, ``unknown_key`` for a device without an Ed25519 key); the signature
    over the canonical request (``invalid_signature``); then — signed, so now believed —
    the timestamp within ``window`` of ``now`` either way (``stale_timestamp``) and the
    nonce, remembered here for the first time (``nonce_reused``).
    """
    now = require_aware(now, "now")
    if window <= timedelta(0):
        raise ConfigurationError("the timestamp window must be positive", field="window")
    signed = read_signed_headers(headers)
    message = canonical_request(method, path, signed.timestamp, signed.nonce, body)
    device = registry.get(signed.device_id)
    if device is None:
        raise UnknownDeviceError(
            f"no device {shown(signed.device_id)} is registered", field=HEADER_DEVICE
        )
    if not device.active:
        raise DeviceRevokedError(f"device {device.device_id!r} is revoked", field=HEADER_DEVICE)
    try:
        device.verifying_key().verify(signed.signature, message)
    except InvalidSignature:
        raise SignatureError("signature does not verify", field=HEADER_SIGNATURE) from None
    sent = datetime.fromtimestamp(int(signed.timestamp), UTC)
    if sent > now + window:
        raise StaleTimestampError(
            f"timestamp {sent.isoformat()} is more than {window} in the future",
            field=HEADER_TIMESTAMP,
        )
    if now - sent > window:
        raise StaleTimestampError(
            f"timestamp {sent.isoformat()} is more than {window} old", field=HEADER_TIMESTAMP
        )
    key = f"device:{device.device_id}:{signed.nonce}"
    # Kept one second past the last instant the timestamp is accepted, so that a replay at
    # exactly the edge of the window still finds the nonce.
    if not nonces.add(key, expires_at=sent + window + timedelta(seconds=1), now=now):
        raise NonceReusedError("nonce already used", field=HEADER_NONCE)
    return device
