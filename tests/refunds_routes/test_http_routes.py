"""Alipay, WeChat Pay and the online gateway: each route against its fake provider over real
HTTP, the same story for all three, then what only one of them does."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.money import Money
from paygate.refunds.route import RefundOutcome, RefundRequest, RefundRouteUnavailable, RefundState
from paygate.refunds.routes import RefundsSection
from paygate.refunds.routes.alipay import alipay_response_text
from tests.refunds_routes.conftest import (
    AMOUNT,
    PAID,
    PASSPHRASE,
    PAYMENT,
    Provider,
    built_routes,
    closed_port,
    request,
    section,
    write_keys,
)
from tests.refunds_routes.fakes import key

HTTP_ROUTES = ("alipay", "wechatpay", "online")
KEYS = ("alipay_trade_refund_response", "error_response", "sign")


def settle(route: Any, refund: RefundRequest, *, queries: int = 5) -> RefundOutcome:
    """Submit, then query while pending, as the refund order's owner does."""
    outcome: RefundOutcome = route.submit(refund)
    for _ in range(queries):
        if outcome.state is not RefundState.PENDING:
            break
        outcome = route.query(refund)
    return outcome


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_a_refund_succeeds_and_the_provider_holds_exactly_it(
    name: str, routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    outcome = settle(routes[name], request())
    fake = fresh[name].fake
    assert outcome.state is RefundState.SUCCEEDED
    assert outcome.provider_reference
    assert fake.rejected_signatures == 0
    assert fake.refunded(PAYMENT) == AMOUNT.minor
    assert len(fake.refunds) == 1


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_a_repeated_submit_refunds_once(
    name: str, routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    route, fake = routes[name], fresh[name].fake
    first = settle(route, request())
    again = [settle(route, request()) for _ in range(3)]
    assert first.state is RefundState.SUCCEEDED
    assert all(outcome.state is RefundState.SUCCEEDED for outcome in again)
    assert fake.refunded(PAYMENT) == AMOUNT.minor
    # A second refund with its own id is a second refund.
    assert settle(route, request("R-2024-0002")).state is RefundState.SUCCEEDED
    assert fake.refunded(PAYMENT) == 2 * AMOUNT.minor


FAILURE_CODES = {
    "alipay": ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "ACQ.TRADE_NOT_EXIST"),
    "wechatpay": ("NOT_ENOUGH", "RESOURCE_NOT_EXISTS"),
    "online": ("33", "35"),
}


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_business_failures_fail_with_the_providers_code(
    name: str, routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    too_much, unknown = FAILURE_CODES[name]
    over = settle(routes[name], request(amount=PAID + Money(1, "CNY")))
    assert (over.state, over.failure_code) == (RefundState.FAILED, too_much)
    assert over.failure_message
    missing = settle(routes[name], request("R-2024-0003", payment="2024050199999999"))
    assert (missing.state, missing.failure_code) == (RefundState.FAILED, unknown)
    assert fresh[name].fake.refunded(PAYMENT) == 0


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_pending_then_succeeded_through_query(
    name: str, routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    fresh[name].fake.pending = True
    route = routes[name]
    assert route.submit(request()).state is RefundState.PENDING
    states = [route.query(request()).state for _ in range(3)]
    assert states[-1] is RefundState.SUCCEEDED
    assert RefundState.FAILED not in states
    assert fresh[name].fake.refunded(PAYMENT) == AMOUNT.minor


@pytest.mark.parametrize("name", HTTP_ROUTES)
@pytest.mark.parametrize("mode", ["5xx", "slow", "forged", "tampered", "unsigned"])
def test_what_cannot_be_believed_is_unavailable_never_an_outcome(
    name: str,
    mode: str,
    routes: dict[str, Any],
    fresh: dict[str, Provider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = fresh[name].fake
    fake.pending = True  # so that a tampered answer says more than the signed one
    fake.mode = mode
    with pytest.raises(RefundRouteUnavailable):
        routes[name].submit(request())
    if mode not in ("5xx", "slow"):
        assert any(
            r.levelno == logging.ERROR and "not believed" in r.getMessage() for r in caplog.records
        )
    # Once the provider behaves, the same refund goes through, once.
    fake.mode = ""
    fake.pending = False
    assert settle(routes[name], request()).state is RefundState.SUCCEEDED
    assert fake.refunded(PAYMENT) == AMOUNT.minor


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_a_query_that_cannot_be_believed_is_unavailable(
    name: str, routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    fake = fresh[name].fake
    fake.pending = True
    assert routes[name].submit(request()).state is RefundState.PENDING
    for mode in ("forged", "tampered", "5xx"):
        fake.mode = mode
        with pytest.raises(RefundRouteUnavailable):
            routes[name].query(request())


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_connection_refused_is_unavailable(name: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    config = section({name: url}, write_keys(tmp_path / "keys"), tmp_path)
    with built_routes(config) as built:
        with pytest.raises(RefundRouteUnavailable):
            built[name].submit(request())
        with pytest.raises(RefundRouteUnavailable):
            built[name].query(request())


@pytest.mark.parametrize("name", HTTP_ROUTES)
def test_a_request_signed_with_the_wrong_key_is_refused_by_the_provider_and_retried(
    name: str, fresh: dict[str, Provider], tmp_path: Path
) -> None:
    files = write_keys(tmp_path / "keys")
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(key("someone-else").private_pem)
    target = {"alipay": "alipay_app", "wechatpay": "wechat_merchant", "online": "online_merchant"}
    files[target[name]] = wrong
    urls = {n: p.server.url for n, p in fresh.items()}
    config = section(urls, files, tmp_path).model_dump()
    if name == "alipay":
        config["alipay"]["app_private_key_passphrase_env"] = None
    with (
        built_routes(RefundsSection.model_validate(config)) as built,
        pytest.raises(RefundRouteUnavailable),
    ):
        built[name].submit(request())
    assert fresh[name].fake.rejected_signatures == 1
    assert fresh[name].fake.refunds == {}


def test_wechat_pay_refuses_stale_or_mismatched_answers_and_retries_frequency_limits(
    routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    fake = fresh["wechatpay"].fake
    for mode in ("stale", "frequency", "system_error", "other_amount"):
        fake.mode = mode
        with pytest.raises(RefundRouteUnavailable):
            routes["wechatpay"].submit(request())
    # The stale answer was for a refund WeChat Pay made; asked again, it is the same one.
    fake.mode = ""
    assert settle(routes["wechatpay"], request()).state is RefundState.SUCCEEDED
    assert fake.refunded(PAYMENT) == AMOUNT.minor


def test_alipay_system_error_is_retried_not_failed(
    routes: dict[str, Any], fresh: dict[str, Provider]
) -> None:
    fresh["alipay"].fake.mode = "system_error"
    with pytest.raises(RefundRouteUnavailable, match=r"ACQ\.SYSTEM_ERROR"):
        routes["alipay"].submit(request())


def test_wechat_pay_needs_the_payments_total(routes: dict[str, Any]) -> None:
    from dataclasses import replace

    from paygate.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as refused:
        routes["wechatpay"].submit(replace(request(), original_amount=None))
    assert refused.value.field == "original_amount"


def test_keys_and_passphrases_are_never_logged(
    routes: dict[str, Any], fresh: dict[str, Provider], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in HTTP_ROUTES:
        settle(routes[name], request())
        settle(routes[name], request("R-2024-0009", amount=PAID))
        fresh[name].fake.mode = "forged"
        with pytest.raises(RefundRouteUnavailable):
            routes[name].submit(request("R-2024-0010"))
    assert caplog.records, "the routes log what they do"
    secrets = [PASSPHRASE]
    for role in ("alipay_app", "wechat_merchant", "online_merchant"):
        pem = key(role).private_pem.decode()
        secrets += [line for line in pem.splitlines()[1:-1] if len(line) > 20]
    text = caplog.text + "".join(repr(route) for route in routes.values())
    for secret in secrets:
        assert secret not in text


@given(minor=st.integers(1, 10**13))
def test_alipay_yuan_text_round_trips_minor_units_exactly(minor: int) -> None:
    text = Money(minor, "CNY").format()
    # Read as Alipay reads refund_amount: a decimal of at most two places.
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", text)
    assert Decimal(text) * 100 == minor
    assert Money.parse(text, "CNY").minor == minor


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    value=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    before=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k not in KEYS), json_values, max_size=2
    ),
    space=st.sampled_from(["", " ", "\n  "]),
    ascii_only=st.booleans(),
)
def test_the_signed_text_is_cut_out_of_any_answer_exactly(
    value: dict[str, Any], before: dict[str, Any], space: str, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=1 if space else None)
    head = "".join(f"{json.dumps(k)}:{json.dumps(v)},{space}" for k, v in before.items())
    body = (
        f'{{{space}{head}"alipay_trade_refund_response":{space}{text}{space},"sign":"c2ln"{space}}}'
    )
    assert alipay_response_text(body, "alipay_trade_refund_response") == (text, "c2ln")


@given(value=st.dictionaries(st.text(max_size=6), json_values, max_size=4), data=st.data())
def test_a_cut_or_garbled_answer_is_refused(value: dict[str, Any], data: st.DataObject) -> None:
    body = f'{{"alipay_trade_refund_response":{json.dumps(value)},"sign":"c2ln"}}'
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ValueError, match=r"."):
        alipay_response_text(body[:cut], "alipay_trade_refund_response")
    with pytest.raises(ValueError, match=r"."):
        alipay_response_text(body + data.draw(st.sampled_from(["x", "}", ",{}", "[]"])), KEYS[0])
    assert alipay_response_text(body, KEYS[0]) == (json.dumps(value), "c2ln")
