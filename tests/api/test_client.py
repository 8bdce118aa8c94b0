"""The client without a network: plain handler functions stand in for the gateway.

Each handler verifies what it receives with paygate's own server-side check
(:func:`paygate.devices.verify_request`) against a key registered in memory, so a request the
client signs wrongly fails here as it would at the gateway.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from paygate.channels.base import InMemoryNonceStore
from paygate.channels.kiosk import KioskTotals, MethodTotal
from paygate.client import (
    AsyncPaygateClient,
    ClockSkewError,
    DeviceRevokedError,
    GatewayUnreachableError,
    IdempotencyConflictError,
    InvalidRequestError,
    PaygateClient,
    PaygateClientError,
    ServerError,
    ServiceUnavailableError,
    UnknownAccountError,
)
from paygate.client._core import Call, ClientCore
from paygate.clock import FixedClock
from paygate.devices import verify_request
from paygate.errors import InvalidInputError, PaygateError
from paygate.money import Money
from tests.channels.kiosk_support import NOW, StaticDevices, device, ed25519_key

BASE = "http://gateway.test"
KEY = ed25519_key("K0001")
DEVICES = StaticDevices(device("K0001", key=KEY))
RECEIPT: dict[str, Any] = {
    "payment_id": 7,
    "terminal_id": "K0001",
    "txn_id": "cash-1",
    "channel_txn_id": "K0001:cash-1",
    "method": "cash",
    "account_no": "3100000001",
    "amount": {"minor": 12050, "currency": "CNY"},
    "paid_at": "2026-11-25T10:00:00+08:00",
    "business_date": "2026-11-25",
    "late_fee": {"minor": 0, "currency": "CNY"},
    "allocations": [],
    "credit": {"minor": 0, "currency": "CNY"},
    "balance_after": {"minor": 0, "currency": "CNY"},
    "arrears_after": {"minor": 0, "currency": "CNY"},
    "arrears_cleared": False,
    "reconnection_order_id": None,
    "replayed": False,
}

Handler = Callable[[httpx.Request], httpx.Response]


class Gateway:
    """A fake gateway: verifies each request like the real one, then answers from a script."""

    def __init__(self, *answers: Handler | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.nonces = InMemoryNonceStore()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        verify_request(
            DEVICES,
            self.nonces,
            request.method,
            request.url.raw_path.decode("ascii"),
            dict(request.headers),
            request.content,
            now=NOW,
        )
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


def problem(status: int, code: str, **extra: Any) -> httpx.Response:
    body = {
        "type": f"urn:paygate:problem:{code}",
        "title": code.replace("_", " "),
        "status": status,
        "detail": f"detail of {code}",
        "code": code,
        "request_id": "req-1",
        **extra,
    }
    return httpx.Response(
        status,
        json=body,
        headers={"content-type": "application/problem+json", "x-request-id": "req-1"},
    )


def receipt(status: int = 201, **changes: Any) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        body = {**RECEIPT, "txn_id": sent["txn_id"], "channel_txn_id": f"K0001:{sent['txn_id']}"}
        return httpx.Response(status, json={**body, **changes})

    return answer


def sync_client(gateway: Gateway, **options: Any) -> PaygateClient:
    options.setdefault("backoff_base", 0.001)
    options.setdefault("backoff_cap", 0.002)
    return PaygateClient(
        BASE,
        device_id="K0001",
        private_key=KEY,
        clock=FixedClock(NOW),
        transport=httpx.MockTransport(gateway),
        **options,
    )


def async_client(gateway: Gateway, **options: Any) -> AsyncPaygateClient:
    options.setdefault("backoff_base", 0.001)
    options.setdefault("backoff_cap", 0.002)
    return AsyncPaygateClient(
        BASE,
        device_id="K0001",
        private_key=KEY,
        clock=FixedClock(NOW),
        transport=httpx.MockTransport(gateway),
        **options,
    )


YUAN = Money(12050, "CNY")
TOTALS = KioskTotals(
    cash=MethodTotal(count=3, amount=Money(50000, "CNY")),
    card=MethodTotal(count=1, amount=Money(12000, "CNY")),
)


# ── what is sent ─────────────────────────────────────────────────────────────────────────


def test_every_mutating_call_is_signed_and_carries_an_idempotency_key() -> None:
    core_receipt = {
        "payment_id": 8,
        "channel": "voucher",
        "channel_txn_id": "100000000008",
        "account_no": "3100000001",
        "amount": {"minor": 5000, "currency": "CNY"},
        "paid_at": "2026-11-25T02:00:00Z",
        "business_date": "2026-11-25",
        "late_fee": {"minor": 0, "currency": "CNY"},
        "allocations": [],
        "credit": {"minor": 5000, "currency": "CNY"},
        "balance_after": {"minor": -5000, "currency": "CNY"},
        "arrears_after": {"minor": 0, "currency": "CNY"},
        "arrears_cleared": False,
    }
    redemption = {"result": "redeemed", "receipt": core_receipt}
    close = {
        "terminal_id": "K0001",
        "business_date": "2026-11-24",
        "counted_cash": {"minor": 50000, "currency": "CNY"},
        "reported": json.loads(TOTALS.model_dump_json()),
        "ledger": json.loads(TOTALS.model_dump_json()),
        "ledger_suspense": json.loads(KioskTotals.zero("CNY").model_dump_json()),
        "cash_difference": {"minor": 0, "currency": "CNY"},
        "outcome": "balanced",
        "reported_matches_ledger": True,
        "closed_at": "2026-11-25T02:00:00Z",
        "replayed": False,
    }
    gateway = Gateway(
        receipt(), httpx.Response(201, json=redemption), httpx.Response(201, json=close)
    )
    with sync_client(gateway) as client:
        paid = client.pay("3100000001", YUAN)
        client.redeem_voucher("3100000001", "100000000008", "4822019375561043")
        closed = client.close_kiosk_day(
            date(2026, 11, 24), counted_cash=Money(50000, "CNY"), reported=TOTALS
        )
    pay_request, redeem_request, close_request = gateway.requests
    assert pay_request.url.path == "/v1/payments"
    sent = json.loads(pay_request.content)
    # The payment's key is its transaction id: the same thing the ledger deduplicates on.
    assert pay_request.headers["idempotency-key"] == sent["txn_id"] == paid.txn_id
    assert sent["txn_id"].startswith("cash-")
    assert (sent["amount"], sent["currency"], sent["method"]) == (12050, "CNY", "cash")
    assert isinstance(sent["amount"], int)
    assert redeem_request.headers["idempotency-key"]
    assert json.loads(redeem_request.content)["pin"] == "4822019375561043"
    assert close_request.url.path == "/v1/kiosks/K0001/close"
    assert close_request.headers["idempotency-key"] == "close-K0001-2026-11-24"
    assert json.loads(close_request.content)["by_method"]["card"] == {"count": 1, "amount": 12000}
    assert closed.outcome.value == "balanced"
    for request in gateway.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-paygate-device"] == "K0001"


def test_a_given_key_is_used_as_is_and_must_name_the_method() -> None:
    gateway = Gateway(receipt())
    with sync_client(gateway) as client:
        client.pay("3100000001", YUAN, method="card", idempotency_key="card-000124")
        with pytest.raises(InvalidInputError) as refused:
            client.pay("3100000001", YUAN, method="cash", idempotency_key="card-000124")
    assert refused.value.field == "idempotency_key"
    assert gateway.requests[0].headers["idempotency-key"] == "card-000124"
    assert len(gateway.requests) == 1


def test_the_account_number_is_escaped_and_signed_as_sent() -> None:
    gateway = Gateway(problem(404, "unknown_account", field="account_no"))
    with sync_client(gateway) as client, pytest.raises(UnknownAccountError):
        client.account("31/0?1")
    assert gateway.requests[0].url.raw_path == b"/v1/accounts/31%2F0%3F1"


def test_a_base_url_path_prefix_is_part_of_what_is_signed() -> None:
    gateway = Gateway(httpx.Response(200, json={"status": "ok", "database": "ok"}))
    client = PaygateClient(
        f"{BASE}/paygate/",
        device_id="K0001",
        private_key=KEY,
        clock=FixedClock(NOW),
        transport=httpx.MockTransport(gateway),
    )
    with client:
        assert client.health().status == "ok"
    assert gateway.requests[0].url.raw_path == b"/paygate/healthz"


def test_the_key_never_shows() -> None:
    with sync_client(Gateway(receipt())) as client:
        text = repr(client)
    secret = KEY.private_bytes_raw()
    assert "K0001" in text
    assert secret.hex() not in text


def test_construction_refuses_what_cannot_work() -> None:
    with pytest.raises(InvalidInputError):
        PaygateClient("ftp://gateway", device_id="K0001", private_key=KEY)
    with pytest.raises(InvalidInputError):
        PaygateClient(BASE, device_id="no spaces", private_key=KEY)
    with pytest.raises(TypeError):
        PaygateClient(BASE, device_id="K0001", private_key=b"key")  # type: ignore[arg-type]


# ── retries ──────────────────────────────────────────────────────────────────────────────


def test_a_connection_that_never_opened_is_retried_for_any_call() -> None:
    gateway = Gateway(httpx.ConnectError("refused"), httpx.ConnectError("refused"), receipt())
    with sync_client(gateway, max_retries=3) as client:
        paid = client.pay("3100000001", YUAN)
    keys = {r.headers["idempotency-key"] for r in gateway.requests}
    nonces = {r.headers["x-paygate-nonce"] for r in gateway.requests}
    assert len(gateway.requests) == 3
    assert keys == {paid.txn_id}  # the same key every time ...
    assert len(nonces) == 3  # ... signed afresh every time


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_keyed_call_is_retried_on_busy_answers(status: int) -> None:
    gateway = Gateway(problem(status, "store_error"), receipt(200, replayed=True))
    with sync_client(gateway) as client:
        assert client.pay("3100000001", YUAN).replayed


def test_a_lost_answer_is_retried_only_with_a_key() -> None:
    keyed = Gateway(httpx.ReadTimeout("slow"), receipt())
    with sync_client(keyed) as client:
        client.pay("3100000001", YUAN)
    assert len(keyed.requests) == 2
    core = ClientCore(BASE, device_id="K0001", private_key=KEY, clock=FixedClock(NOW))
    unkeyed: Call[None] = Call("POST", "/v1/anything", b"{}", None, lambda r: None)
    assert core.wait_after_error(unkeyed, httpx.ReadTimeout("slow"), 0) is None
    assert core.wait_after_error(unkeyed, httpx.ConnectError("refused"), 0) is not None
    answer = httpx.Response(503, request=core.build(unkeyed))
    assert core.wait_after_answer(unkeyed, answer, 0) is None


@pytest.mark.parametrize("status", [400, 401, 404, 409, 500])
def test_final_answers_are_not_retried(status: int) -> None:
    gateway = Gateway(problem(status, "whatever"))
    with (
        sync_client(gateway, max_retries=5) as client,
        pytest.raises(PaygateClientError) as refused,
    ):
        client.pay("3100000001", YUAN)
    assert len(gateway.requests) == 1
    assert refused.value.status == status


def test_retries_stop_at_the_limit_and_say_no_answer_came() -> None:
    gateway = Gateway(httpx.ConnectError("refused"))
    with (
        sync_client(gateway, max_retries=2) as client,
        pytest.raises(GatewayUnreachableError) as down,
    ):
        client.account("3100000001")
    assert len(gateway.requests) == 3
    assert (down.value.status, down.value.code) == (None, "unreachable")
    assert isinstance(down.value.__cause__, httpx.ConnectError)


def test_waits_grow_with_jitter_are_capped_and_honour_retry_after() -> None:
    core = ClientCore(
        BASE, device_id="K0001", private_key=KEY, backoff_base=0.5, backoff_cap=4.0, max_retries=10
    )
    call = core.health()
    waits = [core.wait_after_error(call, httpx.ConnectError("x"), n) for n in range(10)]
    assert all(w is not None and 0 <= w <= 4.0 for w in waits)
    assert max(w for w in waits if w is not None) > 0.5  # it does grow
    busy = httpx.Response(503, headers={"retry-after": "3"}, request=core.build(call))
    assert 3.0 <= (core.wait_after_answer(call, busy, 0) or 0) <= 4.0
    patient = httpx.Response(429, headers={"retry-after": "3600"}, request=core.build(call))
    assert core.wait_after_answer(call, patient, 0) == 4.0


def test_a_redirect_is_not_followed() -> None:
    gateway = Gateway(
        httpx.Response(307, headers={"location": "http://elsewhere.test/v1/payments"})
    )
    with sync_client(gateway) as client, pytest.raises(InvalidRequestError) as refused:
        client.pay("3100000001", YUAN)
    assert refused.value.status == 307
    assert len(gateway.requests) == 1


# ── errors ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "stale_timestamp", ClockSkewError),
        (403, "device_revoked", DeviceRevokedError),
        (404, "unknown_account", UnknownAccountError),
        (409, "idempotency_conflict", IdempotencyConflictError),
        (503, "store_error", ServiceUnavailableError),
        (500, "internal_error", ServerError),
        (400, "parse_error", InvalidRequestError),
    ],
)
def test_problems_become_errors_with_fields(status: int, code: str, kind: type[Exception]) -> None:
    gateway = Gateway(problem(status, code, field="amount"))
    with sync_client(gateway, max_retries=0) as client, pytest.raises(kind) as refused:
        client.pay("3100000001", YUAN)
    error = refused.value
    assert isinstance(error, PaygateClientError)
    assert isinstance(error, PaygateError)  # one tree, under paygate's root
    assert (error.status, error.code, error.field, error.request_id) == (
        status,
        code,
        "amount",
        "req-1",
    )
    assert error.detail == f"detail of {code}"
    assert "req-1" in str(error)


def test_an_answer_that_is_not_a_problem_still_becomes_an_error() -> None:
    gateway = Gateway(httpx.Response(502, text="<html>bad gateway</html>"))
    with sync_client(gateway, max_retries=0) as client, pytest.raises(ServiceUnavailableError) as e:
        client.account("3100000001")
    assert (e.value.code, e.value.status) == ("http_502", 502)


def test_a_wrong_pin_carries_the_attempts_left() -> None:
    gateway = Gateway(problem(403, "wrong_pin", field="pin", attempts_left=3))
    with sync_client(gateway) as client, pytest.raises(PaygateClientError) as refused:
        client.redeem_voucher("3100000001", "100000000008", "0000")
    assert refused.value.problem["attempts_left"] == 3
    assert "0000" not in str(refused.value)


# ── the async twin ───────────────────────────────────────────────────────────────────────


def test_the_async_client_signs_retries_and_refuses_the_same_way() -> None:
    async def scenario() -> tuple[Any, Any]:
        gateway = Gateway(httpx.ConnectError("refused"), problem(503, "store_error"), receipt())
        async with async_client(gateway, max_retries=3) as client:
            paid = await client.pay("3100000001", YUAN)
            keys = {r.headers["idempotency-key"] for r in gateway.requests}
            assert keys == {paid.txn_id}
            assert len(gateway.requests) == 3
        refusing = Gateway(problem(403, "device_revoked"))
        async with async_client(refusing) as client:
            with pytest.raises(DeviceRevokedError):
                await client.account("3100000001")
        return paid, client

    paid, client = asyncio.run(scenario())
    assert paid.payment_id == 7
    assert "K0001" in repr(client)


def test_a_clock_far_off_is_refused_by_the_verifier_the_client_is_checked_against() -> None:
    gateway = Gateway(receipt())
    late = FixedClock(NOW - timedelta(minutes=10))
    client = PaygateClient(
        BASE, device_id="K0001", private_key=KEY, clock=late, transport=httpx.MockTransport(gateway)
    )
    with client, pytest.raises(PaygateError) as refused:
        client.pay("3100000001", YUAN, paid_at=datetime(2026, 11, 25, 1, 50, tzinfo=UTC))
    assert refused.value.code == "stale_timestamp"


def test_the_client_exports_what_it_says_and_loads_no_web_framework() -> None:
    import paygate.client as package

    for name in package.__all__:
        assert getattr(package, name).__doc__, name
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, paygate.client; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.split() == ["False", "False"]


def test_an_answer_with_a_key_given_twice_is_unreadable_not_read_one_way() -> None:
    """A receipt whose amount appears twice could be printed as either: it is refused."""

    def doubled(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        body = json.dumps({**RECEIPT, "txn_id": sent["txn_id"]})
        twice = body.replace('"amount": ', '"amount": {"minor": 1, "currency": "CNY"}, "amount": ')
        return httpx.Response(201, content=twice, headers={"content-type": "application/json"})

    client = sync_client(Gateway(doubled), max_retries=0)
    with client, pytest.raises(PaygateClientError) as refused:
        client.pay("3100000001", Money(12050, "CNY"))
    assert refused.value.code == "unreadable_answer"
    assert "given twice" in str(refused.value)


@pytest.mark.parametrize("status", [201, 400, 503])
def test_an_answer_nested_beyond_reason_is_a_client_error_not_a_recursion_error(
    status: int,
) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    media = "application/json" if status == 201 else "application/problem+json"
    gateway = Gateway(httpx.Response(status, content=nested, headers={"content-type": media}))
    client = sync_client(gateway, max_retries=0)
    with client, pytest.raises(PaygateClientError) as refused:
        client.pay("3100000001", Money(12050, "CNY"))
    assert refused.value.status == status
