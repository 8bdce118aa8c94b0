"""Bank agent collection: signed counter payments and reversals, daily batch files, statement.

Messages are signed here by an independent signer written from the rule in
docs/channels/bank_agent.md (sorted ``k=v&…`` of every field but ``sign``; SHA256withRSA or
HMAC-SHA256), with keys generated per run. Two batch file layouts, as two banks might agree
them, are below: a delimited GBK file in yuan with transaction times, and a fixed-width GBK
file in fen without.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.channels import bank_agent
from paygate.channels.bank_agent import (
    BANK_STATEMENT_COLUMNS,
    BankAgentAdapter,
    BankAgentConfig,
    DelimitedLayout,
    FixedWidthLayout,
    SignMethod,
    bank_signing_string,
    bank_txn_id,
    post_batch_file,
    read_bank_statement,
    verify_bank_notify,
)
from paygate.channels.base import ChannelRegistry, NotifyResult
from paygate.channels.signing import load_verifying_key
from paygate.clock import FixedClock
from paygate.errors import (
    AuthenticationError,
    ConfigurationError,
    ParseError,
    PaygateError,
    UnknownAccountError,
    UnsupportedOperationError,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, PayOutcome, Receipt, StatementLineKind
from paygate.money import Money
from tests.channels import support
from tests.channels.strategies import bodies, mutated
from tests.channels.support import RecordingSink

BEIJING = ZoneInfo("Asia/Shanghai")
MERCHANT = "DL0451000123"
BANK = "CCB"
ACCOUNT = "0101234567"
SHARED_KEY = secrets.token_urlsafe(32)
RSA_KEY = support.rsa_key("bank_agent")
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ── a sink that also takes batches ───────────────────────────────────────────────────────


class BankSink(RecordingSink):
    """A RecordingSink with ``pay_many``, refusing the accounts in ``unknown`` as the core would."""

    def __init__(self, *, unknown: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unknown = frozenset(unknown)
        self.pay_many_calls: list[int] = []

    def pay(self, intent: PaymentIntent) -> Receipt:
        if intent.account_no in self.unknown:
            self.pay_calls.append(intent)
            raise UnknownAccountError(f"no account {intent.account_no}", field="account_no")
        return super().pay(intent)

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        items = list(intents)
        self.pay_many_calls.append(len(items))
        outcomes = []
        for index, intent in enumerate(items):
            try:
                receipt = self.pay(intent)
            except PaygateError as exc:
                outcomes.append(
                    PayOutcome(index=index, status="refused", error_code=exc.code, error=str(exc))
                )
                continue
            status = "replayed" if receipt.replayed else "posted"
            outcomes.append(PayOutcome(index=index, status=status, receipt=receipt))
        return outcomes


# ── two layouts, as two banks agreed them ────────────────────────────────────────────────

DELIMITED: dict[str, Any] = {
    "kind": "delimited",
    "encoding": "gbk",
    "amount_unit": "yuan",
    "delimiter": "|",
    "header": {"batch_no": 2, "batch_date": 3, "count": 4, "total": 5},
    "detail": {
        "account_no": 2,
        "amount": 3,
        "serial_no": 4,
        "result_code": 5,
        "result_msg": 6,
        "txn_time": 7,
    },
    "trailer": {"count": 2, "total": 3},
}
"""Bank one: ``|``-delimited, GBK, yuan, tagged H/D/T, with the time of each debit."""

DELIMITED_LINES = [
    "H|CCB20240501|20240501|4|481.00",
    "D|0101234567|120.50|5001202405010001|0000|交易成功|20240501083000",
    "D|0101234568|200.00|5001202405010002|0000|交易成功|20240501083100",
    "D|0101234569|80.50|5001202405010003|3001|余额不足|20240501083200",
    "D|0101234570|80.00|5001202405010004|0000|交易成功|20240501083300",
    "T|4|481.00",
]


def gbk(lines: list[str], newline: str = "\n") -> bytes:
    return "".join(line + newline for line in lines).encode("gbk")


DELIMITED_FILE = gbk(DELIMITED_LINES)

FIXED: dict[str, Any] = {
    "kind": "fixed",
    "encoding": "gbk",
    "amount_unit": "fen",
    "header_tag": "0",
    "detail_tag": "1",
    "trailer_tag": "9",
    "success_codes": ["00"],
    "record_type": [1, 1],
    "header": {
        "batch_no": [2, 14],
        "batch_date": [16, 8],
        "count": [24, 8],
        "total": [32, 16],
        "success_count": [48, 8],
        "success_total": [56, 16],
    },
    "detail": {
        "account_no": [2, 16],
        "serial_no": [18, 20],
        "amount": [38, 12],
        "result_code": [50, 2],
        "result_msg": [52, 20],
    },
    "trailer": {"count": [2, 8], "total": [10, 16]},
}
"""Bank two: fixed byte positions, GBK, fen, tagged 0/1/9, no time (the batch date counts)."""


def text(value: str, width: int) -> bytes:
    raw = value.encode("gbk")
    assert len(raw) <= width
    return raw.ljust(width, b" ")


def number(value: int | str, width: int) -> bytes:
    return str(value).encode("ascii").rjust(width, b"0")


def fixed_header(count: int = 4, total: int = 48100, ok: int = 3, ok_total: int = 40050) -> bytes:
    return (
        b"0"
        + text("CCB20240501B", 14)
        + text("20240501", 8)
        + number(count, 8)
        + number(total, 16)
        + number(ok, 8)
        + number(ok_total, 16)
    )


def fixed_detail(account: str, serial: str, fen: int | str, code: str, message: str) -> bytes:
    return (
        b"1"
        + text(account, 16)
        + text(serial, 20)
        + number(fen, 12)
        + text(code, 2)
        + text(message, 20)
    )


FIXED_LINES = [
    fixed_header(),
    fixed_detail("0101234567", "6001202405010001", 12050, "00", "成功"),
    fixed_detail("0101234568", "6001202405010002", 20000, "00", "成功"),
    fixed_detail("0101234569", "6001202405010003", 8050, "51", "余额不足"),
    fixed_detail("0101234570", "6001202405010004", 8000, "00", "成功"),
    b"9" + number(4, 8) + number(48100, 16),
]
FIXED_FILE = b"".join(line + b"\r\n" for line in FIXED_LINES)


# ── an independent signer and the adapter ────────────────────────────────────────────────


def hmac_signed(values: dict[str, str], key: str = SHARED_KEY, charset: str = "utf-8") -> bytes:
    values = {"sign_type": "HMAC-SHA256", **values}
    signed_text = "&".join(f"{k}={v}" for k, v in sorted(values.items()) if k != "sign")
    sign = hmac.new(key.encode(), signed_text.encode(charset), hashlib.sha256).hexdigest()
    return support.form_encode({**values, "sign": sign}, charset)


def rsa_signed(values: dict[str, str], key: Any = RSA_KEY) -> bytes:
    values = {"sign_type": "RSA2", **values}
    signed_text = "&".join(f"{k}={v}" for k, v in sorted(values.items()) if k != "sign")
    return support.form_encode({**values, "sign": support.rsa2_sign(key, signed_text.encode())})


def pay(serial: str = "5001202405010101", **extra: str) -> dict[str, str]:
    values = {
        "msg_type": "pay",
        "merchant_id": MERCHANT,
        "serial_no": serial,
        "account_no": ACCOUNT,
        "amount": "12050",
        "txn_time": "20240501101500",
        "teller": "0451A07",
    }
    values.update(extra)
    return values


def reversal(serial: str, orig: str, **extra: str) -> dict[str, str]:
    values = {
        "msg_type": "reversal",
        "merchant_id": MERCHANT,
        "serial_no": serial,
        "orig_serial_no": orig,
        "amount": "12050",
        "txn_time": "20240501101530",
    }
    values.update(extra)
    return values


def bank_adapter(method: str = "hmac", **config: Any) -> BankAgentAdapter:
    """The adapter the contract suite and the tests below use (bank one's layout)."""
    values: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "bank_code": BANK,
        "sign_method": method,
        "batch_layout": DELIMITED,
    }
    if method == "hmac":
        values["shared_key"] = SHARED_KEY
    else:
        values["bank_public_keys"] = (support.public_pem(RSA_KEY),)
    values.update(config)
    return BankAgentAdapter(BankAgentConfig.model_validate(values))


