"""Two uvicorn worker processes on one PostgreSQL database behave as one gateway.

``paygate serve --workers 2`` runs as a real subprocess; four clients (threads, each its own
connection pool) send the same payments with the same idempotency keys at once, so that the
duplicates race each other across the two processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from paygate.channels.kiosk import KioskReceipt
from paygate.client import PaygateClient
from paygate.money import Money
from tests.api.support import ACCOUNT, OTHER_ACCOUNT, World, open_world

REPO = Path(__file__).resolve().parents[2]
PAYMENTS = 30  # distinct payments, each sent by all four clients
CLIENTS = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_workers(pg_url: str, tmp_path: Path) -> Iterator[str]:
    """``paygate serve --workers 2`` on ``pg_url``; its base URL once both answer."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paygate.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--database-url",
            pg_url,
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "paygate serve did not come up"
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            log.close()


@pytest.mark.postgres
def test_two_workers_and_four_clients_post_each_duplicated_payment_once(
    pg_url: str, two_workers: str
) -> None:
    world: World = open_world(pg_url)
    try:
        world.customer(ACCOUNT, owes=Money(100000, "CNY"))
        world.customer(OTHER_ACCOUNT, owes=Money(100000, "CNY"))
        key = world.register("K0001")
        paid_at = datetime.now(UTC)
        plan = [
            (f"cash-{n:04d}", ACCOUNT if n % 2 else OTHER_ACCOUNT, 100 + n) for n in range(PAYMENTS)
        ]
        receipts: dict[str, list[KioskReceipt]] = defaultdict(list)
        errors: list[BaseException] = []
        start = threading.Barrier(CLIENTS)
        lock = threading.Lock()

        def kiosk_connection(offset: int) -> None:
            client = PaygateClient(
                two_workers,
                device_id="K0001",
                private_key=key,
                max_retries=3,
                backoff_base=0.05,
                backoff_cap=0.2,
            )
            with client:
                start.wait()
                # Each client walks the plan from its own offset: every payment is in flight
                # from several clients at once, in different orders.
                for step in range(PAYMENTS):
                    txn_id, account_no, fen = plan[(step + offset * 7) % PAYMENTS]
                    try:
                        receipt = client.pay(
                            account_no, Money(fen, "CNY"), paid_at=paid_at, idempotency_key=txn_id
                        )
                    except BaseException as exc:
                        with lock:
                            errors.append(exc)
                        return
                    with lock:
                        receipts[txn_id].append(receipt)

        threads = [threading.Thread(target=kiosk_connection, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        for txn_id, _, _ in plan:
            answers = receipts[txn_id]
            assert len(answers) == CLIENTS
            assert len({r.payment_id for r in answers}) == 1  # one payment, whoever answered
            assert sum(not r.replayed for r in answers) == 1  # posted once, replayed three times
        assert world.payments("kiosk") == PAYMENTS
        owed = {ACCOUNT: 100000, OTHER_ACCOUNT: 100000}
        for _, account_no, fen in plan:
            owed[account_no] -= fen
        assert world.balance(ACCOUNT) == owed[ACCOUNT]
        assert world.balance(OTHER_ACCOUNT) == owed[OTHER_ACCOUNT]
        assert world.gateway.verify().ok
        # Figures read from the database agree whichever worker answers the scrape; each scrape
        # is a new connection, which either worker may accept, until both have answered.
        workers: set[str] = set()
        for _ in range(40):
            scrape = httpx.get(f"{two_workers}/metrics", timeout=10).text
            assert f'paygate_payments{{channel="kiosk",status="posted"}} {PAYMENTS}' in scrape
            workers |= set(
                re.findall(r'paygate_worker_start_time_seconds\{worker="([0-9]+)"', scrape)
            )
            if len(workers) == 2:
                break
        assert len(workers) == 2
    finally:
        world.gateway.close()
