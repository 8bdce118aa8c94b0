"""Properties: no input makes a parser or verifier fail with anything but a ParseError or an
AuthenticationError, nothing unverified reaches the sink, and tampering never changes a payment.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.channels.base import ChannelAdapter
from paygate.channels.mobile import (
    WechatResource,
    decrypt_wechat_resource,
    read_alipay_bill,
    read_wechat_trade_bill,
    verify_alipay_notify,
)
from paygate.channels.online import read_online_statement, verify_unionpay_notify
from paygate.channels.signing import load_verifying_key
from paygate.errors import AuthenticationError, ParseError
from tests.channels import support
from tests.channels.contract import CASES
from tests.channels.strategies import bodies, headers, mutated
from tests.channels.support import RecordingSink
from tests.channels.test_contract import AUTH_CODES, PARSE_CODES

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ADAPTERS: dict[str, ChannelAdapter[Any]] = {name: case.build() for name, case in CASES.items()}
REFUSAL_CODES = PARSE_CODES | AUTH_CODES | {"payload_too_large"}
ALIPAY_KEY = load_verifying_key(support.public_pem(support.rsa_key("alipay")))
UNIONPAY_KEYS = (load_verifying_key(support.public_pem(support.rsa_key("unionpay"))),)


@FUZZ
@given(name=st.sampled_from(sorted(ADAPTERS)), body=bodies, request_headers=headers)
def test_no_input_reaches_the_sink_or_escapes_as_an_exception(
    name: str, body: bytes, request_headers: dict[str, str]
) -> None:
    sink = RecordingSink()
    result = CASES[name].send(ADAPTERS[name], body, request_headers, sink)
    assert not result.ok
    assert result.error_code in REFUSAL_CODES
    assert sink.calls == 0


@FUZZ
@given(
    signature=st.text(max_size=400),
    timestamp=st.text(max_size=14) | st.integers(0, 2**40).map(str),
    nonce=st.text(max_size=40),
    body=bodies,
)
def test_wechat_with_a_known_serial_still_refuses_cleanly(
    signature: str, timestamp: str, nonce: str, body: bytes
) -> None:
    sink = RecordingSink()
    request_headers = {
        "Wechatpay-Serial": support.WECHAT_SERIAL,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
    }
    result = ADAPTERS["wechatpay"].handle_notify(body, request_headers, sink)
    assert result.error_code in REFUSAL_CODES
    assert sink.calls == 0


@FUZZ
@given(body=bodies)
def test_verifiers_raise_only_parse_or_authentication_errors(body: bytes) -> None:
    for verify in (
        lambda: verify_alipay_notify(body, ALIPAY_KEY, source="alipay"),
        lambda: verify_unionpay_notify(body, UNIONPAY_KEYS, source="online"),
    ):
        with contextlib.suppress(ParseError, AuthenticationError):
            verify()


@FUZZ
@given(
    algorithm=st.sampled_from(["AEAD_AES_256_GCM"]) | st.text(max_size=10),
    ciphertext=st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    | st.text(max_size=40),
    nonce=st.text(max_size=20),
    associated=st.text(max_size=20),
)
def test_decryption_raises_only_parse_or_authentication_errors(
    algorithm: str, ciphertext: str, nonce: str, associated: str
) -> None:
    resource = WechatResource(
        algorithm=algorithm, ciphertext=ciphertext, nonce=nonce, associated_data=associated
    )
    with contextlib.suppress(ParseError, AuthenticationError):
        decrypt_wechat_resource(resource, support.WECHAT_API_KEY.encode(), source="wechatpay")


READERS = {
    "alipay": (read_alipay_bill, support.LOCAL_DATA / "alipay_bill_20240501.csv"),
    "wechatpay": (read_wechat_trade_bill, support.LOCAL_DATA / "wechatpay_tradebill_20240501.csv"),
    "online": (read_online_statement, support.LOCAL_DATA / "online_statement_20240501.csv"),
}


def _read_or_refuse(name: str, data: bytes) -> None:
    reader, _ = READERS[name]
    lines = []
    try:
        lines = list(reader(io.BytesIO(data), currency="CNY"))
    except ParseError as exc:
        where = exc.line
    else:
        where = 1
    assert where is None or where >= 1
    for line in lines:
        assert line.net == line.gross - line.fee
        assert line.gross.minor > 0


@FUZZ
@given(name=st.sampled_from(sorted(READERS)), data=st.binary(max_size=600))
def test_statement_readers_raise_only_parse_errors(name: str, data: bytes) -> None:
    _read_or_refuse(name, data)


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(READERS)))
def test_damaged_statements_raise_only_parse_errors(data: st.DataObject, name: str) -> None:
    _, path = READERS[name]
    _read_or_refuse(name, data.draw(mutated(path.read_bytes())))


ALIPAY_SIGNED = support.alipay_body(support.alipay_trade(), support.rsa_key("alipay"))


@FUZZ
@given(data=st.data())
def test_tampered_alipay_messages_never_pay_something_else(data: st.DataObject) -> None:
    original = RecordingSink()
    ADAPTERS["alipay"].handle_notify(ALIPAY_SIGNED, {}, original)
    sink = RecordingSink()
    result = ADAPTERS["alipay"].handle_notify(data.draw(mutated(ALIPAY_SIGNED)), {}, sink)
    # A change that keeps the signed content (say, %41 for A) may still be accepted, but then
    # it must pay exactly what was signed.
    if result.ok:
        assert sink.pay_calls == original.pay_calls
    else:
        assert sink.calls == 0


WECHAT_SIGNED = support.wechat_envelope(json.dumps(support.wechat_transaction()).encode())
WECHAT_HEADERS = support.wechat_headers(WECHAT_SIGNED, support.rsa_key("wechat"))


@FUZZ
@given(data=st.data())
def test_tampered_wechat_messages_never_reach_the_sink(data: st.DataObject) -> None:
    sink = RecordingSink()
    tampered = data.draw(mutated(WECHAT_SIGNED))
    result = CASES["wechatpay"].build().handle_notify(tampered, WECHAT_HEADERS, sink)
    assert not result.ok
    assert sink.calls == 0
