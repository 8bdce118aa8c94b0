"""24-hour self-service kiosks: signed payments, printable receipts and the daily close.

Invariant: a kiosk payment reaches the core only from a request signed by a registered,
active kiosk (:func:`paygate.devices.verify_request`); the terminal is the authenticated
device, never a field of the body, and the body is read only after its signature verified.
A kiosk's business day is closed once: the same figures again replay the close, other
figures are a :class:`~paygate.channels.errors.KioskCloseConflictError` and change nothing.

Payments do not record how they were paid, so the method travels in the kiosk's own
transaction id: ``cash-…`` or ``card-…``. The id is what the ledger keeps (the channel
transaction id is ``<terminal>:<transaction id>``), so the daily close can split the
ledger's takings by method, and a retry that changed the method would be another
transaction id rather than a silent change of the original. The body's ``method`` must
agree with the prefix.

Account status is not an adapter operation: the HTTP layer serves it. The cash-in-transit
deposit that settles the kiosk clearing account is matched by reconciliation (see
docs/channels/kiosk.md).

The module reads top to bottom: transaction ids, wire models, the signature check, mapping
to :class:`~paygate.models.PaymentIntent`, the receipt, the daily close, the statement
reader, settlement rules, the adapter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from paygate.channels.base import (
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
    refused,
)
from paygate.channels.errors import DeviceChannelMismatchError, KioskCloseConflictError
from paygate.channels.wire import (
    csv_statement_rows,
    first_validation_error,
    make_statement_line,
    parse_local_time,
    parse_money,
    read_json_model,
    shown,
    source_label,
)
from paygate.clock import DEFAULT_TIMEZONE
from paygate.devices import (
    DEFAULT_WINDOW,
    Device,
    DeviceDirectory,
    canonical_target,
    verify_request,
)
from paygate.errors import (
    ConfigurationError,
    CurrencyMismatchError,
    InvalidInputError,
    ParseError,
    PaygateError,
)
from paygate.models import (
    AccountStatus,
    Allocation,
    Identifier,
    Instant,
    PaymentIntent,
    Receipt,
    StatementLine,
    StatementLineKind,
    SupplyState,
)
from paygate.money import Money

__all__ = [
    "KIOSK_STATEMENT_COLUMNS",
    "CloseOutcome",
    "KioskAdapter",
    "KioskCloseRecord",
    "KioskCloseRequest",
    "KioskCloseResult",
    "KioskConfig",
    "KioskContext",
    "KioskLedger",
    "KioskMethod",
    "KioskPayRequest",
    "KioskReceipt",
    "KioskTotals",
    "MethodTotal",
    "authenticate_kiosk",
    "channel_txn_id",
    "close_result",
    "kiosk_receipt",
    "kiosk_settlement",
    "method_of",
    "parse_close_request",
    "parse_pay_request",
    "pay_intent",
    "read_kiosk_statement",
    "receipt_lines",
    "split_channel_txn_id",
]

_log = logging.getLogger("paygate.channels.kiosk")

_JSON: Final = "application/json"
_MAX_MINOR: Final = 10**12
"""The largest amount one message may carry, in minor units (ten billion yuan)."""


# ── transaction ids ──────────────────────────────────────────────────────────────────────


class KioskMethod(StrEnum):
    """How the customer paid at the kiosk."""

    CASH = "cash"
    CARD = "card"


# The prefix, a dash, then the kiosk's own counter or id: at most 31 characters, so that
# "<terminal (≤ 32)>:<transaction id>" fits the 64 characters of a channel transaction id.
_TXN_ID = re.compile(r"^(cash|card)-[A-Za-z0-9._-]{1,26}\Z")
_TERMINAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")


def method_of(txn_id: str) -> KioskMethod | None:
    """The payment method a kiosk transaction id carries, or None when it is not one."""
    match = _TXN_ID.match(txn_id)
    return None if match is None else KioskMethod(match.group(1))


def channel_txn_id(terminal_id: str, txn_id: str) -> str:
    """The payment's channel transaction id: ``<terminal>:<transaction id>``."""
    return f"{terminal_id}:{txn_id}"


