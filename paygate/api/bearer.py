"""Bearer authentication of the service-client routes (RFC 6750), and the token endpoint's forms.

Invariants:

* **Who, before what.** A route's dependency verifies the bearer token (signature, times,
  audience, issuer, the client still active in the registry, the scope) before the route reads
  a single parameter, so a caller without a valid token learns nothing but 401.
* **RFC 6750's distinctions.** No token: 401 with a bare ``Bearer`` challenge; a header that
  is not one token in the bearer syntax: 400, ``error="invalid_request"``; a token that is
  not valid (forged, signed with another key, expired, not yet valid, its client revoked or
  rotated since): 401, ``error="invalid_token"``; a valid token without the route's scope:
  403, ``error="insufficient_scope"``. The answers are problems like every other refusal.
* **Credentials are never echoed.** Neither a token nor a client secret appears in any answer
  or log line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final
from urllib.parse import unquote_plus

from fastapi import Request

from paygate.api.deps import Runtime, RuntimeDep
from paygate.api.problems import RequestValidationProblem
from paygate.service_clients import MalformedAuthorizationError, MissingTokenError
from paygate.tokens import Principal, TokenService

__all__ = ["basic_credentials", "bearer_token", "query_values", "scoped", "tokens_of"]

_TOKEN: Final = re.compile(r"^[A-Za-z0-9._~+/-]+=*\Z")
_MAX_TOKEN: Final = 4096


def bearer_token(authorization: list[str]) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if not authorization:
        raise MissingTokenError("this route needs a bearer token (POST /v1/oauth/token)")
    if len(authorization) > 1:
        raise MalformedAuthorizationError(
            "the Authorization header is given more than once", field="Authorization"
        )
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingTokenError("this route needs a bearer token (POST /v1/oauth/token)")
    token = token.strip()
    if not token or len(token) > _MAX_TOKEN or not _TOKEN.match(token):
        raise MalformedAuthorizationError(
            "the bearer token is not in the form RFC 6750 gives", field="Authorization"
        )
    return token


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(client id, secret) of an HTTP Basic header (RFC 6749 §2.3.1: each form-encoded);
    None for another scheme."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestValidationProblem(
            "the Basic credentials are not base64 of id:secret", field="Authorization"
        ) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise RequestValidationProblem(
            "the Basic credentials are not base64 of id:secret", field="Authorization"
        )
    return unquote_plus(client_id), unquote_plus(secret)


def tokens_of(runtime: Runtime) -> TokenService:
    """The worker's token service (the routes that need one are served only with it)."""
    tokens = runtime.tokens
    assert tokens is not None, "served only when token signing is configured"
    return tokens


def scoped(scope: str) -> Callable[[Request, Runtime], Awaitable[Principal]]:
    """A dependency: the principal of the request's bearer token, which must grant ``scope``."""

    async def principal(request: Request, runtime: RuntimeDep) -> Principal:
        tokens = tokens_of(runtime)
        token = bearer_token(request.headers.getlist("authorization"))
        return await runtime.run(lambda: tokens.verify(token, scope))

    return principal


def query_values(request: Request, *names: str) -> Mapping[str, str | None]:
    """The named query parameters (each at most once), read after authentication."""
    found: dict[str, str | None] = {}
    for name in names:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise RequestValidationProblem(f"{name} is given more than once", field=name)
        found[name] = values[0] if values else None
    return found
