"""What the HTTP tests share: a real uvicorn server on loopback, devices, and a world to pay into.

The server runs in a thread with ``uvicorn.Server`` on a socket bound here (port 0: the system
chooses), so a test knows its port before the server starts and can stop it and start it
again on the same port, as an outage and a recovery look to a kiosk.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from types import TracebackType
from typing import Any, Self

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from paygate.api import ApiConfig, create_app
from paygate.client import PaygateClient
from paygate.clock import DEFAULT_TIMEZONE, Clock, SystemClock, business_date
from paygate.config import Settings
from paygate.devices import DeviceRegistry
from paygate.gateway import Gateway
from paygate.money import Money
from tests.channels.kiosk_support import ed25519_key, public_pem

ACCOUNT = "3100000001"
OTHER_ACCOUNT = "3100000002"
BILL = Money(101000, "CNY")


def settings_for(database_url: str) -> Settings:
    """Settings of a test: no periodic sealing, SQLite without fsync on each commit."""
    return Settings(database_url=database_url, seal_every=0, sqlite_synchronous="NORMAL")


class LiveServer:
    """A real uvicorn server on 127.0.0.1, in a thread, stoppable and restartable."""

    def __init__(self, app: Callable[[], FastAPI], *, port: int = 0) -> None:
        self._app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app: FastAPI | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets that say
        # so, and without it every keep-alive answer waits out the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.app = self._app()
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            ws="none",
            loop="asyncio",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(10)
                sock.close()
                raise RuntimeError("the server did not start (see the log)")
            time.sleep(0.01)
        self._server, self._thread, self._socket = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(30)
        self._socket.close()
        assert not self._thread.is_alive(), "the server did not stop"
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def live_server(
    database_url: str,
    config: ApiConfig | None = None,
    *,
    clock: Clock | None = None,
    port: int = 0,
) -> LiveServer:
    """A server (not started) for ``database_url`` with ``config``."""
    settings = settings_for(database_url)
    return LiveServer(lambda: create_app(settings, config=config, clock=clock), port=port)


@dataclass
class World:
    """The database's side, opened beside the server: accounts, bills, devices."""

    gateway: Gateway
    devices: DeviceRegistry

    def register(self, device_id: str, channel: str = "kiosk") -> Ed25519PrivateKey:
        key = ed25519_key(device_id)
        self.devices.add(device_id, channel, public_key_pem=public_pem(key))
        return key

    def days_ahead(self, days: int) -> date:
        """The business date ``days`` after the gateway's clock: a due date or a card's expiry
        that stays as far from the clock the gateway runs with, the real one included, on
        whatever day the test runs."""
        return business_date(self.gateway.clock.now(), DEFAULT_TIMEZONE) + timedelta(days=days)

    def customer(
        self, account_no: str = ACCOUNT, *, owes: Money = BILL, name: str = "张三"
    ) -> None:
        self.gateway.open_account(account_no, name=name)
        self.gateway.issue_bill(
            account_no,
            bill_no=f"B-{account_no}",
            amount=owes,
            period="2026-10",
            # Due in 20 days (2026-12-15 by the fixed clock): never overdue, so paying what
            # the bill says clears it, on any day the real clock shows.
            due_date=self.days_ahead(20),
        )

    def balance(self, account_no: str) -> int:
        return self.gateway.account_status(account_no).balance.minor

    def payments(self, channel: str | None = None) -> int:
        where = "" if channel is None else " WHERE channel = :c"
        return int(
            self.gateway.store.run(
                lambda tx: tx.scalar(f"SELECT COUNT(*) FROM payments{where}", {"c": channel}),
                write=False,
            )
        )


def open_world(database_url: str, clock: Clock | None = None) -> World:
    gateway = Gateway.open(settings=settings_for(database_url), clock=clock or SystemClock())
    return World(gateway, DeviceRegistry(gateway.store, gateway.clock))


def client(
    server: LiveServer, device_id: str, key: Ed25519PrivateKey, **options: Any
) -> PaygateClient:
    """A client of ``server`` signing as ``device_id``; quick to give up unless told."""
    options.setdefault("timeout", 10.0)
    options.setdefault("max_retries", 0)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    return PaygateClient(server.url, device_id=device_id, private_key=key, **options)
