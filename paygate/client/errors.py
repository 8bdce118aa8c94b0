"""What the client raises: the gateway's problem answers, and no answer at all.

Invariant: every error carries what a program acts on — ``status`` (None when no answer came),
``code`` (the problem's stable code), ``title``, ``detail``, ``field`` and ``request_id`` (quote
it to an operator) — and its class is chosen from the code first, the status second, so that a
firmware can ``except DeviceRevokedError`` without parsing text. Transport failures are
translated at the boundary (``raise … from exc``), and so is an argument the client cannot
send (an account number no URL path can carry, a naive ``paid_at``, an unknown method): a
client method raises nothing of paygate's outside this tree (a ``TypeError`` for an argument
of the wrong type aside). The tree sits under the one root of :mod:`paygate.errors`::

    PaygateError
    └── PaygateClientError               an answer (or none) the client could not turn into a result
        ├── GatewayUnreachableError      no answer: refused, reset, timed out, undecodable (None)
        ├── InvalidRequestError          400, 405, 413, 415, 422: never succeeds as sent
        │   └── InvalidArgumentError     refused by the client itself, nothing sent (status None)
        ├── AuthenticationFailedError    401: the signature, device or clock did not verify
        │   └── ClockSkewError           stale_timestamp: the device's clock is off
        ├── PermissionDeniedError        403: authenticated, not allowed
        │   └── DeviceRevokedError       device_revoked: this key is refused for good
        ├── NotFoundError                404
        │   └── UnknownAccountError      unknown_account
        ├── ConflictError                409
        │   └── IdempotencyConflictError idempotency_conflict: same key, other content
        ├── RateLimitedError             429
        └── ServerError                  5xx
            └── ServiceUnavailableError  502, 503, 504: try again later
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

from paygate.channels.wire import parse_json_object
from paygate.errors import InvalidInputError, ParseError, PaygateError

__all__ = [
    "AuthenticationFailedError",
    "ClockSkewError",
    "ConflictError",
    "DeviceRevokedError",
    "GatewayUnreachableError",
    "IdempotencyConflictError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "NotFoundError",
    "PaygateClientError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
    "UnknownAccountError",
    "error_from_response",
]


class PaygateClientError(PaygateError):
    """The gateway refused the request, or did not answer it."""

    def __init__(
        self,
        status: int | None,
        code: str,
        title: str,
        detail: str,
        field: str | None = None,
        request_id: str | None = None,
        *,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or title, field=field)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.problem: Mapping[str, Any] = dict(problem or {})
        """The whole problem document, with any extension members (``attempts_left`` …)."""
        self.retry_after = retry_after
        """Seconds the gateway asked to wait (``Retry-After``), when it said."""

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        status = "no answer" if self.status is None else str(self.status)
        request = f" (request {self.request_id})" if self.request_id else ""
        return f"{status} {self.code}{where}: {self.detail or self.title}{request}"


class GatewayUnreachableError(PaygateClientError):
    """No answer came: the connection was refused or reset, or it timed out (or the answer
    could not be decoded)."""


class InvalidRequestError(PaygateClientError):
    """The request can never succeed as sent (400, 405, 413, 415, 422)."""


class InvalidArgumentError(InvalidRequestError, InvalidInputError):
    """An argument the client refuses before sending anything (status None); ``field`` names it.

    Also an :class:`~paygate.errors.InvalidInputError`, which is what it is to the library.
    """

    @classmethod
    def of(cls, detail: str, field: str | None = None) -> InvalidArgumentError:
        """The refusal of argument ``field`` for the reason ``detail``."""
        return cls(None, "invalid_argument", "Invalid argument", detail, field)


class AuthenticationFailedError(PaygateClientError):
    """The signature, the device or its clock did not verify (401)."""


class ClockSkewError(AuthenticationFailedError):
    """The device's clock is too far from the gateway's (stale_timestamp): set it right."""


class PermissionDeniedError(PaygateClientError):
    """The device is known but may not do this (403)."""


class DeviceRevokedError(PermissionDeniedError):
    """The device is revoked: every request with this key is refused from now on."""


class NotFoundError(PaygateClientError):
    """Something the request names does not exist (404)."""


class UnknownAccountError(NotFoundError):
    """No customer account with that number."""


class ConflictError(PaygateClientError):
    """The request contradicts what the gateway recorded (409); nothing changed."""


class IdempotencyConflictError(ConflictError):
    """The idempotency key was used before with other content."""


class RateLimitedError(PaygateClientError):
    """Too many attempts (429); wait ``retry_after`` seconds."""


class ServerError(PaygateClientError):
    """The gateway failed (5xx)."""


class ServiceUnavailableError(ServerError):
    """The gateway or its database is not available now (502, 503, 504); retry later."""


_BY_CODE: Final[Mapping[str, type[PaygateClientError]]] = {
    "stale_timestamp": ClockSkewError,
    "device_revoked": DeviceRevokedError,
    "unknown_account": UnknownAccountError,
    "idempotency_conflict": IdempotencyConflictError,
}


def _by_status(status: int) -> type[PaygateClientError]:
    if status == 401:
        return AuthenticationFailedError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitedError
    if status in (502, 503, 504):
        return ServiceUnavailableError
    if status >= 500:
        return ServerError
    return InvalidRequestError


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    if value.isascii() and value.isdigit():
        return float(value)
    return None


def error_from_response(response: httpx.Response) -> PaygateClientError:
    """The error an unsuccessful answer stands for: its problem document when it has one."""
    status = response.status_code
    problem: dict[str, Any] = {}
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in ("application/problem+json", "application/json"):
        # Read strictly (no key twice, bounded nesting): an unreadable problem is answered
        # from the status alone, never with an exception of the parser's own.
        try:
            problem = parse_json_object(response.content, source="the gateway's problem")
        except ParseError:
            problem = {}

    def text(name: str) -> str | None:
        value = problem.get(name)
        return value if isinstance(value, str) else None

    code = text("code") or f"http_{status}"
    title = text("title") or response.reason_phrase or f"HTTP {status}"
    detail = text("detail") or title
    request_id = text("request_id") or response.headers.get("x-request-id")
    cls = _BY_CODE.get(code) or _by_status(status)
    return cls(
        status,
        code,
        title,
        detail,
        text("field"),
        request_id,
        problem=problem,
        retry_after=_retry_after(response),
    )
