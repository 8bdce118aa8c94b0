"""POS terminals at the utility's service halls: MAC-checked sales, same-batch voids, batch close.

Invariant: a terminal's message reaches the core only after its MAC verified with that
terminal's own key (:class:`TerminalKeys`), its timestamp is inside the window around the
adapter's clock and its trace number is new for the terminal. A sale is posted once per
``(terminal, batch, trace)``; a void reverses only a sale of the terminal's open batch; a
settled batch takes no further sale or void. Batch totals the terminal reports are compared
with what the ledger holds for that batch, and the answer names the result.

The terminal takes the card with the acquiring bank; it then tells paygate what it took, one
form-encoded message per transaction, each with its own trace number: a sale to
:meth:`PosAdapter.handle_pay`, a void to :meth:`~PosAdapter.handle_void`, the batch
settlement to :meth:`~PosAdapter.handle_daily_close`. Each message names its ``msg_type``
under the MAC, so a message sent to another operation's route is refused, not reinterpreted.

Refunds of settled sales are not taken from the terminal: the channel does not offer the
refund operation, and refunds go through the utility's own refund process
(``docs/channels/pos.md`` says why).

The module reads top to bottom: wire model, MAC check, mapping to
:class:`~paygate.models.PaymentIntent`, statement reader, settlement rules, the adapter.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import ClassVar, Final, Protocol, runtime_checkable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
from paygate.channels.errors import (
    BatchSettledError,
    MerchantMismatchError,
    NonceReusedError,
    SignatureError,
    StaleTimestampError,
    UnknownTerminalError,
)
from paygate.channels.signing import canonical_string
from paygate.channels.wire import (
    csv_statement_rows,
    first_validation_error,
    make_statement_line,
    parse_form,
    parse_local_time,
    parse_money,
    shown,
    source_label,
)
from paygate.errors import (
    ConfigurationError,
    InvalidAmountError,
    InvalidStateError,
    ParseError,
    PaygateError,
)
from paygate.models import PaymentIntent, Receipt, StatementLine, StatementLineKind
from paygate.money import Money

__all__ = [
    "MIN_MAC_KEY_BYTES",
    "POS_STATEMENT_COLUMNS",
    "AtomicPosLedger",
    "PosAdapter",
    "PosConfig",
    "PosContext",
    "PosLedger",
    "PosMessage",
    "PosMessageType",
    "PosSettlement",
    "TerminalKeys",
    "pos_mac",
    "pos_mac_string",
    "pos_settlement",
    "pos_txn_id",
    "read_pos_statement",
    "sale_intent",
    "verify_pos_message",
]

_log = logging.getLogger("paygate.channels.pos")

BEIJING: Final = ZoneInfo("Asia/Shanghai")
_FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"

MIN_MAC_KEY_BYTES: Final = 16
"""A terminal key shorter than this is a provisioning fault, refused rather than used."""

# UnionPay POS conventions: an 8-character terminal id (终端号), a 15-character merchant id
# (商户号), 6-digit batch (批次号) and trace (凭证号) numbers.
_TERMINAL_ID: Final = r"^[0-9A-Za-z]{8}$"
_MERCHANT_ID: Final = r"^[0-9A-Za-z]{15}$"
_SIX_DIGITS: Final = r"^[0-9]{6}$"
_FEN: Final = r"^[0-9]{1,12}$"
_COUNT: Final = r"^[0-9]{1,6}$"
_TERMINAL_RE: Final = re.compile(_TERMINAL_ID)


# ── wire model ───────────────────────────────────────────────────────────────────────────


class PosMessageType(StrEnum):
    """What a terminal's message asks for."""

    SALE = "sale"
    VOID = "void"
    SETTLE = "settle"


