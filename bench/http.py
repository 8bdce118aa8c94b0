"""HTTP throughput: kiosk payments through ``POST /v1/payments`` beside in-process ``Gateway.pay``.

Run from the repository root::

    .venv/bin/python bench/http.py            # full counts, two rounds (a few minutes)
    .venv/bin/python bench/http.py --quick    # small counts, one round: does it still work?

One PostgreSQL database is created beside the admin connection (``--pg-url``), migrated, and
given the kiosks (one Ed25519 device per caller, registered as ``paygate devices add`` does)
and the accounts (each with a large open bill, so that every payment is allocated to it). In
the same run, on the same database, the script measures:

* **in-process**: ``Gateway.pay`` called by 1 thread, and by ``--callers`` threads, in this
  process — what the core does without HTTP;
* **HTTP, 1 and 2 workers**: ``paygate serve --workers N`` as a real subprocess (uvicorn with
  uvloop and httptools, device authentication against the database, the kiosk channel's
  verification and mapping, the nonce committed with the payment), driven by ``--callers``
  threads here, each on its own keep-alive connection as its own kiosk;
* **HTTP, 2 workers, PaygateClient callers** (for scale): the same, with the real client doing
  its signing, sending and parsing inside the timed loop.

Every run but the first two is made with group commit (``--window``, default the setting's
2 ms: concurrent payments share one transaction and one commit), and HTTP with 2 workers
also without it (window 0), so that the script prints what grouping brings over HTTP.

Inputs are made before the timer on both sides: the in-process callers build their
``PaymentIntent``s, the HTTP callers sign their requests (a fresh nonce each, timestamps well
inside the five-minute window); the server verifies every one. The load generator shares the
machine's CPUs with the server and the database, which is why the main HTTP lines spend as
little of them as they can; the client line shows what the full client costs on top.

Every caller pays its own accounts (no two callers wait on one account's lock), one yuan at a
time. Each run starts with warm-up payments, then all callers start together at a barrier;
throughput is all timed payments over (last end − first start), latency the time of each call
as its caller saw it. Each figure is the best of ``--rounds`` (the order of the runs reverses
every other round). The targets: HTTP with 2 workers and no grouping at ≥ 0.5 × the best
in-process throughput without grouping; HTTP with 2 workers and group commit at ≥ 2 × one
caller's in-process ``Gateway.pay`` (``--callers`` callers, 32 by default). After the runs
the script checks that the ledger holds exactly the payments made, each once, and that it
verifies.
"""

# ruff: noqa: E402 - the imports wait for sys.path to be fixed, just below.
from __future__ import annotations

import sys
from pathlib import Path

# Run as bench/http.py, this file's directory comes first on sys.path, and "import http" — which
# the standard library and httpx do — would find this file instead of the standard package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paygate import Gateway, Money, PaymentIntent, Settings
from paygate.client import PaygateClient
from paygate.devices import DeviceRegistry, sign_request
from paygate.store import migrate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CURRENCY = "CNY"
YUAN = Money(100, CURRENCY)
WARMUP = 5  # payments each caller makes before the timer starts
ACCOUNTS_PER_CALLER = 20
TARGET = 0.5
GROUP_TARGET = 2.0
PAY_PATH = "/v1/payments"
GROUPED = ", group commit"


@dataclass
class Figures:
    """One measured run."""

    label: str
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
        return ordered[rank] * 1000


@dataclass(frozen=True)
class Kiosk:
    device_id: str
    key: Ed25519PrivateKey
    accounts: tuple[str, ...]


def prepare(url: str, callers: int) -> list[Kiosk]:
    """Kiosks and accounts: each caller its own device and its own accounts with a big bill."""
    kiosks = []
    with Gateway.open(settings=Settings(database_url=url)) as gateway:
        devices = DeviceRegistry(gateway.store, gateway.clock)
        for caller in range(callers):
            key = Ed25519PrivateKey.generate()
            device_id = f"BK{caller:02d}"
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            devices.add(device_id, "kiosk", public_key_pem=public.decode("ascii"))
            accounts = tuple(f"39{caller:02d}{n:06d}" for n in range(ACCOUNTS_PER_CALLER))
            for account_no in accounts:
                gateway.open_account(account_no)
                gateway.issue_bill(
                    account_no,
                    bill_no=f"BENCH-{account_no}",
                    amount=Money(10**10, CURRENCY),
                    period="2026-10",
                    due_date=date(2099, 12, 31),
                )
            kiosks.append(Kiosk(device_id, key, accounts))
    return kiosks


def txn_id(tag: str, n: int) -> str:
    return f"cash-{tag}n{n + WARMUP:06d}"


