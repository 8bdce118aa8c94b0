"""Hostile and ambiguous JSON bodies through the HTTP gateway: a clear 400, never a 500, and
nothing posted — whatever the body's author signed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pydantic import SecretBytes

from paygate.api import ApiConfig
from paygate.channels.kiosk import KioskConfig
from paygate.channels.voucher import VoucherConfig
from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.api.support import ACCOUNT, LiveServer, World, live_server, open_world
from tests.api.test_http import assert_problem, pay_body, post_payment, signed

PIN_KEY = SecretBytes(bytes(range(40, 72)))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, LiveServer]]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('bodies')) / 'paygate.db'}"
    world = open_world(url)
    try:
        world.customer()
        world.register("K0001")
        cards = VoucherService(world.gateway, PIN_KEY)
        cards.issue_batch("B1", 3, Money(5000, "CNY"), world.days_ahead(365), BytesIO())
        cards.activate("B1", retailer="Shop 1")
        config = ApiConfig(
            channels={"kiosk": KioskConfig(), "voucher": VoucherConfig()},
            voucher_pin_key=PIN_KEY,
        )
        with live_server(url, config) as server:
            yield world, server
    finally:
        world.gateway.close()


def redeem(server: LiveServer, body: bytes) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": uuid.uuid4().hex,
        **signed("K0001", body, path="/v1/vouchers/redeem"),
    }
    return httpx.post(f"{server.url}/v1/vouchers/redeem", content=body, headers=headers)


@pytest.mark.parametrize("depth", [100, 1_900])  # within the 4 KiB body limit
def test_a_deeply_nested_redemption_is_a_400_naming_the_body(
    served: tuple[World, LiveServer], depth: int
) -> None:
    world, server = served
    request = {"account_no": ACCOUNT, "serial": "100000000008", "pin": "4822019375561043"}
    body = json.dumps(request)[:-1].encode() + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    problem = assert_problem(redeem(server, body), 400, "parse_error")
    assert "nested deeper" in problem["detail"]
    assert world.payments() == 0


def test_a_payment_naming_its_amount_twice_is_a_400_and_posts_nothing(
    served: tuple[World, LiveServer],
) -> None:
    world, server = served
    body = pay_body(txn_id="cash-dup", amount=1).replace(
        b'"amount": 1,', b'"amount": 1, "amount": 100000,'
    )
    assert body.count(b'"amount"') == 2
    assert_problem(post_payment(server, "K0001", body), 400, "parse_error")
    assert world.payments() == 0


@pytest.mark.parametrize(
    "paid_at", ["0001-01-01T07:59:59+08:00", "0001-01-01T08:00:00+08:00", "1999-12-31T23:59:59Z"]
)
def test_a_payment_dated_before_any_real_one_is_a_400_and_posts_nothing(
    served: tuple[World, LiveServer], paid_at: str
) -> None:
    world, server = served
    body = pay_body(txn_id=f"cash-y{paid_at[:4]}{paid_at[11:13]}", paid_at=paid_at)
    response = post_payment(server, "K0001", body)
    assert response.status_code == 400, response.text
    assert world.payments() == 0
