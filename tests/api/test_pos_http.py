"""POS terminals over HTTP: MAC-signed sales, voids and batch settlement on a live server,
the terminal's key stored encrypted in the device registry; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import secrets
from datetime import date
from pathlib import Path

import httpx
import pytest
from pydantic import SecretBytes

from paygate.api.config import load_api_config
from paygate.clock import FixedClock
from paygate.devices import DeviceRegistry
from paygate.gateway import Gateway
from paygate.money import Money
from tests.api.support import live_server, settings_for
from tests.channels.test_pos import (
    ACCOUNT,
    MERCHANT,
    NOW,
    TERMINAL,
    TERMINAL_KEY,
    sale,
    settle,
    signed,
    void,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_pos_sale_void_and_settlement_over_http(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kek = secrets.token_bytes(32)
    monkeypatch.setenv("PAYGATE_KEY_ENCRYPTION_KEY", base64.b64encode(kek).decode())
    clock = FixedClock(NOW)
    with Gateway.open(settings=settings_for(db_url), clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        gateway.issue_bill(
            ACCOUNT,
            bill_no="B1",
            amount=Money(50_000, "CNY"),
            period="2024-04",
            due_date=date(2024, 5, 20),
        )
        DeviceRegistry(gateway.store, clock, kek=SecretBytes(kek)).add(
            TERMINAL, "pos", mac_key=TERMINAL_KEY
        )
    config_file = tmp_path / "api.toml"
    config_file.write_text(f'[channels.pos]\nmerchant_ids = ["{MERCHANT}"]\n')
    config = load_api_config(config_file)
    with (
        live_server(db_url, config, clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        paid = http.post("/v1/pos/sale", content=signed(sale("000101")), headers=FORM)
        assert paid.status_code == 200, paid.text
        assert "approved" in paid.text
        kept = http.post(
            "/v1/pos/sale", content=signed(sale("000102", amount="5000")), headers=FORM
        )
        assert kept.status_code == 200
        voided = http.post(
            "/v1/pos/void", content=signed(void("000103", "000102", amount="5000")), headers=FORM
        )
        assert voided.status_code == 200, voided.text
        settled = http.post(
            "/v1/pos/settle", content=signed(settle("000104", 2, 17050, 1, 5000)), headers=FORM
        )
        assert "settle_result=match" in settled.text
        late = http.post("/v1/pos/void", content=signed(void("000105", "000101")), headers=FORM)
        assert late.status_code == 409 and "batch_settled" in late.text
        forged = http.post(
            "/v1/pos/sale",
            content=signed(sale("000106"), key=secrets.token_bytes(32)),
            headers=FORM,
        )
        assert forged.status_code == 401
        refund = http.post("/v1/pos/refund", content=b"x", headers=FORM)
        assert refund.status_code == 400
        assert refund.headers["content-type"].startswith("application/problem+json")
    with Gateway.open(settings=settings_for(db_url), clock=clock) as gateway:
        balances = gateway.ledger_balances()
        assert balances["clearing:pos:CNY"] == Money(12050, "CNY")
        assert gateway.verify().ok


def test_a_terminal_key_sealed_under_another_key_encryption_key_is_503_configuration_error(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one configuration_error a request can still meet, in the terminal's own form (as
    docs/http-api.md says): the deployment's key-encryption key does not open the terminal's
    stored MAC key. No problem answer (OpenAPI) names configuration_error."""
    clock = FixedClock(NOW)
    with Gateway.open(settings=settings_for(db_url), clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        DeviceRegistry(gateway.store, clock, kek=SecretBytes(secrets.token_bytes(32))).add(
            TERMINAL, "pos", mac_key=TERMINAL_KEY
        )
    monkeypatch.setenv(
        "PAYGATE_KEY_ENCRYPTION_KEY", base64.b64encode(secrets.token_bytes(32)).decode()
    )
    config_file = tmp_path / "api.toml"
    config_file.write_text(f'[channels.pos]\nmerchant_ids = ["{MERCHANT}"]\n')
    with (
        live_server(db_url, load_api_config(config_file), clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        paid = http.post("/v1/pos/sale", content=signed(sale("000101")), headers=FORM)
        openapi = http.get("/openapi.json").json()
    assert paid.status_code == 503, paid.text
    assert paid.text == "result=refused&error_code=configuration_error"
    # The problem answers of every route name only what a route can produce.
    for item in openapi["paths"].values():
        for operation in item.values():
            unavailable = operation.get("responses", {}).get("503", {})
            assert "configuration_error" not in unavailable.get("description", "")


def test_the_app_takes_the_key_encryption_key_it_is_given(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app built with ``ApiConfig.key_encryption_key`` reads the terminals' keys with it,
    the environment unset. A key given wins over the environment's: a wrong one given opens
    no terminal key, which is the server's configuration to mend (503), not the terminal's."""
    kek = secrets.token_bytes(32)
    monkeypatch.delenv("PAYGATE_KEY_ENCRYPTION_KEY", raising=False)
    clock = FixedClock(NOW)
    with Gateway.open(settings=settings_for(db_url), clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        DeviceRegistry(gateway.store, clock, kek=SecretBytes(kek)).add(
            TERMINAL, "pos", mac_key=TERMINAL_KEY
        )
    config_file = tmp_path / "api.toml"
    config_file.write_text(f'[channels.pos]\nmerchant_ids = ["{MERCHANT}"]\n')
    loaded = load_api_config(config_file)
    given = dataclasses.replace(loaded, key_encryption_key=SecretBytes(kek))
    with (
        live_server(db_url, given, clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        paid = http.post("/v1/pos/sale", content=signed(sale("000201")), headers=FORM)
        assert paid.status_code == 200 and "approved" in paid.text, paid.text
    monkeypatch.setenv("PAYGATE_KEY_ENCRYPTION_KEY", base64.b64encode(kek).decode())
    wrong = dataclasses.replace(loaded, key_encryption_key=SecretBytes(secrets.token_bytes(32)))
    with (
        live_server(db_url, wrong, clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        refused = http.post("/v1/pos/sale", content=signed(sale("000202")), headers=FORM)
        assert refused.status_code == 503
        assert "error_code=configuration_error" in refused.text
