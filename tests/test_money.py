"""Money: integer minor units of one currency; floats refused; exact text round trips."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.errors import CurrencyMismatchError, InvalidAmountError
from paygate.models import PaymentIntent
from paygate.money import Money
from tests.strategies import currencies, minor_amounts, money


def test_parse_and_construct_agree() -> None:
    assert Money.parse("120.50", "CNY") == Money(12050, "CNY")
    assert Money.parse(Decimal("120.5"), "CNY") == Money(12050, "CNY")
    assert Money.parse("1,234.56", "CNY") == Money(123456, "CNY")
    assert Money.parse("7", "JPY") == Money(7, "JPY")
    assert Money.parse("1.234", "KWD") == Money(1234, "KWD")
    assert Money.parse(3, "CNY") == Money(300, "CNY")


@pytest.mark.parametrize("bad", [1.5, 120.50, float("nan"), True])
def test_floats_and_bools_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        Money(bad, "CNY")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.parse(bad, "CNY")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["120.505", "abc", "", "NaN", "Infinity", "1e-3"])
def test_text_that_is_not_an_exact_amount_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse(text, "CNY")
    assert info.value.field == "amount"


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(InvalidAmountError, match="unknown currency"):
        Money(1, "XYZ")


def test_arithmetic_stays_within_one_currency() -> None:
    a, b = Money(150, "CNY"), Money(50, "CNY")
    assert a + b == Money(200, "CNY")
    assert a - b == Money(100, "CNY")
    assert -a == Money(-150, "CNY")
    assert a * 3 == Money(450, "CNY")
    assert b < a
    with pytest.raises(CurrencyMismatchError):
        _ = a + Money(1, "USD")
    with pytest.raises(TypeError):
        _ = a * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = a + 1  # type: ignore[operator]


def test_money_is_immutable_and_hashable() -> None:
    m = Money(1, "CNY")
    with pytest.raises(AttributeError):
        m._minor = 2  # type: ignore[misc]
    assert {m, Money(1, "CNY")} == {m}


def test_money_in_a_pydantic_model_round_trips_as_json() -> None:
    from datetime import UTC, datetime

    intent = PaymentIntent(
        channel="kiosk",
        channel_txn_id="K1",
        account_no="A1",
        amount=Money(12050, "CNY"),
        paid_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    text = intent.model_dump_json()
    assert '"amount":{"minor":12050,"currency":"CNY"}' in text
    assert PaymentIntent.model_validate_json(text) == intent
    with pytest.raises(ValueError, match="minor"):
        PaymentIntent.model_validate_json(text.replace("12050", "120.5"))


@given(money())
def test_format_then_parse_is_identity(m: Money) -> None:
    assert Money.parse(m.format(), m.currency) == m
    assert Money.parse(m.to_decimal(), m.currency) == m


@given(minor_amounts, minor_amounts, currencies)
def test_addition_is_exact(a: int, b: int, currency: str) -> None:
    assert (Money(a, currency) + Money(b, currency)).minor == a + b


@given(st.text(max_size=30), currencies)
def test_parse_never_crashes_with_anything_but_invalid_amount(text: str, currency: str) -> None:
    with contextlib.suppress(InvalidAmountError):
        Money.parse(text, currency)
