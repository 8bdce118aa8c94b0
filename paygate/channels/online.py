"""Online payment: a web / bank-card gateway of the UnionPay family — order first, then notify.

Invariant: a payment is posted only for an order this utility created, for exactly the
order's amount and currency, from a notification whose signature verified against the
configured gateway key; the account number comes from the stored order, never from the
message. The gateway is answered ``ok`` only after the core returned a receipt.

Flow: :meth:`OnlineAdapter.create_order` fixes account and amount with an expiry and gives
the order id that the customer's browser carries to the gateway (``orderId``, with
``txnTime`` the order's creation time in Beijing time and ``payTimeout`` its expiry). The
gateway then posts a server-to-server notification to the back URL, which the HTTP layer
hands to :meth:`OnlineAdapter.handle_notify`. The gateway's transaction id ``queryId`` is
the payment's channel transaction id; a repeated notification replays the same receipt.

The module reads top to bottom: wire model, signature check, mapping to
:class:`~paygate.models.PaymentIntent`, statement reader, settlement rules, the adapter.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, time, timedelta
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paygate.channels.base import (
    HELD_ERRORS,
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    FeeSchedule,
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
    AmountMismatchError,
    MerchantMismatchError,
    OrderExpiredError,
    SignatureError,
    UnknownPaymentOrderError,
)
from paygate.channels.orders import (
    InMemoryOrderStore,
    Order,
    OrderStore,
    new_order,
)
from paygate.channels.signing import (
    VerifyingKey,
    canonical_string,
    decode_signature,
    load_verifying_key,
    verify_sha256_rsa,
)
from paygate.channels.wire import (
    csv_statement_rows,
    first_validation_error,
    make_intent,
    make_statement_line,
    parse_form,
    parse_local_time,
    shown,
    source_label,
)
from paygate.clock import require_aware
from paygate.errors import (
    ConfigurationError,
    CurrencyMismatchError,
    InvalidStateError,
    ParseError,
    PaygateError,
)
from paygate.models import PaymentIntent, StatementLine, StatementLineKind
from paygate.money import Money

__all__ = [
    "NUMERIC_CURRENCIES",
    "ONLINE_STATEMENT_COLUMNS",
    "InMemoryOrderStore",
    "OnlineAdapter",
    "OnlineConfig",
    "Order",
    "OrderStore",
    "UnionPayNotification",
    "completion_time",
    "online_settlement",
    "read_online_statement",
    "unionpay_signed_digest",
    "verify_unionpay_notify",
]

_log = logging.getLogger("paygate.channels.online")

BEIJING: Final = ZoneInfo("Asia/Shanghai")
_TEXT: Final = "text/plain; charset=utf-8"

NUMERIC_CURRENCIES: Final[Mapping[str, str]] = {
    "CNY": "156",
    "HKD": "344",
    "MOP": "446",
    "TWD": "901",
    "USD": "840",
    "EUR": "978",
    "GBP": "826",
    "CAD": "124",
    "AUD": "036",
    "SGD": "702",
    "CHF": "756",
    "JPY": "392",
    "KRW": "410",
    "VND": "704",
    "BHD": "048",
    "KWD": "414",
    "JOD": "400",
    "OMR": "512",
    "TND": "788",
}
"""ISO 4217 numeric codes, as the gateway writes ``currencyCode``."""


# ── wire model ───────────────────────────────────────────────────────────────────────────


class UnionPayNotification(BaseModel):
    """A gateway notification (the fields paygate reads), after verification."""

    # The gateway adds fields by product; unknown ones are ignored, known ones checked.
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    sign_method: str = Field(alias="signMethod")
    txn_type: str = Field(alias="txnType")
    txn_sub_type: str = Field(default="", alias="txnSubType")
    mer_id: str = Field(alias="merId")
    order_id: str = Field(alias="orderId")
    txn_time: str = Field(alias="txnTime")
    trace_time: str | None = Field(default=None, alias="traceTime")
    txn_amt: str = Field(alias="txnAmt")
    currency_code: str = Field(default="156", alias="currencyCode")
    query_id: str = Field(alias="queryId")
    resp_code: str = Field(alias="respCode")
    resp_msg: str = Field(default="", alias="respMsg")
    orig_qry_id: str | None = Field(default=None, alias="origQryId")


# ── signature check ──────────────────────────────────────────────────────────────────────

UNIONPAY_VERSION: Final = "5.1.0"
UNIONPAY_SIGN_METHOD_RSA: Final = "01"


def unionpay_signed_digest(params: Mapping[str, str], charset: str) -> bytes:
    """What the gateway signs: the lower-case SHA-256 hex of sorted ``k=v&…``.

    Every field except ``signature`` takes part, empty ones included, values as received.
    """
    text = canonical_string(params, exclude=frozenset({"signature"}), drop_empty=False)
    return hashlib.sha256(text.encode(charset)).hexdigest().encode("ascii")


def verify_unionpay_notify(
    body: bytes, keys: tuple[VerifyingKey, ...], *, source: str
) -> UnionPayNotification:
    """Read a form-encoded notification and verify its signature with a configured key.

    The certificate the message carries (``signPubKeyCert``) is not trusted: only the
    keys configured for the adapter verify, so a forger's own certificate proves nothing.
    """
    params, charset = parse_form(body, source=source, charset_field="encoding")
    if params.get("version") != UNIONPAY_VERSION:
        raise SignatureError(
            f"version {shown(params.get('version', ''))} is not accepted; "
            f"{UNIONPAY_VERSION} is required",
            field="version",
        )
    if params.get("signMethod") != UNIONPAY_SIGN_METHOD_RSA:
        raise SignatureError(
            f"signMethod {shown(params.get('signMethod', ''))} is not accepted; "
            f"{UNIONPAY_SIGN_METHOD_RSA} (RSA) is required",
            field="signMethod",
        )
    signature = decode_signature(params.get("signature"), field="signature")
    verify_sha256_rsa(keys, unionpay_signed_digest(params, charset), signature, field="signature")
    try:
        return UnionPayNotification.model_validate(params)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source) from None


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────

UNIONPAY_SUCCESS: Final = frozenset({"00", "A6"})
"""Response codes of a completed transaction (A6: completed with a minor discrepancy)."""
CONSUME: Final = "01"
REFUND: Final = "04"
VOID: Final = "31"


def _minor_units(text: str, *, source: str, field: str, signed: bool = False) -> int:
    digits = text[1:] if signed and text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 15):
        raise ParseError(f"not an amount in minor units: {shown(text)}", source=source, field=field)
    return int(text)


def order_intent(
    notification: UnionPayNotification,
    order: Order | None,
    *,
    channel: str,
    now: datetime,
    late_window: timedelta,
) -> PaymentIntent:
    """The payment a consumption notification reports for ``order``, or the refusal."""
    n = notification
    if order is None or order.channel != channel:
        raise UnknownPaymentOrderError(f"no order {shown(n.order_id)}", field="orderId")
    if order.expired(now, grace=late_window):
        raise OrderExpiredError(
            f"order {order.order_id!r} expired at {order.expires_at.isoformat()}", field="orderId"
        )
    currency = order.amount.currency
    if n.currency_code != NUMERIC_CURRENCIES.get(currency):
        raise CurrencyMismatchError(
            f"currencyCode {shown(n.currency_code)}, the order is in {currency}",
            field="currencyCode",
        )
    amount = Money(_minor_units(n.txn_amt, source=channel, field="txnAmt"), currency)
    if amount != order.amount:
        raise AmountMismatchError(
            f"notified {amount.format()}, the order fixed {order.amount.format()}",
            field="txnAmt",
        )
    return make_intent(
        channel=channel,
        channel_txn_id=n.query_id,
        account_no=order.account_no,
        amount=amount,
        paid_at=completion_time(n, source=channel),
        names={"channel_txn_id": "queryId", "amount": "txnAmt", "paid_at": "traceTime"},
    )


def completion_time(notification: UnionPayNotification, *, source: str) -> datetime:
    """When the gateway completed the payment: ``traceTime`` (``MMDDhhmmss``, Beijing time).

    ``txnTime`` is when the merchant sent the order, which may be before midnight while the
    customer pays after it; the gateway settles the payment on the day of ``traceTime``, so
    that is the payment's time. ``traceTime`` carries no year: it is the year of ``txnTime``,
    or the next one when the order was sent at the turn of the year and paid after it.
    """
    n = notification
    ordered = parse_local_time(n.txn_time, "%Y%m%d%H%M%S", BEIJING, source=source, field="txnTime")
    if not n.trace_time:
        raise ParseError("traceTime missing", source=source, field="traceTime")
    text = n.trace_time
    if not (len(text) == 10 and text.isascii() and text.isdigit()):
        raise ParseError(
            f"not a time in the form MMDDhhmmss: {shown(text)}", source=source, field="traceTime"
        )
    refusal = ParseError(
        f"traceTime {shown(text)} is not within {_PAY_WITHIN.days} days after txnTime "
        f"{shown(n.txn_time)}",
        source=source,
        field="traceTime",
    )
    for year in (ordered.year, ordered.year + 1):
        try:
            done = parse_local_time(
                f"{year}{text}", "%Y%m%d%H%M%S", BEIJING, source=source, field="traceTime"
            )
        except ParseError as exc:
            refusal = exc  # not a date that year (month 13, 29 February), or out of range
            continue
        # Paid after the order was sent (the two clocks may differ a little), and long
        # before a year has passed: no order lives that long.
        if ordered - _CLOCK_SLACK <= done <= ordered + _PAY_WITHIN:
            return done
    raise refusal


_CLOCK_SLACK: Final = timedelta(minutes=10)
_HELD: Final[tuple[type[PaygateError], ...]] = (*HELD_ERRORS, UnknownPaymentOrderError)
_PAY_WITHIN: Final = timedelta(days=31)


# ── statement reader ─────────────────────────────────────────────────────────────────────

ONLINE_STATEMENT_COLUMNS: Final = (
    "orderId",
    "queryId",
    "txnType",
    "txnAmt",
    "fee",
    "txnTime",
    "origQryId",
)
"""The header of the gateway's settlement CSV."""

