"""The HTTP gateway: one ASGI app (FastAPI) in front of one Gateway, stateless between requests.

Invariants:

* **Nothing unverified is trusted.** A device route verifies the request's Ed25519 signature
  (:func:`paygate.devices.verify_request`, or the kiosk adapter, which calls it) before it
  reads the body as anything but bytes; a channel's notification is verified by its adapter;
  a head-end report by its HMAC under the callback secret. A body is read only up to the
  route's limit, and a declared length over it is refused before a byte is read.
* **Several workers behave as one.** Nonces, devices (so a revocation), idempotency
  (the unique payment key), kiosk closes and voucher attempts live in the database; the only
  state a worker keeps is its metrics, labelled with the worker (and shared with the other
  workers of one ``paygate serve`` through prometheus_client's multiprocess files). Any
  number of workers and machines can serve the same PostgreSQL database.
* **Every request is one access line** (logger ``paygate.access``, level info): its id, method,
  path without the query string, route, status and duration; every record logged while it is
  answered carries the same ``request_id`` (:mod:`paygate.logs`).
* **Every refusal is a problem.** Errors of the one exception tree, the drivers' "database not
  there", unknown routes and malformed parameters all answer ``application/problem+json``
  (:mod:`paygate.api.problems`); an unexpected exception is logged with its trace under the
  request id and answered with a generic 500. A channel's notify route answers in the
  channel's own acknowledgement format, byte for byte as its adapter says.

The database is opened in the app's lifespan, never at import or in :func:`create_app`;
blocking work (the database, signatures) runs on worker threads, at most ``max_concurrency``
at a time, which matches the connection pool so that a request waits for a thread rather
than for a connection.

This module is the factory and what wraps every route (the lifespan, the request-context
middleware, the error handlers); the routes are :mod:`paygate.api.routes`, one module per
resource, and what they are given is :mod:`paygate.api.deps`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.pool import Pool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from paygate import logs
from paygate.api.config import ApiConfig, api_config
from paygate.api.deps import TERMINAL_CHANNELS, start
from paygate.api.metrics import Metrics
from paygate.api.openapi import build_openapi
from paygate.api.problems import (
    PROBLEM_MEDIA_TYPE,
    MethodNotAllowedError,
    Problem,
    RequestValidationProblem,
    RouteNotFoundError,
    database_unavailable,
    internal_error,
    problem_for,
)
from paygate.api.routes import (
    accounts,
    events,
    headend,
    imports,
    kiosks,
    notify,
    oauth,
    operations,
    payment_feed,
    payments,
    pos,
    reference,
    supply_orders,
    vouchers,
)
from paygate.channels.base import ChannelRegistry, Operation
from paygate.channels.pos import PosAdapter
from paygate.clock import Clock
from paygate.config import PaygateConfig, Settings
from paygate.console import ConsoleSettings
from paygate.console import mount as mount_console
from paygate.errors import ConfigurationError, InvalidInputError, PaygateError
from paygate.refunds.routes.settings import build_routes
from paygate.tokens import TokenSettings

__all__ = ["app_from_env", "check_startup", "create_app"]

_log = logging.getLogger("paygate.api")
_access = logging.getLogger("paygate.access")


def _package_version() -> str:
    try:
        return version("paygate")
    except PackageNotFoundError:
        return "0"


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
        token = logs.request_id.set(request_id)
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
                _log.warning(
                    "request %s: database unavailable: %r",
                    request_id,
                    exc,
                    extra={"error": type(exc).__name__},
                )
            else:
                # The trace goes to the log, with the id the caller was given; never to them.
                _log.exception("request %s: unexpected error", request_id)
                problem, headers = internal_error(request_id, scope.get("path")), {}
            self.metrics.count_refusal(_route_of(scope), problem.code)
            if "status" not in answered:
                await _problem_response(problem, headers)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            status = answered.get("status", 500)
            method = str(scope.get("method", ""))
            self.metrics.observe_request(_route_of(scope), method, status, seconds)
            if _access.isEnabledFor(logging.INFO):
                client = scope.get("client")
                # The path only: a query string is the caller's and may carry what no log keeps.
                _access.info(
                    "%s %s %d",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "path": scope.get("path", ""),
                        "route": _route_of(scope),
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": client[0] if client else None,
                    },
                )
            logs.request_id.reset(token)


# ── the error handlers: every refusal a problem, counted ─────────────────────────────────


def _answer(
    request: Request, exc: PaygateError, headers: Mapping[str, str] | None = None
) -> Response:
    runtime = request.app.state.runtime
    problem, extra = problem_for(
        exc,
        request_id=_request_id(request.scope),
        instance=request.url.path,
        now=None if runtime is None else runtime.gateway.clock.now(),
    )
    metrics: Metrics = request.app.state.metrics
    metrics.count_refusal(_route_of(request.scope), problem.code)
    return _problem_response(problem, {**extra, **dict(headers or {})})


async def _on_paygate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PaygateError)
    return _answer(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = [str(part) for part in first.get("loc", ()) if part not in ("path", "header")]
    message = str(first.get("msg", "not in the documented form"))
    return _answer(request, RequestValidationProblem(message, field=".".join(where) or None))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return _answer(
            request,
            MethodNotAllowedError(f"{request.method} is not allowed here"),
            {"Allow": allowed} if allowed else {},
        )
    if exc.status_code == 404:
        return _answer(request, RouteNotFoundError(f"no route at {request.url.path}"))
    return _answer(request, InvalidInputError(str(exc.detail)))


# ── the app ──────────────────────────────────────────────────────────────────────────────


def _check_config(config: ApiConfig, registry: ChannelRegistry) -> None:
    """Refuse a configuration that would serve a route unable ever to answer but 503/404."""
    for name in config.channels:
        if name not in registry:
            raise ConfigurationError(f"channels.{name}: no such channel", field="channels")
        if name not in TERMINAL_CHANNELS and (
            Operation.NOTIFY not in registry.get(name).operations
        ):
            raise ConfigurationError(
                f"channels.{name}: the HTTP API has no route for this channel", field="channels"
            )
    if config.voucher is not None and config.voucher_pin_key is None:
        raise ConfigurationError(
            "channels.voucher: the voucher PIN key is not given (voucher_pin_key)",
            field="channels.voucher",
        )


SAMPLE_SECONDS = 5.0
"""How often a worker records its process and database-pool figures (and at each scrape)."""


def _sample(metrics: Metrics, pool: Pool, stop: threading.Event) -> None:
    while True:
        try:
            metrics.sample(pool)
        except Exception:  # a figure missed is not worth a worker
            _log.exception("metrics: the process figures could not be sampled")
        if stop.wait(SAMPLE_SECONDS):
            return


def create_app(
    settings: Settings,
    *,
    config: ApiConfig | None = None,
    channels: ChannelRegistry | None = None,
    clock: Clock | None = None,
    max_concurrency: int = 16,
    tokens: TokenSettings | None = None,
    console: ConsoleSettings | None = None,
) -> FastAPI:
    """The HTTP gateway for ``settings``'s database, serving what ``config`` configures.

    ``channels`` is the registry adapters are created from (default: the built-ins and the
    installed entry points); ``clock`` the Gateway's (default: the system clock). Nothing is
    opened here: the Gateway opens when the app starts (its lifespan) and closes when it
    stops. With ``tokens`` (how bearer tokens are signed) the service-client routes are
    served: the token endpoint, the feeds and the imports. ``console`` is the console's
    settings (default: the ``[console]`` section of the configuration in effect).
    """
    config = config or ApiConfig()
    registry = channels or ChannelRegistry.discover()
    _check_config(config, registry)
    if max_concurrency < 1:
        raise ConfigurationError("max_concurrency must be positive", field="max_concurrency")
    notify_channels = sorted(n for n in config.channels if n not in TERMINAL_CHANNELS)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await anyio.to_thread.run_sync(
            start, settings, config, registry, clock, max_concurrency, tokens
        )
        app.state.runtime = runtime
        stop = threading.Event()
        pool = runtime.gateway.store.engine.pool
        sampler = threading.Thread(
            target=_sample, args=(metrics, pool, stop), name="paygate-metrics", daemon=True
        )
        sampler.start()
        try:
            yield
        finally:
            app.state.runtime = None
            stop.set()
            await anyio.to_thread.run_sync(sampler.join)
            metrics.stop()
            await anyio.to_thread.run_sync(runtime.close)

    app = FastAPI(
        title="paygate",
        version=_package_version(),
        summary="Electricity bill payments from every channel into one ledger.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.runtime = None
    app.add_middleware(_RequestContext, metrics=metrics)
    app.add_exception_handler(PaygateError, _on_paygate_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)

    # A route whose part is not configured is not in the app (nor in its document).
    if tokens is not None:
        # Before the accounts router, whose {account_no:path} would take ".../payments".
        app.include_router(oauth.router)
        app.include_router(payment_feed.router)
        app.include_router(supply_orders.router)
        app.include_router(events.router)
        app.include_router(imports.router)
    app.include_router(accounts.router)
    app.include_router(payments.router)
    app.include_router(kiosks.router)
    if config.voucher is not None:
        app.include_router(vouchers.router)
    if PosAdapter.name in config.channels:
        app.include_router(pos.router)
    if notify_channels:
        app.include_router(notify.router)
    if config.callback_secret is not None:
        app.include_router(headend.router)
    app.include_router(operations.router)
    app.include_router(reference.router)
    # The service centre's console (HTML pages for staff, not in the OpenAPI document).
    mount_console(app, console)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, notify_channels=notify_channels)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def check_startup(
    settings: Settings,
    config: ApiConfig,
    *,
    channels: ChannelRegistry | None = None,
    tokens: TokenSettings | None = None,
) -> None:
    """Open what a worker opens at start — the database, every adapter — and close it again.

    ``paygate serve`` calls it before it listens, so that a database that is not migrated, a
    channel that cannot be built or a settlement time zone that is not the utility's stops it
    with a message, rather than each worker failing on its own.
    """
    registry = channels or ChannelRegistry.discover()
    _check_config(config, registry)
    start(settings, config, registry, None, 1, tokens).close()


def app_from_env() -> FastAPI:
    """The app of one ``paygate serve`` worker: the configuration from the environment
    (``PAYGATE_CONFIG`` and the ``PAYGATE_*`` variables; the older ``PAYGATE_API_CONFIG``
    still read), its ``[api]`` section served (none: the kiosk channel only).

    This is the factory uvicorn imports in each worker process
    (``uvicorn --factory paygate.api:app_from_env``).
    """
    config = PaygateConfig.load()
    # The console's finance pages refund money held in suspense through the [refunds] routes.
    served = dataclasses.replace(api_config(config), refund_routes=build_routes(config.refunds))
    return create_app(
        config.settings,
        config=served,
        tokens=TokenSettings.from_config(config),
        console=ConsoleSettings.from_config(config),
    )
