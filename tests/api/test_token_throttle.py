"""The token endpoint bounds guessing, through real servers on both databases: failed
authentications of a client id, or from a source address, lock it out for the window (429 with
Retry-After), counted in the database so that every worker sees them, exactly at the limit
under concurrent attempts, and logged without secrets. Its settings are the ``[tokens]``
section of the one configuration."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretBytes

from paygate.api import create_app
from paygate.clock import FixedClock
from paygate.config import PaygateConfig
from paygate.errors import ConfigurationError
from paygate.service_clients import ServiceClientRegistry
from paygate.tokens import TokenSettings
from tests.api.support import LiveServer, World, open_world, settings_for

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
KEY_PEM = Ed25519PrivateKey.generate().private_bytes(
    Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
)
TOKENS = TokenSettings(
    signing_key=SecretBytes(KEY_PEM),
    client_failures=3,
    source_failures=5,
    failure_window=timedelta(seconds=60),
)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def world(db_url: str, clock: FixedClock) -> Iterator[World]:
    opened = open_world(db_url, clock)
    try:
        yield opened
    finally:
        opened.gateway.close()


def serve(db_url: str, clock: FixedClock) -> LiveServer:
    settings = settings_for(db_url)
    return LiveServer(lambda: create_app(settings, clock=clock, tokens=TOKENS))


@pytest.fixture
def server(db_url: str, world: World, clock: FixedClock) -> Iterator[LiveServer]:
    with serve(db_url, clock) as running:
        yield running


@pytest.fixture
def secrets_of(world: World) -> dict[str, str]:
    registry = ServiceClientRegistry(world.gateway.store, world.gateway.clock)
    return {name: registry.add(name, "payments:read")[1] for name in ("billing", "crm", "erp")}


def ask(
    server: LiveServer, client_id: str, secret: str, *, source: str | None = None
) -> httpx.Response:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {raw}"}
    if source is not None:
        # uvicorn believes X-Forwarded-For from 127.0.0.1, as `paygate serve` does by default.
        headers["X-Forwarded-For"] = source
    return httpx.post(
        f"{server.url}/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=headers,
        timeout=30,
    )


def test_a_client_id_is_locked_out_after_its_failures_until_the_window_moves_on(
    server: LiveServer,
    secrets_of: dict[str, str],
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paygate.tokens")
    for n in range(3):
        wrong = ask(server, "billing", f"not-the-secret-{n}")
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    locked = ask(server, "billing", secrets_of["billing"])  # even the right secret
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"
    assert locked.json()["error"] == "temporarily_unavailable"
    assert "client id" in locked.json()["error_description"]
    assert locked.headers["Cache-Control"] == "no-store"
    assert ask(server, "crm", secrets_of["crm"]).status_code == 200  # another client is not
    clock.advance(timedelta(seconds=30))
    assert ask(server, "billing", secrets_of["billing"]).headers["Retry-After"] == "30"
    clock.advance(timedelta(seconds=31))
    assert ask(server, "billing", secrets_of["billing"]).status_code == 200
    logged = caplog.text
    assert "'billing' from 127.0.0.1: refused" in logged
    assert "throttled (client_id)" in logged and "authenticated" in logged
    assert "not-the-secret" not in logged and secrets_of["billing"] not in logged


def test_a_source_address_is_locked_out_across_client_ids(
    server: LiveServer, secrets_of: dict[str, str]
) -> None:
    attacker, other = "198.51.100.7", "203.0.113.9"
    for n in range(5):
        assert ask(server, f"guess-{n}", "x", source=attacker).status_code == 401
    locked = ask(server, "erp", secrets_of["erp"], source=attacker)
    assert locked.status_code == 429 and "source address" in locked.json()["error_description"]
    assert ask(server, "erp", secrets_of["erp"], source=other).status_code == 200


def test_the_failures_are_shared_by_every_worker(
    db_url: str, server: LiveServer, secrets_of: dict[str, str], clock: FixedClock
) -> None:
    with serve(db_url, clock) as second:  # another worker: its own process state, one database
        for n in range(2):
            assert ask(server, "billing", f"wrong-{n}").status_code == 401
        assert ask(second, "billing", "wrong-2").status_code == 401
        assert ask(second, "billing", secrets_of["billing"]).status_code == 429
        assert ask(server, "billing", secrets_of["billing"]).status_code == 429


def test_concurrent_guesses_check_no_more_secrets_than_the_limit(
    server: LiveServer, secrets_of: dict[str, str]
) -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def guess(n: int) -> None:
        barrier.wait()
        statuses.append(ask(server, "billing", f"guess-{n}", source=f"192.0.2.{n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [401, 401, 401, 429, 429, 429, 429, 429]


# ── the [tokens] section ────────────────────────────────────────────────────────────────────


def test_the_tokens_section_comes_from_the_file_and_its_variables(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sign.pem").write_bytes(KEY_PEM)
    file = tmp_path / "paygate.toml"
    file.write_text(
        '[tokens]\nkey_file = "keys/sign.pem"\nttl = 120\nclient_failures = 4\n',
        encoding="utf-8",
    )
    config = PaygateConfig.load(file, environ={"PAYGATE_TOKENS__FAILURE_WINDOW": "30"})
    tokens = TokenSettings.from_config(config, environ={})
    assert tokens is not None
    assert tokens.ttl == timedelta(seconds=120) and tokens.client_failures == 4
    assert tokens.failure_window == timedelta(seconds=30) and tokens.source_failures == 20
    assert tokens.signing_key.get_secret_value() == KEY_PEM
    assert config.origin("tokens.failure_window").where == "$PAYGATE_TOKENS__FAILURE_WINDOW"
    assert TokenSettings.from_config(PaygateConfig.load(None, environ={}), environ={}) is None


def test_the_variables_before_the_section_are_refused_naming_the_new_ones(
    tmp_path: Path,
) -> None:
    config = PaygateConfig.load(None, environ={})
    with pytest.raises(ConfigurationError) as caught:
        TokenSettings.from_config(config, environ={"PAYGATE_TOKEN_KEY_FILE": "/etc/k.pem"})
    assert "PAYGATE_TOKENS__KEY_FILE" in str(caught.value)
    assert caught.value.field == "PAYGATE_TOKEN_KEY_FILE"


def test_a_bad_tokens_value_names_its_key_and_never_the_key_material(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PaygateConfig.load(None, environ={"PAYGATE_TOKENS__CLIENT_FAILURES": "0"})
    assert "tokens.client_failures" in str(caught.value)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    config = PaygateConfig.load(None, environ={"PAYGATE_TOKENS__KEY_FILE": str(bad)})
    with pytest.raises(ConfigurationError) as caught:
        TokenSettings.from_config(config, environ={})
    assert "tokens.key_file" in str(caught.value) and "not a key" not in str(caught.value)
    missing = PaygateConfig.load(None, environ={"PAYGATE_TOKENS__KEY_FILE": str(tmp_path / "no")})
    with pytest.raises(ConfigurationError, match="cannot read"):
        TokenSettings.from_config(missing, environ={})


def test_serve_refuses_the_old_variables_and_its_workers_read_the_section(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from paygate.api import app_from_env
    from paygate.cli import app

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    key = tmp_path / "sign.pem"
    key.write_bytes(KEY_PEM)
    runner = CliRunner()
    serve = ["serve", "--port", "0", "--database-url", sqlite_url]
    monkeypatch.setenv("PAYGATE_TOKEN_KEY_FILE", str(key))
    refused = runner.invoke(app, serve)
    assert refused.exit_code == 2
    assert (
        "PAYGATE_TOKENS__KEY_FILE" in refused.output and "PAYGATE_TOKEN_KEY_FILE" in refused.output
    )
    monkeypatch.delenv("PAYGATE_TOKEN_KEY_FILE")
    monkeypatch.setenv("PAYGATE_TOKENS__KEY_FILE", str(key))
    started = runner.invoke(app, serve)
    assert started.exit_code == 0, started.output
    token_route = app_from_env().openapi()["paths"]["/v1/oauth/token"]["post"]
    assert "Retry-After" in token_route["responses"]["429"]["headers"]
    monkeypatch.delenv("PAYGATE_TOKENS__KEY_FILE")
    assert "/v1/oauth/token" not in app_from_env().openapi()["paths"]
