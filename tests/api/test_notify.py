"""Each channel's notify route, with messages signed the way the channel's own tests sign them.

The route must answer exactly what the channel's adapter answers — status, bytes and content
type — so every answer is compared with the :class:`~paygate.channels.base.NotifyResult` of
an adapter built from the same configuration, given the same message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from paygate.api import ApiConfig
from paygate.channels.base import AdapterContext, ChannelRegistry, NotifyResult
from paygate.channels.online import OnlineAdapter
from paygate.channels.orders import InMemoryOrderStore
from paygate.channels.stores import SqlOrderStore
from paygate.money import Money
from tests.api.support import LiveServer, World, live_server
from tests.channels import contract, support, test_bank_agent
from tests.channels.support import RecordingSink

CUSTOMER = "0101234567"  # the account every channel's sample message pays
NOTIFY_CHANNELS = ("alipay", "wechatpay", "online", "bank_agent")
REGISTRY = ChannelRegistry.discover()


def channel_configs() -> dict[str, Any]:
    """The configurations the channels' own tests use: the same keys sign here."""
    return {name: contract.CASES[name].build().config for name in NOTIFY_CHANNELS}


def expected(channel: str, body: bytes, headers: dict[str, str]) -> NotifyResult:
    """What the channel's adapter answers this message (one the sink is never called for)."""
    adapter = REGISTRY.create(
        channel, channel_configs()[channel], AdapterContext(orders=InMemoryOrderStore())
    )
    sink = RecordingSink()
    result = adapter.handle_notify(body, headers, sink)
    assert sink.calls == 0
    return result


def same_answer(response: httpx.Response, result: NotifyResult) -> None:
    assert response.status_code == result.status_code
    assert response.content == result.body
    assert response.headers.get("content-type") == result.content_type


@pytest.fixture
def notify_server(db_url: str, world: World) -> Iterator[LiveServer]:
    world.gateway.open_account(CUSTOMER)
    with live_server(db_url, ApiConfig(channels=channel_configs())) as server:
        yield server


def post(server: LiveServer, channel: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/channels/{channel}/notify", content=body, headers=headers)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_every_channel_notifies_in_its_format_and_is_answered_in_it(
    world: World, notify_server: LiveServer
) -> None:
    server = notify_server

    # Alipay: RSA2 over the sorted form fields; "success" once posted, also for a retry.
    alipay = support.alipay_body(support.alipay_trade(), support.rsa_key("alipay"))
    first, retry = post(server, "alipay", alipay, FORM), post(server, "alipay", alipay, FORM)
    for answer in (first, retry):
        assert (answer.status_code, answer.content) == (200, b"success")
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    forged = support.alipay_body(support.alipay_trade(), support.rsa_key("intruder"))
    same_answer(post(server, "alipay", forged, FORM), expected("alipay", forged, FORM))

    # WeChat Pay: SHA256withRSA over timestamp, nonce and body, resource sealed with AES-GCM;
    # 204 with no body once posted. A retry is signed afresh, as WeChat Pay does.
    plaintext = json.dumps(support.wechat_transaction()).encode()
    envelope = support.wechat_envelope(plaintext)
    key = support.rsa_key("wechat")
    for _ in range(2):
        headers = support.wechat_headers(envelope, key, timestamp=datetime.now(UTC))
        answer = post(server, "wechatpay", envelope, headers)
        assert (answer.status_code, answer.content) == (204, b"")
        assert "content-type" not in answer.headers
    stale = support.wechat_headers(envelope, key)  # signed at 2024-05-01: far outside the window
    refused = post(server, "wechatpay", envelope, stale)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["code"] == "FAIL" and "stale_timestamp" in refused.json()["message"]
    forged_headers = support.wechat_headers(
        envelope, support.rsa_key("intruder"), timestamp=datetime.now(UTC)
    )
    same_answer(
        post(server, "wechatpay", envelope, forged_headers),
        expected("wechatpay", envelope, forged_headers),
    )

    # The online gateway: an order fixed first (here by the web front end's adapter on the same
    # database), then the signed notification; "ok" once posted.
    orders = OnlineAdapter(
        channel_configs()["online"], AdapterContext(orders=SqlOrderStore(world.gateway.store))
    )
    order = orders.create_order(CUSTOMER, Money(15000, "CNY"), now=datetime.now(UTC))
    params = support.unionpay_params(order.order_id, 15000)
    online = support.unionpay_body(params, support.rsa_key("unionpay"))
    answer = post(server, "online", online, FORM)
    assert (answer.status_code, answer.content) == (200, b"ok")
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    unknown = support.unionpay_body(
        support.unionpay_params("20240501000000aaaaaaaaaaaaaaaa", 15000),
        support.rsa_key("unionpay"),
    )
    # A verified payment of an unknown order is acknowledged (the gateway would retry a
    # refusal for hours) and held for suspense; nothing is posted.
    held = post(server, "online", unknown, FORM)
    assert (held.status_code, held.content) == (200, b"ok")

    # The bank agent: HMAC over the sorted fields; the answer is form fields.
    bank = test_bank_agent.hmac_signed(test_bank_agent.pay())
    answer = post(server, "bank_agent", bank, FORM)
    assert answer.headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8"
    fields = dict(parse_qsl(answer.text))
    assert (fields["result"], fields["account_no"], fields["amount"]) == ("paid", CUSTOMER, "12050")
    assert post(server, "bank_agent", bank, FORM).content == answer.content  # the same bytes again
    forged_bank = test_bank_agent.hmac_signed(test_bank_agent.pay(), key="not-the-key-" * 4)
    same_answer(
        post(server, "bank_agent", forged_bank, FORM), expected("bank_agent", forged_bank, FORM)
    )

    # Each payment once, whatever the retries.
    assert {channel: world.payments(channel) for channel in NOTIFY_CHANNELS} == dict.fromkeys(
        NOTIFY_CHANNELS, 1
    )
    assert world.balance(CUSTOMER) == -(12050 + 12050 + 15000 + 12050)

    # A channel that is not configured, or sends no notifications, has no endpoint here.
    for channel in ("nosuchchannel", "kiosk"):
        answer = post(server, channel, b"x=1", FORM)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "unknown_channel"

    # An oversized notification is refused by the channel, in its format, and never read whole.
    limit = channel_configs()["alipay"].max_body_bytes
    body = b"a=" + b"x" * (limit * 4)
    answer = post(server, "alipay", body, FORM)
    same_answer(answer, expected("alipay", body[: limit + 1], FORM))
    assert answer.status_code == 413
