"""The readers every channel shares: amounts, times, JSON bodies, and the intent they make."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.channels.errors import MissingAccountError
from paygate.channels.orders import Order
from paygate.channels.voucher import parse_redeem_request
from paygate.channels.wire import (
    make_intent,
    parse_json_object,
    parse_local_time,
    parse_money,
    within_years,
)
from paygate.errors import InvalidInputError, NaiveDatetimeError, ParseError
from paygate.models import (
    PAID_AT_CEILING,
    PAID_AT_FLOOR,
    DisconnectionCandidate,
    PaymentIntent,
    StatementLine,
)
from paygate.money import Money

BEIJING = ZoneInfo("Asia/Shanghai")
PLUS_8 = timezone(timedelta(hours=8))


def intent(paid_at: datetime) -> PaymentIntent:
    return PaymentIntent(
        channel="kiosk",
        channel_txn_id="K1",
        account_no="0101234567",
        amount=Money(12050, "CNY"),
        paid_at=paid_at,
    )


# ── amounts ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("text", ["120,50", "1,20", "1.205e2", "１２０", "1_20.50", "+120.50"])
def test_a_lenient_amount_is_a_parse_error_naming_source_line_and_field(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_money(text, "CNY", source="kiosk.csv", line=7, field="amount")
    assert (info.value.source, info.value.line, info.value.field) == ("kiosk.csv", 7, "amount")


def test_a_column_written_with_more_decimals_reads_only_whole_minor_units() -> None:
    assert parse_money("0.72000", "CNY", source="s", field="fee", written_decimals=5) == Money(
        72, "CNY"
    )
    assert parse_money("0.72", "CNY", source="s", field="fee", written_decimals=5) == Money(
        72, "CNY"
    )
    with pytest.raises(ParseError, match="decimal places"):
        parse_money("0.72500", "CNY", source="s", field="fee", written_decimals=5)
    with pytest.raises(ParseError, match="decimal places"):
        parse_money("0.72000", "CNY", source="s", field="fee")


@given(st.text(max_size=40))
def test_parse_money_refuses_junk_only_with_a_parse_error(text: str) -> None:
    refusal: ParseError | None = None
    try:
        amount = parse_money(text, "CNY", source="s", line=1, field="amount")
    except ParseError as exc:
        refusal = exc
    if refusal is not None:
        assert (refusal.field, refusal.line) == ("amount", 1)
    else:
        assert Decimal(text) == amount.to_decimal()


# ── times ─────────────────────────────────────────────────────────────────────────────────


def test_payment_intent_refuses_a_naive_paid_at_with_the_documented_error() -> None:
    with pytest.raises(NaiveDatetimeError) as info:
        intent(datetime(2026, 11, 25, 10, 0))
    assert info.value.field == "paid_at"


def test_the_other_records_refuse_naive_datetimes_with_the_documented_error() -> None:
    with pytest.raises(NaiveDatetimeError) as info:
        StatementLine(
            line_no=1,
            channel_txn_id="T1",
            account_no=None,
            gross=Money(100, "CNY"),
            fee=Money(0, "CNY"),
            net=Money(100, "CNY"),
            occurred_at=datetime(2026, 11, 25, 10, 0),
        )
    assert info.value.field == "occurred_at"
    with pytest.raises(NaiveDatetimeError) as info:
        DisconnectionCandidate(
            account_no="0101234567",
            arrears=Money(100, "CNY"),
            oldest_due_date=date(2026, 10, 1),
            notice_served_at=datetime(2026, 11, 1),
            final_reminder_at=None,
        )
    assert info.value.field == "notice_served_at"


def test_channel_records_refuse_naive_datetimes_with_the_documented_error() -> None:
    with pytest.raises(NaiveDatetimeError) as info:
        Order(
            order_id="20240501101500aaaaaaaaaaaaaaaa",
            channel="online",
            account_no="0101234567",
            amount=Money(15000, "CNY"),
            created_at=datetime(2024, 5, 1, 10, 15),
            expires_at=datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
        )
    assert info.value.field == "created_at"


@pytest.mark.parametrize(
    "paid_at",
    [
        datetime(1, 1, 1, 7, 59, 59, tzinfo=PLUS_8),  # no UTC equivalent: was HTTP 500
        datetime(1, 1, 1, 8, 0, tzinfo=PLUS_8),  # was posted into year 1
        PAID_AT_FLOOR - timedelta(microseconds=1),
        PAID_AT_CEILING,
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-8))),
    ],
)
def test_a_paid_at_outside_the_window_is_invalid_input_not_a_crash(paid_at: datetime) -> None:
    with pytest.raises(InvalidInputError) as info:
        intent(paid_at)
    assert info.value.field == "paid_at"


def test_the_window_edges_are_accepted() -> None:
    assert intent(PAID_AT_FLOOR).paid_at == PAID_AT_FLOOR
    last = PAID_AT_CEILING - timedelta(microseconds=1)
    assert intent(last).paid_at == last


@pytest.mark.parametrize(
    "text", ["0001-01-01 07:59:59", "0001-01-01 08:00:00", "9999-12-31 23:59:59"]
)
def test_a_channel_time_outside_the_window_is_a_parse_error_naming_the_line(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_local_time(
            text, "%Y-%m-%d %H:%M:%S", BEIJING, source="bill.csv", line=9, field="完成时间"
        )
    assert (info.value.line, info.value.field) == (9, "完成时间")


def test_within_years_checks_an_aware_time_from_any_reader() -> None:
    fine = datetime(2026, 11, 25, 10, 0, tzinfo=BEIJING)
    assert within_years(fine, source="s", field="at") is fine
    with pytest.raises(ParseError):
        within_years(datetime(1, 1, 1, tzinfo=PLUS_8), source="s", field="at")


def test_make_intent_names_the_channels_own_field_for_paid_at() -> None:
    with pytest.raises(InvalidInputError) as info:
        make_intent(
            channel="alipay",
            channel_txn_id="T1",
            account_no="0101234567",
            amount=Money(100, "CNY"),
            paid_at=datetime(1999, 1, 1, tzinfo=UTC),
            names={"paid_at": "gmt_payment"},
        )
    assert info.value.field == "gmt_payment"


def test_make_intent_treats_an_impossible_account_number_as_missing() -> None:
    with pytest.raises(MissingAccountError) as info:
        make_intent(
            channel="wechatpay",
            channel_txn_id="T1",
            account_no="has spaces",
            amount=Money(100, "CNY"),
            paid_at=datetime(2026, 1, 1, tzinfo=UTC),
            names={"account_no": "attach"},
        )
    assert info.value.field == "attach"


# ── JSON ──────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": {"b": 1, "b": 2}}',
        b'{"amount": 1, "amount": 100000}',
        b'{"n": ' + b"1" * 41 + b"}",
        b'{"n": 1.' + b"0" * 40 + b"}",
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"n": NaN}',
        b"[" * 50_000 + b"]" * 50_000,
    ],
)
def test_the_strict_reader_refuses_ambiguous_or_hostile_bodies(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_json_object(body, source="kiosk")
    assert info.value.source == "kiosk"


def test_json_fractions_are_read_as_decimal_never_float() -> None:
    assert parse_json_object(b'{"n": 120.50}', source="s") == {"n": Decimal("120.50")}


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_redemption_is_a_parse_error_not_a_recursion_error(depth: int) -> None:
    body = json.dumps({"account_no": "0101234567", "serial": "1", "pin": "1"})[:-1].encode()
    body += b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ParseError, match="nested deeper"):
        parse_redeem_request(body)