def split_channel_txn_id(value: str) -> tuple[str, str] | None:
    """``(terminal, transaction id)`` of a kiosk channel transaction id, or None."""
    terminal, colon, txn_id = value.partition(":")
    if not colon or not _TERMINAL_ID.match(terminal) or method_of(txn_id) is None:
        return None
    return terminal, txn_id


# ── wire models ──────────────────────────────────────────────────────────────────────────


class _Wire(BaseModel):
    # Our own firmware sends these: an unknown field is a mistake worth refusing, and strict
    # types keep "120.5" or 1.2e4 from passing as an amount.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class KioskPayRequest(_Wire):
    """The body of a kiosk payment: JSON, amounts in integer minor units."""

    # Patterns of pydantic fields are Rust regexes, where "$" ends the text (no newline).
    txn_id: str = Field(
        pattern=r"^(cash|card)-[A-Za-z0-9._-]{1,26}$", description="the kiosk's id, method first"
    )
    account_no: Identifier
    amount: StrictInt = Field(gt=0, le=_MAX_MINOR)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    method: KioskMethod
    paid_at: AwareDatetime


class _WireTotal(_Wire):
    count: StrictInt = Field(ge=0, le=1_000_000)
    amount: StrictInt = Field(ge=0, le=_MAX_MINOR)


class _WireByMethod(_Wire):
    cash: _WireTotal
    card: _WireTotal


class KioskCloseRequest(_Wire):
    """The body of a daily close: the counted cash and the kiosk's own totals for the day."""

    business_date: date
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    counted_cash: StrictInt = Field(ge=0, le=_MAX_MINOR)
    count: StrictInt = Field(ge=0, le=2_000_000)
    amount: StrictInt = Field(ge=0, le=2 * _MAX_MINOR)
    by_method: _WireByMethod

    @model_validator(mode="after")
    def _sums(self) -> KioskCloseRequest:
        cash, card = self.by_method.cash, self.by_method.card
        if self.count != cash.count + card.count:
            raise ValueError("count is not the sum of by_method counts")
        if self.amount != cash.amount + card.amount:
            raise ValueError("amount is not the sum of by_method amounts")
        return self


_WireT = TypeVar("_WireT", bound=_Wire)


def _parse(model: type[_WireT], body: bytes, source: str) -> _WireT:
    return read_json_model(model, body, source=source)


def parse_pay_request(body: bytes, *, source: str = "kiosk") -> KioskPayRequest:
    """Read a payment body; anything unreadable is a ParseError naming the field."""
    request = _parse(KioskPayRequest, body, source)
    if method_of(request.txn_id) is not request.method:
        raise ParseError(
            f"method {request.method.value!r} contradicts transaction id {request.txn_id!r}",
            source=source,
            field="method",
        )
    return request


def parse_close_request(body: bytes, *, source: str = "kiosk") -> KioskCloseRequest:
    """Read a daily-close body; anything unreadable is a ParseError naming the field."""
    return _parse(KioskCloseRequest, body, source)


# ── the signature check ──────────────────────────────────────────────────────────────────


def authenticate_kiosk(
    devices: DeviceDirectory,
    context: AdapterContext,
    *,
    channel: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    window: timedelta,
) -> Device:
    """The kiosk that signed this POST to ``path``; a device of another channel is refused."""
    device = verify_request(
        devices,
        context.nonces,
        "POST",
        path,
        headers,
        body,
        now=context.clock.now(),
        window=window,
    )
    if device.channel != channel:
        raise DeviceChannelMismatchError(
            f"device {device.device_id!r} is registered for channel {device.channel!r}",
            field="X-Paygate-Device",
        )
    return device


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────