class PosMessage(BaseModel):
    """A terminal's message (the fields paygate reads), after its MAC verified.

    Amounts are integer fen, as the terminal keeps them. Which optional fields a message
    needs depends on ``msg_type``; the mapping functions below ask for them by name.
    """

    # Terminal software adds fields (masked card number, authorisation code); all of them are
    # covered by the MAC, unknown ones are ignored, known ones checked.
    model_config = ConfigDict(frozen=True, extra="ignore")

    msg_type: PosMessageType
    terminal_id: str = Field(pattern=_TERMINAL_ID)
    merchant_id: str = Field(pattern=_MERCHANT_ID)
    batch_no: str = Field(pattern=_SIX_DIGITS)
    trace_no: str = Field(pattern=_SIX_DIGITS)
    timestamp: str = Field(pattern=r"^[0-9]{1,10}$", description="Unix seconds")
    account_no: str | None = None
    amount: str | None = Field(default=None, pattern=_FEN)
    orig_batch_no: str | None = Field(default=None, pattern=_SIX_DIGITS)
    orig_trace_no: str | None = Field(default=None, pattern=_SIX_DIGITS)
    sale_count: str | None = Field(default=None, pattern=_COUNT)
    sale_amount: str | None = Field(default=None, pattern=_FEN)
    void_count: str | None = Field(default=None, pattern=_COUNT)
    void_amount: str | None = Field(default=None, pattern=_FEN)

    @property
    def sent_at(self) -> datetime:
        """When the terminal sent the message (and, for a sale, when the card was charged)."""
        return datetime.fromtimestamp(int(self.timestamp), UTC)

    def required(self, name: str) -> str:
        """The value of the optional field ``name``, which this message type needs."""
        value: str | None = getattr(self, name)
        if value is None:
            raise ParseError(
                f"a {self.msg_type.value} message needs {name}", source="pos", field=name
            )
        return value


# ── MAC check ────────────────────────────────────────────────────────────────────────────


class TerminalKeys(Protocol):
    """Where the terminals' MAC keys come from; the device registry implements it."""

    def mac_key(self, terminal_id: str) -> bytes | None:
        """The terminal's current MAC key, or None when it is unknown or revoked."""
        ...


def pos_mac_string(params: Mapping[str, str]) -> str:
    """What the MAC covers: every field except ``mac``, empty ones included, sorted by name,
    as ``k=v`` joined by ``&``, values as received (URL-decoded, never re-encoded)."""
    return canonical_string(params, exclude=frozenset({"mac"}), drop_empty=False)


def pos_mac(key: bytes, params: Mapping[str, str], charset: str = "utf-8") -> str:
    """The lower-case hex HMAC-SHA256 of :func:`pos_mac_string` in the body's charset."""
    message = pos_mac_string(params).encode(charset)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_pos_message(body: bytes, keys: TerminalKeys, *, source: str) -> PosMessage:
    """Read a form-encoded terminal message and check its MAC with that terminal's key.

    Only the shape of ``terminal_id`` is read before the MAC verifies: it chooses the key.
    """
    params, charset = parse_form(body, source=source, charset_field="charset")
    terminal_id = params.get("terminal_id", "")
    if not _TERMINAL_RE.match(terminal_id):
        raise ParseError(
            f"not a terminal id: {shown(terminal_id)}", source=source, field="terminal_id"
        )
    key = keys.mac_key(terminal_id)
    if key is None:
        raise UnknownTerminalError(
            f"terminal {terminal_id} is unknown or revoked", field="terminal_id"
        )
    if len(key) < MIN_MAC_KEY_BYTES:
        raise ConfigurationError(
            f"the MAC key of terminal {terminal_id} is shorter than {MIN_MAC_KEY_BYTES} bytes",
            field="terminal_id",
        )
    given = params.get("mac")
    if not given:
        raise SignatureError("mac missing", field="mac")
    expected = pos_mac(key, params, charset)
    # Bytes on both sides: compare_digest refuses non-ASCII text, and the given MAC is
    # attacker-controlled until it matched.
    if not hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8")):
        raise SignatureError("mac does not verify", field="mac")
    # An empty optional field is an absent one; the MAC above covered it either way.
    present = {name: value for name, value in params.items() if value != ""}
    try:
        return PosMessage.model_validate(present)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source) from None


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────


