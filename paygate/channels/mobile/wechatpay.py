"""The ``wechatpay`` channel (WeChat Pay API v3): notification, signature check and
resource decryption, mapping to :class:`~paygate.models.PaymentIntent`, the trade bill, the
adapter.

Invariant: a notification reaches the core only after its signature verified against the
configured platform key, its timestamp is within the window, its nonce is new and its resource
decrypted; WeChat Pay is told "SUCCESS" only after the core returned a receipt.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, StrictInt, field_validator, model_validator

from paygate.channels.base import (
    HELD_ERRORS,
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    NotifyResult,
    Operation,
    PaymentSink,
    SettlementRules,
    StatementSource,
    acknowledged,
    held_for_suspense,
    refused,
)
from paygate.channels.errors import (
    DecryptionError,
    MerchantMismatchError,
    MissingAccountError,
    NonceReusedError,
    SignatureError,
    StaleTimestampError,
    UnknownKeyError,
)
from paygate.channels.mobile.common import BEIJING, _Wire, wallet_settlement
from paygate.channels.signing import (
    VerifyingKey,
    decode_signature,
    load_verifying_key,
    verify_sha256_rsa,
)
from paygate.channels.wire import (
    Headers,
    iter_source_lines,
    make_intent,
    make_statement_line,
    parse_local_time,
    parse_money,
    read_json_model,
    shown,
    source_label,
    split_csv_line,
)
from paygate.errors import CurrencyMismatchError, InvalidAmountError, ParseError, PaygateError
from paygate.models import PaymentIntent, StatementLine, StatementLineKind
from paygate.money import Money

_log = logging.getLogger("paygate.channels.mobile")


_JSON: Final = "application/json"


class WechatResource(_Wire):
    """The encrypted ``resource`` of a WeChat Pay v3 notification."""

    algorithm: str
    ciphertext: str
    nonce: str
    associated_data: str = ""
    original_type: str = ""


class WechatNotification(_Wire):
    """The envelope of a WeChat Pay v3 notification."""

    id: str
    event_type: str
    resource_type: str = ""
    create_time: str = ""
    summary: str = ""
    resource: WechatResource


class WechatAmount(_Wire):
    """``amount`` of a WeChat Pay transaction: integer fen."""

    total: StrictInt
    currency: str = "CNY"
    payer_total: StrictInt | None = None
    payer_currency: str | None = None


class WechatPayer(_Wire):
    """``payer`` of a transaction: ``openid`` (direct), or ``sp_openid`` / ``sub_openid``."""

    openid: str | None = None
    sp_openid: str | None = None
    sub_openid: str | None = None


class WechatTransaction(_Wire):
    """The decrypted resource of a ``transaction`` notification.

    A direct merchant's transaction names its ``mchid`` (and ``appid``); a partner-mode
    (服务商) transaction names the service provider ``sp_mchid`` / ``sp_appid`` and the
    sub-merchant ``sub_mchid`` / ``sub_appid`` it was taken for, and no ``mchid``. Exactly
    one of the two forms is accepted.
    """

    mchid: str | None = None
    appid: str | None = None
    sp_mchid: str | None = None
    sp_appid: str | None = None
    sub_mchid: str | None = None
    sub_appid: str | None = None
    payer: WechatPayer | None = None
    out_trade_no: str
    transaction_id: str | None = None
    trade_state: str
    success_time: str | None = None
    attach: str | None = None
    amount: WechatAmount

    @model_validator(mode="after")
    def _one_merchant_form(self) -> WechatTransaction:
        partner = self.sp_mchid is not None or self.sub_mchid is not None
        if partner and self.mchid is not None:
            raise ValueError("a transaction is either direct (mchid) or partner (sp_mchid)")
        if partner and not (self.sp_mchid and self.sub_mchid):
            raise ValueError("a partner-mode transaction names both sp_mchid and sub_mchid")
        if not partner and not self.mchid:
            raise ValueError("a transaction names its merchant: mchid, or sp_mchid and sub_mchid")
        return self

    @property
    def partner(self) -> bool:
        """True for a partner-mode (服务商) transaction."""
        return self.sp_mchid is not None


def wechat_signed_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What WeChat Pay signs: ``timestamp\\nnonce\\nbody\\n`` (the body byte for byte)."""
    return timestamp.encode("utf-8") + b"\n" + nonce.encode("utf-8") + b"\n" + body + b"\n"