def answer(result: NotifyResult) -> dict[str, str]:
    return dict(parse_qsl(result.body.decode("ascii"), keep_blank_values=True))


def refused_with(result: NotifyResult, code: str, status: int) -> None:
    assert not result.ok
    assert (result.error_code, result.status_code) == (code, status)
    assert answer(result) == {"result": "refused", "error_code": code}


# ── counter payments ──────────────────────────────────────────────────────────────────────


def test_a_counter_payment_posts_under_the_banks_serial() -> None:
    sink = RecordingSink()
    result = bank_adapter().handle_notify(hmac_signed(pay()), {}, sink)
    assert result.ok
    (intent,) = sink.pay_calls
    assert intent.channel == "bank_agent"
    assert intent.channel_txn_id == "CCB:5001202405010101" == bank_txn_id(BANK, "5001202405010101")
    assert (intent.account_no, intent.amount) == (ACCOUNT, Money(12050, "CNY"))
    assert intent.paid_at == datetime(2024, 5, 1, 10, 15, tzinfo=BEIJING)
    assert intent.terminal_id is None
    assert result.receipt is not None
    assert answer(result) == {
        "result": "paid",
        "serial_no": "5001202405010101",
        "payment_id": str(result.receipt.payment_id),
        "account_no": ACCOUNT,
        "amount": "12050",
    }


def test_an_rsa_signed_payment_posts() -> None:
    sink = RecordingSink()
    assert bank_adapter("rsa").handle_notify(rsa_signed(pay()), {}, sink).ok
    assert len(sink.posted) == 1


def test_a_gbk_message_is_verified_over_its_gbk_bytes() -> None:
    sink = RecordingSink()
    body = hmac_signed(pay(charset="GBK", teller="张三"), charset="gbk")
    assert bank_adapter().handle_notify(body, {}, sink).ok


def test_a_replayed_payment_gets_the_original_acknowledgement() -> None:
    adapter, sink = bank_adapter(), RecordingSink()
    body = hmac_signed(pay())
    first = adapter.handle_notify(body, {}, sink)
    again = adapter.handle_notify(body, {}, sink)
    assert first.ok
    assert again.ok
    assert again.body == first.body
    assert again.receipt is not None
    assert again.receipt.replayed
    assert len(sink.posted) == 1


