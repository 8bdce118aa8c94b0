"""``[refunds.*]`` in the one configuration file: read, shown by ``paygate config show``,
built into routes; every problem names its key, never a key or a passphrase."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.config import PaygateConfig
from paygate.errors import ConfigurationError
from paygate.refunds.route import RefundRoute
from paygate.refunds.routes import (
    AlipayRefundRoute,
    BankTransferRoute,
    OnlineRefundRoute,
    WechatPayRefundRoute,
    build_routes,
)
from tests.refunds_routes.conftest import PASSPHRASE, write_keys
from tests.refunds_routes.fakes import MERCHANT_SERIAL, ONLINE_CERT_ID, WECHAT_PLATFORM_SERIAL, key

runner = CliRunner()


def toml(files: dict[str, Path], tmp: Path) -> str:
    return f"""
[refunds.alipay]
app_id = "2021000118600001"
app_private_key_file = "{files["alipay_app"]}"
app_private_key_passphrase_env = "ALIPAY_KEY_PASSPHRASE"
alipay_public_key_file = "{files["alipay_public"]}"
timeout = 5

[refunds.wechatpay]
mchid = "1900009191"
merchant_serial_no = "{MERCHANT_SERIAL}"
merchant_private_key_file = "{files["wechat_merchant"]}"
platform_certificate_files = {{ "{WECHAT_PLATFORM_SERIAL}" = "{files["wechat_platform"]}" }}

[refunds.online]
base_url = "https://gateway.test.example"
merchant_id = "777290058110048"
cert_id = "{ONLINE_CERT_ID}"
signing_key_file = "{files["online_merchant"]}"
gateway_certificate_files = ["{files["online_gateway"]}"]
back_url = "https://pay.utility.example/notify/online"

[refunds.bank_transfer]
outbound_dir = "{tmp / "to_bank"}"
return_dir = "{tmp / "from_bank"}"
payer_account = "6222020200112233445"
amount_unit = "yuan"
"""


def test_the_file_configures_every_route(tmp_path: Path) -> None:
    files = write_keys(tmp_path / "keys")
    path = tmp_path / "paygate.toml"
    path.write_text(toml(files, tmp_path))
    config = PaygateConfig.load(path, environ={"PAYGATE_REFUNDS__ALIPAY__TIMEOUT": "7"})
    assert config.refunds.alipay is not None and config.refunds.alipay.timeout == 7
    routes = build_routes(config.refunds, environ={"ALIPAY_KEY_PASSPHRASE": PASSPHRASE})
    try:
        assert sorted(routes) == ["alipay", "bank_transfer", "online", "wechatpay"]
        kinds = (AlipayRefundRoute, WechatPayRefundRoute, OnlineRefundRoute, BankTransferRoute)
        assert {type(r) for r in routes.values()} == set(kinds)
        for name, route in routes.items():
            conforming: RefundRoute = route
            assert conforming.name == name
        assert routes["bank_transfer"].channel is None
        assert routes["alipay"].channel == "alipay"
    finally:
        for route in routes.values():
            if not isinstance(route, BankTransferRoute):
                route.close()  # type: ignore[attr-defined]


def test_config_show_lists_the_refund_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAYGATE_CONFIG", raising=False)
    files = write_keys(tmp_path / "keys")
    path = tmp_path / "paygate.toml"
    path.write_text(toml(files, tmp_path))
    result = runner.invoke(app, ["--config", str(path), "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.output)}
    assert rows["refunds.alipay.app_id"]["value"] == "2021000118600001"
    assert rows["refunds.alipay.app_id"]["source"] == "file"
    assert rows["refunds.alipay.app_private_key_passphrase_env"]["value"] == "ALIPAY_KEY_PASSPHRASE"
    assert rows["refunds.bank_transfer.amount_unit"]["value"] == "yuan"
    assert PASSPHRASE not in result.output


def test_a_missing_passphrase_or_bad_key_names_the_key_and_shows_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    files = write_keys(tmp_path / "keys")
    path = tmp_path / "paygate.toml"
    path.write_text(toml(files, tmp_path))
    config = PaygateConfig.load(path, environ={})
    with pytest.raises(ConfigurationError) as unset:
        build_routes(config.refunds, environ={})
    assert "refunds.alipay.app_private_key_passphrase_env" in str(unset.value)
    assert "ALIPAY_KEY_PASSPHRASE is not set" in str(unset.value)
    with pytest.raises(ConfigurationError) as wrong:
        build_routes(config.refunds, environ={"ALIPAY_KEY_PASSPHRASE": "not-it"})
    assert "refunds.alipay.app_private_key_file" in str(wrong.value)
    files["online_gateway"].write_text(
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(ConfigurationError) as bad:
        build_routes(config.refunds, environ={"ALIPAY_KEY_PASSPHRASE": PASSPHRASE})
    assert "refunds.online.gateway_certificate_files" in str(bad.value)
    pem = key("alipay_app").private_pem.decode().splitlines()[1]
    for text in (str(unset.value), str(wrong.value), str(bad.value), caplog.text):
        assert PASSPHRASE not in text and "not-it" not in text and pem not in text


def test_an_unknown_refund_key_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "paygate.toml"
    path.write_text('[refunds.alipay]\napp_id = "1"\napp_secret = "x"\n')
    with pytest.raises(ConfigurationError) as refused:
        PaygateConfig.load(path, environ={})
    assert "refunds.alipay.app_secret" in str(refused.value)


def test_reading_the_configuration_loads_no_provider_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, paygate, paygate.config\n"
        "print(sorted(m for m in sys.modules if m.startswith(('paygate.channels', 'httpx',"
        " 'paygate.refunds.routes.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['paygate.refunds.routes.settings']"
