"""The HTTP gateway over a real uvicorn server on loopback, on SQLite and on PostgreSQL.

Requests are made with the real client, or — where the test is about what goes over the wire
(statuses, signatures, replays) — with plain httpx and the independent signer of
``tests/channels/kiosk_support.py``, written from the documented scheme.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from paygate.api import ApiConfig, create_app
from paygate.channels.kiosk import KioskTotals, MethodTotal
from paygate.channels.voucher import VoucherConfig
from paygate.client import (
    AsyncPaygateClient,
    ClockSkewError,
    DeviceRevokedError,
    PaygateClientError,
    UnknownAccountError,
)
from paygate.clock import FixedClock, business_date
from paygate.gateway import Gateway
from paygate.models import SupplyState
from paygate.money import Money
from paygate.supply import OrderStatus
from paygate.vouchers import VoucherService
from tests.api.support import (
    ACCOUNT,
    BILL,
    OTHER_ACCOUNT,
    LiveServer,
    World,
    client,
    live_server,
    settings_for,
)
from tests.channels.kiosk_support import ed25519_key, signed_headers
from tests.headend.simulator import CALLBACK_SECRET, hmac_hex

PROBLEM = "application/problem+json"

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For what HTTP does the same whatever the database: run once, on SQLite."""


def now() -> datetime:
    return datetime.now(UTC)


def pay_body(txn_id: str = "cash-000123", amount: int = 101000, **changes: Any) -> bytes:
    fields = {
        "txn_id": txn_id,
        "account_no": ACCOUNT,
        "amount": amount,
        "currency": "CNY",
        "method": txn_id.split("-")[0],
        "paid_at": now().isoformat(),
        **changes,
    }
    return json.dumps(fields).encode()


