"""The webhook head-end: supply commands to an AMI head-end (metering master station) over HTTP.

Invariant 5 ("reconnection is never forgotten") as this adapter keeps it:

* **One key per order.** Every attempt of one order is posted with the same ``Idempotency-Key``
  (:attr:`SupplyCommand.idempotency_key`), so a retry after a timeout or a server error, when
  the head-end may already have acted, never makes it act twice.
* **Every failure is classified, none is swallowed.** A server error, a timeout, a refused or
  dropped connection, 408, 425 and 429 raise :class:`HeadEndUnavailable` (the dispatcher tries
  again later); any other refusal raises :class:`HeadEndRejected` naming the status and an
  excerpt of the answer (a person acts). The adapter itself never retries: backoff is decided
  in one place, the dispatcher.
* **A completion is believed only when signed.** A callback counts only if its HMAC-SHA256
  signature verifies (compared in constant time) and its timestamp is within five minutes of
  now; anything else raises :class:`~paygate.errors.AuthenticationError` (a stale timestamp:
  :class:`~paygate.errors.ReplayError`) or, for a signed body that is not a callback,
  :class:`~paygate.errors.ParseError`. Nothing else escapes :func:`verify_callback`, whatever
  the body and headers.
* **Secrets stay secret.** The shared secrets are :class:`~pydantic.SecretBytes`; they never
  appear in a repr, an exception or a log record.

Wire format (docs/headends.md has the full description and a worked example):

* command: ``POST {url}`` with a JSON body (order_id, kind, action, account_no, meter_address,
  issued_at, deadline, attempt, and callback_url when configured) and the headers
  ``Idempotency-Key``, ``X-Paygate-Timestamp`` (unix seconds) and ``X-Paygate-Signature``
  (hex HMAC-SHA256 of ``timestamp + "." + body`` under the shared secret);
* answer: 2xx with an empty body or a *report* ``{"order_id", "outcome", "reference", "at",
  "detail"}``; 409 with a report means "already done, here is where it stands";
* callback: the head-end posts a report (``at`` required) signed the same way under the
  callback secret, in ``X-Headend-Timestamp`` and ``X-Headend-Signature``;
* polling: ``GET {url}/{order_id}`` signed over the empty body; 200 with a report, 404 when
  the head-end never saw the order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Final, Self

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
)

from paygate.channels.wire import parse_json_object
from paygate.clock import Clock, SystemClock, require_aware
from paygate.errors import AuthenticationError, ConfigurationError, ParseError, ReplayError
from paygate.headend.base import (
    CloseMode,
    HeadEnd,
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyAction,
    SupplyCommand,
)

__all__ = [
    "CALLBACK_SIGNATURE_HEADER",
    "CALLBACK_TIMESTAMP_HEADER",
    "CALLBACK_TOLERANCE",
    "IDEMPOTENCY_HEADER",
    "MAX_CALLBACK_BYTES",
    "MIN_SECRET_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "HeadEndCallback",
    "WebhookConfig",
    "WebhookHeadEnd",
    "command_body",
    "sign",
    "verify_callback",
]

_log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
TIMESTAMP_HEADER: Final = "X-Paygate-Timestamp"
SIGNATURE_HEADER: Final = "X-Paygate-Signature"
CALLBACK_TIMESTAMP_HEADER: Final = "X-Headend-Timestamp"
CALLBACK_SIGNATURE_HEADER: Final = "X-Headend-Signature"

CALLBACK_TOLERANCE: Final = timedelta(minutes=5)
"""How far a callback's timestamp may be from now, either way."""

MAX_CALLBACK_BYTES: Final = 64 * 1024
"""A callback body above this size is refused before anything else is done with it."""

MIN_SECRET_BYTES: Final = 16
"""A shared secret shorter than this is refused when the adapter is configured."""

# 4xx answers that mean "not now" rather than "never": a request timeout, "too early" and a
# rate limit. Treating them as final would leave a paid-up customer disconnected until a
# person noticed.
_RETRY_LATER: Final = frozenset({408, 425, 429})

