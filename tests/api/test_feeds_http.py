"""The service-client routes through a real server: OAuth client credentials, bearer tokens
checked as RFC 6750 says, and the feeds paged over HTTP under concurrent writers, on both
databases."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import SecretBytes

from paygate.api import create_app
from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.service_clients import ServiceClientRegistry
from paygate.tokens import TokenSettings
from tests.api.support import LiveServer, World, open_world, settings_for
from tests.refund_fakes import ScriptedRoute

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
ALL = "payments:read events:read supply-orders:read"


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


SIGNING_KEY = Ed25519PrivateKey.generate()
TOKENS = TokenSettings(signing_key=SecretBytes(pem(SIGNING_KEY)))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def feed_world(db_url: str, clock: FixedClock) -> Iterator[World]:
    world = open_world(db_url, clock)
    try:
        yield world
    finally:
        world.gateway.close()


@pytest.fixture
def server(db_url: str, feed_world: World, clock: FixedClock) -> Iterator[LiveServer]:
    settings = settings_for(db_url)
    with LiveServer(lambda: create_app(settings, clock=clock, tokens=TOKENS)) as running:
        yield running


@pytest.fixture
def registry(feed_world: World) -> ServiceClientRegistry:
    return ServiceClientRegistry(feed_world.gateway.store, feed_world.gateway.clock)


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token(http: httpx.Client, client_id: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    answer = http.post("/v1/oauth/token", data=form, headers=basic(client_id, secret))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def intent(account_no: str, txn: str, minor: int = 1000) -> PaymentIntent:
    return PaymentIntent(
        channel="online",
        channel_txn_id=txn,
        account_no=account_no,
        amount=Money(minor, "CNY"),
        paid_at=NOW - timedelta(hours=1),
    )


def customer(gateway: Gateway, account_no: str, due: date = date(2026, 12, 15)) -> None:
    gateway.open_account(account_no)
    gateway.issue_bill(
        account_no,
        bill_no=f"B-{account_no}",
        amount=Money(100_000, "CNY"),
        period="2026-10",
        due_date=due,
    )


def page_all(
    http: httpx.Client, path: str, headers: dict[str, str], *, limit: int, expect: int
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    deadline = time.monotonic() + 30
    while True:
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        answer = http.get(path, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items.extend(page["items"])
        after = page["next_cursor"]
        if not page["has_more"] and len(items) >= expect:
            return items
        if not page["has_more"]:
            assert time.monotonic() < deadline, f"{len(items)} of {expect}"
            time.sleep(0.01)


# ── the token endpoint ───────────────────────────────────────────────────────────────────


def test_a_client_gets_a_token_by_basic_or_by_form(
    http: httpx.Client, registry: ServiceClientRegistry
) -> None:
    _, secret = registry.add("billing-east", ALL.split())
    answer = http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "payments:read"},
        headers=basic("billing-east", secret),
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "payments:read"
    assert answer.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "billing-east" and claims["aud"] == "paygate-api"
    assert claims["exp"] - claims["iat"] == 300
    assert secret not in body["access_token"]

    form = http.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "billing-east",
            "client_secret": secret,
        },
    )
    assert form.status_code == 200
    assert set(form.json()["scope"].split()) == set(ALL.split())


@pytest.mark.parametrize(
    ("form", "use_basic", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, "wrong", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "unknown", 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, "right", 400, "unsupported_grant_type"),
        ({}, "right", 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "scope": "bills:write"},
            "right",
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials", "scope": "everything"},
            "right",
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "billing-east"},
            "right",
            400,
            "invalid_request",
        ),
    ],
)
def test_the_token_endpoint_refuses_as_rfc_6749_says(
    http: httpx.Client,
    registry: ServiceClientRegistry,
    form: dict[str, str],
    use_basic: str | None,
    status: int,
    error: str,
) -> None:
    _, secret = registry.add("billing-east", ["payments:read"])
    headers = {
        "right": basic("billing-east", secret),
        "wrong": basic("billing-east", secret + "x"),
        "unknown": basic("billing-west", secret),
        None: {},
    }[use_basic]
    answer = http.post("/v1/oauth/token", data=form, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert secret not in answer.text
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="paygate"'


def test_the_token_endpoint_reads_only_a_form(
    http: httpx.Client, registry: ServiceClientRegistry
) -> None:
    _, secret = registry.add("billing-east", ["payments:read"])
    answer = http.post(
        "/v1/oauth/token",
        json={"grant_type": "client_credentials"},
        headers=basic("billing-east", secret),
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    twice = http.post(
        "/v1/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={
            **basic("billing-east", secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")


# ── bearer tokens: 401 and 403 as RFC 6750 says ──────────────────────────────────────────


def test_no_token_is_401_with_a_bare_challenge(http: httpx.Client) -> None:
    for path in ("/v1/payments", "/v1/events", "/v1/supply-orders/1", "/v1/accounts/A/payments"):
        answer = http.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="paygate"'
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.json()["code"] == "token_required"
    # who, before what: a malformed parameter is not judged for a stranger
    assert http.get("/v1/payments", params={"limit": "0"}).status_code == 401
    # another scheme is no bearer token either
    assert http.get("/v1/payments", headers={"Authorization": "Basic eDp5"}).status_code == 401


@pytest.mark.parametrize("value", ["Bearer a b", "Bearer a,b", "Bearer " + "a" * 5000])
def test_a_malformed_bearer_header_is_400_invalid_request(http: httpx.Client, value: str) -> None:
    answer = http.get("/v1/payments", headers={"Authorization": value})
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="paygate", error="invalid_request"'


def test_a_token_without_the_scope_is_403(
    http: httpx.Client, registry: ServiceClientRegistry
) -> None:
    _, secret = registry.add("billing-east", ["events:read"])
    events_only = bearer(token(http, "billing-east", secret))
    assert http.get("/v1/events", headers=events_only).status_code == 200
    answer = http.get("/v1/payments", headers=events_only)
    assert answer.status_code == 403
    assert answer.json()["code"] == "insufficient_scope"
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="paygate", error="insufficient_scope", scope="payments:read"'
    )
    # a token narrower than its client grants no more than it names
    _, wide = registry.add("billing-west", ALL.split())
    narrow = bearer(token(http, "billing-west", wide, "events:read"))
    assert http.get("/v1/supply-orders", headers=narrow).status_code == 403


def _forged(claims: dict[str, Any], key: Any = SIGNING_KEY, algorithm: str = "EdDSA") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    claims = {
        "iss": "paygate",
        "aud": "paygate-api",
        "sub": "billing-east",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "payments:read",
        "gen": 1,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_forged_expired_and_foreign_tokens_are_401_invalid_token(
    http: httpx.Client, registry: ServiceClientRegistry, clock: FixedClock
) -> None:
    registry.add("billing-east", ["payments:read"])
    good = _forged(_claims())
    assert http.get("/v1/payments", headers=bearer(good)).status_code == 200
    now = int(NOW.timestamp())
    refused = {
        "another key": _forged(_claims(), Ed25519PrivateKey.generate()),
        "HMAC with the public key": _forged(
            _claims(),
            SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            "HS256",
        ),
        "no signature": _forged(_claims(), None, "none"),
        "expired": _forged(_claims(iat=now - 900, nbf=now - 900, exp=now - 600)),
        "not yet valid": _forged(_claims(nbf=now + 600, iat=now + 600, exp=now + 900)),
        "other audience": _forged(_claims(aud="elsewhere")),
        "other issuer": _forged(_claims(iss="someone")),
        "no expiry": _forged(_claims(exp=None)),
        "unknown client": _forged(_claims(sub="billing-west")),
        "old generation": _forged(_claims(gen=0)),
        "garbage": "abc.def.ghi",
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
    }
    for why, value in refused.items():
        answer = http.get("/v1/payments", headers=bearer(value))
        assert answer.status_code == 401, why
        assert answer.json()["code"] == "invalid_token", why
        assert answer.headers["WWW-Authenticate"].startswith(
            'Bearer realm="paygate", error="invalid_token"'
        ), why
    clock.advance(timedelta(seconds=300 + 31))
    late = http.get("/v1/payments", headers=bearer(good))
    assert late.status_code == 401 and "expired" in late.json()["detail"]


def test_a_revoked_clients_tokens_are_refused_on_the_next_request(
    http: httpx.Client, registry: ServiceClientRegistry
) -> None:
    _, secret = registry.add("billing-east", ["payments:read"])
    held = bearer(token(http, "billing-east", secret))
    assert http.get("/v1/payments", headers=held).status_code == 200
    registry.revoke("billing-east")
    answer = http.get("/v1/payments", headers=held)
    assert answer.status_code == 401 and answer.json()["code"] == "invalid_token"
    again = http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("billing-east", secret),
    )
    assert again.status_code == 401


def test_a_rotation_refuses_the_old_secret_and_its_tokens(
    http: httpx.Client, registry: ServiceClientRegistry
) -> None:
    _, old = registry.add("billing-east", ["payments:read"])
    held = bearer(token(http, "billing-east", old))
    _, new = registry.rotate("billing-east")
    assert http.get("/v1/payments", headers=held).status_code == 401
    assert (
        http.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic("billing-east", old),
        ).status_code
        == 401
    )
    assert (
        http.get("/v1/payments", headers=bearer(token(http, "billing-east", new))).status_code
        == 200
    )


# ── the feeds over HTTP ──────────────────────────────────────────────────────────────────


def test_the_feeds_page_to_the_end_over_http(
    http: httpx.Client, registry: ServiceClientRegistry, feed_world: World
) -> None:
    gateway = feed_world.gateway
    _, secret = registry.add("billing-east", ALL.split())
    auth = bearer(token(http, "billing-east", secret))
    customer(gateway, "A/1")
    customer(gateway, "A2", due=date(2026, 11, 1))
    paid = [gateway.pay(intent("A/1" if n % 2 else "A2", f"t{n}")) for n in range(5)]
    gateway.reverse(paid[1].payment_id, "duplicate")
    items = page_all(http, "/v1/payments", auth, limit=2, expect=6)
    assert [(i["kind"], i["payment_id"]) for i in items] == [
        *(("payment", p.payment_id) for p in paid),
        ("reversal", paid[1].payment_id),
    ]
    assert items[0]["amount"] == {"minor": 1000, "currency": "CNY"}

    mine = page_all(http, "/v1/accounts/A%2F1/payments", auth, limit=1, expect=3)
    assert [(i["kind"], i["account_no"]) for i in mine] == [
        ("payment", "A/1"),
        ("payment", "A/1"),
        ("reversal", "A/1"),
    ]
    unknown = http.get("/v1/accounts/nobody/payments", headers=auth)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_account")

    gateway.disconnect("A2", "arrears")
    order_id = gateway.pay(intent("A2", "clears", 200_000)).reconnection_order_id
    assert order_id is not None
    orders = page_all(http, "/v1/supply-orders", auth, limit=5, expect=1)
    assert [o["order_id"] for o in orders] == [order_id]
    one = http.get(f"/v1/supply-orders/{order_id}", headers=auth)
    assert one.status_code == 200 and one.json()["kind"] == "reconnect"
    assert "cursor" not in one.json()
    missing = http.get(f"/v1/supply-orders/{order_id + 5000}", headers=auth)
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_order")
    assert http.get("/v1/supply-orders/x1", headers=auth).status_code == 400
    assert http.get("/v1/supply-orders/99999999999999999999", headers=auth).status_code == 400

    events = page_all(http, "/v1/events", auth, limit=3, expect=8)
    assert "payment.reversed" in {e["event_type"] for e in events}


def test_refunds_and_suspense_payments_are_fed_over_http(
    http: httpx.Client, registry: ServiceClientRegistry, feed_world: World
) -> None:
    gateway = feed_world.gateway
    gateway.use_refund_routes({"online": ScriptedRoute("online", "online")})
    _, secret = registry.add("billing-east", ["payments:read"])
    auth = bearer(token(http, "billing-east", secret))
    gateway.open_account("R1")
    paid = gateway.pay(intent("R1", "t0", 5000)).payment_id
    gateway.refund("R1", Money(2000, "CNY"), refund_id="RF-1", route="online", reason="twice")
    gateway.fail_refund("RF-1", "TRADE_CLOSED", "the trade is closed")
    gateway.refund("R1", Money(5000, "CNY"), refund_id="RF-2", route="online")
    gateway.complete_refund("RF-2", "PR-2")
    gateway.close_account("R1", closure_id="CL-R1", reason="moved away")
    late = gateway.pay(intent("R1", "t1", 700)).payment_id
    items = page_all(http, "/v1/accounts/R1/payments", auth, limit=2, expect=6)
    assert [(i["kind"], i.get("refund_id") or i["payment_id"]) for i in items] == [
        ("payment", paid),
        ("refund_requested", "RF-1"),
        ("refund_failed", "RF-1"),
        ("refund_requested", "RF-2"),
        ("refund_succeeded", "RF-2"),
        ("payment", late),
    ]
    # a refund of the account's credit is `posted`; only the late payment is held in suspense
    assert [i["status"] for i in items] == ["posted"] * 5 + ["suspense"]
    assert items[2]["amount"] == {"minor": 2000, "currency": "CNY"}
    assert items[2]["failure_code"] == "TRADE_CLOSED" and items[4]["provider_reference"] == "PR-2"
    whole = page_all(http, "/v1/payments", auth, limit=4, expect=6)
    assert [i["cursor"] for i in whole] == [i["cursor"] for i in items]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "not-ours"}, "after"),
    ],
)
def test_bad_page_parameters_are_problems_naming_them(
    http: httpx.Client, registry: ServiceClientRegistry, params: dict[str, str], field: str
) -> None:
    _, secret = registry.add("billing-east", ["payments:read", "events:read"])
    auth = bearer(token(http, "billing-east", secret))
    answer = http.get("/v1/payments", params=params, headers=auth)
    assert answer.status_code == 400
    assert answer.json()["field"] == field
    events_cursor = http.get("/v1/events", headers=auth).json()["next_cursor"]
    crossed = http.get("/v1/payments", params={"after": events_cursor}, headers=auth)
    assert crossed.json()["code"] == "invalid_cursor"


def test_a_reader_over_http_never_skips_or_repeats_under_concurrent_writers(
    http: httpx.Client,
    registry: ServiceClientRegistry,
    feed_world: World,
    db_url: str,
    clock: FixedClock,
) -> None:
    _, secret = registry.add("billing-east", ["payments:read"])
    auth = bearer(token(http, "billing-east", secret))
    other = Gateway.open(settings=settings_for(db_url), clock=clock)
    try:
        gateways = [feed_world.gateway, other]
        for n, gateway in enumerate(gateways):
            customer(gateway, f"W{n}")
        expected: list[tuple[str, int]] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def write(gateway: Gateway, account_no: str) -> None:
            try:
                for n in range(15):
                    receipt = gateway.pay(intent(account_no, f"{account_no}-{n}", 100 + n))
                    with lock:
                        expected.append(("payment", receipt.payment_id))
                    if n % 5 == 0:
                        gateway.reverse(receipt.payment_id, "test")
                        with lock:
                            expected.append(("reversal", receipt.payment_id))
            except BaseException as exc:
                failures.append(exc)

        writers = [
            threading.Thread(target=write, args=(g, f"W{n}")) for n, g in enumerate(gateways)
        ]
        seen: list[tuple[str, int]] = []
        after: str | None = None
        for writer in writers:
            writer.start()
        while any(w.is_alive() for w in writers):
            page = http.get(
                "/v1/payments",
                params={"limit": 4, **({"after": after} if after else {})},
                headers=auth,
            ).json()
            seen.extend((i["kind"], i["payment_id"]) for i in page["items"])
            after = page["next_cursor"]
        for writer in writers:
            writer.join(60)
        assert not failures
        deadline = time.monotonic() + 30
        while len(seen) < len(expected) and time.monotonic() < deadline:
            page = http.get(
                "/v1/payments",
                params={"limit": 4, **({"after": after} if after else {})},
                headers=auth,
            ).json()
            seen.extend((i["kind"], i["payment_id"]) for i in page["items"])
            after = page["next_cursor"]
        assert len(seen) == len(set(seen)), "an item was repeated"
        assert sorted(seen) == sorted(expected), "an item was skipped"
    finally:
        other.close()


def test_the_document_declares_the_client_credentials_flow(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["serviceClient"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/v1/oauth/token"
    assert "payments:read" in scheme["flows"]["clientCredentials"]["scopes"]
    feeds = document["paths"]
    assert feeds["/v1/payments"]["get"]["security"] == [{"serviceClient": ["payments:read"]}]
    assert feeds["/v1/events"]["get"]["security"] == [{"serviceClient": ["events:read"]}]
    assert feeds["/v1/supply-orders/{order_id}"]["get"]["security"] == [
        {"serviceClient": ["supply-orders:read"]}
    ]
    assert {"401", "403"} <= set(feeds["/v1/payments"]["get"]["responses"])
    page = feeds["/v1/payments"]["get"]["responses"]["200"]["content"]["application/json"]
    assert page["schema"]["$ref"].endswith("/PaymentPage")