def pay_intent(
    request: KioskPayRequest,
    terminal_id: str,
    *,
    channel: str,
    currency: str,
    now: datetime,
    skew: timedelta,
) -> PaymentIntent:
    """The payment a verified request reports, taken at ``terminal_id``.

    ``paid_at`` may be long past (a kiosk forwards what it took while offline) but not
    later than ``now`` plus the clock ``skew`` allowed.
    """
    if request.currency != currency:
        raise CurrencyMismatchError(
            f"paid in {request.currency}, the channel takes {currency}", field="currency"
        )
    if request.paid_at > now + skew:
        raise InvalidInputError(
            f"paid_at {request.paid_at.isoformat()} is in the future", field="paid_at"
        )
    try:
        return PaymentIntent(
            channel=channel,
            channel_txn_id=channel_txn_id(terminal_id, request.txn_id),
            account_no=request.account_no,
            amount=Money(request.amount, currency),
            paid_at=request.paid_at,
            terminal_id=terminal_id,
        )
    except ValidationError as exc:
        raise first_validation_error(
            exc,
            source=channel,
            names={"channel_txn_id": "txn_id", "terminal_id": "X-Paygate-Device"},
        ) from None


# ── the receipt ──────────────────────────────────────────────────────────────────────────


class KioskReceipt(BaseModel):
    """What the kiosk prints: the core's receipt with the terminal, transaction and method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: int
    terminal_id: str
    txn_id: str
    channel_txn_id: str
    method: KioskMethod
    account_no: str
    amount: Money
    paid_at: Instant
    business_date: date
    late_fee: Money
    allocations: tuple[Allocation, ...]
    credit: Money
    balance_after: Money = Field(description="positive = the customer still owes")
    arrears_after: Money
    arrears_cleared: bool
    reconnection_order_id: int | None = None
    replayed: bool = False
    after_close: bool = Field(
        default=False,
        description="the terminal had closed business_date when this was answered: "
        "that close's figures may not include this payment",
    )


def kiosk_receipt(
    receipt: Receipt, terminal_id: str, txn_id: str, *, after_close: bool = False
) -> KioskReceipt:
    """The printable receipt of a payment the core answered."""
    method = method_of(txn_id)
    if method is None:
        raise InvalidInputError(f"not a kiosk transaction id: {shown(txn_id)}", field="txn_id")
    return KioskReceipt(
        payment_id=receipt.payment_id,
        terminal_id=terminal_id,
        txn_id=txn_id,
        channel_txn_id=receipt.channel_txn_id,
        method=method,
        account_no=receipt.account_no,
        amount=receipt.amount,
        paid_at=receipt.paid_at,
        business_date=receipt.business_date,
        late_fee=receipt.late_fee,
        allocations=receipt.allocations,
        credit=receipt.credit,
        balance_after=receipt.balance_after,
        arrears_after=receipt.arrears_after,
        arrears_cleared=receipt.arrears_cleared,
        reconnection_order_id=receipt.reconnection_order_id,
        replayed=receipt.replayed,
        after_close=after_close,
    )


_METHOD_LABELS: Final[Mapping[KioskMethod, str]] = {
    KioskMethod.CASH: "现金 Cash",
    KioskMethod.CARD: "银行卡 Bank card",
}
_SUPPLY_LABELS: Final[Mapping[SupplyState, str]] = {
    SupplyState.CONNECTED: "正常供电 Connected",
    SupplyState.DISCONNECTION_PENDING: "待停电 Disconnection pending",
    SupplyState.DISCONNECTED: "已停电 Disconnected",
    SupplyState.RECONNECTION_PENDING: "复电处理中 Reconnection in progress",
    SupplyState.CLOSED: "已销户 Account closed",
}


def _amount(money: Money) -> str:
    return f"{money.format()} {money.currency}"


def receipt_lines(
    receipt: KioskReceipt | Receipt,
    status: AccountStatus | None = None,
    *,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[str]:
    """The receipt as printable lines with Chinese and English labels.

    Times are shown in ``timezone`` (the utility's). ``status``, when given, adds what the
    account owes and its supply state as of the status date.
    """
    zone = ZoneInfo(timezone)
    lines = ["电费缴费凭证 / ELECTRICITY PAYMENT RECEIPT"]
    if receipt.replayed:
        lines.append("重复请求，原交易凭证 / DUPLICATE of the original payment")
    if isinstance(receipt, KioskReceipt):
        lines += [
            f"终端 Terminal: {receipt.terminal_id}",
            f"终端流水 Transaction: {receipt.txn_id}",
            f"支付方式 Method: {_METHOD_LABELS[receipt.method]}",
        ]
    local = receipt.paid_at.astimezone(zone)
    lines += [
        f"户号 Account: {receipt.account_no}",
        f"缴费时间 Paid at: {local:%Y-%m-%d %H:%M:%S}",
        f"账务日期 Business date: {receipt.business_date.isoformat()}",
        f"缴费金额 Amount paid: {_amount(receipt.amount)}",
    ]
    if receipt.late_fee.minor:
        lines.append(f"违约金 Late fee charged: {_amount(receipt.late_fee)}")
    for allocation in receipt.allocations:
        lines.append(
            f"  账单 Bill {allocation.bill_no}: 电费 principal {allocation.principal.format()}, "
            f"违约金 late fee {allocation.late_fee.format()}"
        )
    if receipt.credit.minor:
        lines.append(f"预存 Credit kept: {_amount(receipt.credit)}")
    if receipt.balance_after.minor > 0:
        lines.append(f"尚欠 Still owed: {_amount(receipt.balance_after)}")
    else:
        lines.append(f"账户余额 Account credit: {_amount(-receipt.balance_after)}")
    lines.append(f"欠费 Arrears after payment: {_amount(receipt.arrears_after)}")
    if receipt.reconnection_order_id is not None:
        lines += [
            f"复电工单 Reconnection order: {receipt.reconnection_order_id}",
            "欠费已结清，将在承诺时限内恢复供电 / Arrears cleared: supply will be restored "
            "within the service promise",
        ]
    elif receipt.arrears_cleared:
        lines.append("欠费已结清 / Arrears cleared")
    lines.append(f"交易号 Payment id: {receipt.payment_id}")
    if status is not None:
        lines += [
            f"账户状态 Account status as of {status.as_of.isoformat()}:",
            f"  欠费 Arrears: {_amount(status.arrears)}",
            f"  未缴电费 Outstanding: {_amount(status.outstanding)}",
            f"  供电状态 Supply: {_SUPPLY_LABELS[status.supply_state]}",
        ]
    return lines


# ── the daily close ──────────────────────────────────────────────────────────────────────


class MethodTotal(BaseModel):
    """How many payments of one method, and how much."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=0)
    amount: Money


class KioskTotals(BaseModel):
    """A terminal's takings for a day, by method, as the kiosk or the ledger counts them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: MethodTotal
    card: MethodTotal

    @model_validator(mode="after")
    def _one_currency(self) -> KioskTotals:
        if self.cash.amount.currency != self.card.amount.currency:
            raise ValueError("cash and card totals are in different currencies")
        return self

    @classmethod
    def zero(cls, currency: str) -> KioskTotals:
        """No takings."""
        nothing = MethodTotal(count=0, amount=Money.zero(currency))
        return cls(cash=nothing, card=nothing)

    @property
    def currency(self) -> str:
        """The currency of every amount here."""
        return self.cash.amount.currency

    @property
    def count(self) -> int:
        """Payments of every method."""
        return self.cash.count + self.card.count

    @property
    def amount(self) -> Money:
        """The amount of every method."""
        return self.cash.amount + self.card.amount


class KioskCloseRecord(BaseModel):
    """A close as stored: the figures the kiosk reported and the ledger's totals at the time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal_id: str
    business_date: date
    currency: str
    counted_cash: int
    reported_count: int
    reported_total: int
    ledger_count: int
    ledger_total: int
    closed_at: Instant

    def same_figures(self, other: KioskCloseRecord) -> bool:
        """True when ``other`` reports what this close reported (the ledger may have moved)."""
        return (
            self.currency,
            self.counted_cash,
            self.reported_count,
            self.reported_total,
        ) == (other.currency, other.counted_cash, other.reported_count, other.reported_total)


class KioskLedger(Protocol):
    """The ledger side of the daily close; the core implements it on its database."""

    def terminal_totals(
        self, terminal_id: str, business_date: date, currency: str
    ) -> tuple[KioskTotals, KioskTotals]:
        """Its payments that day (posted or in suspense, not reversed), and the suspense ones."""
        ...

    def record_close(self, record: KioskCloseRecord) -> tuple[KioskCloseRecord, bool]:
        """Store ``record`` unless the day is closed already; the stored close, and if new."""
        ...


class CloseOutcome(StrEnum):
    """How the counted cash compares with the ledger's cash."""

    BALANCED = "balanced"
    SHORTAGE = "shortage"
    OVERAGE = "overage"


class KioskCloseResult(BaseModel):
    """The answer to a daily close: counted cash, the kiosk's and the ledger's totals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal_id: str
    business_date: date
    counted_cash: Money
    reported: KioskTotals
    ledger: KioskTotals = Field(description="the ledger's: posted and suspense payments")
    ledger_suspense: KioskTotals = Field(description="of those, held in suspense (closed account)")
    cash_difference: Money = Field(
        description="counted cash − the ledger's cash: negative is a shortage"
    )
    outcome: CloseOutcome
    reported_matches_ledger: bool = Field(
        description="the kiosk's counts and amounts by method equal the ledger's"
    )
    closed_at: Instant
    replayed: bool = False


def close_result(
    terminal_id: str,
    request: KioskCloseRequest,
    ledger: KioskTotals,
    suspense: KioskTotals,
    *,
    closed_at: datetime,
    replayed: bool,
) -> KioskCloseResult:
    """Compare a close request with the ledger's totals (posted and suspense payments)."""
    currency = request.currency
    cash, card = request.by_method.cash, request.by_method.card
    reported = KioskTotals(
        cash=MethodTotal(count=cash.count, amount=Money(cash.amount, currency)),
        card=MethodTotal(count=card.count, amount=Money(card.amount, currency)),
    )
    counted = Money(request.counted_cash, currency)
    difference = counted - ledger.cash.amount
    outcome = CloseOutcome.BALANCED
    if difference.minor:
        outcome = CloseOutcome.SHORTAGE if difference.minor < 0 else CloseOutcome.OVERAGE
    return KioskCloseResult(
        terminal_id=terminal_id,
        business_date=request.business_date,
        counted_cash=counted,
        reported=reported,
        ledger=ledger,
        ledger_suspense=suspense,
        cash_difference=difference,
        outcome=outcome,
        reported_matches_ledger=reported == ledger,
        closed_at=closed_at,
        replayed=replayed,
    )


# ── statement reader ─────────────────────────────────────────────────────────────────────

KIOSK_STATEMENT_COLUMNS: Final = (
    "terminal_id",
    "txn_id",
    "account_no",
    "amount",
    "method",
    "paid_at",
)
"""The header of the kiosk operator's daily CSV."""


def read_kiosk_statement(
    source: StatementSource, *, currency: str, timezone: str = DEFAULT_TIMEZONE
) -> Iterator[StatementLine]:
    """Read the kiosk operator's daily CSV (UTF-8, optional BOM) line by line.

    Layout: the header :data:`KIOSK_STATEMENT_COLUMNS`, then one row per payment:
    ``amount`` in major units (``120.50``), ``method`` ``cash`` or ``card`` (agreeing with
    the transaction id's prefix), ``paid_at`` ``YYYY-MM-DD hh:mm:ss`` local time in
    ``timezone``. The line's channel transaction id is ``<terminal>:<txn_id>``, as the
    ledger has it; its reference is the terminal; a kiosk charges no fee.
    """
    label = source_label(source)
    zone = ZoneInfo(timezone)
    zero = Money.zero(currency)
    for line_no, row in csv_statement_rows(
        source, KIOSK_STATEMENT_COLUMNS, what="a kiosk statement"
    ):
        if not _TERMINAL_ID.match(row["terminal_id"]):
            raise ParseError(
                f"not a terminal id: {shown(row['terminal_id'])}",
                source=label,
                line=line_no,
                field="terminal_id",
            )
        method = method_of(row["txn_id"])
        if method is None:
            raise ParseError(
                f"not a kiosk transaction id: {shown(row['txn_id'])}",
                source=label,
                line=line_no,
                field="txn_id",
            )
        if row["method"] != method.value:
            raise ParseError(
                f"method {shown(row['method'])} contradicts transaction id {row['txn_id']!r}",
                source=label,
                line=line_no,
                field="method",
            )
        yield make_statement_line(
            line_no=line_no,
            kind=StatementLineKind.PAYMENT,
            gross=parse_money(row["amount"], currency, source=label, line=line_no, field="amount"),
            fee=zero,
            occurred_at=parse_local_time(
                row["paid_at"],
                "%Y-%m-%d %H:%M:%S",
                zone,
                source=label,
                line=line_no,
                field="paid_at",
            ),
            channel_txn_id=channel_txn_id(row["terminal_id"], row["txn_id"]),
            account_no=row["account_no"],
            reference=row["terminal_id"],
            source=label,
        )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def kiosk_settlement() -> SettlementRules:
    """The kiosk day closes at midnight; cash-in-transit deposits it T+1; no fee."""
    return SettlementRules(cutoff=time(0, 0), lag_days=1, grace_days=2, fee=FeeSchedule())


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class KioskConfig(ChannelConfig):
    """Configuration of the ``kiosk`` channel. Keys live in the device registry, not here."""

    settlement: SettlementRules = Field(default_factory=kiosk_settlement)
    timestamp_window: timedelta = Field(
        default=DEFAULT_WINDOW,
        description="how far a request's timestamp (and a payment's paid_at, ahead) may be "
        "from the server's clock",
    )
    pay_path: str = Field(default="/v1/kiosk/pay", description="the request target signed for pay")
    daily_close_path: str = Field(
        default="/v1/kiosk/daily-close", description="the request target signed for a close"
    )

    @field_validator("timestamp_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=15):
            raise ValueError("the timestamp window must be positive and at most 15 minutes")
        return value

    @field_validator("pay_path", "daily_close_path")
    @classmethod
    def _path(cls, value: str) -> str:
        # The HTTP layer serves the adapter at these targets; the kiosk signs exactly them.
        try:
            canonical = canonical_target(value)
        except PaygateError:
            canonical = ""
        if canonical != value or "?" in value:
            raise ValueError("a path in canonical form, without a query")
        return value


@dataclass(frozen=True)
class KioskContext(AdapterContext):
    """The context a kiosk adapter needs besides the clock and nonce store.

    ``devices`` is where kiosks are registered (:class:`paygate.devices.DeviceRegistry`);
    ``ledger`` the ledger side of the daily close
    (:class:`paygate.channels.stores.SqlKioskLedger`). ``nonces`` should be the database's
    (:class:`paygate.channels.stores.SqlNonceStore`) when several processes serve kiosks.
    """

    devices: DeviceDirectory | None = None
    ledger: KioskLedger | None = None


class KioskAdapter(ChannelAdapter[KioskConfig]):
    """Self-service kiosks: signed pay requests, the daily close, the operator's CSV.

    Answers are JSON: ``{"status": "ok", "receipt": …}`` for a payment (200, also for a
    replay, marked ``replayed``), ``{"status": "ok", "close": …}`` for a close, and
    ``{"status": "refused", "code": …, "message": …}`` with a 4xx/5xx status otherwise.
    """

    name: ClassVar[str] = "kiosk"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.PAY, Operation.DAILY_CLOSE, Operation.STATEMENT}
    )
    config_model: ClassVar[type[ChannelConfig]] = KioskConfig

    def __init__(self, config: KioskConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        found = self.context
        if not isinstance(found, KioskContext) or found.devices is None or found.ledger is None:
            raise ConfigurationError(
                "channel 'kiosk' needs a KioskContext with a device directory (devices) and a "
                "kiosk ledger (ledger)",
                field="context",
            )
        self._devices: DeviceDirectory = found.devices
        self._ledger: KioskLedger = found.ledger

    def authenticate(self, path: str, body: bytes, headers: Mapping[str, str]) -> Device:
        """Check size and signature of a request to ``path``; the kiosk that signed it."""
        self.check_body(body)
        return authenticate_kiosk(
            self._devices,
            self.context,
            channel=self.name,
            path=path,
            headers=headers,
            body=body,
            window=self.config.timestamp_window,
        )

    def intent_from_pay(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[PaymentIntent, KioskPayRequest]:
        """The payment a signed request reports, and the request; nothing is posted."""
        device = self.authenticate(self.config.pay_path, body, headers)
        request = parse_pay_request(body, source=self.name)
        intent = pay_intent(
            request,
            device.device_id,
            channel=self.name,
            currency=self.config.currency,
            now=self.context.clock.now(),
            skew=self.config.timestamp_window,
        )
        return intent, request

    def handle_pay(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Post the payment; answer with the receipt the kiosk prints."""
        try:
            intent, request = self.intent_from_pay(body, headers)
            receipt = sink.pay(self.admit(intent))
            assert intent.terminal_id is not None
            printable = kiosk_receipt(receipt, intent.terminal_id, request.txn_id)
        except PaygateError as exc:
            return self._refused(exc)
        answer = {"status": "ok", "receipt": printable.model_dump(mode="json")}
        return acknowledged(receipt, body=_json(answer), content_type=_JSON)

    def close_day(
        self, body: bytes, headers: Mapping[str, str], *, path: str | None = None
    ) -> KioskCloseResult:
        """Record a signed daily close and compare it with the ledger.

        ``path`` is the target the kiosk signed when the HTTP layer serves closes at a path of
        its own (one per terminal); by default the configured ``daily_close_path``.
        """
        signed_path = self.config.daily_close_path if path is None else path
        device = self.authenticate(signed_path, body, headers)
        request = parse_close_request(body, source=self.name)
        currency = self.config.currency
        if request.currency != currency:
            raise CurrencyMismatchError(
                f"closed in {request.currency}, the channel takes {currency}", field="currency"
            )
        now = self.context.clock.now()
        today = self.settlement.business_date(now)
        if request.business_date > today:
            raise InvalidInputError(
                f"business date {request.business_date.isoformat()} has not begun "
                f"(today is {today.isoformat()})",
                field="business_date",
            )
        terminal = device.device_id
        ledger, suspense = self._ledger.terminal_totals(terminal, request.business_date, currency)
        record = KioskCloseRecord(
            terminal_id=terminal,
            business_date=request.business_date,
            currency=currency,
            counted_cash=request.counted_cash,
            reported_count=request.count,
            reported_total=request.amount,
            ledger_count=ledger.count,
            ledger_total=ledger.amount.minor,
            closed_at=now,
        )
        stored, created = self._ledger.record_close(record)
        if not stored.same_figures(record):
            raise KioskCloseConflictError(
                f"terminal {terminal!r} closed {request.business_date.isoformat()} at "
                f"{stored.closed_at.isoformat()} with counted cash "
                f"{Money(stored.counted_cash, stored.currency).format()} and "
                f"{stored.reported_count} transactions totalling "
                f"{Money(stored.reported_total, stored.currency).format()} {stored.currency}",
                field="business_date",
            )
        result = close_result(
            terminal, request, ledger, suspense, closed_at=stored.closed_at, replayed=not created
        )
        if result.outcome is not CloseOutcome.BALANCED or not result.reported_matches_ledger:
            _log.warning(
                "%s: terminal %s close of %s: %s of %s; kiosk and ledger totals %s",
                self.name,
                terminal,
                request.business_date.isoformat(),
                result.outcome.value,
                result.cash_difference.format(),
                "agree" if result.reported_matches_ledger else "differ",
            )
        return result

    def handle_daily_close(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Record the close (it moves no money) and answer with the comparison."""
        try:
            result = self.close_day(body, headers)
        except PaygateError as exc:
            return self._refused(exc)
        answer = {"status": "ok", "close": result.model_dump(mode="json")}
        return acknowledged(None, body=_json(answer), content_type=_JSON)

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the kiosk operator's daily CSV."""
        return read_kiosk_statement(
            source, currency=self.config.currency, timezone=self.settlement.timezone
        )

    def _refused(self, exc: PaygateError) -> NotifyResult:
        answer = {"status": "refused", "code": exc.code, "message": str(exc)}
        return refused(self.name, exc, body=_json(answer), content_type=_JSON)


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