_SOURCE: Final = "head-end callback"
_EXCERPT_CHARS: Final = 200
_TIMESTAMP = re.compile(r"[0-9]{1,11}")
_HEX_SIGNATURE = re.compile(r"[0-9A-Fa-f]{64}")


# ── signing ──────────────────────────────────────────────────────────────────────────────────


def sign(secret: bytes | SecretBytes, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``: how both sides sign."""
    key = secret.get_secret_value() if isinstance(secret, SecretBytes) else secret
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _utc_text(value: datetime, field: str) -> str:
    text = require_aware(value, field).astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def command_body(command: SupplyCommand, *, callback_url: str | None = None) -> bytes:
    """The JSON body posted for ``command``: compact UTF-8, fields in the documented order."""
    payload: dict[str, Any] = {
        "order_id": command.order_id,
        "kind": command.kind,
        "action": command.action.value,
        "account_no": command.account_no,
        "meter_address": command.meter_address,
        "issued_at": _utc_text(command.issued_at, "issued_at"),
        "deadline": _utc_text(command.deadline, "deadline"),
        "attempt": command.attempt,
    }
    if callback_url is not None:
        payload["callback_url"] = callback_url
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# ── what the head-end reports ────────────────────────────────────────────────────────────────


class _Report(BaseModel):
    """A head-end's report on one order: its answer to a command or a poll."""

    # Strict: neither "42" nor 42.0 is an order id. The format is paygate's own, so anything
    # not in it is refused by name rather than guessed at.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, hide_input_in_errors=True)

    order_id: int = Field(gt=0)
    outcome: HeadEndOutcome
    reference: str | None = Field(default=None, min_length=1, max_length=200)
    at: AwareDatetime | None = None
    detail: str = Field(default="", max_length=2000)

    def result(self) -> HeadEndResult:
        return HeadEndResult(
            outcome=self.outcome,
            detail=self.detail,
            reference=self.reference,
            at=None if self.at is None else self.at.astimezone(UTC),
        )


class _CallbackReport(_Report):
    """A report the head-end posts on its own: it must say when it happened."""

    at: AwareDatetime


class HeadEndCallback(BaseModel):
    """A verified completion report from the head-end. The core records it and deduplicates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: int
    outcome: HeadEndOutcome
    at: datetime
    reference: str | None = None
    detail: str = ""

    def result(self) -> HeadEndResult:
        """The same report as a :class:`HeadEndResult`, as ``send`` and ``poll`` return one."""
        return HeadEndResult(
            outcome=self.outcome, detail=self.detail, reference=self.reference, at=self.at
        )


def _validation_problem(exc: ValidationError) -> tuple[str, str | None]:
    """The first problem pydantic found, as (message, field path); the input is never echoed."""
    first = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return first["msg"], field


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased; a name given twice with different values is refused."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        key = name.lower()
        if key in found and found[key] != value:
            raise AuthenticationError("header given twice with different values", field=name)
        found[key] = value
    return found


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: bytes | SecretBytes,
    now: datetime,
) -> HeadEndCallback:
    """Check a callback's signature and timestamp, then read its body.

    Raises :class:`~paygate.errors.AuthenticationError` for a missing, malformed or wrong
    signature or timestamp, :class:`~paygate.errors.ReplayError` (a subclass) for a timestamp
    more than :data:`CALLBACK_TOLERANCE` away from ``now``, and
    :class:`~paygate.errors.ParseError` for a signed body that is not a callback (the field is
    named). The same bytes and headers always give the same result: deduplicating a callback
    delivered twice is the caller's business.
    """
    now = require_aware(now, "now")
    body = bytes(body)
    if len(body) > MAX_CALLBACK_BYTES:
        raise ParseError(
            f"body of {len(body)} bytes; at most {MAX_CALLBACK_BYTES} are read",
            source=_SOURCE,
            field="body",
        )
    found = _headers(headers)
    timestamp = found.get(CALLBACK_TIMESTAMP_HEADER.lower())
    signature = found.get(CALLBACK_SIGNATURE_HEADER.lower())
    if not signature:
        raise AuthenticationError("signature missing", field=CALLBACK_SIGNATURE_HEADER)
    if not timestamp:
        raise AuthenticationError("timestamp missing", field=CALLBACK_TIMESTAMP_HEADER)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthenticationError(
            "timestamp is not unix seconds (1-11 decimal digits)", field=CALLBACK_TIMESTAMP_HEADER
        )
    if not _HEX_SIGNATURE.fullmatch(signature):
        raise AuthenticationError(
            "signature is not 64 hex digits (HMAC-SHA256)", field=CALLBACK_SIGNATURE_HEADER
        )
    expected = bytes.fromhex(sign(secret, timestamp, body))
    if not hmac.compare_digest(expected, bytes.fromhex(signature)):
        raise AuthenticationError("signature does not verify", field=CALLBACK_SIGNATURE_HEADER)
    # Checked after the signature so that a forger learns nothing from the window, and on
    # whole seconds so that a huge timestamp cannot overflow a datetime.
    skew = int(timestamp) - now.timestamp()
    tolerance = CALLBACK_TOLERANCE.total_seconds()
    if abs(skew) > tolerance:
        raise ReplayError(
            f"timestamp {timestamp} is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} "
            f"now; at most {tolerance:.0f} s either way is accepted",
            field=CALLBACK_TIMESTAMP_HEADER,
        )
    try:
        report = _CallbackReport.model_validate_json(body)
    except ValidationError as exc:
        message, field = _validation_problem(exc)
        raise ParseError(message, source=_SOURCE, field=field) from None
    # Read strictly too: a key given twice would let two readers see different reports.
    parse_json_object(body, source=_SOURCE)
    return HeadEndCallback(
        order_id=report.order_id,
        outcome=report.outcome,
        at=_utc(report.at),
        reference=report.reference,
        detail=report.detail,
    )


def _utc(at: datetime) -> datetime:
    # 0001-01-01T07:59+08:00 is a valid aware datetime whose UTC value does not exist.
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ParseError("the time has no UTC equivalent", source=_SOURCE, field="at") from None


# ── configuration ────────────────────────────────────────────────────────────────────────────


def _check_secret(value: SecretBytes | None) -> SecretBytes | None:
    if value is not None and len(value.get_secret_value()) < MIN_SECRET_BYTES:
        # Say what is wanted, never what was given: it is a secret.
        raise ValueError(f"a shared secret has at least {MIN_SECRET_BYTES} bytes")
    return value


def _parse_url(value: str) -> httpx.URL:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("an http:// or https:// URL with a host is required")
    return url


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    url = _parse_url(value)
    if url.userinfo:
        # The URL shows in reprs and logs; credentials belong in the secret.
        raise ValueError("the URL may not carry a user name or password")
    if url.query or url.fragment:
        raise ValueError("the URL may not carry a query or fragment (the order id is appended)")
    return value


def _check_proxy(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        _parse_url(value.get_secret_value())
    return value


class WebhookConfig(BaseModel):
    """How to reach the head-end. Secrets are bytes; a ``str`` or ``SecretStr`` is taken as its
    UTF-8 bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(description="the command endpoint; a command's status is at {url}/{order_id}")
    secret: SecretBytes = Field(description="signs commands and polls")
    callback_secret: SecretBytes | None = Field(
        default=None, description="verifies callbacks; the command secret when not set"
    )
    callback_url: str | None = Field(
        default=None, description="sent in every command so the head-end knows where to report"
    )
    connect_timeout: float = Field(default=5.0, gt=0, le=60, description="seconds")
    read_timeout: float = Field(default=10.0, gt=0, le=300, description="seconds")
    ca_file: str | None = Field(default=None, description="PEM bundle of the head-end's CA")
    proxy: SecretStr | None = Field(
        default=None, description="HTTP proxy URL, which may hold credentials; not from the env"
    )
    close_mode: CloseMode = Field(
        default=SupplyAction.DIRECT_CLOSE,
        description="how the head-end's meters reconnect: direct_close, or close_permit (the "
        "customer presses the meter's button); sent as each reconnection command's action",
    )

    @field_validator("secret", "callback_secret", mode="before")
    @classmethod
    def _secret_text(cls, value: object) -> object:
        # A secret read from the environment arrives as a SecretStr; its UTF-8 bytes are meant.
        if isinstance(value, SecretStr):
            return value.get_secret_value().encode("utf-8")
        return value

    @field_validator("secret", "callback_secret")
    @classmethod
    def _secret_length(cls, value: SecretBytes | None) -> SecretBytes | None:
        return _check_secret(value)

    @field_validator("url", "callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_proxy(value)


def _validated(config: Mapping[str, Any]) -> WebhookConfig:
    if not isinstance(config, Mapping):
        raise ConfigurationError("head-end webhook: the configuration must be a mapping")
    try:
        return WebhookConfig.model_validate(dict(config))
    except ValidationError as exc:
        message, field = _validation_problem(exc)
        raise ConfigurationError(f"head-end webhook: {message}", field=field) from None


# ── the adapter ──────────────────────────────────────────────────────────────────────────────


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    if not text:
        return "(empty body)"
    if len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + "…"
    return text


def _status(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


class WebhookHeadEnd(HeadEnd):
    """Posts supply commands to an AMI head-end over HTTP; see the module docstring.

    Construct it with a :class:`WebhookConfig` or, from a plain mapping, with
    :meth:`from_config`. It owns an ``httpx.Client``: call :meth:`close` (or use it as a context
    manager) when done.
    """

    name: ClassVar[str] = "webhook"

    def __init__(self, config: WebhookConfig, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock: Clock = clock or SystemClock()
        verify: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"head-end webhook: the CA file cannot be used: {exc}", field="ca_file"
                ) from None
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.read_timeout,
                pool=config.connect_timeout,
            ),
            verify=verify,
            proxy=None if config.proxy is None else config.proxy.get_secret_value(),
            # Proxies and CA bundles come from the configuration alone: a stray HTTPS_PROXY in
            # a service's environment must not reroute reconnection commands.
            trust_env=False,
            # A redirect means the URL is configured wrong; following it would post a signed
            # command somewhere nobody chose.
            follow_redirects=False,
            headers={"User-Agent": "paygate-headend"},
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, clock: Clock | None = None) -> Self:
        """Build from a mapping with the fields of :class:`WebhookConfig`; refuse it by field."""
        return cls(_validated(config), clock=clock)

    @property
    def config(self) -> WebhookConfig:
        """The configuration (secrets masked in its repr)."""
        return self._config

    def __repr__(self) -> str:
        return f"WebhookHeadEnd(url={self._config.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._client.close()

    # commands

    def send(self, command: SupplyCommand) -> HeadEndResult:
        """Post ``command``; 2xx and 409-with-a-report answer where it stands, see the module."""
        command = command.reconnecting_by(self._config.close_mode)
        body = command_body(command, callback_url=self._config.callback_url)
        headers = self._signed(body)
        headers[IDEMPOTENCY_HEADER] = command.idempotency_key
        headers["Content-Type"] = "application/json"
        what = f"command for order {command.order_id} (attempt {command.attempt})"
        response = self._exchange("POST", self._config.url, what, content=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300:
            return self._accepted(command, response, what)
        if status == 409:
            # The head-end has this idempotency key already. With a report it says "done
            # before, here is where it stands"; without one, the key was used for something
            # else, and sending it again cannot help.
            report = self._report(command, response, what)
            if report is not None:
                _log.info("head-end webhook: %s was already taken: %s", what, report.outcome)
                return report.result()
            raise HeadEndRejected(
                f"head-end answered {_status(response)} to {what}: it holds this idempotency "
                f"key for another command: {_excerpt(response)}",
                field="response",
            )
        raise self._refusal(response, what)

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        """Ask the head-end where ``command`` stands; None when it never saw the order."""
        url = f"{self._config.url.rstrip('/')}/{command.order_id}"
        what = f"status of order {command.order_id}"
        response = self._exchange("GET", url, what, headers=self._signed(b""))
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            report = self._report(command, response, what)
            if report is None:
                raise HeadEndUnavailable(
                    f"head-end answered the {what} with a body paygate cannot read: "
                    f"{_excerpt(response)}",
                    field="response",
                )
            return report.result()
        raise self._refusal(response, what)

    # callbacks

    def verify_callback(
        self, body: bytes, headers: Mapping[str, str], *, now: datetime
    ) -> HeadEndCallback:
        """:func:`verify_callback` under this head-end's callback secret."""
        secret = self._config.callback_secret or self._config.secret
        return verify_callback(body, headers, secret=secret, now=now)

    # one exchange

    def _signed(self, body: bytes) -> dict[str, str]:
        now = require_aware(self._clock.now(), "clock.now()")
        timestamp = str(int(now.timestamp()))
        return {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._config.secret, timestamp, body),
        }

    def _exchange(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str],
        content: bytes | None = None,
    ) -> httpx.Response:
        try:
            response = self._client.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            # The head-end may have acted before the answer was lost; the retry carries the
            # same idempotency key, so it will not act twice.
            raise HeadEndUnavailable(
                f"head-end did not answer the {what} in time ({type(exc).__name__}: {exc})",
                field="transport",
            ) from exc
        except httpx.RequestError as exc:
            raise HeadEndUnavailable(
                f"head-end could not be reached for the {what} ({type(exc).__name__}: {exc})",
                field="transport",
            ) from exc
        _log.info("head-end webhook: %s %s -> %s", method, what, _status(response))
        return response

    def _accepted(
        self, command: SupplyCommand, response: httpx.Response, what: str
    ) -> HeadEndResult:
        if not response.content.strip():
            return HeadEndResult(
                outcome=HeadEndOutcome.DISPATCHED, detail=f"head-end answered {_status(response)}"
            )
        report = self._report(command, response, what)
        if report is None:
            # The status already says the command was taken; an answer that cannot be read
            # does not undo that, but someone should look at the head-end.
            _log.warning(
                "head-end webhook: %s accepted with an unreadable answer: %s",
                what,
                _excerpt(response),
            )
            return HeadEndResult(
                outcome=HeadEndOutcome.DISPATCHED,
                detail=f"head-end answered {_status(response)} with an answer paygate cannot "
                f"read: {_excerpt(response)}",
            )
        return report.result()

    def _report(
        self, command: SupplyCommand, response: httpx.Response, what: str
    ) -> _Report | None:
        """The report in ``response``, None if it holds none; one about another order raises."""
        try:
            report = _Report.model_validate_json(response.content)
            parse_json_object(response.content, source=_SOURCE)
            if report.at is not None:
                _utc(report.at)
        except (ParseError, ValidationError):
            return None
        if report.order_id != command.order_id:
            raise HeadEndUnavailable(
                f"head-end answered the {what} with a report on order {report.order_id}",
                field="response",
            )
        return report

    @staticmethod
    def _refusal(response: httpx.Response, what: str) -> HeadEndUnavailable | HeadEndRejected:
        status = response.status_code
        message = f"head-end answered {_status(response)} to the {what}: {_excerpt(response)}"
        if status >= 500 or status in _RETRY_LATER:
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                message += f" (Retry-After: {retry_after})"
            return HeadEndUnavailable(message, field="response")
        if 300 <= status < 400:
            location = response.headers.get("Location", "nowhere")
            message += f" (redirect to {location}: configure the final URL)"
        return HeadEndRejected(message, field="response")
