"""Events to a NATS JetStream stream, acknowledged, deduplicated by ``Nats-Msg-Id``.

nats-py is asyncio. The sink keeps a private event loop (:class:`LoopHost`) that one thread at
a time runs: the dispatcher's, inside :meth:`JetStreamSink.deliver` (a publish costs no thread
hand-off), and the sink's own thread whenever deliveries pause, so that the client keeps
answering the server's pings, notices a lost connection and reconnects while nobody publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from pydantic import SecretStr

from paygate.errors import ConfigurationError
from paygate.events import CONTENT_TYPE, encode
from paygate.outbox import DeliveryError

__all__ = ["JetStreamSink", "LoopHost"]

T = TypeVar("T")


class LoopHost:
    """An asyncio event loop run by whichever thread needs it, never by two at once.

    :meth:`run` runs a coroutine to completion in the calling thread. Between calls the host's
    own thread runs the loop (the client's background tasks: reading, pings, reconnects), once
    callers have been quiet for ``idle`` seconds; a caller that finds it running asks it to
    stop and takes over. During a stream of calls the loop stays with the callers.
    """

    def __init__(self, name: str, *, idle: float = 0.2) -> None:
        self.loop = asyncio.new_event_loop()
        self._idle = idle
        self._running = threading.Lock()  # held by the thread that runs the loop
        self._wanted = threading.Event()  # a caller waits for the loop
        self._poke: asyncio.Event | None = None
        self._last_use = time.monotonic()
        self._closing = False
        self._thread = threading.Thread(target=self._host, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` here, within ``timeout`` seconds (TimeoutError past it)."""
        self._wanted.set()
        try:
            if not self._running.acquire(blocking=False):
                with contextlib.suppress(RuntimeError):  # a closed loop: the lock says so
                    self.loop.call_soon_threadsafe(self._wake)
                self._running.acquire()
            try:
                if self.loop.is_closed():
                    coro.close()
                    raise RuntimeError("the event loop is closed")
                return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))
            finally:
                self._last_use = time.monotonic()
                self._running.release()
        finally:
            self._wanted.clear()

    def close(self) -> None:
        """Stop the host's thread and close the loop (after the caller's last :meth:`run`)."""
        self._closing = True
        self._wanted.set()
        with self._running:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._wake)
        self._thread.join(10)
        with self._running:
            if not self.loop.is_closed():
                self.loop.run_until_complete(_cancel_the_rest())
                self.loop.close()

    def _wake(self) -> None:
        if self._poke is not None:
            self._poke.set()

    def _host(self) -> None:
        while not self._closing:
            # wait until callers have been quiet for a while
            while not self._closing and (
                self._wanted.is_set() or time.monotonic() - self._last_use < self._idle
            ):
                time.sleep(self._idle / 2)
            with self._running:
                if self._closing or self.loop.is_closed():
                    return
                self.loop.run_until_complete(self._until_wanted())

    async def _until_wanted(self) -> None:
        self._poke = asyncio.Event()
        while not (self._wanted.is_set() or self._closing):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), 1.0)
            self._poke.clear()


class JetStreamSink:
    """Publishes each event to ``<subject_prefix>.<type>`` with ``Nats-Msg-Id`` = event id and
    returns once JetStream acknowledged it (stored in ``stream``).

    With ``declare`` (the default) the stream is created if missing, capturing
    ``<subject_prefix>.>`` with ``duplicate_window`` seconds of de-duplication; an existing
    stream must capture that subject. A redelivery inside the window is stored once (its ack
    says duplicate); a later one reaches consumers again with the same ``Nats-Msg-Id`` and
    CloudEvents ``id``. The client reconnects by itself after a broker restart; a publish whose
    ack did not arrive within ``timeout`` is a failed delivery, and a connection that was
    closed is opened anew by the next delivery.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str,
        subject_prefix: str = "paygate",
        name: str = "nats",
        token: SecretStr | None = None,
        user: str | None = None,
        password: SecretStr | None = None,
        declare: bool = True,
        duplicate_window: float = 120.0,
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("nats://", "tls://")):
            raise ConfigurationError("a nats:// or tls:// URL", field="url")
        if not stream or any(c in stream for c in " .*>"):
            raise ConfigurationError(
                "a stream name without spaces, dots or wildcards", field="stream"
            )
        prefix = subject_prefix.strip(".")
        if not prefix or any(c in prefix for c in " *>"):
            raise ConfigurationError("a subject prefix without wildcards", field="subject_prefix")
        self.name = name
        self.stream = stream
        self.subject_prefix = prefix
        self._url = url
        self._auth: dict[str, Any] = {}
        if token is not None:
            self._auth["token"] = token.get_secret_value()
        if user is not None:
            self._auth["user"] = user
        if password is not None:
            self._auth["password"] = password.get_secret_value()
        self._declare = declare
        self._duplicate_window = duplicate_window
        self._timeout = timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = threading.Lock()
        self._host = LoopHost(f"paygate-sink-{name}")
        self._closed = False

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Publish and wait for JetStream's ack; DeliveryError if it did not come."""
        subject = f"{self.subject_prefix}.{event['type']}"
        headers = {"Nats-Msg-Id": str(event["id"]), "Content-Type": CONTENT_TYPE}
        body = encode(event)
        with self._lock:
            try:
                self._run(self._publish(subject, body, headers), self._timeout * 2 + 5)
            except DeliveryError:
                raise
            except Exception as exc:  # whatever the client raised: not acknowledged
                raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._closed:
            coro.close()
            raise DeliveryError(f"{self.name}: the sink is closed")
        try:
            return self._host.run(coro, timeout)
        except TimeoutError:
            raise DeliveryError(f"{self.name}: no answer within {timeout:g} s") from None

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        js = await self._connected()
        try:
            await js.publish(
                subject, body, timeout=self._timeout, stream=self.stream, headers=headers
            )
        except (nats.errors.ConnectionClosedError, nats.errors.StaleConnectionError):
            await self._drop()
            raise

    async def _connected(self) -> JetStreamContext:
        if self._nc is not None and self._js is not None and not self._nc.is_closed:
            return self._js
        await self._drop()
        nc = await asyncio.wait_for(
            nats.connect(
                servers=[self._url],
                connect_timeout=self._timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_ignore,
                **self._auth,
            ),
            self._timeout,
        )
        try:
            js = nc.jetstream(timeout=self._timeout)
            await self._check_stream(js)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        return js

    async def _check_stream(self, js: JetStreamContext) -> None:
        wanted = f"{self.subject_prefix}.>"
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not self._declare:
                raise DeliveryError(f"{self.name}: stream {self.stream} does not exist") from None
            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[wanted],
                    duplicate_window=self._duplicate_window,
                )
            )
            return
        subjects = info.config.subjects or []
        if not any(s == ">" or (s.endswith(".>") and wanted.startswith(s[:-1])) for s in subjects):
            raise DeliveryError(
                f"{self.name}: stream {self.stream} does not capture {wanted} ({subjects})"
            )

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):  # already broken: nothing left to close
                await nc.close()

    def close(self) -> None:
        """Close the connection and stop the sink's event loop."""
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(DeliveryError):
                self._run(self._drop(), self._timeout + 5)
            self._closed = True
            self._host.close()

    def __repr__(self) -> str:
        return f"JetStreamSink({self.name!r}, {self._url!r}, stream={self.stream!r})"


async def _cancel_the_rest() -> None:
    """Cancel the loop's other tasks (the client's, once closed) and let them finish."""
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)


async def _ignore(exc: Exception) -> None:
    """The client reports each failed reconnect here; the next delivery's outcome is what
    counts, so they are not logged one by one."""
