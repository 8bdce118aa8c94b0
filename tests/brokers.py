"""The real brokers the sink tests publish to, and a TCP proxy that cuts connections.

RabbitMQ at 127.0.0.1:5672 (guest/guest) and NATS JetStream at 127.0.0.1:4222 must be running:
without them the tests fail. Every test uses exchange, queue and stream names of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pika

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
NATS_URL = "nats://127.0.0.1:4222"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Proxy:
    """Forwards 127.0.0.1:<port> to a broker. :meth:`drop_next_reply` makes it swallow the
    next bytes the broker sends (the confirm or ack of a publish it has received) and cut
    every connection: the publish arrived, its acknowledgement never did."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._drop = threading.Event()
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply(self) -> None:
        self._drop.set()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self.cuts += 1
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, reply: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            if reply and self._drop.is_set():
                self._drop.clear()
                self.cut()
                return
            try:
                target.sendall(data)
            except OSError:
                return


@contextlib.contextmanager
def rabbit_queue(exchange: str, binding: str = "#") -> Iterator[tuple[Any, str]]:
    """A durable queue bound to ``exchange`` (declared here too); both deleted afterwards."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    channel = connection.channel()
    queue = unique("paygate-test-q")
    try:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, binding)
        yield channel, queue
    finally:
        with contextlib.suppress(Exception):
            if not channel.is_open:
                connection = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
                channel = connection.channel()
            channel.queue_delete(queue)
            channel.exchange_delete(exchange)
            connection.close()


def drain_queue(channel: Any, queue: str) -> list[tuple[Any, Any, bytes]]:
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((method, properties, body))


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def wait_for_port(port: int, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def wait_for_rabbit(seconds: float = 90.0) -> None:
    end = time.monotonic() + seconds
    while True:
        try:
            pika.BlockingConnection(pika.URLParameters(RABBIT_URL)).close()
            return
        except pika.exceptions.AMQPError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


def stream_messages(url: str, stream: str) -> list[tuple[dict[str, str], bytes, str]]:
    """Every message stored in ``stream``: headers, body, subject."""

    async def read() -> list[tuple[dict[str, str], bytes, str]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append((dict(msg.headers or {}), msg.data or b"", msg.subject))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def delete_stream(url: str, stream: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(delete())


class PrivateNats:
    """A nats-server with JetStream of this test's own (on a free port, storing in a
    temporary folder), so that it can be stopped and started again without touching the
    machine's broker."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise AssertionError("nats-server is not installed")
        self._binary = binary
        self._folder = folder
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port = probe.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self._binary,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self._folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 20)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(20)
            self._process = None
