"""The DL/T 645 head-end: supply commands sent straight to a meter, and read back from it.

Invariant 5 ("reconnection is never forgotten") as this adapter keeps it: an order counts as
``completed`` only when the meter reports its relay in the ordered position (closed for a
reconnection, open for a disconnection). A close permit (合闸允许) that leaves the relay open
until the customer presses the meter's button is ``acknowledged``, and becomes ``completed``
only when a later :meth:`Dlt645HeadEnd.poll` reads the relay closed. A meter that cannot be
reached, stays silent or answers with a garbled or stray frame raises
:class:`HeadEndUnavailable` (try again: every DL/T 645 command here can be repeated, so a
read-back that fails after the meter obeyed is simply done again); a meter that refuses the
command (wrong password, expired command, a protected meter asked to trip) raises
:class:`HeadEndRejected` with the meter's reasons, because sending it again changes nothing.

The meter is reached through a transport that ``transport_factory(meter_address)`` opens for
each command (a serial port, a DTU's TCP socket, a concentrator's pass-through); if the
transport has a ``close()`` method it is called when the command is over. The password and
operator code are :class:`~pydantic.SecretStr` and never appear in a repr, an error or a log.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar, Final, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from paygate.clock import DEFAULT_TIMEZONE, Clock, SystemClock
from paygate.errors import ConfigurationError, InvalidInputError, PaygateError
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyAction,
    SupplyCommand,
    config_value,
)
from paygate.headend.dlt645 import (
    MAX_WAKE_UP_BYTES,
    Dlt645Meter,
    Dlt645Transport,
    FrameError,
    MeterAddress,
    MeterRefusedError,
    ReconnectMode,
    ReconnectOutcome,
    RelayState,
    RelayStatus,
    TransportError,
    UnexpectedReplyError,
)

__all__ = ["Dlt645HeadEnd", "Dlt645HeadEndConfig", "TransportFactory"]

_log = logging.getLogger(__name__)

TransportFactory = Callable[[str], Dlt645Transport]
"""Opens a transport to the meter with this (12-character, normalised) address."""

_T = TypeVar("_T")

_OUTCOMES: Final = {
    ReconnectOutcome.SUPPLY_RESTORED: HeadEndOutcome.COMPLETED,
    ReconnectOutcome.AWAITING_CUSTOMER: HeadEndOutcome.ACKNOWLEDGED,
    ReconnectOutcome.NOT_CONFIRMED: HeadEndOutcome.DISPATCHED,
}

# The order kind each action belongs to. A trip on a reconnection order would cut off a
# customer who has just paid: a contradiction is refused, never resolved by guessing.
_KIND_OF_ACTION: Final = {
    SupplyAction.DIRECT_CLOSE: "reconnect",
    SupplyAction.CLOSE_PERMIT: "reconnect",
    SupplyAction.TRIP: "disconnect",
}

# Any valid full address: the driver is built once at configuration with it, so that settings
# the driver refuses are refused then, not at the first order.
_PROBE_ADDRESS: Final = "000000000001"


class Dlt645HeadEndConfig(BaseModel):
    """Credentials and timing for DL/T 645 meters; the driver checks the values' shapes."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    password: SecretStr = Field(description="6 hex digits, most significant first")
    operator_code: SecretStr = Field(description="8 hex digits, most significant first")
    password_level: int = Field(ge=0, le=0xFF, description="PA: 02H or 04H for plain text")
    command_validity: timedelta = Field(
        default=timedelta(minutes=5), description="how long a meter accepts a command"
    )
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="the meters' wall clock")
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per reply")
    wake_up: int = Field(default=MAX_WAKE_UP_BYTES, ge=0, le=MAX_WAKE_UP_BYTES)
    close_mode: ReconnectMode = Field(
        default=ReconnectMode.DIRECT_CLOSE,
        description="how this head-end's meters reconnect: direct_close (1CH, the relay closes "
        "now) or close_permit (1BH, the customer presses the meter's button)",
    )


class _Unused:
    """The transport of the configuration probe, which never exchanges a frame."""

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        raise OSError("the configuration probe does not talk to meters")


