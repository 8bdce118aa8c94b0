"""The channel adapter protocol, and the registry that admits adapters.

Invariant: an adapter calls its :class:`PaymentSink` only for a message whose signature
verified, and every operation it does not offer raises
:class:`~paygate.errors.UnsupportedOperationError` through :func:`unsupported` — never a
silent no-op. The registry admits an adapter class only when the operations it declares are
exactly the operation methods it implements, and its name is unique.

An adapter knows its channel's wire format, signatures, statement layout and settlement rules,
and nothing about the ledger: it talks to the core only through :class:`PaymentSink`, which
``Gateway`` implements. Adding a channel is one module with one :class:`ChannelAdapter`
subclass, its typed :class:`ChannelConfig`, and its tests; the shared contract suite in
``tests/channels`` then runs on it.
"""

from __future__ import annotations

import heapq
import importlib
import inspect
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final, Generic, NoReturn, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paygate.channels.errors import MissingAccountError, PayloadTooLargeError
from paygate.channels.orders import Order, OrderStore
from paygate.clock import DEFAULT_TIMEZONE, Clock, SystemClock, require_aware
from paygate.clock import business_date as _business_date
from paygate.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidAmountError,
    InvalidInputError,
    NotFoundError,
    PaygateError,
    UnknownAccountError,
    UnsupportedOperationError,
)
from paygate.models import PaymentIntent, Receipt, StatementLine
from paygate.money import MAX_MINOR, Money, minor_units_exponent, round_half_up
from paygate.renames import RETIRED_CHANNELS, current_channel

__all__ = [
    "BUILTIN_CHANNELS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_MAX_PAYMENT",
    "ENTRY_POINT_GROUP",
    "HELD_ERRORS",
    "OPERATION_METHODS",
    "AdapterContext",
    "ChannelAdapter",
    "ChannelConfig",
    "ChannelRegistry",
    "FeeSchedule",
    "InMemoryNonceStore",
    "NonceStore",
    "NotifyResult",
    "Operation",
    "PaymentSink",
    "SettlementRules",
    "StatementSource",
    "acknowledged",
    "held_for_suspense",
    "refusal_status",
    "refused",
    "unsupported",
]

_log = logging.getLogger("paygate.channels")

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
"""Bodies above this many bytes are refused before parsing unless a channel configures more."""

DEFAULT_MAX_CLOCK_SKEW: Final = timedelta(minutes=10)
"""How far a payment's time may be ahead of the adapter's clock unless configured otherwise:
the channel's clock and ours differ by seconds, never by hours."""

DEFAULT_MAX_PAYMENT: Final = 10**10
"""The largest single payment a channel posts unless configured otherwise, in minor units
(100 000 000.00 yuan): above any electricity bill, far below what the ledger holds."""

ENTRY_POINT_GROUP: Final = "paygate.channels"
"""The entry-point group through which third-party packages add channel adapters."""

BUILTIN_CHANNELS: Final[tuple[str, ...]] = (
    "paygate.channels.mobile:AlipayAdapter",
    "paygate.channels.mobile:WechatPayAdapter",
    "paygate.channels.online:OnlineAdapter",
    "paygate.channels.pos:PosAdapter",
    "paygate.channels.bank_agent:BankAgentAdapter",
    "paygate.channels.kiosk:KioskAdapter",
    "paygate.channels.voucher:VoucherAdapter",
)
"""The built-in adapters, as ``module:Class`` paths (imported on registration, not here,
because the adapter modules import this one)."""

StatementSource = str | Path | BinaryIO
"""A statement file: a path (``str`` or :class:`~pathlib.Path`) or a binary stream."""


# ── what an adapter needs from the core ──────────────────────────────────────────────────


class PaymentSink(Protocol):
    """The part of the core an adapter may call; ``paygate.gateway.Gateway`` implements it.

    Paying the same ``(channel, channel_txn_id)`` again returns the original receipt with
    ``replayed=True``; adapters rely on that to acknowledge a channel's retries. Reversing a
    payment that is no longer posted (already reversed) raises
    :class:`~paygate.errors.InvalidStateError` and changes nothing.
    """

    def pay(self, intent: PaymentIntent) -> Receipt:
        """Post ``intent`` (or return the receipt of the identical earlier one)."""
        ...

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> object:
        """Reverse the payment ``(channel, channel_txn_id)`` with a new, reversing entry.

        Adapters ignore the result, so the core may return its record of the reversal.
        """
        ...