def pos_txn_id(terminal_id: str, batch_no: str, trace_no: str) -> str:
    """The channel transaction id of a terminal's transaction: ``terminal-batch-trace``.

    Trace numbers wrap at 999999 and restart on a new terminal, so the trace alone is not
    unique; with the terminal and its batch it is. The core reads a batch's payments back by
    the ``terminal-batch-`` prefix (:class:`PosLedger`).
    """
    return f"{terminal_id}-{batch_no}-{trace_no}"


def _fen(text: str, currency: str) -> Money:
    # The wire model already holds the text to digits only.
    return Money(int(text), currency)


def sale_intent(message: PosMessage, *, channel: str, currency: str) -> PaymentIntent:
    """The payment a verified sale reports, carrying the terminal's id."""
    account_no = message.required("account_no")
    amount = _fen(message.required("amount"), currency)
    if amount.minor <= 0:
        raise InvalidAmountError("a sale's amount must be positive", field="amount")
    try:
        return PaymentIntent(
            channel=channel,
            channel_txn_id=pos_txn_id(message.terminal_id, message.batch_no, message.trace_no),
            account_no=account_no,
            amount=amount,
            paid_at=message.sent_at,
            terminal_id=message.terminal_id,
        )
    except ValidationError as exc:
        raise first_validation_error(exc, source=channel) from None


# ── batch settlement ─────────────────────────────────────────────────────────────────────


class PosLedger(Protocol):
    """What the POS channel needs to know about a terminal's batches; the core implements it.

    A batch's payments are this channel's payments whose ``channel_txn_id`` starts with
    ``"{terminal_id}-{batch_no}-"`` (:func:`pos_txn_id`).
    """

    def batch_totals(self, terminal_id: str, batch_no: str) -> tuple[int, Money]:
        """Count and sum of the batch's sales, posted or held in suspense, not reversed."""
        ...

    def batch_closed(self, terminal_id: str, batch_no: str) -> bool:
        """True once the terminal has settled the batch."""
        ...

    def close_batch(self, terminal_id: str, batch_no: str, *, closed_at: datetime) -> None:
        """Record that the terminal settled the batch; closing it again changes nothing."""
        ...


@runtime_checkable
class AtomicPosLedger(Protocol):
    """A :class:`PosLedger` that decides and writes in one transaction: the batch's state is
    read where the sale, the void or the settlement is written, under a lock on the batch, so a
    void racing a settlement is either refused (``batch_settled``) or not counted, never both.

    The adapter uses these when its ledger offers them (the SQL ledger does); a ledger in one
    process's memory is serialized by the adapter's own lock instead.
    """

    def sale_in_open_batch(
        self, terminal_id: str, batch_no: str, intent: PaymentIntent, sink: PaymentSink
    ) -> Receipt:
        """Post the sale unless the batch is settled (BatchSettledError)."""
        ...

    def void_in_open_batch(
        self, terminal_id: str, batch_no: str, channel_txn_id: str, reason: str, sink: PaymentSink
    ) -> None:
        """Reverse the sale unless the batch is settled (BatchSettledError); a sale already
        reversed raises InvalidStateError."""
        ...

    def settle_batch(
        self, terminal_id: str, batch_no: str, *, closed_at: datetime
    ) -> tuple[int, Money]:
        """Close the batch and return its totals as of the close (:meth:`batch_totals`)."""
        ...


