"""Service clients: the programs (billing systems) that read paygate over HTTP, and their secrets.

A service client is not a device: it does not sign requests, it authenticates once with its
client id and secret (OAuth 2.0 client credentials, RFC 6749 §4.4) and then presents a short
lived bearer token (:mod:`paygate.tokens`). Invariants:

* **A secret is never stored, shown twice or logged.** It is generated here (256 bits), handed
  to the operator once (``add``, ``rotate``) and kept only as an scrypt hash with its own salt;
  no message, exception or ``repr`` contains it.
* **Checking a secret takes the same time whoever asks.** The hash is compared in constant
  time, and an unknown client id costs the same scrypt as a known one, so timing tells a
  caller nothing about which client ids exist.
* **A client's scopes bound what any of its tokens may do.** Scopes are a fixed vocabulary
  (:data:`SCOPES`); a client is registered with some of them.
* **Revocation and rotation take effect on the next request.** Every bearer request reads the
  client's row: a revoked client's tokens are refused, and a rotation (``generation`` + 1)
  refuses every token issued before it, whatever their expiry.

This module owns the ``service_clients`` table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from paygate.clock import Clock
from paygate.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from paygate.store.engine import Store, Tx, UniqueViolation

__all__ = [
    "SCOPES",
    "ClientStatus",
    "InsufficientScopeError",
    "InvalidClientError",
    "InvalidTokenError",
    "MalformedAuthorizationError",
    "MissingTokenError",
    "ServiceClient",
    "ServiceClientRegistry",
    "UnknownClientError",
    "hash_secret",
    "parse_scopes",
    "verify_secret",
]

SCOPES: Final = frozenset(
    {"payments:read", "events:read", "supply-orders:read", "bills:write", "accounts:write"}
)
"""Every scope a service client can hold."""

REALM: Final = "paygate"

_CLIENT_ID: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
# scrypt at N=2^14, r=8, p=1 (16 MiB, tens of milliseconds): RFC 7914's interactive figures.
_SCRYPT_N: Final = 2**14
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_SCRYPT_LEN: Final = 32
_SALT_BYTES: Final = 16


class ClientStatus(StrEnum):
    """Whether a client's tokens are honoured."""

    ACTIVE = "active"
    REVOKED = "revoked"


class UnknownClientError(NotFoundError):
    """No service client is registered under that id."""

    code = "unknown_client"


class DuplicateClientError(ConflictError):
    """A service client is already registered under that id."""

    code = "duplicate_client"


class InvalidClientError(AuthenticationError):
    """The client id and secret do not authenticate a registered, active client."""

    code = "invalid_client"


class MissingTokenError(AuthenticationError):
    """The request carries no bearer token."""

    code = "token_required"
    challenge = f'Bearer realm="{REALM}"'


class MalformedAuthorizationError(InvalidInputError):
    """The Authorization header is not one bearer token in the form RFC 6750 gives."""

    code = "invalid_request"
    challenge = f'Bearer realm="{REALM}", error="invalid_request"'


class InvalidTokenError(AuthenticationError):
    """The bearer token is not valid: forged, expired, not yet valid, or its client revoked."""

    code = "invalid_token"

    @property
    def challenge(self) -> str:
        """The RFC 6750 WWW-Authenticate challenge answering this refusal."""
        text = str(getattr(self, "message", "") or self).replace('"', "'").replace("\\", "/")
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{text}"'


class InsufficientScopeError(AuthenticationError):
    """The bearer token is valid but does not grant the scope this route needs."""

    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this route needs the scope {scope}", field="scope")
        self.scope = scope

    @property
    def challenge(self) -> str:
        """The RFC 6750 WWW-Authenticate challenge answering this refusal."""
        return f'Bearer realm="{REALM}", error="insufficient_scope", scope="{self.scope}"'


@dataclass(frozen=True, slots=True)
class ServiceClient:
    """A registered service client (never its secret)."""

    client_id: str
    label: str | None
    scopes: frozenset[str]
    generation: int
    status: ClientStatus
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether its tokens are honoured."""
        return self.status is ClientStatus.ACTIVE


def parse_scopes(scopes: Iterable[str] | str, *, field: str = "scope") -> frozenset[str]:
    """Scopes from a space-separated string or an iterable; unknown ones refused by name."""
    items = scopes.split() if isinstance(scopes, str) else [s for s in scopes]
    unknown = sorted(set(items) - SCOPES)
    if unknown:
        raise InvalidInputError(
            f"unknown scope {unknown[0]!r} (known: {', '.join(sorted(SCOPES))})", field=field
        )
    return frozenset(items)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_SCRYPT_LEN, maxmem=64 * 2**20
    )


def hash_secret(secret: str) -> str:
    """``secret`` as stored: ``scrypt$N$r$p$salt$hash`` (salt and hash base64url)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# What an unknown client id is checked against, so that it costs what a known one costs.
_DUMMY_HASH: Final = hash_secret(secrets.token_urlsafe(32))


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


_COLUMNS: Final = "client_id, label, scopes, generation, status, created_at, rotated_at, revoked_at"


def _client(row: Sequence[Any]) -> ServiceClient:
    client_id, label, scopes, generation, status, created, rotated, revoked = row
    return ServiceClient(
        client_id=client_id,
        label=label,
        scopes=frozenset(str(scopes).split()),
        generation=int(generation),
        status=ClientStatus(status),
        created_at=Tx.read_ts(created),
        rotated_at=None if rotated is None else Tx.read_ts(rotated),
        revoked_at=None if revoked is None else Tx.read_ts(revoked),
    )


