"""Kiosks: signed payments, every refusal with nothing posted, receipts, the daily close,
the operator's statement — and the story of a kiosk that pays off a disconnected account."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from paygate.channels.base import ChannelRegistry, NotifyResult
from paygate.channels.kiosk import (
    CloseOutcome,
    KioskAdapter,
    KioskConfig,
    KioskContext,
    KioskMethod,
    KioskReceipt,
    channel_txn_id,
    kiosk_receipt,
    method_of,
    parse_close_request,
    parse_pay_request,
    read_kiosk_statement,
    receipt_lines,
    split_channel_txn_id,
)
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore
from paygate.clock import FixedClock
from paygate.devices import DeviceRegistry, DeviceStatus
from paygate.errors import ConfigurationError, ParseError, UnknownAccountError
from paygate.gateway import Gateway
from paygate.models import AccountStatus, Category, StatementLineKind, SupplyState
from paygate.money import Money
from tests.channels.kiosk_support import (
    CLOSE_PATH,
    NOW,
    PAY_PATH,
    TERMINAL,
    FakeKioskLedger,
    StaticDevices,
    build_adapter,
    close_body,
    device,
    ed25519_key,
    pay_body,
    public_pem,
    signed_headers,
)
from tests.channels.support import RecordingSink
from tests.channels.test_contract import AUTH_CODES, PARSE_CODES

KEY = ed25519_key(TERMINAL)


NaN_MARKER = "nan-marker"


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"at": value}
    return value


def answer(result: NotifyResult) -> dict[str, Any]:
    assert result.content_type == "application/json"
    loaded: dict[str, Any] = json.loads(result.body)
    return loaded


def pay(adapter: KioskAdapter, sink: Any, body: bytes | None = None, **sign: Any) -> NotifyResult:
    body = pay_body() if body is None else body
    return adapter.handle_pay(body, signed_headers(KEY, TERMINAL, body, **sign), sink)


# ── transaction ids ───────────────────────────────────────────────────────────────────────


def test_the_method_travels_in_the_transaction_id() -> None:
    assert method_of("cash-000123") is KioskMethod.CASH
    assert method_of("card-A.7_x") is KioskMethod.CARD
    for not_one in ("000123", "cash-", "Cash-1", "cash_1", "cash-1\n", "card-" + "1" * 27):
        assert method_of(not_one) is None
    assert channel_txn_id("K0001", "cash-1") == "K0001:cash-1"
    assert split_channel_txn_id("K0001:cash-1") == ("K0001", "cash-1")
    assert split_channel_txn_id("K0001:000123") is None
    assert split_channel_txn_id("K0001") is None
    assert len(channel_txn_id("K" * 32, "card-" + "9" * 26)) == 64


# ── paying ────────────────────────────────────────────────────────────────────────────────


def test_a_signed_payment_is_posted_for_the_signing_terminal() -> None:
    sink = RecordingSink()
    result = pay(build_adapter(), sink)
    assert result.status_code == 200 and result.ok
    (intent,) = sink.pay_calls
    assert intent.channel == "kiosk"
    assert intent.channel_txn_id == "K0001:cash-000123"
    assert intent.terminal_id == "K0001"
    assert intent.account_no == "0101234567"
    assert intent.amount == Money(12050, "CNY")
    assert intent.paid_at == datetime(2026, 11, 25, 1, 58, tzinfo=UTC)
    body = answer(result)
    assert body["status"] == "ok"
    receipt = KioskReceipt.model_validate(body["receipt"])
    assert receipt.terminal_id == "K0001" and receipt.txn_id == "cash-000123"
    assert receipt.method is KioskMethod.CASH and receipt.amount == Money(12050, "CNY")
    assert not receipt.replayed
    assert result.receipt is not None and result.receipt.payment_id == receipt.payment_id


def test_a_retry_signed_afresh_replays_the_receipt() -> None:
    adapter, sink = build_adapter(), RecordingSink()
    first = answer(pay(adapter, sink))["receipt"]
    second = answer(pay(adapter, sink))["receipt"]
    assert second["replayed"] is True
    assert second["payment_id"] == first["payment_id"]
    assert len(sink.posted) == 1


def test_a_card_payment_and_an_offline_one_forwarded_later() -> None:
    adapter, sink = build_adapter(), RecordingSink()
    body = pay_body(txn_id="card-77", method="card", paid_at="2026-11-20T23:10:00+08:00")
    result = pay(adapter, sink, body)
    assert result.ok
    assert answer(result)["receipt"]["method"] == "card"


def refused(result: NotifyResult, sink: RecordingSink) -> tuple[int, str]:
    assert not result.ok and result.receipt is None
    assert sink.calls == 0
    body = answer(result)
    assert body["status"] == "refused" and body["code"] == result.error_code
    assert result.error_code is not None
    return result.status_code, result.error_code


def test_a_forged_signature_is_refused() -> None:
    sink = RecordingSink()
    body = pay_body()
    headers = signed_headers(ed25519_key("intruder"), TERMINAL, body)
    assert refused(build_adapter().handle_pay(body, headers, sink), sink) == (
        401,
        "invalid_signature",
    )


def test_a_replayed_request_is_refused_even_though_the_payment_would_replay() -> None:
    adapter, sink = build_adapter(), RecordingSink()
    body = pay_body()
    headers = signed_headers(KEY, TERMINAL, body)
    assert adapter.handle_pay(body, headers, sink).ok
    again = RecordingSink()
    assert refused(adapter.handle_pay(body, headers, again), again) == (401, "nonce_reused")


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (NOW - timedelta(minutes=5, seconds=1), "stale_timestamp"),
        (NOW + timedelta(minutes=5, seconds=1), "stale_timestamp"),
    ],
)
def test_expired_and_future_timestamps_are_refused(at: datetime, code: str) -> None:
    sink = RecordingSink()
    assert refused(pay(build_adapter(), sink, at=at), sink) == (401, code)


def test_revoking_a_kiosk_refuses_its_very_next_request() -> None:
    devices = StaticDevices(device())
    adapter = KioskAdapter(
        KioskConfig(),
        KioskContext(clock=FixedClock(NOW), devices=devices, ledger=FakeKioskLedger()),
    )
    assert pay(adapter, RecordingSink()).ok
    devices.devices[TERMINAL] = device(status=DeviceStatus.REVOKED)
    sink = RecordingSink()
    body = pay_body(txn_id="cash-000124")
    assert refused(pay(adapter, sink, body), sink) == (401, "device_revoked")


def test_an_unknown_kiosk_is_refused() -> None:
    sink = RecordingSink()
    body = pay_body()
    headers = signed_headers(ed25519_key("K0404"), "K0404", body)
    assert refused(build_adapter().handle_pay(body, headers, sink), sink) == (
        401,
        "unknown_device",
    )


def test_a_terminal_of_another_channel_is_refused() -> None:
    sink = RecordingSink()
    pos = device("P0001", channel="pos")
    adapter = build_adapter(device(), pos)
    body = pay_body()
    headers = signed_headers(ed25519_key("P0001"), "P0001", body)
    assert refused(adapter.handle_pay(body, headers, sink), sink) == (
        401,
        "device_channel_mismatch",
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Paygate-Device": TERMINAL},
        {
            "X-Paygate-Device": TERMINAL,
            "X-Paygate-Timestamp": "now",
            "X-Paygate-Nonce": "x",
            "X-Paygate-Signature": "x",
        },
    ],
)
def test_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    sink = RecordingSink()
    assert refused(build_adapter().handle_pay(pay_body(), headers, sink), sink) == (
        401,
        "malformed_request",
    )


def test_a_tampered_body_is_refused() -> None:
    sink = RecordingSink()
    body = pay_body()
    headers = signed_headers(KEY, TERMINAL, body)
    tampered = body.replace(b"0101234567", b"0101234568")
    assert refused(build_adapter().handle_pay(tampered, headers, sink), sink) == (
        401,
        "invalid_signature",
    )


def test_a_request_signed_for_another_path_is_refused() -> None:
    sink = RecordingSink()
    body = pay_body()
    headers = signed_headers(KEY, TERMINAL, body, path=CLOSE_PATH)
    assert refused(build_adapter().handle_pay(body, headers, sink), sink) == (
        401,
        "invalid_signature",
    )
    # And a close signed for the pay path does not close anything.
    ledger = FakeKioskLedger()
    close = close_body()
    result = build_adapter(ledger=ledger).handle_daily_close(
        close, signed_headers(KEY, TERMINAL, close, path=PAY_PATH), RecordingSink()
    )
    assert result.error_code == "invalid_signature" and ledger.closes == {}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"method": "card"}, (400, "parse_error")),
        ({"txn_id": "000123"}, (400, "parse_error")),
        ({"txn_id": "cash-" + "1" * 27}, (400, "parse_error")),
        ({"amount": 120.5}, (400, "parse_error")),
        ({"amount": "12050"}, (400, "parse_error")),
        ({"amount": 0}, (400, "parse_error")),
        ({"amount": -100}, (400, "parse_error")),
        ({"amount": 10**13}, (400, "parse_error")),
        ({"currency": "USD"}, (400, "currency_mismatch")),
        ({"currency": "cny"}, (400, "parse_error")),
        ({"method": "cheque"}, (400, "parse_error")),
        ({"paid_at": "2026-11-25 09:58:00"}, (400, "parse_error")),
        ({"paid_at": 1795572000}, (400, "parse_error")),
        ({"paid_at": "2026-11-25T10:06:00+08:00"}, (400, "invalid_input")),
        ({"account_no": "01 01"}, (400, "parse_error")),
        ({"account_no": None}, (400, "parse_error")),
        ({"terminal_id": "K0002"}, (400, "parse_error")),
    ],
)
def test_unusable_payments_are_refused(fields: dict[str, Any], expected: tuple[int, str]) -> None:
    sink = RecordingSink()
    assert refused(pay(build_adapter(), sink, pay_body(**fields)), sink) == expected


@pytest.mark.parametrize(
    "body",
    [
        # The same key twice: another reader of the body could take the other amount.
        b'{"txn_id":"cash-000123","account_no":"0101234567","amount":1,"amount":100000,'
        b'"currency":"CNY","method":"cash","paid_at":"2026-11-25T09:58:00+08:00"}',
        pay_body(paid_at=_nested(17)),
        b"[" * 100_000 + b"]" * 100_000,
        pay_body(amount=NaN_MARKER).replace(b'"nan-marker"', b"NaN"),
        pay_body(amount=1).replace(b'"amount": 1', b'"amount": 1' + b"0" * 5000),
    ],
    ids=["duplicate-key", "deep", "deeper", "NaN", "huge-number"],
)
def test_ambiguous_or_hostile_json_is_refused_by_name(body: bytes) -> None:
    sink = RecordingSink()
    result = pay(build_adapter(max_body_bytes=1_000_000), sink, body)
    assert refused(result, sink) == (400, "parse_error")


@pytest.mark.parametrize(
    "paid_at",
    [
        "0001-01-01T07:59:59+08:00",  # its UTC time does not exist
        "0001-01-01T08:00:00+08:00",  # would post into year 1
        "1999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59-08:00",
    ],
)
def test_a_paid_at_outside_any_real_payment_is_refused(paid_at: str) -> None:
    sink = RecordingSink()
    status, code = refused(pay(build_adapter(), sink, pay_body(paid_at=paid_at)), sink)
    assert status == 400 and code in {"invalid_input", "parse_error"}


def test_a_kiosk_payment_above_the_channels_largest_is_refused() -> None:
    sink = RecordingSink()
    result = pay(build_adapter(max_payment=10_000), sink, pay_body(amount=10_001))
    assert refused(result, sink) == (400, "invalid_amount")
    assert "largest single payment" in answer(result)["message"]
    assert pay(build_adapter(max_payment=12_050), RecordingSink()).ok


def test_refusals_name_the_field() -> None:
    sink = RecordingSink()
    result = pay(build_adapter(), sink, pay_body(method="card"))
    assert "method" in answer(result)["message"]


def test_a_core_refusal_is_passed_through() -> None:
    sink = RecordingSink(fail_with=UnknownAccountError("no account 0101234567", field="account_no"))
    result = pay(build_adapter(), sink)
    assert (result.status_code, result.error_code) == (404, "unknown_account")


# ── the receipt ───────────────────────────────────────────────────────────────────────────


def test_receipt_lines_carry_the_amounts_and_labels() -> None:
    sink = RecordingSink()
    result = pay(build_adapter(), sink)
    receipt = KioskReceipt.model_validate(answer(result)["receipt"])
    lines = receipt_lines(receipt)
    text = "\n".join(lines)
    assert "户号 Account: 0101234567" in text
    assert "缴费金额 Amount paid: 120.50 CNY" in text
    assert "终端 Terminal: K0001" in text
    assert "支付方式 Method: 现金 Cash" in text
    assert "缴费时间 Paid at: 2026-11-25 09:58:00" in text
    assert "账户余额 Account credit: 120.50 CNY" in text
    assert f"交易号 Payment id: {receipt.payment_id}" in text
    assert "DUPLICATE" not in text
    assert all("\n" not in line for line in lines)
    replay = receipt.model_copy(update={"replayed": True})
    assert "DUPLICATE" in "\n".join(receipt_lines(replay))


def test_receipt_lines_name_a_closed_accounts_supply_state() -> None:
    result = pay(build_adapter(), RecordingSink())
    receipt = KioskReceipt.model_validate(answer(result)["receipt"])
    nothing = Money(0, "CNY")
    status = AccountStatus(
        account_no=receipt.account_no, name=None, category=Category.RESIDENTIAL, prepaid=False,
        protected=False, currency="CNY", as_of=date(2026, 11, 25), balance=nothing,
        outstanding=nothing, arrears=nothing, late_fee=nothing, credit=nothing,
        supply_state=SupplyState.CLOSED, bills=(),
    )  # fmt: skip
    assert "供电状态 Supply: 已销户 Account closed" in "\n".join(receipt_lines(receipt, status))


def test_receipt_lines_of_a_core_receipt() -> None:
    sink = RecordingSink()
    pay(build_adapter(), sink)
    (receipt,) = sink.posted
    text = "\n".join(receipt_lines(receipt, timezone="UTC"))
    assert "缴费时间 Paid at: 2026-11-25 01:58:00" in text and "Terminal" not in text


def test_kiosk_receipt_refuses_a_foreign_transaction_id() -> None:
    sink = RecordingSink()
    pay(build_adapter(), sink)
    with pytest.raises(Exception, match="not a kiosk transaction id"):
        kiosk_receipt(sink.posted[0], TERMINAL, "000123")


# ── the daily close ───────────────────────────────────────────────────────────────────────


def close(adapter: KioskAdapter, body: bytes) -> NotifyResult:
    return adapter.handle_daily_close(
        body, signed_headers(KEY, TERMINAL, body, path=CLOSE_PATH), RecordingSink()
    )


DAY = date(2026, 11, 24)


@pytest.fixture
def ledger() -> FakeKioskLedger:
    ledger = FakeKioskLedger()
    ledger.set_totals(TERMINAL, DAY, cash=(3, 50000), card=(1, 12000))
    return ledger


@pytest.mark.parametrize(
    ("counted", "outcome", "difference"),
    [
        (50000, CloseOutcome.BALANCED, 0),
        (49900, CloseOutcome.SHORTAGE, -100),
        (50020, CloseOutcome.OVERAGE, 20),
    ],
)
def test_the_close_compares_counted_cash_with_the_ledger(
    ledger: FakeKioskLedger, counted: int, outcome: CloseOutcome, difference: int
) -> None:
    result = close(build_adapter(ledger=ledger), close_body(counted=counted))
    assert result.ok and result.status_code == 200 and result.receipt is None
    found = answer(result)["close"]
    assert found["outcome"] == outcome.value
    assert found["cash_difference"] == {"minor": difference, "currency": "CNY"}
    assert found["counted_cash"] == {"minor": counted, "currency": "CNY"}
    assert found["reported_matches_ledger"] is True
    assert found["replayed"] is False
    record = ledger.closes[(TERMINAL, DAY)]
    assert (record.counted_cash, record.reported_count, record.reported_total) == (
        counted,
        4,
        62000,
    )
    assert (record.ledger_count, record.ledger_total) == (4, 62000)


def test_a_kiosk_that_disagrees_with_the_ledger_is_told_so(ledger: FakeKioskLedger) -> None:
    body = close_body(cash=(4, 52000), counted=52000)
    found = answer(close(build_adapter(ledger=ledger), body))["close"]
    assert found["reported_matches_ledger"] is False
    assert found["outcome"] == "overage"
    assert found["ledger"]["cash"] == {"count": 3, "amount": {"minor": 50000, "currency": "CNY"}}


def test_closing_again_with_the_same_figures_replays(ledger: FakeKioskLedger) -> None:
    clock = FixedClock(NOW)
    adapter = build_adapter(clock=clock, ledger=ledger)
    first = answer(close(adapter, close_body()))["close"]
    clock.advance(timedelta(minutes=3))
    second = answer(close(adapter, close_body()))["close"]
    assert second["replayed"] is True
    assert second["closed_at"] == first["closed_at"]
    assert {k: v for k, v in second.items() if k != "replayed"} == {
        k: v for k, v in first.items() if k != "replayed"
    }


def test_closing_again_with_other_figures_is_a_conflict(ledger: FakeKioskLedger) -> None:
    adapter = build_adapter(ledger=ledger)
    assert close(adapter, close_body()).ok
    result = close(adapter, close_body(counted=49000))
    assert (result.status_code, result.error_code) == (409, "close_conflict")
    assert "500.00" in answer(result)["message"]
    assert ledger.closes[(TERMINAL, DAY)].counted_cash == 50000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (close_body(day="2026-11-26"), (400, "invalid_input")),
        (close_body(currency="USD"), (400, "currency_mismatch")),
        (close_body(count=5), (400, "parse_error")),
        (close_body(amount=1), (400, "parse_error")),
        (close_body(counted_cash=-1), (400, "parse_error")),
        (close_body(business_date="24/11/2026"), (400, "parse_error")),
        (close_body(by_method={"cash": {"count": 1, "amount": 1}}), (400, "parse_error")),
        (b"[]", (400, "parse_error")),
    ],
)
def test_unusable_closes_are_refused(
    ledger: FakeKioskLedger, body: bytes, expected: tuple[int, str]
) -> None:
    result = close(build_adapter(ledger=ledger), body)
    assert (result.status_code, result.error_code) == expected
    assert ledger.closes == {}


def test_today_may_be_closed_before_midnight(ledger: FakeKioskLedger) -> None:
    result = close(
        build_adapter(ledger=ledger),
        close_body(day="2026-11-25", cash=(0, 0), counted=0, card=(0, 0)),
    )
    assert result.ok


# ── the statement ─────────────────────────────────────────────────────────────────────────

STATEMENT = (
    "\ufeffterminal_id,txn_id,account_no,amount,method,paid_at\n"
    "K0001,cash-000123,0101234567,120.50,cash,2026-11-24 09:58:00\n"
    "\n"
    "K0002,card-000009,0101234568,80.00,card,2026-11-24  23:59:59\n"
).encode()


def test_the_operator_statement_is_read_line_by_line() -> None:
    lines = list(read_kiosk_statement(io.BytesIO(STATEMENT), currency="CNY"))
    assert [line.line_no for line in lines] == [2, 4]
    first, second = lines
    assert first.channel_txn_id == "K0001:cash-000123"
    assert first.account_no == "0101234567" and first.reference == "K0001"
    assert first.gross == Money(12050, "CNY") and first.fee == Money(0, "CNY")
    assert first.net == first.gross and first.kind is StatementLineKind.PAYMENT
    assert first.occurred_at == datetime(2026, 11, 24, 1, 58, tzinfo=UTC)
    assert second.occurred_at == datetime(2026, 11, 24, 15, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("K0001,cash-1,0101234567,120.50,card,2026-11-24 09:58:00", "method"),
        ("K0001,000123,0101234567,120.50,cash,2026-11-24 09:58:00", "txn_id"),
        ("K 1,cash-1,0101234567,120.50,cash,2026-11-24 09:58:00", "terminal_id"),
        ("K0001,cash-1,0101234567,120.505,cash,2026-11-24 09:58:00", "amount"),
        ("K0001,cash-1,0101234567,120.50,cash,2026-11-24T09:58:00", "paid_at"),
        ("K0001,cash-1,0101234567,120.50,cash", None),
    ],
)
def test_statement_errors_name_the_line_and_field(row: str, field: str | None) -> None:
    data = f"terminal_id,txn_id,account_no,amount,method,paid_at\n{row}\n".encode()
    stream = io.BytesIO(data)
    stream.name = "kiosk-20261124.csv"
    with pytest.raises(ParseError) as caught:
        list(read_kiosk_statement(stream, currency="CNY"))
    assert (caught.value.source, caught.value.line, caught.value.field) == (
        "kiosk-20261124.csv",
        2,
        field,
    )


def test_an_empty_statement_is_refused() -> None:
    with pytest.raises(ParseError, match="no statement header"):
        list(read_kiosk_statement(io.BytesIO(b""), currency="CNY"))


# ── configuration ─────────────────────────────────────────────────────────────────────────


def test_settlement_is_t_plus_one_without_fee_and_the_cutoff_configurable() -> None:
    rules = build_adapter().settlement
    assert (rules.cutoff, rules.lag_days, rules.fee.rate_ppm, rules.fee.fixed) == (
        time(0, 0),
        1,
        0,
        0,
    )
    late = build_adapter(settlement={"cutoff": "22:00"}).settlement
    assert late.business_date(datetime(2026, 11, 25, 14, 30, tzinfo=UTC)) == date(2026, 11, 26)


@pytest.mark.parametrize(
    "values",
    [
        {"pay_path": "kiosk/pay"},
        {"pay_path": "/v1/kiosk/pay?x=1"},
        {"daily_close_path": "/v1/%7eclose"},
        {"timestamp_window": "PT16M"},
        {"timestamp_window": "PT0S"},
    ],
)
def test_unusable_configuration_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KioskConfig.model_validate(values)


def test_the_adapter_needs_devices_and_a_ledger() -> None:
    with pytest.raises(ConfigurationError, match="KioskContext"):
        KioskAdapter(KioskConfig())
    with pytest.raises(ConfigurationError, match="ledger"):
        KioskAdapter(KioskConfig(), KioskContext(devices=StaticDevices()))


def test_the_registry_builds_the_kiosk_with_its_context() -> None:
    registry = ChannelRegistry.with_builtins()
    context = KioskContext(
        clock=FixedClock(NOW), devices=StaticDevices(device()), ledger=FakeKioskLedger()
    )
    adapter = registry.create("kiosk", {"timestamp_window": "PT2M"}, context)
    assert isinstance(adapter, KioskAdapter)
    assert adapter.config.timestamp_window == timedelta(minutes=2)
    assert "kiosk" in repr(adapter)


# ── properties ────────────────────────────────────────────────────────────────────────────

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_VALID_PAY: dict[str, Any] = json.loads(pay_body())
_pay_fields = {
    "txn_id": st.sampled_from(["cash-1", "card-2", "cash-", "x"]) | st.text(max_size=40),
    "account_no": st.sampled_from(["0101234567", ""]) | st.text(max_size=70),
    "amount": st.integers(-10, 10**14) | _json_values,
    "currency": st.sampled_from(["CNY", "USD", "cny"]) | st.text(max_size=4),
    "method": st.sampled_from(["cash", "card", "CASH"]) | _json_values,
    "paid_at": st.sampled_from(["2026-11-25T09:58:00+08:00", "2026-11-25T09:58:00"])
    | st.text(max_size=30),
    "extra": _json_values,
}


@st.composite
def _pay_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid payment with a few fields replaced or dropped (often none: then it pays)."""
    fields = dict(_VALID_PAY)
    for name in draw(st.lists(st.sampled_from(sorted(_pay_fields)), max_size=3, unique=True)):
        if draw(st.booleans()):
            fields[name] = draw(_pay_fields[name])
        else:
            fields.pop(name, None)
    return fields


