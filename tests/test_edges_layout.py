"""The edges keep their shape: no SQL in the CLI, the demo or the HTTP API, and the HTTP API
serves exactly the routes and operations it always served.

The routes and operation ids below are the contract as it stood before the API was split into
``paygate/api/routes/``: a route that appears, disappears or changes its path or id fails
here, whichever module it moved to.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretBytes

from paygate.api import ApiConfig, create_app
from paygate.channels.kiosk import KioskConfig
from paygate.channels.pos import PosConfig
from paygate.channels.voucher import VoucherConfig
from paygate.config import Settings
from paygate.console import routes as console_routes
from paygate.tokens import TokenSettings
from tests.api.test_notify import channel_configs

PACKAGE = Path(__file__).resolve().parents[1] / "paygate"
EDGES = ("cli", "demo", "api")

# A statement's opening words, as SQL is written in paygate (upper-case keywords).
SQL = re.compile(r"\bSELECT\s+\S|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b")


def string_constants(source: str) -> Iterator[tuple[int, str]]:
    """Every string literal of a module (f-strings' literal parts too), with its line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def sql_in(source: str) -> list[tuple[int, str]]:
    return [(line, text) for line, text in string_constants(source) if SQL.search(text)]


def edge_modules() -> Iterator[Path]:
    for edge in EDGES:
        yield from sorted((PACKAGE / edge).rglob("*.py"))


def test_the_edges_are_packages_of_modules() -> None:
    for edge in EDGES:
        assert (PACKAGE / edge / "__init__.py").is_file(), edge
    assert len(list(edge_modules())) > 20


@pytest.mark.parametrize(
    "source",
    [
        'tx.all("SELECT o.id FROM supply_orders o")',
        'tx.execute(f"INSERT INTO t (a) VALUES (:a)")',
        'q = ("UPDATE outbox " "SET dead_at = NULL")',
        "tx.scalar('SELECT 1')",
        'tx.execute("DELETE FROM nonces WHERE expires_at < :now")',
    ],
)
def test_the_sql_finder_finds_a_statement(source: str) -> None:
    assert sql_in(source)


def test_the_sql_finder_leaves_prose_alone() -> None:
    assert not sql_in('"""Select the accounts, update the order, delete nothing."""')


def test_no_sql_in_the_cli_the_demo_or_the_http_api() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:60]!r}"
        for path in edge_modules()
        for line, text in sql_in(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "SQL belongs to the module that owns the table:\n" + "\n".join(found)


# ── the HTTP API's routes ──────────────────────────────────────────────────────────────────

# The service centre's console is served in every configuration, outside the OpenAPI document;
# tests/console/test_security.py checks each of its routes' permission.
CONSOLE_ROUTES = {(method, path) for method, path, _ in console_routes.ROUTES}
MINIMAL_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/v1/accounts/{account_no:path}"),
    ("POST", "/v1/kiosks/{device_id}/close"),
    ("POST", "/v1/payments"),
    # the API reference page and its files (not operations of the document)
    ("GET", "/docs"),
    ("GET", "/docs/static/{name:path}"),
} | CONSOLE_ROUTES
FULL_ROUTES = MINIMAL_ROUTES | {
    # service clients (billing systems): the token endpoint and the feeds
    ("POST", "/v1/oauth/token"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/accounts/{account_no:path}/payments"),
    ("GET", "/v1/supply-orders"),
    ("GET", "/v1/supply-orders/{order_id}"),
    ("GET", "/v1/events"),
    # ... and the bulk imports
    ("POST", "/v1/accounts/import"),
    ("POST", "/v1/bills/import"),
    ("POST", "/v1/channels/{channel}/notify"),
    ("POST", "/v1/pos/{operation}"),
    ("POST", "/v1/supply-orders/{order_id}/confirm"),
    # The retired path of the same route, served while it is deprecated.
    ("POST", "/v1/reconnections/{order_id}/confirm"),
    ("POST", "/v1/vouchers/redeem"),
}
MINIMAL_OPERATIONS = {
    ("GET", "/healthz", "health"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/v1/accounts/{account_no}", "getAccount"),
    ("POST", "/v1/kiosks/{device_id}/close", "closeKioskDay"),
    ("POST", "/v1/payments", "pay"),
}
FULL_OPERATIONS = MINIMAL_OPERATIONS | {
    ("POST", "/v1/oauth/token", "issueToken"),
    ("GET", "/v1/payments", "listPayments"),
    ("GET", "/v1/accounts/{account_no}/payments", "listAccountPayments"),
    ("GET", "/v1/supply-orders", "listSupplyOrders"),
    ("GET", "/v1/supply-orders/{order_id}", "getSupplyOrder"),
    ("GET", "/v1/events", "listEvents"),
    ("POST", "/v1/accounts/import", "importAccounts"),
    ("POST", "/v1/bills/import", "importBills"),
    ("POST", "/v1/channels/{channel}/notify", "notify"),
    ("POST", "/v1/pos/{operation}", "posMessage"),
    ("POST", "/v1/supply-orders/{order_id}/confirm", "confirmSupplyOrder"),
    ("POST", "/v1/reconnections/{order_id}/confirm", "confirmReconnection"),
    ("POST", "/v1/vouchers/redeem", "redeemVoucher"),
}


def full_config() -> ApiConfig:
    """Every part of the API configured: the terminals, every notify channel, the head-end."""
    return ApiConfig(
        channels={
            "kiosk": KioskConfig(),
            "voucher": VoucherConfig(),
            "pos": PosConfig(merchant_ids=("898110048160001",)),
            **channel_configs(),
        },
        voucher_pin_key=SecretBytes(b"k" * 32),
        callback_secret=SecretBytes(b"s" * 32),
    )


def token_settings() -> TokenSettings:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return TokenSettings(signing_key=SecretBytes(pem))


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every API route, included routers' routes among them."""
    # FastAPI versions that keep an included router as one entry of app.routes list its
    # routes through iter_route_contexts; older ones copy them into app.routes.
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = [c.original_route for c in contexts(app.routes)] if contexts else app.routes
    return {
        (method, route.path)
        for route in routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def operations_of(app: FastAPI) -> set[tuple[str, str, str]]:
    document: dict[str, Any] = app.openapi()
    return {
        (method.upper(), path, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.parametrize(
    ("config", "routes", "operations"),
    [
        pytest.param(full_config, FULL_ROUTES, FULL_OPERATIONS, id="fully-configured"),
        pytest.param(ApiConfig, MINIMAL_ROUTES, MINIMAL_OPERATIONS, id="minimal"),
    ],
)
def test_the_app_serves_the_routes_and_operations_it_always_served(
    tmp_path: Path,
    config: Any,
    routes: set[tuple[str, str]],
    operations: set[tuple[str, str, str]],
) -> None:
    # Nothing is opened by create_app: the database need not exist.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.db'}")
    # Fully configured includes token signing, which serves the service-client routes.
    tokens = token_settings() if routes is FULL_ROUTES else None
    app = create_app(settings, config=config(), tokens=tokens)
    assert routes_of(app) == routes
    assert operations_of(app) == operations
    assert not (tmp_path / "never-opened.db").exists()


def test_the_retired_supply_order_path_is_deprecated_and_the_new_one_is_not() -> None:
    app = create_app(Settings(database_url="sqlite:///never-opened.db"), config=full_config())
    paths = app.openapi()["paths"]
    new = paths["/v1/supply-orders/{order_id}/confirm"]["post"]
    old = paths["/v1/reconnections/{order_id}/confirm"]["post"]
    assert old["deprecated"] is True and "deprecated" not in new
    # The same operation otherwise: what it takes and answers.
    assert old["responses"] == new["responses"] and old["requestBody"] == new["requestBody"]