def decrypt_wechat_resource(resource: WechatResource, key: bytes, *, source: str) -> bytes:
    """Decrypt ``resource`` with the API v3 key (AES-GCM, associated data, 16-byte tag)."""
    if resource.algorithm != "AEAD_AES_256_GCM":
        raise ParseError(
            f"unsupported algorithm {shown(resource.algorithm)}",
            source=source,
            field="resource.algorithm",
        )
    try:
        ciphertext = base64.b64decode(resource.ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(
            "ciphertext is not base64", source=source, field="resource.ciphertext"
        ) from None
    nonce = resource.nonce.encode("utf-8")
    if not 8 <= len(nonce) <= 128:
        raise ParseError("nonce of unusable length", source=source, field="resource.nonce")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, resource.associated_data.encode("utf-8"))
    except InvalidTag:
        raise DecryptionError(
            "resource does not decrypt with the API v3 key", field="resource"
        ) from None


def wechat_intent(
    transaction: WechatTransaction, *, channel: str, currency: str
) -> PaymentIntent | None:
    """The payment a decrypted WeChat Pay transaction reports; None unless it succeeded."""
    t = transaction
    if t.trade_state != "SUCCESS":
        return None
    if t.amount.currency != currency:
        raise CurrencyMismatchError(
            f"paid in {shown(t.amount.currency)}, the channel takes {currency}",
            field="amount.currency",
        )
    if t.amount.total <= 0:
        raise InvalidAmountError("amount.total must be positive", field="amount.total")
    if not t.transaction_id:
        raise ParseError("transaction_id missing", source=channel, field="transaction_id")
    account_no = (t.attach or "").strip()
    if not account_no:
        raise MissingAccountError("the notification carries no account number", field="attach")
    if not t.success_time:
        raise ParseError("success_time missing", source=channel, field="success_time")
    try:
        paid_at = datetime.fromisoformat(t.success_time)
    except ValueError:
        raise ParseError(
            "success_time is not RFC 3339", source=channel, field="success_time"
        ) from None
    if paid_at.tzinfo is None:
        raise ParseError("success_time has no offset", source=channel, field="success_time")
    return make_intent(
        channel=channel,
        channel_txn_id=t.transaction_id,
        account_no=account_no,
        amount=Money(t.amount.total, currency),
        paid_at=paid_at,
        names={
            "channel_txn_id": "transaction_id",
            "account_no": "attach",
            "paid_at": "success_time",
        },
    )


WECHAT_SIGNATURE_HEADERS: Final = (
    "Wechatpay-Serial",
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
)


def verify_wechat_signature(
    body: bytes,
    headers: Mapping[str, str],
    keys: Mapping[str, VerifyingKey],
    *,
    now: datetime,
    window: timedelta,
    source: str,
) -> tuple[datetime, str]:
    """Check a WeChat Pay v3 message's ``Wechatpay-*`` signature headers over ``body``.

    ``keys`` maps a platform key's serial (upper case) to the key. The key must be known and
    valid now, the signature must verify, and the signed timestamp must be within ``window``
    of ``now``. Returns when WeChat Pay signed it and its nonce (the caller remembers nonces
    where replays matter: notifications). Both notifications and API answers are signed so.
    """
    h = Headers(headers, source=source)
    values = {}
    for header in WECHAT_SIGNATURE_HEADERS:
        value = h.get(header)
        if not value:
            raise SignatureError(f"header {header} missing", field=header)
        values[header] = value
    serial = values["Wechatpay-Serial"].strip().upper()
    key = keys.get(serial)
    if key is None:
        raise UnknownKeyError(
            f"no platform key with serial {shown(serial)}", field="Wechatpay-Serial"
        )
    if not key.valid_at(now):
        raise UnknownKeyError(
            f"platform certificate {shown(serial)} is outside its validity period",
            field="Wechatpay-Serial",
        )
    timestamp, nonce = values["Wechatpay-Timestamp"], values["Wechatpay-Nonce"]
    signature = decode_signature(values["Wechatpay-Signature"], field="Wechatpay-Signature")
    verify_sha256_rsa(
        key, wechat_signed_message(timestamp, nonce, body), signature, field="Wechatpay-Signature"
    )
    # Signed from here on: the timestamp and nonce are WeChat Pay's, not a forger's.
    # Ten digits reach the year 2286; more cannot be a real clock and would overflow.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 10):
        raise ParseError(
            "timestamp is not Unix seconds", source=source, field="Wechatpay-Timestamp"
        )
    sent = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - sent) > window:
        raise StaleTimestampError(
            f"timestamp {sent.isoformat()} is more than {window} from now",
            field="Wechatpay-Timestamp",
        )
    return sent, nonce


# ── statement readers ────────────────────────────────────────────────────────────────────

WECHAT_BILL_COLUMNS: Final = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
)  # fmt: skip
"""The header of WeChat Pay's trade bill (``bill_type=ALL``), 27 columns."""

