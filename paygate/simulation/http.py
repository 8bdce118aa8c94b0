"""The gateway app over real HTTP, for the share of channel messages the simulation sends
that way: a uvicorn server on a loopback port in a thread, serving paygate's app on the
simulation's database with the simulation's clock and the same channel configurations as the
in-process adapters. It is a second process's Gateway on the same database, as in production.
It can die and be started again (:meth:`HttpGateway.restart`): a fresh app, a fresh Gateway,
on the same port. The POS terminals' key-encryption key is given to the app
(``ApiConfig.key_encryption_key``), where ``paygate serve`` reads it from its environment.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import httpx
import uvicorn
from pydantic import SecretBytes

from paygate.api import ApiConfig, create_app
from paygate.channels.base import ChannelConfig, NotifyResult
from paygate.clock import Clock
from paygate.config import Settings

__all__ = ["HttpGateway"]

_TIMEOUT = 120.0
"""Seconds an answer may take: long, so that a slow machine never turns an answer into a
timeout (which would change what the run does, and so its digest)."""


class HttpGateway:
    """paygate's HTTP gateway on 127.0.0.1, started and stopped by the simulation."""

    def __init__(
        self,
        settings: Settings,
        channels: Mapping[str, ChannelConfig],
        clock: Clock,
        *,
        voucher_pin_key: SecretBytes | None = None,
        key_encryption_key: SecretBytes | None = None,
    ) -> None:
        # The voucher route is served when its channel is configured, with the PIN key of
        # the in-process vouchers.
        self._config = ApiConfig(
            channels=dict(channels),
            voucher_pin_key=voucher_pin_key,
            key_encryption_key=key_encryption_key,
        )
        self._settings = settings
        self._clock = clock
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._client: httpx.Client | None = None
        self._port = 0
        self.requests = 0
        self.restarts = 0

    @property
    def base_url(self) -> str:
        """Where the gateway serves (the same across restarts)."""
        assert self._port, "start() first"
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        """Bind a loopback port (the one served before, after a restart), start the server
        and wait until it serves."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        port = sock.getsockname()[1]
        app = create_app(self._settings, config=self._config, clock=self._clock)
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            ws="none",
            loop="asyncio",
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
                raise RuntimeError("the simulation's HTTP gateway did not start")
            time.sleep(0.01)
        self._server, self._thread, self._socket, self._port = server, thread, sock, port
        self._client = httpx.Client(base_url=self.base_url, timeout=_TIMEOUT)
        return self

    def restart(self) -> None:
        """The gateway process died: stop it and start a fresh one on the same port. What it
        had not committed is lost; what it had is in the database."""
        self.restarts += 1
        self.stop()
        self.start()

    def notify(self, channel: str, body: bytes, headers: Mapping[str, str]) -> NotifyResult:
        """POST a channel's notification as the channel would; the answer as a NotifyResult
        (without a receipt: the caller reads what was posted from the payment feed)."""
        return self.post(f"/v1/channels/{channel}/notify", body, headers)

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> NotifyResult:
        """POST a peer's message to ``path`` as the peer would; the answer as a NotifyResult
        (without a receipt: the caller reads the answer's body, or the payment feed)."""
        assert self._client is not None, "start() first"
        self.requests += 1
        answer = self._client.post(path, content=body, headers=headers)
        ok = answer.status_code < 300
        return NotifyResult(
            status_code=answer.status_code,
            body=answer.content,
            content_type=answer.headers.get("content-type"),
            error_code=None if ok else f"http_{answer.status_code}",
        )

    def stop(self) -> None:
        """Stop the server and close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