def _validated(config: Mapping[str, Any]) -> Dlt645HeadEndConfig:
    try:
        return Dlt645HeadEndConfig.model_validate(dict(config))
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise ConfigurationError(f"head-end dlt645: {first['msg']}", field=field) from None


def _factory(value: object) -> TransportFactory:
    """A transport factory given as a callable or as a ``package.module:attribute`` path."""
    if isinstance(value, str):
        module, _, attribute = value.partition(":")
        try:
            value = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"head-end dlt645: transport factory {value!r} cannot be imported "
                f"(expected 'package.module:attribute'): {exc}",
                field="transport_factory",
            ) from None
    if not callable(value):
        raise ConfigurationError(
            "head-end dlt645: the transport factory must be callable", field="transport_factory"
        )
    factory: TransportFactory = value
    return factory


def _describe(status: RelayStatus) -> str:
    return f"relay {status.relay}, commanded {status.relay_command}"


class Dlt645HeadEnd(HeadEnd):
    """Drives DL/T 645-2007 meters directly; see the module docstring.

    Construct it with a :class:`Dlt645HeadEndConfig` and a transport factory or, from one
    mapping holding both (the factory as a callable or an import path), with
    :meth:`from_config`.
    """

    name: ClassVar[str] = "dlt645"

    def __init__(
        self,
        config: Dlt645HeadEndConfig,
        *,
        transport_factory: TransportFactory,
        clock: Clock | None = None,
    ) -> None:
        if not callable(transport_factory):
            raise ConfigurationError(
                "head-end dlt645: the transport factory must be callable",
                field="transport_factory",
            )
        self._config = config
        self._factory = transport_factory
        self._clock: Clock = clock or SystemClock()
        try:
            self._meter(_Unused(), MeterAddress(_PROBE_ADDRESS))
        except PaygateError as exc:
            raise ConfigurationError(f"head-end dlt645: {exc.message}", field=exc.field) from None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, clock: Clock | None = None) -> Self:
        """Build from a mapping: the fields of :class:`Dlt645HeadEndConfig` and
        ``transport_factory`` (a callable or a ``package.module:attribute`` path)."""
        if not isinstance(config, Mapping):
            raise ConfigurationError("head-end dlt645: the configuration must be a mapping")
        factory = _factory(config_value(config, "transport_factory"))
        settings = {key: value for key, value in config.items() if key != "transport_factory"}
        return cls(_validated(settings), transport_factory=factory, clock=clock)

    @property
    def config(self) -> Dlt645HeadEndConfig:
        """The configuration (secrets masked in its repr)."""
        return self._config

    def __repr__(self) -> str:
        return f"Dlt645HeadEnd(password_level={self._config.password_level:02X}H)"

    def send(self, command: SupplyCommand) -> HeadEndResult:
        """Send the command to the meter and read the relay back."""
        expected_kind = _KIND_OF_ACTION[command.action]
        if command.kind != expected_kind:
            raise HeadEndRejected(
                f"order {command.order_id} is a {command.kind!r} order but asks for "
                f"{command.action}, which belongs to a {expected_kind!r} order",
                field="kind",
            )
        address = self._address(command)
        if command.action is SupplyAction.TRIP:
            status = self._drive(command, address, "trip", self._trip)
            outcome = (
                HeadEndOutcome.COMPLETED
                if status.relay is RelayState.OPEN
                else HeadEndOutcome.DISPATCHED
            )
        else:
            mode = self._close_mode(command)
            result = self._drive(
                command, address, mode.replace("_", " "), lambda meter: meter.reconnect(mode)
            )
            status, outcome = result.status, _OUTCOMES[result.outcome]
        return self._result(address, outcome, status)

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        """Read the relay back: where the order stands, or None if the meter shows no sign of it.

        A reconnection is completed when the relay reads closed; with the relay open and its
        command closed, a close permit is acknowledged (waiting for the customer's button) and
        a direct close dispatched (not confirmed). A disconnection is completed when the relay
        reads open. When the relay's command is not what the order asked, the meter never took
        the command, and None says so: the dispatcher sends it again.
        """
        address = self._address(command)
        status = self._drive(command, address, "status read", lambda meter: meter.relay_status())
        wanted = RelayState.OPEN if command.action is SupplyAction.TRIP else RelayState.CLOSED
        if status.relay is wanted:
            return self._result(address, HeadEndOutcome.COMPLETED, status)
        if status.relay_command is not wanted:
            return None
        if (
            command.action is not SupplyAction.TRIP
            and self._close_mode(command) is ReconnectMode.CLOSE_PERMIT
        ):
            return self._result(address, HeadEndOutcome.ACKNOWLEDGED, status)
        return self._result(address, HeadEndOutcome.DISPATCHED, status)

    # internals

    def _close_mode(self, command: SupplyCommand) -> ReconnectMode:
        """An order that asks for a close permit gets one; otherwise the head-end's meters
        reconnect the way it is configured to (``close_mode``), since the core orders a
        reconnection without knowing which meters allow remote energising."""
        if command.action is SupplyAction.CLOSE_PERMIT:
            return ReconnectMode.CLOSE_PERMIT
        return self._config.close_mode

    @staticmethod
    def _trip(meter: Dlt645Meter) -> RelayStatus:
        meter.trip()
        return meter.relay_status()

    def _result(
        self, address: MeterAddress, outcome: HeadEndOutcome, status: RelayStatus
    ) -> HeadEndResult:
        detail = f"meter {address}: {_describe(status)}"
        if outcome is HeadEndOutcome.ACKNOWLEDGED:
            detail += " (close permitted: waiting for the customer to press the meter's button)"
        return HeadEndResult(outcome=outcome, detail=detail, at=self._clock.now())

    def _meter(self, transport: Dlt645Transport, address: MeterAddress) -> Dlt645Meter:
        config = self._config
        return Dlt645Meter(
            transport,
            address,
            password=config.password,
            operator_code=config.operator_code,
            password_level=config.password_level,
            clock=self._clock,
            command_validity=config.command_validity,
            timezone=config.timezone,
            timeout=config.timeout,
            wake_up=config.wake_up,
        )

    def _address(self, command: SupplyCommand) -> MeterAddress:
        if command.meter_address is None:
            raise HeadEndRejected(
                f"order {command.order_id} names no meter address; a DL/T 645 command needs one",
                field="meter_address",
            )
        try:
            address = MeterAddress(command.meter_address)
        except InvalidInputError as exc:
            raise HeadEndRejected(
                f"order {command.order_id}: meter address {command.meter_address!r} is not a "
                f"DL/T 645 address: {exc.message}",
                field="meter_address",
            ) from None
        if address.is_wildcard or address.is_broadcast:
            # Such a command could reach every meter on the bus.
            raise HeadEndRejected(
                f"order {command.order_id}: meter address {address} is a wildcard or broadcast "
                "address; a command names exactly one meter",
                field="meter_address",
            )
        return address

    def _drive(
        self,
        command: SupplyCommand,
        address: MeterAddress,
        what: str,
        operation: Callable[[Dlt645Meter], _T],
    ) -> _T:
        try:
            transport = self._factory(address.text)
        except OSError as exc:  # TimeoutError is an OSError
            raise HeadEndUnavailable(
                f"no transport to meter {address} for order {command.order_id}: {exc}",
                field="transport",
            ) from exc
        try:
            return operation(self._meter(transport, address))
        except MeterRefusedError as exc:
            raise HeadEndRejected(
                f"order {command.order_id}: {exc.message}", field="meter"
            ) from exc
        except (TransportError, FrameError, UnexpectedReplyError) as exc:
            # Silence, a broken line, line noise or another meter's reply on a shared bus: all
            # pass, and the command can be repeated.
            raise HeadEndUnavailable(
                f"order {command.order_id}: {what} of meter {address} failed: {exc}",
                field="transport",
            ) from exc
        finally:
            self._release(transport, address)

    @staticmethod
    def _release(transport: Dlt645Transport, address: MeterAddress) -> None:
        close = getattr(transport, "close", None)
        if not callable(close):
            return
        try:
            close()
        except OSError as exc:
            # The command's outcome stands whatever happens to the line afterwards.
            _log.warning("DL/T 645: closing the transport to meter %s failed: %s", address, exc)
