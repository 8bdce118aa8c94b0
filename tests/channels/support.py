"""What the channel tests share: a recording sink, test keys, and independent message signers.

The signers here are written from the channels' published rules, not with paygate's own
helpers, so that a mistake in paygate's canonical strings cannot sign and verify itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from paygate.errors import (
    IdempotencyConflictError,
    InvalidStateError,
    PaygateError,
    UnknownPaymentError,
)
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
LOCAL_DATA = Path(__file__).resolve().parent / "data"


def shared_vectors(name: str) -> dict[str, Any]:
    """A JSON file of third-party test vectors from ``<repo root>/../shared/data``."""
    path = SHARED_DATA / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: CI copies shared/ beside the clone; see shared/data/SOURCES.md"
        )
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


# ── a recording sink ──────────────────────────────────────────────────────────────────────


class RecordingSink:
    """A PaymentSink that records every call and is idempotent like the core.

    ``fail_with`` makes every ``pay`` raise that error (after recording the call).
    """

    def __init__(self, *, fail_with: PaygateError | None = None) -> None:
        self.pay_calls: list[PaymentIntent] = []
        self.reversals: list[tuple[str, str, str]] = []
        self.fail_with = fail_with
        self._receipts: dict[tuple[str, str], Receipt] = {}
        self._reversed: set[tuple[str, str]] = set()

    @property
    def calls(self) -> int:
        """How many times the adapter called the sink at all."""
        return len(self.pay_calls) + len(self.reversals)

    @property
    def posted(self) -> list[Receipt]:
        """The distinct payments posted."""
        return list(self._receipts.values())

    def pay(self, intent: PaymentIntent) -> Receipt:
        self.pay_calls.append(intent)
        if self.fail_with is not None:
            raise self.fail_with
        key = (intent.channel, intent.channel_txn_id)
        original = self._receipts.get(key)
        if original is not None:
            if (original.account_no, original.amount) != (intent.account_no, intent.amount):
                raise IdempotencyConflictError("same transaction, different content")
            return original.model_copy(update={"replayed": True})
        zero = Money.zero(intent.amount.currency)
        receipt = Receipt(
            payment_id=len(self._receipts) + 1,
            channel=intent.channel,
            channel_txn_id=intent.channel_txn_id,
            account_no=intent.account_no,
            amount=intent.amount,
            paid_at=intent.paid_at,
            business_date=intent.paid_at.date(),
            late_fee=zero,
            allocations=(),
            credit=intent.amount,
            balance_after=-intent.amount,
            arrears_after=zero,
            arrears_cleared=False,
        )
        self._receipts[key] = receipt
        return receipt

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> None:
        """Record the reversal; like the core, refuse to reverse a payment twice."""
        self.reversals.append((channel, channel_txn_id, reason))
        key = (channel, channel_txn_id)
        if key not in self._receipts:
            raise UnknownPaymentError(f"no {channel} payment {channel_txn_id}")
        if key in self._reversed:
            raise InvalidStateError(f"payment {channel_txn_id} is already reversed")
        self._reversed.add(key)


# ── keys ──────────────────────────────────────────────────────────────────────────────────


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key per label, generated once per test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def public_base64(key: rsa.RSAPrivateKey) -> str:
    """The bare base64 DER form, as Alipay's console shows public keys."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def certificate_pem(
    key: rsa.RSAPrivateKey,
    serial: int,
    *,
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
) -> str:
    """A self-signed certificate for ``key`` with ``serial``; unless told otherwise, valid
    from 2020 with no end (RFC 5280's 99991231235959Z), so a test verifying with the real
    clock finds it valid on any day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def rsa2_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


# ── Alipay ────────────────────────────────────────────────────────────────────────────────


def alipay_body(
    params: Mapping[str, str], key: rsa.RSAPrivateKey, *, charset: str = "utf-8"
) -> bytes:
    """A form body signed as Alipay signs a trade notification (without sign, sign_type)."""
    fields = dict(params)
    fields.setdefault("sign_type", "RSA2")
    fields.setdefault("charset", charset)
    trade = fields.get("notify_type") == "trade_status_sync"
    leave_out = {"sign", "sign_type"} if trade else {"sign"}
    signed = "&".join(
        f"{k}={v}" for k, v in sorted(fields.items()) if k not in leave_out and v != ""
    )
    fields["sign"] = rsa2_sign(key, signed.encode(charset))
    return form_encode(fields, charset)


def form_encode(fields: Mapping[str, str], charset: str = "utf-8") -> bytes:
    return "&".join(
        f"{quote(k, safe='', encoding=charset)}={quote(v, safe='', encoding=charset)}"
        for k, v in fields.items()
    ).encode("ascii")


def alipay_trade(**overrides: str) -> dict[str, str]:
    """A TRADE_SUCCESS notification for 120.50 yuan on account 0101234567."""
    params = {
        "gmt_create": "2024-05-01 09:12:30",
        "charset": "utf-8",
        "seller_email": "billing@example-power.cn",
        "subject": "电费缴纳",
        "buyer_id": "2088102534368455",
        "invoice_amount": "120.50",
        "notify_id": "2024050100222091241068450559358070",
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "120.50",
        "buyer_pay_amount": "120.50",
        "app_id": "2021000000000001",
        "seller_id": "2088531891668739",
        "gmt_payment": "2024-05-01 09:12:41",
        "notify_time": "2024-05-01 09:12:42",
        "version": "1.0",
        "out_trade_no": "20240501091230f0e1d2c3b4a59687",
        "total_amount": "120.50",
        "trade_no": "2024050122001468451234567890",
        "auth_app_id": "2021000000000001",
        "buyer_logon_id": "xud***@126.com",
        "point_amount": "0.00",
        "passback_params": "0101234567",
    }
    params.update(overrides)
    return params


# ── WeChat Pay ────────────────────────────────────────────────────────────────────────────

WECHAT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
WECHAT_API_KEY = "0123456789abcdefghijklmnopqrstuv"
WECHAT_NOW = datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)


def wechat_transaction(**overrides: Any) -> dict[str, Any]:
    """A decrypted SUCCESS transaction for 120.50 yuan on account 0101234567."""
    transaction: dict[str, Any] = {
        "mchid": "1900000109",
        "appid": "wx2421b1c4370ec43b",
        "out_trade_no": "20240501095959a1b2c3d4e5f60718",
        "transaction_id": "4200002188202405010123456789",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "CMB_DEBIT",
        "attach": "0101234567",
        "success_time": "2024-05-01T09:59:59+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {
            "total": 12050,
            "payer_total": 12050,
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    transaction.update(overrides)
    return transaction


def wechat_envelope(
    plaintext: bytes,
    *,
    api_key: str = WECHAT_API_KEY,
    original_type: str = "transaction",
    event_type: str = "TRANSACTION.SUCCESS",
) -> bytes:
    """A notification body whose resource is ``plaintext`` encrypted with ``api_key``."""
    nonce = secrets.token_hex(6)
    associated = original_type
    sealed = AESGCM(api_key.encode()).encrypt(nonce.encode(), plaintext, associated.encode())
    envelope = {
        "id": "EV-2018022511223320873",
        "create_time": "2024-05-01T10:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(sealed).decode(),
            "associated_data": associated,
            "nonce": nonce,
        },
    }
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def wechat_headers(
    body: bytes,
    key: rsa.RSAPrivateKey,
    *,
    serial: str = WECHAT_SERIAL,
    timestamp: datetime = WECHAT_NOW,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers signing ``body`` as WeChat Pay does (timestamp\\nnonce\\nbody\\n)."""
    stamp = str(int(timestamp.timestamp()))
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    message = stamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
    return {
        "Content-Type": "application/json",
        "Wechatpay-Serial": serial,
        "Wechatpay-Timestamp": stamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa2_sign(key, message),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


# ── UnionPay-style online gateway ─────────────────────────────────────────────────────────

ONLINE_MERCHANT = "777290058110048"


def unionpay_params(order_id: str, amount_fen: int, **overrides: str) -> dict[str, str]:
    """A completed consumption notification for ``order_id``."""
    params = {
        "accessType": "0",
        "bizType": "000201",
        "currencyCode": "156",
        "encoding": "UTF-8",
        "merId": ONLINE_MERCHANT,
        "orderId": order_id,
        "queryId": "782405011015301234567",
        "respCode": "00",
        "respMsg": "成功[0000000]",
        "settleAmt": str(amount_fen),
        "settleCurrencyCode": "156",
        "settleDate": "0501",
        "signMethod": "01",
        "signPubKeyCert": "-----BEGIN CERTIFICATE-----\nnot trusted\n-----END CERTIFICATE-----",
        "traceNo": "123456",
        "traceTime": "0501101530",
        "txnAmt": str(amount_fen),
        "txnSubType": "01",
        "txnTime": "20240501101500",
        "txnType": "01",
        "version": "5.1.0",
        "accNo": "6216***********0018",
        "payCardType": "01",
        "reqReserved": "",
    }
    params.update(overrides)
    return params


def unionpay_body(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> bytes:
    """Sign as the gateway does: base64 SHA256withRSA over the SHA-256 hex of sorted k=v&."""
    fields = {k: v for k, v in params.items() if k != "signature"}
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")
    fields["signature"] = rsa2_sign(key, digest)
    return form_encode(fields)


def day_before(value: date) -> date:
    return value - timedelta(days=1)