_close_like = st.fixed_dictionaries(
    {},
    optional={
        "business_date": st.sampled_from(["2026-11-24", "2026-02-30"]) | st.text(max_size=12),
        "currency": st.just("CNY") | st.text(max_size=4),
        "counted_cash": st.integers(-5, 10**13) | _json_values,
        "count": st.integers(-1, 10) | _json_values,
        "amount": st.integers(-1, 10**6) | _json_values,
        "by_method": st.fixed_dictionaries(
            {
                "cash": st.fixed_dictionaries(
                    {"count": st.integers(0, 5), "amount": st.integers(0, 9)}
                ),
                "card": st.fixed_dictionaries(
                    {"count": st.integers(0, 5), "amount": st.integers(0, 9)}
                ),
            }
        )
        | _json_values,
    },
)
_bodies = (
    st.binary(max_size=300)
    | _pay_like().map(lambda d: json.dumps(d).encode())
    | _close_like.map(lambda d: json.dumps(d).encode())
    | _json_values.map(lambda v: json.dumps(v).encode())
)


@given(_bodies)
def test_the_body_parsers_raise_only_parse_errors(body: bytes) -> None:
    sources = []
    for parse in (parse_pay_request, parse_close_request):
        try:
            parse(body)
        except ParseError as exc:
            sources.append(exc.source)
    assert set(sources) <= {"kiosk"}


