"""Online gateway: payment orders, signed notifications, refusals, and the settlement CSV."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from paygate.channels.base import AdapterContext
from paygate.channels.online import OnlineAdapter, OnlineConfig, read_online_statement
from paygate.channels.orders import InMemoryOrderStore, Order
from paygate.clock import FixedClock
from paygate.errors import (
    ConfigurationError,
    CurrencyMismatchError,
    InvalidAmountError,
    InvalidInputError,
    NaiveDatetimeError,
    ParseError,
    UnknownAccountError,
)
from paygate.models import StatementLineKind
from paygate.money import Money
from tests.channels import support
from tests.channels.support import RecordingSink

BEIJING = ZoneInfo("Asia/Shanghai")
KEY = support.rsa_key("unionpay")
NOW = datetime(2024, 5, 1, 2, 15, tzinfo=UTC)  # 10:15 Beijing time


class Setup:
    """An adapter, its clock and order store, and one fresh order of 150.00 yuan."""

    def __init__(self, **config: Any) -> None:
        self.clock = FixedClock(NOW)
        self.orders = InMemoryOrderStore()
        values: dict[str, Any] = {
            "merchant_id": support.ONLINE_MERCHANT,
            "gateway_public_keys": (support.public_pem(KEY),),
            **config,
        }
        self.adapter = OnlineAdapter(
            OnlineConfig.model_validate(values),
            AdapterContext(clock=self.clock, orders=self.orders),
        )
        self.order = self.adapter.create_order("0101234567", Money(15000, "CNY"), now=NOW)
        self.sink = RecordingSink()

    def notify(self, body: bytes) -> Any:
        return self.adapter.handle_notify(
            body, {"Content-Type": "application/x-www-form-urlencoded"}, self.sink
        )

    def body(self, key: Any = KEY, **overrides: str) -> bytes:
        return support.unionpay_body(
            support.unionpay_params(self.order.order_id, 15000, **overrides), key
        )


# ── orders ────────────────────────────────────────────────────────────────────────────────


def test_create_order_fixes_account_amount_and_expiry() -> None:
    setup = Setup()
    order = setup.order
    assert setup.orders.get(order.order_id) == order
    assert (order.channel, order.account_no, order.amount) == (
        "online",
        "0101234567",
        Money(15000, "CNY"),
    )
    assert order.expires_at - order.created_at == timedelta(minutes=15)
    assert order.order_id.isalnum()
    assert len(order.order_id) == 30
    assert order.order_id.startswith("20240501101500")
    other = setup.adapter.create_order("0101234567", Money(15000, "CNY"), now=NOW)
    assert other.order_id != order.order_id


@pytest.mark.parametrize(
    ("account", "amount", "now", "error"),
    [
        ("0101234567", Money(0, "CNY"), NOW, InvalidAmountError),
        ("0101234567", Money(100, "USD"), NOW, CurrencyMismatchError),
        ("01 0123", Money(100, "CNY"), NOW, InvalidInputError),
        ("0101234567", Money(100, "CNY"), datetime(2024, 5, 1, 10, 0), NaiveDatetimeError),
    ],
)
def test_create_order_refuses_what_cannot_be_paid(
    account: str, amount: Money, now: datetime, error: type[Exception]
) -> None:
    with pytest.raises(error):
        Setup().adapter.create_order(account, amount, now=now)


def test_online_needs_an_order_store() -> None:
    config = OnlineConfig(
        merchant_id=support.ONLINE_MERCHANT, gateway_public_keys=(support.public_pem(KEY),)
    )
    with pytest.raises(ConfigurationError, match="order store"):
        OnlineAdapter(config)


# ── notifications ─────────────────────────────────────────────────────────────────────────


def test_notification_pays_the_orders_account() -> None:
    setup = Setup()
    result = setup.notify(setup.body())
    assert (result.status_code, result.body) == (200, b"ok")
    assert result.receipt is not None
    assert not result.receipt.replayed
    (intent,) = setup.sink.pay_calls
    assert intent.channel == "online"
    assert intent.channel_txn_id == "782405011015301234567"
    assert intent.account_no == "0101234567"
    assert intent.amount == Money(15000, "CNY")
    assert intent.paid_at == datetime(2024, 5, 1, 10, 15, 30, tzinfo=BEIJING)  # traceTime


def test_a_payment_completed_after_midnight_belongs_to_the_day_it_completed() -> None:
    # Ordered at 23:59:50, paid at 00:00:10: the gateway settles it on the next day, and so
    # must the ledger, or reconciliation finds it on neither day.
    setup = Setup()
    ordered = datetime(2024, 5, 1, 15, 59, 50, tzinfo=UTC)  # 23:59:50 Beijing time
    setup.order = setup.adapter.create_order("0101234567", Money(15000, "CNY"), now=ordered)
    setup.clock.set(ordered + timedelta(seconds=25))
    body = setup.body(txnTime="20240501235950", traceTime="0502000010", settleDate="0502")
    assert setup.notify(body).ok
    (intent,) = setup.sink.pay_calls
    assert intent.paid_at == datetime(2024, 5, 2, 0, 0, 10, tzinfo=BEIJING)
    assert setup.adapter.settlement.business_date(intent.paid_at) == date(2024, 5, 2)


def test_a_payment_completed_in_the_new_year_takes_the_next_year() -> None:
    setup = Setup()
    ordered = datetime(2024, 12, 31, 15, 59, 50, tzinfo=UTC)  # 23:59:50 Beijing time
    setup.order = setup.adapter.create_order("0101234567", Money(15000, "CNY"), now=ordered)
    setup.clock.set(ordered + timedelta(seconds=25))
    body = setup.body(txnTime="20241231235950", traceTime="0101000010")
    assert setup.notify(body).ok
    (intent,) = setup.sink.pay_calls
    assert intent.paid_at == datetime(2025, 1, 1, 0, 0, 10, tzinfo=BEIJING)


@pytest.mark.parametrize(
    "trace_time",
    [None, "", "0501", "05011015301", "1301101530", "0230101530", "0430101530", "05ab101530"],
)
def test_a_payment_without_a_usable_completion_time_is_refused(trace_time: str | None) -> None:
    setup = Setup()
    params = support.unionpay_params(setup.order.order_id, 15000)
    if trace_time is None:
        del params["traceTime"]
    else:
        params["traceTime"] = trace_time
    status, code = refused(setup, support.unionpay_body(params, KEY))
    assert (status, code) == (400, "parse_error")


def test_a_completion_time_ahead_of_the_clock_beyond_the_skew_is_refused() -> None:
    setup = Setup()  # the clock stands at 10:15:00 Beijing time
    body = setup.body(traceTime="0501102600")  # 11 minutes ahead
    assert refused(setup, body) == (400, "invalid_input")
    assert setup.notify(setup.body(traceTime="0501102400")).ok  # 9 minutes: clocks differ


def test_duplicate_notification_replays_the_same_receipt() -> None:
    setup = Setup()
    first = setup.notify(setup.body())
    second = setup.notify(setup.body())
    assert second.body == b"ok"
    assert first.receipt is not None
    assert second.receipt is not None
    assert second.receipt.replayed
    assert second.receipt.payment_id == first.receipt.payment_id
    assert len(setup.sink.posted) == 1


def test_notification_after_expiry_but_within_the_late_window_pays() -> None:
    setup = Setup()
    setup.clock.advance(timedelta(minutes=15 + 59))
    assert setup.notify(setup.body()).body == b"ok"


def refused(setup: Setup, body: bytes) -> tuple[int, str]:
    result = setup.notify(body)
    assert result.body == b"fail"
    assert result.receipt is None
    assert setup.sink.calls == 0
    assert result.error_code is not None
    return result.status_code, result.error_code


def test_wrong_amount_is_refused() -> None:
    setup = Setup()
    assert refused(setup, setup.body(txnAmt="1500")) == (409, "amount_mismatch")


def test_wrong_currency_is_refused() -> None:
    setup = Setup()
    assert refused(setup, setup.body(currencyCode="840")) == (400, "currency_mismatch")


def held(setup: Setup, body: bytes) -> str:
    """A verified payment acknowledged without posting; why it is held for suspense."""
    result = setup.notify(body)
    assert (result.status_code, result.body, result.receipt) == (200, b"ok", None)
    assert result.error_code is None and result.held is not None
    assert not setup.sink.posted
    return result.held


def test_a_verified_payment_of_an_unknown_order_is_acknowledged_and_held() -> None:
    # The gateway took the customer's money; "fail" would bring it back for hours.
    setup = Setup()
    body = support.unionpay_body(
        support.unionpay_params("20240501000000ffffffffffffffff", 15000), KEY
    )
    assert held(setup, body).startswith("unknown_payment_order")


def test_a_verified_payment_for_an_unknown_account_is_acknowledged_and_held() -> None:
    setup = Setup()
    setup.sink.fail_with = UnknownAccountError("no account 0101234567")
    assert held(setup, setup.body()).startswith("unknown_account")


def test_order_of_another_channel_is_unknown() -> None:
    setup = Setup()
    foreign = Order(
        order_id="20240501101500aaaaaaaaaaaaaaaa",
        channel="alipay",
        account_no="0101234567",
        amount=Money(15000, "CNY"),
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )
    setup.orders.put(foreign)
    body = support.unionpay_body(support.unionpay_params(foreign.order_id, 15000), KEY)
    assert held(setup, body).startswith("unknown_payment_order")


def test_expired_order_is_refused() -> None:
    setup = Setup()
    setup.clock.advance(timedelta(minutes=15, hours=1, seconds=1))
    assert refused(setup, setup.body()) == (409, "order_expired")


def test_wrong_key_is_refused() -> None:
    setup = Setup()
    assert refused(setup, setup.body(key=support.rsa_key("intruder"))) == (401, "invalid_signature")


def test_field_changed_after_signing_is_refused() -> None:
    setup = Setup()
    body = setup.body().replace(b"orderId=", b"orderId=X", 1)
    assert refused(setup, body) == (401, "invalid_signature")


def test_empty_fields_are_part_of_the_signed_string() -> None:
    setup = Setup()
    fields = support.unionpay_params(setup.order.order_id, 15000)
    signed = support.unionpay_body(fields, KEY)
    assert setup.notify(signed).body == b"ok"
    # Signing without the empty reqReserved, as a sender dropping empty values would:
    without = {k: v for k, v in fields.items() if k != "reqReserved"}
    body = support.unionpay_body(without, KEY) + b"&reqReserved="
    assert Setup().notify(body).error_code == "invalid_signature"


def test_certificate_in_the_message_is_not_trusted() -> None:
    setup = Setup()
    intruder = support.rsa_key("intruder")
    cert = support.certificate_pem(intruder, 7)
    assert refused(setup, setup.body(key=intruder, signPubKeyCert=cert)) == (
        401,
        "invalid_signature",
    )


def test_rotated_keys_both_verify() -> None:
    setup = Setup(
        gateway_public_keys=(
            support.public_pem(support.rsa_key("unionpay-old")),
            support.certificate_pem(KEY, 0x1234),
        )
    )
    assert setup.notify(setup.body()).body == b"ok"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"version": "5.0.0"}, (401, "invalid_signature")),
        ({"signMethod": "11"}, (401, "invalid_signature")),
        ({"merId": "777290058119999"}, (401, "merchant_mismatch")),
        ({"txnAmt": "15000.00"}, (400, "parse_error")),
        ({"txnAmt": "1.5e4"}, (400, "parse_error")),
        ({"txnTime": "2024-05-01 10:15"}, (400, "parse_error")),
        ({"txnType": "79"}, (400, "parse_error")),
        ({"queryId": "7" * 65}, (400, "parse_error")),
    ],
)
def test_unusable_notifications_are_refused(
    overrides: dict[str, str], expected: tuple[int, str]
) -> None:
    setup = Setup()
    assert refused(setup, setup.body(**overrides)) == expected


def test_missing_required_field_is_named() -> None:
    setup = Setup()
    fields = support.unionpay_params(setup.order.order_id, 15000)
    del fields["queryId"]
    result = setup.notify(support.unionpay_body(fields, KEY))
    assert result.error_code == "parse_error"
    assert result.error is not None
    assert "queryId" in result.error


@pytest.mark.parametrize("code", ["01", "03", "34"])
def test_failed_transactions_are_acknowledged_without_posting(code: str) -> None:
    setup = Setup()
    result = setup.notify(setup.body(respCode=code))
    assert (result.status_code, result.body, result.receipt) == (200, b"ok", None)
    assert setup.sink.calls == 0


def test_void_reverses_the_original_payment() -> None:
    setup = Setup()
    setup.notify(setup.body())
    void = setup.body(
        txnType="31", queryId="782405011030001234599", origQryId="782405011015301234567"
    )
    result = setup.notify(void)
    assert (result.status_code, result.body) == (200, b"ok")
    assert setup.sink.reversals == [
        ("online", "782405011015301234567", "void 782405011030001234599")
    ]


def test_repeated_void_is_acknowledged_without_reversing_twice() -> None:
    setup = Setup()
    setup.notify(setup.body())
    void = setup.body(
        txnType="31", queryId="782405011030001234599", origQryId="782405011015301234567"
    )
    assert setup.notify(void).body == b"ok"
    again = setup.notify(void)
    assert (again.status_code, again.body) == (200, b"ok")
    assert len(setup.sink.reversals) == 2  # asked twice; the sink refused the second


def test_void_of_an_unknown_payment_fails_so_that_the_gateway_retries() -> None:
    setup = Setup()
    void = setup.body(
        txnType="31", queryId="782405011030001234599", origQryId="782405011015301234567"
    )
    result = setup.notify(void)
    assert (result.status_code, result.body, result.error_code) == (404, b"fail", "unknown_payment")


def test_void_without_original_is_refused() -> None:
    setup = Setup()
    assert refused(setup, setup.body(txnType="31")) == (400, "parse_error")


def test_refund_confirmation_is_acknowledged_without_posting() -> None:
    setup = Setup()
    result = setup.notify(
        setup.body(txnType="04", txnAmt="2000", origQryId="782405011015301234567")
    )
    assert (result.body, result.receipt) == (b"ok", None)
    assert setup.sink.calls == 0


@pytest.mark.parametrize(
    "body", [b"", b"a", b"encoding=latin-9&x=y", b"x=%4", b"encoding=UTF-8&x=%C3%28"]
)
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    assert refused(Setup(), body) == (400, "parse_error")


def test_oversized_body_is_refused() -> None:
    setup = Setup(max_body_bytes=2048)
    assert refused(setup, setup.body(respMsg="x" * 2048)) == (413, "payload_too_large")


# ── the settlement CSV ────────────────────────────────────────────────────────────────────

STATEMENT = support.LOCAL_DATA / "online_statement_20240501.csv"


def test_statement_rows_become_lines() -> None:
    lines = list(Setup().adapter.read_statement(STATEMENT))
    assert [line.kind for line in lines] == [
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.REFUND,
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.VOID,
    ]
    first, _, refund, before_cutoff, after_cutoff, void = lines
    assert (first.channel_txn_id, first.reference) == (
        "782405011015301234567",
        "20240501101530a1b2c3d4e5f60718",
    )
    assert (first.gross, first.fee, first.net) == (
        Money(15000, "CNY"),
        Money(75, "CNY"),
        Money(14925, "CNY"),
    )
    assert refund.original_txn_id == "782405011422071234568"
    assert (refund.gross, refund.fee, refund.net) == (
        Money(2000, "CNY"),
        Money(10, "CNY"),
        Money(1990, "CNY"),
    )
    assert void.original_txn_id == after_cutoff.channel_txn_id
    rules = Setup().adapter.settlement
    assert rules.business_date(before_cutoff.occurred_at).isoformat() == "2024-05-01"
    assert rules.business_date(after_cutoff.occurred_at).isoformat() == "2024-05-02"
    assert (
        rules.settlement_date(rules.business_date(after_cutoff.occurred_at)).isoformat()
        == "2024-05-03"
    )


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("O1,Q1,02,100,1,20240501101530,", "txnType"),
        ("O1,Q1,04,100,1,20240501101530,", "origQryId"),
        ("O1,,01,100,1,20240501101530,", "queryId"),
        ("O1,Q1,01,-100,1,20240501101530,", "txnAmt"),
        ("O1,Q1,01,1.00,1,20240501101530,", "txnAmt"),
        ("O1,Q1,01,100,x,20240501101530,", "fee"),
        ("O1,Q1,01,100,1,2024-05-01,", "txnTime"),
    ],
)
def test_bad_rows_are_refused_with_line_and_field(row: str, field: str) -> None:
    text = STATEMENT.read_text() + row + "\n"
    stream = io.BytesIO(text.encode())
    stream.name = "online.csv"
    with pytest.raises(ParseError) as caught:
        list(read_online_statement(stream, currency="CNY"))
    assert (caught.value.source, caught.value.line, caught.value.field) == ("online.csv", 8, field)


def test_zero_amount_row_is_refused() -> None:
    text = STATEMENT.read_text() + "O1,Q1,01,0,0,20240501101530,\n"
    with pytest.raises(ParseError, match="positive"):
        list(read_online_statement(io.BytesIO(text.encode()), currency="CNY"))


def test_empty_statement_is_refused() -> None:
    with pytest.raises(ParseError, match="no statement header"):
        list(read_online_statement(io.BytesIO(b""), currency="CNY"))


def test_a_stream_passed_in_stays_open() -> None:
    stream = io.BytesIO(STATEMENT.read_bytes())
    assert len(list(read_online_statement(stream, currency="CNY"))) == 6
    assert not stream.closed
