"""Schemathesis against the live server's own /openapi.json: no 5xx, every answer as documented.

Requests generated from the document — valid ones and deliberately invalid ones — are signed
the way a device (or the head-end) signs, so they reach past authentication into the routes;
unsigned, they would all stop at 401. Each operation gets a bounded number of examples so that
the run takes seconds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretBytes
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from paygate.api import ApiConfig
from paygate.channels.kiosk import KioskConfig
from paygate.channels.voucher import VoucherConfig
from paygate.devices import sign_request
from paygate.errors import PaygateError
from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.api.support import LiveServer, live_server, open_world
from tests.api.test_notify import channel_configs
from tests.channels.kiosk_support import ed25519_key
from tests.headend.simulator import CALLBACK_SECRET

PIN_KEY = SecretBytes(bytes(range(40, 72)))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class Signer(requests.auth.AuthBase):
    """Signs each generated request as kiosk K0001, or as the head-end for its callbacks."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = request.body or b""
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        target = request.path_url
        now = datetime.now(UTC)
        if target.startswith(("/v1/supply-orders/", "/v1/reconnections/")):
            stamp = str(int(now.timestamp()))
            digest = hmac.new(CALLBACK_SECRET, stamp.encode() + b"." + body, hashlib.sha256)
            request.headers["X-Headend-Timestamp"] = stamp
            request.headers["X-Headend-Signature"] = digest.hexdigest()
            return request
        try:
            signed = sign_request(
                ed25519_key("K0001"), "K0001", str(request.method), target, body, now=now
            )
        except PaygateError:
            return request  # a target no device could sign (". " segments …): sent as generated
        request.headers.update(signed)
        return request


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with every route configured, over a world with a customer and cards."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'paygate.db'}"
    world = open_world(url)
    try:
        world.customer()
        world.register("K0001")
        cards = VoucherService(world.gateway, PIN_KEY)
        cards.issue_batch("B1", 3, Money(5000, "CNY"), world.days_ahead(365), BytesIO())
        cards.activate("B1", retailer="Shop 1")
        config = ApiConfig(
            channels={
                "kiosk": KioskConfig(),
                "voucher": VoucherConfig(),
                **channel_configs(),
            },
            voucher_pin_key=PIN_KEY,
            callback_secret=SecretBytes(CALLBACK_SECRET),
        )
        with live_server(url, config) as server:
            yield server
    finally:
        world.gateway.close()


@pytest.fixture(scope="module")
def served_document(fuzzed: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")


OPERATIONS = [
    ("GET", "/v1/accounts/{account_no}"),
    ("POST", "/v1/payments"),
    ("POST", "/v1/kiosks/{device_id}/close"),
    ("POST", "/v1/vouchers/redeem"),
    ("POST", "/v1/channels/{channel}/notify"),
    ("POST", "/v1/supply-orders/{order_id}/confirm"),
    ("POST", "/v1/reconnections/{order_id}/confirm"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
]


# Driven through Hypothesis directly: schemathesis' own pytest loader does not run under this
# pytest. Valid requests (positive) and requests the document forbids (negative) alike.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_matches_the_served_document(
    served_document: Any, fuzzed: LiveServer, method: str, path: str
) -> None:
    operation = served_document.find_operation_by_path(method, path)
    assert operation is not None, "the served document lacks the operation"
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def answers_as_documented(case: Any) -> None:
        response = case.call(base_url=fuzzed.url, auth=Signer(), timeout=10)
        case.validate_response(response, checks=CHECKS)

    answers_as_documented()


def test_the_document_is_a_complete_openapi_3_1_description(fuzzed: LiveServer) -> None:
    loaded = requests.get(f"{fuzzed.url}/openapi.json", timeout=10).json()
    assert loaded["openapi"].startswith("3.1")
    for path, item in loaded["paths"].items():
        for method, operation in item.items():
            assert operation.get("operationId"), (method, path)
            assert operation.get("description") or operation.get("summary"), (method, path)
            assert operation["responses"], (method, path)
            for status, answer in operation["responses"].items():
                assert "X-Request-Id" in answer.get("headers", {}), (method, path, status)
    channel = next(
        p
        for p in loaded["paths"]["/v1/channels/{channel}/notify"]["post"]["parameters"]
        if p["name"] == "channel"
    )
    assert channel["schema"]["enum"] == sorted(channel_configs())
