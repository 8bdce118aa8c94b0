"""The HTTP gateway's refusals in the order a caller meets them, over a real server.

Who is asking is settled before what is asked (an unsigned request is 401 whatever its body,
path or headers); a JSON route reads ``application/json`` and nothing else (415); a JSON body
with a key given twice or nested without end is 400 and posts nothing; an account number
holding ``/`` is looked up as it is paid; a part the deployment did not configure is not
served at all. On SQLite and PostgreSQL where a database is involved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import httpx
import pytest
from pydantic import SecretBytes

from paygate.api import ApiConfig, create_app
from paygate.channels.pos import PosConfig
from paygate.channels.voucher import VoucherConfig
from paygate.errors import ConfigurationError
from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.api.support import ACCOUNT, BILL, LiveServer, World, client, live_server, settings_for
from tests.api.test_http import (
    SQLITE_ONLY,
    assert_problem,
    now,
    pay_body,
    reconnection_order,
    signed,
)
from tests.api.test_notify import channel_configs
from tests.headend.simulator import CALLBACK_SECRET, hmac_hex

PIN_KEY = SecretBytes(bytes(range(40, 72)))
SLASHED = "31/0000/77"
DEEP = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
FORM = "application/x-www-form-urlencoded"


@dataclass
class Everything:
    """A server with cards and head-end callbacks configured, a card to redeem, an order."""

    server: LiveServer
    serial: str
    pin: str
    order_id: int
    payments: int
    """Payments in the ledger when the test began (the order's own)."""


@pytest.fixture
def everything(db_url: str, world: World) -> Iterator[Everything]:
    order_id = reconnection_order(world.gateway)  # ACCOUNT, disconnected, then paid
    world.gateway.issue_bill(
        ACCOUNT, bill_no="B-2", amount=BILL, period="2026-10", due_date=world.days_ahead(20)
    )
    world.register("K0001")
    world.register("K0002")
    service = VoucherService(world.gateway, PIN_KEY)
    printed = BytesIO()
    issued = service.issue_batch("B1", 1, Money(5000, "CNY"), world.days_ahead(365), printed)
    service.activate("B1", retailer="Shop 1")
    pins = dict(line.split(",")[1:3] for line in printed.getvalue().decode().splitlines()[1:])
    config = ApiConfig(
        channels={"voucher": VoucherConfig(max_body_bytes=65536)},
        voucher_pin_key=PIN_KEY,
        callback_secret=SecretBytes(CALLBACK_SECRET),
    )
    with live_server(db_url, config) as server:
        serial = issued.first_serial
        yield Everything(server, serial, pins[serial], order_id, world.payments())


def post(
    server: LiveServer,
    path: str,
    body: bytes,
    *,
    device: str | None = "K0001",
    content_type: str | None = "application/json",
    **extra: str,
) -> httpx.Response:
    """A POST to ``path``, signed by ``device`` (unsigned when None), with these headers."""
    headers: dict[str, str] = signed(device, body, path=path) if device else {}
    headers.pop("Content-Type", None)
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(extra)
    return httpx.post(f"{server.url}{path}", content=body, headers=headers)


def redeem_body(everything: Everything, **changes: Any) -> bytes:
    fields = {"account_no": ACCOUNT, "serial": everything.serial, "pin": everything.pin}
    return json.dumps({**fields, **changes}).encode()


def callback(
    server: LiveServer,
    order_id: int,
    *,
    path_id: str | None = None,
    content_type: str | None = "application/json",
    body: bytes | None = None,
) -> httpx.Response:
    """The head-end's signed report (by default: ``order_id`` completed), posted to
    ``path_id``'s path."""
    if body is None:
        report = {"order_id": order_id, "outcome": "completed", "at": now().isoformat()}
        body = json.dumps(report).encode()
    stamp = str(int(now().timestamp()))
    headers = {
        "X-Headend-Timestamp": stamp,
        "X-Headend-Signature": hmac_hex(CALLBACK_SECRET, stamp, body),
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    where = path_id if path_id is not None else str(order_id)
    return httpx.post(
        f"{server.url}/v1/supply-orders/{where}/confirm", content=body, headers=headers
    )


def nothing_posted(world: World, everything: Everything) -> bool:
    return world.payments() == everything.payments


# ── item 10: authentication first ────────────────────────────────────────────────────────


def test_an_unsigned_request_is_told_401_before_anything_about_its_content(
    world: World, everything: Everything
) -> None:
    server = everything.server
    pay = pay_body("cash-unsigned-1")
    refusals = [
        # A missing and a malformed Idempotency-Key, a body that is not JSON nor declared so.
        post(server, "/v1/payments", pay, device=None),
        post(server, "/v1/payments", pay, device=None, **{"Idempotency-Key": "no spaces"}),
        post(server, "/v1/payments", b"amount=1", device=None, content_type=FORM),
        # A path parameter out of form, a header naming another device.
        post(server, "/v1/kiosks/-bad/close", b"{}", device=None),
        post(server, "/v1/kiosks/K0001/close", b"{}", device=None, **{"X-Paygate-Device": "K2"}),
        post(server, "/v1/vouchers/redeem", b"{}", device=None, **{"Idempotency-Key": "a b"}),
        post(server, "/v1/vouchers/redeem", b"x", device=None, content_type="text/plain"),
        httpx.get(f"{server.url}/v1/accounts/{'9' * 65}"),
        httpx.get(f"{server.url}/v1/accounts/%20"),
    ]
    for response in refusals:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.headers["www-authenticate"] == 'Signature realm="paygate"'
    # The head-end's route: a path that is no order, or a body in no form, unsigned.
    for order in ("abc", "0", str(everything.order_id)):
        for resource in ("supply-orders", "reconnections"):
            unsigned = httpx.post(
                f"{server.url}/v1/{resource}/{order}/confirm",
                content=b"outcome=completed",
                headers={"Content-Type": FORM},
            )
            assert unsigned.status_code == 401, unsigned.text
    assert nothing_posted(world, everything)


def test_once_signed_the_same_requests_are_refused_for_what_they_say(
    world: World, everything: Everything
) -> None:
    server = everything.server
    pay = pay_body("cash-signed-1")
    missing = post(server, "/v1/payments", pay)
    assert assert_problem(missing, 400, "idempotency_key_invalid")["field"] == "Idempotency-Key"
    bad_id = post(server, "/v1/kiosks/-bad/close", b"{}", device="K0001")
    # Signed for its path by a registered device whose id is not the path's: 400 for the form.
    assert_problem(bad_id, 400, "invalid_input")
    other = post(server, "/v1/kiosks/K0001/close", b"{}", device="K0002")
    assert_problem(other, 403, "device_mismatch")
    key = post(server, "/v1/vouchers/redeem", redeem_body(everything), **{"Idempotency-Key": "a b"})
    assert_problem(key, 400, "idempotency_key_invalid")
    path = f"/v1/accounts/{'9' * 65}"
    long = httpx.get(f"{server.url}{path}", headers=signed("K0001", path=path, method="GET"))
    assert assert_problem(long, 400, "invalid_input")["field"] == "account_no"
    for order in ("abc", "0"):
        report = callback(server, everything.order_id, path_id=order)
        assert assert_problem(report, 400, "invalid_input")["field"] == "order_id"
    assert nothing_posted(world, everything)


# ── item 7: a JSON route reads JSON ──────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "content_type", ["text/plain", FORM, None, "application/json; charset=gbk"]
)
def test_a_json_route_refuses_another_media_type_with_415_and_does_nothing(
    world: World, everything: Everything, content_type: str | None
) -> None:
    server = everything.server
    pay = pay_body("cash-media-1", 500)
    answers = {
        "payment": post(
            server,
            "/v1/payments",
            pay,
            content_type=content_type,
            **{"Idempotency-Key": "cash-media-1"},
        ),
        "close": post(
            server,
            "/v1/kiosks/K0001/close",
            json.dumps({"business_date": now().date().isoformat()}).encode(),
            content_type=content_type,
        ),
        "redeem": post(
            server, "/v1/vouchers/redeem", redeem_body(everything), content_type=content_type
        ),
        "callback": callback(server, everything.order_id, content_type=content_type),
    }
    for where, response in answers.items():
        problem = assert_problem(response, 415, "unsupported_media_type")
        assert problem["field"] == "Content-Type", where
        assert "application/json" in problem["detail"], where
    assert nothing_posted(world, everything)
    # Declared as JSON (a charset of UTF-8 is JSON's own), the very same payment is posted.
    declared = "application/json; charset=UTF-8"
    headers = {"Idempotency-Key": "cash-media-2"}
    posted = post(
        server, "/v1/payments", pay_body("cash-media-2", 500), content_type=declared, **headers
    )
    assert posted.status_code == 201, posted.text
    assert world.payments() == everything.payments + 1


def test_a_body_with_a_key_twice_or_nested_without_end_is_400_and_posts_nothing(
    world: World, everything: Everything
) -> None:
    server = everything.server
    twice = pay_body("cash-twice-1", 500)[:-1] + b', "amount": 101000}'
    assert json.loads(twice)["amount"] == 101000  # what a lenient reader would have posted
    deep_payment = pay_body("cash-deep-1", 500)[:-1] + b', "extra": ' + DEEP + b"}"
    for body, key in ((twice, "cash-twice-1"), (deep_payment, "cash-deep-1")):
        response = post(server, "/v1/payments", body, **{"Idempotency-Key": key})
        assert_problem(response, 400, "parse_error")
    card_twice = redeem_body(everything)[:-1] + b', "account_no": "3100000002"}'
    card_deep = redeem_body(everything)[:-1] + b', "extra": ' + DEEP + b"}"
    for body in (card_twice, card_deep):
        assert_problem(post(server, "/v1/vouchers/redeem", body), 400, "parse_error")
    assert nothing_posted(world, everything)
    assert world.balance(ACCOUNT) == BILL.minor

    # A kiosk's close and the head-end's report are read as strictly, after their signatures.
    day = now().date().isoformat()
    close = json.dumps(
        {
            "business_date": day,
            "currency": "CNY",
            "counted_cash": 0,
            "count": 0,
            "amount": 0,
            "by_method": {"cash": {"count": 0, "amount": 0}, "card": {"count": 0, "amount": 0}},
        }
    ).encode()
    close_twice = close[:-1] + b', "counted_cash": 100000}'
    close_deep = close[:-1] + b', "extra": ' + DEEP + b"}"
    for body in (close_twice, close_deep):
        assert_problem(post(server, "/v1/kiosks/K0001/close", body), 400, "parse_error")
    # Nothing was recorded: the real close is the first.
    assert post(server, "/v1/kiosks/K0001/close", close).status_code == 201
    report = json.dumps({"order_id": everything.order_id, "outcome": "completed"})
    report_twice = report[:-1] + ', "outcome": "failed"}'
    answer = callback(server, everything.order_id, body=report_twice.encode())
    assert_problem(answer, 400, "parse_error")


# ── item 9: an account number with "/" ───────────────────────────────────────────────────


def test_an_account_number_with_a_slash_is_looked_up_as_it_is_paid(
    world: World, everything: Everything
) -> None:
    world.customer(SLASHED, owes=Money(3000, "CNY"))
    with client(everything.server, "K0003", world.register("K0003")) as kiosk:
        before = kiosk.account(SLASHED)
        kiosk.pay(SLASHED, Money(3000, "CNY"))
        after = kiosk.account(SLASHED)
    assert before.account_no == after.account_no == SLASHED
    assert (before.outstanding, after.outstanding) == (Money(3000, "CNY"), Money(0, "CNY"))
    # On the wire: "/" travels as %2F, and that is the target signed and routed.
    path = "/v1/accounts/31%2F0000%2F77"
    raw = httpx.get(
        f"{everything.server.url}{path}", headers=signed("K0001", path=path, method="GET")
    )
    assert raw.status_code == 200 and raw.json()["account_no"] == SLASHED


# ── item 13: what is not configured is not served ────────────────────────────────────────


@SQLITE_ONLY
def test_a_part_not_configured_is_absent_from_the_app_and_its_document(
    db_url: str, world: World, server: LiveServer
) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert "enum: []" not in json.dumps(document)
    assert '"enum": []' not in json.dumps(document)
    for path in (
        "/v1/channels/alipay/notify",
        "/v1/vouchers/redeem",
        "/v1/pos/sale",
        "/v1/supply-orders/1/confirm",
        "/v1/reconnections/1/confirm",
    ):
        response = httpx.post(f"{server.url}{path}", content=b"{}")
        assert_problem(response, 404, "not_found")
        assert path.split("/")[2] not in "".join(document["paths"])


@SQLITE_ONLY
def test_the_notify_channels_documented_are_those_served(db_url: str) -> None:
    configs = {**channel_configs(), "pos": PosConfig(merchant_ids=["898110048160001"])}
    app = create_app(settings_for(db_url), config=ApiConfig(channels=configs))
    document = app.openapi()
    [channel] = [
        p
        for p in document["paths"]["/v1/channels/{channel}/notify"]["post"]["parameters"]
        if p["name"] == "channel"
    ]
    assert set(channel["schema"]["enum"]) == set(channel_configs())
    assert "pos" not in channel["schema"]["enum"]
    assert "/v1/pos/{operation}" in document["paths"]


@SQLITE_ONLY
def test_cards_without_their_pin_key_are_refused_at_creation_not_served_as_503(
    db_url: str,
) -> None:
    config = ApiConfig(channels={"voucher": VoucherConfig()})
    with pytest.raises(ConfigurationError) as refused:
        create_app(settings_for(db_url), config=config)
    assert refused.value.field == "channels.voucher"