_ADAPTER = build_adapter()
# ... and an amount above the channel's largest single payment (invalid_amount), which a
# generated body reaches now and then.
_REFUSALS = (
    PARSE_CODES
    | AUTH_CODES
    | {
        "invalid_input",
        "invalid_amount",
        "currency_mismatch",
        "payload_too_large",
    }
)


@given(body=_pay_like().map(lambda d: json.dumps(d).encode()) | _bodies)
def test_a_signed_body_either_pays_exactly_what_it_says_or_is_refused(body: bytes) -> None:
    sink = RecordingSink()
    result = _ADAPTER.handle_pay(body, signed_headers(KEY, TERMINAL, body), sink)
    if result.ok:
        (intent,) = sink.pay_calls
        sent = json.loads(body)
        assert intent.amount == Money(sent["amount"], "CNY")
        assert intent.channel_txn_id == f"K0001:{sent['txn_id']}"
    else:
        assert result.error_code in _REFUSALS
        assert sink.calls == 0


@given(body=_bodies)
def test_a_signed_close_is_recorded_or_refused_cleanly(body: bytes) -> None:
    ledger = FakeKioskLedger()
    adapter = build_adapter(ledger=ledger)
    result = close(adapter, body)
    if result.ok:
        assert len(ledger.closes) == 1
    else:
        assert result.error_code in _REFUSALS
        assert ledger.closes == {}