def test_a_reversal_reverses_the_payment_and_a_repeat_gets_the_same_answer() -> None:
    adapter, sink = bank_adapter(), RecordingSink()
    assert adapter.handle_notify(hmac_signed(pay()), {}, sink).ok
    body = hmac_signed(reversal("5001202405010102", "5001202405010101"))
    first = adapter.handle_reversal(body, {}, sink)
    assert first.ok
    assert answer(first) == {
        "result": "reversed",
        "serial_no": "5001202405010102",
        "orig_serial_no": "5001202405010101",
    }
    again = adapter.handle_notify(body, {}, sink)
    assert again.body == first.body
    assert [r[:2] for r in sink.reversals] == [("bank_agent", "CCB:5001202405010101")] * 2


def test_a_reversal_of_an_unknown_serial_is_acknowledged_as_not_found() -> None:
    sink = RecordingSink()
    result = bank_adapter().handle_reversal(
        hmac_signed(reversal("5001202405010102", "5001202405019999")), {}, sink
    )
    assert result.ok
    assert result.status_code == 200
    assert answer(result)["result"] == "original_not_found"
    assert sink.posted == []


def test_handle_reversal_takes_only_reversals() -> None:
    sink = RecordingSink()
    refused_with(bank_adapter().handle_reversal(hmac_signed(pay()), {}, sink), "parse_error", 400)
    assert sink.calls == 0


def test_a_reversal_without_the_original_serial_is_refused() -> None:
    sink = RecordingSink()
    values = reversal("5001202405010102", "")
    refused_with(bank_adapter().handle_notify(hmac_signed(values), {}, sink), "parse_error", 400)
    assert sink.calls == 0


# ── refusals: nothing is paid ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("hmac", hmac_signed(pay(), key=secrets.token_urlsafe(32))),
        ("hmac", hmac_signed(pay()).replace(b"amount=12050", b"amount=92050")),
        ("hmac", support.form_encode({"sign_type": "HMAC-SHA256", **pay()})),
        ("rsa", rsa_signed(pay(), support.rsa_key("intruder"))),
        ("rsa", rsa_signed(pay()).replace(b"account_no=0101234567", b"account_no=0101234568")),
        # A message cannot move an RSA bank to HMAC, nor the reverse, by naming the other.
        ("rsa", hmac_signed(pay())),
        ("hmac", rsa_signed(pay())),
    ],
)
def test_bad_signatures_are_refused(method: str, body: bytes) -> None:
    sink = RecordingSink()
    refused_with(bank_adapter(method).handle_notify(body, {}, sink), "invalid_signature", 401)
    assert sink.calls == 0


def test_a_message_for_another_agreement_is_refused() -> None:
    sink = RecordingSink()
    body = hmac_signed(pay(merchant_id="DL0451000999"))
    refused_with(bank_adapter().handle_notify(body, {}, sink), "merchant_mismatch", 401)
    assert sink.calls == 0


@pytest.mark.parametrize(
    ("amount", "code"), [("0", "invalid_amount"), ("120.50", "parse_error"), ("", "parse_error")]
)
def test_a_wrong_amount_is_refused(amount: str, code: str) -> None:
    sink = RecordingSink()
    refused_with(bank_adapter().handle_notify(hmac_signed(pay(amount=amount)), {}, sink), code, 400)
    assert sink.calls == 0


def test_a_counter_payment_naming_an_impossible_account_is_acknowledged_and_held() -> None:
    sink = RecordingSink()
    result = bank_adapter().handle_notify(hmac_signed(pay(account_no="0101 234567")), {}, sink)
    assert (result.ok, result.status_code) == (True, 200)
    assert answer(result)["result"] == "held"
    assert result.held is not None and result.held.startswith("missing_account")
    assert sink.calls == 0


def test_a_counter_payment_naming_no_account_is_acknowledged_and_held() -> None:
    sink = RecordingSink()
    message = {k: v for k, v in pay().items() if k != "account_no"}
    result = bank_adapter().handle_notify(hmac_signed(message), {}, sink)
    assert (result.ok, result.status_code, answer(result)["result"]) == (True, 200, "held")
    assert result.held is not None and result.held.startswith("missing_account")
    assert sink.calls == 0


def test_a_counter_payment_for_an_unknown_account_is_acknowledged_and_held() -> None:
    # The counter took the money; a refusal would only bring the message back for hours.
    sink = RecordingSink(fail_with=UnknownAccountError("no account 0101234567"))
    result = bank_adapter().handle_notify(hmac_signed(pay()), {}, sink)
    assert (result.ok, result.status_code, result.receipt) == (True, 200, None)
    assert answer(result) == {
        "result": "held",
        "serial_no": pay()["serial_no"],
        "account_no": pay()["account_no"],
        "error_code": "unknown_account",
    }
    assert result.held is not None and result.held.startswith("unknown_account")
    assert sink.posted == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"msg_type=pay&sign",
        b"msg_type=pay&amount=%ZZ",
        hmac_signed(pay(txn_time="2024-05-01 10:15")),
        hmac_signed(pay(msg_type="refund")),
        hmac_signed({k: v for k, v in pay().items() if k != "serial_no"}),
    ],
)
def test_malformed_messages_are_parse_errors(body: bytes) -> None:
    sink = RecordingSink()
    refused_with(bank_adapter().handle_notify(body, {}, sink), "parse_error", 400)
    assert sink.calls == 0


