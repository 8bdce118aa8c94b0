"""Bearer tokens of service clients: short-lived JWTs (EdDSA) issued for client credentials.

Invariants:

* **Signed with the deployment's key, checked in full.** A token is a JWT signed with the
  Ed25519 key of :class:`TokenSettings` (algorithm ``EdDSA`` only: a token naming another
  algorithm, ``none`` included, is refused). Verification requires and checks the issuer,
  the audience, ``exp``, ``nbf`` and ``iat`` against the gateway's clock, and the scope.
* **Short-lived, and still checked against the registry.** A token lives ``ttl`` (default five
  minutes); each request reads its client's row, so a revoked client, or a token issued before
  the client's last rotation, is refused on the next request (:mod:`paygate.service_clients`).
* **A token grants no more than its client holds.** The scopes asked for must be among the
  client's; none asked means all of them.

* **Guessing is bounded.** Every authentication at the token endpoint is recorded in the
  database (:mod:`paygate.token_attempts`), so that every worker sees it: a client id or a
  source address with too many failures in the window is answered 429 until they leave it.

:class:`TokenSettings` is built from the configuration's ``[tokens]`` section
(:class:`~paygate.config.TokensSection`; ``PAYGATE_TOKENS__*`` like every other section).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, SecretBytes, ValidationError, field_validator

from paygate.clock import Clock
from paygate.errors import ConfigurationError, InvalidInputError
from paygate.service_clients import (
    InsufficientScopeError,
    InvalidClientError,
    InvalidTokenError,
    ServiceClientRegistry,
    parse_scopes,
)
from paygate.token_attempts import AttemptOutcome, TokenAttempts

if TYPE_CHECKING:
    from paygate.config import PaygateConfig

__all__ = [
    "RETIRED_TOKEN_ENV",
    "AccessToken",
    "InvalidScopeError",
    "Principal",
    "TokenService",
    "TokenSettings",
]

_ALGORITHM: Final = "EdDSA"

RETIRED_TOKEN_ENV: Final = {
    "PAYGATE_TOKEN_KEY_FILE": "PAYGATE_TOKENS__KEY_FILE",
    "PAYGATE_TOKEN_ISSUER": "PAYGATE_TOKENS__ISSUER",
    "PAYGATE_TOKEN_AUDIENCE": "PAYGATE_TOKENS__AUDIENCE",
    "PAYGATE_TOKEN_TTL": "PAYGATE_TOKENS__TTL",
}
"""Variables that configured tokens before the ``[tokens]`` section, and the ones that do now.

The configuration's naming rule (``PAYGATE_`` + the dotted key, ``__`` for each dot) does not
produce them, so they are not read; one still set is refused, so that token signing never
goes off silently."""


class InvalidScopeError(InvalidInputError):
    """The scope asked for is unknown or not granted to this client."""

    code = "invalid_scope"


class TokenSettings(BaseModel):
    """How bearer tokens are signed and checked: one section of the configuration."""

    model_config = ConfigDict(frozen=True)

    signing_key: SecretBytes = Field(description="an Ed25519 private key, PEM (PKCS#8)")
    issuer: str = Field(default="paygate", min_length=1, max_length=200)
    audience: str = Field(default="paygate-api", min_length=1, max_length=200)
    ttl: timedelta = Field(default=timedelta(minutes=5))
    leeway: timedelta = Field(
        default=timedelta(seconds=30), description="clock skew allowed on exp, nbf and iat"
    )
    client_failures: int = Field(default=5, ge=1, le=10_000)
    """Failed authentications of one client id within ``failure_window`` before 429."""
    source_failures: int = Field(default=20, ge=1, le=100_000)
    """Failed authentications from one source address within ``failure_window`` before 429."""
    failure_window: timedelta = Field(default=timedelta(minutes=15))

    @field_validator("signing_key")
    @classmethod
    def _key(cls, value: SecretBytes) -> SecretBytes:
        _private_key(value)
        return value

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=10) <= value <= timedelta(hours=1):
            raise ValueError("ttl must be between 10 seconds and one hour")
        return value

    @field_validator("leeway")
    @classmethod
    def _leeway(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(minutes=5):
            raise ValueError("leeway must be between 0 and 5 minutes")
        return value

    @field_validator("failure_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("failure_window must be between 1 second and one day")
        return value

    @classmethod
    def from_config(
        cls, config: PaygateConfig, environ: Mapping[str, str] | None = None
    ) -> TokenSettings | None:
        """The settings of the configuration's ``[tokens]`` section; None when it names no
        ``key_file`` (no tokens are signed, and the token endpoint is not served).

        A variable of :data:`RETIRED_TOKEN_ENV` still set in ``environ`` (default
        ``os.environ``) is refused, naming the variable to set instead.
        """
        env = os.environ if environ is None else environ
        for old, new in RETIRED_TOKEN_ENV.items():
            if env.get(old, "").strip():
                raise ConfigurationError(
                    f"${old} is no longer read: token settings are the [tokens] section of the "
                    f"configuration (or ${new}); set that and unset ${old}",
                    field=old,
                )
        section = config.tokens
        if section.key_file is None:
            return None
        path = section.key_file
        if not path.is_absolute():
            path = config.base_dir("tokens") / path
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise config.problem(
                "tokens.key_file", f"cannot read {path}: {exc.strerror or exc}"
            ) from None
        try:
            return cls(
                signing_key=SecretBytes(key),
                issuer=section.issuer,
                audience=section.audience,
                ttl=timedelta(seconds=section.ttl),
                leeway=timedelta(seconds=section.leeway),
                client_failures=section.client_failures,
                source_failures=section.source_failures,
                failure_window=timedelta(seconds=section.failure_window),
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "key_file"
            key_name = "key_file" if name == "signing_key" else name
            raise config.problem(f"tokens.{key_name}", str(first["msg"])) from None


def _private_key(value: SecretBytes) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(value.get_secret_value(), password=None)
    except (ValueError, TypeError):
        raise ValueError("the signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An issued token, as RFC 6749 §5.1 answers it."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified bearer token speaks for, and what it may do."""

    client_id: str
    scopes: frozenset[str]


