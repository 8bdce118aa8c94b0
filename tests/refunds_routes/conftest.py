"""Fixtures of the refund route tests: each fake provider on a loopback port, and the route
pointed at it, built the way a deployment builds it (key files, ``build_routes``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from paygate.money import Money
from paygate.refunds.route import Payee, RefundRequest
from paygate.refunds.routes import (
    AlipayRefundRoute,
    OnlineRefundRoute,
    RefundsSection,
    WechatPayRefundRoute,
    build_routes,
)
from tests.api.support import LiveServer
from tests.refunds_routes.fakes import (
    MERCHANT_SERIAL,
    ONLINE_CERT_ID,
    WECHAT_PLATFORM_SERIAL,
    Fake,
    alipay_app,
    key,
    online_app,
    wechat_app,
)

APP_ID = "2021000118600001"
MCHID = "1900009191"
MER_ID = "777290058110048"
PASSPHRASE = "open-sesame-passphrase-42"
PAYMENT = "2024050122001400001234567890"
PAID = Money(15000, "CNY")
AMOUNT = Money(5000, "CNY")


def request(
    refund_id: str = "R-2024-0001",
    amount: Money = AMOUNT,
    *,
    payment: str | None = PAYMENT,
    payee: Payee | None = None,
) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        account_no="0101234567",
        amount=amount,
        reason="overpaid bill",
        requested_at=datetime(2024, 5, 1, 2, 15, 30, tzinfo=UTC),
        original_channel_txn_id=payment,
        original_amount=PAID if payment else None,
        payee=payee,
    )


def write_keys(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    """Every key file a deployment holds: the merchant's private keys (the Alipay one
    encrypted under PASSPHRASE) and the providers' public keys."""
    files = {
        "alipay_app": tmp / "alipay_app_private.pem",
        "alipay_public": tmp / "alipay_public.pem",
        "wechat_merchant": tmp / "apiclient_key.pem",
        "wechat_platform": tmp / "wechatpay_platform.pem",
        "online_merchant": tmp / "online_sign.pem",
        "online_gateway": tmp / "online_gateway.pem",
    }
    files["alipay_app"].write_bytes(key("alipay_app").encrypted_pem(PASSPHRASE.encode()))
    files["alipay_public"].write_text(key("alipay").public_pem)
    files["wechat_merchant"].write_bytes(key("wechat_merchant").private_pem)
    files["wechat_platform"].write_text(key("wechat_platform").public_pem)
    files["online_merchant"].write_bytes(key("online_merchant").private_pem)
    files["online_gateway"].write_text(key("online_gateway").public_pem)
    return files


def section(
    urls: dict[str, str], files: dict[str, Path], tmp: Path, timeout: float = 1.0
) -> RefundsSection:
    return RefundsSection.model_validate(
        {
            "alipay": {
                "base_url": urls.get("alipay", "http://127.0.0.1:9") + "/gateway.do",
                "app_id": APP_ID,
                "app_private_key_file": files["alipay_app"],
                "app_private_key_passphrase_env": "ALIPAY_KEY_PASSPHRASE",
                "alipay_public_key_file": files["alipay_public"],
                "timeout": timeout,
            },
            "wechatpay": {
                "base_url": urls.get("wechatpay", "http://127.0.0.1:9"),
                "mchid": MCHID,
                "merchant_serial_no": MERCHANT_SERIAL,
                "merchant_private_key_file": files["wechat_merchant"],
                "platform_certificate_files": {WECHAT_PLATFORM_SERIAL: files["wechat_platform"]},
                "timeout": timeout,
            },
            "online": {
                "base_url": urls.get("online", "http://127.0.0.1:9"),
                "merchant_id": MER_ID,
                "cert_id": ONLINE_CERT_ID,
                "signing_key_file": files["online_merchant"],
                "gateway_certificate_files": [files["online_gateway"]],
                "back_url": "https://pay.utility.example/notify/online",
                "timeout": timeout,
            },
            "bank_transfer": {
                "outbound_dir": tmp / "to_bank",
                "return_dir": tmp / "from_bank",
                "payer_account": "6222020200112233445",
            },
        }
    )


ENV = {"ALIPAY_KEY_PASSPHRASE": PASSPHRASE}


@dataclass
class Provider:
    fake: Fake
    server: LiveServer


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, Provider]]:
    fakes = {
        name: Fake(payments={PAYMENT: PAID.minor}) for name in ("alipay", "wechatpay", "online")
    }
    apps = {
        "alipay": lambda: alipay_app(
            fakes["alipay"], app_key=key("alipay_app"), alipay_key=key("alipay"), app_id=APP_ID
        ),
        "wechatpay": lambda: wechat_app(
            fakes["wechatpay"],
            merchant_key=key("wechat_merchant"),
            platform_key=key("wechat_platform"),
            mchid=MCHID,
        ),
        "online": lambda: online_app(
            fakes["online"],
            merchant_key=key("online_merchant"),
            gateway_key=key("online_gateway"),
            mer_id=MER_ID,
        ),
    }
    servers = {name: LiveServer(app).start() for name, app in apps.items()}  # type: ignore[arg-type]
    try:
        yield {name: Provider(fakes[name], servers[name]) for name in apps}
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def fresh(providers: dict[str, Provider]) -> dict[str, Provider]:
    """The providers with their refunds forgotten and no misbehaviour."""
    for provider in providers.values():
        provider.fake.refunds.clear()
        provider.fake.queries.clear()
        provider.fake.mode = ""
        provider.fake.pending = False
        provider.fake.rejected_signatures = 0
        provider.fake.payments = {PAYMENT: PAID.minor}
    return providers


@contextmanager
def built_routes(config: RefundsSection) -> Iterator[dict[str, Any]]:
    """The routes of ``config``, their connections closed afterwards."""
    built = build_routes(config, environ=ENV)
    try:
        yield dict(built)
    finally:
        for route in built.values():
            if isinstance(route, AlipayRefundRoute | WechatPayRefundRoute | OnlineRefundRoute):
                route.close()


@pytest.fixture
def routes(fresh: dict[str, Provider], tmp_path: Path) -> Iterator[dict[str, Any]]:
    files = write_keys(tmp_path / "keys")
    urls = {name: provider.server.url for name, provider in fresh.items()}
    with built_routes(section(urls, files, tmp_path)) as built:
        yield built


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
