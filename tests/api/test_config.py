"""``paygate serve --config``: channels and their secrets, and what the command refuses."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer import Typer
from typer.testing import CliRunner

from paygate.api import API_CONFIG_ENV, ApiConfig, app_from_env, load_api_config
from paygate.api.config import KIOSK_PAY_PATH
from paygate.channels.mobile import WechatPayConfig
from paygate.cli.serve import serve
from paygate.errors import ConfigurationError
from tests.channels import support
from tests.headend.simulator import CALLBACK_SECRET

PIN = base64.b64encode(bytes(range(32))).decode()
API_KEY = support.WECHAT_API_KEY
CERT = support.certificate_pem(support.rsa_key("wechat"), int(support.WECHAT_SERIAL, 16))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paygate.toml"
    path.write_text(text, encoding="utf-8")
    return path


WECHAT = f"""
[channels.wechatpay]
api_v3_key_env = "WECHAT_KEY"
mchid = "1900000109"
[channels.wechatpay.platform_keys]
"{support.WECHAT_SERIAL}" = '''{CERT}'''
"""


def test_secrets_come_from_the_environment_and_everything_is_checked_on_load(
    tmp_path: Path,
) -> None:
    text = (
        WECHAT
        + """
[channels.kiosk]
timestamp_window = 120

[channels.voucher]
pin_key_env = "CARD_PIN_KEY"

[headends.ami]
type = "webhook"
url = "https://ami.example/commands"
secret_env = "AMI_SECRET"
callback_secret_env = "AMI_CALLBACK_SECRET"

[supply_orders]
headend = "ami"
"""
    )
    environ = {
        "WECHAT_KEY": API_KEY,
        "CARD_PIN_KEY": PIN,
        "AMI_CALLBACK_SECRET": CALLBACK_SECRET.decode(),
    }
    config = load_api_config(write(tmp_path, text), environ=environ)
    wechat = config.channels["wechatpay"]
    assert isinstance(wechat, WechatPayConfig)
    assert isinstance(wechat.api_v3_key, SecretStr)
    assert wechat.api_v3_key.get_secret_value() == API_KEY
    assert config.kiosk.timestamp_window.total_seconds() == 120
    assert config.kiosk.pay_path == KIOSK_PAY_PATH
    voucher = config.voucher
    assert voucher is not None and voucher.source_header == "X-Paygate-Device"
    assert config.voucher_pin_key is not None
    assert config.callback_secret is not None
    assert config.callback_secret.get_secret_value() == CALLBACK_SECRET
    assert API_KEY not in repr(config) and PIN not in repr(config)


@pytest.mark.parametrize(
    ("text", "environ", "names"),
    [
        (WECHAT.replace('api_v3_key_env = "WECHAT_KEY"', f'api_v3_key = "{API_KEY}"'), {}, "_env"),
        (WECHAT, {}, "WECHAT_KEY is not set"),
        ("[channels.nosuch]\n", {}, "no such channel"),
        ("[channels.pos]\nmerchant_ids = 'one'\n", {}, "merchant_ids"),
        ('[channels.kiosk]\npay_path = "/elsewhere"\n', {}, "fixed by the HTTP API"),
        ("[channels.kiosk]\ntimestamp_window = 3600\n", {}, "timestamp_window"),
        ("[channels.voucher]\n", {}, "PAYGATE_VOUCHER_PIN_KEY"),
        ('[supply_orders]\ncallback_secret_env = "SHORT"\n', {"SHORT": "abc"}, "16 bytes"),
        ('[supply_orders]\nheadend = "ami"\n', {}, "not a webhook head-end"),
        ("[channels\n", {}, "paygate.toml"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_by_name(
    tmp_path: Path, text: str, environ: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_api_config(write(tmp_path, text), environ=environ)
    assert names in str(refused.value)
    assert API_KEY not in str(refused.value)


runner = CliRunner()


def paygate_serve(*args: str) -> tuple[int, str]:
    app = Typer()
    app.command()(serve)
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_database_before_it_listens(empty_pg_url: str) -> None:
    code, out = paygate_serve("--database-url", empty_pg_url, "--port", "0")
    assert code == 2
    assert "paygate db upgrade" in out


def test_serve_refuses_a_bad_configuration_before_it_listens(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write(tmp_path, "[channels.nosuch]\n")
    code, out = paygate_serve("--config", str(config), "--database-url", sqlite_url)
    assert code == 2
    assert "channels.nosuch: no such channel" in out


def test_each_worker_builds_its_app_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYGATE_DATABASE_URL", f"sqlite:///{tmp_path}/worker.db")
    monkeypatch.setenv(API_CONFIG_ENV, str(write(tmp_path, WECHAT)))
    monkeypatch.setenv("WECHAT_KEY", API_KEY)
    app = app_from_env()
    notify = app.openapi()["paths"]["/v1/channels/{channel}/notify"]["post"]
    assert [p["schema"]["enum"] for p in notify["parameters"] if p["name"] == "channel"] == [
        ["wechatpay"]
    ]
    assert not (tmp_path / "worker.db").exists()  # nothing is opened before the app starts


def test_serve_refuses_a_channel_that_settles_in_another_time_zone(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write(tmp_path, '[channels.kiosk.settlement]\ntimezone = "Europe/Berlin"\n')
    code, out = paygate_serve("--config", str(config), "--database-url", sqlite_url)
    assert code == 2
    assert "kiosk settles in Europe/Berlin" in out


def test_the_retired_table_names_are_still_read_and_warned_about(tmp_path: Path) -> None:
    text = """
[channels.prepaid_card]
pin_key_env = "CARD_PIN_KEY"

[reconnections]
callback_secret_env = "AMI_CALLBACK_SECRET"
"""
    environ = {"CARD_PIN_KEY": PIN, "AMI_CALLBACK_SECRET": CALLBACK_SECRET.decode()}
    with pytest.warns(FutureWarning) as warned:
        config = load_api_config(write(tmp_path, text), environ=environ)
    messages = sorted(str(w.message) for w in warned)
    assert len(messages) == 2, messages
    assert "channels.prepaid_card: channel name 'prepaid_card' is deprecated" in messages[0]
    assert "[api.reconnections] is deprecated; name the table [api.supply_orders]" in messages[1]
    assert sorted(config.channels) == ["voucher"] and config.voucher is not None
    assert config.voucher_pin_key is not None
    assert config.callback_secret is not None
    assert config.callback_secret.get_secret_value() == CALLBACK_SECRET


def test_the_new_and_the_retired_callback_table_together_are_refused(tmp_path: Path) -> None:
    text = '[supply_orders]\nheadend = "ami"\n[reconnections]\nheadend = "ami"\n'
    with pytest.raises(ConfigurationError, match=r"give \[api.supply_orders\] only"):
        load_api_config(write(tmp_path, text), environ={})


def test_an_api_config_built_with_the_retired_channel_name_serves_the_voucher_channel() -> None:
    from paygate.channels.voucher import VoucherConfig

    with pytest.warns(DeprecationWarning, match="ApiConfig.channels: channel name 'prepaid_card'"):
        config = ApiConfig(channels={"prepaid_card": VoucherConfig()})
    assert sorted(config.channels) == ["voucher"] and config.voucher is not None
    with pytest.warns(DeprecationWarning, match="use ApiConfig.voucher"):
        assert config.prepaid_card == config.voucher
