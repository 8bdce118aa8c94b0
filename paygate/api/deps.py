"""What the routes are given: the running worker's Gateway and adapters, and how to read a request.

Invariant: a route holds no state of its own. What it works with — the open Gateway, the
adapters built for the configured channels, the worker's metrics — is made once per worker in
the app's lifespan (:func:`start`), kept on ``app.state``, and injected into each route as a
dependency (:data:`RuntimeDep`, :data:`MetricsDep`). Blocking work goes through
:meth:`Runtime.run`, on a worker thread, at most ``max_concurrency`` at a time.

Which channel a terminal route serves is its adapter class's ``name``: the kiosk, voucher and
POS routes are written for those adapters (their contexts differ), and every other configured
channel is served by the one notify route, whichever it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Final, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from pydantic import BaseModel, SecretBytes
from starlette.responses import Response

from paygate.api import auth
from paygate.api.config import ApiConfig
from paygate.api.metrics import Metrics
from paygate.api.problems import RequestValidationProblem
from paygate.channels.base import AdapterContext, ChannelAdapter, ChannelRegistry
from paygate.channels.errors import PayloadTooLargeError
from paygate.channels.kiosk import KioskAdapter, KioskContext
from paygate.channels.pos import PosAdapter, PosContext
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore, SqlOrderStore, SqlPosLedger
from paygate.channels.voucher import VoucherAdapter, VoucherContext
from paygate.clock import Clock
from paygate.config import Settings
from paygate.config.sections import DEFAULT_IMPORT_MAX_BYTES
from paygate.devices import Device, DeviceRegistry, key_encryption_key_from_env
from paygate.errors import StoreError
from paygate.gateway import Gateway
from paygate.service_clients import ServiceClientRegistry
from paygate.tokens import TokenService, TokenSettings
from paygate.vouchers import VoucherService

__all__ = [
    "TERMINAL_CHANNELS",
    "MetricsDep",
    "Runtime",
    "RuntimeDep",
    "json_response",
    "matching",
    "read_body",
    "request_headers",
    "request_target",
    "start",
]

T = TypeVar("T")

TERMINAL_CHANNELS: Final = frozenset({KioskAdapter.name, VoucherAdapter.name, PosAdapter.name})
"""Channels served at routes of their own; every other configured channel is a notify channel."""

_JSON: Final = "application/json"


# ── what a running worker holds ──────────────────────────────────────────────────────────


@dataclass
class Runtime:
    """The open Gateway and what the routes build on it; one per worker, made in the lifespan."""

    gateway: Gateway
    nonces: SqlNonceStore
    kiosk: KioskAdapter
    kiosk_ledger: SqlKioskLedger
    vouchers: VoucherAdapter | None
    pos: PosAdapter | None
    notify: dict[str, ChannelAdapter[Any]]
    callback_secret: SecretBytes | None
    limiter: anyio.CapacityLimiter
    window: timedelta
    tokens: TokenService | None = None
    """Bearer tokens of service clients; None when token signing is not configured."""
    import_max_bytes: int = DEFAULT_IMPORT_MAX_BYTES
    """The largest CSV body the import routes read."""

    async def run(self, work: Callable[[], T]) -> T:
        """``work`` on a worker thread, once one of the ``max_concurrency`` is free."""
        return await anyio.to_thread.run_sync(work, limiter=self.limiter)

    def authenticate(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Device:
        """The registered device that signed this request, or the refusal."""
        return auth.authenticate(
            self.gateway.store,
            self.nonces,
            method,
            target,
            headers,
            body,
            now=self.gateway.clock.now(),
            window=self.window,
        )

    def close(self) -> None:
        self.gateway.close()


def start(
    settings: Settings,
    config: ApiConfig,
    registry: ChannelRegistry,
    clock: Clock | None,
    max_concurrency: int,
    tokens: TokenSettings | None = None,
) -> Runtime:
    """Open the Gateway and build every configured channel's adapter on it (and, with
    ``tokens``, the service clients' token service)."""
    gateway = Gateway.open(settings=settings, clock=clock)
    try:
        gateway.use_refund_routes(config.refund_routes)
        store = gateway.store
        nonces = SqlNonceStore(store)
        # The API verifies Ed25519 signatures only: it never needs a MAC key, so no
        # key-encryption key is given to the registry.
        devices = DeviceRegistry(store, gateway.clock)
        kiosk_ledger = SqlKioskLedger(store)
        kiosk = registry.create(
            KioskAdapter.name,
            config.kiosk,
            KioskContext(
                clock=gateway.clock,
                nonces=nonces,
                devices=devices,
                ledger=kiosk_ledger,
            ),
        )
        assert isinstance(kiosk, KioskAdapter)
        vouchers: VoucherAdapter | None = None
        card_config = config.voucher
        if card_config is not None:
            service = (
                VoucherService(gateway, config.voucher_pin_key)
                if config.voucher_pin_key is not None
                else None
            )
            created = registry.create(
                VoucherAdapter.name,
                card_config,
                VoucherContext(clock=gateway.clock, nonces=nonces, vouchers=service),
            )
            assert isinstance(created, VoucherAdapter)
            vouchers = created
        pos: PosAdapter | None = None
        if PosAdapter.name in config.channels:
            # POS terminals MAC their messages: their keys are stored encrypted, so the
            # registry that hands them to the adapter needs the key-encryption key.
            kek = config.key_encryption_key or key_encryption_key_from_env()
            terminals = DeviceRegistry(store, gateway.clock, kek=kek)
            made = registry.create(
                PosAdapter.name,
                config.channels[PosAdapter.name],
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
            if name not in TERMINAL_CHANNELS
        }
        # The dates the core gives payments are the dates each channel settles them on.
        gateway.use_channels(
            [kiosk, *([vouchers] if vouchers else []), *([pos] if pos else []), *notify.values()]
        )
        return Runtime(
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
            import_max_bytes=config.import_max_bytes,
            tokens=None
            if tokens is None
            else TokenService(tokens, ServiceClientRegistry(store, gateway.clock), gateway.clock),
        )
    except BaseException:
        gateway.close()
        raise


# ── the dependencies ─────────────────────────────────────────────────────────────────────
# Coroutines, so that FastAPI calls them on the event loop rather than on a worker thread:
# threads are for blocking work, and they are counted (Runtime.run).


async def _runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise StoreError("the gateway is not running")
    assert isinstance(runtime, Runtime)
    return runtime


async def _metrics(request: Request) -> Metrics:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
"""The worker's running Gateway and adapters; a 503 problem while the app is not started."""
MetricsDep = Annotated[Metrics, Depends(_metrics)]
"""The worker's in-process counters."""


# ── reading a request ────────────────────────────────────────────────────────────────────


def request_headers(request: Request) -> dict[str, str]:
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


def request_target(request: Request) -> str:
    """The request target as received (path still percent-encoded, and query): what is signed."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    target = bytes(raw).decode("latin-1")
    query = request.scope.get("query_string", b"")
    return f"{target}?{bytes(query).decode('latin-1')}" if query else target


async def read_body(request: Request, limit: int, *, keep_excess: bool = False) -> bytes:
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


def matching(value: str, pattern: str, field: str, what: str) -> str:
    """``value`` when it matches ``pattern``; else the refusal naming ``field``."""
    if not re.match(pattern, value):
        raise RequestValidationProblem(f"{field} is {what}", field=field)
    return value


def json_response(model: BaseModel, status: int = 200) -> Response:
    """``model`` as the JSON answer."""
    return Response(model.model_dump_json().encode("utf-8"), status_code=status, media_type=_JSON)
