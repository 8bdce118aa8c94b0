"""Recharge voucher cards (充值卡): the ``voucher`` channel — redemptions and retailer sales.

Invariant: the adapter reads a redemption request and hands it whole to a
:class:`VoucherRedeemer`; it decides nothing about the card and never sees a ledger table.
The redeemer (:class:`paygate.vouchers.VoucherService`) checks the PIN, throttles, audits
the attempt and posts the payment in one transaction. The PIN is a ``SecretStr`` from the
moment the request is parsed and appears in no answer, log line or error.

The PaymentSink that every operation receives is not called: a redemption must mark the card
redeemed in the same transaction as its payment, which only the voucher service can do
(through :meth:`paygate.payments.Payments.pay_within`). The redeemer reaches the adapter through
its context: :class:`VoucherContext` is an :class:`~paygate.channels.base.AdapterContext`
with a ``vouchers`` field. An adapter built without one still reads statements, and refuses
redemptions as a configuration problem (503).

The module reads top to bottom: the wire model of a redemption request, the redeemer
protocol, the statement reader for the retailers' card-sales settlement file, the settlement
rules, and the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, ClassVar, Final, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

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
from paygate.channels.wire import (
    Headers,
    csv_statement_rows,
    first_validation_error,
    make_statement_line,
    parse_json_object,
    parse_local_time,
    parse_money,
    shown,
    source_label,
)
from paygate.errors import ConfigurationError, ParseError, PaygateError
from paygate.models import Identifier, Receipt, StatementLine, StatementLineKind
from paygate.vouchers import (
    CHANNEL,
    RedemptionThrottledError,
    WrongPinError,
    serial_is_valid,
)

__all__ = [
    "VOUCHER_STATEMENT_COLUMNS",
    "RedeemRequest",
    "VoucherAdapter",
    "VoucherConfig",
    "VoucherContext",
    "VoucherRedeemer",
    "parse_redeem_request",
    "read_voucher_statement",
    "voucher_settlement",
]

_JSON: Final = "application/json"
_TOO_MANY_REQUESTS: Final = 429


# ── wire model ───────────────────────────────────────────────────────────────────────────


class RedeemRequest(BaseModel):
    """A redemption request: ``{"account_no", "serial", "pin", "source"}``, all strings.

    A PIN sent as a JSON number is refused: it would lose its leading zeros. Validation
    errors never echo the input (the PIN may be in it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    account_no: Identifier
    serial: str = Field(min_length=1, max_length=64)
    pin: SecretStr = Field(min_length=1, max_length=64)
    source: str | None = Field(default=None, min_length=1, max_length=200)


def parse_redeem_request(body: bytes) -> RedeemRequest:
    """Read a JSON redemption request, or refuse it with a ParseError naming the field."""
    message = parse_json_object(body, source=CHANNEL)
    try:
        return RedeemRequest.model_validate(message)
    except ValidationError as exc:
        raise first_validation_error(exc, source=CHANNEL) from None


# ── the redeemer ─────────────────────────────────────────────────────────────────────────


class VoucherRedeemer(Protocol):
    """What redeems a card; :class:`paygate.vouchers.VoucherService` implements it.

    Returns the payment's receipt (``replayed=True`` when the same account redeemed the same
    card before) or raises a :class:`~paygate.errors.PaygateError` naming the refusal.
    """

    def redeem(self, account_no: str, serial: str, pin: str, *, source: str) -> Receipt:
        """Redeem card ``serial`` with ``pin`` for ``account_no``; ``source`` is who asked."""
        ...


@dataclass(frozen=True)
class VoucherContext(AdapterContext):
    """An adapter context that also carries the voucher service redemptions go to."""

    vouchers: VoucherRedeemer | None = None


# ── statement reader ─────────────────────────────────────────────────────────────────────

VOUCHER_STATEMENT_COLUMNS: Final = (
    "batch_no",
    "serial_first",
    "serial_last",
    "face_value",
    "sold_count",
    "fee",
    "net",
    "sold_at",
)
"""The header of a retailer's card-sales settlement file."""

_SOLD_AT_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def read_voucher_statement(
    source: StatementSource, *, currency: str, timezone: str
) -> Iterator[StatementLine]:
    """Read a retailer's card-sales settlement CSV (UTF-8, optional BOM) line by line.

    Layout: the header :data:`VOUCHER_STATEMENT_COLUMNS`, then one row per run of
    consecutive cards sold: the batch, the first and last serial of the run (check digits
    verified), the face value in major units, how many cards were sold (it must equal the
    run's length), the retailer's commission and the net it settles (``net`` must equal
    ``face_value × sold_count − fee``), and when they were sold, ``YYYY-MM-DD hh:mm:ss``
    local time in ``timezone``. Each row is one payment-kind line: gross = face value ×
    count, channel transaction id ``<batch_no>:<first>-<last>``, reference the batch number.
    """
    label = source_label(source)
    zone = ZoneInfo(timezone)
    for line_no, row in csv_statement_rows(
        source, VOUCHER_STATEMENT_COLUMNS, what="a voucher sales statement"
    ):
        yield _statement_line(
            row,
            currency=currency,
            zone=zone,
            label=label,
            line_no=line_no,
        )


def _statement_line(
    row: Mapping[str, str], *, currency: str, zone: ZoneInfo, label: str, line_no: int
) -> StatementLine:
    def fail(message: str, field: str) -> ParseError:
        return ParseError(message, source=label, line=line_no, field=field)

    batch_no = row["batch_no"]
    if not batch_no or len(batch_no) > 64 or not batch_no.isprintable():
        raise fail("1-64 printable characters", "batch_no")
    first, last = row["serial_first"], row["serial_last"]
    for serial, field in ((first, "serial_first"), (last, "serial_last")):
        if not (serial.isascii() and serial.isdigit() and serial_is_valid(serial)):
            raise fail(f"not a card serial (or its check digit fails): {shown(serial)}", field)
    run = int(last[:-1]) - int(first[:-1]) + 1
    if run < 1:
        raise fail("the last serial is before the first", "serial_last")
    count_text = row["sold_count"]
    if not (count_text.isascii() and count_text.isdigit()) or int(count_text) != run:
        raise fail(f"must be the run's length, {run} cards", "sold_count")
    face = parse_money(row["face_value"], currency, source=label, line=line_no, field="face_value")
    if face.minor <= 0:
        raise fail("a face value is positive", "face_value")
    fee = parse_money(row["fee"], currency, source=label, line=line_no, field="fee")
    if fee.minor < 0:
        raise fail("a commission is not negative", "fee")
    net = parse_money(row["net"], currency, source=label, line=line_no, field="net")
    gross = face * run
    if net != gross - fee:
        raise fail(
            f"{net.format()} is not face value × count − fee = {(gross - fee).format()}", "net"
        )
    return make_statement_line(
        line_no=line_no,
        kind=StatementLineKind.PAYMENT,
        gross=gross,
        fee=fee,
        occurred_at=parse_local_time(
            row["sold_at"], _SOLD_AT_FORMAT, zone, source=label, line=line_no, field="sold_at"
        ),
        channel_txn_id=f"{batch_no}:{first}-{last}",
        reference=batch_no,
        source=label,
    )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def voucher_settlement() -> SettlementRules:
    """Retailers close their day at midnight and settle card sales T+1, less commission.

    The commission is contracted per retailer, so none is assumed: set ``settlement.fee``
    (for example ``FeeSchedule(rate_ppm=20_000)`` for 2 %).
    """
    return SettlementRules(cutoff=time(0, 0), lag_days=1, grace_days=2, fee=FeeSchedule())


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class VoucherConfig(ChannelConfig):
    """Configuration of the ``voucher`` channel."""

    settlement: SettlementRules = Field(default_factory=voucher_settlement)
    max_body_bytes: int = Field(
        default=4096, gt=0, le=16 * 1024 * 1024, description="a redemption request is tiny"
    )
    source_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="a header the HTTP layer sets to the authenticated caller (device id, "
        "client address); when set, it is the attempt's source and the body's is ignored, so "
        "that a client cannot dodge the per-source limit by naming itself differently",
    )


