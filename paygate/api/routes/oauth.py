"""``POST /v1/oauth/token``: a service client's credentials for a short-lived bearer token.

OAuth 2.0 client credentials (RFC 6749 §4.4): the body is ``application/x-www-form-urlencoded``
with ``grant_type=client_credentials`` and an optional ``scope``; the client authenticates with
HTTP Basic or with ``client_id`` and ``client_secret`` in the body, never both. The answer, and
every refusal, is in the form RFC 6749 §5 prescribes (``{"error": …}``, which OAuth client
libraries read), not a problem: ``invalid_client`` is 401 with a Basic challenge, the others
400. Neither the secret nor the token is logged.

Guessing is bounded (:mod:`paygate.token_attempts`): a client id, or a source address (the
peer, or what a trusted proxy forwarded: ``paygate serve --forwarded-allow-ips``), with too
many failed authentications in the window is answered 429, ``temporarily_unavailable``, with
``Retry-After``, before its secret is looked at.
"""

from __future__ import annotations

import json
import math
from typing import Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api.bearer import basic_credentials, tokens_of
from paygate.api.deps import RuntimeDep, read_body
from paygate.errors import InvalidInputError
from paygate.service_clients import REALM, InvalidClientError
from paygate.token_attempts import TokenThrottledError
from paygate.tokens import AccessToken, InvalidScopeError

__all__ = ["TOKEN_PATH", "router"]

router = APIRouter()

TOKEN_PATH: Final = "/v1/oauth/token"  # noqa: S105 - a path, not a secret
_MAX_BODY: Final = 4096
_FORM: Final = "application/x-www-form-urlencoded"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _OAuthError(Exception):
    def __init__(
        self, error: str, description: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.retry_after = retry_after

    def response(self) -> Response:
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        body = {"error": self.error, "error_description": self.description}
        return Response(
            json.dumps(body).encode("utf-8"),
            status_code=self.status,
            media_type="application/json",
            headers=headers,
        )


def _form(content_type: str | None, body: bytes) -> dict[str, str]:
    if (content_type or "").split(";")[0].strip().lower() != _FORM:
        raise _OAuthError("invalid_request", f"the body must be {_FORM}")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise _OAuthError("invalid_request", "the body is not a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _OAuthError("invalid_request", f"{name} is given more than once")
        form[name] = value
    return form


def _credentials(authorization: list[str], form: dict[str, str]) -> tuple[str, str]:
    in_body = "client_id" in form or "client_secret" in form
    if len(authorization) > 1:
        raise _OAuthError("invalid_request", "the Authorization header is given more than once")
    basic = None
    if authorization:
        try:
            basic = basic_credentials(authorization[0])
        except InvalidInputError as exc:
            raise _OAuthError("invalid_request", str(exc.message)) from None
    if basic is not None and in_body:
        raise _OAuthError("invalid_request", "authenticate with Basic or with the body, not both")
    if basic is not None:
        return basic
    if "client_id" not in form or "client_secret" not in form:
        raise _OAuthError("invalid_client", "client authentication is required", 401)
    return form["client_id"], form["client_secret"]


@router.post(TOKEN_PATH, operation_id="issueToken", tags=["service clients"])
async def issue_token(request: Request, runtime: RuntimeDep) -> Response:
    """A bearer token for a registered service client (OAuth 2.0 client credentials)."""
    tokens = tokens_of(runtime)
    body = await read_body(request, _MAX_BODY)
    content_type = request.headers.get("content-type")
    authorization = request.headers.getlist("authorization")
    source = request.client.host if request.client is not None else None
    clock = runtime.gateway.clock

    def work() -> AccessToken:
        form = _form(content_type, body)
        client_id, secret = _credentials(authorization, form)
        grant = form.get("grant_type")
        if not grant:
            raise _OAuthError("invalid_request", "grant_type is required")
        if grant != "client_credentials":
            raise _OAuthError("unsupported_grant_type", "only client_credentials is granted")
        try:
            return tokens.issue(client_id, secret, form.get("scope"), source=source)
        except TokenThrottledError as exc:
            wait = math.ceil((exc.retry_at - clock.now()).total_seconds())
            raise _OAuthError(
                "temporarily_unavailable", str(exc.message), 429, retry_after=max(1, wait)
            ) from None
        except InvalidClientError as exc:
            raise _OAuthError("invalid_client", str(exc.message), 401) from None
        except InvalidScopeError as exc:
            raise _OAuthError("invalid_scope", str(exc.message)) from None

    try:
        issued = await runtime.run(work)
    except _OAuthError as refusal:
        return refusal.response()
    answer = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }
    return Response(
        json.dumps(answer).encode("utf-8"), media_type="application/json", headers=_NO_STORE
    )
