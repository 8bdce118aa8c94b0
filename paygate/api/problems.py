"""Every refusal of the HTTP API as an RFC 9457 problem, mapped from the one exception tree.

Invariant: whatever goes wrong, the caller gets ``application/problem+json`` with a stable
``code`` (the exception's ``code``), a ``title`` that is the same for every occurrence of that
code, the HTTP ``status``, a ``detail``, the ``field`` at fault where one is known and the
``request_id`` that is also in the ``X-Request-Id`` header. A stack trace never reaches a
caller: an unexpected exception is logged server-side under the request id and answered with a
generic 500, and the detail of a 5xx never repeats the internal message (it may name a
database host or a driver's error).

The errors raised by the HTTP layer itself sit in the same tree::

    PaygateError
    ├── InvalidInputError
    │   ├── IdempotencyKeyError        Idempotency-Key missing, malformed or not the txn id
    │   ├── RequestValidationProblem   a path parameter or header not in its form
    │   ├── ParseError
    │   │   └── MalformedFileError     an imported CSV file with lines that are not records
    │   └── UnsupportedMediaTypeError  a body that is not of the route's media type (415)
    ├── NotFoundError
    │   ├── UnknownChannelError        no notify endpoint for that channel here
    │   └── RouteNotFoundError         no such route
    ├── AuthenticationError
    │   └── DeviceMismatchError        a device acting for another device's path
    └── MethodNotAllowedError          the route exists, the method does not
"""

from __future__ import annotations

import inspect
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
import sqlalchemy.exc
from pydantic import BaseModel, ConfigDict, Field

from paygate.channels.base import refusal_status
from paygate.channels.errors import DeviceChannelMismatchError, DeviceRevokedError
from paygate.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    ParseError,
    PaygateError,
    StoreError,
)
from paygate.service_clients import InsufficientScopeError
from paygate.vouchers import RedemptionThrottledError, WrongPinError

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "DeviceMismatchError",
    "IdempotencyKeyError",
    "MalformedFileError",
    "MalformedLine",
    "MethodNotAllowedError",
    "Problem",
    "RequestValidationProblem",
    "RouteNotFoundError",
    "UnknownChannelError",
    "UnsupportedMediaTypeError",
    "database_unavailable",
    "internal_error",
    "problem_for",
    "status_for",
]

_log = logging.getLogger("paygate.api")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


class IdempotencyKeyError(InvalidInputError):
    """The Idempotency-Key header is missing, malformed, or not the payment's transaction id."""

    code = "idempotency_key_invalid"


class RequestValidationProblem(InvalidInputError):
    """A path parameter or header is not in the form the route documents."""

    code = "invalid_input"


class UnsupportedMediaTypeError(InvalidInputError):
    """The body is not of the media type the route reads."""

    code = "unsupported_media_type"


class MalformedFileError(ParseError):
    """The file has lines that are not records; nothing of it was written."""

    code = "malformed_file"

    def __init__(self, first: ParseError, errors: list[ParseError], total: int) -> None:
        more = f" ({total} malformed lines, the first {len(errors)} listed)" if total > 1 else ""
        super().__init__(f"{first.message}{more}", line=first.line, field=first.field)
        self.errors = errors
        self.total = total


class UnknownChannelError(NotFoundError):
    """No channel with a notify endpoint is configured under that name."""

    code = "unknown_channel"


class RouteNotFoundError(NotFoundError):
    """No route answers at this path."""

    code = "not_found"


class DeviceMismatchError(AuthenticationError):
    """A device signed a request on a path that names another device."""

    code = "device_mismatch"


class MethodNotAllowedError(PaygateError):
    """The route exists but does not take this HTTP method."""

    code = "method_not_allowed"