def signed(
    device_id: str,
    body: bytes = b"",
    *,
    path: str,
    method: str = "POST",
    key_of: str | None = None,
    at: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    headers = signed_headers(
        ed25519_key(key_of or device_id),
        device_id,
        body,
        path=path,
        method=method,
        at=at or now(),
        request_nonce=nonce,
    )
    return {"Content-Type": "application/json", **headers} if method == "POST" else headers


def post_payment(server: LiveServer, device_id: str, body: bytes, **options: Any) -> httpx.Response:
    key = json.loads(body)["txn_id"]
    headers = {"Idempotency-Key": key, **signed(device_id, body, path="/v1/payments", **options)}
    return httpx.post(f"{server.url}/v1/payments", content=body, headers=headers)


def get_account(server: LiveServer, device_id: str, **options: Any) -> httpx.Response:
    path = f"/v1/accounts/{ACCOUNT}"
    headers = signed(device_id, path=path, method="GET", **options)
    return httpx.get(f"{server.url}{path}", headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    found: dict[str, Any] = response.json()
    assert (found["status"], found["code"]) == (status, code)
    assert found["type"] == f"urn:paygate:problem:{code}"
    assert found["title"] and found["detail"]
    assert found["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return found


# ── paying ───────────────────────────────────────────────────────────────────────────────


def test_a_kiosk_shows_what_is_owed_takes_it_and_a_retry_posts_nothing_more(
    world: World, server: LiveServer
) -> None:
    world.customer(name="张三")
    key = world.register("K0001")
    with client(server, "K0001", key) as kiosk:
        status = kiosk.account(ACCOUNT)
        assert (status.name, status.outstanding, status.supply_state) == (
            "张*",
            BILL,
            SupplyState.CONNECTED,
        )
        receipt = kiosk.pay(ACCOUNT, BILL)
        again = kiosk.pay(ACCOUNT, BILL, idempotency_key=receipt.txn_id, paid_at=receipt.paid_at)
    assert (receipt.terminal_id, receipt.channel_txn_id) == ("K0001", f"K0001:{receipt.txn_id}")
    assert receipt.balance_after == Money(0, "CNY") and not receipt.replayed
    assert again.replayed and again.payment_id == receipt.payment_id
    assert (world.payments("kiosk"), world.balance(ACCOUNT)) == (1, 0)

    # On the wire: 201 the first time, 200 with replayed: true after.
    body = pay_body("cash-000777", 500)
    first, second = post_payment(server, "K0001", body), post_payment(server, "K0001", body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.headers["content-type"] == "application/json"
    assert (first.json()["replayed"], second.json()["replayed"]) == (False, True)
    assert first.json()["amount"] == {"minor": 500, "currency": "CNY"}
    assert world.payments("kiosk") == 2

    # The Idempotency-Key is required, and is the transaction id the ledger deduplicates on.
    body = pay_body()
    headers = signed("K0001", body, path="/v1/payments")
    missing = httpx.post(f"{server.url}/v1/payments", content=body, headers=headers)
    assert assert_problem(missing, 400, "idempotency_key_invalid")["field"] == "Idempotency-Key"
    other = {"Idempotency-Key": "cash-999", **signed("K0001", body, path="/v1/payments")}
    mismatch = httpx.post(f"{server.url}/v1/payments", content=body, headers=other)
    assert_problem(mismatch, 400, "idempotency_key_invalid")
    amount = post_payment(server, "K0001", pay_body(amount=1, paid_at="2026-11-25T10:00:00+08:00"))
    conflict = post_payment(
        server, "K0001", pay_body(amount=2, paid_at="2026-11-25T10:00:00+08:00")
    )
    assert amount.status_code == 201
    assert_problem(conflict, 409, "idempotency_conflict")
    assert world.payments("kiosk") == 3


def test_a_kiosk_payment_counts_toward_the_next_seal_once(db_url: str, world: World) -> None:
    world.customer()
    key = world.register("K0001")
    sealing = settings_for(db_url).model_copy(update={"seal_every": 1})
    with (
        LiveServer(lambda: create_app(sealing)) as server,
        client(server, "K0001", key) as kiosk,
    ):
        receipt = kiosk.pay(ACCOUNT, BILL)
        again = kiosk.pay(ACCOUNT, BILL, idempotency_key=receipt.txn_id, paid_at=receipt.paid_at)
    assert again.replayed
    queued, sealed = world.gateway.store.run(
        lambda tx: (
            tx.scalar("SELECT COUNT(*) FROM seal_queue"),
            tx.scalar("SELECT COUNT(*) FROM journal_seals"),
        ),
        write=False,
    )
    assert (queued, sealed) == (0, 2)  # the bill's entry and the payment's


@SQLITE_ONLY
def test_refusals_are_problems_and_bodies_are_limited_before_they_are_read(
    world: World, server: LiveServer
) -> None:
    key = world.register("K0001")
    with client(server, "K0001", key) as kiosk, pytest.raises(UnknownAccountError) as unknown:
        kiosk.account("0000000000")
    assert (unknown.value.status, unknown.value.field) == (404, "account_no")
    assert unknown.value.request_id

    # A declared length over the limit is refused at once: the body is never sent here.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(
            b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nIdempotency-Key: cash-1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        )
        answer = b""
        while chunk := raw.recv(65536):  # the server answers, then closes: the body is unread
            answer += chunk
    head = answer.decode("latin-1")
    assert head.startswith("HTTP/1.1 413 ")
    assert "application/problem+json" in head and "payload_too_large" in head

    # Without a length, reading stops at the limit.
    def chunks() -> Iterator[bytes]:
        yield from (b"x" * 65536 for _ in range(64))

    streamed = httpx.post(
        f"{server.url}/v1/payments", content=chunks(), headers={"Idempotency-Key": "cash-1"}
    )
    assert_problem(streamed, 413, "payload_too_large")

    assert_problem(httpx.get(f"{server.url}/v1/nothing"), 404, "not_found")
    wrong = httpx.delete(f"{server.url}/v1/payments")
    assert_problem(wrong, 405, "method_not_allowed")
    assert "POST" in wrong.headers["allow"]
    # Who is asking comes before what they ask: unsigned, a malformed path is 401.
    bad_id = httpx.post(f"{server.url}/v1/kiosks/-bad/close", content=b"{}")
    assert_problem(bad_id, 401, "malformed_request")
    # Parts a deployment did not configure are not served at all.
    assert_problem(callback(server, 42), 404, "not_found")
    assert_problem(httpx.post(f"{server.url}/v1/vouchers/redeem", content=b"{}"), 404, "not_found")


# ── device authentication ────────────────────────────────────────────────────────────────


def test_forged_replayed_expired_future_unknown_and_revoked_signatures_are_refused(
    world: World, server: LiveServer
) -> None:
    world.customer()
    world.register("K0001")
    world.register("K0002")
    world.register("P0001", channel="pos")
    body = pay_body()

    forged = post_payment(server, "K0001", body, key_of="K0002")
    assert assert_problem(forged, 401, "invalid_signature")["field"] == "X-Paygate-Signature"
    assert forged.headers["www-authenticate"]
    late = get_account(server, "K0001", at=now() - timedelta(minutes=6))
    early = get_account(server, "K0001", at=now() + timedelta(minutes=6))
    assert_problem(late, 401, "stale_timestamp")
    assert_problem(early, 401, "stale_timestamp")
    assert_problem(get_account(server, "K9999", key_of="K0001"), 401, "unknown_device")
    unsigned = httpx.get(f"{server.url}/v1/accounts/{ACCOUNT}")
    assert_problem(unsigned, 401, "malformed_request")

    nonce = "AAECAwQFBgcICQoLDA0ODw"
    assert get_account(server, "K0001", nonce=nonce).status_code == 200
    replay = get_account(server, "K0001", nonce=nonce)
    assert_problem(replay, 401, "nonce_reused")

    # A terminal of another channel may look an account up, not pay as a kiosk.
    assert get_account(server, "P0001").status_code == 200
    assert_problem(post_payment(server, "P0001", body), 403, "device_channel_mismatch")

    # A request refused for what it says is not accepted later, whatever changed meanwhile.
    early_payment = pay_body("cash-early", 300, account_no=OTHER_ACCOUNT)
    headers = {
        "Idempotency-Key": "cash-early",
        **signed("K0001", early_payment, path="/v1/payments"),
    }
    refused = httpx.post(f"{server.url}/v1/payments", content=early_payment, headers=headers)
    assert_problem(refused, 404, "unknown_account")
    world.customer(OTHER_ACCOUNT)
    replayed = httpx.post(f"{server.url}/v1/payments", content=early_payment, headers=headers)
    assert_problem(replayed, 401, "nonce_reused")

    assert get_account(server, "K0002").status_code == 200
    world.devices.revoke("K0002")
    assert_problem(get_account(server, "K0002"), 403, "device_revoked")
    revoked = client(server, "K0002", ed25519_key("K0002"))
    with revoked, pytest.raises(DeviceRevokedError):
        revoked.pay(ACCOUNT, BILL)
    skewed = client(
        server, "K0001", ed25519_key("K0001"), clock=FixedClock(now() - timedelta(hours=1))
    )
    with skewed, pytest.raises(ClockSkewError):
        skewed.account(ACCOUNT)
    assert world.payments() == 0


# ── the kiosk's day ──────────────────────────────────────────────────────────────────────


def test_a_kiosk_closes_its_day_once(world: World, server: LiveServer) -> None:
    world.customer()
    world.customer(OTHER_ACCOUNT)
    key = world.register("K0001")
    world.register("K0002")
    with client(server, "K0001", key) as kiosk:
        kiosk.pay(ACCOUNT, Money(60000, "CNY"))
        kiosk.pay(OTHER_ACCOUNT, Money(2000, "CNY"), method="card")
        today = business_date(now(), "Asia/Shanghai")
        reported = KioskTotals(
            cash=MethodTotal(count=1, amount=Money(60000, "CNY")),
            card=MethodTotal(count=1, amount=Money(2000, "CNY")),
        )
        closed = kiosk.close_kiosk_day(today, counted_cash=Money(59900, "CNY"), reported=reported)
        again = kiosk.close_kiosk_day(today, counted_cash=Money(59900, "CNY"), reported=reported)
        with pytest.raises(PaygateClientError) as conflict:
            kiosk.close_kiosk_day(today, counted_cash=Money(60000, "CNY"), reported=reported)
    assert (closed.outcome.value, closed.cash_difference, closed.reported_matches_ledger) == (
        "shortage",
        Money(-100, "CNY"),
        True,
    )
    assert again.replayed and again.closed_at == closed.closed_at
    assert (conflict.value.status, conflict.value.code) == (409, "close_conflict")
    body = b'{"business_date": "2026-11-24"}'
    headers = signed("K0002", body, path="/v1/kiosks/K0001/close")
    other = httpx.post(f"{server.url}/v1/kiosks/K0001/close", content=body, headers=headers)
    assert_problem(other, 403, "device_mismatch")


def test_cash_a_kiosk_took_for_a_closed_account_is_in_its_close_shown_apart(
    world: World, server: LiveServer
) -> None:
    world.customer()
    world.gateway.open_account(OTHER_ACCOUNT)
    world.gateway.close_account(OTHER_ACCOUNT, closure_id="CL-1", reason="moved away")
    key = world.register("K0001")
    with client(server, "K0001", key) as kiosk:
        kiosk.pay(ACCOUNT, Money(60000, "CNY"))
        held = kiosk.pay(OTHER_ACCOUNT, Money(3000, "CNY"))  # into suspense: account closed
        assert held.allocations == ()
        today = business_date(now(), "Asia/Shanghai")
        reported = KioskTotals(
            cash=MethodTotal(count=2, amount=Money(63000, "CNY")),
            card=MethodTotal(count=0, amount=Money(0, "CNY")),
        )
        closed = kiosk.close_kiosk_day(today, counted_cash=Money(63000, "CNY"), reported=reported)
    assert (closed.outcome.value, closed.cash_difference.minor) == ("balanced", 0)
    assert closed.reported_matches_ledger and closed.ledger == reported
    assert closed.ledger_suspense.cash == MethodTotal(count=1, amount=Money(3000, "CNY"))
    assert closed.ledger_suspense.card.count == 0


# ── recharge vouchers ───────────────────────────────────────────────────────────────────────

PIN_KEY = bytes(range(40, 72))


def test_a_card_is_redeemed_from_a_terminal_which_is_the_attempts_source(
    db_url: str, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from io import BytesIO

    from pydantic import SecretBytes

    world.customer()
    key = world.register("K0001")
    service = VoucherService(world.gateway, SecretBytes(PIN_KEY))
    printed = BytesIO()
    issued = service.issue_batch("B1", 2, Money(5000, "CNY"), world.days_ahead(365), printed)
    service.activate("B1", retailer="Shop 1")
    pins = dict(line.split(",")[1:3] for line in printed.getvalue().decode().splitlines()[1:])
    serial = issued.first_serial
    config = ApiConfig(channels={"voucher": VoucherConfig()}, voucher_pin_key=SecretBytes(PIN_KEY))
    caplog.set_level(logging.DEBUG)
    with live_server(db_url, config) as server, client(server, "K0001", key) as kiosk:
        with pytest.raises(PaygateClientError) as wrong:
            kiosk.redeem_voucher(ACCOUNT, serial, "0" * 16)
        redeemed = kiosk.redeem_voucher(ACCOUNT, serial, pins[serial])
        replayed = kiosk.redeem_voucher(ACCOUNT, serial, pins[serial])
    assert (wrong.value.status, wrong.value.code, wrong.value.problem["attempts_left"]) == (
        403,
        "wrong_pin",
        4,
    )
    assert (redeemed.result, replayed.result) == ("redeemed", "replayed")
    assert redeemed.receipt.amount == Money(5000, "CNY")
    assert replayed.receipt.payment_id == redeemed.receipt.payment_id
    sources = world.gateway.store.run(
        lambda tx: tx.all("SELECT DISTINCT source FROM voucher_attempts"), write=False
    )
    assert [tuple(row) for row in sources] == [("K0001",)]
    assert pins[serial] not in caplog.text


def test_a_throttled_redemption_says_when_to_retry_by_the_gateways_clock(
    db_url: str, world: World
) -> None:
    """Retry-After counts from the clock the gateway runs with (a fixed one, in the past),
    not the machine's: ten failures at one instant close the account's hour until 3,601 s on."""
    from io import BytesIO

    from pydantic import SecretBytes

    clock = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    world.customer()
    service = VoucherService(world.gateway, SecretBytes(PIN_KEY))
    printed = BytesIO()
    service.issue_batch("B1", 3, Money(5000, "CNY"), world.days_ahead(365), printed)
    service.activate("B1", retailer="Shop 1")
    serials = [line.split(",")[1] for line in printed.getvalue().decode().splitlines()[1:]]
    config = ApiConfig(channels={"voucher": VoucherConfig()}, voucher_pin_key=SecretBytes(PIN_KEY))
    key = world.register("K0001")
    with (
        live_server(db_url, config, clock=clock) as server,
        client(server, "K0001", key, clock=clock) as kiosk,
    ):
        for serial in [*[serials[0]] * 4, *[serials[1]] * 4, *[serials[2]] * 2]:
            with pytest.raises(PaygateClientError) as wrong:
                kiosk.redeem_voucher(ACCOUNT, serial, "0" * 16)
            assert wrong.value.code == "wrong_pin"
        with pytest.raises(PaygateClientError) as throttled:
            kiosk.redeem_voucher(ACCOUNT, serials[2], "0" * 16)
    assert (throttled.value.status, throttled.value.code) == (429, "redemption_throttled")
    retry_at = datetime.fromisoformat(throttled.value.problem["retry_at"])
    assert retry_at == clock.now() + timedelta(hours=1)
    assert throttled.value.retry_after == 3601


# ── the head-end's reports ───────────────────────────────────────────────────────────────


def reconnection_order(gateway: Gateway) -> int:
    """A disconnected customer pays the arrears: the reconnection order that creates."""
    gateway.open_account(ACCOUNT)
    gateway.issue_bill(
        ACCOUNT, bill_no="B-1", amount=BILL, period="2026-09", due_date=date(2026, 10, 15)
    )
    gateway.disconnect(ACCOUNT, "arrears")
    owed = gateway.account_status(ACCOUNT).arrears
    from paygate.models import PaymentIntent

    receipt = gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0001:cash-1",
            account_no=ACCOUNT,
            amount=owed,
            paid_at=now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    return receipt.reconnection_order_id


def callback(
    server: LiveServer,
    order_id: int,
    *,
    secret: bytes = CALLBACK_SECRET,
    about: int | None = None,
    resource: str = "supply-orders",
) -> httpx.Response:
    report = {
        "order_id": about or order_id,
        "outcome": "completed",
        "reference": "AMI-77",
        "at": now().isoformat(),
    }
    body = json.dumps(report).encode()
    stamp = str(int(now().timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Headend-Timestamp": stamp,
        "X-Headend-Signature": hmac_hex(secret, stamp, body),
    }
    return httpx.post(
        f"{server.url}/v1/{resource}/{order_id}/confirm", content=body, headers=headers
    )


def test_the_head_end_confirms_a_reconnection_once(db_url: str, world: World) -> None:
    order_id = reconnection_order(world.gateway)
    from pydantic import SecretBytes

    config = ApiConfig(callback_secret=SecretBytes(CALLBACK_SECRET))
    with live_server(db_url, config) as server:
        forged = callback(server, order_id, secret=b"not-the-callback-secret")
        other = callback(server, order_id, about=order_id + 1)
        done = callback(server, order_id)
        again = callback(server, order_id)
        # The retired path is the same route: a repeat there changes nothing either.
        retired = callback(server, order_id, resource="reconnections")
        unknown = callback(server, 99999999, about=99999999)
    assert_problem(forged, 401, "authentication_failed")
    assert assert_problem(other, 400, "invalid_input")["field"] == "order_id"
    assert done.json() == {"order_id": order_id, "status": OrderStatus.COMPLETED.value}
    assert again.json() == done.json() == retired.json()
    assert_problem(unknown, 404, "unknown_order")
    assert world.gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED


# ── operations ───────────────────────────────────────────────────────────────────────────


def test_health_metrics_and_the_openapi_document(world: World, server: LiveServer) -> None:
    world.customer()
    key = world.register("K0001")
    with client(server, "K0001", key) as kiosk:
        assert kiosk.health().database == "ok"
        kiosk.pay(ACCOUNT, Money(100, "CNY"))
        with pytest.raises(UnknownAccountError):
            kiosk.pay("0000000000", Money(100, "CNY"))

    async def from_async_client() -> tuple[str, str]:
        async with AsyncPaygateClient(server.url, device_id="K0001", private_key=key) as kiosk:
            health = await kiosk.health()
            status = await kiosk.account(ACCOUNT)
        return health.database, status.account_no

    assert asyncio.run(from_async_client()) == ("ok", ACCOUNT)
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    assert families["paygate_open_breaches"].type == "gauge"

    def value(name: str, **labels: str) -> float:
        found = [
            s.value
            for f in families.values()
            for s in f.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    assert value("paygate_database_up") == 1
    assert value("paygate_payments", channel="kiosk", status="posted") == 1
    assert value("paygate_outbox_depth") == 1  # the payment's event, no dispatcher running
    worker = str(os.getpid())  # the server runs in this process
    posted = value("paygate_payment_requests_total", channel="kiosk", outcome="posted")
    assert posted == 1
    assert value("paygate_payment_requests_total", channel="kiosk", outcome="refused") == 1
    assert (
        value(
            "paygate_http_request_duration_seconds_bucket",
            worker=worker,
            route="/v1/payments",
            method="POST",
            le="+Inf",
        )
        == 2
    )
    document = httpx.get(f"{server.url}/openapi.json").json()
    # The kiosk channel only is configured: the document has what is served, nothing more.
    assert set(document["paths"]) == {
        "/v1/accounts/{account_no}",
        "/v1/payments",
        "/v1/kiosks/{device_id}/close",
        "/healthz",
        "/metrics",
    }
    pay = document["paths"]["/v1/payments"]["post"]
    assert pay["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KioskPayRequest"
    }
    assert {"200", "201", "400", "401", "403", "404", "409", "413", "415", "503"} == set(
        pay["responses"]
    )
    assert PROBLEM in pay["responses"]["401"]["content"]
    amount = document["components"]["schemas"]["KioskReceipt"]["properties"]["amount"]
    assert amount["properties"]["minor"]["type"] == "integer"


@SQLITE_ONLY
def test_an_unexpected_error_is_logged_and_answered_without_its_trace(
    world: World,
    server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.customer()
    world.register("K0001")

    def broken(self: Gateway, account_no: str, as_of: date | None = None) -> Any:
        raise RuntimeError("internal detail the caller must not see")

    monkeypatch.setattr(Gateway, "account_status", broken)
    with caplog.at_level(logging.ERROR, logger="paygate.api"):
        crashed = get_account(server, "K0001")
    found = assert_problem(crashed, 500, "internal_error")
    assert "internal detail" not in crashed.text
    assert found["request_id"] in caplog.text
    assert "internal detail the caller must not see" in caplog.text  # the trace is logged

    def unavailable(self: Gateway, account_no: str, as_of: date | None = None) -> Any:
        raise psycopg.OperationalError("connection to server at 10.0.0.5 failed")

    monkeypatch.setattr(Gateway, "account_status", unavailable)
    down = get_account(server, "K0001")
    assert_problem(down, 503, "store_error")
    assert "10.0.0.5" not in down.text
    assert down.headers["retry-after"]