# ── settlement rules ─────────────────────────────────────────────────────────────────────


class FeeSchedule(BaseModel):
    """What a channel charges per payment, in integer minor units of the payment's currency.

    ``fee = max(minimum, round_half_up(gross × rate_ppm / 1 000 000) + fixed)``, then capped
    at ``maximum`` when one is set. A zero payment costs nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_ppm: int = Field(default=0, ge=0, le=1_000_000, description="parts per million")
    fixed: int = Field(default=0, ge=0, description="minor units added to every payment")
    minimum: int = Field(default=0, ge=0, description="minor units, the least fee charged")
    maximum: int | None = Field(default=None, ge=0, description="minor units, the cap")

    @model_validator(mode="after")
    def _bounds(self) -> FeeSchedule:
        if self.maximum is not None and self.maximum < self.minimum:
            raise ValueError("the fee maximum is below the minimum")
        return self

    def fee(self, gross: Money) -> Money:
        """The fee on a payment of ``gross`` (exact, rounded half-up once)."""
        if gross.minor < 0:
            raise InvalidAmountError("a fee is computed on a non-negative amount", field="gross")
        if gross.minor == 0:
            return Money.zero(gross.currency)
        minor = round_half_up(Fraction(gross.minor * self.rate_ppm, 1_000_000)) + self.fixed
        minor = max(minor, self.minimum)
        if self.maximum is not None:
            minor = min(minor, self.maximum)
        return Money(minor, gross.currency)


class SettlementRules(BaseModel):
    """When a channel's day closes, when it pays out, and what it keeps.

    ``business_date`` puts an instant on the channel's business day: at or after ``cutoff``
    (local time in ``timezone``) it belongs to the next day. ``settlement_date`` adds
    ``lag_days`` *calendar* days (T+0, T+1 …): the wallets and card gateways modelled here
    settle on weekends and holidays too; a channel that settles on banking days needs a
    holiday calendar, which these rules do not model. ``grace_days`` is how long
    reconciliation waits for a late statement line before calling a payment unmatched.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = DEFAULT_TIMEZONE
    cutoff: time = time(0, 0)
    lag_days: int = Field(default=1, ge=0, le=31)
    grace_days: int = Field(default=2, ge=0, le=31)
    fee: FeeSchedule = Field(default_factory=FeeSchedule)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("cutoff")
    @classmethod
    def _local_time(cls, value: time) -> time:
        # The cut-off is a wall-clock time in ``timezone``; an offset here would contradict it.
        if value.tzinfo is not None:
            raise ValueError("the cut-off is a local time in the rules' time zone, without tzinfo")
        return value

    def business_date(self, instant: datetime) -> date:
        """The channel business date of ``instant`` (aware) under this cut-off."""
        return _business_date(instant, self.timezone, self.cutoff)

    def settlement_date(self, business_date: date) -> date:
        """The calendar date on which the channel pays out ``business_date``'s takings."""
        return business_date + timedelta(days=self.lag_days)


# ── operations ───────────────────────────────────────────────────────────────────────────


class Operation(StrEnum):
    """Something a channel may offer; each is one method of :class:`ChannelAdapter`."""

    NOTIFY = "notify"
    """An asynchronous payment notification from the channel (wallet, gateway)."""
    PAY = "pay"
    """A synchronous payment request from a device (kiosk, POS) in its native form."""
    REFUND = "refund"
    """A refund message from the channel."""
    VOID = "void"
    """A same-day cancellation of a payment (POS void)."""
    REVERSAL = "reversal"
    """A reversal of a payment the channel could not complete (bank agent)."""
    STATEMENT = "statement"
    """Reading the channel's settlement statement file."""
    ORDER = "order"
    """Creating a payment order before the customer pays (online, order first)."""
    DAILY_CLOSE = "daily_close"
    """A device's end-of-day close (kiosk cash count)."""
    REDEEM = "redeem"
    """Redeeming a recharge voucher card."""
    BATCH_FILE = "batch_file"
    """Reading a batch file of collected payments (bank agent collection)."""


