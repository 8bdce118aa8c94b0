"""An AMI head-end (metering master station) simulator: a real HTTP server on 127.0.0.1.

It speaks the webhook wire format of docs/headends.md and checks it independently of the
adapter: it recomputes every signature with :mod:`hmac` itself, refuses a stale timestamp by
the injected clock, and acts at most once per idempotency key. Every request is recorded, with
its idempotency key and whether its signature verified, before any fault is applied.

Faults, all controlled from the test:

* :meth:`HeadEndSimulator.down` until an instant of the injected clock: answer 503, or drop
  each connection without an answer (``how="refuse"``);
* :meth:`HeadEndSimulator.slow`: act, then hold the answer longer than the client waits
  (released at once when the simulator stops, so no test waits it out);
* :meth:`HeadEndSimulator.fail_next`: the next N requests get a 500 and nothing is acted on;
* :meth:`HeadEndSimulator.script`: the next answer verbatim (any status, any body);
* ``callback_copies = 2``: :meth:`HeadEndSimulator.complete` calls back the same signed
  completion twice.

:class:`CallbackReceiver` stands where the core's callback route will: a second loopback
server that keeps each delivery's body and headers as they arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from paygate.clock import FixedClock

TOLERANCE = timedelta(minutes=5)
COMMAND_SECRET = b"paygate-to-head-end-secret-01"  # signs paygate's commands and polls
CALLBACK_SECRET = b"head-end-to-paygate-secret-02"  # signs the head-end's callbacks
_STATUS_PATH = re.compile(r"/commands/([0-9]+)")


def hmac_hex(secret: bytes, timestamp: str, body: bytes) -> str:
    """The head-end's own signing: hex HMAC-SHA256 over ``timestamp + "." + body``."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Received:
    """One request as it reached the simulator."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    signature_valid: bool

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Execution:
    """A command the head-end acted on, and where it stands."""

    order_id: int
    key: str
    command: dict[str, Any]  # the body without ``attempt``, to recognise the same command
    outcome: str
    reference: str
    at: datetime | None
    callback_url: str | None

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "order_id": self.order_id,
            "outcome": self.outcome,
            "reference": self.reference,
        }
        if self.at is not None:
            report["at"] = _utc(self.at)
        return report


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close (the default); the slow fault is released first, and
    # each connection serves one request (HTTP/1.0), so the join is quick.

    def __init__(self, owner: _LoopbackServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.owner.accept_connection()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A crash in a handler must fail the test, not scroll past on stderr.
        self.owner.errors.append(sys.exc_info()[1] or RuntimeError("unknown handler error"))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that stops sending mid-request does not hold a thread for long

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    def do_POST(self) -> None:
        self.server.owner.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator records requests itself."""

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up waiting (the slow fault): nobody is left to answer.
            self.close_connection = True


class _LoopbackServer:
    """A ThreadingHTTPServer on an ephemeral 127.0.0.1 port, run in a thread."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        self.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    def release(self) -> None:
        """Let go of any request held back on purpose."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def accept_connection(self) -> bool:
        return True

    def handle(self, request: _Handler) -> None:
        raise NotImplementedError