def test_an_oversized_message_is_refused_unread() -> None:
    sink = RecordingSink()
    body = hmac_signed(pay(teller="x" * 5000))
    refused_with(
        bank_adapter(max_body_bytes=4096).handle_notify(body, {}, sink), "payload_too_large", 413
    )
    assert sink.calls == 0


def test_unoffered_operations_are_refused() -> None:
    with pytest.raises(UnsupportedOperationError, match="'bank_agent'"):
        bank_adapter().handle_pay(hmac_signed(pay()), {}, RecordingSink())


# ── configuration ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "changes",
    [
        {"sign_method": "rsa"},  # an RSA bank without keys
        {"shared_key": "too short"},
        {"bank_public_keys": ("not a key",)},
        {"bank_code": "C:B"},
        {"sign_method": "md5"},
        {"notify_charset": "latin-1"},
        {"batch_layout": {**DELIMITED, "detail": {"account_no": 2, "amount": 3}}},
        {"batch_layout": {**DELIMITED, "detail": {**DELIMITED["detail"], "colour": 9}}},
        {"batch_layout": {**DELIMITED, "header": {**DELIMITED["header"], "count": 2}}},
        {"batch_layout": {**DELIMITED, "encoding": "utf-16"}},
        {"batch_layout": {**DELIMITED, "encoding": "no-such-codec"}},
        {"batch_layout": {**DELIMITED, "delimiter": "1"}},
        {"batch_layout": {**DELIMITED, "trailer_tag": "D"}},
        {"batch_layout": {**FIXED, "detail": {**FIXED["detail"], "amount": [30, 12]}}},
        {"batch_layout": {**FIXED, "trailer": {"count": [0, 8]}}},
        {"batch_layout": {**DELIMITED, "kind": "xml"}},
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, Any]) -> None:
    values: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "bank_code": BANK,
        "sign_method": "hmac",
        "shared_key": SHARED_KEY,
        "batch_layout": DELIMITED,
        **changes,
    }
    with pytest.raises(ConfigurationError) as caught:
        ChannelRegistry.with_builtins().create("bank_agent", values)
    assert SHARED_KEY not in str(caught.value)


def hmac_signed_with(values: dict[str, str], key: bytes) -> bytes:
    values = {"sign_type": "HMAC-SHA256", **values}
    signed_text = "&".join(f"{k}={v}" for k, v in sorted(values.items()) if k != "sign")
    sign = hmac.new(key, signed_text.encode(), hashlib.sha256).hexdigest()
    return support.form_encode({**values, "sign": sign})


RAW_KEY = bytes(range(7, 39))  # 32 bytes, most of them not printable


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("hex", RAW_KEY.hex()),
        ("hex", RAW_KEY.hex().upper()),
        ("base64", base64.b64encode(RAW_KEY).decode()),
    ],
)
def test_a_shared_key_given_in_hex_or_base64_is_decoded_as_configured(
    encoding: str, text: str
) -> None:
    sink = RecordingSink()
    subject = bank_adapter(shared_key=text, shared_key_encoding=encoding)
    assert subject.handle_notify(hmac_signed_with(pay(), RAW_KEY), {}, sink).ok
    assert len(sink.posted) == 1


def test_the_default_reading_of_a_shared_key_is_its_utf8_bytes() -> None:
    # Hex digits read as UTF-8 are another key: the encoding must be said, not guessed.
    text = RAW_KEY.hex()
    sink = RecordingSink()
    subject = bank_adapter(shared_key=text)
    refused_with(
        subject.handle_notify(hmac_signed_with(pay(), RAW_KEY), {}, sink), "invalid_signature", 401
    )
    assert subject.handle_notify(hmac_signed_with(pay(), text.encode()), {}, sink).ok


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("hex", "zz" * 32),
        ("hex", RAW_KEY.hex()[:-1]),
        ("base64", "not base64!"),
        ("rot13", "x" * 40),
    ],
)
def test_a_shared_key_that_does_not_decode_is_refused_without_showing_it(
    encoding: str, text: str
) -> None:
    values = {
        "merchant_id": MERCHANT,
        "bank_code": BANK,
        "sign_method": "hmac",
        "shared_key": text,
        "shared_key_encoding": encoding,
    }
    with pytest.raises(ConfigurationError) as caught:
        ChannelRegistry.with_builtins().create("bank_agent", values)
    assert text not in str(caught.value)


def test_the_shared_key_never_shows() -> None:
    adapter = bank_adapter()
    shown = repr(adapter) + repr(adapter.config) + adapter.config.model_dump_json()
    assert SHARED_KEY not in shown


def test_signing_string_keeps_sign_type_and_empty_fields() -> None:
    params = {"b": "2", "sign": "x", "sign_type": "RSA2", "a": "", "c": "张"}
    assert bank_signing_string(params) == "a=&b=2&c=张&sign_type=RSA2"