WECHAT_SUMMARY_COLUMNS: Final = (
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额",
)  # fmt: skip
"""The header of the trade bill's summary section."""

# Refund states in which WeChat Pay has taken the money back from the merchant; a refund
# closed without refunding (REFUNDCLOSE) moved nothing and yields no line.
# The bill writes fees with five decimals ("0.72000"); they are whole fen all the same.
_WECHAT_DECIMALS: Final = {"手续费": 5, "手续费总金额": 5}

_WECHAT_REFUND_TAKEN: Final = frozenset({"SUCCESS", "PROCESSING", "CHANGE"})
_WECHAT_REFUND_NOTHING: Final = frozenset({"REFUNDCLOSE"})


def _wechat_fields(text: str, *, source: str, line: int) -> list[str]:
    # Every field is prefixed with a backtick so that spreadsheets keep long numbers as text.
    fields = split_csv_line(text, source=source, line=line)
    return [f[1:].strip() if f.startswith("`") else f.strip() for f in fields]


def read_wechat_trade_bill(source: StatementSource, *, currency: str) -> Iterator[StatementLine]:
    """Read a WeChat Pay trade bill (UTF-8 CSV) line by line.

    Layout: a header of :data:`WECHAT_BILL_COLUMNS`, one row per payment (``交易状态``
    SUCCESS) or refund (REFUND, with its own refund ids and amount), then the summary
    header :data:`WECHAT_SUMMARY_COLUMNS` and one summary row. Amounts are yuan; the fee
    column has five decimals but must be whole fen. A payment line is gross =
    ``应结订单金额``, fee = ``手续费``; a refund line is gross = ``退款金额`` and fee = the fee
    returned (the negated ``手续费``), both in the refund's direction, so that
    ``net = gross - fee`` is what the refund takes back. The summary's count and totals are
    checked against the rows; a missing summary (a truncated file) is an error at the end.
    """
    label = source_label(source)
    header_seen = in_summary = summary_checked = False
    rows = 0
    totals = (Money.zero(currency), Money.zero(currency), Money.zero(currency))
    last_line = 0
    for line_no, raw in iter_source_lines(source):
        last_line = line_no
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("not valid UTF-8", source=label, line=line_no) from None
        if not text.strip():
            continue
        fields = _wechat_fields(text, source=label, line=line_no)
        if not header_seen:
            if tuple(fields) != WECHAT_BILL_COLUMNS:
                raise ParseError("not a WeChat Pay trade bill header", source=label, line=line_no)
            header_seen = True
        elif summary_checked:
            raise ParseError("data after the summary row", source=label, line=line_no)
        elif in_summary:
            _check_wechat_summary(
                fields, rows=rows, totals=totals, currency=currency, source=label, line=line_no
            )
            summary_checked = True
        elif tuple(fields) == WECHAT_SUMMARY_COLUMNS:
            in_summary = True
        else:
            if len(fields) != len(WECHAT_BILL_COLUMNS):
                raise ParseError(
                    f"expected {len(WECHAT_BILL_COLUMNS)} fields, found {len(fields)}",
                    source=label,
                    line=line_no,
                )
            row = dict(zip(WECHAT_BILL_COLUMNS, fields, strict=True))
            settled, refunded, fee = (
                parse_money(
                    row[column],
                    currency,
                    source=label,
                    line=line_no,
                    field=column,
                    written_decimals=_WECHAT_DECIMALS.get(column),
                )
                for column in ("应结订单金额", "退款金额", "手续费")
            )
            # Every row counts towards the summary, including those that yield no line.
            rows += 1
            totals = (totals[0] + settled, totals[1] + refunded, totals[2] + fee)
            line = _wechat_line(
                row, settled, refunded, fee, currency=currency, source=label, line_no=line_no
            )
            if line is not None:
                yield line
    if not header_seen:
        raise ParseError("empty file: no trade bill header", source=label, line=last_line or 1)
    if not summary_checked:
        raise ParseError("no summary row: the file is truncated", source=label, line=last_line or 1)


