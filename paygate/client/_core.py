"""The request-building core both clients share: what to send, how to sign it, when to retry.

Invariant: no retry can post twice. A request is retried only when that is safe: when it was
never sent (the connection could not be made), or when it is idempotent — a ``GET``, or a
call carrying an ``Idempotency-Key``, which the gateway answers from what it recorded — and
the gateway answered 429, 502, 503 or 504 or the answer was lost. Every attempt is signed
afresh (new timestamp, new nonce: the gateway refuses a nonce twice) and keeps the same
idempotency key. Waits grow exponentially with full jitter, are capped, and honour a
``Retry-After`` up to the cap.

The clients differ only in how they do I/O (:mod:`paygate.client._client`); everything decided
here is decided once for both. An argument that cannot be sent — an account number no URL path
can carry, a naive time, an unknown method — is refused here, before any I/O, as an
:class:`~paygate.client.errors.InvalidArgumentError`: a client method raises nothing of
paygate's outside :mod:`paygate.client.errors`.
"""

from __future__ import annotations

import functools
import json
import random
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Generic, ParamSpec, TypeVar
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, SecretStr, ValidationError

from paygate.api.schemas import Health, VoucherRedemption
from paygate.channels.kiosk import KioskCloseResult, KioskMethod, KioskReceipt, KioskTotals
from paygate.channels.wire import parse_json_object
from paygate.client.errors import (
    GatewayUnreachableError,
    InvalidArgumentError,
    PaygateClientError,
    error_from_response,
)
from paygate.clock import Clock, SystemClock, require_aware
from paygate.devices import sign_request
from paygate.errors import ParseError, PaygateError
from paygate.models import AccountStatus
from paygate.money import Money

__all__ = ["Call", "ClientCore", "local_refusals", "new_txn_id"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")

_DEVICE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
# Failures that happen before a byte of the request left: retrying cannot post twice.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def local_refusals(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, its refusals of its arguments raised as InvalidArgumentError.

    What paygate's own checks raise (a ParseError, a NaiveDatetimeError, a device module's
    MalformedRequestError for a target no path can carry) and a ValueError of an enum are the
    caller's argument refused before anything was sent; the client's tree says so.
    """

    @functools.wraps(function)
    def refusing(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except PaygateClientError:
            raise
        except PaygateError as exc:
            raise InvalidArgumentError.of(exc.message, exc.field) from exc
        except ValueError as exc:
            raise InvalidArgumentError.of(str(exc)) from exc

    return refusing


@local_refusals
def new_txn_id(method: KioskMethod | str) -> str:
    """A fresh kiosk transaction id (and so idempotency key): the method, then 128 random bits."""
    return f"{KioskMethod(method).value}-{secrets.token_urlsafe(16)}"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: method, target (path and query, percent-encoded), body, key, parser."""

    method: str
    target: str
    body: bytes | None
    idempotency_key: str | None
    parse: Callable[[httpx.Response], T]
    success: frozenset[int] = frozenset({200})

    @property
    def safe_to_repeat(self) -> bool:
        """A GET, or a call the gateway deduplicates by its key."""
        return self.method == "GET" or self.idempotency_key is not None


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        try:
            # As strictly as the gateway reads what it is sent: an answer with a key given
            # twice (a receipt's amount, say) could be read two ways, and one nested beyond
            # reason would exhaust the parser's recursion.
            parse_json_object(response.content, source="the gateway's answer")
            return model.model_validate_json(response.content)
        except ParseError as exc:
            problem = str(exc)
        except ValidationError as exc:
            problem = f"{exc.error_count()} problem(s)"
        raise PaygateClientError(
            response.status_code,
            "unreadable_answer",
            "Unreadable answer",
            f"the gateway's answer is not a {model.__name__}: {problem}",
            request_id=response.headers.get("x-request-id"),
        )

    return parse


