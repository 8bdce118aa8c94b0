"""The worked examples in docs/ run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_the_billing_systems_worked_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "FixedClock" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    receipt = namespace["receipt"]
    assert receipt.reconnection_order_id is not None  # type: ignore[attr-defined]
    assert receipt.late_fee.format() == "10.00"  # type: ignore[attr-defined]
    status = namespace["status"]
    assert status.arrears.minor == 101000  # type: ignore[attr-defined]


def test_the_billing_systems_feed_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "payments_since" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    receipt = namespace["receipt"]
    paid = receipt.payment_id  # type: ignore[attr-defined]
    assert namespace["seen"] == [("payment", paid, "50.00"), ("reversal", paid, "50.00")]


def test_the_billing_systems_http_example_reads_the_feed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from pydantic import SecretBytes

    from paygate.api import create_app
    from paygate.service_clients import ServiceClientRegistry
    from paygate.tokens import TokenSettings
    from tests.api.support import LiveServer, open_world, settings_for
    from tests.databases import fresh_sqlite_url

    [example] = [b for b in python_blocks("billing-systems.md") if "/v1/oauth/token" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    read_payments = namespace["read_payments"]
    url = fresh_sqlite_url(tmp_path)
    key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    tokens = TokenSettings(signing_key=SecretBytes(key))
    world = open_world(url)
    try:
        world.customer("3100000001")
        _, secret = ServiceClientRegistry(world.gateway.store, world.gateway.clock).add(
            "billing-east", ["payments:read"]
        )
        with LiveServer(lambda: create_app(settings_for(url), tokens=tokens)) as server:
            items, cursor = read_payments(server.url, "billing-east", secret)  # type: ignore[operator]
            assert items == [] and cursor
            from datetime import UTC, datetime

            from paygate.models import PaymentIntent
            from paygate.money import Money

            world.gateway.pay(
                PaymentIntent(
                    channel="online",
                    channel_txn_id="T-1",
                    account_no="3100000001",
                    amount=Money(5000, "CNY"),
                    paid_at=datetime.now(UTC),
                )
            )
            more, _ = read_payments(server.url, "billing-east", secret, cursor)  # type: ignore[operator]
            assert [(i["kind"], i["channel_txn_id"]) for i in more] == [("payment", "T-1")]
    finally:
        world.gateway.close()