def _wechat_line(
    row: Mapping[str, str],
    settled: Money,
    refunded: Money,
    fee: Money,
    *,
    currency: str,
    source: str,
    line_no: int,
) -> StatementLine | None:
    """The statement line of one trade bill row; None for a refund that moved nothing."""
    if row["货币种类"] != currency:
        raise ParseError(
            f"currency {shown(row['货币种类'])}, the channel takes {currency}",
            source=source,
            line=line_no,
            field="货币种类",
        )
    occurred_at = parse_local_time(
        row["交易时间"], "%Y-%m-%d %H:%M:%S", BEIJING, source=source, line=line_no, field="交易时间"
    )
    status = row["交易状态"]
    if status == "SUCCESS":
        return make_statement_line(
            line_no=line_no,
            kind=StatementLineKind.PAYMENT,
            gross=settled,
            fee=fee,
            occurred_at=occurred_at,
            channel_txn_id=row["微信订单号"],
            account_no=row["商户数据包"],
            reference=row["商户订单号"],
            source=source,
        )
    if status != "REFUND":
        raise ParseError(
            f"unknown trade state {shown(status)}", source=source, line=line_no, field="交易状态"
        )
    refund_state = row["退款状态"]
    if refund_state in _WECHAT_REFUND_NOTHING:
        return None
    if refund_state not in _WECHAT_REFUND_TAKEN:
        raise ParseError(
            f"unknown refund state {shown(refund_state)}",
            source=source,
            line=line_no,
            field="退款状态",
        )
    if not row["微信退款单号"]:
        raise ParseError(
            "refund without a refund id", source=source, line=line_no, field="微信退款单号"
        )
    return make_statement_line(
        line_no=line_no,
        kind=StatementLineKind.REFUND,
        gross=refunded,
        fee=-fee,
        occurred_at=occurred_at,
        channel_txn_id=row["微信退款单号"],
        account_no=row["商户数据包"],
        original_txn_id=row["微信订单号"],
        reference=row["商户退款单号"],
        source=source,
    )


def _check_wechat_summary(
    fields: list[str],
    *,
    rows: int,
    totals: tuple[Money, Money, Money],
    currency: str,
    source: str,
    line: int,
) -> None:
    if len(fields) != len(WECHAT_SUMMARY_COLUMNS):
        raise ParseError("malformed summary row", source=source, line=line)
    summary = dict(zip(WECHAT_SUMMARY_COLUMNS, fields, strict=True))
    if summary["总交易单数"] != str(rows):
        raise ParseError(
            f"summary counts {summary['总交易单数']} rows, the file has {rows}",
            source=source,
            line=line,
            field="总交易单数",
        )
    for column, total in zip(("应结订单总金额", "退款总金额", "手续费总金额"), totals, strict=True):
        stated = parse_money(
            summary[column],
            currency,
            source=source,
            line=line,
            field=column,
            written_decimals=_WECHAT_DECIMALS.get(column),
        )
        if stated != total:
            raise ParseError(
                f"summary states {stated.format()}, the rows add up to {total.format()}",
                source=source,
                line=line,
                field=column,
            )


