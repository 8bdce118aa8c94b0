"""``[console]`` in the one configuration: cookies, lockout, session lengths and origins read
from the file and from ``PAYGATE_CONSOLE__<KEY>``, each bad value one line naming its key, and
the variables read before the section refused, naming the ones that replaced them (also by
``paygate serve``, before it listens)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from paygate.config import PaygateConfig
from paygate.console.auth import RETIRED_CONSOLE_ENV, ConsoleSettings, CookieSecurity
from paygate.errors import ConfigurationError

FILE = """
[console]
secure_cookies = "true"
max_failures = 3
lockout_minutes = 45
idle_minutes = 20
absolute_hours = 8.5
origins = ["https://console.grid.example/", "http://10.0.0.7:8080"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paygate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_section_sets_cookies_lockout_sessions_and_origins(tmp_path: Path) -> None:
    settings = ConsoleSettings.from_config(
        PaygateConfig.load(write(tmp_path, FILE), environ={}), {}
    )
    assert settings.secure_cookies is CookieSecurity.ALWAYS
    assert settings.policy.max_failures == 3
    assert settings.policy.lockout == timedelta(minutes=45)
    assert settings.policy.idle == timedelta(minutes=20)
    assert settings.policy.absolute == timedelta(hours=8, minutes=30)
    assert settings.extra_origins == {"https://console.grid.example", "http://10.0.0.7:8080"}


def test_without_the_section_the_defaults_hold() -> None:
    settings = ConsoleSettings.from_config(PaygateConfig.load(None, environ={}), {})
    assert settings.secure_cookies is CookieSecurity.AUTO
    assert settings.policy.max_failures == 5
    assert settings.policy.lockout == timedelta(minutes=15)
    assert settings.policy.idle == timedelta(minutes=30)
    assert settings.policy.absolute == timedelta(hours=10)
    assert settings.extra_origins == frozenset()


def test_a_variable_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "PAYGATE_CONSOLE__MAX_FAILURES": "7",
        "PAYGATE_CONSOLE__ORIGINS": '["https://proxy.grid.example"]',
    }
    config = PaygateConfig.load(write(tmp_path, FILE), environ=env)
    settings = ConsoleSettings.from_config(config, env)
    assert settings.policy.max_failures == 7
    assert settings.policy.lockout == timedelta(minutes=45)  # the file's, not overridden
    assert settings.extra_origins == {"https://proxy.grid.example"}
    assert config.origin("console.max_failures").where == "$PAYGATE_CONSOLE__MAX_FAILURES"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('secure_cookies = "yes"', "console.secure_cookies"),
        ("max_failures = 0", "console.max_failures"),
        ("lockout_minutes = 0", "console.lockout_minutes"),
        ("idle_minutes = -5", "console.idle_minutes"),
        ("absolute_hours = 1000", "console.absolute_hours"),
        ('origins = ["https://console.grid.example/path"]', "console.origins"),
        ('origins = ["console.grid.example"]', "console.origins"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(tmp_path: Path, line: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        PaygateConfig.load(write(tmp_path, f"[console]\n{line}\n"), environ={})
    assert named in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("old", "new"), sorted(RETIRED_CONSOLE_ENV.items()))
def test_a_variable_before_the_section_is_refused_naming_its_replacement(
    old: str, new: str
) -> None:
    config = PaygateConfig.load(None, environ={})
    with pytest.raises(ConfigurationError) as refused:
        ConsoleSettings.from_config(config, {old: "3"})
    assert refused.value.field == old
    assert new in str(refused.value)


def test_serve_refuses_an_old_variable_before_it_listens(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from paygate.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    runner = CliRunner()
    serve = ["serve", "--port", "0", "--database-url", sqlite_url]
    monkeypatch.setenv("PAYGATE_CONSOLE_MAX_FAILURES", "3")
    refused = runner.invoke(app, serve)
    assert refused.exit_code == 2
    assert "PAYGATE_CONSOLE__MAX_FAILURES" in refused.output
    monkeypatch.delenv("PAYGATE_CONSOLE_MAX_FAILURES")
    monkeypatch.setenv("PAYGATE_CONSOLE__MAX_FAILURES", "3")
    started = runner.invoke(app, serve)
    assert started.exit_code == 0, started.output
