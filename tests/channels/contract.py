"""What each channel gives the shared contract suite (``test_contract.py``).

Every registered adapter — built-in or arriving by entry point — needs a :class:`ContractCase`
here, in the way every hyperswitch connector fills in the connector template's test. The
suite refuses to pass while a registered channel has no case.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paygate.channels.base import (
    AdapterContext,
    ChannelAdapter,
    NotifyResult,
    Operation,
    PaymentSink,
)
from paygate.channels.kiosk import KioskAdapter
from paygate.channels.mobile import AlipayAdapter, AlipayConfig, WechatPayAdapter, WechatPayConfig
from paygate.channels.online import OnlineAdapter, OnlineConfig
from paygate.channels.orders import InMemoryOrderStore
from paygate.clock import FixedClock
from paygate.money import Money
from tests.channels import kiosk_support, support, test_bank_agent, test_pos, test_voucher
from tests.channels.fake import FakeAdapter, FakeConfig, fake_signature

Message = tuple[bytes, dict[str, str]]


@dataclass(frozen=True)
class ContractCase:
    """How to build one channel's adapter and the inputs the contract needs from it."""

    name: str
    build: Callable[[], ChannelAdapter[Any]]
    forged: Callable[[ChannelAdapter[Any]], Message]
    """A well-formed notification signed with the wrong key."""
    malformed: Callable[[ChannelAdapter[Any]], Message]
    """A notification that passes any signature check but cannot be read."""
    statement: Callable[[], bytes]
    """A valid statement file with at least one line."""
    secrets: tuple[str, ...]
    """Configured values that must never show in a repr."""
    send: Callable[[ChannelAdapter[Any], bytes, dict[str, str], PaymentSink], NotifyResult] = (
        lambda adapter, body, headers, sink: adapter.handle_notify(body, headers, sink)
    )
    """How a message reaches the adapter: ``handle_notify``; a device channel's ``handle_pay``."""


def _alipay() -> AlipayAdapter:
    return AlipayAdapter(
        AlipayConfig(alipay_public_key=support.public_pem(support.rsa_key("alipay")))
    )


def _alipay_forged(adapter: ChannelAdapter[Any]) -> Message:
    return support.alipay_body(support.alipay_trade(), support.rsa_key("intruder")), {}


def _wechat() -> WechatPayAdapter:
    key = support.rsa_key("wechat")
    config = WechatPayConfig(
        api_v3_key=support.WECHAT_API_KEY,
        platform_keys={
            support.WECHAT_SERIAL: support.certificate_pem(key, int(support.WECHAT_SERIAL, 16))
        },
    )
    return WechatPayAdapter(config, AdapterContext(clock=FixedClock(support.WECHAT_NOW)))


def _wechat_forged(adapter: ChannelAdapter[Any]) -> Message:
    body = support.wechat_envelope(json.dumps(support.wechat_transaction()).encode())
    return body, support.wechat_headers(body, support.rsa_key("intruder"))


def _wechat_malformed(adapter: ChannelAdapter[Any]) -> Message:
    body = b'{"id": "EV-1", "event_type": '
    return body, support.wechat_headers(body, support.rsa_key("wechat"))


def _online() -> OnlineAdapter:
    config = OnlineConfig(
        merchant_id=support.ONLINE_MERCHANT,
        gateway_public_keys=(support.public_pem(support.rsa_key("unionpay")),),
    )
    context = AdapterContext(
        clock=FixedClock(datetime(2024, 5, 1, 2, 15, tzinfo=UTC)), orders=InMemoryOrderStore()
    )
    return OnlineAdapter(config, context)


def _online_forged(adapter: ChannelAdapter[Any]) -> Message:
    now = datetime(2024, 5, 1, 2, 15, tzinfo=UTC)
    order = adapter.create_order("0101234567", Money(15000, "CNY"), now=now)
    params = support.unionpay_params(order.order_id, 15000)
    return support.unionpay_body(params, support.rsa_key("intruder")), {}


def _pos_forged(adapter: ChannelAdapter[Any]) -> Message:
    return test_pos.signed(test_pos.sale(), key=b"not this terminal's key, 32 bytes"), {}


def _bank_agent_forged(adapter: ChannelAdapter[Any]) -> Message:
    return test_bank_agent.hmac_signed(test_bank_agent.pay(), key="not-the-shared-key-" * 3), {}


FAKE_SECRET = "fake-shared-secret-" + "x" * 13


def _fake() -> FakeAdapter:
    return FakeAdapter(FakeConfig(secret=FAKE_SECRET))


def _fake_forged(adapter: ChannelAdapter[Any]) -> Message:
    body = json.dumps(
        {
            "txn": "T1",
            "account": "0101234567",
            "amount": "1.00",
            "paid_at": "2024-05-01T10:00:00+08:00",
        }
    ).encode()
    return body, {"X-Fake-Signature": fake_signature("not the secret", body)}


def _fake_malformed(adapter: ChannelAdapter[Any]) -> Message:
    body = b"{not json"
    return body, {"x-fake-signature": fake_signature(FAKE_SECRET, body)}


def _kiosk() -> KioskAdapter:
    return kiosk_support.build_adapter()