class WechatPayConfig(ChannelConfig):
    """Configuration of the ``wechatpay`` channel."""

    api_v3_key: SecretStr = Field(description="the merchant's API v3 key (32 bytes)")
    platform_keys: dict[str, str] = Field(
        min_length=1,
        description="serial → platform certificate (PEM) or WeChat Pay public key (PEM)",
    )
    mchid: str | None = Field(
        default=None, description="when set, transactions of another merchant are refused"
    )
    sp_mchid: str | None = Field(
        default=None,
        description="partner mode (服务商): the service provider's merchant id; partner-mode "
        "transactions are accepted only when it is set and equal",
    )
    sub_mchids: frozenset[str] = Field(
        default=frozenset(),
        description="partner mode: the sub-merchants (the utility's) whose transactions are "
        "accepted; required with sp_mchid",
    )
    timestamp_window: timedelta = Field(default=timedelta(minutes=5))
    settlement: SettlementRules = Field(default_factory=wallet_settlement)

    @field_validator("api_v3_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        # The platform issues 32-byte keys (AES-256); the published test vectors use 16.
        if len(value.get_secret_value().encode("utf-8")) not in (16, 24, 32):
            raise ValueError("the API v3 key must be 32 bytes (16 or 24 for test vectors)")
        return value

    @field_validator("platform_keys")
    @classmethod
    def _platform_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for serial, text in value.items():
            key = load_verifying_key(text)
            if key.certificate is not None:
                try:
                    number = int(serial, 16)
                except ValueError:
                    number = -1
                if number != key.certificate.serial_number:
                    raise ValueError(f"serial {serial!r} is not the certificate's serial")
        return {serial.strip().upper(): text for serial, text in value.items()}

    @field_validator("timestamp_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=15):
            raise ValueError("the timestamp window must be positive and at most 15 minutes")
        return value

    @model_validator(mode="after")
    def _partner(self) -> WechatPayConfig:
        if (self.sp_mchid is None) != (not self.sub_mchids):
            raise ValueError("partner mode needs both sp_mchid and sub_mchids")
        return self


class WechatPayAdapter(ChannelAdapter[WechatPayConfig]):
    """WeChat Pay API v3 notifications (SHA256withRSA, AES-GCM) and the trade bill."""

    name: ClassVar[str] = "wechatpay"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.NOTIFY, Operation.STATEMENT})
    config_model: ClassVar[type[ChannelConfig]] = WechatPayConfig

    def __init__(self, config: WechatPayConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self._keys = {
            serial: load_verifying_key(text) for serial, text in config.platform_keys.items()
        }
        self._api_key = config.api_v3_key.get_secret_value().encode("utf-8")

    def verify_notify(self, body: bytes, headers: Mapping[str, str]) -> WechatNotification:
        """Check size, signature, timestamp and nonce, then read the envelope."""
        self.check_body(body)
        now = self.context.clock.now()
        sent, nonce = verify_wechat_signature(
            body,
            headers,
            self._keys,
            now=now,
            window=self.config.timestamp_window,
            source=self.name,
        )
        # Remembered only now that the signature verified, so forgeries cannot fill the store.
        window = self.config.timestamp_window
        if not self.context.nonces.add(f"{self.name}:{nonce}", expires_at=sent + window, now=now):
            raise NonceReusedError("nonce already used", field="Wechatpay-Nonce")
        return read_json_model(WechatNotification, body, source=self.name)

    def open_notify(self, notification: WechatNotification) -> WechatTransaction | None:
        """Decrypt the resource; the transaction it holds, or None for other resources."""
        plaintext = decrypt_wechat_resource(notification.resource, self._api_key, source=self.name)
        if notification.resource.original_type != "transaction":
            return None
        transaction = read_json_model(WechatTransaction, plaintext, source=self.name)
        self._check_merchant(transaction)
        return transaction

    def _check_merchant(self, transaction: WechatTransaction) -> None:
        config = self.config
        if transaction.partner:
            # Only the configured service provider, and only for the utility's own
            # sub-merchants: another sub-merchant's money is not ours to post.
            if config.sp_mchid is None:
                raise MerchantMismatchError(
                    "a partner-mode transaction, and no sp_mchid is configured", field="sp_mchid"
                )
            if transaction.sp_mchid != config.sp_mchid:
                raise MerchantMismatchError(
                    "transaction of another service provider", field="sp_mchid"
                )
            if transaction.sub_mchid not in config.sub_mchids:
                raise MerchantMismatchError(
                    "transaction of a sub-merchant that is not configured", field="sub_mchid"
                )
            return
        if config.mchid is not None and transaction.mchid != config.mchid:
            raise MerchantMismatchError("transaction of another merchant", field="mchid")
        if config.mchid is None and config.sp_mchid is not None:
            raise MerchantMismatchError(
                "a direct transaction, and this channel is configured for partner mode",
                field="mchid",
            )

    def intent_from_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentIntent | None:
        """The payment a notification reports, verified; None when it reports no payment."""
        notification = self.verify_notify(body, headers)
        return self._intent(notification, self.open_notify(notification))

    def _intent(
        self, notification: WechatNotification, transaction: WechatTransaction | None
    ) -> PaymentIntent | None:
        intent = None
        if transaction is not None:
            intent = wechat_intent(transaction, channel=self.name, currency=self.config.currency)
        if intent is None:
            _log.info(
                "%s: notification %s acknowledged without posting (%s)",
                self.name,
                notification.id,
                notification.event_type,
            )
        return intent

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """204 with no body once the core returned a receipt; JSON ``FAIL`` otherwise."""
        receipt = None
        transaction = None
        try:
            notification = self.verify_notify(body, headers)
            transaction = self.open_notify(notification)
            intent = self._intent(notification, transaction)
            if intent is not None:
                receipt = sink.pay(
                    self.admit(intent, field="amount.total", time_field="success_time")
                )
        except HELD_ERRORS as exc:
            # Raised only for a decrypted, verified transaction; WeChat Pay would retry a
            # FAIL for a day, and no retry can supply the account.
            assert transaction is not None
            return held_for_suspense(
                self.name,
                exc,
                channel_txn_id=transaction.transaction_id or transaction.out_trade_no,
                body=b"",
                content_type=None,
                status_code=204,
            )
        except PaygateError as exc:
            answer = {"code": "FAIL", "message": f"{exc.code}: {exc}"}
            return refused(self.name, exc, body=_json(answer), content_type=_JSON)
        return acknowledged(receipt, body=b"", content_type=None, status_code=204)

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read WeChat Pay's trade bill."""
        return read_wechat_trade_bill(source, currency=self.config.currency)


def _json(value: Mapping[str, str]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
