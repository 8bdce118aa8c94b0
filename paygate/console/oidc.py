"""Sign-in through the utility's identity provider (OpenID Connect), beside local passwords.

Invariants:

* **Authorization code flow with PKCE, each request used once.** Every sign-in begins with a
  fresh ``state``, ``nonce`` and PKCE verifier (S256), kept in ``console_oidc_flows`` under
  the SHA-256 of a random cookie bound to the browser that began it (never the cookie). The
  callback *takes* the flow (deletes it) before it looks at anything else: a callback replayed,
  forged, from another browser, with another ``state``, or later than :data:`FLOW_LIFETIME`
  finds none and is refused.
* **Nothing of the id_token is believed before it is verified**: its signature by a key of the
  provider's JWKS under one of the configured (asymmetric) algorithms, its ``iss`` (the
  configured issuer), ``aud`` (the client id; ``azp`` too when there are several audiences),
  ``exp`` and ``iat`` (with the configured leeway), and its ``nonce`` (the flow's). joserfc
  does the cryptography; this module only says what must hold.
* **The provider vouches for a person, the console decides the role.** The configured claim
  names the staff member; only an active staff member linked to that value signs in
  (:meth:`~paygate.console.staff.StaffRegistry.sign_in_identity`), with their local role.
* **The client secret is never shown**: a :class:`~pydantic.SecretStr` from the variable the
  configuration names, sent only to the token endpoint; errors name the step, never a secret,
  a code or a token.

authlib (PKCE) and joserfc (JOSE) are the ``oidc`` extra: ``pip install 'paygate[oidc]'``.
A console configured for a provider without them is refused when it is built
(:func:`require_extra`), naming the extra.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import SecretStr

from paygate.clock import Clock
from paygate.console.staff import check_identity
from paygate.errors import AuthenticationError, ConfigurationError, InvalidInputError
from paygate.store.engine import Store, Tx

__all__ = [
    "FLOW_LIFETIME",
    "Flow",
    "OidcClient",
    "OidcFlows",
    "OidcRefusedError",
    "OidcSettings",
    "ProviderMetadata",
    "require_extra",
]

FLOW_LIFETIME: Final = timedelta(minutes=10)
"""How long a sign-in through the provider may take, from the button to the callback."""

CACHE_SECONDS: Final = 3600.0
"""How long the provider's discovery document and keys are kept before they are read again."""

KEY_REFRESH_SECONDS: Final = 60.0
"""The least time between two readings of the keys when a token names a key not yet known
(the provider rotated its keys): a stream of forged ``kid`` values cannot make us hammer it."""

EXTRA: Final = "oidc"


class OidcRefusedError(AuthenticationError):
    """A sign-in through the identity provider refused; ``reason`` says which kind of refusal
    (the page's words), the message the particulars (the audit trail's)."""

    code = "oidc_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def require_extra() -> None:
    """Refuse, naming the extra, when authlib or joserfc is not installed."""
    try:
        import authlib.oauth2.rfc7636  # noqa: F401 - the extra's presence is the question
        import joserfc.jwt  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"console.oidc: sign-in through an identity provider needs the '{EXTRA}' extra "
            f"(pip install 'paygate[{EXTRA}]'): {exc.name or 'authlib'} is not installed"
        ) from None


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """The identity provider the console signs staff in through (``[console.oidc]``)."""

    provider_name: str
    issuer: str
    client_id: str
    redirect_url: str
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    staff_claim: str = "email"
    algorithms: tuple[str, ...] = ("RS256",)
    timeout: float = 10.0
    leeway: float = 60.0

    def __repr__(self) -> str:
        return (
            f"OidcSettings(provider_name={self.provider_name!r}, issuer={self.issuer!r}, "
            f"client_id={self.client_id!r}, staff_claim={self.staff_claim!r})"
        )


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the console uses of the provider's discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flow:
    """One authorization request under way: what its callback must match."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class OidcFlows:
    """The authorization requests under way, in ``store``'s database, each taken once."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def begin(self, next_path: str) -> tuple[str, Flow]:
        """A new flow: the browser's binding token (for its cookie) and the flow."""
        binding = secrets.token_urlsafe(32)
        flow = Flow(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters (RFC 7636: 43 to 128)
            next_path=next_path[:200],
        )
        now = self._clock.now()

        def work(tx: Tx) -> None:
            # Flows never finished (the staff member closed the tab) are not kept.
            tx.execute(
                "DELETE FROM console_oidc_flows WHERE created_at < :old",
                {"old": tx.ts(now - FLOW_LIFETIME)},
            )
            tx.execute(
                "INSERT INTO console_oidc_flows (binding_hash, state, nonce, code_verifier, "
                "next_path, created_at) VALUES (:b, :s, :n, :v, :p, :now)",
                {
                    "b": _hash(binding),
                    "s": flow.state,
                    "n": flow.nonce,
                    "v": flow.code_verifier,
                    "p": flow.next_path,
                    "now": tx.ts(now),
                },
            )

        self._store.run(work)
        return binding, flow

    def take(self, binding: str | None, state: str | None) -> Flow:
        """The flow of this browser's ``binding`` token, removed (it is used once), if its
        ``state`` is the callback's and it is not older than :data:`FLOW_LIFETIME`."""
        if not binding or len(binding) > 128:
            raise OidcRefusedError("flow", "no sign-in under way in this browser")
        now = self._clock.now()
        key = _hash(binding)

        def work(tx: Tx) -> tuple[Any, ...] | None:
            row = tx.one(
                "SELECT state, nonce, code_verifier, next_path, created_at "
                "FROM console_oidc_flows WHERE binding_hash = :b",
                {"b": key},
            )
            if row is None:
                return None
            taken = tx.execute("DELETE FROM console_oidc_flows WHERE binding_hash = :b", {"b": key})
            return row if taken.rowcount else None  # a concurrent callback took it first

        row = self._store.run(work)
        if row is None:
            raise OidcRefusedError("flow", "no sign-in under way in this browser (used or ended)")
        if now - Tx.read_ts(row[4]) > FLOW_LIFETIME:
            raise OidcRefusedError("flow", "the sign-in took too long")
        if not state or not hmac.compare_digest(state.encode("utf-8"), str(row[0]).encode()):
            raise OidcRefusedError("flow", "the callback's state is not the request's")
        return Flow(str(row[0]), str(row[1]), str(row[2]), str(row[3]))