class PosSettlement(BaseModel):
    """A terminal's batch totals against the ledger's: what the settle answer reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal_id: str
    batch_no: str
    sale_count: int
    sale_amount: Money
    void_count: int
    void_amount: Money
    ledger_count: int
    ledger_amount: Money

    @property
    def reported_count(self) -> int:
        """Sales the terminal kept: sales less voids."""
        return self.sale_count - self.void_count

    @property
    def reported_amount(self) -> Money:
        """What the terminal's kept sales sum to."""
        return self.sale_amount - self.void_amount

    @property
    def matched(self) -> bool:
        """True when the terminal and the ledger agree on count and amount."""
        return (self.reported_count, self.reported_amount) == (
            self.ledger_count,
            self.ledger_amount,
        )


# ── statement reader ─────────────────────────────────────────────────────────────────────

POS_STATEMENT_COLUMNS: Final = (
    "merchant_id",
    "terminal_id",
    "batch_no",
    "trace_no",
    "card_type",
    "txn_type",
    "amount",
    "fee",
    "net",
    "txn_time",
    "orig_batch_no",
    "orig_trace_no",
)
"""The header of the acquirer's settlement detail CSV."""

CARD_TYPES: Final = frozenset({"debit", "credit", "quasi_credit", "prepaid", "foreign"})
"""Card types the statement may name (借记卡, 贷记卡, 准贷记卡, 预付卡, 外卡)."""

_STATEMENT_KINDS: Final[Mapping[str, StatementLineKind]] = {
    "sale": StatementLineKind.PAYMENT,
    "void": StatementLineKind.VOID,
    "refund": StatementLineKind.REFUND,
}
_SIX = re.compile(_SIX_DIGITS)


def read_pos_statement(source: StatementSource, *, currency: str) -> Iterator[StatementLine]:
    """Read the acquirer's settlement detail CSV (UTF-8, BOM tolerated) line by line.

    Layout: the header :data:`POS_STATEMENT_COLUMNS`, then one row per transaction. Amounts
    are yuan, all positive, in the direction ``txn_type`` gives (``sale``, ``void``,
    ``refund``); ``fee`` is what the acquirer keeps on a sale and gives back on a void or
    refund, and ``net`` must equal ``amount - fee``. ``txn_time`` is
    ``YYYY-MM-DD hh:mm:ss`` Beijing time. A void names its sale's trace (its batch is its
    own); a refund names both the original batch and trace.
    """
    label = source_label(source)
    for line_no, row in csv_statement_rows(source, POS_STATEMENT_COLUMNS, what="a POS statement"):
        yield _statement_line(row, currency, label, line_no)