def _json_body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ClientCore:
    """Builds signed requests and decides retries and errors; does no I/O itself."""

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        private_key: Ed25519PrivateKey,
        clock: Clock | None = None,
        max_retries: int = 3,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        rng: random.Random | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidArgumentError.of("not a URL", field="base_url") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidArgumentError.of(
                "an http:// or https:// URL with a host", field="base_url"
            )
        if url.query or url.fragment:
            raise InvalidArgumentError.of("a base URL without query or fragment", field="base_url")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
            raise InvalidArgumentError.of("the device id as registered", field="device_id")
        if type(max_retries) is not int or max_retries < 0:
            raise InvalidArgumentError.of("a non-negative integer", field="max_retries")
        if not 0 < backoff_base <= backoff_cap:
            raise InvalidArgumentError.of("0 < backoff_base <= backoff_cap", field="backoff_base")
        # A path prefix is kept and signed: the gateway verifies the target it receives.
        self._origin = str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        self._prefix = url.raw_path.decode("ascii").rstrip("/")
        self.device_id = device_id
        self._key = private_key
        self.clock: Clock = clock or SystemClock()
        self.max_retries = max_retries
        self._base = backoff_base
        self._cap = backoff_cap
        # Jitter only, never security: the nonces come from paygate.devices (secrets).
        self._rng = rng or random.Random()  # noqa: S311

    def __repr__(self) -> str:
        return f"<ClientCore {self._origin}{self._prefix} device={self.device_id}>"

    @property
    def base_url(self) -> str:
        """Where the gateway is, as given (a path prefix included)."""
        return f"{self._origin}{self._prefix}"

    # -- building ---------------------------------------------------------------------------

    @local_refusals
    def build(self, call: Call[Any]) -> httpx.Request:
        """The request for one attempt of ``call``, signed now with a fresh nonce."""
        target = f"{self._prefix}{call.target}"
        body = call.body or b""
        headers = sign_request(
            self._key, self.device_id, call.method, target, body, now=self.clock.now()
        )
        headers["Accept"] = "application/json, application/problem+json"
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key is not None:
            headers["Idempotency-Key"] = call.idempotency_key
        return httpx.Request(
            call.method, f"{self._origin}{target}", content=call.body, headers=headers
        )

    # -- deciding ---------------------------------------------------------------------------

    def _wait(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self._cap, self._base * 2**attempt)
        wait = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self._cap))
        return wait

    def wait_after_error(
        self, call: Call[Any], error: httpx.RequestError, attempt: int
    ) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, _NOT_SENT) or call.safe_to_repeat:
            return self._wait(attempt)
        return None

    def wait_after_answer(
        self, call: Call[Any], response: httpx.Response, attempt: int
    ) -> float | None:
        """Seconds to wait before retrying after ``response``, or None to take it as final."""
        if response.status_code in call.success or attempt >= self.max_retries:
            return None
        if response.status_code in _RETRY_STATUSES and call.safe_to_repeat:
            return self._wait(attempt, error_from_response(response).retry_after)
        return None

    def finish(self, call: Call[T], response: httpx.Response) -> T:
        """The result of a final answer, or the error it stands for."""
        if response.status_code in call.success:
            return call.parse(response)
        raise error_from_response(response)

    @staticmethod
    def unreachable(error: httpx.RequestError) -> GatewayUnreachableError:
        """The error for a request that got no answer."""
        return GatewayUnreachableError(
            None,
            "unreachable",
            "Gateway unreachable",
            f"no answer from the gateway: {type(error).__name__}",
        )

    # -- the calls --------------------------------------------------------------------------

    @local_refusals
    def account(self, account_no: str) -> Call[AccountStatus]:
        """``GET /v1/accounts/{account_no}``; the number is one percent-encoded path segment."""
        if not isinstance(account_no, str) or not account_no:
            raise InvalidArgumentError.of("an account number", field="account_no")
        if account_no in (".", ".."):
            # Dot segments are resolved by routers, so no signed path may hold one.
            raise InvalidArgumentError.of(
                f"{account_no!r} cannot be sent as a path segment", field="account_no"
            )
        return Call(
            "GET", f"/v1/accounts/{quote(account_no, safe='')}", None, None, _model(AccountStatus)
        )

    @local_refusals
    def pay(
        self,
        account_no: str,
        amount: Money,
        *,
        method: KioskMethod | str,
        paid_at: datetime | None,
        idempotency_key: str | None,
    ) -> Call[KioskReceipt]:
        """``POST /v1/payments``; the key is the payment's transaction id."""
        if not isinstance(amount, Money):
            raise TypeError("amount must be Money")
        kind = KioskMethod(method)
        key = new_txn_id(kind) if idempotency_key is None else idempotency_key
        if not key.startswith(f"{kind.value}-"):
            raise InvalidArgumentError.of(
                f"a {kind.value} payment's key starts with {kind.value}-", field="idempotency_key"
            )
        when = require_aware(paid_at, "paid_at") if paid_at is not None else self.clock.now()
        body = _json_body(
            {
                "txn_id": key,
                "account_no": account_no,
                "amount": amount.minor,
                "currency": amount.currency,
                "method": kind.value,
                "paid_at": when.isoformat(),
            }
        )
        return Call("POST", "/v1/payments", body, key, _model(KioskReceipt), frozenset({200, 201}))

    @local_refusals
    def redeem_voucher(
        self, account_no: str, serial: str, pin: str | SecretStr, *, idempotency_key: str | None
    ) -> Call[VoucherRedemption]:
        """``POST /v1/vouchers/redeem``; the PIN goes only into the body."""
        secret = pin.get_secret_value() if isinstance(pin, SecretStr) else pin
        body = _json_body({"account_no": account_no, "serial": serial, "pin": secret})
        key = idempotency_key or secrets.token_urlsafe(16)
        return Call(
            "POST",
            "/v1/vouchers/redeem",
            body,
            key,
            _model(VoucherRedemption),
            frozenset({200, 201}),
        )

    @local_refusals
    def close_kiosk_day(
        self,
        business_date: date,
        *,
        counted_cash: Money,
        reported: KioskTotals,
        idempotency_key: str | None,
    ) -> Call[KioskCloseResult]:
        """``POST /v1/kiosks/{this device}/close``."""
        if not isinstance(counted_cash, Money) or counted_cash.currency != reported.currency:
            raise InvalidArgumentError.of(
                "counted cash is Money in the totals' currency", field="counted_cash"
            )
        body = _json_body(
            {
                "business_date": business_date.isoformat(),
                "currency": reported.currency,
                "counted_cash": counted_cash.minor,
                "count": reported.count,
                "amount": reported.amount.minor,
                "by_method": {
                    "cash": {"count": reported.cash.count, "amount": reported.cash.amount.minor},
                    "card": {"count": reported.card.count, "amount": reported.card.amount.minor},
                },
            }
        )
        key = idempotency_key or f"close-{self.device_id}-{business_date.isoformat()}"
        return Call(
            "POST",
            f"/v1/kiosks/{quote(self.device_id, safe='')}/close",
            body,
            key,
            _model(KioskCloseResult),
            frozenset({200, 201}),
        )

    def health(self) -> Call[Health]:
        """``GET /healthz``."""
        return Call("GET", "/healthz", None, None, _model(Health))
