"""The ``alipay`` channel: notification, RSA2 signature check, mapping to
:class:`~paygate.models.PaymentIntent`, the business detail bill, the adapter.

Invariant: a notification reaches the core only after its signature verified against the
configured Alipay public key; Alipay is told "success" only after the core returned a receipt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import ClassVar, Final
from urllib.parse import unquote

from pydantic import Field, ValidationError, field_validator

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
from paygate.channels.errors import MerchantMismatchError, MissingAccountError, SignatureError
from paygate.channels.mobile.common import BEIJING, _Wire, wallet_settlement
from paygate.channels.signing import (
    VerifyingKey,
    canonical_string,
    decode_signature,
    load_verifying_key,
    verify_sha256_rsa,
)
from paygate.channels.wire import (
    first_validation_error,
    iter_source_lines,
    make_intent,
    make_statement_line,
    parse_form,
    parse_local_time,
    parse_money,
    shown,
    source_label,
    split_csv_line,
)
from paygate.errors import ParseError, PaygateError
from paygate.models import PaymentIntent, StatementLine, StatementLineKind
from paygate.money import Money

_log = logging.getLogger("paygate.channels.mobile")


_TEXT: Final = "text/plain; charset=utf-8"


class AlipayNotification(_Wire):
    """An Alipay asynchronous notification (the fields paygate reads), after verification."""

    notify_type: str
    notify_id: str
    notify_time: str | None = None
    app_id: str | None = None
    trade_status: str | None = None
    trade_no: str | None = None
    out_trade_no: str | None = None
    total_amount: str | None = None
    gmt_payment: str | None = None
    passback_params: str | None = None
    refund_fee: str | None = None
    gmt_refund: str | None = None


# ── signature checks ─────────────────────────────────────────────────────────────────────

ALIPAY_TRADE_NOTIFY: Final = "trade_status_sync"


def alipay_signing_string(params: Mapping[str, str]) -> str:
    """The string Alipay signed: sorted ``k=v&…`` without ``sign`` and empty values.

    Trade notifications (``notify_type=trade_status_sync``) also leave out ``sign_type``
    (Alipay's "V1" check); other notifications, such as service-market orders, keep it
    ("V2"). ``notify_type`` is itself covered by the signature, so choosing the rule by it
    gives a forger nothing.
    """
    if params.get("notify_type") == ALIPAY_TRADE_NOTIFY:
        excluded = frozenset({"sign", "sign_type"})
    else:
        excluded = frozenset({"sign"})
    return canonical_string(params, exclude=excluded, drop_empty=True)


def verify_alipay_notify(body: bytes, key: VerifyingKey, *, source: str) -> AlipayNotification:
    """Read a form-encoded Alipay notification and verify its RSA2 signature with ``key``."""
    params, charset = parse_form(body, source=source, charset_field="charset")
    sign_type = params.get("sign_type", "")
    if sign_type != "RSA2":
        raise SignatureError(
            f"sign_type {shown(sign_type)} is not accepted; RSA2 is required", field="sign_type"
        )
    signature = decode_signature(params.get("sign"), field="sign")
    # The signed bytes are the string in the charset the message declared.
    message = alipay_signing_string(params).encode(charset)
    verify_sha256_rsa(key, message, signature, field="sign")
    try:
        return AlipayNotification.model_validate(params)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source) from None


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────

ALIPAY_PAID_STATUSES: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})


def alipay_intent(
    notification: AlipayNotification, *, channel: str, currency: str
) -> PaymentIntent | None:
    """The payment an Alipay notification reports, or None when it reports no payment.

    Only ``TRADE_SUCCESS`` and ``TRADE_FINISHED`` trade notifications pay (``FINISHED``
    follows ``SUCCESS`` for the same trade and replays it). A refund notice, which Alipay
    sends as a trade notification carrying ``refund_fee``, moves no money here: refunds are
    recorded from the bill by reconciliation.
    """
    n = notification
    if n.notify_type != ALIPAY_TRADE_NOTIFY or n.trade_status not in ALIPAY_PAID_STATUSES:
        return None
    if n.refund_fee or n.gmt_refund:
        return None
    if not n.trade_no:
        raise ParseError("trade_no missing", source=channel, field="trade_no")
    if not n.total_amount:
        raise ParseError("total_amount missing", source=channel, field="total_amount")
    account_no = unquote(n.passback_params or "").strip()
    if not account_no:
        raise MissingAccountError(
            "the notification carries no account number", field="passback_params"
        )
    when = n.gmt_payment or n.notify_time
    if not when:
        raise ParseError("gmt_payment missing", source=channel, field="gmt_payment")
    return make_intent(
        channel=channel,
        channel_txn_id=n.trade_no,
        account_no=account_no,
        amount=parse_money(n.total_amount, currency, source=channel, field="total_amount"),
        paid_at=parse_local_time(
            when, "%Y-%m-%d %H:%M:%S", BEIJING, source=channel, field="gmt_payment"
        ),
        names={
            "channel_txn_id": "trade_no",
            "account_no": "passback_params",
            "amount": "total_amount",
            "paid_at": "gmt_payment",
        },
    )


ALIPAY_BILL_COLUMNS: Final = (
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）",
    "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）",
    "分润（元）", "备注",
)  # fmt: skip
"""The header of Alipay's business detail bill (业务明细), 25 columns."""

_ALIPAY_END_MARKER: Final = "业务明细列表结束"
# The amount is taken up to "元" whatever it looks like, so that a malformed one is refused
# by the amount reader (naming the line) rather than leaving the footer unchecked.
_ALIPAY_TRADE_TOTAL = re.compile(r"^#交易合计：(\d+)笔，商家实收共：([^元]*)元")
_ALIPAY_REFUND_TOTAL = re.compile(r"^#退款合计：(\d+)笔，商家实收退款共：([^元]*)元")


def read_alipay_bill(source: StatementSource, *, currency: str) -> Iterator[StatementLine]:
    """Read an Alipay business detail bill (GBK CSV) line by line.

    Layout: ``#`` preface lines, the header :data:`ALIPAY_BILL_COLUMNS`, one row per
    payment (``业务类型`` 交易) or refund (退款, with negative amounts and its refund request
    number), then ``#`` footer lines: the end marker and the totals. A payment line is
    gross = ``商家实收（元）`` and fee = the charged ``服务费（元）`` (written negative);
    a refund line is gross = the refunded amount and fee = the service fee returned, both
    in the refund's direction, so that ``net = gross - fee``. Footer totals, when present,
    are checked; a missing end marker (a truncated file) is an error at the end.
    """
    label = source_label(source)
    header_seen = False
    ended = False
    counts = {"交易": 0, "退款": 0}
    sums = {"交易": Money.zero(currency), "退款": Money.zero(currency)}
    last_line = 0
    for line_no, raw in iter_source_lines(source):
        last_line = line_no
        try:
            text = raw.decode("gbk")
        except UnicodeDecodeError:
            raise ParseError("not valid GBK", source=label, line=line_no) from None
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if header_seen:
                ended = ended or _ALIPAY_END_MARKER in stripped
                _check_alipay_total(stripped, counts, sums, currency, label, line_no)
            continue
        if ended:
            raise ParseError("data after the end of the detail list", source=label, line=line_no)
        fields = [f.strip() for f in split_csv_line(text, source=label, line=line_no)]
        if not header_seen:
            if tuple(fields) != ALIPAY_BILL_COLUMNS:
                raise ParseError("not an Alipay bill header", source=label, line=line_no)
            header_seen = True
            continue
        if len(fields) != len(ALIPAY_BILL_COLUMNS):
            raise ParseError(
                f"expected {len(ALIPAY_BILL_COLUMNS)} fields, found {len(fields)}",
                source=label,
                line=line_no,
            )
        row = dict(zip(ALIPAY_BILL_COLUMNS, fields, strict=True))
        received = parse_money(
            row["商家实收（元）"], currency, source=label, line=line_no, field="商家实收（元）"
        )
        service_fee = parse_money(
            row["服务费（元）"] or "0", currency, source=label, line=line_no, field="服务费（元）"
        )
        occurred_at = parse_local_time(
            row["完成时间"] or row["创建时间"],
            "%Y-%m-%d %H:%M:%S",
            BEIJING,
            source=label,
            line=line_no,
            field="完成时间",
        )
        kind = row["业务类型"]
        if kind not in counts:
            raise ParseError(
                f"unknown business type {shown(kind)}", source=label, line=line_no, field="业务类型"
            )
        counts[kind] += 1
        sums[kind] += received
        if kind == "交易":
            yield make_statement_line(
                line_no=line_no,
                kind=StatementLineKind.PAYMENT,
                gross=received,
                fee=-service_fee,
                occurred_at=occurred_at,
                channel_txn_id=row["支付宝交易号"],
                reference=row["商户订单号"],
                source=label,
            )
        else:
            yield make_statement_line(
                line_no=line_no,
                kind=StatementLineKind.REFUND,
                gross=-received,
                fee=service_fee,
                occurred_at=occurred_at,
                channel_txn_id=row["退款批次号/请求号"],
                original_txn_id=row["支付宝交易号"],
                reference=row["商户订单号"],
                source=label,
            )
    if not header_seen:
        raise ParseError("no Alipay bill header", source=label, line=last_line or 1)
    if not ended:
        raise ParseError(
            "no end-of-list marker: the file is truncated", source=label, line=last_line or 1
        )


def _check_alipay_total(
    text: str,
    counts: Mapping[str, int],
    sums: Mapping[str, Money],
    currency: str,
    source: str,
    line: int,
) -> None:
    for kind, pattern in (("交易", _ALIPAY_TRADE_TOTAL), ("退款", _ALIPAY_REFUND_TOTAL)):
        match = pattern.match(text)
        if match is None:
            continue
        count, amount = match.groups()
        stated = parse_money(amount, currency, source=source, line=line, field=kind)
        if int(count) != counts[kind] or stated != sums[kind]:
            raise ParseError(
                f"footer states {count} {kind} lines totalling {stated.format()}, the rows "
                f"have {counts[kind]} totalling {sums[kind].format()}",
                source=source,
                line=line,
            )


# ── the adapters ─────────────────────────────────────────────────────────────────────────


class AlipayConfig(ChannelConfig):
    """Configuration of the ``alipay`` channel."""

    alipay_public_key: str = Field(
        description="Alipay's public key for this app: PEM, or the bare base64 the console shows"
    )
    app_id: str | None = Field(
        default=None, description="when set, notifications for another app_id are refused"
    )
    settlement: SettlementRules = Field(default_factory=wallet_settlement)

    @field_validator("alipay_public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        load_verifying_key(value)
        return value


class AlipayAdapter(ChannelAdapter[AlipayConfig]):
    """Alipay asynchronous notifications (RSA2) and the business detail bill."""

    name: ClassVar[str] = "alipay"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.NOTIFY, Operation.STATEMENT})
    config_model: ClassVar[type[ChannelConfig]] = AlipayConfig

    def __init__(self, config: AlipayConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self._key = load_verifying_key(config.alipay_public_key)

    def verify_notify(self, body: bytes, headers: Mapping[str, str]) -> AlipayNotification:
        """Check size and signature of a notification and read it; nothing is posted."""
        self.check_body(body)
        notification = verify_alipay_notify(body, self._key, source=self.name)
        if self.config.app_id is not None and notification.app_id != self.config.app_id:
            raise MerchantMismatchError("notification for another app_id", field="app_id")
        return notification

    def intent_from_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentIntent | None:
        """The payment a notification reports, verified; None when it reports no payment."""
        return self._intent(self.verify_notify(body, headers))

    def _intent(self, notification: AlipayNotification) -> PaymentIntent | None:
        intent = alipay_intent(notification, channel=self.name, currency=self.config.currency)
        if intent is None:
            _log.info(
                "%s: notification %s acknowledged without posting (%s %s)",
                self.name,
                notification.notify_id,
                notification.notify_type,
                notification.trade_status,
            )
        return intent

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Answer ``success`` only after the core returned a receipt (or for a non-payment)."""
        receipt = None
        notification = None
        try:
            notification = self.verify_notify(body, headers)
            intent = self._intent(notification)
            if intent is not None:
                receipt = sink.pay(
                    self.admit(intent, field="total_amount", time_field="gmt_payment")
                )
        except HELD_ERRORS as exc:
            # Raised only for a verified notification: Alipay retries "fail" for about 25
            # hours, and no retry can supply the account.
            assert notification is not None
            return held_for_suspense(
                self.name,
                exc,
                channel_txn_id=notification.trade_no or notification.notify_id,
                body=b"success",
                content_type=_TEXT,
            )
        except PaygateError as exc:
            return refused(self.name, exc, body=b"fail", content_type=_TEXT)
        return acknowledged(receipt, body=b"success", content_type=_TEXT)

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read Alipay's business detail bill."""
        return read_alipay_bill(source, currency=self.config.currency)
