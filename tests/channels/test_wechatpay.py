"""WeChat Pay API v3: the real notification vector, signed test messages, refusals, the bill.

The real vector is from wechatpay-apiv3/wechatpay-go (Apache-2.0), core/notify/notify_test.go
and utils/aes_test.go, as assembled in ``../shared/data/wechatpay_v3_notify_vectors.json``
(see ``../shared/data/SOURCES.md``).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from paygate.channels.base import AdapterContext, InMemoryNonceStore
from paygate.channels.errors import DecryptionError, SignatureError, StaleTimestampError
from paygate.channels.mobile import (
    WechatPayAdapter,
    WechatPayConfig,
    WechatResource,
    decrypt_wechat_resource,
    read_wechat_trade_bill,
)
from paygate.clock import FixedClock
from paygate.errors import ParseError, UnknownAccountError
from paygate.models import StatementLineKind
from paygate.money import Money
from tests.channels import support
from tests.channels.support import RecordingSink

VECTORS = support.shared_vectors("wechatpay_v3_notify_vectors.json")
REAL = VECTORS["notify"]
REAL_NOW = datetime.fromtimestamp(REAL["frozen_now_unix"], UTC)
BEIJING = ZoneInfo("Asia/Shanghai")
KEY = support.rsa_key("wechat")
CERT = support.certificate_pem(KEY, int(support.WECHAT_SERIAL, 16))


def real_adapter(now: datetime = REAL_NOW) -> WechatPayAdapter:
    config = WechatPayConfig(
        api_v3_key=REAL["apiv3_key"],
        platform_keys={REAL["headers"]["Wechatpay-Serial"]: REAL["platform_certificate_pem"]},
        mchid="1234567890",
    )
    return WechatPayAdapter(config, AdapterContext(clock=FixedClock(now)))


def adapter(
    now: datetime = support.WECHAT_NOW, *, cert: str = CERT, **config: Any
) -> WechatPayAdapter:
    values: dict[str, Any] = {
        "api_v3_key": support.WECHAT_API_KEY,
        "platform_keys": {support.WECHAT_SERIAL: cert},
        **config,
    }
    return WechatPayAdapter(
        WechatPayConfig.model_validate(values), AdapterContext(clock=FixedClock(now))
    )


def paid(**overrides: Any) -> bytes:
    return support.wechat_envelope(json.dumps(support.wechat_transaction(**overrides)).encode())


def real_body() -> bytes:
    return str(REAL["body"]).encode("utf-8")


# ── the real vector ───────────────────────────────────────────────────────────────────────


def test_real_notification_verifies_decrypts_and_is_acknowledged_without_posting() -> None:
    subject = real_adapter()
    notification = subject.verify_notify(real_body(), REAL["headers"])
    assert notification.event_type == "PAYSCORE.USER_OPEN_SERVICE"
    plaintext = decrypt_wechat_resource(
        notification.resource, REAL["apiv3_key"].encode(), source="wechatpay"
    )
    assert plaintext.decode() == REAL["expected_plaintext"]

    sink = RecordingSink()
    result = real_adapter().handle_notify(real_body(), REAL["headers"], sink)
    assert (result.status_code, result.body, result.content_type) == (204, b"", None)
    assert result.ok
    assert result.receipt is None
    assert sink.calls == 0


def test_real_notification_headers_match_case_insensitively() -> None:
    headers = {name.lower(): value for name, value in REAL["headers"].items()}
    assert real_adapter().handle_notify(real_body(), headers, RecordingSink()).status_code == 204


def test_real_notification_with_a_changed_body_is_refused() -> None:
    sink = RecordingSink()
    body = real_body().replace(b"USER_OPEN_SERVICE", b"USER_PAID_SERVICE")
    result = real_adapter().handle_notify(body, REAL["headers"], sink)
    assert result.error_code == "invalid_signature"
    assert result.status_code == 401
    assert json.loads(result.body)["code"] == "FAIL"
    assert result.content_type == "application/json"
    assert sink.calls == 0


@pytest.mark.parametrize("offset", [timedelta(minutes=5, seconds=1), -timedelta(minutes=6)])
def test_real_notification_outside_the_window_is_stale(offset: timedelta) -> None:
    result = real_adapter(REAL_NOW + offset).handle_notify(
        real_body(), REAL["headers"], RecordingSink()
    )
    assert result.error_code == "stale_timestamp"


def test_real_notification_at_the_edge_of_the_window_is_accepted() -> None:
    subject = real_adapter(REAL_NOW + timedelta(minutes=5))
    assert subject.handle_notify(real_body(), REAL["headers"], RecordingSink()).ok


def test_real_notification_sent_twice_reuses_its_nonce() -> None:
    subject = real_adapter()
    assert subject.handle_notify(real_body(), REAL["headers"], RecordingSink()).ok
    again = subject.handle_notify(real_body(), REAL["headers"], RecordingSink())
    assert again.error_code == "nonce_reused"
    assert again.status_code == 401


def test_real_aes_gcm_vector_decrypts() -> None:
    vector = VECTORS["aes_gcm_only"]
    resource = WechatResource(
        algorithm="AEAD_AES_256_GCM",
        ciphertext=vector["ciphertext"],
        nonce=vector["nonce"],
        associated_data=vector["associated_data"],
    )
    plaintext = decrypt_wechat_resource(resource, vector["apiv3_key"].encode(), source="test")
    assert plaintext.decode() == vector["expected_plaintext"]
    with pytest.raises(DecryptionError):
        decrypt_wechat_resource(resource, b"testAPIv3Key0001", source="test")


# ── signed test messages ──────────────────────────────────────────────────────────────────


def test_successful_transaction_pays_and_answers_204() -> None:
    sink = RecordingSink()
    body = paid()
    result = adapter().handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert (result.status_code, result.body) == (204, b"")
    assert result.receipt is not None
    assert not result.receipt.replayed
    (intent,) = sink.pay_calls
    assert intent.channel == "wechatpay"
    assert intent.channel_txn_id == "4200002188202405010123456789"
    assert intent.account_no == "0101234567"
    assert intent.amount == Money(12050, "CNY")
    assert intent.paid_at == datetime(2024, 5, 1, 9, 59, 59, tzinfo=BEIJING)


def test_retry_with_a_new_nonce_replays_the_receipt() -> None:
    sink = RecordingSink()
    subject = adapter()
    body = paid()
    first = subject.handle_notify(body, support.wechat_headers(body, KEY), sink)
    second = subject.handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert second.status_code == 204
    assert second.receipt is not None
    assert second.receipt.replayed
    assert first.receipt is not None
    assert first.receipt.payment_id == second.receipt.payment_id
    assert len(sink.posted) == 1


def test_replayed_nonce_is_refused_before_the_sink() -> None:
    sink = RecordingSink()
    subject = adapter()
    body = paid()
    headers = support.wechat_headers(body, KEY)
    assert subject.handle_notify(body, headers, sink).ok
    replay = subject.handle_notify(body, headers, sink)
    assert (replay.status_code, replay.error_code) == (401, "nonce_reused")
    assert len(sink.pay_calls) == 1


def test_a_forgery_cannot_burn_a_nonce() -> None:
    sink = RecordingSink()
    subject = adapter()
    body = paid()
    forged = support.wechat_headers(body, support.rsa_key("intruder"), nonce="n-1")
    assert subject.handle_notify(body, forged, sink).error_code == "invalid_signature"
    genuine = support.wechat_headers(body, KEY, nonce="n-1")
    assert subject.handle_notify(body, genuine, sink).ok


def test_nonces_shared_between_adapters_are_kept_apart_by_channel() -> None:
    store = InMemoryNonceStore()
    now = support.WECHAT_NOW
    assert store.add("alipay:n", expires_at=now + timedelta(minutes=5), now=now)
    subject = WechatPayAdapter(
        adapter().config, AdapterContext(clock=FixedClock(now), nonces=store)
    )
    body = paid()
    assert subject.handle_notify(
        body, support.wechat_headers(body, KEY, nonce="n"), RecordingSink()
    ).ok


@pytest.mark.parametrize(
    ("state", "original_type"),
    [("NOTPAY", "transaction"), ("CLOSED", "transaction"), ("SUCCESS", "refund")],
)
def test_other_states_and_resources_are_acknowledged_without_posting(
    state: str, original_type: str
) -> None:
    sink = RecordingSink()
    plaintext = json.dumps(support.wechat_transaction(trade_state=state)).encode()
    body = support.wechat_envelope(plaintext, original_type=original_type)
    result = adapter().handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert (result.status_code, result.receipt, result.error_code) == (204, None, None)
    assert sink.calls == 0


# ── refusals ──────────────────────────────────────────────────────────────────────────────


def refused_with(
    body: bytes, headers: dict[str, str], subject: WechatPayAdapter | None = None
) -> tuple[int, str]:
    sink = RecordingSink()
    result = (subject or adapter()).handle_notify(body, headers, sink)
    assert sink.calls == 0
    assert result.receipt is None
    assert json.loads(result.body)["code"] == "FAIL"
    assert result.error_code is not None
    return result.status_code, result.error_code


def test_wrong_key_is_refused() -> None:
    body = paid()
    headers = support.wechat_headers(body, support.rsa_key("intruder"))
    assert refused_with(body, headers) == (401, "invalid_signature")


def test_unknown_serial_is_refused() -> None:
    body = paid()
    headers = support.wechat_headers(body, KEY, serial="7132D72A03E93CDDF8C03BBD1F37EEDF204F4A35")
    assert refused_with(body, headers) == (401, "unknown_key")


def test_serial_is_matched_in_any_case() -> None:
    body = paid()
    headers = support.wechat_headers(body, KEY, serial=support.WECHAT_SERIAL.lower())
    assert adapter().handle_notify(body, headers, RecordingSink()).ok


@pytest.mark.parametrize(
    "sent", [support.WECHAT_NOW - timedelta(minutes=10), support.WECHAT_NOW + timedelta(hours=1)]
)
def test_expired_timestamp_is_refused(sent: datetime) -> None:
    body = paid()
    assert refused_with(body, support.wechat_headers(body, KEY, timestamp=sent)) == (
        401,
        "stale_timestamp",
    )


def test_resource_encrypted_with_another_key_is_refused() -> None:
    plaintext = json.dumps(support.wechat_transaction()).encode()
    body = support.wechat_envelope(plaintext, api_key="another-merchant-api-v3-key-0000")
    assert refused_with(body, support.wechat_headers(body, KEY)) == (401, "decryption_failed")


def test_transaction_of_another_merchant_is_refused() -> None:
    body = paid(mchid="1900000999")
    assert refused_with(body, support.wechat_headers(body, KEY), adapter(mchid="1900000109")) == (
        401,
        "merchant_mismatch",
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"amount": {"total": 12050, "currency": "USD"}}, (400, "currency_mismatch")),
        ({"amount": {"total": 0, "currency": "CNY"}}, (400, "invalid_amount")),
        ({"amount": {"total": "12050", "currency": "CNY"}}, (400, "parse_error")),
        ({"amount": {"total": 120.5, "currency": "CNY"}}, (400, "parse_error")),
        ({"success_time": "yesterday"}, (400, "parse_error")),
        ({"success_time": "2024-05-01T09:59:59"}, (400, "parse_error")),
        ({"transaction_id": None}, (400, "parse_error")),
    ],
)
def test_unusable_transactions_are_refused(
    overrides: dict[str, Any], expected: tuple[int, str]
) -> None:
    body = paid(**overrides)
    assert refused_with(body, support.wechat_headers(body, KEY)) == expected


@pytest.mark.parametrize("attach", ["", "   ", "has spaces in it", "x" * 65])
def test_a_verified_payment_without_a_usable_account_is_acknowledged_and_held(
    attach: str,
) -> None:
    # WeChat Pay retries a FAIL for a day; no retry can supply the account.
    sink = RecordingSink()
    body = paid(attach=attach)
    result = adapter().handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert (result.status_code, result.body, result.receipt) == (204, b"", None)
    assert result.held is not None and result.held.startswith("missing_account")
    assert sink.calls == 0


def test_a_verified_payment_for_an_unknown_account_is_acknowledged_and_held() -> None:
    sink = RecordingSink(fail_with=UnknownAccountError("no account 0101234567"))
    body = paid()
    result = adapter().handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert (result.status_code, result.error_code) == (204, None)
    assert result.held is not None and result.held.startswith("unknown_account")
    assert not sink.posted


@pytest.mark.parametrize(
    "missing", ["Wechatpay-Serial", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature"]
)
def test_missing_header_is_refused(missing: str) -> None:
    body = paid()
    headers = support.wechat_headers(body, KEY)
    del headers[missing]
    status, code = refused_with(body, headers)
    assert status == 401
    assert code == "invalid_signature"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "EV-1", "event_type": "TRANSACTION.SUCCESS"}',
        b'{"id": "EV-1", "event_type": "X", "resource": {"algorithm": "AEAD_AES_256_GCM", '
        b'"ciphertext": "%%%", "nonce": "abcdefabcdef", "original_type": "transaction"}}',
        b'{"id": "EV-1", "event_type": "X", "resource": {"algorithm": "SM4", '
        b'"ciphertext": "", "nonce": "abcdefabcdef"}}',
        b'{"id": "EV-1", "event_type": "X", "resource": {"algorithm": "AEAD_AES_256_GCM", '
        b'"ciphertext": "", "nonce": "short"}}',
        "\u00ff".encode("latin-1"),
    ],
)
def test_signed_but_malformed_bodies_are_parse_errors(body: bytes) -> None:
    assert refused_with(body, support.wechat_headers(body, KEY)) == (400, "parse_error")


def test_decrypted_garbage_is_a_parse_error() -> None:
    body = support.wechat_envelope(b"\x00 not a transaction")
    assert refused_with(body, support.wechat_headers(body, KEY)) == (400, "parse_error")


@pytest.mark.parametrize(
    "timestamp", ["soon", "99999999999", "-1624523846", "１６２４５２３８４６"]
)
def test_signed_timestamp_that_is_not_unix_seconds_is_a_parse_error(timestamp: str) -> None:
    body = paid()
    headers = support.wechat_headers(body, KEY)
    message = f"{timestamp}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    headers["Wechatpay-Timestamp"] = timestamp
    headers["Wechatpay-Signature"] = support.rsa2_sign(KEY, message)
    assert refused_with(body, headers) == (400, "parse_error")


def test_conflicting_header_spellings_are_refused() -> None:
    body = paid()
    headers = support.wechat_headers(body, KEY)
    headers["wechatpay-serial"] = "0000"
    assert refused_with(body, headers) == (400, "parse_error")


def test_oversized_body_is_refused() -> None:
    body = paid(attach="0101234567", description="电费" * 2000)
    status, code = refused_with(
        body, support.wechat_headers(body, KEY), adapter(max_body_bytes=4096)
    )
    assert (status, code) == (413, "payload_too_large")


def test_certificate_outside_its_validity_is_refused() -> None:
    expired = support.certificate_pem(
        KEY,
        int(support.WECHAT_SERIAL, 16),
        not_before=datetime(2018, 1, 1, tzinfo=UTC),
        not_after=datetime(2023, 1, 1, tzinfo=UTC),
    )
    body = paid()
    assert refused_with(body, support.wechat_headers(body, KEY), adapter(cert=expired)) == (
        401,
        "unknown_key",
    )


def test_platform_public_key_without_certificate_is_accepted() -> None:
    subject = WechatPayAdapter(
        WechatPayConfig(
            api_v3_key=support.WECHAT_API_KEY,
            platform_keys={"PUB_KEY_ID_0119000001": support.public_pem(KEY)},
        ),
        AdapterContext(clock=FixedClock(support.WECHAT_NOW)),
    )
    body = paid()
    headers = support.wechat_headers(body, KEY, serial="PUB_KEY_ID_0119000001")
    assert subject.handle_notify(body, headers, RecordingSink()).ok


def test_verification_errors_are_raised_directly() -> None:
    body = paid()
    with pytest.raises(SignatureError):
        adapter().verify_notify(body, support.wechat_headers(body, support.rsa_key("intruder")))
    with pytest.raises(StaleTimestampError):
        adapter().verify_notify(
            body, support.wechat_headers(body, KEY, timestamp=datetime(2020, 1, 1, tzinfo=UTC))
        )


# ── configuration ─────────────────────────────────────────────────────────────────────────


def test_serial_must_be_the_certificates() -> None:
    with pytest.raises(ValidationError, match="serial"):
        WechatPayConfig(api_v3_key=support.WECHAT_API_KEY, platform_keys={"0ABC": CERT})


def test_bad_api_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        WechatPayConfig(api_v3_key="short-secret", platform_keys={support.WECHAT_SERIAL: CERT})
    assert "short-secret" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        WechatPayConfig(
            api_v3_key="s3cret-but-31-bytes-long-000000",
            platform_keys={support.WECHAT_SERIAL: CERT},
        )
    assert "s3cret" not in str(caught.value)


def test_short_rsa_keys_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValidationError, match="2048"):
        WechatPayConfig(
            api_v3_key=support.WECHAT_API_KEY, platform_keys={"K": support.public_pem(small)}
        )


# ── the trade bill ────────────────────────────────────────────────────────────────────────

BILL = support.LOCAL_DATA / "wechatpay_tradebill_20240501.csv"


def test_bill_rows_become_statement_lines() -> None:
    lines = list(adapter().read_statement(BILL))
    assert [line.kind for line in lines] == [
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.REFUND,
        StatementLineKind.PAYMENT,
    ]
    first, second, _, refund, late = lines
    assert first.line_no == 2
    assert first.channel_txn_id == "4200002188202405010123456789"
    assert first.reference == "20240501081450a1b2c3d4e5f60718"
    assert first.account_no == "0101234567"
    assert (first.gross, first.fee, first.net) == (
        Money(12050, "CNY"),
        Money(72, "CNY"),
        Money(11978, "CNY"),
    )
    assert first.occurred_at == datetime(2024, 5, 1, 8, 15, 2, tzinfo=BEIJING)
    assert refund.channel_txn_id == "50300008012024050112345678901"
    assert refund.original_txn_id == second.channel_txn_id
    assert refund.reference == "RF20240501164500a1b2c3d4"
    assert (refund.gross, refund.fee, refund.net) == (
        Money(10000, "CNY"),
        Money(60, "CNY"),
        Money(9940, "CNY"),
    )
    # 23:59:59 Beijing is still 1 May for a wallet closing at midnight.
    assert adapter().settlement.business_date(late.occurred_at).isoformat() == "2024-05-01"


def _bill_lines() -> list[str]:
    return BILL.read_text(encoding="utf-8").splitlines()


def _read(lines: list[str], prefix: bytes = b"") -> list[object]:
    stream = io.BytesIO(prefix + "\n".join(lines).encode("utf-8"))
    stream.name = "wechat.csv"
    return list(read_wechat_trade_bill(stream, currency="CNY"))


def test_bill_with_byte_order_mark_is_read() -> None:
    assert len(_read(_bill_lines(), prefix=b"\xef\xbb\xbf")) == 5


def test_truncated_bill_is_refused() -> None:
    with pytest.raises(ParseError, match="truncated"):
        _read(_bill_lines()[:4])


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("`5,", "`6,", "总交易单数"),
        ("`480.30,", "`480.31,", "应结订单总金额"),
        ("`2.28000", "`2.29000", "手续费总金额"),
    ],
)
def test_summary_must_match_the_rows(old: str, new: str, field: str) -> None:
    lines = _bill_lines()
    lines[-1] = lines[-1].replace(old, new, 1)
    with pytest.raises(ParseError) as caught:
        _read(lines)
    assert (caught.value.line, caught.value.field) == (len(lines), field)


def test_closed_refund_yields_no_line_but_counts_in_the_summary() -> None:
    lines = _bill_lines()
    closed = lines[4].replace("`SUCCESS,`电费缴纳", "`REFUNDCLOSE,`电费缴纳")
    assert closed != lines[4]
    lines[4] = closed
    kinds = [line.kind for line in _read(lines)]  # type: ignore[attr-defined]
    assert StatementLineKind.REFUND not in kinds


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("`SUCCESS,`CMB_DEBIT", "`REVOKED,`CMB_DEBIT", "trade state"),
        ("`0.72000", "`0.72500", "decimal places"),
        ("`CNY,`120.50", "`USD,`120.50", "currency"),
        ("`2024-05-01 08:15:02", "`01/05/2024 08:15", "time"),
    ],
)
def test_bad_rows_are_refused_with_their_line(old: str, new: str, message: str) -> None:
    lines = _bill_lines()
    lines[1] = lines[1].replace(old, new)
    with pytest.raises(ParseError, match=message) as caught:
        _read(lines)
    assert caught.value.line == 2


def test_data_after_the_summary_is_refused() -> None:
    lines = [*_bill_lines(), lines_extra := "`1,`2"]
    assert lines_extra
    with pytest.raises(ParseError, match="after the summary"):
        _read(lines)


def test_alipay_bill_is_not_a_wechat_bill() -> None:
    with pytest.raises(ParseError, match="UTF-8") as caught:
        list(adapter().read_statement(support.LOCAL_DATA / "alipay_bill_20240501.csv"))
    assert caught.value.line == 1


# ── amounts and bodies a signature does not make sane ────────────────────────────────────


@pytest.mark.parametrize(
    ("total", "code"),
    [(2**63, "invalid_amount"), (2**63 - 1, "invalid_amount"), (10**40, "parse_error")],
)
def test_an_amount_beyond_the_ledger_or_the_ceiling_is_refused_in_wechats_format(
    total: int, code: str
) -> None:
    # Before: 2**63 reached the database and answered HTTP 500, which WeChat Pay retries.
    body = paid(amount={"total": total, "currency": "CNY"})
    assert refused_with(body, support.wechat_headers(body, KEY)) == (400, code)


def test_the_channels_largest_single_payment_is_configurable() -> None:
    body = paid(amount={"total": 12051, "currency": "CNY"})
    small = adapter(max_payment=12050)
    assert refused_with(body, support.wechat_headers(body, KEY), small) == (400, "invalid_amount")
    body = paid()
    assert small.handle_notify(body, support.wechat_headers(body, KEY), RecordingSink()).ok


def test_a_key_given_twice_in_the_decrypted_transaction_is_refused() -> None:
    plaintext = json.dumps(support.wechat_transaction()).encode()
    twice = plaintext.replace(b'"attach": "0101234567"', b'"attach": "0101234567", "attach": "X"')
    assert twice != plaintext
    body = support.wechat_envelope(twice)
    assert refused_with(body, support.wechat_headers(body, KEY)) == (400, "parse_error")


def test_a_key_given_twice_in_the_envelope_is_refused() -> None:
    body = paid().replace(b'"id": ', b'"id": "EV-other", "id": ', 1)
    assert refused_with(body, support.wechat_headers(body, KEY)) == (400, "parse_error")


# ── partner mode (服务商) ──────────────────────────────────────────────────────────────────

SP_MCHID = "1230000109"
SUB_MCHID = "1900000109"


def partner_paid(**overrides: Any) -> bytes:
    """A partner-mode transaction as the official partner notification decrypts to."""
    transaction = support.wechat_transaction()
    del transaction["mchid"], transaction["appid"]
    transaction["payer"] = {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "sub_openid": "oX"}
    transaction.update(
        {
            "sp_appid": "wx8888888888888888",
            "sp_mchid": SP_MCHID,
            "sub_appid": "wxd678efh567hg6999",
            "sub_mchid": SUB_MCHID,
            **overrides,
        }
    )
    return support.wechat_envelope(json.dumps(transaction).encode())


def partner_adapter(**config: Any) -> WechatPayAdapter:
    return adapter(**{"sp_mchid": SP_MCHID, "sub_mchids": {SUB_MCHID}, **config})


def test_a_partner_mode_payment_of_a_configured_sub_merchant_posts() -> None:
    sink = RecordingSink()
    body = partner_paid()
    result = partner_adapter().handle_notify(body, support.wechat_headers(body, KEY), sink)
    assert result.status_code == 204 and result.ok
    (intent,) = sink.pay_calls
    assert (intent.account_no, intent.amount) == ("0101234567", Money(12050, "CNY"))


@pytest.mark.parametrize(
    ("overrides", "config"),
    [
        ({"sub_mchid": "1900000999"}, {}),  # another sub-merchant of the same provider
        ({"sp_mchid": "1230000999"}, {}),  # another service provider
        ({}, {"sp_mchid": None, "sub_mchids": frozenset()}),  # partner mode not configured
    ],
)
def test_a_partner_mode_payment_of_another_merchant_is_refused(
    overrides: dict[str, str], config: dict[str, Any]
) -> None:
    body = partner_paid(**overrides)
    subject = partner_adapter(**config)
    assert refused_with(body, support.wechat_headers(body, KEY), subject) == (
        401,
        "merchant_mismatch",
    )


def test_a_direct_payment_is_refused_by_a_partner_only_configuration() -> None:
    body = paid()
    assert refused_with(body, support.wechat_headers(body, KEY), partner_adapter()) == (
        401,
        "merchant_mismatch",
    )


@pytest.mark.parametrize(
    "transaction",
    [
        {"mchid": "1900000109", "sp_mchid": SP_MCHID, "sub_mchid": SUB_MCHID},
        {"sp_mchid": SP_MCHID},
        {},
    ],
)
def test_a_transaction_names_its_merchant_in_exactly_one_form(
    transaction: dict[str, str],
) -> None:
    fields = support.wechat_transaction()
    del fields["mchid"]
    fields.update(transaction)
    body = support.wechat_envelope(json.dumps(fields).encode())
    assert refused_with(body, support.wechat_headers(body, KEY), partner_adapter()) == (
        400,
        "parse_error",
    )


@pytest.mark.parametrize("config", [{"sp_mchid": SP_MCHID}, {"sub_mchids": {SUB_MCHID}}])
def test_partner_mode_is_configured_whole_or_not_at_all(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="partner mode"):
        WechatPayConfig.model_validate(
            {
                "api_v3_key": support.WECHAT_API_KEY,
                "platform_keys": {support.WECHAT_SERIAL: CERT},
                **config,
            }
        )