# ── batch files ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("layout", "data", "times"),
    [
        (
            DELIMITED,
            DELIMITED_FILE,
            [datetime(2024, 5, 1, 8, minute, tzinfo=BEIJING) for minute in (30, 31, 33)],
        ),
        (FIXED, FIXED_FILE, [datetime(2024, 5, 1, tzinfo=BEIJING)] * 3),
    ],
)
def test_a_good_file_posts_its_paid_details_and_lists_the_failed_debits(
    layout: dict[str, Any], data: bytes, times: list[datetime]
) -> None:
    adapter = bank_adapter(batch_layout=layout)
    sink = BankSink()
    stream = io.BytesIO(data)
    stream.name = "ccb_20240501.txt"
    result = post_batch_file(adapter, stream, sink)
    assert (result.posted, result.replayed, result.refused) == (3, 0, ())
    assert not result.already_posted
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    summary = result.file
    assert summary.source == "ccb_20240501.txt"
    assert summary.batch_date == date(2024, 5, 1)
    assert (summary.count, summary.total) == (4, Money(48100, "CNY"))
    assert (summary.success_count, summary.success_total) == (3, Money(40050, "CNY"))
    assert (summary.failed_count, summary.lines, summary.size) == (1, 6, len(data))
    (failed,) = result.failed_debits
    assert failed.line_no == 4
    assert failed.account_no == "0101234569"
    assert failed.amount == Money(8050, "CNY")
    assert failed.result_msg == "余额不足"
    assert [i.account_no for i in sink.pay_calls] == ["0101234567", "0101234568", "0101234570"]
    assert [i.channel_txn_id[:4] for i in sink.pay_calls] == ["CCB:"] * 3
    assert [i.paid_at for i in sink.pay_calls] == times
    assert not stream.closed


def test_a_resent_file_posts_nothing_twice_and_says_so() -> None:
    adapter, sink = bank_adapter(), BankSink()
    first = post_batch_file(adapter, io.BytesIO(DELIMITED_FILE), sink)
    again = post_batch_file(adapter, io.BytesIO(DELIMITED_FILE), sink)
    assert (again.posted, again.replayed) == (0, 3)
    assert again.already_posted
    assert again.sha256 == first.sha256
    assert len(sink.posted) == 3


def test_a_file_posts_in_chunks() -> None:
    sink = BankSink()
    result = post_batch_file(bank_adapter(), io.BytesIO(DELIMITED_FILE), sink, chunk_size=2)
    assert sink.pay_many_calls == [2, 1]
    assert result.posted == 3


def test_payments_the_core_refuses_are_listed_with_their_line() -> None:
    sink = BankSink(unknown={"0101234568"})
    result = post_batch_file(bank_adapter(), io.BytesIO(DELIMITED_FILE), sink)
    assert result.posted == 2
    (refused,) = result.refused
    assert (refused.line_no, refused.serial_no, refused.error_code) == (
        3,
        "5001202405010002",
        "unknown_account",
    )
    assert not result.already_posted


def test_read_batch_file_yields_only_after_the_whole_file_verified() -> None:
    adapter = bank_adapter()
    intents = list(adapter.read_batch_file(io.BytesIO(DELIMITED_FILE)))
    assert [i.channel_txn_id for i in intents] == [
        "CCB:5001202405010001",
        "CCB:5001202405010002",
        "CCB:5001202405010004",
    ]
    broken = gbk([*DELIMITED_LINES[:-1], "T|4|481.01"])
    yielded: list[PaymentIntent] = []
    with pytest.raises(ParseError) as caught:
        yielded.extend(adapter.read_batch_file(io.BytesIO(broken)))
    assert yielded == []
    assert caught.value.line == 6


def test_a_path_a_one_way_stream_and_a_copy_on_disk_all_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ccb_20240501.txt"
    path.write_bytes(DELIMITED_FILE)
    assert post_batch_file(bank_adapter(), str(path), BankSink()).posted == 3

    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    one_way = io.BufferedReader(OneWay(DELIMITED_FILE))
    assert not one_way.seekable()
    # A copy larger than the spool limit goes to a private temporary file.
    monkeypatch.setattr(bank_agent.adapter, "_SPOOL_BYTES", 64)
    result = post_batch_file(bank_adapter(), one_way, BankSink())
    assert (result.posted, result.sha256) == (3, hashlib.sha256(DELIMITED_FILE).hexdigest())


def test_blank_lines_crlf_and_a_utf8_bom_are_accepted() -> None:
    layout = {**DELIMITED, "encoding": "utf-8"}
    data = b"\xef\xbb\xbf" + "\r\n".join([*DELIMITED_LINES[:3], "", *DELIMITED_LINES[3:]]).encode()
    result = post_batch_file(bank_adapter(batch_layout=layout), io.BytesIO(data), BankSink())
    assert result.posted == 3
    assert result.failed_debits[0].line_no == 5


def test_figures_padded_beyond_any_width_still_read() -> None:
    layout = {**DELIMITED, "max_line_bytes": 65536}
    padded = "0" * 5000
    data = gbk(
        [
            f"H|CCB20240501|20240501|{padded}4|{padded}481.00",
            *DELIMITED_LINES[1:-1],
            f"T|{padded}4|481.00",
        ]
    )
    result = post_batch_file(bank_adapter(batch_layout=layout), io.BytesIO(data), BankSink())
    assert result.posted == 3


def test_a_batch_detail_above_the_largest_single_payment_is_refused_on_its_line() -> None:
    adapter = bank_adapter(max_payment=15_000)  # 150.00 yuan; line 3 collects 200.00
    with pytest.raises(ParseError) as caught:
        adapter.verify_batch_file(io.BytesIO(DELIMITED_FILE))
    assert (caught.value.line, caught.value.field) == (3, "amount")
    assert "largest single payment" in caught.value.message