class HeadEndSimulator(_LoopbackServer):
    """The head-end; see the module docstring."""

    def __init__(
        self, *, secret: bytes, clock: FixedClock, callback_secret: bytes | None = None
    ) -> None:
        super().__init__()
        self.secret = secret
        self.callback_secret = callback_secret or secret
        self.clock = clock
        self.requests: list[Received] = []
        self.executions: dict[str, Execution] = {}
        self.actions: list[str] = []  # one idempotency key per time the head-end acted
        self.answer_outcome = "dispatched"  # what a new command is answered with
        self.unknown_meters: set[str] = set()
        self.callback_copies = 1
        self.callback_statuses: list[int] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._down_until: datetime | None = None
        self._down_how: Literal["503", "refuse"] = "503"
        self._fail_next = 0
        self._fail_status = 500
        self._slow = 0.0
        self._scripted: deque[tuple[int, bytes, dict[str, str]]] = deque()

    @property
    def commands_url(self) -> str:
        return f"{self.url}/commands"

    # faults

    def down(self, until: datetime, how: Literal["503", "refuse"] = "503") -> None:
        """Be down until ``until`` by the injected clock."""
        with self._lock:
            self._down_until, self._down_how = until, how

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status``, acting on none of them."""
        with self._lock:
            self._fail_next, self._fail_status = count, status

    def slow(self, seconds: float) -> None:
        """Hold each answer ``seconds`` after acting (0: answer at once)."""
        with self._lock:
            self._slow = seconds

    def script(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the next request with exactly this, acting on nothing."""
        with self._lock:
            self._scripted.append((status, body, headers or {}))

    def release(self) -> None:
        self._release.set()

    # the head-end's own doings

    def complete(
        self, order_id: int, *, outcome: str = "completed", reference: str | None = None
    ) -> list[int]:
        """The meter did it: record ``outcome`` now and call back, ``callback_copies`` times.

        Returns the status of each callback delivery (none without a callback URL).
        """
        with self._lock:
            execution = next(e for e in self.executions.values() if e.order_id == order_id)
            execution.outcome = outcome
            execution.at = self.clock.now()
            if reference is not None:
                execution.reference = reference
            report, url = execution.report(), execution.callback_url
        if url is None:
            return []
        statuses = self.deliver(url, json.dumps(report).encode(), copies=self.callback_copies)
        self.callback_statuses.extend(statuses)
        return statuses

    def signed_callback(self, body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
        """The headers the head-end sends with a callback ``body``."""
        timestamp = timestamp or str(int(self.clock.now().timestamp()))
        return {
            "Content-Type": "application/json",
            "X-Headend-Timestamp": timestamp,
            "X-Headend-Signature": hmac_hex(self.callback_secret, timestamp, body),
        }

    def deliver(self, url: str, body: bytes, *, copies: int = 1) -> list[int]:
        """Post the same signed callback ``copies`` times, byte for byte."""
        headers = self.signed_callback(body)
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            return [
                client.post(url, content=body, headers=headers).status_code for _ in range(copies)
            ]

    # serving

    def accept_connection(self) -> bool:
        with self._lock:
            return not self._refusing()

    def _refusing(self) -> bool:
        return (
            self._down_until is not None
            and self.clock.now() < self._down_until
            and self._down_how == "refuse"
        )

    def handle(self, request: _Handler) -> None:
        body = request.read_body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = Received(
            method=request.command,
            path=request.path,
            headers=headers,
            body=body,
            signature_valid=self._signature_valid(headers, body),
        )
        with self._lock:
            self.requests.append(received)
            if self._refusing():
                request.close_connection = True
                return  # no answer at all: the connection just closes
            status, answer, extra = self._decide(received)
            hold = self._slow
        if hold:
            self._release.wait(hold)
        request.answer(status, answer, extra)

    def _signature_valid(self, headers: dict[str, str], body: bytes) -> bool:
        timestamp = headers.get("x-paygate-timestamp", "")
        signature = headers.get("x-paygate-signature", "")
        if not re.fullmatch(r"[0-9]{1,11}", timestamp):
            return False
        if abs(int(timestamp) - self.clock.now().timestamp()) > TOLERANCE.total_seconds():
            return False
        return hmac.compare_digest(hmac_hex(self.secret, timestamp, body), signature)

    def _decide(self, received: Received) -> tuple[int, bytes, dict[str, str]]:
        if self._down_until is not None and self.clock.now() < self._down_until:
            return 503, b'{"error":"maintenance"}', {"Retry-After": "60"}
        if self._scripted:
            return self._scripted.popleft()
        if self._fail_next > 0:
            self._fail_next -= 1
            return self._fail_status, b'{"error":"internal"}', {}
        if not received.signature_valid:
            return 401, b'{"error":"bad_signature"}', {}
        if received.method == "POST" and received.path == "/commands":
            return self._command(received)
        match = _STATUS_PATH.fullmatch(received.path)
        if received.method == "GET" and match:
            order_id = int(match.group(1))
            for execution in self.executions.values():
                if execution.order_id == order_id:
                    return 200, json.dumps(execution.report()).encode(), {}
            return 404, b'{"error":"unknown_order"}', {}
        return 404, b'{"error":"no_such_route"}', {}

    def _command(self, received: Received) -> tuple[int, bytes, dict[str, str]]:
        key = received.idempotency_key
        if not key:
            return 400, b'{"error":"idempotency_key_missing"}', {}
        try:
            command = received.json()
            order_id = int(command["order_id"])
        except (ValueError, KeyError, TypeError):
            return 400, b'{"error":"bad_json"}', {}
        if key != f"paygate-order-{order_id}":
            return 400, b'{"error":"idempotency_key_mismatch"}', {}
        if command.get("meter_address") in self.unknown_meters:
            message = f"meter {command['meter_address']} is not registered at this head-end"
            return 422, json.dumps({"error": "unknown_meter", "message": message}).encode(), {}
        same = {name: value for name, value in command.items() if name != "attempt"}
        held = self.executions.get(key)
        if held is not None:
            if held.command != same:
                return 409, b'{"error":"idempotency_conflict"}', {}
            return 409, json.dumps(held.report()).encode(), {}
        outcome = self.answer_outcome
        execution = Execution(
            order_id=order_id,
            key=key,
            command=same,
            outcome=outcome,
            reference=f"HE-{order_id}",
            at=None if outcome == "dispatched" else self.clock.now(),
            callback_url=command.get("callback_url"),
        )
        self.executions[key] = execution
        self.actions.append(key)
        return 202, json.dumps(execution.report()).encode(), {}


@dataclass(frozen=True)
class Delivery:
    """One callback as it reached the receiver."""

    body: bytes
    headers: dict[str, str]  # as sent, names as the server saw them


class CallbackReceiver(_LoopbackServer):
    """Where the core's callback route will stand: keeps each delivery, answers 204."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def handle(self, request: _Handler) -> None:
        body = request.read_body()
        with self._lock:
            self.deliveries.append(Delivery(body=body, headers=dict(request.headers.items())))
        request.answer(204, b"")
