"""The published OpenAPI documents, walked: every operation has examples, every example is
valid against its schema (checked by jsonschema, an independent validator), every
authenticated operation names its security scheme; and every request example, sent to a
running server, gets the status the document gives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jsonschema
import pytest
from pydantic import SecretBytes

from paygate.api import ApiConfig, create_app
from paygate.api.openapi_examples import ACCOUNT, DEVICE
from paygate.channels.kiosk import KioskConfig
from paygate.channels.pos import PosConfig
from paygate.channels.voucher import VoucherConfig
from paygate.clock import FixedClock
from paygate.devices import sign_request
from paygate.money import Money
from paygate.service_clients import SCOPES, ServiceClientRegistry
from tests.api.support import LiveServer, World, open_world, settings_for
from tests.api.test_import_http import TOKENS
from tests.api.test_notify import channel_configs
from tests.channels.kiosk_support import ed25519_key
from tests.headend.simulator import CALLBACK_SECRET

NOW = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)
PROBLEM = "application/problem+json"
METHODS = {"get", "post", "put", "patch", "delete"}

# Routes a channel calls in its own protocol: the message carries its signature (a form field,
# a MAC, a provider's header scheme), which no OpenAPI security scheme describes. Their
# operations say so in their request body's description.
CHANNEL_SIGNED = {("post", "/v1/channels/{channel}/notify"), ("post", "/v1/pos/{operation}")}
OPEN = {("get", "/healthz"), ("get", "/metrics")}


def config(*, with_pos: bool) -> ApiConfig:
    channels: dict[str, Any] = {"kiosk": KioskConfig(), "voucher": VoucherConfig()}
    channels.update(channel_configs())
    if with_pos:
        channels["pos"] = PosConfig(merchant_ids=["898310048990001"])
    return ApiConfig(
        channels=channels,
        voucher_pin_key=SecretBytes(bytes(range(40, 72))),
        callback_secret=SecretBytes(CALLBACK_SECRET),
    )


@pytest.fixture
def kek(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PAYGATE_KEY_ENCRYPTION_KEY", base64.b64encode(secrets.token_bytes(32)).decode()
    )


@pytest.fixture(params=["devices", "devices and service clients"])
def document(request: pytest.FixtureRequest, sqlite_url: str, kek: None) -> Iterator[Any]:
    """Each published document, as a running server serves it: the terminals' routes alone
    (no token signing configured), and with the service clients' routes."""
    tokens = TOKENS if request.param != "devices" else None
    settings = settings_for(sqlite_url)
    open_world(sqlite_url).gateway.close()
    app = lambda: create_app(settings, config=config(with_pos=True), tokens=tokens)  # noqa: E731
    with LiveServer(app) as server:
        yield httpx.get(f"{server.url}/openapi.json", timeout=10).json()


def operations(document: Any) -> Iterator[tuple[str, str, Any]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def validate(document: Any, schema: Any, value: Any, where: str) -> None:
    """``value`` against ``schema``, its references resolved in ``document``."""
    rooted = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        **schema,
    }
    errors = sorted(
        jsonschema.Draft202012Validator(
            rooted, format_checker=jsonschema.FormatChecker()
        ).iter_errors(value),
        key=str,
    )
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"


def examples_of(media: Any) -> list[tuple[str, Any]]:
    found = [(name, example["value"]) for name, example in media.get("examples", {}).items()]
    if "example" in media:
        found.append(("example", media["example"]))
    return found


def test_every_operation_has_examples_and_each_is_valid(document: Any) -> None:
    walked = 0
    for method, path, operation in operations(document):
        at = f"{method.upper()} {path}"
        for parameter in operation.get("parameters", []):
            assert "example" in parameter, f"{at}: parameter {parameter['name']} has no example"
            validate(document, parameter["schema"], parameter["example"], f"{at} {parameter}")
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            found = examples_of(media)
            assert found, f"{at}: the {media_type} request body has no example"
            for name, value in found:
                validate(document, media["schema"], value, f"{at} request {name}")
        successes = [s for s in operation["responses"] if s.startswith("2")]
        assert successes, at
        for status, answer in operation["responses"].items():
            content = answer.get("content", {})
            if not content:
                assert status == "204", f"{at} {status}: no content"
                continue
            with_examples = [m for m in content if examples_of(content[m])]
            assert with_examples, f"{at} {status}: no example in any media type"
            if PROBLEM in content:
                assert examples_of(content[PROBLEM]), f"{at} {status}: the problem has no example"
            for media_type, media in content.items():
                for name, value in examples_of(media):
                    validate(document, media["schema"], value, f"{at} {status} {media_type}")
                    if media_type == PROBLEM:
                        assert value["status"] == int(status), f"{at} {status} {name}"
        walked += 1
    assert walked >= 10


