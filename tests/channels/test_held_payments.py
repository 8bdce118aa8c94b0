"""A wallet pays for an order that names no account: the wallet hears "received" at once,
and the money reaches suspense through reconciliation, where finance assigns it.

Run on SQLite and PostgreSQL (the ``gateway`` fixture), through the real Gateway.
"""

from __future__ import annotations

import json
from datetime import date

from paygate.channels.base import AdapterContext
from paygate.channels.mobile import AlipayAdapter, AlipayConfig, WechatPayAdapter, WechatPayConfig
from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.reconcile import assign_suspense, reconcile, sha256_of, suspense_items
from tests.channels import support

ALIPAY_KEY = support.rsa_key("alipay")
WECHAT_KEY = support.rsa_key("wechat")
BILL = support.LOCAL_DATA / "alipay_bill_20240501.csv"
TRADE = "2024050122001468451234567890"  # the notification's trade, line 6 of the bill


def payments(gateway: Gateway) -> int:
    return int(gateway.store.run(lambda tx: tx.one("SELECT COUNT(*) FROM payments")[0]))


def test_an_alipay_payment_without_account_is_acknowledged_then_parked_and_assigned(
    gateway: Gateway,
) -> None:
    gateway.open_account("0101234567")
    adapter = AlipayAdapter(AlipayConfig(alipay_public_key=support.public_pem(ALIPAY_KEY)))
    body = support.alipay_body(support.alipay_trade(passback_params=""), ALIPAY_KEY)

    first = adapter.handle_notify(body, {}, gateway)
    again = adapter.handle_notify(body, {}, gateway)  # Alipay would have retried "fail"
    for answer in (first, again):
        assert (answer.status_code, answer.body) == (200, b"success")
        assert answer.held is not None and answer.receipt is None
    assert payments(gateway) == 0

    run = reconcile(
        gateway,
        "alipay",
        date(2024, 5, 1),
        adapter.read_statement(BILL),
        file_sha256=sha256_of(BILL),
    )
    held = [item for item in suspense_items(gateway) if item.channel_txn_id == TRADE]
    assert len(held) == 1 and run.in_suspense >= 1
    [item] = held
    assert item.amount == Money(20000, "CNY")  # what the bill says Alipay settled

    receipt = assign_suspense(gateway, item.id, "0101234567", actor="finance.li")
    assert receipt.account_no == "0101234567" and receipt.amount == Money(20000, "CNY")
    assert [i for i in suspense_items(gateway) if i.channel_txn_id == TRADE] == []


def test_a_wechat_payment_for_an_unknown_account_is_acknowledged_and_posts_nothing(
    gateway: Gateway,
) -> None:
    adapter = WechatPayAdapter(
        WechatPayConfig(
            api_v3_key=support.WECHAT_API_KEY,  # type: ignore[arg-type]
            platform_keys={
                support.WECHAT_SERIAL: support.certificate_pem(
                    WECHAT_KEY, int(support.WECHAT_SERIAL, 16)
                )
            },
        ),
        AdapterContext(clock=FixedClock(support.WECHAT_NOW)),
    )
    body = support.wechat_envelope(
        json.dumps(support.wechat_transaction(attach="3199999999")).encode()
    )
    result = adapter.handle_notify(body, support.wechat_headers(body, WECHAT_KEY), gateway)
    assert (result.status_code, result.body, result.error_code) == (204, b"", None)
    assert result.held is not None and result.held.startswith("unknown_account")
    assert payments(gateway) == 0
