"""Alipay: real signed notifications, signed test messages, refusals, and the business bill.

The real notifications are from alipay/alipay-sdk-nodejs-all (MIT), test/alipay.test.ts and
test/fixtures/alipay-notify-sign-public-key-v2.pem, as assembled in
``../shared/data/alipay_notify_vectors.json`` (see ``../shared/data/SOURCES.md``).
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from paygate.channels.errors import SignatureError
from paygate.channels.mobile import (
    AlipayAdapter,
    AlipayConfig,
    alipay_signing_string,
    read_alipay_bill,
)
from paygate.errors import (
    IdempotencyConflictError,
    ParseError,
    StoreError,
    UnknownAccountError,
)
from paygate.models import StatementLineKind
from paygate.money import Money
from tests.channels import support
from tests.channels.support import RecordingSink

VECTORS = support.shared_vectors("alipay_notify_vectors.json")
BEIJING = ZoneInfo("Asia/Shanghai")
KEY = support.rsa_key("alipay")


def adapter(**config: object) -> AlipayAdapter:
    values: dict[str, object] = {"alipay_public_key": support.public_pem(KEY), **config}
    return AlipayAdapter(AlipayConfig.model_validate(values))


def vector_adapter(name: str, **config: object) -> AlipayAdapter:
    vector = VECTORS[name]
    return AlipayAdapter(
        AlipayConfig.model_validate(
            {"alipay_public_key": vector["alipay_public_key_pem"], **config}
        )
    )


def vector_body(name: str) -> bytes:
    return support.form_encode(VECTORS[name]["params"])


# ── the real vectors ──────────────────────────────────────────────────────────────────────


def test_real_trade_notification_verifies_with_sign_type_left_out() -> None:
    notification = vector_adapter("trade_status_sync", app_id="2019073166072302").verify_notify(
        vector_body("trade_status_sync"), {}
    )
    assert notification.trade_no == "2019081522001468450512505578"
    assert notification.trade_status == "TRADE_SUCCESS"
    assert notification.total_amount == "0.10"


def test_real_vectors_need_their_own_rule() -> None:
    """The trade vector fails with sign_type kept; the service-market one fails without it."""
    for name, other_rule_excludes in (
        ("trade_status_sync", {"sign"}),
        ("servicemarket_order_notify", {"sign", "sign_type"}),
    ):
        vector = VECTORS[name]
        params = vector["params"]
        key = serialization.load_pem_public_key(vector["alipay_public_key_pem"].encode())
        assert isinstance(key, RSAPublicKey)
        signature = base64.b64decode(params["sign"])
        ours = alipay_signing_string(params).encode()
        key.verify(signature, ours, padding.PKCS1v15(), hashes.SHA256())
        other = "&".join(
            f"{k}={v}" for k, v in sorted(params.items()) if k not in other_rule_excludes and v
        )
        with pytest.raises(InvalidSignature):
            key.verify(signature, other.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_real_trade_notification_without_account_is_acknowledged_and_held_not_paid() -> None:
    # A real notification carrying none of our passback_params: answering "fail" would
    # bring it back for 25 hours; it is acknowledged and its money held for suspense.
    sink = RecordingSink()
    result = vector_adapter("trade_status_sync").handle_notify(
        vector_body("trade_status_sync"), {}, sink
    )
    assert (result.status_code, result.body) == (200, b"success")
    assert result.error_code is None
    assert result.held is not None and result.held.startswith("missing_account")
    assert sink.calls == 0


def test_real_service_market_notification_verifies_and_is_acknowledged_without_posting() -> None:
    sink = RecordingSink()
    subject = vector_adapter("servicemarket_order_notify", app_id="2017122801303261")
    notification = subject.verify_notify(vector_body("servicemarket_order_notify"), {})
    assert notification.notify_type == "servicemarket_order_notify"
    result = subject.handle_notify(vector_body("servicemarket_order_notify"), {}, sink)
    assert (result.status_code, result.body, result.receipt) == (200, b"success", None)
    assert result.ok
    assert sink.calls == 0


def test_real_tampered_notification_is_refused() -> None:
    sink = RecordingSink()
    subject = vector_adapter("servicemarket_order_notify_tampered")
    with pytest.raises(SignatureError):
        subject.verify_notify(vector_body("servicemarket_order_notify_tampered"), {})
    result = subject.handle_notify(vector_body("servicemarket_order_notify_tampered"), {}, sink)
    assert (result.status_code, result.body, result.error_code) == (
        401,
        b"fail",
        "invalid_signature",
    )
    assert sink.calls == 0


def test_real_trade_vector_for_another_app_is_refused() -> None:
    sink = RecordingSink()
    result = vector_adapter("trade_status_sync", app_id="2021000000000001").handle_notify(
        vector_body("trade_status_sync"), {}, sink
    )
    assert result.error_code == "merchant_mismatch"
    assert sink.calls == 0


# ── signed test messages ──────────────────────────────────────────────────────────────────


def test_a_signed_trade_pays_and_answers_success() -> None:
    sink = RecordingSink()
    result = adapter().handle_notify(support.alipay_body(support.alipay_trade(), KEY), {}, sink)
    assert (result.status_code, result.body) == (200, b"success")
    assert result.content_type is not None
    assert result.content_type.startswith("text/plain")
    assert result.receipt is not None
    assert not result.receipt.replayed
    (intent,) = sink.pay_calls
    assert intent.channel == "alipay"
    assert intent.channel_txn_id == "2024050122001468451234567890"
    assert intent.account_no == "0101234567"
    assert intent.amount == Money(12050, "CNY")
    assert intent.paid_at == datetime(2024, 5, 1, 9, 12, 41, tzinfo=BEIJING)


def test_replayed_notification_answers_success_again_without_posting_twice() -> None:
    sink = RecordingSink()
    subject = adapter()
    body = support.alipay_body(support.alipay_trade(), KEY)
    first = subject.handle_notify(body, {}, sink)
    second = subject.handle_notify(body, {}, sink)
    assert first.body == second.body == b"success"
    assert second.receipt is not None
    assert second.receipt.replayed
    assert first.receipt is not None
    assert second.receipt.payment_id == first.receipt.payment_id
    assert len(sink.posted) == 1


def test_trade_finished_after_trade_success_replays() -> None:
    sink = RecordingSink()
    subject = adapter()
    subject.handle_notify(support.alipay_body(support.alipay_trade(), KEY), {}, sink)
    finished = support.alipay_trade(trade_status="TRADE_FINISHED")
    result = subject.handle_notify(support.alipay_body(finished, KEY), {}, sink)
    assert result.receipt is not None
    assert result.receipt.replayed
    assert len(sink.posted) == 1


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_unpaid_statuses_are_acknowledged_without_posting(status: str) -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(trade_status=status), KEY)
    result = adapter().handle_notify(body, {}, sink)
    assert (result.body, result.receipt, result.error_code) == (b"success", None, None)
    assert sink.calls == 0


def test_refund_notice_is_acknowledged_without_posting() -> None:
    sink = RecordingSink()
    refund = support.alipay_trade(
        refund_fee="20.00", gmt_refund="2024-05-01 15:40:02.123", out_biz_no="RF202405011540001"
    )
    result = adapter().handle_notify(support.alipay_body(refund, KEY), {}, sink)
    assert (result.body, result.receipt) == (b"success", None)
    assert sink.calls == 0


def test_passback_params_are_url_decoded_once_more() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(passback_params="HZ%2D0101234567"), KEY)
    adapter().handle_notify(body, {}, sink)
    assert sink.pay_calls[0].account_no == "HZ-0101234567"


def test_gbk_notification_pays() -> None:
    sink = RecordingSink()
    params = support.alipay_trade(charset="GBK", subject="国网电费 户号0101234567")
    result = adapter().handle_notify(support.alipay_body(params, KEY, charset="gbk"), {}, sink)
    assert result.body == b"success"
    assert len(sink.posted) == 1


def test_key_in_bare_base64_form_verifies() -> None:
    sink = RecordingSink()
    subject = adapter(alipay_public_key=support.public_base64(KEY))
    result = subject.handle_notify(support.alipay_body(support.alipay_trade(), KEY), {}, sink)
    assert result.body == b"success"


# ── refusals ──────────────────────────────────────────────────────────────────────────────


def refusal(body: bytes, sink: RecordingSink | None = None, **config: object) -> tuple[int, str]:
    sink = sink if sink is not None else RecordingSink()
    result = adapter(**config).handle_notify(body, {}, sink)
    assert result.body == b"fail"
    assert result.receipt is None
    assert result.error_code is not None
    return result.status_code, result.error_code


def test_wrong_key_is_refused() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(), support.rsa_key("intruder"))
    assert refusal(body, sink) == (401, "invalid_signature")
    assert sink.calls == 0


def test_field_changed_after_signing_is_refused() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(), KEY).replace(b"120.50", b"999.50")
    assert refusal(body, sink) == (401, "invalid_signature")
    assert sink.calls == 0


def test_signature_added_field_is_refused() -> None:
    body = support.alipay_body(support.alipay_trade(), KEY) + b"&passback_params2=x"
    assert refusal(body) == (401, "invalid_signature")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"sign_type": "RSA"}, "invalid_signature"),
        ({"sign": ""}, "invalid_signature"),
        ({"sign": "***not base64***"}, "invalid_signature"),
    ],
)
def test_unusable_signatures_are_refused(change: dict[str, str], code: str) -> None:
    fields = dict(support.alipay_trade())
    fields["sign_type"] = "RSA2"
    fields["sign"] = "c2lnbmF0dXJl"
    fields.update(change)
    assert refusal(support.form_encode(fields)) == (401, code)


def test_payment_without_account_is_acknowledged_and_held() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(passback_params=""), KEY)
    result = adapter().handle_notify(body, {}, sink)
    assert (result.status_code, result.body, result.receipt) == (200, b"success", None)
    assert result.held is not None and "passback_params" in result.held
    assert sink.calls == 0


def test_a_forged_payment_without_account_is_still_refused() -> None:
    # Holding is for verified messages only: an unsigned one is refused before.
    fields = dict(support.alipay_trade(passback_params=""))
    fields.update(sign_type="RSA2", sign="c2lnbmF0dXJl")
    assert refusal(support.form_encode(fields)) == (401, "invalid_signature")


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("120.505", "parse_error"),
        ("0.00", "invalid_amount"),
        ("", "parse_error"),
        # Read before as 12050.00, 120.00, 120.50 ... by a reader that took what Decimal took.
        ("120,50", "parse_error"),
        ("1,20", "parse_error"),
        ("1.205e2", "parse_error"),
        ("１２０.５０", "parse_error"),
        ("1_20.50", "parse_error"),
        ("+120.50", "parse_error"),
        (" 120.50", "parse_error"),
        ("-120.50", "invalid_amount"),
        # 2**63 fen: before, HTTP 500 from the database, and Alipay retried for 25 hours.
        ("92233720368547758.08", "parse_error"),
        # Within the ledger, above the largest single payment.
        ("92233720368547758.07", "invalid_amount"),
        ("100000000.01", "invalid_amount"),
    ],
)
def test_unusable_amounts_are_refused(amount: str, code: str) -> None:
    body = support.alipay_body(support.alipay_trade(total_amount=amount), KEY)
    sink = RecordingSink()
    assert refusal(body, sink) == (400, code)
    assert not sink.posted


@pytest.mark.parametrize(
    ("gmt_payment", "code"),
    [
        ("0001-01-01 07:59:59", "parse_error"),  # before: an overflow, HTTP 500
        ("1999-12-31 23:59:59", "parse_error"),
        ("2099-01-01 00:00:00", "invalid_input"),  # signed, but far ahead of our clock
    ],
)
def test_a_payment_time_no_payment_can_have_is_refused(gmt_payment: str, code: str) -> None:
    body = support.alipay_body(support.alipay_trade(gmt_payment=gmt_payment), KEY)
    sink = RecordingSink()
    result = adapter().handle_notify(body, {}, sink)
    assert (result.status_code, result.body, result.error_code) == (400, b"fail", code)
    assert "gmt_payment" in (result.error or "")
    assert not sink.posted


def test_the_largest_single_payment_is_the_channels_configuration() -> None:
    body = support.alipay_body(support.alipay_trade(total_amount="100000000.00"), KEY)
    assert adapter().handle_notify(body, {}, RecordingSink()).ok
    assert refusal(body, max_payment=9_999_999_999) == (400, "invalid_amount")


def test_over_long_trade_number_is_refused_by_name() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(trade_no="9" * 65), KEY)
    result = adapter().handle_notify(body, {}, sink)
    assert result.error_code == "parse_error"
    assert result.error is not None
    assert "trade_no" in result.error


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"notify_type=trade_status_sync&notify_type=trade_status_sync",
        b"a=%zz",
        b"charset=utf-8&subject=%FF%FE",
        b"charset=ebcdic&a=b",
        b"=value",
        b"&".join(b"f%d=v" % i for i in range(300)),
    ],
)
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    sink = RecordingSink()
    assert refusal(body, sink) == (400, "parse_error")
    assert sink.calls == 0


def test_oversized_body_is_refused() -> None:
    sink = RecordingSink()
    body = support.alipay_body(support.alipay_trade(subject="电" * 400), KEY)
    assert refusal(body, sink, max_body_bytes=1024) == (413, "payload_too_large")
    assert sink.calls == 0


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (IdempotencyConflictError("same trade, other amount"), 409),
        (StoreError("database unreachable"), 503),
    ],
)
def test_core_refusals_answer_fail_so_that_alipay_retries(error: Exception, status: int) -> None:
    sink = RecordingSink(fail_with=error)  # type: ignore[arg-type]
    result = adapter().handle_notify(support.alipay_body(support.alipay_trade(), KEY), {}, sink)
    assert (result.status_code, result.body) == (status, b"fail")
    assert len(sink.pay_calls) == 1
    assert not sink.posted


def test_a_verified_payment_for_an_unknown_account_is_acknowledged_and_held() -> None:
    # Alipay retries anything but "success" for about 25 hours; no retry can make the
    # account known, so the money is held for suspense instead.
    sink = RecordingSink(fail_with=UnknownAccountError("no account 0101234567"))  # type: ignore[arg-type]
    result = adapter().handle_notify(support.alipay_body(support.alipay_trade(), KEY), {}, sink)
    assert (result.status_code, result.body) == (200, b"success")
    assert result.ok and result.receipt is None
    assert result.held is not None and result.held.startswith("unknown_account")
    assert not sink.posted


# ── the business detail bill ──────────────────────────────────────────────────────────────

BILL = support.LOCAL_DATA / "alipay_bill_20240501.csv"


def test_bill_rows_become_statement_lines() -> None:
    lines = list(adapter().read_statement(BILL))
    assert [(line.line_no, line.kind) for line in lines] == [
        (6, StatementLineKind.PAYMENT),
        (7, StatementLineKind.PAYMENT),
        (8, StatementLineKind.PAYMENT),
        (9, StatementLineKind.REFUND),
    ]
    first, _, late, refund = lines
    assert first.channel_txn_id == "2024050122001468451234567890"
    assert first.reference == "20240501091230f0e1d2c3b4a59687"
    assert (first.gross, first.fee, first.net) == (
        Money(20000, "CNY"),
        Money(120, "CNY"),
        Money(19880, "CNY"),
    )
    assert first.occurred_at == datetime(2024, 5, 1, 9, 12, 41, tzinfo=BEIJING)
    assert late.occurred_at.tzinfo is not None
    assert late.occurred_at.hour == 23
    assert refund.channel_txn_id == "RF202405011540001"
    assert refund.original_txn_id == first.channel_txn_id
    assert (refund.gross, refund.fee, refund.net) == (
        Money(5000, "CNY"),
        Money(30, "CNY"),
        Money(4970, "CNY"),
    )


@pytest.mark.parametrize("form", [str, Path])
def test_bill_reads_from_a_path(form: type) -> None:
    assert len(list(read_alipay_bill(form(BILL), currency="CNY"))) == 4


def _bill_lines() -> list[str]:
    return BILL.read_bytes().decode("gbk").splitlines()


def _read(lines: list[str], *, name: str = "alipay_bill.csv") -> list[object]:
    stream = io.BytesIO("\r\n".join(lines).encode("gbk"))
    stream.name = name
    return list(read_alipay_bill(stream, currency="CNY"))


def test_truncated_bill_is_refused_at_its_end() -> None:
    lines = _bill_lines()[:7]
    with pytest.raises(ParseError, match="truncated") as caught:
        _read(lines)
    assert caught.value.line == 7


def test_footer_totals_are_checked() -> None:
    lines = _bill_lines()
    lines[10] = lines[10].replace("298.40", "298.41")
    with pytest.raises(ParseError, match="footer") as caught:
        _read(lines)
    assert caught.value.line == 11


def test_bad_row_is_refused_with_its_line_and_column() -> None:
    lines = _bill_lines()
    lines[6] = lines[6].replace("86.40,86.40", "86.40,86.4x")
    with pytest.raises(ParseError) as caught:
        _read(lines)
    assert (caught.value.source, caught.value.line, caught.value.field) == (
        "alipay_bill.csv",
        7,
        "商家实收（元）",
    )


def test_unknown_business_type_is_refused() -> None:
    lines = _bill_lines()
    lines[6] = lines[6].replace(",交易,", ",代扣,")
    with pytest.raises(ParseError, match="business type"):
        _read(lines)


def test_short_row_is_refused() -> None:
    lines = _bill_lines()
    lines[6] = lines[6].rsplit(",", 3)[0]
    with pytest.raises(ParseError, match="expected 25 fields") as caught:
        _read(lines)
    assert caught.value.line == 7


def test_utf8_bill_is_not_mistaken_for_gbk() -> None:
    stream = io.BytesIO(BILL.read_bytes().decode("gbk").encode("utf-8"))
    with pytest.raises(ParseError):
        list(read_alipay_bill(stream, currency="CNY"))
