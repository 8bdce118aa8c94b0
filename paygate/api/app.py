"""The HTTP gateway: one ASGI app (FastAPI) in front of one Gateway, stateless between requests.

Invariants:

* **Nothing unverified is trusted.** A device route verifies the request's Ed25519 signature
  (:func:`paygate.devices.verify_request`, or the kiosk adapter, which calls it) before it
  reads the body as anything but bytes; a channel's notification is verified by its adapter;
  a head-end report by its HMAC under the callback secret. A body is read only up to the
  route's limit, and a declared length over it is refused before a byte is read.
* **Several workers behave as one.** Nonces, devices (so a revocation), idempotency
  (the unique payment key), kiosk closes and voucher attempts live in the database; the only
  state a worker keeps is its metrics, labelled with the worker. Any number of workers and
  machines can serve the same PostgreSQL database.
* **Every refusal is a problem.** Errors of the one exception tree, the drivers' "database not
  there", unknown routes and malformed parameters all answer ``application/problem+json``
  (:mod:`paygate.api.problems`); an unexpected exception is logged with its trace under the
  request id and answered with a generic 500. A channel's notify route answers in the
  channel's own acknowledgement format, byte for byte as its adapter says.

The database is opened in the app's lifespan, never at import or in :func:`create_app`;
blocking work (the database, signatures) runs on worker threads, at most ``max_concurrency``
at a time, which matches the connection pool so that a request waits for a thread rather
than for a connection.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, SecretBytes
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from paygate.api import auth
from paygate.api.config import API_CONFIG_ENV, KIOSK_PAY_PATH, ApiConfig, load_api_config
from paygate.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from paygate.api.metrics import Metrics, read_database_figures
from paygate.api.openapi import build_openapi
from paygate.api.problems import (
    PROBLEM_MEDIA_TYPE,
    DeviceMismatchError,
    MethodNotAllowedError,
    Problem,
    RequestValidationProblem,
    RouteNotFoundError,
    UnknownChannelError,
    UnsupportedMediaTypeError,
    database_unavailable,
    internal_error,
    problem_for,
)
from paygate.api.schemas import Health, ReconnectionProgress, VoucherRedemption
from paygate.channels.base import (
    AdapterContext,
    ChannelAdapter,
    ChannelRegistry,
    Operation,
)
from paygate.channels.errors import PayloadTooLargeError
from paygate.channels.kiosk import (
    KioskAdapter,
    KioskCloseResult,
    KioskContext,
    KioskReceipt,
    kiosk_receipt,
)
from paygate.channels.pos import PosAdapter, PosContext
from paygate.channels.prepaid_card import PrepaidCardAdapter, PrepaidCardContext
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore, SqlOrderStore, SqlPosLedger
from paygate.channels.wire import parse_json_object
from paygate.clock import Clock
from paygate.config import Settings
from paygate.devices import HEADER_DEVICE, Device, DeviceRegistry, key_encryption_key_from_env
from paygate.errors import (
    ConfigurationError,
    InvalidInputError,
    ParseError,
    PaygateError,
    StoreError,
)
from paygate.gateway import Gateway
from paygate.headend.webhook import MAX_CALLBACK_BYTES, verify_callback
from paygate.models import AccountStatus
from paygate.vouchers import VoucherService

__all__ = ["app_from_env", "check_startup", "create_app"]

_log = logging.getLogger("paygate.api")

T = TypeVar("T")

_JSON: Final = "application/json"
_ACCOUNT_NO: Final = r"^[!-~]{1,64}\Z"
_DEVICE_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"
_ORDER_ID: Final = r"^[1-9][0-9]{0,18}\Z"
_CHANNEL: Final = r"^[a-z][a-z0-9_]{1,31}$"
# Channels served at routes of their own; every other configured channel is a notify channel.
_TERMINAL_CHANNELS: Final = frozenset({"kiosk", "prepaid_card", "pos"})


def _package_version() -> str:
    try:
        return version("paygate")
    except PackageNotFoundError:
        return "0"


# ── what a running app holds ─────────────────────────────────────────────────────────────


@dataclass
class _Runtime:
    """The open Gateway and what the routes build on it; one per worker, made in the lifespan."""

    gateway: Gateway
    nonces: SqlNonceStore
    kiosk: KioskAdapter
    kiosk_ledger: SqlKioskLedger
    vouchers: PrepaidCardAdapter | None
    pos: PosAdapter | None
    notify: dict[str, ChannelAdapter[Any]]
    callback_secret: SecretBytes | None
    limiter: anyio.CapacityLimiter
    window: timedelta

    def close(self) -> None:
        self.gateway.close()


@dataclass
class _Slot:
    runtime: _Runtime | None = None

    def get(self) -> _Runtime:
        if self.runtime is None:
            raise StoreError("the gateway is not running")
        return self.runtime


def _start(
    settings: Settings,
    config: ApiConfig,
    registry: ChannelRegistry,
    clock: Clock | None,
    max_concurrency: int,
) -> _Runtime:
    gateway = Gateway.open(settings=settings, clock=clock)
    try:
        store = gateway.store
        nonces = SqlNonceStore(store)
        # The API verifies Ed25519 signatures only: it never needs a MAC key, so no
        # key-encryption key is given to the registry.
        devices = DeviceRegistry(store, gateway.clock)
        kiosk_ledger = SqlKioskLedger(store)
        kiosk = registry.create(
            "kiosk",
            config.kiosk,
            KioskContext(
                clock=gateway.clock,
                nonces=nonces,
                devices=devices,
                ledger=kiosk_ledger,
            ),
        )
        assert isinstance(kiosk, KioskAdapter)
        vouchers: PrepaidCardAdapter | None = None
        card_config = config.prepaid_card
        if card_config is not None:
            service = (
                VoucherService(gateway, config.voucher_pin_key)
                if config.voucher_pin_key is not None
                else None
            )
            created = registry.create(
                "prepaid_card",
                card_config,
                PrepaidCardContext(clock=gateway.clock, nonces=nonces, vouchers=service),
            )
            assert isinstance(created, PrepaidCardAdapter)
            vouchers = created
        pos: PosAdapter | None = None
        if "pos" in config.channels:
            # POS terminals MAC their messages: their keys are stored encrypted, so the
            # registry that hands them to the adapter needs the key-encryption key.
            terminals = DeviceRegistry(store, gateway.clock, kek=key_encryption_key_from_env())
            made = registry.create(
                "pos",
                config.channels["pos"],
                PosContext(
                    clock=gateway.clock,
                    nonces=nonces,
                    terminal_keys=terminals,
                    ledger=SqlPosLedger(store, currency=settings.currency),
                ),
            )
            assert isinstance(made, PosAdapter)
            pos = made
        context = AdapterContext(clock=gateway.clock, nonces=nonces, orders=SqlOrderStore(store))
        notify = {
            name: registry.create(name, channel_config, context)
            for name, channel_config in config.channels.items()
            if name not in _TERMINAL_CHANNELS
        }
        # The dates the core gives payments are the dates each channel settles them on.
        gateway.use_channels(
            [kiosk, *([vouchers] if vouchers else []), *([pos] if pos else []), *notify.values()]
        )
        return _Runtime(
            gateway=gateway,
            nonces=nonces,
            kiosk=kiosk,
            kiosk_ledger=kiosk_ledger,
            vouchers=vouchers,
            pos=pos,
            notify=notify,
            callback_secret=config.callback_secret,
            limiter=anyio.CapacityLimiter(max_concurrency),
            window=kiosk.config.timestamp_window,
        )
    except BaseException:
        gateway.close()
        raise


# ── reading a request ────────────────────────────────────────────────────────────────────


def _headers(request: Request) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined as RFC 9110 combines them.

    Joining (rather than keeping one) means a signature header sent twice reads as one
    malformed value, never as whichever copy a proxy and paygate would each have chosen.
    """
    combined: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        combined[name] = f"{combined[name]}, {value}" if name in combined else value
    return combined