class ServiceClientRegistry:
    """The registered service clients: add, list, revoke, rotate, and check a secret."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @property
    def store(self) -> Store:
        """The database the registry is kept in."""
        return self._store

    def add(
        self, client_id: str, scopes: Iterable[str] | str, *, label: str | None = None
    ) -> tuple[ServiceClient, str]:
        """Register a client; return it and its secret, which is shown this once."""
        if not _CLIENT_ID.match(client_id):
            raise InvalidInputError(
                "a client id is 1-64 of a-z 0-9 . _ - (starting with a letter or digit)",
                field="client_id",
            )
        granted = parse_scopes(scopes)
        if not granted:
            raise InvalidInputError("a client needs at least one scope", field="scope")
        if label is not None and len(label) > 200:
            raise InvalidInputError("a label is at most 200 characters", field="label")
        secret = secrets.token_urlsafe(32)
        stored = hash_secret(secret)
        now = self._clock.now()

        def work(tx: Tx) -> ServiceClient:
            try:
                tx.execute(
                    "INSERT INTO service_clients (id, client_id, label, scopes, secret_hash, "
                    "generation, status, created_at) VALUES (:id, :client_id, :label, :scopes, "
                    ":hash, 1, 'active', :now)",
                    {
                        "id": tx.ids.one(),
                        "client_id": client_id,
                        "label": label,
                        "scopes": " ".join(sorted(granted)),
                        "hash": stored,
                        "now": tx.ts(now),
                    },
                )
            except UniqueViolation:
                raise DuplicateClientError(
                    f"a service client {client_id} is already registered", field="client_id"
                ) from None
            found = self._load(tx, client_id)
            assert found is not None
            return found

        return self._store.run(work), secret

    def list(self) -> list[ServiceClient]:
        """Every client, revoked ones included, by client id."""
        rows = self._store.run(
            lambda tx: tx.all(
                f"SELECT {_COLUMNS} FROM service_clients ORDER BY client_id"  # noqa: S608
            ),
            write=False,
        )
        return [_client(row) for row in rows]

    def get(self, client_id: str) -> ServiceClient | None:
        """The client registered as ``client_id``, or None."""
        return self._store.run(lambda tx: self._load(tx, client_id), write=False)

    def revoke(self, client_id: str) -> ServiceClient:
        """Refuse the client's secret and every token it holds, from the next request on."""
        now = self._clock.now()

        def work(tx: Tx) -> ServiceClient:
            found = self._load(tx, client_id, lock=True)
            if found is None:
                raise UnknownClientError(f"no service client {client_id}", field="client_id")
            if found.active:
                tx.execute(
                    "UPDATE service_clients SET status = 'revoked', revoked_at = :now "
                    "WHERE client_id = :c",
                    {"now": tx.ts(now), "c": client_id},
                )
            revoked = self._load(tx, client_id)
            assert revoked is not None
            return revoked

        return self._store.run(work)

    def rotate(self, client_id: str) -> tuple[ServiceClient, str]:
        """Give an active client a new secret; tokens issued under the old one are refused."""
        secret = secrets.token_urlsafe(32)
        stored = hash_secret(secret)
        now = self._clock.now()

        def work(tx: Tx) -> ServiceClient:
            found = self._load(tx, client_id, lock=True)
            if found is None:
                raise UnknownClientError(f"no service client {client_id}", field="client_id")
            if not found.active:
                raise InvalidStateError(
                    f"service client {client_id} is revoked; register a new one",
                    field="client_id",
                )
            tx.execute(
                "UPDATE service_clients SET secret_hash = :hash, generation = generation + 1, "
                "rotated_at = :now WHERE client_id = :c",
                {"hash": stored, "now": tx.ts(now), "c": client_id},
            )
            rotated = self._load(tx, client_id)
            assert rotated is not None
            return rotated

        return self._store.run(work), secret

    def authenticate(self, client_id: str, secret: str) -> ServiceClient:
        """The active client ``client_id`` if ``secret`` is its secret; else InvalidClientError.

        The refusal says the same for an unknown id, a wrong secret and a revoked client.
        """

        def work(tx: Tx) -> tuple[ServiceClient, str] | None:
            row = tx.one(
                f"SELECT {_COLUMNS}, secret_hash FROM service_clients "  # noqa: S608
                "WHERE client_id = :c",
                {"c": client_id},
            )
            return None if row is None else (_client(row[:-1]), str(row[-1]))

        found = self._store.run(work, write=False) if len(client_id) <= 64 else None
        # The hash is computed whatever was found: an unknown id takes as long as a known one.
        matches = verify_secret(secret, found[1] if found else _DUMMY_HASH)
        if found is None or not matches or not found[0].active:
            raise InvalidClientError("client authentication failed")
        return found[0]

    @staticmethod
    def _load(tx: Tx, client_id: str, *, lock: bool = False) -> ServiceClient | None:
        suffix = " FOR UPDATE" if lock and tx.dialect == "postgresql" else ""
        row = tx.one(
            f"SELECT {_COLUMNS} FROM service_clients WHERE client_id = :c{suffix}",  # noqa: S608
            {"c": client_id},
        )
        return None if row is None else _client(row)
