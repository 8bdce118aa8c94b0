"""One meaning per setting: the constructor, the environment and the dispatch TOML agree on
what a value means and refuse the same values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from paygate.config import Settings
from paygate.dispatch_config import load_dispatch_config
from paygate.errors import ConfigurationError
from paygate.gateway import Gateway
from paygate.outbox import Dispatcher
from paygate.supply import ServicePromise

H = timedelta(hours=1)


@pytest.mark.parametrize("hours", [4, 12, 24, 48, 72, 100])
def test_a_promise_means_the_same_from_the_constructor_and_the_environment(hours: int) -> None:
    from_env = Settings.from_env({"PAYGATE_RECONNECTION_PROMISE": str(hours)}).service_promise
    from_settings = Settings(service_promise=hours * H).service_promise  # type: ignore[arg-type]
    from_model = Settings(service_promise=ServicePromise(promise=hours * H)).service_promise
    assert from_env == from_settings == from_model
    assert from_model.promise == hours * H
    assert from_model.confirm_budget == hours * H * 5 / 6
    assert from_model.ack_budget == hours * H * 5 / 32
    assert from_model.legal_limit == max(timedelta(days=3), hours * H)


def test_the_default_promise_is_the_scaled_24_hours() -> None:
    default = ServicePromise()
    assert default == ServicePromise(promise=24 * H)
    assert (default.confirm_budget, default.ack_budget) == (20 * H, timedelta(hours=3.75))
    assert Settings.from_env({}).service_promise == default


def test_budgets_given_explicitly_are_kept() -> None:
    promise = ServicePromise(promise=48 * H, confirm_budget=20 * H, ack_budget=2 * H)
    assert (promise.confirm_budget, promise.ack_budget) == (20 * H, 2 * H)


@pytest.mark.parametrize(("raw", "match"), [("0", "promise"), ("-5", "promise"), ("1.5", "whole")])
def test_a_bad_promise_is_refused_by_both_doors(raw: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        Settings.from_env({"PAYGATE_RECONNECTION_PROMISE": raw})
    assert "PAYGATE_RECONNECTION_PROMISE" in str(caught.value)
    if raw != "1.5":
        with pytest.raises(ValidationError):
            Settings(service_promise=int(raw) * H)  # type: ignore[arg-type]


def test_sqlite_synchronous_means_the_same_everywhere() -> None:
    assert Settings(sqlite_synchronous="normal").sqlite_synchronous == "NORMAL"
    assert Settings.from_env({"PAYGATE_SQLITE_SYNCHRONOUS": "normal"}).sqlite_synchronous == (
        "NORMAL"
    )
    with pytest.raises(ValidationError, match="sqlite_synchronous"):
        Settings(sqlite_synchronous="FAST")
    with pytest.raises(ConfigurationError, match="PAYGATE_SQLITE_SYNCHRONOUS"):
        Settings.from_env({"PAYGATE_SQLITE_SYNCHRONOUS": "FAST"})


def test_an_empty_default_headend_is_none_everywhere() -> None:
    assert Settings(default_headend="").default_headend is None
    assert Settings.from_env({"PAYGATE_DEFAULT_HEADEND": ""}).default_headend is None


def test_a_bad_number_names_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="PAYGATE_SEAL_EVERY"):
        Settings.from_env({"PAYGATE_SEAL_EVERY": "often"})
    with pytest.raises(ConfigurationError, match="PAYGATE_SEAL_EVERY"):
        Settings.from_env({"PAYGATE_SEAL_EVERY": "-1"})


def dispatch_toml(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "dispatch.toml"
    path.write_text(f"[dispatcher]\n{table}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ("lease_seconds = 0", "dispatcher.lease_seconds: lease must be positive"),
        ("poll_seconds = -1", "dispatcher.poll_seconds"),
        ("retry_base_seconds = 60\nretry_cap_seconds = 30", "dispatcher.retry_cap_seconds"),
        ("max_attempts = 0", "dispatcher.max_attempts"),
        ("batch = 2.5", "dispatcher.batch: must be a whole number"),
        ('lease_seconds = "soon"', "dispatcher.lease_seconds: must be a number of seconds"),
        ("alert_after = true", "dispatcher.alert_after: must be a whole number"),
    ],
)
def test_the_dispatch_toml_is_checked_by_the_constructors_rules(
    tmp_path: Path, table: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        load_dispatch_config(dispatch_toml(tmp_path, table))


def test_the_constructor_refuses_what_the_toml_refuses(sqlite_url: str) -> None:
    with Gateway.open(sqlite_url) as gateway:
        with pytest.raises(ConfigurationError) as caught:
            Dispatcher(gateway, headends={}, lease=timedelta(0))
        assert caught.value.field == "lease"
        with pytest.raises(ConfigurationError):
            Dispatcher(gateway, headends={}, retry_base=H, retry_cap=H / 2)
        config = load_dispatch_config(dispatch_toml(Path(sqlite_url[10:]).parent, "batch = 3"))
        assert Dispatcher(gateway, headends={}, batch=config.options["batch"]).batch == 3