def _target(request: Request) -> str:
    """The request target as received (path still percent-encoded, and query): what is signed."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    target = bytes(raw).decode("latin-1")
    query = request.scope.get("query_string", b"")
    return f"{target}?{bytes(query).decode('latin-1')}" if query else target


async def _read_body(request: Request, limit: int, *, keep_excess: bool = False) -> bytes:
    """The body, refused (413) past ``limit`` bytes without reading further.

    With ``keep_excess`` the first ``limit + 1`` bytes are returned instead, for an adapter
    that answers an oversized message in its channel's own format.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise RequestValidationProblem("Content-Length is not a number", field="Content-Length")
        if int(declared) > limit and not keep_excess:
            raise PayloadTooLargeError(
                f"body of {int(declared)} bytes exceeds the limit of {limit} bytes", field="body"
            )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            if keep_excess:
                return bytes(body[: limit + 1])
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes", field="body")
    return bytes(body)


def _matching(value: str, pattern: str, field: str, what: str) -> str:
    """``value`` when it matches ``pattern``; else the refusal naming ``field``."""
    if not re.match(pattern, value):
        raise RequestValidationProblem(f"{field} is {what}", field=field)
    return value


def _masked(name: str | None) -> str | None:
    # A kiosk shows the name so that the customer recognises the account, as Chinese
    # counters do ("张*"): enough to confirm, not enough to harvest names by account number.
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json().encode("utf-8"), status_code=status, media_type=_JSON)


