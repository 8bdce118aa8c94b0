"""Kiosk transaction ids, wire models, the signature check and the mapping to a
:class:`~paygate.models.PaymentIntent`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from paygate.channels.base import AdapterContext
from paygate.channels.errors import DeviceChannelMismatchError
from paygate.channels.wire import first_validation_error, read_json_model
from paygate.devices import Device, DeviceDirectory, verify_request
from paygate.errors import CurrencyMismatchError, InvalidInputError, ParseError
from paygate.models import Identifier, PaymentIntent
from paygate.money import Money

_MAX_MINOR: Final = 10**12
"""The largest amount one message may carry, in minor units (ten billion yuan)."""


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


def is_terminal_id(value: str) -> bool:
    """Whether ``value`` has the form of a kiosk terminal id (1-32 of A-Z a-z 0-9 . _ -)."""
    return _TERMINAL_ID.match(value) is not None


def split_channel_txn_id(value: str) -> tuple[str, str] | None:
    """``(terminal, transaction id)`` of a kiosk channel transaction id, or None."""
    terminal, colon, txn_id = value.partition(":")
    if not colon or not is_terminal_id(terminal) or method_of(txn_id) is None:
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