@pytest.mark.parametrize("amount", ["1,20", "1.205e2", "+120.50", "１２０.５０"])
def test_a_batch_amount_in_any_but_the_plain_form_is_refused_on_its_line(amount: str) -> None:
    data = _replace(1, _detail(amount=amount))()
    with pytest.raises(ParseError) as caught:
        bank_adapter().verify_batch_file(io.BytesIO(data))
    assert caught.value.line == 2


def test_a_bank_without_a_layout_has_no_batch_files() -> None:
    adapter = bank_adapter(batch_layout=None)
    with pytest.raises(ConfigurationError, match="batch_layout"):
        adapter.verify_batch_file(io.BytesIO(DELIMITED_FILE))


def _replace(index: int, line: str) -> Callable[[], bytes]:
    return lambda: gbk([*DELIMITED_LINES[:index], line, *DELIMITED_LINES[index + 1 :]])


def _detail(**changes: str) -> str:
    names = ("tag", "account_no", "amount", "serial_no", "result_code", "result_msg", "txn_time")
    values = dict(zip(names, DELIMITED_LINES[1].split("|"), strict=True))
    values.update(changes)
    return "|".join(values.values())


BAD_DELIMITED: dict[str, tuple[Callable[[], bytes], int, str | None]] = {
    "header count": (_replace(0, "H|CCB20240501|20240501|5|481.00"), 1, "count"),
    "header total": (_replace(0, "H|CCB20240501|20240501|4|481.01"), 1, "total"),
    "header count not a number": (_replace(0, "H|CCB20240501|20240501|four|481.00"), 1, "count"),
    "trailer count": (_replace(5, "T|3|481.00"), 6, "count"),
    "trailer total": (_replace(5, "T|4|400.00"), 6, "total"),
    "bad amount": (_replace(1, _detail(amount="12O.50")), 2, "amount"),
    "zero amount": (_replace(1, _detail(amount="0.00")), 2, "amount"),
    "negative amount": (_replace(1, _detail(amount="-120.50")), 2, "amount"),
    "three decimals": (_replace(1, _detail(amount="120.505")), 2, "amount"),
    "bad date": (_replace(0, "H|CCB20240501|20240532|4|481.00"), 1, "batch_date"),
    "bad time": (_replace(2, _detail(txn_time="2024050108")), 3, "txn_time"),
    "bad account": (_replace(1, _detail(account_no="0101 234567")), 2, "account_no"),
    "long serial": (_replace(1, _detail(serial_no="9" * 70)), 2, "serial_no"),
    "no result code": (_replace(1, _detail(result_code="")), 2, "result_code"),
    "unknown record": (_replace(2, "X|whatever"), 3, "record_type"),
    "missing trailer": (lambda: gbk(DELIMITED_LINES[:-1]), 5, None),
    "truncated line": (lambda: gbk([*DELIMITED_LINES[:4], "D|0101234570|80"]), 5, None),
    "cut without a line break": (lambda: DELIMITED_FILE[:-20], 5, "txn_time"),
    "data after the trailer": (lambda: gbk([*DELIMITED_LINES, DELIMITED_LINES[1]]), 7, None),
    "detail first": (lambda: gbk(DELIMITED_LINES[1:]), 1, None),
    "second header": (lambda: gbk([*DELIMITED_LINES[:2], *DELIMITED_LINES]), 3, None),
    "empty file": (lambda: b"", 1, None),
    "blank file": (lambda: b"\n\n", 2, None),
    "wrong encoding (a UTF-8 line)": (
        lambda: (
            gbk(DELIMITED_LINES[:3])
            + (DELIMITED_LINES[3] + "\n").encode()
            + gbk(DELIMITED_LINES[4:])
        ),
        4,
        None,
    ),
    "wrong encoding (UTF-16)": (lambda: "\n".join(DELIMITED_LINES).encode("utf-16"), 1, None),
    "line too long": (_replace(1, _detail(result_msg="x" * 5000)), 2, None),
}


@pytest.mark.parametrize("defect", sorted(BAD_DELIMITED))
def test_a_bad_file_is_refused_with_its_line_and_posts_nothing(defect: str) -> None:
    make, line, field = BAD_DELIMITED[defect]
    sink = BankSink()
    stream = io.BytesIO(make())
    stream.name = "ccb_20240501.txt"
    with pytest.raises(ParseError) as caught:
        post_batch_file(bank_adapter(), stream, sink)
    assert (caught.value.source, caught.value.line, caught.value.field) == (
        "ccb_20240501.txt",
        line,
        field,
    )
    assert sink.pay_many_calls == []
    assert sink.calls == 0


def _fixed(index: int, line: bytes) -> Callable[[], bytes]:
    return lambda: b"".join(
        (line if n == index else original) + b"\r\n" for n, original in enumerate(FIXED_LINES)
    )


BAD_FIXED: dict[str, tuple[Callable[[], bytes], int, str | None]] = {
    "success count": (_fixed(0, fixed_header(ok=4)), 1, "success_count"),
    "success total": (_fixed(0, fixed_header(ok_total=40000)), 1, "success_total"),
    "bad amount": (
        _fixed(1, fixed_detail("0101234567", "6001202405010001", "00001205O", "00", "成功")),
        2,
        "amount",
    ),
    "truncated record": (_fixed(2, FIXED_LINES[2][:40]), 3, None),
    "data past the record": (_fixed(2, FIXED_LINES[2] + b"XYZ"), 3, None),
    # A field boundary through a two-byte GBK character: the column positions are wrong.
    "split character": (
        _fixed(1, b"1" + b"010123456789012" + "王".encode("gbk") + FIXED_LINES[1][18:]),
        2,
        "account_no",
    ),
    "bad date": (
        _fixed(0, FIXED_LINES[0][:15] + b"20241301" + FIXED_LINES[0][23:]),
        1,
        "batch_date",
    ),
}