def _kiosk_forged(adapter: ChannelAdapter[Any]) -> Message:
    body = kiosk_support.pay_body()
    intruder = kiosk_support.ed25519_key("intruder")
    return body, kiosk_support.signed_headers(intruder, kiosk_support.TERMINAL, body)


def _kiosk_malformed(adapter: ChannelAdapter[Any]) -> Message:
    body = b'{"txn_id": "cash-1", "amount": '
    key = kiosk_support.ed25519_key(kiosk_support.TERMINAL)
    return body, kiosk_support.signed_headers(key, kiosk_support.TERMINAL, body)


KIOSK_STATEMENT = (
    b"terminal_id,txn_id,account_no,amount,method,paid_at\n"
    b"K0001,cash-000123,0101234567,120.50,cash,2026-11-24 09:58:00\n"
    b"K0001,card-000124,0101234568,80.00,card,2026-11-24 10:12:31\n"
)


def _local(name: str) -> Callable[[], bytes]:
    return lambda: (support.LOCAL_DATA / name).read_bytes()


CASES: dict[str, ContractCase] = {
    "alipay": ContractCase(
        name="alipay",
        build=_alipay,
        forged=_alipay_forged,
        malformed=lambda adapter: (b"notify_type=trade_status_sync&sign", {}),
        statement=_local("alipay_bill_20240501.csv"),
        secrets=(),
    ),
    "wechatpay": ContractCase(
        name="wechatpay",
        build=_wechat,
        forged=_wechat_forged,
        malformed=_wechat_malformed,
        statement=_local("wechatpay_tradebill_20240501.csv"),
        secrets=(support.WECHAT_API_KEY,),
    ),
    "online": ContractCase(
        name="online",
        build=_online,
        forged=_online_forged,
        malformed=lambda adapter: (b"version=5.1.0&orderId=%G1", {}),
        statement=_local("online_statement_20240501.csv"),
        secrets=(),
    ),
    "kiosk": ContractCase(
        name="kiosk",
        build=_kiosk,
        forged=_kiosk_forged,
        malformed=_kiosk_malformed,
        statement=lambda: KIOSK_STATEMENT,
        secrets=(),
        send=lambda adapter, body, headers, sink: adapter.handle_pay(body, headers, sink),
    ),
    "pos": ContractCase(
        name="pos",
        build=test_pos.pos_adapter,
        forged=_pos_forged,
        malformed=lambda adapter: (b"msg_type=sale&terminal_id=HALL0001&mac", {}),
        statement=lambda: test_pos.POS_STATEMENT,
        secrets=(test_pos.TERMINAL_KEY.hex(),),
        send=lambda adapter, body, headers, sink: adapter.handle_pay(body, headers, sink),
    ),
    "bank_agent": ContractCase(
        name="bank_agent",
        build=test_bank_agent.bank_adapter,
        forged=_bank_agent_forged,
        malformed=lambda adapter: (b"msg_type=pay&sign_type=HMAC-SHA256&sign=%G1", {}),
        statement=lambda: test_bank_agent.BANK_STATEMENT,
        secrets=(test_bank_agent.SHARED_KEY,),
    ),
    "voucher": ContractCase(
        name="voucher",
        build=test_voucher.contract_adapter,
        forged=test_voucher.contract_forged,
        malformed=lambda adapter: (test_voucher.MALFORMED_REDEMPTION, {}),
        statement=lambda: test_voucher.CARD_SALES_STATEMENT,
        secrets=(),
        send=lambda adapter, body, headers, sink: adapter.handle_redeem(body, headers, sink),
    ),
    "fake": ContractCase(
        name="fake",
        build=_fake,
        forged=_fake_forged,
        malformed=_fake_malformed,
        statement=lambda: b"T1,0101234567,10.00,0.06,2024-05-01T10:00:00+08:00\n",
        secrets=(FAKE_SECRET,),
    ),
}


def call_operation(adapter: ChannelAdapter[Any], operation: Operation, sink: PaymentSink) -> object:
    """Invoke ``operation`` on ``adapter`` with harmless arguments."""
    body, headers = b"{}", {"Content-Type": "application/json"}
    now = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    match operation:
        case Operation.NOTIFY:
            return adapter.handle_notify(body, headers, sink)
        case Operation.PAY:
            return adapter.handle_pay(body, headers, sink)
        case Operation.REFUND:
            return adapter.handle_refund(body, headers, sink)
        case Operation.VOID:
            return adapter.handle_void(body, headers, sink)
        case Operation.REVERSAL:
            return adapter.handle_reversal(body, headers, sink)
        case Operation.DAILY_CLOSE:
            return adapter.handle_daily_close(body, headers, sink)
        case Operation.REDEEM:
            return adapter.handle_redeem(body, headers, sink)
        case Operation.STATEMENT:
            return list(adapter.read_statement(io.BytesIO(b"")))
        case Operation.BATCH_FILE:
            return list(adapter.read_batch_file(io.BytesIO(b"")))
        case Operation.ORDER:
            return adapter.create_order("0101234567", Money(100, "CNY"), now=now)
    raise AssertionError(f"no way to call {operation}")