def timed(
    label: str,
    kiosks: Sequence[Kiosk],
    each: int,
    make: Callable[[int, Kiosk, int], Any],
    send: Callable[[int, Any], object],
) -> Figures:
    """Per caller: ``make`` every input (untimed), send WARMUP of them, then the rest, timed."""
    figures = Figures(label)
    barrier = threading.Barrier(len(kiosks))
    lock = threading.Lock()
    spans: list[tuple[float, float]] = []
    failures: list[BaseException] = []

    def caller(index: int, kiosk: Kiosk) -> None:
        try:
            inputs = [make(index, kiosk, n) for n in range(-WARMUP, each)]
            for item in inputs[:WARMUP]:
                send(index, item)
            barrier.wait()
            mine = []
            start = time.perf_counter()
            for item in inputs[WARMUP:]:
                began = time.perf_counter()
                send(index, item)
                mine.append(time.perf_counter() - began)
            end = time.perf_counter()
        except BaseException as exc:
            barrier.abort()
            with lock:
                failures.append(exc)
            return
        with lock:
            figures.latencies.extend(mine)
            spans.append((start, end))

    threads = [threading.Thread(target=caller, args=(i, k)) for i, k in enumerate(kiosks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{label}: {failures[0]!r}") from failures[0]
    figures.count = len(figures.latencies)
    figures.seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    return figures


def in_process(
    url: str, kiosks: Sequence[Kiosk], each: int, tag: str, window: float = 0.0
) -> Figures:
    paid_at = datetime.now(UTC)
    label = f"in-process Gateway.pay, {len(kiosks)} thread{'s' if len(kiosks) > 1 else ''}"
    label += GROUPED if window else ""
    settings = Settings(database_url=url, group_commit_window_ms=window)
    with Gateway.open(settings=settings) as gateway:

        def make(index: int, kiosk: Kiosk, n: int) -> PaymentIntent:
            return PaymentIntent(
                channel="kiosk",
                channel_txn_id=f"{kiosk.device_id}:{txn_id(tag, n)}",
                account_no=kiosk.accounts[n % len(kiosk.accounts)],
                amount=YUAN,
                paid_at=paid_at,
                terminal_id=kiosk.device_id,
            )

        return timed(label, kiosks, each, make, lambda index, intent: gateway.pay(intent))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(url: str, workers: int, window: float) -> Iterator[int]:
    """``paygate serve --workers N`` on a free port, until the block ends; the port.

    ``window`` is the group commit window in milliseconds (0: every payment its own commit).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    env["PAYGATE_GROUP_COMMIT_WINDOW_MS"] = str(window)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paygate.cli",
            "serve",
            *("--workers", str(workers), "--port", str(port)),
            *("--database-url", url, "--log-level", "warning"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError("paygate serve exited")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("paygate serve did not come up")
            time.sleep(0.1)
        yield port
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def over_http(
    url: str, kiosks: Sequence[Kiosk], each: int, workers: int, tag: str, window: float
) -> Figures:
    """Signed requests, made before the timer, sent on one keep-alive connection per caller."""
    label = f"HTTP POST /v1/payments, {workers} worker{'s' if workers > 1 else ''}"
    label += GROUPED if window else ""
    with serving(url, workers, window) as port:
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in kiosks]
        paid_at = datetime.now(UTC).isoformat()

        def make(index: int, kiosk: Kiosk, n: int) -> tuple[bytes, dict[str, str]]:
            key = txn_id(tag, n)
            body = json.dumps(
                {
                    "txn_id": key,
                    "account_no": kiosk.accounts[n % len(kiosk.accounts)],
                    "amount": YUAN.minor,
                    "currency": CURRENCY,
                    "method": "cash",
                    "paid_at": paid_at,
                },
                separators=(",", ":"),
            ).encode()
            headers = sign_request(
                kiosk.key, kiosk.device_id, "POST", PAY_PATH, body, now=datetime.now(UTC)
            )
            headers.update({"Idempotency-Key": key, "Content-Type": "application/json"})
            return body, headers

        def send(index: int, request: tuple[bytes, dict[str, str]]) -> object:
            connection = connections[index]
            connection.request("POST", PAY_PATH, body=request[0], headers=request[1])
            answer = connection.getresponse()
            content = answer.read()
            if answer.status != 201:
                raise RuntimeError(f"{answer.status}: {content[:300]!r}")
            return content

        try:
            return timed(label, kiosks, each, make, send)
        finally:
            for connection in connections:
                connection.close()


def with_client(
    url: str, kiosks: Sequence[Kiosk], each: int, workers: int, tag: str, window: float
) -> Figures:
    """The real client, signing, sending and parsing inside the timed loop."""
    label = f"HTTP, {workers} workers, PaygateClient callers" + (GROUPED if window else "")
    with serving(url, workers, window) as port:
        clients = [
            PaygateClient(
                f"http://127.0.0.1:{port}",
                device_id=k.device_id,
                private_key=k.key,
                timeout=30.0,
                max_retries=0,
            )
            for k in kiosks
        ]

        def make(index: int, kiosk: Kiosk, n: int) -> tuple[str, str]:
            return kiosk.accounts[n % len(kiosk.accounts)], txn_id(tag, n)

        def send(index: int, item: tuple[str, str]) -> object:
            return clients[index].pay(item[0], YUAN, idempotency_key=item[1])

        try:
            return timed(label, kiosks, each, make, send)
        finally:
            for client in clients:
                client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--n", type=int, help="timed payments per run (default 6000; quick 400)")
    parser.add_argument("--callers", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument(
        "--window",
        type=float,
        default=Settings().group_commit_window_ms,
        help="group commit window in ms of the grouped runs (default: the setting's default)",
    )
    parser.add_argument("--rounds", type=int, help="rounds, best kept (default 2; quick 1)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL admin connection")
    args = parser.parse_args(argv)
    total = args.n or (400 if args.quick else 6000)
    rounds = args.rounds or (1 if args.quick else 2)
    callers = args.callers
    each = max(1, total // callers)

    name = f"paygate_bench_http_{os.getpid()}"
    url = f"{args.pg_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(url)
        kiosks = prepare(url, callers)
        best: dict[str, Figures] = {}
        made = 0
        print(
            f"paygate HTTP benchmark on PostgreSQL: {callers} callers, {each * callers} timed "
            f"payments a run, {rounds} round(s); {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start",
            flush=True,
        )
        for round_no in range(rounds):
            r = round_no
            w = args.window
            runs: list[tuple[int, Callable[[], Figures]]] = [
                (1, partial(in_process, url, kiosks[:1], each * callers, f"p1r{r}")),
                (callers, partial(in_process, url, kiosks, each, f"pnr{r}")),
                (callers, partial(in_process, url, kiosks, each, f"pgr{r}", w)),
                (callers, partial(over_http, url, kiosks, each, 1, f"h1r{r}", w)),
                (callers, partial(over_http, url, kiosks, each, 2, f"h2r{r}", 0.0)),
                (callers, partial(over_http, url, kiosks, each, 2, f"g2r{r}", w)),
                (callers, partial(with_client, url, kiosks, each, 2, f"c2r{r}", w)),
            ]
            if round_no % 2:
                runs.reverse()
            for callers_in_run, run in runs:
                figures = run()
                made += figures.count + WARMUP * callers_in_run
                print(
                    f"  round {round_no + 1}: {figures.label:<44} {figures.rate:7.0f}/s", flush=True
                )
                if figures.label not in best or figures.rate > best[figures.label].rate:
                    best[figures.label] = figures

        print()
        print(f"{'run':<60} {'payments/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for figures in best.values():
            print(
                f"{figures.label:<60} {figures.rate:10.0f} {figures.percentile(0.50):8.2f} "
                f"{figures.percentile(0.99):8.2f}"
            )
        # The old comparison, without grouping on either side; then group commit against
        # one caller's Gateway.pay, which is what a lone kiosk or a sequential importer gets.
        ungrouped = [f for f in best.values() if GROUPED not in f.label]
        in_process_best = max(f.rate for f in ungrouped if f.label.startswith("in-process"))
        single = best["in-process Gateway.pay, 1 thread"].rate
        plain = best["HTTP POST /v1/payments, 2 workers"].rate
        grouped = best[f"HTTP POST /v1/payments, 2 workers{GROUPED}"].rate
        print()
        for figures in best.values():
            if figures.label != "in-process Gateway.pay, 1 thread":
                print(f"{figures.label} / in-process, 1 thread = {figures.rate / single:.2f}")
        ratio = plain / in_process_best
        print(
            f"HTTP POST /v1/payments, 2 workers, no grouping / best in-process, no grouping = "
            f"{ratio:.2f}  target >= {TARGET}  {'PASS' if ratio >= TARGET else 'MISS'}"
        )
        print(f"group commit over HTTP, 2 workers: {grouped / plain:.2f} x without it")
        ratio = grouped / single
        print(
            f"HTTP POST /v1/payments, 2 workers{GROUPED} / in-process Gateway.pay, 1 thread = "
            f"{ratio:.2f}  target >= {GROUP_TARGET}  {'PASS' if ratio >= GROUP_TARGET else 'MISS'}",
            flush=True,
        )

        with Gateway.open(settings=Settings(database_url=url)) as gateway:
            posted, distinct = gateway.store.run(
                lambda tx: tx.one(
                    "SELECT COUNT(*), COUNT(DISTINCT channel_txn_id) FROM payments "
                    "WHERE channel = 'kiosk'"
                ),
                write=False,
            ) or (0, 0)
            report = gateway.verify()
        if posted != made or distinct != made or not report.ok:
            print(
                f"CHECK FAILED: {posted} payments ({distinct} distinct) in the ledger, {made} "
                f"made; verify {'ok' if report.ok else report.findings[:3]}"
            )
            return 1
        print(f"check: {posted} payments in the ledger, each once, as made; the ledger verifies")
        return 0
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