OPERATION_METHODS: Final[Mapping[Operation, str]] = {
    Operation.NOTIFY: "handle_notify",
    Operation.PAY: "handle_pay",
    Operation.REFUND: "handle_refund",
    Operation.VOID: "handle_void",
    Operation.REVERSAL: "handle_reversal",
    Operation.STATEMENT: "read_statement",
    Operation.ORDER: "create_order",
    Operation.DAILY_CLOSE: "handle_daily_close",
    Operation.REDEEM: "handle_redeem",
    Operation.BATCH_FILE: "read_batch_file",
}
"""Which :class:`ChannelAdapter` method carries each operation."""


def unsupported(adapter: ChannelAdapter[Any], operation: Operation) -> NoReturn:
    """Refuse ``operation`` on ``adapter``: the one way an adapter says "not offered"."""
    raise UnsupportedOperationError(
        f"channel {adapter.name!r} does not offer the {operation.value!r} operation",
        field="operation",
    )


# ── inbound results ──────────────────────────────────────────────────────────────────────


class NotifyResult(BaseModel):
    """What to answer the channel, byte for byte, and what happened.

    ``receipt`` is set when the core posted (or replayed) a payment; ``error_code`` and
    ``error`` are set when the message was refused. Neither set means the message was
    acknowledged without posting (a status the channel reports but that moves no money);
    ``held`` then says why when the message did report money: a verified payment naming no
    account, or one the core does not know. The channel is told "received" (it would retry
    for hours otherwise, and a retry could not succeed); the money stays in the channel's
    clearing account until reconciliation finds the payment on the channel's statement
    without a ledger payment and, by its policy, posts it to suspense with a finding.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status_code: int = Field(ge=100, le=599)
    body: bytes
    content_type: str | None
    receipt: Receipt | None = None
    error_code: str | None = None
    error: str | None = None
    held: str | None = None

    @property
    def ok(self) -> bool:
        """True when the channel is told the message was received."""
        return self.error_code is None


def refusal_status(exc: PaygateError) -> int:
    """The HTTP status for a refused message: 4xx for what a retry cannot fix, 5xx otherwise."""
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, UnsupportedOperationError):
        return 501
    # A store or ledger problem: the channel should retry later.
    return 503


def acknowledged(
    receipt: Receipt | None, *, body: bytes, content_type: str | None, status_code: int = 200
) -> NotifyResult:
    """A positive answer (the channel stops retrying)."""
    return NotifyResult(
        status_code=status_code, body=body, content_type=content_type, receipt=receipt
    )


def refused(
    channel: str, exc: PaygateError, *, body: bytes, content_type: str | None
) -> NotifyResult:
    """A negative answer naming the refusal; logged without the message or any key."""
    # %r: the text may quote message fields, and a newline in one must not forge a log line.
    _log.warning("%s: message refused: %s: %r", channel, exc.code, str(exc))
    return NotifyResult(
        status_code=refusal_status(exc),
        body=body,
        content_type=content_type,
        error_code=exc.code,
        error=str(exc),
    )


HELD_ERRORS: Final[tuple[type[PaygateError], ...]] = (UnknownAccountError, MissingAccountError)
"""Refusals of a verified payment that a retry cannot cure and that must not be retried:
the money is real, so it is acknowledged and held for suspense (:func:`held_for_suspense`)."""


def held_for_suspense(
    channel: str,
    exc: PaygateError,
    *,
    channel_txn_id: str,
    body: bytes,
    content_type: str | None,
    status_code: int = 200,
) -> NotifyResult:
    """A positive answer for a verified payment the core cannot post to an account.

    Logged as a warning naming the channel transaction, so that operations can follow it to
    the suspense report of the day's reconciliation.
    """
    _log.warning(
        "%s: payment %r acknowledged and held for suspense: %s: %r",
        channel,
        channel_txn_id,
        exc.code,
        str(exc),
    )
    return NotifyResult(
        status_code=status_code,
        body=body,
        content_type=content_type,
        held=f"{exc.code}: {exc}",
    )


# ── replay protection ────────────────────────────────────────────────────────────────────


class NonceStore(Protocol):
    """Remembers nonces until they expire, so that a signed request is accepted once."""

    def add(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``key`` until ``expires_at``; False when it is already remembered."""
        ...