def test_every_authenticated_operation_names_its_security_scheme(document: Any) -> None:
    schemes = document["components"]["securitySchemes"]
    for method, path, operation in operations(document):
        at = f"{method.upper()} {path}"
        refusals = set(operation["responses"]) & {"401", "403"}
        if (method, path) in OPEN:
            assert not refusals and "security" not in operation, at
            continue
        if (method, path) in CHANNEL_SIGNED:
            said = operation["requestBody"]["description"].lower()
            assert "signed" in said, f"{at}: does not say how the message is signed"
            continue
        assert refusals, f"{at}: authenticated, yet documents no 401/403"
        assert operation.get("security"), f"{at}: names no security scheme"
        for requirement in operation["security"]:
            for name, scopes in requirement.items():
                scheme = schemes[name]
                assert scheme["description"], name
                if scheme["type"] == "oauth2":
                    granted = scheme["flows"]["clientCredentials"]["scopes"]
                    assert scopes and set(scopes) <= set(granted), at
                    assert set(granted) == set(SCOPES)
    device = schemes["deviceSignature"]
    assert (device["type"], device["in"], device["name"]) == (
        "apiKey",
        "header",
        "X-Paygate-Signature",
    )
    for header in ("X-Paygate-Device", "X-Paygate-Timestamp", "X-Paygate-Nonce", "SHA-256"):
        assert header in device["description"]


# ── every request example sent to a running server ───────────────────────────────────────

# The status each documented request gets from the story the examples tell (customer
# 0101234567 owes 120.50 CNY; kiosk K0001 pays it in cash, then closes its day; a billing
# system reads and imports). Requests whose example names what only a real counterpart holds
# (a card's PIN, a supply order, a channel's signing key) get the documented refusal.
SENT: list[tuple[str, str, int]] = [
    ("get", "/healthz", 200),
    ("get", "/v1/accounts/{account_no}", 200),
    ("post", "/v1/payments", 201),
    ("post", "/v1/kiosks/{device_id}/close", 201),
    ("post", "/v1/vouchers/redeem", 404),
    ("post", "/v1/supply-orders/{order_id}/confirm", 404),
    ("post", "/v1/oauth/token", 200),
    ("get", "/v1/payments", 200),
    ("get", "/v1/accounts/{account_no}/payments", 200),
    ("get", "/v1/supply-orders", 200),
    ("get", "/v1/supply-orders/{order_id}", 404),
    ("get", "/v1/events", 200),
    ("post", "/v1/accounts/import", 200),
    ("post", "/v1/bills/import", 200),
    ("get", "/metrics", 200),
]


@pytest.fixture
def story(db_url: str) -> Iterator[World]:
    world = open_world(db_url, FixedClock(NOW))
    try:
        world.customer(ACCOUNT, owes=Money(12050, "CNY"))
        world.register(DEVICE)
        yield world
    finally:
        world.gateway.close()


def target(path: str, operation: Any) -> str:
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = quote(str(parameter["example"]), safe="")
            path = path.replace("{" + parameter["name"] + "}", value)
        elif parameter["in"] == "query":
            query[parameter["name"]] = parameter["example"]
    return f"{path}?{urlencode(query)}" if query else path


def test_each_request_example_gets_its_documented_status(db_url: str, story: World) -> None:
    clock = FixedClock(NOW)
    settings = settings_for(db_url)
    _, secret = ServiceClientRegistry(story.gateway.store, clock).add(
        "billing-east", sorted(SCOPES)
    )
    basic = base64.b64encode(f"billing-east:{secret}".encode()).decode()
    app = lambda: create_app(settings, config=config(with_pos=False), clock=clock, tokens=TOKENS)  # noqa: E731
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        document = http.get("/openapi.json").json()
        answer = http.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        token = answer.json()["access_token"]
        for method, path, expected in SENT:
            operation = document["paths"][path][method]
            sent_to = target(path, operation)
            headers: dict[str, str] = {}
            body = b""
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                value = examples_of(media)[0][1]
                if media_type == "application/json":
                    body = json.dumps(value).encode()
                elif media_type == "application/x-www-form-urlencoded":
                    body = urlencode(value).encode()
                else:
                    body = str(value).encode()
                headers["Content-Type"] = media_type
                break
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
                    headers["Idempotency-Key"] = str(parameter["example"])
            names = {n for r in operation.get("security", []) for n in r}
            if "deviceSignature" in names:
                headers.update(
                    sign_request(ed25519_key(DEVICE), DEVICE, method, sent_to, body, now=NOW)
                )
            elif "headEndSignature" in names:
                stamp = str(int(NOW.timestamp()))
                digest = hmac.new(CALLBACK_SECRET, stamp.encode() + b"." + body, hashlib.sha256)
                headers["X-Headend-Timestamp"] = stamp
                headers["X-Headend-Signature"] = digest.hexdigest()
            elif "clientBasic" in names:
                headers["Authorization"] = f"Basic {basic}"
            elif "serviceClient" in names:
                headers["Authorization"] = f"Bearer {token}"
            answer = http.request(method.upper(), sent_to, content=body, headers=headers)
            at = f"{method.upper()} {sent_to}"
            assert answer.status_code == expected, f"{at}: {answer.status_code} {answer.text}"
            documented = operation["responses"][str(expected)]
            media_type = answer.headers.get("content-type", "").split(";")[0]
            assert media_type in documented["content"], at
            if media_type.endswith("json"):
                schema = documented["content"][media_type]["schema"]
                validate(document, schema, answer.json(), at)
    assert story.payments("kiosk") == 1
    assert story.gateway.account_status("0101234568").outstanding == Money(840000, "CNY")
