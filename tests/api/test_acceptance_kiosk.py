"""A kiosk whose gateway stops answering keeps selling without waiting, and is told what
arrived after its day was closed; against a real TCP peer and a real server.

The peer that "accepts and never answers" is a listening socket on loopback that takes every
connection and says nothing: the outage a kiosk meets when a proxy or the gateway hangs.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate.channels.kiosk import KioskTotals, MethodTotal
from paygate.client import GatewayUnreachableError, KioskClient, PaygateClient, PaymentState
from paygate.clock import business_date
from paygate.money import Money
from tests.api.support import ACCOUNT, World, client, live_server
from tests.api.test_http import now
from tests.channels.kiosk_support import ed25519_key


class Silent:
    """A TCP server on loopback that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()
        self._thread.join(5)


@pytest.fixture
def silent() -> Iterator[Silent]:
    peer = Silent()
    try:
        yield peer
    finally:
        peer.close()


def wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_once_the_link_is_known_down_a_sale_prints_at_once_and_is_forwarded_later(
    db_url: str, world: World, tmp_path: Path, silent: Silent
) -> None:
    world.customer(ACCOUNT)
    key = world.register("K0001")
    timeout = 2.0
    gateway = PaygateClient(
        f"http://127.0.0.1:{silent.port}",
        device_id="K0001",
        private_key=key,
        timeout=timeout,
        max_retries=0,
    )
    with gateway, KioskClient(gateway, tmp_path / "kiosk.db", retry_interval=0.2) as kiosk:
        started = time.monotonic()
        first = kiosk.pay(ACCOUNT, Money(100, "CNY"))
        discovered = time.monotonic() - started
        # The first sale meets the outage: it waits the client's timeout, no more.
        assert first.payment.state is PaymentState.PENDING
        assert isinstance(first.problem, GatewayUnreachableError)
        assert timeout * 0.9 <= discovered < timeout * 3
        later = []
        for fen in (200, 300):
            started = time.monotonic()
            sale = kiosk.pay(ACCOUNT, Money(fen, "CNY"))
            assert time.monotonic() - started < 1.0  # stored and printed, nothing awaited
            later.append(sale)
        for sale in later:
            assert sale.payment.state is PaymentState.PENDING
            assert isinstance(sale.problem, GatewayUnreachableError)
            assert "PENDING CONFIRMATION" in " ".join(sale.lines())
            assert sale.payment.attempts == 0  # never sent: an older payment is still pending
        assert kiosk.link_down is not None
        assert world.payments() == 0

        # The gateway comes back on the same address: the background forwarder gets through.
        port = silent.port
        silent.close()
        with live_server(db_url, port=port):
            # The pass that sends the last payment marks the link up as it ends: wait for both.
            assert wait_until(lambda: not kiosk.pending() and kiosk.link_down is None, 30), (
                kiosk.pending(),
                kiosk.link_down,
            )
            stored = [kiosk.payment(p.payment.txn_id) for p in (first, *later)]
        assert all(p is not None and p.state is PaymentState.CONFIRMED for p in stored)
        assert [p.attempts for p in stored[1:] if p is not None] == [1, 1]
        assert stored[0] is not None and stored[0].attempts >= 2
        assert kiosk.link_down is None
    assert world.payments("kiosk") == 3
    assert world.balance(ACCOUNT) == 101000 - 600


def test_a_payment_forwarded_after_its_day_was_closed_is_reported_to_the_kiosk(
    db_url: str, world: World, tmp_path: Path
) -> None:
    world.customer(ACCOUNT)
    key = world.register("K0001")
    server = live_server(db_url).start()
    port = server.port
    try:
        with client(server, "K0001", key) as online:
            kiosk = KioskClient(online, tmp_path / "kiosk.db", retry_interval=3600)
            on_time = kiosk.pay(ACCOUNT, Money(1000, "CNY"))
            assert on_time.confirmed and not on_time.after_close
            server.stop()
            late = kiosk.pay(ACCOUNT, Money(500, "CNY"))  # the link is down: stored
            assert late.payment.state is PaymentState.PENDING
            server = live_server(db_url, port=port).start()
            # The kiosk's day is closed (from the figures it has) before the late one arrives.
            today = business_date(now(), "Asia/Shanghai")
            reported = KioskTotals(
                cash=MethodTotal(count=1, amount=Money(1000, "CNY")),
                card=MethodTotal(count=0, amount=Money(0, "CNY")),
            )
            online.close_kiosk_day(today, counted_cash=Money(1500, "CNY"), reported=reported)
            report = kiosk.forward()
            assert [p.txn_id for p in report.confirmed] == [late.payment.txn_id]
            assert [p.txn_id for p in report.after_close] == [late.payment.txn_id]
            assert [p.txn_id for p in kiosk.after_close()] == [late.payment.txn_id]
            forwarded = kiosk.payment(late.payment.txn_id)
            assert forwarded is not None and forwarded.receipt is not None
            assert forwarded.receipt.after_close
            assert forwarded.receipt.business_date == today
            kiosk.close()
    finally:
        server.stop()
    assert world.payments("kiosk") == 2


def test_a_store_of_the_first_schema_is_upgraded_with_its_pending_payments(
    tmp_path: Path,
) -> None:
    store = tmp_path / "kiosk.db"
    with sqlite3.connect(store) as old:
        old.execute(
            "CREATE TABLE payments (seq INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL "
            "UNIQUE, account_no TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount > 0), "
            "currency TEXT NOT NULL, method TEXT NOT NULL, paid_at TEXT NOT NULL, state TEXT "
            "NOT NULL CHECK (state IN ('pending', 'confirmed', 'refused')), attempts INTEGER "
            "NOT NULL DEFAULT 0, receipt TEXT, refusal_status INTEGER, refusal_code TEXT, "
            "refusal_detail TEXT, settled_at TEXT)"
        )
        old.execute(
            "INSERT INTO payments (txn_id, account_no, amount, currency, method, paid_at, state, "
            "attempts) VALUES ('cash-old', ?, 100, 'CNY', 'cash', ?, 'pending', 3)",
            (ACCOUNT, now().isoformat()),
        )
        old.execute("PRAGMA user_version = 1")
    old.close()
    gateway = PaygateClient(
        "http://127.0.0.1:9", device_id="K0001", private_key=ed25519_key("K0001")
    )
    with gateway, KioskClient(gateway, store) as kiosk:
        [pending] = kiosk.pending()
        assert (pending.txn_id, pending.attempts) == ("cash-old", 3)
        assert kiosk.after_close() == []
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
