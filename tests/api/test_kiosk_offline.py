"""A kiosk that keeps working when the gateway is down, and forwards what it took once.

The story test runs the real server and, for the hours offline, a real kiosk process that is
cut off (it exits without closing anything); the kiosk then restarts on the same store. The
tests after it fake the network to pin down ordering and refusals.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from paygate.client import (
    GatewayUnreachableError,
    KioskClient,
    PaygateClient,
    PaymentState,
    UnknownAccountError,
)
from paygate.clock import FixedClock
from paygate.money import Money
from tests.api.support import ACCOUNT, OTHER_ACCOUNT, World, client, live_server
from tests.api.test_client import KEY, RECEIPT, Gateway
from tests.channels.kiosk_support import NOW, ed25519_key

REPO = Path(__file__).resolve().parents[2]

# The kiosk's process while the link is down: it takes the payments it is given, prints what
# it would print, and dies without closing its store or its client.
OFFLINE_KIOSK = textwrap.dedent(
    """
    import json, os, sys
    from paygate.client import KioskClient, PaygateClient, load_private_key
    from paygate.money import Money

    url, key_file, store, plan = sys.argv[1:5]
    client = PaygateClient(url, device_id="K0001", private_key=load_private_key(key_file),
                           timeout=2.0, max_retries=0)
    kiosk = KioskClient(client, store)
    taken = []
    for account_no, fen in json.loads(plan):
        payment = kiosk.pay(account_no, Money(fen, "CNY"))
        taken.append({"txn_id": payment.payment.txn_id, "state": payment.payment.state,
                      "pending_line": payment.lines()[1], "problem": payment.problem.code})
    print(json.dumps(taken))
    sys.stdout.flush()
    os._exit(0)
    """
)


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "K0001.key"
    path.write_bytes(
        ed25519_key("K0001").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_fifty_cash_payments_taken_offline_are_each_posted_once_after_a_restart(
    db_url: str, world: World, tmp_path: Path
) -> None:
    world.customer(ACCOUNT, owes=Money(101000, "CNY"))
    world.customer(OTHER_ACCOUNT, owes=Money(50000, "CNY"))
    key = world.register("K0001")
    store = tmp_path / "kiosk.db"

    server = live_server(db_url).start()
    port = server.port
    with client(server, "K0001", key) as online:
        morning = KioskClient(online, store).pay(ACCOUNT, Money(1000, "CNY"))
    assert morning.confirmed and morning.receipt is not None
    server.stop()  # the link goes down mid-day

    plan = [(ACCOUNT if i % 2 else OTHER_ACCOUNT, 100 + i) for i in range(50)]
    kiosk_process = subprocess.run(
        [
            sys.executable,
            "-c",
            OFFLINE_KIOSK,
            f"http://127.0.0.1:{port}",
            str(key_file(tmp_path)),
            str(store),
            json.dumps(plan),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    )
    taken = json.loads(kiosk_process.stdout)
    assert len(taken) == 50
    assert {t["state"] for t in taken} == {"pending"}
    assert {t["pending_line"] for t in taken} == {"待确认 / PENDING CONFIRMATION"}
    assert {t["problem"] for t in taken} == {"unreachable"}
    assert world.payments() == 1  # nothing reached the ledger while the link was down

    with live_server(db_url, port=port) as back, client(back, "K0001", key) as online:
        restarted = KioskClient(online, store)  # the kiosk process starts again
        pending = restarted.pending()
        assert [p.txn_id for p in pending] == [t["txn_id"] for t in taken]
        report = restarted.forward()
        assert (len(report.confirmed), report.remaining, report.stopped_by) == (50, 0, None)
        assert restarted.forward().confirmed == []  # nothing left to send
        # A payment taken now goes out after them, at once.
        later = restarted.pay(ACCOUNT, Money(7, "CNY"))
        assert later.confirmed
        # Forwarding a confirmed payment again (a lost answer, say) replays, posts nothing.
        first = report.confirmed[0]
        again = online.pay(
            first.account_no, first.amount, paid_at=first.paid_at, idempotency_key=first.txn_id
        )
        assert again.replayed and first.receipt is not None
        assert again.payment_id == first.receipt.payment_id
        restarted.close()

    ids = [p.receipt.payment_id for p in report.confirmed if p.receipt is not None]
    assert ids == sorted(ids)  # posted in the order they were taken
    assert world.payments("kiosk") == 1 + 50 + 1
    paid = {ACCOUNT: 1000 + 7, OTHER_ACCOUNT: 0}
    for account_no, fen in plan:
        paid[account_no] += fen
    assert world.balance(ACCOUNT) == 101000 - paid[ACCOUNT]
    assert world.balance(OTHER_ACCOUNT) == 50000 - paid[OTHER_ACCOUNT]


# ── without a network ────────────────────────────────────────────────────────────────────


def fake_kiosk(gateway: Gateway, store: Path) -> tuple[PaygateClient, KioskClient]:
    client = PaygateClient(
        "http://gateway.test",
        device_id="K0001",
        private_key=KEY,
        clock=FixedClock(NOW),
        max_retries=0,
        transport=httpx.MockTransport(gateway),
    )
    return client, KioskClient(client, store)


def test_a_payment_is_on_the_device_before_it_is_sent(tmp_path: Path) -> None:
    store = tmp_path / "kiosk.db"
    seen: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        # Another connection, as another process would see the file.
        with sqlite3.connect(store) as other:
            seen.extend(other.execute("SELECT txn_id, state FROM payments").fetchall())
        sent = json.loads(request.content)
        return httpx.Response(201, json={**RECEIPT, "txn_id": sent["txn_id"]})

    client, kiosk = fake_kiosk(Gateway(answer), store)
    with client, kiosk:
        payment = kiosk.pay(ACCOUNT, Money(12050, "CNY"))
    assert seen == [(payment.payment.txn_id, "pending")]
    assert payment.confirmed
    assert payment.lines()[0] == "电费缴费凭证 / ELECTRICITY PAYMENT RECEIPT"
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_forwarding_keeps_order_moves_refusals_aside_and_stops_for_the_device(
    tmp_path: Path,
) -> None:
    store = tmp_path / "kiosk.db"
    down = Gateway(httpx.ConnectError("refused"))
    client, kiosk = fake_kiosk(down, store)
    with client, kiosk:
        taken = [kiosk.pay(ACCOUNT, Money(100 + i, "CNY")) for i in range(4)]
    assert [t.payment.state for t in taken] == [PaymentState.PENDING] * 4
    assert isinstance(taken[0].problem, GatewayUnreachableError)
    assert all("PENDING CONFIRMATION" in " ".join(t.lines()) for t in taken)
    # Each attempt re-sends the oldest first: never a newer payment ahead of an older one.
    first_key = taken[0].payment.txn_id
    assert {r.headers["idempotency-key"] for r in down.requests} == {first_key}

    def from_problem(status: int, code: str) -> httpx.Response:
        return httpx.Response(
            status,
            json={"type": "x", "title": code, "status": status, "detail": code, "code": code},
            headers={"content-type": "application/problem+json"},
        )

    def accept(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        return httpx.Response(201, json={**RECEIPT, "txn_id": sent["txn_id"]})

    # The second payment names an account the utility does not know; the fourth meets a
    # device problem (its clock), which is no fault of the payment.
    back = Gateway(
        accept, from_problem(404, "unknown_account"), accept, from_problem(401, "stale_timestamp")
    )
    client, restarted = fake_kiosk(back, store)
    with client, restarted:
        report = restarted.forward()
        assert [p.txn_id for p in report.confirmed] == [
            taken[0].payment.txn_id,
            taken[2].payment.txn_id,
        ]
        [refused] = restarted.refused()
        assert (refused.txn_id, refused.refusal_status, refused.refusal_code) == (
            taken[1].payment.txn_id,
            404,
            "unknown_account",
        )
        assert isinstance(report.errors[refused.txn_id], UnknownAccountError)
        assert report.stopped_by is not None and report.stopped_by.code == "stale_timestamp"
        assert [p.txn_id for p in restarted.pending()] == [taken[3].payment.txn_id]
        sent = [json.loads(r.content)["txn_id"] for r in back.requests]
        assert sent == [t.payment.txn_id for t in taken]  # in the order taken, each once


def test_a_payment_refused_for_good_at_once_is_raised_and_kept(tmp_path: Path) -> None:
    refusing = Gateway(
        httpx.Response(
            404,
            json={"title": "t", "status": 404, "detail": "no account", "code": "unknown_account"},
            headers={"content-type": "application/problem+json"},
        )
    )
    client, kiosk = fake_kiosk(refusing, tmp_path / "kiosk.db")
    with client, kiosk:
        with pytest.raises(UnknownAccountError):
            kiosk.pay("0000000000", Money(100, "CNY"))
        assert [p.account_no for p in kiosk.refused()] == ["0000000000"]
        assert kiosk.pending() == []


def test_a_sale_that_finds_the_link_down_as_the_forwarder_leaves_gets_a_new_forwarder(
    tmp_path: Path,
) -> None:
    """The background forwarder gets through and is on its way out (held there, as a busy
    scheduler may hold it) when the next sale meets a new outage: that sale's payment is still
    forwarded in the background once the link is back, with no further sale or forward()."""
    up = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        if not up.is_set():
            raise httpx.ConnectError("refused")
        sent = json.loads(request.content)
        return httpx.Response(201, json={**RECEIPT, "txn_id": sent["txn_id"]})

    client = PaygateClient(
        "http://gateway.test",
        device_id="K0001",
        private_key=KEY,
        clock=FixedClock(NOW),
        max_retries=0,
        transport=httpx.MockTransport(Gateway(answer)),
    )
    kiosk = KioskClient(client, tmp_path / "kiosk.db", retry_interval=0.05)
    leaving, release = threading.Event(), threading.Event()
    forward_in_background = kiosk._forward_in_background

    def held_on_the_way_out() -> None:
        forward_in_background()
        if not leaving.is_set():
            leaving.set()
            release.wait(10)

    kiosk._forward_in_background = held_on_the_way_out  # type: ignore[method-assign]
    with client, kiosk:
        assert kiosk.pay(ACCOUNT, Money(100, "CNY")).payment.state is PaymentState.PENDING
        up.set()
        assert leaving.wait(10)  # the first forwarder got through and is leaving
        assert kiosk.link_down is None and kiosk.pending() == []
        up.clear()
        late = kiosk.pay(ACCOUNT, Money(200, "CNY"))  # meets the outage itself
        assert late.payment.state is PaymentState.PENDING and kiosk.link_down is not None
        release.set()
        up.set()
        # The link is marked up when the pass that sent the payment ends, a moment after the
        # payment leaves the pending list: wait for both.
        deadline = time.monotonic() + 10
        while (kiosk.pending() or kiosk.link_down is not None) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kiosk.pending() == []
        assert kiosk.link_down is None