@pytest.mark.parametrize("defect", sorted(BAD_FIXED))
def test_a_bad_fixed_width_file_is_refused_with_its_line(defect: str) -> None:
    make, line, field = BAD_FIXED[defect]
    sink = BankSink()
    with pytest.raises(ParseError) as caught:
        post_batch_file(bank_adapter(batch_layout=FIXED), io.BytesIO(make()), sink)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert sink.calls == 0


def test_layouts_read_as_the_banks_wrote_them() -> None:
    for layout, data in ((DELIMITED, DELIMITED_FILE), (FIXED, FIXED_FILE)):
        with bank_adapter(batch_layout=layout).verify_batch_file(io.BytesIO(data)) as verified:
            details = list(verified.details())
            assert [d.line_no for d in details] == [2, 3, 4, 5]
            assert [d.result_code in ("0000", "00") for d in details] == [True, True, False, True]
            assert [f.line_no for f in verified.failed_debits()] == [4]
            assert len(list(verified.intents())) == 3
    assert isinstance(bank_adapter(batch_layout=FIXED).config.batch_layout, FixedWidthLayout)
    assert isinstance(bank_adapter().config.batch_layout, DelimitedLayout)


# ── statement ─────────────────────────────────────────────────────────────────────────────

BANK_STATEMENT = (
    ",".join(BANK_STATEMENT_COLUMNS) + "\n"
    "5001202405010001,0101234567,payment,120.50,0.50,120.00,2024-05-01 08:30:00,\n"
    "5001202405010101,0101234571,payment,60.00,0.50,59.50,2024-05-01 10:15:00,\n"
    "5001202405010102,0101234571,reversal,60.00,0.50,59.50,2024-05-01 10:15:30,5001202405010101\n"
).encode("gbk")
"""A sample of the bank's settlement statement: two collections and a reversal."""


def test_statement_rows_become_lines() -> None:
    lines = list(read_bank_statement(io.BytesIO(BANK_STATEMENT), currency="CNY", bank_code=BANK))
    assert [line.kind for line in lines] == [
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.REVERSAL,
    ]
    first, _, reversed_line = lines
    assert first.channel_txn_id == "CCB:5001202405010001"
    assert first.account_no == ACCOUNT
    assert (first.gross, first.fee, first.net) == (
        Money(12050, "CNY"),
        Money(50, "CNY"),
        Money(12000, "CNY"),
    )
    assert first.occurred_at == datetime(2024, 5, 1, 8, 30, tzinfo=BEIJING)
    assert reversed_line.original_txn_id == "CCB:5001202405010101"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("5001,0101234567,refund,1.00,0.50,0.50,2024-05-01 08:30:00,", "txn_type"),
        ("5001,0101234567,payment,1.00,0.50,0.60,2024-05-01 08:30:00,", "net"),
        ("5001,0101234567,payment,1.005,0.50,0.505,2024-05-01 08:30:00,", "amount"),
        ("5001,0101234567,reversal,1.00,0.50,0.50,2024-05-01 08:30:00,", "orig_serial_no"),
        (",0101234567,payment,1.00,0.50,0.50,2024-05-01 08:30:00,", "serial_no"),
        ("5001,0101234567,payment,1.00,0.50,0.50,20240501,", "txn_time"),
    ],
)
def test_bad_statement_rows_are_refused_with_line_and_field(row: str, field: str) -> None:
    data = (",".join(BANK_STATEMENT_COLUMNS) + "\n" + row + "\n").encode("gbk")
    with pytest.raises(ParseError) as caught:
        list(read_bank_statement(io.BytesIO(data), currency="CNY", bank_code=BANK))
    assert (caught.value.line, caught.value.field) == (2, field)


# ── settlement rules ──────────────────────────────────────────────────────────────────────


def test_settlement_is_t_plus_one_with_a_fixed_fee_per_item() -> None:
    rules = bank_adapter().settlement
    assert rules.cutoff == time(0, 0)
    assert rules.business_date(datetime(2024, 5, 1, 23, 59, tzinfo=BEIJING)) == date(2024, 5, 1)
    assert rules.settlement_date(date(2024, 5, 1)) == date(2024, 5, 2)
    assert rules.grace_days == 3
    assert rules.fee.fee(Money(12050, "CNY")) == Money(50, "CNY")
    assert rules.fee.fee(Money(1_000_000, "CNY")) == Money(50, "CNY")


# ── properties ────────────────────────────────────────────────────────────────────────────

NOTIFY_REFUSALS = {"parse_error", "payload_too_large", "invalid_signature", "merchant_mismatch"}
ADAPTER = bank_adapter()
FIXED_ADAPTER = bank_adapter(batch_layout=FIXED)


@FUZZ
@given(body=bodies)
def test_no_body_reaches_the_sink(body: bytes) -> None:
    sink = RecordingSink()
    result = ADAPTER.handle_notify(body, {}, sink)
    assert not result.ok
    assert result.error_code in NOTIFY_REFUSALS
    assert sink.calls == 0