def _problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        problem.model_dump_json(exclude_none=True).encode("utf-8"),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _request_id(scope: MutableMapping[str, Any]) -> str:
    state = scope.get("state")
    if isinstance(state, dict):
        value = state.get("request_id")
        if isinstance(value, str):
            return value
    return "unknown"


def _route_of(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


# ── the outermost layer: request id, latency, and the last word on errors ────────────────


class _RequestContext:
    """Gives every request an id (``X-Request-Id``), times it, and answers what nobody caught.

    A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it must wrap
    streaming bodies and exceptions without buffering or re-raising into the server's log.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        answered: dict[str, int] = {}

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                # Receipts and balances are personal and change: no cache keeps them.
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            _log.info("request %s: the client went away before its body was read", request_id)
        except Exception as exc:
            unavailable = database_unavailable(exc)
            if unavailable is not None:
                problem, headers = problem_for(
                    unavailable, request_id=request_id, instance=scope.get("path")
                )
                _log.warning("request %s: database unavailable: %r", request_id, exc)
            else:
                # The trace goes to the log, with the id the caller was given; never to them.
                _log.exception("request %s: unexpected error", request_id)
                problem, headers = internal_error(request_id, scope.get("path")), {}
            self.metrics.count_refusal(_route_of(scope), problem.code)
            if "status" not in answered:
                await _problem_response(problem, headers)(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(
                _route_of(scope),
                str(scope.get("method", "")),
                answered.get("status", 500),
                time.perf_counter() - started,
            )


# ── the app ──────────────────────────────────────────────────────────────────────────────


def _check_config(config: ApiConfig, registry: ChannelRegistry) -> None:
    """Refuse a configuration that would serve a route unable ever to answer but 503/404."""
    for name in config.channels:
        if name not in registry:
            raise ConfigurationError(f"channels.{name}: no such channel", field="channels")
        if name not in _TERMINAL_CHANNELS and (
            Operation.NOTIFY not in registry.get(name).operations
        ):
            raise ConfigurationError(
                f"channels.{name}: the HTTP API has no route for this channel", field="channels"
            )
    if config.prepaid_card is not None and config.voucher_pin_key is None:
        raise ConfigurationError(
            "channels.prepaid_card: the voucher PIN key is not given (voucher_pin_key)",
            field="channels.prepaid_card",
        )


def create_app(
    settings: Settings,
    *,
    config: ApiConfig | None = None,
    channels: ChannelRegistry | None = None,
    clock: Clock | None = None,
    max_concurrency: int = 16,
) -> FastAPI:
    """The HTTP gateway for ``settings``'s database, serving what ``config`` configures.

    ``channels`` is the registry adapters are created from (default: the built-ins and the
    installed entry points); ``clock`` the Gateway's (default: the system clock). Nothing is
    opened here: the Gateway opens when the app starts (its lifespan) and closes when it
    stops.
    """
    config = config or ApiConfig()
    registry = channels or ChannelRegistry.discover()
    _check_config(config, registry)
    if max_concurrency < 1:
        raise ConfigurationError("max_concurrency must be positive", field="max_concurrency")
    notify_channels = sorted(n for n in config.channels if n not in _TERMINAL_CHANNELS)
    metrics = Metrics()
    slot = _Slot()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await anyio.to_thread.run_sync(
            _start, settings, config, registry, clock, max_concurrency
        )
        slot.runtime = runtime
        try:
            yield
        finally:
            slot.runtime = None
            await anyio.to_thread.run_sync(runtime.close)

    app = FastAPI(
        title="paygate",
        version=_package_version(),
        summary="Electricity bill payments from every channel into one ledger.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(_RequestContext, metrics=metrics)

    async def in_thread(work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work, limiter=slot.get().limiter)

    def authenticate(
        runtime: _Runtime, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Device:
        return auth.authenticate(
            runtime.gateway.store,
            runtime.nonces,
            method,
            target,
            headers,
            body,
            now=runtime.gateway.clock.now(),
            window=runtime.window,
        )

    # errors

    def answer(
        request: Request, exc: PaygateError, headers: Mapping[str, str] | None = None
    ) -> Response:
        problem, extra = problem_for(
            exc, request_id=_request_id(request.scope), instance=request.url.path
        )
        metrics.count_refusal(_route_of(request.scope), problem.code)
        return _problem_response(problem, {**extra, **dict(headers or {})})

    async def on_paygate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PaygateError)
        return answer(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("path", "header")]
        message = str(first.get("msg", "not in the documented form"))
        return answer(request, RequestValidationProblem(message, field=".".join(where) or None))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return answer(
                request,
                MethodNotAllowedError(f"{request.method} is not allowed here"),
                {"Allow": allowed} if allowed else {},
            )
        if exc.status_code == 404:
            return answer(request, RouteNotFoundError(f"no route at {request.url.path}"))
        return answer(request, InvalidInputError(str(exc.detail)))

    app.add_exception_handler(PaygateError, on_paygate_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)

    # routes: a route whose part is not configured is not in the app (nor in its document)

    @app.get("/v1/accounts/{account_no:path}", operation_id="getAccount", tags=["terminals"])
    async def account(request: Request, account_no: str) -> Response:
        """What the account owes now: arrears, late fee, bills and supply state."""
        runtime = slot.get()
        headers, target = _headers(request), _target(request)

        def work() -> AccountStatus:
            authenticate(runtime, "GET", target, headers, b"")
            # ``:path``: an account number may hold "/" (sent as %2F), which the router decodes.
            _matching(account_no, _ACCOUNT_NO, "account_no", "1-64 printable ASCII characters")
            return runtime.gateway.account_status(account_no)

        status = await in_thread(work)
        return _json(status.model_copy(update={"name": _masked(status.name)}))

    @app.post(KIOSK_PAY_PATH, operation_id="pay", tags=["terminals"])
    async def pay(request: Request) -> Response:
        """A kiosk's payment: verified and mapped by the kiosk adapter, posted once."""
        runtime = slot.get()
        headers = _headers(request)
        body = await _read_body(request, runtime.kiosk.config.max_body_bytes)

        def work() -> KioskReceipt:
            try:
                receipt, intent, sent = auth.post_kiosk_payment(
                    runtime.gateway, runtime.nonces, runtime.kiosk, body, headers
                )
            except PaygateError:
                metrics.count_payment(runtime.kiosk.name, "refused")
                raise
            metrics.count_payment(runtime.kiosk.name, "replayed" if receipt.replayed else "posted")
            terminal = intent.terminal_id
            assert terminal is not None
            # A payment taken offline may arrive after its day was closed: the kiosk is told,
            # for that close's figures may not include it.
            closed = runtime.kiosk_ledger.close_of(terminal, receipt.business_date)
            return kiosk_receipt(receipt, terminal, sent.txn_id, after_close=closed is not None)

        printable = await in_thread(work)
        return _json(printable, 200 if printable.replayed else 201)

    @app.post("/v1/kiosks/{device_id}/close", operation_id="closeKioskDay", tags=["terminals"])
    async def close_kiosk_day(request: Request, device_id: str) -> Response:
        """A kiosk's end-of-day close: its counted cash and totals against the ledger."""
        runtime = slot.get()
        headers, target = _headers(request), _target(request)
        body = await _read_body(request, runtime.kiosk.config.max_body_bytes)

        def refusal() -> PaygateError | None:
            try:
                _matching(device_id, _DEVICE_ID, "device_id", "a registered device id")
                auth.idempotency_key(headers)
                auth.require_json(headers)
                # Strictly, before the adapter's reading: a key twice is refused, not settled.
                parse_json_object(body, source=runtime.kiosk.name)
            except PaygateError as exc:
                return exc
            if headers.get(HEADER_DEVICE.lower()) != device_id:
                # A verified request is from the device its header names, so path, header
                # and signer are one when header and path agree.
                return DeviceMismatchError(
                    f"the request is signed for another device than {device_id}",
                    field=HEADER_DEVICE,
                )
            return None

        def work() -> KioskCloseResult:
            refused = refusal()
            if refused is None:
                return runtime.kiosk.close_day(body, headers, path=target)
            # Who is asking is settled first (recording the nonce), then what they asked:
            # an unauthenticated request is answered 401 whatever else is wrong with it.
            runtime.kiosk.authenticate(target, body, headers)
            raise refused

        result = await in_thread(work)
        return _json(result, 200 if result.replayed else 201)

    vouchers_served = config.prepaid_card is not None
    if vouchers_served:

        @app.post("/v1/vouchers/redeem", operation_id="redeemVoucher", tags=["terminals"])
        async def redeem_voucher(request: Request) -> Response:
            """Redeem a recharge card for an account, from a registered terminal."""
            runtime = slot.get()
            adapter = runtime.vouchers
            assert adapter is not None, "served only when configured"
            headers, target = _headers(request), _target(request)
            body = await _read_body(request, adapter.config.max_body_bytes)

            def work() -> VoucherRedemption:
                device = authenticate(runtime, "POST", target, headers, body)
                auth.idempotency_key(headers)
                auth.require_json(headers)
                trusted = {k: v for k, v in headers.items() if k != HEADER_DEVICE.lower()}
                trusted[HEADER_DEVICE] = device.device_id
                receipt = adapter.redeem(body, trusted)
                return VoucherRedemption(
                    result="replayed" if receipt.replayed else "redeemed", receipt=receipt
                )

            redemption = await in_thread(work)
            return _json(redemption, 200 if redemption.result == "replayed" else 201)

    if "pos" in config.channels:

        @app.post("/v1/pos/{operation}", operation_id="posMessage", tags=["terminals"])
        async def pos_message(
            request: Request,
            operation: Annotated[str, PathParam(pattern="^(sale|void|settle)$")],
        ) -> Response:
            """A POS terminal's MAC-signed sale, same-batch void or batch settlement, answered
            in the terminal's own format (see docs/channels/pos.md)."""
            runtime = slot.get()
            adapter = runtime.pos
            assert adapter is not None, "served only when configured"
            handle = {
                "sale": adapter.handle_pay,
                "void": adapter.handle_void,
                "settle": adapter.handle_daily_close,
            }[operation]
            headers = _headers(request)
            body = await _read_body(request, adapter.config.max_body_bytes, keep_excess=True)
            result = await in_thread(lambda: handle(body, headers, runtime.gateway))
            if result.receipt is not None:
                metrics.count_payment("pos", "replayed" if result.receipt.replayed else "posted")
            elif result.error_code is not None and operation == "sale":
                metrics.count_payment("pos", "refused")
            return Response(
                result.body, status_code=result.status_code, media_type=result.content_type
            )

    if notify_channels:

        @app.post("/v1/channels/{channel}/notify", operation_id="notify", tags=["channels"])
        async def notify(
            request: Request,
            channel: Annotated[str, PathParam(pattern=_CHANNEL)],
        ) -> Response:
            """A channel's notification in its native format, answered in its own format."""
            runtime = slot.get()
            adapter = runtime.notify.get(channel)
            if adapter is None:
                raise UnknownChannelError(
                    f"no notify endpoint for channel {channel!r}", field="channel"
                )
            headers = _headers(request)
            # The adapter refuses an oversized message itself, in its own format: it gets the
            # first limit + 1 bytes, never more.
            body = await _read_body(request, adapter.config.max_body_bytes, keep_excess=True)
            result = await in_thread(lambda: adapter.handle_notify(body, headers, runtime.gateway))
            if result.receipt is not None:
                metrics.count_payment(channel, "replayed" if result.receipt.replayed else "posted")
            elif result.error_code is not None:
                metrics.count_payment(channel, "refused")
            return Response(
                result.body, status_code=result.status_code, media_type=result.content_type
            )

    callback_secret = config.callback_secret
    if callback_secret is not None:

        @app.post(
            "/v1/reconnections/{order_id}/confirm",
            operation_id="confirmReconnection",
            tags=["head-ends"],
        )
        async def confirm_reconnection(request: Request, order_id: str) -> Response:
            """The head-end's signed report on a supply order, recorded once."""
            runtime = slot.get()
            headers = _headers(request)
            body = await _read_body(request, MAX_CALLBACK_BYTES)

            def work() -> ReconnectionProgress:
                now = runtime.gateway.clock.now()
                try:
                    auth.require_json(headers)
                except UnsupportedMediaTypeError as refusal:
                    # The signature first: a caller without the secret is told 401, not
                    # what the route reads. A signed body not in JSON cannot be a report.
                    with suppress(ParseError):
                        verify_callback(body, headers, secret=callback_secret, now=now)
                    raise refusal from None
                report = verify_callback(body, headers, secret=callback_secret, now=now)
                # A signed report read strictly too: a key given twice is refused, not settled.
                parse_json_object(body, source="headend")
                _matching(order_id, _ORDER_ID, "order_id", "a supply order's number")
                if report.order_id != int(order_id):
                    raise InvalidInputError(
                        f"the signed report is about order {report.order_id}", field="order_id"
                    )
                status = runtime.gateway.record_order_progress(
                    report.order_id,
                    report.outcome,
                    at=report.at,
                    actor="headend",
                    reference=report.reference,
                )
                return ReconnectionProgress(order_id=report.order_id, status=status)

            return _json(await in_thread(work))

    @app.get("/healthz", operation_id="health", tags=["operations"])
    async def healthz() -> Response:
        """The gateway answers and its database is reachable."""
        runtime = slot.get()
        await in_thread(
            lambda: runtime.gateway.store.run(
                lambda tx: tx.scalar("SELECT 1"), write=False, attempts=1
            )
        )
        return _json(Health(status="ok", database="ok"))

    @app.get("/metrics", operation_id="metrics", tags=["operations"])
    async def prometheus() -> Response:
        """Prometheus text exposition; see docs/http-api.md for each family."""
        runtime = slot.get()

        def figures() -> Any:
            try:
                return read_database_figures(runtime.gateway.store)
            except Exception as exc:  # a scrape reports the database down, it does not fail
                if database_unavailable(exc) is None and not isinstance(exc, StoreError):
                    raise
                _log.warning("metrics: the database could not be read: %r", exc)
                return None

        text = metrics.render(await in_thread(figures))
        return Response(text.encode("utf-8"), media_type=METRICS_CONTENT_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, notify_channels=notify_channels)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def check_startup(
    settings: Settings, config: ApiConfig, *, channels: ChannelRegistry | None = None
) -> None:
    """Open what a worker opens at start — the database, every adapter — and close it again.

    ``paygate serve`` calls it before it listens, so that a database that is not migrated, a
    channel that cannot be built or a settlement time zone that is not the utility's stops it
    with a message, rather than each worker failing on its own.
    """
    registry = channels or ChannelRegistry.discover()
    _check_config(config, registry)
    _start(settings, config, registry, None, 1).close()


def app_from_env() -> FastAPI:
    """The app of one ``paygate serve`` worker: settings from ``PAYGATE_*``, the configuration
    file from ``PAYGATE_API_CONFIG`` (none: the kiosk channel only).

    This is the factory uvicorn imports in each worker process
    (``uvicorn --factory paygate.api:app_from_env``).
    """
    settings = Settings.from_env()
    path = os.environ.get(API_CONFIG_ENV)
    return create_app(settings, config=load_api_config(Path(path) if path else None))