_STATEMENT_KINDS: Final[Mapping[str, StatementLineKind]] = {
    CONSUME: StatementLineKind.PAYMENT,
    REFUND: StatementLineKind.REFUND,
    VOID: StatementLineKind.VOID,
}


def read_online_statement(source: StatementSource, *, currency: str) -> Iterator[StatementLine]:
    """Read the gateway's settlement CSV (UTF-8) line by line.

    Layout: the header :data:`ONLINE_STATEMENT_COLUMNS`, then one row per transaction:
    ``txnType`` 01 (payment), 04 (refund) or 31 (void); ``txnAmt`` and ``fee`` in minor
    units as in the notification, ``txnAmt`` positive and the direction given by
    ``txnType``, ``fee`` in the same direction (the fee returned, for a refund or void);
    ``txnTime`` ``YYYYMMDDhhmmss`` in Beijing time; ``origQryId`` the original payment of a
    refund or void. ``queryId`` is the line's channel transaction id, ``orderId`` its reference.
    """
    label = source_label(source)
    for line_no, row in csv_statement_rows(
        source, ONLINE_STATEMENT_COLUMNS, what="an online statement"
    ):
        kind = _STATEMENT_KINDS.get(row["txnType"])
        if kind is None:
            raise ParseError(
                f"unknown txnType {shown(row['txnType'])}",
                source=label,
                line=line_no,
                field="txnType",
            )
        if not row["queryId"]:
            raise ParseError("queryId missing", source=label, line=line_no, field="queryId")
        if kind is not StatementLineKind.PAYMENT and not row["origQryId"]:
            raise ParseError(
                "a refund or void names no origQryId",
                source=label,
                line=line_no,
                field="origQryId",
            )
        try:
            gross = Money(_minor_units(row["txnAmt"], source=label, field="txnAmt"), currency)
            fee = Money(_minor_units(row["fee"], source=label, field="fee", signed=True), currency)
        except ParseError as exc:
            raise ParseError(exc.message, source=label, line=line_no, field=exc.field) from None
        yield make_statement_line(
            line_no=line_no,
            kind=kind,
            gross=gross,
            fee=fee,
            occurred_at=parse_local_time(
                row["txnTime"],
                "%Y%m%d%H%M%S",
                BEIJING,
                source=label,
                line=line_no,
                field="txnTime",
            ),
            channel_txn_id=row["queryId"],
            original_txn_id=row["origQryId"],
            reference=row["orderId"],
            source=label,
        )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def online_settlement() -> SettlementRules:
    """The gateway's clearing day closes at 23:00 Beijing time; T+1; 0.5 % by default.

    0.5 % is a debit-card mix; the contracted rate goes in
    ``[reconcile.channels.online.settlement]``. Reconciliation books the fee each statement
    line carries, so the rate describes the channel and never decides a posting.
    """
    return SettlementRules(
        cutoff=time(23, 0), lag_days=1, grace_days=2, fee=FeeSchedule(rate_ppm=5000)
    )


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class OnlineConfig(ChannelConfig):
    """Configuration of the ``online`` channel."""

    merchant_id: str = Field(min_length=1, description="merId: notifications for others fail")
    gateway_public_keys: tuple[str, ...] = Field(
        min_length=1,
        max_length=4,
        description="the gateway's signing certificate(s) or public key(s), PEM; "
        "several while the gateway rotates its key",
    )
    order_ttl: timedelta = Field(default=timedelta(minutes=15))
    late_notify_window: timedelta = Field(
        default=timedelta(hours=1),
        description="how long after an order's expiry its notification is still accepted "
        "(the gateway retries a notification that was not answered)",
    )
    settlement: SettlementRules = Field(default_factory=online_settlement)

    @field_validator("gateway_public_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            load_verifying_key(text)
        return value

    @field_validator("order_ttl")
    @classmethod
    def _ttl(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(days=1):
            raise ValueError("order_ttl must be positive and at most one day")
        return value

    @field_validator("late_notify_window")
    @classmethod
    def _late(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=7):
            raise ValueError("late_notify_window must be between zero and seven days")
        return value


class OnlineAdapter(ChannelAdapter[OnlineConfig]):
    """A UnionPay-style gateway: payment orders, signed notifications, settlement CSV.

    Answers: ``200 ok`` once the core returned a receipt (or for a notification that moves
    no money); ``fail`` with a 4xx/5xx status otherwise. The gateway treats anything but
    HTTP 200 as "not received" and retries, so the body is for people reading logs.
    """

    name: ClassVar[str] = "online"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.ORDER, Operation.NOTIFY, Operation.STATEMENT}
    )
    config_model: ClassVar[type[ChannelConfig]] = OnlineConfig

    def __init__(self, config: OnlineConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        if self.context.orders is None:
            raise ConfigurationError(
                "channel 'online' needs an order store (AdapterContext.orders)", field="orders"
            )
        self._orders: OrderStore = self.context.orders
        self._keys = tuple(load_verifying_key(text) for text in config.gateway_public_keys)

    def create_order(self, account_no: str, amount: Money, *, now: datetime) -> Order:
        """Store and return a new order for ``amount`` on ``account_no``, expiring after the TTL."""
        now = require_aware(now, "now")
        if isinstance(amount, Money) and amount.currency != self.config.currency:
            raise CurrencyMismatchError(
                f"the channel takes {self.config.currency}, not {amount.currency}",
                field="amount",
            )
        order = new_order(self.name, account_no, amount, now=now, ttl=self.config.order_ttl)
        self._orders.put(order)
        return order

    def verify_notify(self, body: bytes, headers: Mapping[str, str]) -> UnionPayNotification:
        """Check size and signature of a notification and read it; nothing is posted."""
        self.check_body(body)
        notification = verify_unionpay_notify(body, self._keys, source=self.name)
        if notification.mer_id != self.config.merchant_id:
            raise MerchantMismatchError("notification for another merchant", field="merId")
        return notification

    def intent_from_notify(self, notification: UnionPayNotification) -> PaymentIntent:
        """The payment a verified consumption notification reports, checked against its order."""
        return order_intent(
            notification,
            self._orders.get(notification.order_id),
            channel=self.name,
            now=self.context.clock.now(),
            late_window=self.config.late_notify_window,
        )

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Post a completed payment, reverse a completed void, acknowledge the rest.

        A refund confirmation moves no money here (it may be partial; reconciliation records
        it from the statement); a void is a full same-day cancellation, so the original
        payment is reversed.
        """
        n = None
        try:
            n = self.verify_notify(body, headers)
            receipt = None
            if n.resp_code not in UNIONPAY_SUCCESS:
                _log.info(
                    "%s: %s not completed (%s); nothing posted", self.name, n.query_id, n.resp_code
                )
            elif n.txn_type == CONSUME:
                receipt = sink.pay(
                    self.admit(self.intent_from_notify(n), field="txnAmt", time_field="traceTime")
                )
            elif n.txn_type == VOID:
                if not n.orig_qry_id:
                    raise ParseError(
                        "a void names no origQryId", source=self.name, field="origQryId"
                    )
                self._reverse(sink, n.orig_qry_id, f"void {n.query_id}")
            elif n.txn_type == REFUND:
                _log.info(
                    "%s: refund %s acknowledged; recorded from the statement", self.name, n.query_id
                )
            else:
                raise ParseError(
                    f"txnType {shown(n.txn_type)} is not handled", source=self.name, field="txnType"
                )
        except _HELD as exc:
            # A verified payment whose order or account paygate cannot find: the gateway
            # would retry "fail" for hours, and no retry can find them.
            assert n is not None
            return held_for_suspense(
                self.name, exc, channel_txn_id=n.query_id, body=b"ok", content_type=_TEXT
            )
        except PaygateError as exc:
            return refused(self.name, exc, body=b"fail", content_type=_TEXT)
        return acknowledged(receipt, body=b"ok", content_type=_TEXT)

    def _reverse(self, sink: PaymentSink, channel_txn_id: str, reason: str) -> None:
        try:
            sink.reverse_by_channel_txn(self.name, channel_txn_id, reason)
        except InvalidStateError as exc:
            # The payment is no longer posted: a repeated void notification after the first
            # reversed it. Answering "fail" would only make the gateway retry for nothing.
            _log.info("%s: %s not reversed again: %r", self.name, channel_txn_id, str(exc))

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the gateway's settlement CSV."""
        return read_online_statement(source, currency=self.config.currency)
