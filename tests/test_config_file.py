"""One configuration: a TOML file, the environment and what is given, in that order of
precedence over the defaults; every problem one line naming where and which key; secrets never
shown; the older per-command files still read, with one deprecation line."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from paygate.api import app_from_env
from paygate.api.config import load_api_config
from paygate.cli import app
from paygate.config import (
    NatsSinkSection,
    PaygateConfig,
    Settings,
    WebhookSinkSection,
    _deprecated,
    secret_from_env,
)
from paygate.dispatch_config import dispatch_config, load_dispatch_config
from paygate.errors import ConfigurationError
from paygate.reconcile.config import load_config, reconcile_config
from tests.headend.simulator import CALLBACK_SECRET

runner = CliRunner()
SECRET = "s3cret-billing-webhook-key-0123456789"
PASSWORD = "pg-pass-word-9876"


def toml_value(value: object) -> str:
    return json.dumps(value)  # a TOML basic string, integer or boolean as JSON writes it


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ── precedence: given > environment > file > defaults ─────────────────────────────────────

# key -> (where it stands in a TOML file, its variable, values to draw, the default)
KEYS: dict[str, tuple[str, str, st.SearchStrategy[Any], object]] = {
    "seal_every": ("", "PAYGATE_SEAL_EVERY", st.integers(0, 10**6), 1000),
    "pay_many_chunk": ("", "PAYGATE_PAY_MANY_CHUNK", st.integers(1, 100_000), 1000),
    "sqlite_synchronous": (
        "",
        "PAYGATE_SQLITE_SYNCHRONOUS",
        st.sampled_from(["OFF", "NORMAL", "FULL", "EXTRA"]),
        "FULL",
    ),
    "currency": ("", "PAYGATE_CURRENCY", st.sampled_from(["CNY", "USD", "JPY"]), "CNY"),
    "dispatch.dispatcher.batch": (
        "dispatch.dispatcher",
        "PAYGATE_DISPATCH__DISPATCHER__BATCH",
        st.integers(1, 1000),
        None,
    ),
    "reconcile.bank.window_days": (
        "reconcile.bank",
        "PAYGATE_RECONCILE__BANK__WINDOW_DAYS",
        st.integers(0, 62),
        None,
    ),
}

layer = st.one_of(st.none(), st.integers(0, 10**6))


def lookup(config: PaygateConfig, dotted: str) -> object:
    value: Any = config.model_dump()
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@given(
    choices=st.fixed_dictionaries(
        {
            key: st.tuples(
                st.one_of(st.none(), values),
                st.one_of(st.none(), values),
                st.one_of(st.none(), values) if "." not in key else st.none(),
            )
            for key, (_, _, values, _) in KEYS.items()
        }
    )
)
def test_given_beats_environment_beats_file_beats_default(
    tmp_path_factory: pytest.TempPathFactory, choices: dict[str, tuple[Any, Any, Any]]
) -> None:
    tables: dict[str, list[str]] = {}
    environ: dict[str, str] = {}
    overrides: dict[str, object] = {}
    for key, (in_file, in_env, in_call) in choices.items():
        table, var, _, _ = KEYS[key]
        if in_file is not None:
            tables.setdefault(table, []).append(f"{key.rsplit('.', 1)[-1]} = {toml_value(in_file)}")
        if in_env is not None:
            environ[var] = str(in_env)
        if in_call is not None:
            overrides[key] = in_call
    text = "\n".join(tables.pop("", []))
    for table, lines in tables.items():
        text += f"\n[{table}]\n" + "\n".join(lines)
    path = write(tmp_path_factory.mktemp("precedence") / "paygate.toml", text)
    config = PaygateConfig.load(path, environ=environ, **overrides)  # type: ignore[arg-type]
    for key, (in_file, in_env, in_call) in choices.items():
        expected, source = KEYS[key][3], "default"
        for value, name in ((in_file, "file"), (in_env, "env"), (in_call, "given")):
            if value is not None:
                expected, source = value, name
        assert lookup(config, key) == expected, key
        assert config.origin(key).source == source, key
        if source == "env":
            assert config.origin(key).where == "$" + KEYS[key][1]
        if source == "file":
            assert config.origin(key).where == str(path)


def test_paygate_config_names_the_file_and_the_flag_beats_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "paygate.toml", 'database_url = "sqlite:///from-file.db"\n')
    monkeypatch.setenv("PAYGATE_CONFIG", str(path))
    monkeypatch.delenv("PAYGATE_DATABASE_URL", raising=False)
    assert Settings.from_env().database_url == "sqlite:///from-file.db"
    monkeypatch.setenv("PAYGATE_DATABASE_URL", "sqlite:///from-env.db")
    assert Settings.from_env().database_url == "sqlite:///from-env.db"
    flagged = Settings.from_env(database_url="sqlite:///from-flag.db")
    assert flagged.database_url == "sqlite:///from-flag.db"
    assert type(flagged) is Settings


def test_the_promise_alias_means_hours_in_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "paygate.toml", "reconnection_promise = 48\n")
    from_file = PaygateConfig.load(path, environ={})
    from_env = PaygateConfig.load(environ={"PAYGATE_RECONNECTION_PROMISE": "48"})
    assert from_file.service_promise == from_env.service_promise
    assert from_file.service_promise == Settings(service_promise=48).service_promise  # type: ignore[arg-type]
    assert from_file.origin("service_promise.promise").where == str(path)
    assert from_env.origin("service_promise").where == "$PAYGATE_RECONNECTION_PROMISE"


# ── problems: one line, where, the dotted key, never the value ────────────────────────────


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("seal_every = -1\n", "paygate.toml: seal_every: "),
        ("[dispatch.dispatcher]\nbatch = 2.5\n", "dispatch.dispatcher.batch: must be a whole"),
        (
            '[[dispatch.sinks]]\nkind = "kafka"\n',
            "dispatch.sinks[0].kind: webhook, rabbitmq or nats, not 'kafka'",
        ),
        ('[dispatch.sinks.b]\ntype = "kafka"\n', "dispatch.sinks[0].kind: webhook, rabbitmq or"),
        (
            '[[dispatch.sinks]]\nkind = "webhook"\nurl = "ftp://x"\nsecret_env = "V"\n',
            "dispatch.sinks[0].url: must be an http(s) URL",
        ),
        ("[dispatch]\nheadends = 3\n", "dispatch.headends: "),
        ("nonsense = 1\n", "paygate.toml: nonsense: not a setting here"),
        ('[api.supply_orders]\nheadend = "a"\ncallback_secret_env = "B"\n', "exactly one"),
        ('timezone = "Mars/Olympus"\n', "timezone: unknown time zone"),
        ("[api\n", "paygate.toml: not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, text: str, names: str
) -> None:
    path = write(tmp_path / "paygate.toml", text)
    with pytest.raises(ConfigurationError) as refused:
        PaygateConfig.load(path, environ={})
    message = str(refused.value)
    assert names in message
    assert str(path) in message
    assert "\n" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nowhere\.toml: cannot read"):
        PaygateConfig.load(tmp_path / "nowhere.toml", environ={})


def test_a_bad_variable_is_named_and_its_value_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        PaygateConfig.load(environ={"PAYGATE_SEAL_EVERY": "-123456789"})
    assert str(refused.value).startswith("$PAYGATE_SEAL_EVERY: seal_every: ")
    assert "123456789" not in str(refused.value)
    config = PaygateConfig.load(environ={"PAYGATE_RECONCILE__BANK__WINDOW_DAYS": "123456789"})
    with pytest.raises(ConfigurationError) as refused:
        reconcile_config(config)
    assert str(refused.value).startswith(
        "$PAYGATE_RECONCILE__BANK__WINDOW_DAYS: reconcile.bank.window_days: "
    )
    assert "123456789" not in str(refused.value)
    with pytest.raises(ConfigurationError, match=r"^\$PAYGATE_LATE_FEE: late_fee: .*JSON"):
        PaygateConfig.load(environ={"PAYGATE_LATE_FEE": "cheap"})


def test_the_cli_refuses_a_bad_file_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path / "paygate.toml", "[reconcile.bank]\nwindow_days = -1\n")
    for args in (["config", "show"], ["audit", "verify"]):
        result = runner.invoke(app, ["--config", str(path), *args])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"error: {path}: reconcile.bank.window_days: ")


def test_an_edge_section_names_the_key_inside_its_table(tmp_path: Path) -> None:
    path = write(tmp_path / "paygate.toml", '[reconcile.bank]\nformat = "xls"\n')
    config = PaygateConfig.load(path, environ={})
    with pytest.raises(ConfigurationError, match=r"paygate.toml: reconcile.bank.format: auto or"):
        reconcile_config(config)


# ── secrets ───────────────────────────────────────────────────────────────────────────────


SINK = f"""
database_url = "postgresql://paygate:{PASSWORD}@db.internal/paygate"
[[dispatch.sinks]]
kind = "webhook"
name = "billing"
url = "https://billing.example/events"
secret_env = "BILLING_SECRET"
"""


def test_secrets_are_not_in_repr_str_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write(tmp_path / "paygate.toml", SINK)
    config = PaygateConfig.load(path, environ={"BILLING_SECRET": SECRET})
    built = dispatch_config(config, environ={"BILLING_SECRET": SECRET})
    try:
        shown = [repr(config), str(config), repr(config.settings), str(config.settings)]
        shown += [repr(built.sinks), json.dumps([str(e) for e in config.entries()])]
        for text in shown:
            assert SECRET not in text and PASSWORD not in text
        assert "***" in repr(config.settings)
    finally:
        built.close()
    with pytest.raises(ConfigurationError) as refused:
        secret_from_env("dispatch.sinks.billing.secret_env", "BILLING_SECRET", {})
    assert "BILLING_SECRET is not set" in str(refused.value)
    assert SECRET not in caplog.text and PASSWORD not in caplog.text


def test_config_show_masks_secrets_and_gives_each_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAYGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("PAYGATE_CONFIG", raising=False)
    monkeypatch.setenv("PAYGATE_SEAL_EVERY", "12")
    monkeypatch.setenv("BILLING_SECRET", SECRET)
    text = SINK + '[api.channels.wechatpay]\napi_v3_key = "written-where-it-should-not-be"\n'
    path = write(tmp_path / "paygate.toml", text)
    result = runner.invoke(app, ["--config", str(path), "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.output)}
    assert rows["seal_every"] == {
        "key": "seal_every",
        "value": 12,
        "source": "env",
        "where": "$PAYGATE_SEAL_EVERY",
    }
    assert rows["dispatch.sinks"]["source"] == "file"
    assert rows["dispatch.sinks"]["where"] == str(path)
    assert rows["timezone"] == {
        "key": "timezone",
        "value": "Asia/Shanghai",
        "source": "default",
        "where": None,
    }
    assert rows["api.channels.wechatpay.api_v3_key"]["value"] == "**********"
    assert "***" in rows["database_url"]["value"]
    assert PASSWORD not in result.output and SECRET not in result.output
    assert "written-where-it-should-not-be" not in result.output
    plain = runner.invoke(app, ["--config", str(path), "config", "show"])
    assert plain.exit_code == 0
    assert "seal_every = 12  # env $PAYGATE_SEAL_EVERY" in plain.output.splitlines()
    assert PASSWORD not in plain.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paygate.toml"]  # no database made


# ── the older files ───────────────────────────────────────────────────────────────────────


def test_the_older_files_are_read_with_one_deprecation_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _deprecated.cache_clear()
    caplog.set_level(logging.WARNING, logger="paygate.config")
    old = write(tmp_path / "dispatch.toml", "[dispatcher]\nbatch = 3\n")
    for _ in range(2):
        assert load_dispatch_config(old, environ={}).options == {"batch": 3}
    lines = [r.getMessage() for r in caplog.records if r.name == "paygate.config"]
    assert len(lines) == 1 and "deprecated" in lines[0] and "dispatch.toml" in lines[0]
    reconcile = write(tmp_path / "reconcile.toml", "[bank]\nwindow_days = 3\n")
    assert load_config(reconcile).bank.window_days == 3
    assert load_config(reconcile).base_dir == tmp_path


def test_the_one_file_serves_every_command_that_took_its_own(tmp_path: Path) -> None:
    path = write(
        tmp_path / "paygate.toml",
        "[dispatch.dispatcher]\nbatch = 4\n[reconcile.bank]\nwindow_days = 2\n"
        "[api.channels.kiosk]\ntimestamp_window = 90\n",
    )
    assert load_dispatch_config(path, environ={}).options == {"batch": 4}
    assert load_config(path).bank.window_days == 2
    assert load_config(path).base_dir == tmp_path
    assert load_api_config(path, environ={}).kiosk.timestamp_window.total_seconds() == 90


def test_paygate_api_config_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _deprecated.cache_clear()
    old = write(tmp_path / "api.toml", "[channels.kiosk]\ntimestamp_window = 45\n")
    monkeypatch.setenv("PAYGATE_API_CONFIG", str(old))
    monkeypatch.delenv("PAYGATE_CONFIG", raising=False)
    config = PaygateConfig.load()
    assert config.api.channels == {"kiosk": {"timestamp_window": 45}}
    assert config.place("api.channels.kiosk.timestamp_window") == (
        f"{old}: channels.kiosk.timestamp_window"
    )
    assert any("PAYGATE_API_CONFIG" in r.getMessage() for r in caplog.records)


def test_sinks_are_a_tagged_union_by_kind() -> None:
    entries = [
        {"kind": "webhook", "name": "billing", "url": "https://b.example/e", "secret_env": "S"},
        {"kind": "nats", "stream": "PAYGATE"},
    ]
    config = PaygateConfig.load(environ={"PAYGATE_DISPATCH__SINKS": json.dumps(entries)})
    webhook, nats = config.dispatch.sinks
    assert isinstance(webhook, WebhookSinkSection) and webhook.name == "billing"
    assert isinstance(nats, NatsSinkSection) and nats.url == "nats://127.0.0.1:4222"


def test_the_older_sink_tables_are_read_as_entries_named_by_their_table() -> None:
    config = PaygateConfig.load(
        environ={
            "PAYGATE_DISPATCH__SINKS__BILLING__TYPE": "webhook",
            "PAYGATE_DISPATCH__SINKS__BILLING__URL": "https://billing.example/e",
            "PAYGATE_DISPATCH__SINKS__BILLING__SECRET_ENV": "BILLING_SECRET",
        }
    )
    [sink] = config.dispatch.sinks
    assert isinstance(sink, WebhookSinkSection) and sink.name == "billing"


# ── the workers of `paygate serve` ────────────────────────────────────────────────────────


def test_serve_workers_load_the_configuration_the_parent_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    path = write(
        tmp_path / "paygate.toml",
        'database_url = "sqlite:///never-opened.db"\nseal_every = 7\n'
        "[api.channels.kiosk]\ntimestamp_window = 60\n"
        '[api.supply_orders]\ncallback_secret_env = "AMI_CALLBACK"\n',
    )
    monkeypatch.setenv("AMI_CALLBACK", CALLBACK_SECRET.decode())
    monkeypatch.setenv("PAYGATE_PAY_MANY_CHUNK", "250")
    monkeypatch.setenv("PAYGATE_CONFIG", str(tmp_path / "not-this-one.toml"))
    monkeypatch.delenv("PAYGATE_API_CONFIG", raising=False)
    monkeypatch.delenv("PAYGATE_DATABASE_URL", raising=False)
    seen: dict[str, str] = {}

    def run(*args: object, **kwargs: object) -> None:
        seen.update(os.environ)

    monkeypatch.setattr(uvicorn, "run", run)
    args = ["--config", str(path), "serve", "--port", "0", "--database-url", sqlite_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    parent = PaygateConfig.load(path, environ=dict(os.environ), database_url=sqlite_url)
    worker = PaygateConfig.load(environ=seen)
    assert worker.model_dump() == parent.model_dump()
    assert (worker.database_url, worker.seal_every, worker.pay_many_chunk) == (sqlite_url, 7, 250)
    monkeypatch.setattr(os, "environ", seen)
    served = app_from_env()
    assert served.openapi()["paths"]["/v1/reconnections/{order_id}/confirm"]


# ── the documented files ──────────────────────────────────────────────────────────────────

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("page", "heading"),
    [
        ("operations.md", "## Configuration"),
        ("operations.md", "## Reconnection"),
        ("finance.md", "## Configuration"),
        ("http-api.md", "## Configuration"),
    ],
)
def test_the_documented_configuration_loads(tmp_path: Path, page: str, heading: str) -> None:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    block = section[section.index("```toml\n") + 8 :]
    block = block[: block.index("```")].replace("…", "")
    config = PaygateConfig.load(write(tmp_path / "paygate.toml", block), environ={})
    assert any(origin.source == "file" for _, _, origin in config.entries())
    reconcile_config(config)


def test_a_value_replacing_a_table_takes_its_origin(tmp_path: Path) -> None:
    path = write(tmp_path / "paygate.toml", '[service_promise]\npromise = "PT48H"\n')
    config = PaygateConfig.load(path, environ={"PAYGATE_RECONNECTION_PROMISE": "12"})
    assert config.service_promise.promise.total_seconds() == 12 * 3600
    assert config.origin("service_promise.promise").where == "$PAYGATE_RECONNECTION_PROMISE"
    assert config.origin("service_promise.legal_limit").source == "env"
    config = PaygateConfig.load(
        write(tmp_path / "paygate.toml", "reconnection_promise = 12\n"),
        environ={"PAYGATE_SERVICE_PROMISE__PROMISE": "PT36H"},
    )
    assert config.service_promise.promise.total_seconds() == 36 * 3600
    assert config.origin("service_promise.promise").source == "env"
    assert config.origin("service_promise.legal_limit").source == "default"
