"""The kiosk channel's configuration, context and adapter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Final

from pydantic import Field, field_validator

from paygate.channels.base import (
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    NotifyResult,
    Operation,
    PaymentSink,
    SettlementRules,
    StatementSource,
    acknowledged,
    refused,
)
from paygate.channels.errors import KioskCloseConflictError
from paygate.channels.kiosk.close import (
    CloseOutcome,
    KioskCloseRecord,
    KioskCloseResult,
    KioskLedger,
    close_result,
)
from paygate.channels.kiosk.messages import (
    KioskPayRequest,
    authenticate_kiosk,
    parse_close_request,
    parse_pay_request,
    pay_intent,
)
from paygate.channels.kiosk.receipt import kiosk_receipt
from paygate.channels.kiosk.statement import kiosk_settlement, read_kiosk_statement
from paygate.devices import DEFAULT_WINDOW, Device, DeviceDirectory, canonical_target
from paygate.errors import (
    ConfigurationError,
    CurrencyMismatchError,
    InvalidInputError,
    PaygateError,
)
from paygate.models import PaymentIntent, StatementLine
from paygate.money import Money

_log = logging.getLogger("paygate.channels.kiosk")

_JSON: Final = "application/json"


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