# ── against the real Gateway ──────────────────────────────────────────────────────────────


class Hall:
    """A service hall's kiosk K0001, registered in the database, paying into the Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.clock = gateway.clock
        self.devices = DeviceRegistry(gateway.store, gateway.clock)
        self.devices.add(TERMINAL, "kiosk", public_key_pem=public_pem(KEY), label="Hall 1")
        self.ledger = SqlKioskLedger(gateway.store)
        self.adapter = self.new_adapter()

    def new_adapter(self) -> KioskAdapter:
        return KioskAdapter(
            KioskConfig(),
            KioskContext(
                clock=self.clock,
                nonces=SqlNonceStore(self.gateway.store),
                devices=self.devices,
                ledger=self.ledger,
            ),
        )

    def pay(self, body: bytes, *, adapter: KioskAdapter | None = None) -> NotifyResult:
        headers = signed_headers(KEY, TERMINAL, body, at=self.clock.now())
        return (adapter or self.adapter).handle_pay(body, headers, self.gateway)

    def close(self, body: bytes) -> NotifyResult:
        headers = signed_headers(KEY, TERMINAL, body, path=CLOSE_PATH, at=self.clock.now())
        return self.adapter.handle_daily_close(body, headers, self.gateway)

    def payments(self) -> int:
        count = self.gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM payments"), write=False
        )
        return int(count)


@pytest.fixture
def hall(gateway: Gateway) -> Hall:
    gateway.open_account("3100000001", category="residential", name="Zhang San")
    gateway.issue_bill(
        "3100000001",
        bill_no="B-2026-10",
        amount=Money(100000, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 15),
    )
    return Hall(gateway)


def test_a_kiosk_pays_off_a_disconnected_account_and_the_receipt_names_the_reconnection_order(
    hall: Hall,
) -> None:
    hall.gateway.disconnect("3100000001", "arrears")
    owed = hall.gateway.account_status("3100000001").arrears
    body = pay_body(account_no="3100000001", amount=owed.minor, paid_at=NOW.isoformat())
    result = hall.pay(body)
    assert result.ok, result.error
    receipt = KioskReceipt.model_validate(answer(result)["receipt"])
    assert receipt.arrears_cleared and receipt.arrears_after == Money(0, "CNY")
    assert receipt.reconnection_order_id is not None
    status = hall.gateway.account_status("3100000001")
    assert status.supply_state is SupplyState.RECONNECTION_PENDING
    lines = receipt_lines(receipt, status)
    text = "\n".join(lines)
    assert f"复电工单 Reconnection order: {receipt.reconnection_order_id}" in text
    assert f"缴费金额 Amount paid: {owed.format()} CNY" in text
    assert f"违约金 Late fee charged: {receipt.late_fee.format()} CNY" in text
    assert "B-2026-10" in text
    assert "复电处理中 Reconnection in progress" in text
    stored = hall.gateway.store.run(
        lambda tx: tx.one("SELECT terminal_id, channel_txn_id FROM payments"), write=False
    )
    assert stored == ("K0001", "K0001:cash-000123")


def test_no_refusal_posts_anything(hall: Hall) -> None:
    body = pay_body(account_no="3100000001")
    forged = signed_headers(ed25519_key("intruder"), TERMINAL, body)
    assert hall.adapter.handle_pay(body, forged, hall.gateway).error_code == "invalid_signature"
    stale = signed_headers(KEY, TERMINAL, body, at=NOW - timedelta(minutes=6))
    assert hall.adapter.handle_pay(body, stale, hall.gateway).error_code == "stale_timestamp"
    assert hall.pay(pay_body(account_no="0000000000")).error_code == "unknown_account"
    assert hall.payments() == 0


def test_revoked_in_the_database_the_next_request_is_refused(hall: Hall) -> None:
    assert hall.pay(pay_body(account_no="3100000001")).ok
    hall.devices.revoke(TERMINAL)
    result = hall.pay(pay_body(account_no="3100000001", txn_id="cash-000124"))
    assert result.error_code == "device_revoked"
    assert hall.payments() == 1


def test_a_replay_to_another_gateway_process_is_refused(hall: Hall) -> None:
    body = pay_body(account_no="3100000001")
    headers = signed_headers(KEY, TERMINAL, body)
    assert hall.adapter.handle_pay(body, headers, hall.gateway).ok
    other = hall.new_adapter()
    assert other.handle_pay(body, headers, hall.gateway).error_code == "nonce_reused"


def test_the_daily_close_against_the_ledger(hall: Hall) -> None:
    hall.gateway.open_account("3100000002")
    for txn, minor, account in (
        ("cash-1", 30000, "3100000001"),
        ("cash-2", 20000, "3100000002"),
        ("card-3", 12000, "3100000001"),
    ):
        assert hall.pay(
            pay_body(
                txn_id=txn,
                method=txn[:4],
                amount=minor,
                account_no=account,
                paid_at=NOW.isoformat(),
            )
        ).ok
    day = "2026-11-25"
    short = close_body(day=day, counted=49900, cash=(2, 50000), card=(1, 12000))
    found = answer(hall.close(short))["close"]
    assert found["outcome"] == "shortage"
    assert found["cash_difference"] == {"minor": -100, "currency": "CNY"}
    assert found["reported_matches_ledger"] is True
    assert answer(hall.close(short))["close"]["replayed"] is True
    conflict = hall.close(close_body(day=day, counted=50000, cash=(2, 50000), card=(1, 12000)))
    assert conflict.error_code == "close_conflict"
    record = hall.ledger.close_of(TERMINAL, date(2026, 11, 25))
    assert record is not None
    assert (record.counted_cash, record.ledger_count, record.ledger_total) == (49900, 3, 62000)
    over = close_body(day="2026-11-24", counted=500, cash=(0, 0), card=(0, 0))
    found = answer(hall.close(over))["close"]
    assert found["outcome"] == "overage" and found["ledger"]["cash"]["count"] == 0