def _statement_line(
    row: Mapping[str, str], currency: str, label: str, line_no: int
) -> StatementLine:
    def fail(message: str, field: str) -> ParseError:
        return ParseError(message, source=label, line=line_no, field=field)

    if not _TERMINAL_RE.match(row["terminal_id"]):
        raise fail(f"not a terminal id: {shown(row['terminal_id'])}", "terminal_id")
    for name in ("batch_no", "trace_no"):
        if not _SIX.match(row[name]):
            raise fail(f"not six digits: {shown(row[name])}", name)
    if row["card_type"] not in CARD_TYPES:
        raise fail(f"unknown card type {shown(row['card_type'])}", "card_type")
    kind = _STATEMENT_KINDS.get(row["txn_type"])
    if kind is None:
        raise fail(f"unknown txn_type {shown(row['txn_type'])}", "txn_type")
    gross, fee, net = (
        parse_money(row[name], currency, source=label, line=line_no, field=name)
        for name in ("amount", "fee", "net")
    )
    if net != gross - fee:
        raise fail(f"net {net.format()} is not amount less fee", "net")
    original = None
    if kind is not StatementLineKind.PAYMENT:
        orig_batch = row["orig_batch_no"] or (
            row["batch_no"] if kind is StatementLineKind.VOID else ""
        )
        if not _SIX.match(orig_batch):
            raise fail("a refund names its sale's batch", "orig_batch_no")
        if not _SIX.match(row["orig_trace_no"]):
            raise fail(f"a {row['txn_type']} names its sale's trace", "orig_trace_no")
        original = pos_txn_id(row["terminal_id"], orig_batch, row["orig_trace_no"])
    return make_statement_line(
        line_no=line_no,
        kind=kind,
        gross=gross,
        fee=fee,
        occurred_at=parse_local_time(
            row["txn_time"],
            "%Y-%m-%d %H:%M:%S",
            BEIJING,
            source=label,
            line=line_no,
            field="txn_time",
        ),
        channel_txn_id=pos_txn_id(row["terminal_id"], row["batch_no"], row["trace_no"]),
        original_txn_id=original,
        source=label,
    )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def pos_settlement() -> SettlementRules:
    """The acquirer closes the day at 23:00 Beijing time and settles T+1.

    The fee has the shape of a bank-card merchant discount rate: a rate with a floor and a cap,
    by default 0.5 %, at least 0.01, at most 20.00 yuan. The acquiring contract's figures go in
    ``[reconcile.channels.pos.settlement]``; reconciliation books the fee each statement line
    carries, so these figures describe the channel and never decide a posting.
    """
    return SettlementRules(
        cutoff=time(23, 0),
        lag_days=1,
        grace_days=2,
        fee=FeeSchedule(rate_ppm=5000, minimum=1, maximum=2000),
    )


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class PosConfig(ChannelConfig):
    """Configuration of the ``pos`` channel. Terminal keys are not configuration: they come
    from :class:`TerminalKeys` in the :class:`PosContext`."""

    merchant_ids: tuple[str, ...] = Field(
        min_length=1, description="the utility's merchant ids; messages for others fail"
    )
    timestamp_window: timedelta = Field(default=timedelta(minutes=5))
    settlement: SettlementRules = Field(default_factory=pos_settlement)

    @field_validator("merchant_ids")
    @classmethod
    def _merchants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for merchant_id in value:
            if not re.match(_MERCHANT_ID, merchant_id):
                raise ValueError("a merchant id is 15 letters or digits")
        return value

    @field_validator("timestamp_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=15):
            raise ValueError("the timestamp window must be positive and at most 15 minutes")
        return value


@dataclass(frozen=True)
class PosContext(AdapterContext):
    """An :class:`AdapterContext` with what the POS channel needs besides clock and nonces.

    Both are required: ``terminal_keys`` (the device registry) and ``ledger`` (the core).
    """

    terminal_keys: TerminalKeys | None = None
    ledger: PosLedger | None = None


def _form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode("ascii")


class PosAdapter(ChannelAdapter[PosConfig]):
    """Service-hall POS terminals: sale, same-batch void, batch settlement, acquirer CSV.

    Answers are form-encoded: ``result=approved`` (sale), ``voided`` / ``already_voided``,
    ``settled`` with ``settle_result=match|mismatch``; ``result=refused`` with
    ``error_code`` otherwise, with the HTTP status of :func:`~paygate.channels.refusal_status`.
    """

    name: ClassVar[str] = "pos"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.PAY, Operation.VOID, Operation.DAILY_CLOSE, Operation.STATEMENT}
    )
    config_model: ClassVar[type[ChannelConfig]] = PosConfig

    def __init__(self, config: PosConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        ctx = self.context
        if not isinstance(ctx, PosContext) or ctx.terminal_keys is None or ctx.ledger is None:
            raise ConfigurationError(
                "channel 'pos' needs a PosContext with terminal_keys and ledger", field="context"
            )
        self._keys: TerminalKeys = ctx.terminal_keys
        self._ledger: PosLedger = ctx.ledger
        # For a ledger that cannot decide in one transaction: the batch check and the posting
        # happen under this lock, so in one process a void and a settlement cannot interleave.
        self._batch_lock = threading.Lock()

    # verification

    def verify_message(self, body: bytes, headers: Mapping[str, str]) -> PosMessage:
        """Check size, MAC, merchant, timestamp and trace number; nothing is posted."""
        self.check_body(body)
        message = verify_pos_message(body, self._keys, source=self.name)
        if message.merchant_id not in self.config.merchant_ids:
            raise MerchantMismatchError("message for another merchant", field="merchant_id")
        self._check_fresh(message)
        return message

    def _check_fresh(self, message: PosMessage) -> None:
        now = self.context.clock.now()
        sent = message.sent_at
        window = self.config.timestamp_window
        if abs(now - sent) > window:
            raise StaleTimestampError(
                f"timestamp {sent.isoformat()} is more than {window} from now", field="timestamp"
            )
        # Remembered only now that the MAC verified, so forgeries cannot fill the store. Within
        # the window a terminal never repeats a trace number; after it, the sale's channel
        # transaction id keeps a replay from posting twice.
        key = f"{self.name}:{message.terminal_id}:{message.trace_no}"
        if not self.context.nonces.add(key, expires_at=sent + window, now=now):
            raise NonceReusedError(
                f"trace {message.trace_no} of terminal {message.terminal_id} already used",
                field="trace_no",
            )

    # operations

    def handle_pay(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A sale: post it with the terminal's id (a replay returns the same receipt)."""

        def act(message: PosMessage) -> tuple[dict[str, str], Receipt | None]:
            receipt = self.sale(message, sink)
            return {
                "result": "approved",
                "txn_id": receipt.channel_txn_id,
                "payment_id": str(receipt.payment_id),
                "account_no": receipt.account_no,
                "amount": str(receipt.amount.minor),
                "replayed": "true" if receipt.replayed else "false",
            }, receipt

        return self._answer(body, headers, PosMessageType.SALE, act)

    def handle_void(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A void of a sale in the terminal's open batch: reverse the sale."""

        def act(message: PosMessage) -> tuple[dict[str, str], Receipt | None]:
            return {"result": "voided" if self.void(message, sink) else "already_voided"}, None

        return self._answer(body, headers, PosMessageType.VOID, act)

    def handle_daily_close(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A batch settlement: compare the terminal's totals with the ledger, close the batch."""

        def act(message: PosMessage) -> tuple[dict[str, str], Receipt | None]:
            settlement = self.settle(message)
            return {
                "result": "settled",
                "settle_result": "match" if settlement.matched else "mismatch",
                "reported_count": str(settlement.reported_count),
                "reported_amount": str(settlement.reported_amount.minor),
                "ledger_count": str(settlement.ledger_count),
                "ledger_amount": str(settlement.ledger_amount.minor),
            }, None

        return self._answer(body, headers, PosMessageType.SETTLE, act)

    def _answer(
        self,
        body: bytes,
        headers: Mapping[str, str],
        expected: PosMessageType,
        act: Callable[[PosMessage], tuple[dict[str, str], Receipt | None]],
    ) -> NotifyResult:
        try:
            message = self.verify_message(body, headers)
            if message.msg_type is not expected:
                raise ParseError(
                    f"a {message.msg_type.value} message sent to the {expected.value} operation",
                    source=self.name,
                    field="msg_type",
                )
            fields, receipt = act(message)
        except PaygateError as exc:
            answer = {"result": "refused", "error_code": exc.code}
            return refused(self.name, exc, body=_form(answer), content_type=_FORM)
        echo = {
            "msg_type": message.msg_type.value,
            "terminal_id": message.terminal_id,
            "batch_no": message.batch_no,
            "trace_no": message.trace_no,
        }
        return acknowledged(receipt, body=_form({**fields, **echo}), content_type=_FORM)

    def _refuse_if_settled(self, terminal_id: str, batch_no: str, what: str) -> None:
        if self._ledger.batch_closed(terminal_id, batch_no):
            raise BatchSettledError(
                f"batch {batch_no} of terminal {terminal_id} is settled: no further {what}",
                field="batch_no",
            )

    def sale(self, message: PosMessage, sink: PaymentSink) -> Receipt:
        """Post a verified sale; a settled batch takes no more sales."""
        intent = self.admit(
            sale_intent(message, channel=self.name, currency=self.config.currency),
            time_field="timestamp",
        )
        if isinstance(self._ledger, AtomicPosLedger):
            return self._ledger.sale_in_open_batch(
                message.terminal_id, message.batch_no, intent, sink
            )
        with self._batch_lock:
            self._refuse_if_settled(message.terminal_id, message.batch_no, "sale")
            return sink.pay(intent)

    def void(self, message: PosMessage, sink: PaymentSink) -> bool:
        """Reverse the sale a verified void names; False when it was already reversed.

        A void cancels a sale of the terminal's open batch; once the batch is settled the
        money is with the acquirer's settlement and only a refund could return it.
        """
        orig_trace = message.required("orig_trace_no")
        amount = _fen(message.required("amount"), self.config.currency)
        orig_batch = message.orig_batch_no or message.batch_no
        if orig_batch != message.batch_no:
            raise BatchSettledError(
                f"the sale is in batch {orig_batch}, the terminal's open batch is "
                f"{message.batch_no}: a settled sale cannot be voided",
                field="orig_batch_no",
            )
        original = pos_txn_id(message.terminal_id, orig_batch, orig_trace)
        voiding = pos_txn_id(message.terminal_id, message.batch_no, message.trace_no)
        reason = f"pos void {voiding} of {amount.format()}"
        try:
            if isinstance(self._ledger, AtomicPosLedger):
                self._ledger.void_in_open_batch(
                    message.terminal_id, orig_batch, original, reason, sink
                )
            else:
                with self._batch_lock:
                    self._refuse_if_settled(message.terminal_id, orig_batch, "void")
                    sink.reverse_by_channel_txn(self.name, original, reason)
        except BatchSettledError:
            raise
        except InvalidStateError as exc:
            # Already reversed: a terminal re-sending a void after a lost answer must be told
            # it is done, not refused.
            _log.info("%s: %s not reversed again: %r", self.name, original, str(exc))
            return False
        return True

    def settle(self, message: PosMessage) -> PosSettlement:
        """Compare a verified settle message's totals with the ledger, then close the batch.

        The batch closes on a mismatch too, as terminals and acquirers do: the terminal opens
        its next batch either way, and the difference is for reconciliation to explain.
        """
        currency = self.config.currency
        sale_count = int(message.required("sale_count"))
        void_count = int(message.required("void_count"))
        sale_amount = _fen(message.required("sale_amount"), currency)
        void_amount = _fen(message.required("void_amount"), currency)
        if void_count > sale_count:
            raise ParseError("more voids than sales", source=self.name, field="void_count")
        if void_amount > sale_amount:
            raise ParseError("voids sum to more than sales", source=self.name, field="void_amount")
        closed_at = self.context.clock.now()
        if isinstance(self._ledger, AtomicPosLedger):
            ledger_count, ledger_amount = self._ledger.settle_batch(
                message.terminal_id, message.batch_no, closed_at=closed_at
            )
        else:
            with self._batch_lock:
                ledger_count, ledger_amount = self._ledger.batch_totals(
                    message.terminal_id, message.batch_no
                )
                self._ledger.close_batch(message.terminal_id, message.batch_no, closed_at=closed_at)
        settlement = PosSettlement(
            terminal_id=message.terminal_id,
            batch_no=message.batch_no,
            sale_count=sale_count,
            sale_amount=sale_amount,
            void_count=void_count,
            void_amount=void_amount,
            ledger_count=ledger_count,
            ledger_amount=ledger_amount,
        )
        if not settlement.matched:
            _log.warning(
                "%s: batch %s of terminal %s does not match: terminal %d / %s, ledger %d / %s",
                self.name,
                message.batch_no,
                message.terminal_id,
                settlement.reported_count,
                settlement.reported_amount.format(),
                ledger_count,
                ledger_amount.format(),
            )
        return settlement

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the acquirer's settlement detail CSV."""
        return read_pos_statement(source, currency=self.config.currency)