class VoucherAdapter(ChannelAdapter[VoucherConfig]):
    """Voucher redemption requests (JSON) and the retailers' card-sales statements.

    Answers are JSON. Redeemed: ``200 {"result": "redeemed" | "replayed", "receipt": …}``.
    Refused: ``{"result": "refused", "code", "message", "field"}`` with the status of
    :func:`~paygate.channels.base.refusal_status` — except throttling, which is ``429`` and
    adds ``retry_at``; a wrong PIN adds ``attempts_left``.
    """

    name: ClassVar[str] = CHANNEL
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.REDEEM, Operation.STATEMENT})
    config_model: ClassVar[type[ChannelConfig]] = VoucherConfig

    def handle_redeem(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """Redeem a card through the context's voucher service; ``sink`` is not called."""
        try:
            receipt = self.redeem(body, headers)
        except PaygateError as exc:
            return self._refuse(exc)
        answer = {
            "result": "replayed" if receipt.replayed else "redeemed",
            "receipt": receipt.model_dump(mode="json"),
        }
        return acknowledged(receipt, body=_encode(answer), content_type=_JSON)

    def redeem(self, body: bytes, headers: Mapping[str, str]) -> Receipt:
        """Read a redemption request and redeem it; a refusal raises its PaygateError."""
        self.check_body(body)
        request = parse_redeem_request(body)
        source = self._source(request, headers)
        return self._redeemer().redeem(
            request.account_no,
            request.serial,
            request.pin.get_secret_value(),
            source=source,
        )

    def _source(self, request: RedeemRequest, headers: Mapping[str, str]) -> str:
        if self.config.source_header is None:
            if request.source is None:
                raise ParseError("field required", source=self.name, field="source")
            return request.source
        trusted = Headers(headers, source=self.name).get(self.config.source_header)
        if not trusted:
            raise ParseError(
                "the caller's source header is missing",
                source=self.name,
                field=self.config.source_header,
            )
        return trusted

    def _redeemer(self) -> VoucherRedeemer:
        context = self.context
        if not isinstance(context, VoucherContext) or context.vouchers is None:
            raise ConfigurationError(
                "channel 'voucher' has no voucher service: pass VoucherContext(vouchers=...)",
                field="vouchers",
            )
        return context.vouchers

    def _refuse(self, exc: PaygateError) -> NotifyResult:
        answer: dict[str, Any] = {
            "result": "refused",
            "code": exc.code,
            "message": str(exc),
            "field": exc.field,
        }
        if isinstance(exc, WrongPinError):
            answer["attempts_left"] = exc.attempts_left
        if isinstance(exc, RedemptionThrottledError):
            answer["retry_at"] = exc.retry_at.isoformat()
        result = refused(self.name, exc, body=_encode(answer), content_type=_JSON)
        if isinstance(exc, RedemptionThrottledError):
            # Not "retry later at will" (503): retrying before retry_at is refused again.
            return result.model_copy(update={"status_code": _TOO_MANY_REQUESTS})
        return result

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read a retailer's card-sales settlement CSV."""
        return read_voucher_statement(
            source, currency=self.config.currency, timezone=self.settlement.timezone
        )


def _encode(answer: Mapping[str, Any]) -> bytes:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