class TokenService:
    """Issues tokens for client credentials and verifies the tokens requests present."""

    def __init__(
        self, settings: TokenSettings, registry: ServiceClientRegistry, clock: Clock
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._clock = clock
        self._key = _private_key(settings.signing_key)
        self._public = self._key.public_key()
        self._attempts = TokenAttempts(
            registry.store,
            clock,
            client_failures=settings.client_failures,
            source_failures=settings.source_failures,
            window=settings.failure_window,
        )

    @property
    def registry(self) -> ServiceClientRegistry:
        """The service clients the tokens are issued to."""
        return self._registry

    def issue(
        self, client_id: str, secret: str, scope: str | None = None, *, source: str | None = None
    ) -> AccessToken:
        """A token for the client these credentials authenticate, with ``scope`` (space-
        separated; None or empty: every scope the client holds).

        ``source`` is the address the request came from. A client id, or a source, with too
        many failed authentications in the window is refused before its secret is looked at
        (:class:`~paygate.token_attempts.TokenThrottledError`); every attempt is recorded.
        """
        attempt = self._attempts.begin(client_id, source)
        outcome = AttemptOutcome.ERROR
        try:
            client = self._registry.authenticate(client_id, secret)
            outcome = AttemptOutcome.AUTHENTICATED
        except InvalidClientError:
            outcome = AttemptOutcome.REFUSED
            raise
        finally:
            self._attempts.finish(attempt, outcome)
        try:
            asked = parse_scopes(scope or "")
        except InvalidInputError as exc:
            raise InvalidScopeError(str(exc.message), field="scope") from None
        if not asked:
            asked = client.scopes
        if not asked <= client.scopes:
            missing = sorted(asked - client.scopes)[0]
            raise InvalidScopeError(f"the scope {missing} is not granted to this client")
        now = self._clock.now()
        ttl = int(self._settings.ttl.total_seconds())
        granted = " ".join(sorted(asked))
        claims = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": client.client_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(now.timestamp()) + ttl,
            "jti": secrets.token_urlsafe(16),
            "scope": granted,
            "gen": client.generation,
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM)
        return AccessToken(access_token=token, expires_in=ttl, scope=granted)

    def verify(self, token: str, scope: str) -> Principal:
        """The principal ``token`` speaks for, if it is valid now and grants ``scope``.

        InvalidTokenError (401) for a token that is not valid, InsufficientScopeError (403)
        for a valid one without ``scope``.
        """
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[_ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                # Times are checked below against the gateway's clock, not the machine's.
                options={
                    "require": ["exp", "nbf", "iat", "iss", "aud", "sub", "scope", "gen"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(_reason(exc)) from None
        now = self._clock.now().timestamp()
        leeway = self._settings.leeway.total_seconds()
        exp, nbf, iat = claims["exp"], claims["nbf"], claims["iat"]
        sub, scopes, gen = claims["sub"], claims["scope"], claims["gen"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, nbf, iat, gen)):
            raise InvalidTokenError("the token's times are not numbers")
        if not isinstance(sub, str) or not isinstance(scopes, str):
            raise InvalidTokenError("the token's subject or scope is not a string")
        if exp <= now - leeway:
            raise InvalidTokenError("the token has expired")
        if nbf > now + leeway or iat > now + leeway:
            raise InvalidTokenError("the token is not valid yet")
        client = self._registry.get(sub)
        if client is None or not client.active:
            raise InvalidTokenError("the token's client is not active")
        if gen != client.generation:
            raise InvalidTokenError("the token was issued before the client's secret was rotated")
        granted = frozenset(scopes.split())
        if scope not in granted or scope not in client.scopes:
            raise InsufficientScopeError(scope)
        return Principal(client_id=sub, scopes=granted & client.scopes)


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is for another audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token is from another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the {exc.claim} claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the token is not signed with EdDSA"
    return "the token is malformed"