class MalformedLine(BaseModel):
    """One line of a refused file that is not a record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: int | None = Field(description="the line of the file, from 1")
    field: str | None = Field(description="the column at fault, where one is")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, in a form a program can act on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="urn:paygate:problem:<code>; one per code")
    title: str = Field(description="the same for every problem with this code")
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(description="stable, machine-readable; the exception's code")
    field: str | None = Field(default=None, description="the part of the request at fault")
    request_id: str = Field(description="also in the X-Request-Id header; quote it to operators")
    instance: str | None = Field(default=None, description="the request path")
    attempts_left: int | None = Field(
        default=None, description="wrong_pin: attempts before the card locks"
    )
    retry_at: datetime | None = Field(
        default=None, description="redemption_throttled: when to try again (UTC)"
    )
    line: int | None = Field(
        default=None, description="parse_error in a file: the first line at fault, from 1"
    )
    errors: list[MalformedLine] | None = Field(
        default=None, description="parse_error in a file: its malformed lines (the first 100)"
    )


# Statuses the refusal_status of the channel layer does not decide: who the caller is, not
# whether the signature verified (403); a card refusing its PIN on an authenticated request
# (403, so that a client never takes it for its own signature failing); throttling (429).
_FORBIDDEN: Final = (
    DeviceRevokedError,
    DeviceChannelMismatchError,
    DeviceMismatchError,
    InsufficientScopeError,
)


def status_for(exc: PaygateError) -> int:
    """The HTTP status of a refusal."""
    if isinstance(exc, (*_FORBIDDEN, WrongPinError)):
        return 403
    if isinstance(exc, RedemptionThrottledError):
        return 429
    if isinstance(exc, MethodNotAllowedError):
        return 405
    if isinstance(exc, UnsupportedMediaTypeError):
        return 415
    return refusal_status(exc)


def _title(exc: PaygateError) -> str:
    # The class docstring's first line: stable per code, written for people.
    doc = inspect.getdoc(type(exc)) or ""
    first = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    return first.rstrip(".") or exc.code.replace("_", " ").capitalize()


_GENERIC_DETAIL: Final = {
    503: "the service cannot complete this request now; retry later",
    500: "an internal error occurred; quote the request id to the operator",
}


def problem_for(
    exc: PaygateError,
    *,
    request_id: str,
    instance: str | None = None,
    log: bool = True,
    now: datetime | None = None,
) -> tuple[Problem, dict[str, str]]:
    """The problem answering ``exc``, and any headers it needs (Retry-After, WWW-Authenticate).

    A 5xx is logged with its message (which the problem does not repeat) unless ``log`` is
    false: the OpenAPI document's examples are built here too, and are nobody's failure.
    ``now`` is the instant by the Gateway's clock, which set any ``retry_at``: a Retry-After
    counts from it (default: the machine's clock).
    """
    status = status_for(exc)
    headers: dict[str, str] = {}
    # The message alone: the field has its own member, and a request has no file line.
    message = getattr(exc, "message", None)
    detail = message if isinstance(message, str) and message else str(exc)
    if status >= 500:
        # The message may name a host or repeat a driver's error: it stays in the log.
        if log:
            _log.warning("request %s: %s: %r", request_id, exc.code, str(exc))
        detail = _GENERIC_DETAIL.get(status, _GENERIC_DETAIL[503])
        if status == 503:
            headers["Retry-After"] = "5"
    # A bearer route's refusal names its own challenge (RFC 6750 §3), also on a 403.
    challenge = getattr(exc, "challenge", None)
    if isinstance(challenge, str):
        headers["WWW-Authenticate"] = challenge
    elif status == 401:
        headers["WWW-Authenticate"] = 'Signature realm="paygate"'
    if status == 413:
        # The rest of the body is not wanted: closing spares the server reading it to reuse
        # the connection.
        headers["Connection"] = "close"
    extras: dict[str, Any] = {}
    if isinstance(exc, WrongPinError):
        extras["attempts_left"] = exc.attempts_left
    if isinstance(exc, RedemptionThrottledError):
        retry_at = exc.retry_at.astimezone(UTC)
        extras["retry_at"] = retry_at
        since = datetime.now(UTC) if now is None else now
        wait = max(1, int((retry_at - since).total_seconds()) + 1)
        headers["Retry-After"] = str(wait)
    if isinstance(exc, ParseError) and exc.line is not None:
        extras["line"] = exc.line
    if isinstance(exc, MalformedFileError):
        extras["errors"] = [
            MalformedLine(line=e.line, field=e.field, detail=e.message) for e in exc.errors
        ]
    problem = Problem(
        type=f"urn:paygate:problem:{exc.code}",
        title=_title(exc),
        status=status,
        detail=detail,
        code=exc.code,
        field=exc.field,
        request_id=request_id,
        instance=instance,
        **extras,
    )
    return problem, headers


def internal_error(request_id: str, instance: str | None = None) -> Problem:
    """The answer to an exception nobody expected; its trace is in the server's log only."""
    return Problem(
        type="urn:paygate:problem:internal_error",
        title="Internal error",
        status=500,
        detail=_GENERIC_DETAIL[500],
        code="internal_error",
        request_id=request_id,
        instance=instance,
    )


def database_unavailable(exc: BaseException) -> StoreError | None:
    """A StoreError for a driver or pool failure that means "the database is not there now".

    Such failures surface from the drivers as their own exceptions, outside paygate's tree;
    answered 503, a client retries instead of giving up on a 500.
    """
    if isinstance(
        exc,
        psycopg.OperationalError
        | sqlite3.OperationalError
        | sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.TimeoutError,
    ):
        return StoreError(f"database unavailable: {type(exc).__name__}")
    return None