class OidcClient:
    """The console's side of the provider: discovery, keys, the authorization URL, the code
    exchange and the id_token's verification. Blocking (httpx); one per worker, shared by its
    threads."""

    def __init__(self, settings: OidcSettings, clock: Clock) -> None:
        require_extra()
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, Any] | None = None

    def _http(self) -> httpx.Client:
        # One client per call: sign-ins are rare, and nothing is left open between them.
        return httpx.Client(timeout=self.settings.timeout, follow_redirects=False)

    # -- the provider's documents ----------------------------------------------------------

    def _get_json(self, url: str, what: str) -> Mapping[str, Any]:
        try:
            with self._http() as http:
                answer = http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcRefusedError(
                "unreachable", f"{what}: the provider cannot be reached ({type(exc).__name__})"
            ) from None
        return _json_object(answer, what)

    def metadata(self) -> ProviderMetadata:
        """The provider's endpoints, from its discovery document (kept :data:`CACHE_SECONDS`)."""
        with self._lock:
            held = self._metadata
        if held is not None and time.monotonic() - held[0] < CACHE_SECONDS:
            return held[1]
        issuer = self.settings.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url, "discovery")
        # OpenID Connect Discovery 1.0, 4.3: the document's issuer is exactly the one asked.
        if document.get("issuer") != issuer:
            raise OidcRefusedError("provider", "discovery: the document names another issuer")
        fields = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not _secure_url(value):
                raise OidcRefusedError("provider", f"discovery: {name} is not an https URL")
            fields[name] = value
        methods = document.get("token_endpoint_auth_methods_supported")
        found = ProviderMetadata(
            authorization_endpoint=fields["authorization_endpoint"],
            token_endpoint=fields["token_endpoint"],
            jwks_uri=fields["jwks_uri"],
            token_auth_methods=tuple(m for m in methods if isinstance(m, str))
            if isinstance(methods, list)
            else ("client_secret_basic",),
        )
        with self._lock:
            self._metadata = (time.monotonic(), found)
        return found

    def _key_set(self, *, refresh: bool) -> Any:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        with self._lock:
            held = self._keys
        now = time.monotonic()
        if held is not None:
            age = now - held[0]
            if age < CACHE_SECONDS and not (refresh and age >= KEY_REFRESH_SECONDS):
                return held[1]
        document = self._get_json(self.metadata().jwks_uri, "keys")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise OidcRefusedError("provider", "keys: the JWKS cannot be read") from None
        with self._lock:
            self._keys = (now, keys)
        return keys

    # -- the flow --------------------------------------------------------------------------

    def authorization_url(self, flow: Flow) -> str:
        """Where the browser goes to sign in: the request of ``flow``, with its PKCE challenge."""
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        endpoint = self.metadata().authorization_endpoint
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_url,
                "scope": " ".join(self.settings.scopes),
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": create_s256_code_challenge(flow.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{query}"

    def exchange(self, code: str, flow: Flow) -> str:
        """The id_token the token endpoint gives for ``code`` (with the flow's verifier)."""
        meta = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_url,
            "code_verifier": flow.code_verifier,
            "client_id": self.settings.client_id,
        }
        auth: httpx.BasicAuth | None = None
        secret = self.settings.client_secret
        if secret is not None:
            if "client_secret_basic" in meta.token_auth_methods:
                auth = httpx.BasicAuth(self.settings.client_id, secret.get_secret_value())
            elif "client_secret_post" in meta.token_auth_methods:
                form["client_secret"] = secret.get_secret_value()
            else:
                raise OidcRefusedError(
                    "provider", "token: the provider takes neither client_secret_basic nor _post"
                )
        try:
            with self._http() as http:
                answer = http.post(
                    meta.token_endpoint,
                    data=form,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                    headers={"Accept": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise OidcRefusedError(
                "unreachable", f"token: the provider cannot be reached ({type(exc).__name__})"
            ) from None
        if answer.status_code != 200:
            error = _error_code(answer)
            raise OidcRefusedError("provider", f"token: refused by the provider ({error})")
        body = _json_object(answer, "token")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefusedError("provider", "token: the answer has no id_token")
        return id_token

    def verify(self, id_token: str, flow: Flow) -> dict[str, Any]:
        """The id_token's claims, once its signature, issuer, audience, times and nonce hold."""
        from joserfc import jwt
        from joserfc.errors import (
            BadSignatureError,
            ClaimError,
            ExpiredTokenError,
            InvalidKeyIdError,
            JoseError,
        )

        settings = self.settings
        decoded = None
        for refresh in (False, True):  # once more with fresh keys: the provider rotated them
            keys = self._key_set(refresh=refresh)
            try:
                decoded = jwt.decode(id_token, keys, algorithms=list(settings.algorithms))
                break
            except BadSignatureError:
                raise OidcRefusedError("token", "id_token: the signature is not valid") from None
            except InvalidKeyIdError:
                if refresh:
                    raise OidcRefusedError(
                        "token", "id_token: signed with a key the provider does not publish"
                    ) from None
            except (JoseError, ValueError) as exc:
                raise OidcRefusedError("token", f"id_token: not accepted ({_words(exc)})") from None
        assert decoded is not None
        claims: dict[str, Any] = dict(decoded.claims)
        now = int(self._clock.now().timestamp())
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=int(settings.leeway),
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": flow.nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise OidcRefusedError("token", "id_token: expired") from None
        except (ClaimError, JoseError) as exc:
            raise OidcRefusedError("token", f"id_token: {_words(exc)}") from None
        iat = claims["iat"]
        if not isinstance(iat, int | float) or iat > now + settings.leeway:
            raise OidcRefusedError("token", "id_token: issued in the future")
        audience = claims["aud"]
        # OpenID Connect Core 3.1.3.7: several audiences, then azp is this client.
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and claims.get("azp") != (settings.client_id)
        ):
            raise OidcRefusedError("token", "id_token: azp is not this client")
        return claims

    def identity(self, claims: Mapping[str, Any]) -> str:
        """The staff member's name in the provider's claims (the configured claim)."""
        name = self.settings.staff_claim
        value = claims.get(name)
        if not isinstance(value, str) or not value.strip():
            raise OidcRefusedError("token", f"id_token: no {name} claim names the staff member")
        if name == "email" and claims.get("email_verified") is False:
            raise OidcRefusedError("token", "id_token: the e-mail address is not verified")
        try:
            return check_identity(value)
        except InvalidInputError:
            raise OidcRefusedError("token", f"id_token: the {name} claim is not a name") from None

    def sign_in(self, code: str, flow: Flow) -> tuple[str, dict[str, Any]]:
        """The identity and claims the provider vouches for, from the callback's ``code``."""
        claims = self.verify(self.exchange(code, flow), flow)
        return self.identity(claims), claims


def _words(exc: Exception) -> str:
    # joserfc's description names the claim or the algorithm, never a value of the token.
    description = getattr(exc, "description", None)
    return str(description) if description else type(exc).__name__


def _secure_url(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")
    )


def _json_object(answer: httpx.Response, what: str) -> Mapping[str, Any]:
    if answer.status_code != 200:
        raise OidcRefusedError("provider", f"{what}: the provider answered {answer.status_code}")
    try:
        body = answer.json()
    except ValueError:
        raise OidcRefusedError("provider", f"{what}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise OidcRefusedError("provider", f"{what}: the answer is not a JSON object")
    return body


def _error_code(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and error.replace("_", "").isalnum() and len(error) <= 64:
        return error
    return f"HTTP {answer.status_code}"