class InMemoryNonceStore:
    """A per-process :class:`NonceStore`.

    Nonces are only added after a signature verified, so an attacker cannot fill it. Across
    several gateway nodes a replay may reach another node; the core's idempotency on
    ``(channel, channel_txn_id)`` still keeps it from posting twice.
    """

    def __init__(self) -> None:
        self._expiry: dict[str, datetime] = {}
        self._queue: list[tuple[datetime, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``key`` until ``expires_at``; False when it is already remembered."""
        expires_at = require_aware(expires_at, "expires_at")
        now = require_aware(now, "now")
        with self._lock:
            while self._queue and self._queue[0][0] <= now:
                expiry, old = heapq.heappop(self._queue)
                if self._expiry.get(old) == expiry:
                    del self._expiry[old]
            current = self._expiry.get(key)
            if current is not None and current > now:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._queue, (expires_at, key))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)


# ── configuration and construction ───────────────────────────────────────────────────────


class ChannelConfig(BaseModel):
    """What every channel is configured with; each adapter extends it with its own fields.

    Secrets are ``SecretStr`` / ``SecretBytes`` so that they never appear in a repr or a log,
    and validation errors do not echo the rejected input (which may be a key).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    settlement: SettlementRules = Field(default_factory=SettlementRules)
    currency: str = "CNY"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0, le=16 * 1024 * 1024)
    max_payment: int = Field(
        default=DEFAULT_MAX_PAYMENT,
        gt=0,
        le=MAX_MINOR,
        description="minor units; a single payment above this is refused in the channel's "
        "own answer (a message the channel signed is still no proof of a sane amount)",
    )
    max_clock_skew: timedelta = Field(
        default=DEFAULT_MAX_CLOCK_SKEW,
        description="how far a payment's time may be ahead of this server's clock",
    )

    @field_validator("max_clock_skew")
    @classmethod
    def _skew(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=1):
            raise ValueError("the clock skew must be between zero and one day")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        minor_units_exponent(value)
        return value


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter gets from the process around it, besides its configuration.

    ``orders`` is required by adapters that create payment orders; the core passes its
    database-backed :class:`~paygate.channels.orders.OrderStore`.
    """

    clock: Clock = field(default_factory=SystemClock)
    nonces: NonceStore = field(default_factory=InMemoryNonceStore)
    orders: OrderStore | None = None


ConfigT = TypeVar("ConfigT", bound=ChannelConfig)


# ChannelAdapter is an abstract base class, not a runtime-checkable Protocol: it carries the
# default implementation of every operation method (each refuses through ``unsupported``),
# so an operation a channel does not offer can never be a silent no-op, and a third-party
# adapter inherits that refusal instead of re-implementing it. A runtime-checkable Protocol
# would only check that names exist; registration here checks declared operations against
# overridden methods, which needs the defaults to compare against.
class ChannelAdapter(ABC, Generic[ConfigT]):
    """One payment channel: its messages, signatures, statement file and settlement rules.

    Subclasses set the class attributes ``name``, ``operations`` and ``config_model``,
    implement :meth:`read_statement`, and override exactly the operation methods listed in
    ``operations`` (see :data:`OPERATION_METHODS`).
    """

    name: ClassVar[str]
    """The channel's name: lower-case letters, digits and ``_``; ``PaymentIntent.channel``."""
    operations: ClassVar[frozenset[Operation]]
    """The operations this channel offers."""
    config_model: ClassVar[type[ChannelConfig]]
    """The pydantic model of this adapter's configuration."""

    config: ConfigT
    context: AdapterContext

    def __init__(self, config: ConfigT, context: AdapterContext | None = None) -> None:
        if not isinstance(config, self.config_model):
            raise ConfigurationError(
                f"channel {self.name!r} takes a {self.config_model.__name__}, "
                f"not {type(config).__name__}",
                field="config",
            )
        self.config = config
        self.context = context if context is not None else AdapterContext()

    @property
    def settlement(self) -> SettlementRules:
        """The channel's cut-off, settlement lag, reconciliation grace and fee schedule."""
        return self.config.settlement

    def __repr__(self) -> str:
        # Deliberately short: configuration holds keys, and reprs end up in logs.
        ops = ",".join(sorted(op.value for op in self.operations))
        return f"<{type(self).__name__} name={self.name!r} operations={ops}>"

    def check_body(self, body: bytes) -> None:
        """Refuse ``body`` unread when it is not bytes or longer than the configured limit."""
        if not isinstance(body, bytes):
            raise TypeError("a message body is bytes")
        if len(body) > self.config.max_body_bytes:
            raise PayloadTooLargeError(
                f"body of {len(body)} bytes exceeds the limit of "
                f"{self.config.max_body_bytes} bytes",
                field="body",
            )

    def admit(
        self, intent: PaymentIntent, *, field: str = "amount", time_field: str = "paid_at"
    ) -> PaymentIntent:
        """``intent`` when its amount is at most ``max_payment`` and its ``paid_at`` is not
        ahead of the adapter's clock by more than ``max_clock_skew``.

        ``PaymentIntent`` itself keeps ``paid_at`` within 2000-2099; only here is there a
        clock to compare with. A larger amount is an
        :class:`~paygate.errors.InvalidAmountError` naming ``field``, a future time an
        :class:`~paygate.errors.InvalidInputError` naming ``time_field`` (the channel's own
        names), which the adapter answers in its own format.
        """
        if intent.amount.minor > self.config.max_payment:
            ceiling = Money(self.config.max_payment, intent.amount.currency)
            raise InvalidAmountError(
                f"the amount exceeds the largest single payment of channel {self.name!r} "
                f"({ceiling.format()})",
                field=field,
            )
        now = self.context.clock.now()
        if intent.paid_at > now + self.config.max_clock_skew:
            raise InvalidInputError(
                f"the payment's time {intent.paid_at.isoformat()} is ahead of this server's "
                f"clock ({now.isoformat()}) by more than {self.config.max_clock_skew}",
                field=time_field,
            )
        return intent

    # Operation methods. Each default refuses; a subclass overrides those it declares.

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and act on an asynchronous notification; answer in the channel's form."""
        unsupported(self, Operation.NOTIFY)

    def handle_pay(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and post a device's synchronous payment request."""
        unsupported(self, Operation.PAY)

    def handle_refund(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and act on a refund message."""
        unsupported(self, Operation.REFUND)

    def handle_void(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and act on a same-day void."""
        unsupported(self, Operation.VOID)

    def handle_reversal(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and act on a reversal."""
        unsupported(self, Operation.REVERSAL)

    def handle_daily_close(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and record a device's end-of-day close."""
        unsupported(self, Operation.DAILY_CLOSE)

    def handle_redeem(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Verify and act on a voucher redemption."""
        unsupported(self, Operation.REDEEM)

    def create_order(self, account_no: str, amount: Money, *, now: datetime) -> Order:
        """Fix account and amount in a payment order before the customer pays."""
        unsupported(self, Operation.ORDER)

    def read_batch_file(self, source: StatementSource) -> Iterator[PaymentIntent]:
        """Read a batch file of collected payments, one intent per line, streaming."""
        unsupported(self, Operation.BATCH_FILE)

    @abstractmethod
    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the channel's settlement statement, one line at a time.

        Every channel has a statement, so this is the one method each adapter must write.
        Errors are :class:`~paygate.errors.ParseError` naming the source and 1-based line.
        """


# ── the registry ─────────────────────────────────────────────────────────────────────────

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def _import(path: str) -> object:
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def _check_adapter_class(candidate: object, label: str) -> type[ChannelAdapter[Any]]:
    """Return ``candidate`` as an adapter class or refuse it, naming ``label``."""
    if not (isinstance(candidate, type) and issubclass(candidate, ChannelAdapter)):
        raise ConfigurationError(
            f"channel {label!r}: {candidate!r} is not a ChannelAdapter subclass", field="channel"
        )
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"channel {label!r}: class attribute 'name' must be 2-32 lower-case letters, "
            "digits or '_', starting with a letter",
            field="channel",
        )
    operations = getattr(candidate, "operations", None)
    if not (
        isinstance(operations, frozenset)
        and operations
        and all(isinstance(op, Operation) for op in operations)
    ):
        raise ConfigurationError(
            f"channel {name!r}: class attribute 'operations' must be a non-empty "
            "frozenset of Operation",
            field="channel",
        )
    config_model = getattr(candidate, "config_model", None)
    if not (isinstance(config_model, type) and issubclass(config_model, ChannelConfig)):
        raise ConfigurationError(
            f"channel {name!r}: class attribute 'config_model' must be a ChannelConfig subclass",
            field="channel",
        )
    if inspect.isabstract(candidate):
        missing = ", ".join(sorted(candidate.__abstractmethods__))
        raise ConfigurationError(f"channel {name!r}: missing method(s) {missing}", field="channel")
    for operation, method in OPERATION_METHODS.items():
        implementation = getattr(candidate, method, None)
        if not callable(implementation):
            raise ConfigurationError(f"channel {name!r}: {method} is not a method", field="channel")
        overridden = implementation is not getattr(ChannelAdapter, method)
        if operation in operations and not overridden:
            raise ConfigurationError(
                f"channel {name!r} declares {operation.value!r} but does not implement {method}",
                field="channel",
            )
        if overridden and operation not in operations:
            raise ConfigurationError(
                f"channel {name!r} implements {method} but does not declare {operation.value!r}",
                field="channel",
            )
    return candidate


def _config_errors(exc: ValidationError) -> str:
    # Without the input values: a rejected value may be a key.
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "config"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class ChannelRegistry:
    """The channel adapters a process knows, by name; each checked when it is registered.

    Built-ins come from :data:`BUILTIN_CHANNELS`; third parties from the entry-point group
    :data:`ENTRY_POINT_GROUP` (``name = "package.module:AdapterClass"``, where ``name``
    equals the class's ``name``).
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[ChannelAdapter[Any]]] = {}

    @classmethod
    def with_builtins(cls) -> ChannelRegistry:
        """A registry holding the built-in adapters only."""
        registry = cls()
        for path in BUILTIN_CHANNELS:
            registry.register(_import(path), label=path)
        return registry

    @classmethod
    def discover(cls) -> ChannelRegistry:
        """The built-ins plus every adapter installed under the entry-point group."""
        registry = cls.with_builtins()
        registry.load_entry_points()
        return registry

    def register(self, adapter_class: object, *, label: str | None = None) -> None:
        """Admit ``adapter_class``; refuse a non-adapter, a missing member or a taken name."""
        where = label if label is not None else getattr(adapter_class, "name", repr(adapter_class))
        checked = _check_adapter_class(adapter_class, str(where))
        if checked.name in self._classes:
            raise ConfigurationError(
                f"channel {checked.name!r} is already registered "
                f"({self._classes[checked.name].__module__}."
                f"{self._classes[checked.name].__qualname__})",
                field="channel",
            )
        self._classes[checked.name] = checked

    def load_entry_points(self, found: Iterable[EntryPoint] | None = None) -> None:
        """Register the adapters of the ``paygate.channels`` entry points (or of ``found``)."""
        points = entry_points(group=ENTRY_POINT_GROUP) if found is None else found
        for point in points:
            try:
                loaded = point.load()
            # Any failure to import a plug-in (a missing dependency, a syntax error in it)
            # is a configuration problem of this deployment, reported with the channel name.
            except Exception as exc:
                raise ConfigurationError(
                    f"channel {point.name!r}: entry point {point.value!r} cannot be loaded: "
                    f"{type(exc).__name__}: {exc}",
                    field="channel",
                ) from exc
            checked = _check_adapter_class(loaded, point.name)
            if checked.name != point.name:
                raise ConfigurationError(
                    f"channel {point.name!r}: entry point names {checked.name!r}; "
                    "the entry point's name must equal the adapter's name",
                    field="channel",
                )
            self.register(checked, label=point.name)

    def names(self) -> tuple[str, ...]:
        """The registered channel names, sorted."""
        return tuple(sorted(self._classes))

    def get(self, name: str) -> type[ChannelAdapter[Any]]:
        """The adapter class registered as ``name`` (a retired name: its channel's, warned)."""
        name = current_channel(name, where="channel registry", category=FutureWarning)
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigurationError(f"no channel named {name!r}", field="channel") from None

    def create(
        self,
        name: str,
        config: ChannelConfig | Mapping[str, Any],
        context: AdapterContext | None = None,
    ) -> ChannelAdapter[Any]:
        """Construct the ``name`` adapter from its typed config (or a mapping to validate)."""
        adapter_class = self.get(name)
        model = adapter_class.config_model
        if isinstance(config, ChannelConfig):
            if not isinstance(config, model):
                raise ConfigurationError(
                    f"channel {name!r} takes a {model.__name__}, not {type(config).__name__}",
                    field="config",
                )
            typed = config
        else:
            try:
                typed = model.model_validate(config)
            except ValidationError as exc:
                # ``from None``: the pydantic error carries the rejected input, maybe a key.
                raise ConfigurationError(
                    f"channel {name!r}: invalid configuration: {_config_errors(exc)}",
                    field="config",
                ) from None
        return adapter_class(typed, context)

    def __contains__(self, name: object) -> bool:
        return name in self._classes or RETIRED_CHANNELS.get(str(name)) in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)
