"""``[console.oidc]`` in the one configuration: read from the file and the environment, the
client secret from the variable it names (never shown), each bad value one line naming the key,
and a provider configured without the ``oidc`` extra refused by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from paygate.config import PaygateConfig
from paygate.console.auth import ConsoleSettings
from paygate.console.staff import Role
from paygate.errors import ConfigurationError

SECRET = "client-secret-of-the-console-0123"

GOOD = """
[console]
password_sign_in = "admin"

[console.oidc]
provider_name = "统一身份认证"
issuer = "https://idp.grid.example/realms/staff"
client_id = "paygate-console"
client_secret_env = "PAYGATE_OIDC_CLIENT_SECRET"
redirect_url = "https://console.grid.example/console/oidc/callback"
staff_claim = "preferred_username"
algorithms = ["RS256", "ES256"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paygate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_provider_is_read_from_the_file_with_the_secret_from_its_variable(
    tmp_path: Path,
) -> None:
    config = PaygateConfig.load(write(tmp_path, GOOD), environ={})
    env = {"PAYGATE_OIDC_CLIENT_SECRET": SECRET}
    settings = ConsoleSettings.from_config(config, env)
    oidc = settings.oidc
    assert oidc is not None
    assert oidc.issuer == "https://idp.grid.example/realms/staff"
    assert oidc.staff_claim == "preferred_username"
    assert oidc.algorithms == ("RS256", "ES256")
    assert oidc.scopes == ("openid", "email", "profile")
    assert oidc.client_secret is not None and oidc.client_secret.get_secret_value() == SECRET
    assert settings.password_roles == frozenset({Role.ADMIN})
    assert SECRET not in repr(oidc) + repr(settings) + str(config.entries())


def test_the_environment_configures_it_too(tmp_path: Path) -> None:
    env = {
        "PAYGATE_CONSOLE__OIDC__PROVIDER_NAME": "IdP",
        "PAYGATE_CONSOLE__OIDC__ISSUER": "http://127.0.0.1:9000",
        "PAYGATE_CONSOLE__OIDC__CLIENT_ID": "console",
        "PAYGATE_CONSOLE__OIDC__REDIRECT_URL": "http://127.0.0.1:8000/console/oidc/callback",
    }
    config = PaygateConfig.load(None, environ=env)
    settings = ConsoleSettings.from_config(config, env)
    assert settings.oidc is not None and settings.oidc.client_secret is None  # a public client
    assert settings.password_roles == frozenset(Role)
    assert ConsoleSettings.from_config(PaygateConfig.load(None, environ={}), {}).oidc is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("issuer", '"http://idp.grid.example"'), "console.oidc.issuer: must be https"),
        (("redirect_url", '"https://c.grid.example/cb"'), "console.oidc.redirect_url: must end"),
        (("scopes", '["email"]'), "console.oidc.scopes: must include openid"),
        (("algorithms", '["HS256"]'), "console.oidc.algorithms: HS256: not allowed"),
        (("algorithms", '["none"]'), "console.oidc.algorithms: none: not allowed"),
        (("client_secret", '"inline"'), "console.oidc.client_secret: not a setting here"),
        (("leeway_seconds", "3600"), "console.oidc.leeway_seconds"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    key, value = change
    lines = [line for line in GOOD.splitlines() if not line.startswith(f"{key} =")]
    text = "\n".join(lines) + f"\n{key} = {value}\n"
    with pytest.raises(ConfigurationError) as refused:
        PaygateConfig.load(write(tmp_path, text), environ={})
    assert named in str(refused.value)
    assert "\n" not in str(refused.value)


def test_admin_only_passwords_need_a_provider(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="password_sign_in = admin needs"):
        PaygateConfig.load(write(tmp_path, '[console]\npassword_sign_in = "admin"\n'), environ={})


def test_a_secret_variable_not_set_is_named_and_no_value_shown(tmp_path: Path) -> None:
    config = PaygateConfig.load(write(tmp_path, GOOD), environ={})
    with pytest.raises(ConfigurationError) as refused:
        ConsoleSettings.from_config(config, {"PAYGATE_OIDC_CLIENT_SECRET": "  "})
    assert "console.oidc.client_secret_env" in str(refused.value)
    assert "PAYGATE_OIDC_CLIENT_SECRET is not set" in str(refused.value)


@pytest.mark.parametrize("missing", ["authlib.oauth2.rfc7636", "joserfc.jwt"])
def test_a_provider_without_the_oidc_extra_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """A console configured for a provider, on an installation without authlib or joserfc:
    refused when it is built, with the extra to install (never at the first sign-in)."""
    monkeypatch.setitem(sys.modules, missing, None)  # import of it now fails
    config = PaygateConfig.load(write(tmp_path, GOOD), environ={})
    with pytest.raises(ConfigurationError) as refused:
        ConsoleSettings.from_config(config, {"PAYGATE_OIDC_CLIENT_SECRET": SECRET})
    assert "pip install 'paygate[oidc]'" in str(refused.value)
    # Password sign-in alone needs nothing of the extra.
    plain = PaygateConfig.load(write(tmp_path, "[console]\n"), environ={})
    assert ConsoleSettings.from_config(plain, {}).oidc is None