@FUZZ
@given(body=bodies)
def test_the_verifier_raises_only_parse_or_authentication_errors(body: bytes) -> None:
    rsa_keys = (load_verifying_key(support.public_pem(RSA_KEY)),)
    for method in SignMethod:
        with contextlib.suppress(ParseError, AuthenticationError):
            verify_bank_notify(
                body, method=method, rsa_keys=rsa_keys, hmac_key=SHARED_KEY.encode(), source="b"
            )


SIGNED_PAY = hmac_signed(pay())


@FUZZ
@given(data=st.data())
def test_tampered_messages_never_pay_something_else(data: st.DataObject) -> None:
    original = RecordingSink()
    ADAPTER.handle_notify(SIGNED_PAY, {}, original)
    sink = RecordingSink()
    result = ADAPTER.handle_notify(data.draw(mutated(SIGNED_PAY)), {}, sink)
    if result.ok:
        assert sink.pay_calls == original.pay_calls
    else:
        assert sink.calls == 0


def _verify_or_refuse(adapter: BankAgentAdapter, data: bytes) -> None:
    refusal: ParseError | None = None
    try:
        with adapter.verify_batch_file(io.BytesIO(data)) as verified:
            details = list(verified.details())
    except ParseError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.line is not None
        assert refusal.line >= 1
        return
    summary = verified.summary
    assert len(details) == summary.count
    assert sum((d.amount for d in details), Money.zero("CNY")) == summary.total


@FUZZ
@given(data=st.binary(max_size=600))
def test_the_batch_reader_raises_only_parse_errors(data: bytes) -> None:
    _verify_or_refuse(ADAPTER, data)
    _verify_or_refuse(FIXED_ADAPTER, data)


@FUZZ
@given(data=st.data())
def test_damaged_batch_files_raise_only_parse_errors_or_still_add_up(data: st.DataObject) -> None:
    _verify_or_refuse(ADAPTER, data.draw(mutated(DELIMITED_FILE)))
    _verify_or_refuse(FIXED_ADAPTER, data.draw(mutated(FIXED_FILE)))


@FUZZ
@given(data=st.data())
def test_damaged_statements_raise_only_parse_errors(data: st.DataObject) -> None:
    damaged = data.draw(st.binary(max_size=400) | mutated(BANK_STATEMENT))
    with contextlib.suppress(ParseError):
        for line in ADAPTER.read_statement(io.BytesIO(damaged)):
            assert line.net == line.gross - line.fee


# ── against the real core ─────────────────────────────────────────────────────────────────


def test_a_bank_takes_a_bill_at_the_counter_then_its_daily_file_repeats_it(
    tmp_path: Path,
) -> None:
    clock = FixedClock(datetime(2024, 5, 1, 2, 20, tzinfo=UTC))
    with Gateway.open(f"sqlite:///{tmp_path}/g.db", clock=clock) as gateway:
        for account in ("0101234567", "0101234568"):
            gateway.open_account(account)
            gateway.issue_bill(
                account,
                bill_no=f"B{account}",
                amount=Money(12050, "CNY"),
                period="2024-04",
                due_date=date(2024, 5, 20),
            )
        adapter = bank_adapter()

        # At the counter, 10:15 Beijing time, bank serial 5001202405010001.
        counter = adapter.handle_notify(
            hmac_signed(pay("5001202405010001", txn_time="20240501101500")), {}, gateway
        )
        assert counter.ok
        receipt = counter.receipt
        assert receipt is not None
        assert receipt.channel_txn_id == "CCB:5001202405010001"
        assert [(a.bill_no, a.principal) for a in receipt.allocations] == [
            ("B0101234567", Money(12050, "CNY"))
        ]
        assert receipt.arrears_after == Money.zero("CNY")
        balances = gateway.ledger_balances()
        assert balances["receivable:0101234567"] == Money.zero("CNY")
        assert balances["clearing:bank_agent:CNY"] == Money(12050, "CNY")

        # The daily file repeats the counter payment (same serial, same time) and adds a
        # direct debit for the other account and one that failed.
        path = tmp_path / "ccb_20240501.txt"
        path.write_bytes(
            gbk(
                [
                    "H|CCB20240501|20240501|3|321.00",
                    "D|0101234567|120.50|5001202405010001|0000|交易成功|20240501101500",
                    "D|0101234568|120.50|5001202405010002|0000|交易成功|20240501083100",
                    "D|0101234569|80.00|5001202405010003|3001|余额不足|20240501083200",
                    "T|3|321.00",
                ]
            )
        )
        result = post_batch_file(adapter, path, gateway)
        assert (result.posted, result.replayed, len(result.failed_debits)) == (1, 1, 1)
        assert result.refused == ()
        assert gateway.ledger_balances()["clearing:bank_agent:CNY"] == Money(24100, "CNY")

        again = post_batch_file(adapter, path, gateway)
        assert again.already_posted
        assert again.sha256 == result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert gateway.ledger_balances()["clearing:bank_agent:CNY"] == Money(24100, "CNY")

        # The bank reverses the counter payment: the bill is open again.
        reversed_result = adapter.handle_reversal(
            hmac_signed(reversal("5001202405010009", "5001202405010001")), {}, gateway
        )
        assert answer(reversed_result)["result"] == "reversed"
        balances = gateway.ledger_balances()
        assert balances["receivable:0101234567"] == Money(12050, "CNY")
        assert balances["clearing:bank_agent:CNY"] == Money(12050, "CNY")
        assert gateway.verify().ok
