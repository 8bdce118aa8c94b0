"""Money: integer minor units of one currency; floats refused; exact text round trips."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.errors import CurrencyMismatchError, InvalidAmountError
from paygate.models import PaymentIntent
from paygate.money import MAX_MINOR, Money
from tests.strategies import currencies, minor_amounts, money


def test_parse_and_construct_agree() -> None:
    assert Money.parse("120.50", "CNY") == Money(12050, "CNY")
    assert Money.parse(Decimal("120.5"), "CNY") == Money(12050, "CNY")
    assert Money.parse("1234.56", "CNY") == Money(123456, "CNY")
    assert Money.parse("-1.20", "CNY") == Money(-120, "CNY")
    assert Money.parse("120.5", "CNY") == Money(12050, "CNY")
    assert Money.parse("0000120.50", "CNY") == Money(12050, "CNY")
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


@pytest.mark.parametrize(
    "text",
    [
        "120,50",  # a decimal comma: 120.50 or 12 050.00?
        "1,20",
        "1,234.56",
        "1.205e2",
        "1E2",
        "１２０.５０",  # full-width digits
        "١٢٠",  # Arabic-Indic digits
        "1_20.50",
        "+120.50",
        " 120.50",
        "120.50 ",
        "120. 50",
        "1 20.50",
        "\t120.50",
        "120.",
        ".50",
        "-",
        "--1",
        "1.2.3",
        "120.500",  # three decimals, even if zero
        "0x10",
        "-0.001",
        "92233720368547758.08",  # 2**63 fen
        "99999999999999999999999999999999",
        "0" * 5000 + "9" * 30,
    ],
)
def test_text_that_is_not_a_plain_decimal_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmountError) as info:
        Money.parse(text, "CNY")
    assert info.value.field == "amount"
    assert len(str(info.value)) < 200  # junk is never echoed whole


def test_decimals_follow_the_currency() -> None:
    assert Money.parse("7", "JPY") == Money(7, "JPY")
    with pytest.raises(InvalidAmountError, match="decimal places"):
        Money.parse("7.0", "JPY")
    assert Money.parse("1.2345", "CLF") == Money(12345, "CLF")
    with pytest.raises(InvalidAmountError, match="decimal places"):
        Money.parse("1.23456", "CLF")


def test_the_largest_amount_the_ledger_holds_is_the_limit() -> None:
    assert Money(MAX_MINOR, "CNY").minor == 2**63 - 1
    assert Money.parse("92233720368547758.07", "CNY") == Money(MAX_MINOR, "CNY")
    assert Money.parse("-92233720368547758.07", "CNY") == Money(-MAX_MINOR, "CNY")
    for minor in (2**63, -(2**63), 10**5000):
        with pytest.raises(InvalidAmountError, match="largest"):
            Money(minor, "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        Money.parse(Decimal("1E+30"), "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        Money.parse(Decimal("1E+999999999"), "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        Money.parse(2**62, "CNY")


def test_arithmetic_beyond_the_limit_is_refused_not_wrapped() -> None:
    big = Money(MAX_MINOR, "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        _ = big + Money(1, "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        _ = -big - Money(1, "CNY")
    with pytest.raises(InvalidAmountError, match="largest"):
        _ = big * 2
    assert -big == Money(-MAX_MINOR, "CNY")
    assert abs(-big) == big


def test_money_beyond_the_limit_in_a_model_is_the_documented_error() -> None:
    from datetime import UTC, datetime

    with pytest.raises(InvalidAmountError):
        PaymentIntent.model_validate(
            {
                "channel": "kiosk",
                "channel_txn_id": "K1",
                "account_no": "A1",
                "amount": {"minor": 2**63, "currency": "CNY"},
                "paid_at": datetime(2026, 11, 25, tzinfo=UTC),
            }
        )


# Text near the accepted form: digits with the characters the lenient reader took.
_NEAR_AMOUNTS = st.text(
    alphabet=st.sampled_from("0123456789.-+,_ eE１٣\t"), min_size=0, max_size=24
)


@given(st.one_of(_NEAR_AMOUNTS, st.text(max_size=40)), currencies)
def test_accepted_text_round_trips_through_format_exactly(text: str, currency: str) -> None:
    try:
        parsed = Money.parse(text, currency)
    except InvalidAmountError:
        return
    # Accepted text is exactly a decimal in the currency's precision: the same number as
    # format() writes, and format() reads back to the same amount.
    assert Decimal(text) == Decimal(parsed.format())
    assert Money.parse(parsed.format(), currency) == parsed
    assert text.lstrip("-").replace(".", "").isdigit() and text.isascii()


@given(money())
def test_format_is_the_canonical_text(m: Money) -> None:
    text = m.format()
    assert text.isascii() and "," not in text and "e" not in text.lower()
    assert Money.parse(text, m.currency) == m


@given(st.text(max_size=30), currencies)
def test_parse_never_crashes_with_anything_but_invalid_amount(text: str, currency: str) -> None:
    with contextlib.suppress(InvalidAmountError):
        Money.parse(text, currency)


def test_statement_readers_refuse_an_amount_beyond_the_ledger_naming_the_line() -> None:
    # Money's bound reaches every reader that builds amounts from digits; the bank statement
    # readers (which take up to 24 digits) turn it into a ParseError at the line.
    from paygate.errors import ParseError
    from paygate.reconcile.bank._input import Where, money_from_minor_text, money_from_parts

    where = Where("camt.xml")
    with pytest.raises(ParseError) as info:
        money_from_parts(False, "92233720368547758", "08", "CNY", where, 12, "Amt")
    assert (info.value.source, info.value.line, info.value.field) == ("camt.xml", 12, "Amt")
    with pytest.raises(ParseError) as info:
        money_from_minor_text("+9223372036854775808", "CNY", where, 3, "amount")
    assert info.value.line == 3
    assert money_from_minor_text("-9223372036854775807", "CNY", where, 3, "amount") == Money(
        -MAX_MINOR, "CNY"
    )
