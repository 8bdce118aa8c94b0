"""The driver: a transport, and :class:`Dlt645Meter`, which turns a reconnection into frames
and counts it done only when the meter reports its relay closed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr

from paygate.clock import DEFAULT_TIMEZONE, Clock, require_aware
from paygate.errors import ConfigurationError, UnsupportedOperationError
from paygate.headend.dlt645.codec import (
    MAX_WAKE_UP_BYTES,
    Dlt645Error,
    Frame,
    MeterAddress,
    _zone,
    decode_frame,
    encode_frame,
)
from paygate.headend.dlt645.commands import (
    _ACTION_WORDS,
    _CIPHERTEXT_LEVELS,
    RELAY_STATUS_DI,
    MeterCredentials,
    RelayState,
    RelayStatus,
    RemoteControlAction,
    RemoteControlCommand,
    build_read,
    build_remote_control,
    parse_read_reply,
)
from paygate.headend.dlt645.replies import (
    MeterErrorFlag,
    MeterRefusedError,
    UnexpectedReplyError,
    _error_flags,
)

_log = logging.getLogger("paygate.headend.dlt645")


class TransportError(Dlt645Error):
    """The transport failed to carry the request or the reply."""

    code = "dlt645_transport_error"


class MeterTimeoutError(TransportError):
    """No reply arrived within the timeout (a silent meter, a broken line, a wrong address)."""

    code = "dlt645_timeout"


# ── the driver ───────────────────────────────────────────────────────────────────────────────


class Dlt645Transport(Protocol):
    """Carries one request frame to a meter and brings back its reply.

    ``exchange`` sends ``request`` (wake-up bytes included) and returns the bytes of the one
    reply frame, wake-up bytes allowed. It raises :class:`TimeoutError` when no complete frame
    arrives within ``timeout`` seconds (returning ``b""`` means the same: a serial port read
    that times out returns what it has) and :class:`OSError` when the line fails. A transport
    shared by several meters on one bus must let one exchange finish before the next starts.
    :class:`FrameBuffer` tells a transport when a reply is complete.
    """

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        """Send ``request`` and return the reply frame's bytes."""
        ...


class ReconnectMode(StrEnum):
    """How supply is restored."""

    CLOSE_PERMIT = "close_permit"  # 合闸允许: the customer presses the meter's button
    DIRECT_CLOSE = "direct_close"  # 直接合闸: the meter closes its relay itself


class ReconnectOutcome(StrEnum):
    """What the read-back after a reconnection command showed."""

    SUPPLY_RESTORED = "supply_restored"
    """The relay reads closed: the order is done."""
    AWAITING_CUSTOMER = "awaiting_customer"
    """Close permitted, relay still open: waiting for the customer to press the button."""
    NOT_CONFIRMED = "not_confirmed"
    """The meter accepted the command but its status does not show it (yet): read again."""


@dataclass(frozen=True, slots=True)
class ReconnectResult:
    """A reconnection command that the meter accepted, and the status read back after it."""

    mode: ReconnectMode
    outcome: ReconnectOutcome
    status: RelayStatus

    @property
    def done(self) -> bool:
        """True only when supply is confirmed restored (relay closed)."""
        return self.outcome is ReconnectOutcome.SUPPLY_RESTORED


class Dlt645Meter:
    """One meter, driven over DL/T 645-2007 through a replaceable transport.

    Commands are plain-text 1CH frames valid for ``command_validity`` from now by ``clock``,
    written in the meter's local time (``timezone``, default Asia/Shanghai). Every reply is
    checked to come from this meter and to answer the request; a refusal raises
    :class:`MeterRefusedError` with the meter's reasons. Nothing is retried here: whoever owns
    the supply order decides when to try again (every command here can be repeated).
    """

    def __init__(
        self,
        transport: Dlt645Transport,
        address: MeterAddress | str,
        *,
        password: SecretStr | str,
        operator_code: SecretStr | str,
        password_level: int,
        clock: Clock,
        command_validity: timedelta = timedelta(minutes=5),
        timezone: str = DEFAULT_TIMEZONE,
        timeout: float = 5.0,
        wake_up: int = MAX_WAKE_UP_BYTES,
    ) -> None:
        meter = address if isinstance(address, MeterAddress) else MeterAddress(address)
        if meter.is_broadcast or meter.is_wildcard:
            # A wildcard or broadcast trip could reach every meter on the bus, and no reply to
            # it could be told apart: a command here names exactly one meter.
            raise ConfigurationError(
                "a meter driver needs one meter's full address, not a wildcard or broadcast",
                field="address",
            )
        if password_level in _CIPHERTEXT_LEVELS:
            raise UnsupportedOperationError(
                f"password level {password_level:02X}H sends the command as ESAM ciphertext; "
                "this driver sends plain-text commands",
                field="password_level",
            )
        if command_validity <= timedelta(0):
            raise ConfigurationError("command validity must be positive", field="command_validity")
        if not timeout > 0:
            raise ConfigurationError("timeout must be positive seconds", field="timeout")
        if isinstance(wake_up, bool) or not 0 <= wake_up <= MAX_WAKE_UP_BYTES:
            raise ConfigurationError(
                f"wake-up bytes must number 0-{MAX_WAKE_UP_BYTES}", field="wake_up"
            )
        self._zone_name = timezone
        self._zone = _zone(timezone)
        self._transport = transport
        self._address = meter
        self._credentials = MeterCredentials(
            password_level=password_level,
            password=password if isinstance(password, SecretStr) else SecretStr(password),
            operator_code=(
                operator_code if isinstance(operator_code, SecretStr) else SecretStr(operator_code)
            ),
        )
        self._clock = clock
        self._validity = command_validity
        self._timeout = float(timeout)
        self._wake_up = wake_up

    def __repr__(self) -> str:
        return f"Dlt645Meter(address={self._address.text})"

    @property
    def address(self) -> MeterAddress:
        """The meter's address."""
        return self._address

    # commands

    def trip(self) -> None:
        """Open the relay (跳闸): supply off. Refused by a protected meter."""
        self.control(RemoteControlAction.TRIP)

    def close_permit(self) -> None:
        """Allow the relay to close (合闸允许); supply returns when the customer presses."""
        self.control(RemoteControlAction.CLOSE_PERMIT)

    def direct_close(self) -> None:
        """Close the relay now (直接合闸): supply on."""
        self.control(RemoteControlAction.DIRECT_CLOSE)

    def protect(self, on: bool) -> None:
        """Set (保电) or release (保电解除) protection against tripping."""
        self.control(RemoteControlAction.PROTECT if on else RemoteControlAction.PROTECT_RELEASE)

    def alarm(self, on: bool) -> None:
        """Sound (报警) or silence (报警解除) the meter's alarm."""
        self.control(RemoteControlAction.ALARM if on else RemoteControlAction.ALARM_RELEASE)

    def control(self, action: RemoteControlAction) -> None:
        """Send one remote-control command; return when the meter has accepted it."""
        now = require_aware(self._clock.now(), "clock.now()")
        expiry = (now + self._validity).astimezone(self._zone).replace(microsecond=0)
        command = RemoteControlCommand(action=action, credentials=self._credentials, expiry=expiry)
        request = build_remote_control(self._address, command, timezone=self._zone_name)
        what = _ACTION_WORDS[action]
        _log.info("DL/T 645: %s to meter %s, valid until %s", what, self._address, expiry)
        try:
            reply = self._exchange(request, what)
        except MeterRefusedError as exc:
            if exc.reasons & MeterErrorFlag.OTHER:
                # The standard has no flag of its own for an expired command or a protected
                # meter, and those are the refusals people meet; say so next to the flag.
                raise MeterRefusedError(
                    f"{exc.message}. Meters report an expired command (this one was valid "
                    f"until {expiry.isoformat()} by paygate's clock: check the meter's clock) "
                    "or a trip of a protected meter (保电) as this reason",
                    address=exc.address,
                    function=exc.function,
                    reasons=exc.reasons,
                ) from None
            raise
        if reply.data:
            raise UnexpectedReplyError(
                f"a normal reply to {what} carries no data, got {len(reply.data)} bytes",
                reply=reply,
            )
        _log.info("DL/T 645: meter %s accepted %s", self._address, what)

    # read-back

    def relay_status(self) -> RelayStatus:
        """Read status word 3 and return the relay's state as the meter reports it."""
        request = build_read(self._address, RELAY_STATUS_DI)
        reply = self._exchange(request, "read of status word 3")
        status = RelayStatus.from_wire(parse_read_reply(reply, RELAY_STATUS_DI))
        _log.info(
            "DL/T 645: meter %s relay %s, commanded %s, protected %s",
            self._address,
            status.relay,
            status.relay_command,
            status.protected,
        )
        return status

    def reconnect(self, mode: ReconnectMode) -> ReconnectResult:
        """Restore supply by ``mode`` and read back what the meter did.

        Direct close is done when the relay reads closed. A close permit is done the same way
        if the customer was quick; while the relay is open with its command closed, the result
        is :attr:`ReconnectOutcome.AWAITING_CUSTOMER`. Anything else is
        :attr:`ReconnectOutcome.NOT_CONFIRMED`: read again later with :meth:`relay_status`.
        """
        mode = ReconnectMode(mode)
        if mode is ReconnectMode.DIRECT_CLOSE:
            self.control(RemoteControlAction.DIRECT_CLOSE)
        else:
            self.control(RemoteControlAction.CLOSE_PERMIT)
        status = self.relay_status()
        if status.relay is RelayState.CLOSED:
            outcome = ReconnectOutcome.SUPPLY_RESTORED
        elif mode is ReconnectMode.CLOSE_PERMIT and status.relay_command is RelayState.CLOSED:
            outcome = ReconnectOutcome.AWAITING_CUSTOMER
        else:
            outcome = ReconnectOutcome.NOT_CONFIRMED
        _log.info("DL/T 645: meter %s reconnect by %s: %s", self._address, mode, outcome)
        return ReconnectResult(mode=mode, outcome=outcome, status=status)

    # one exchange

    def _exchange(self, request: Frame, what: str) -> Frame:
        wire = encode_frame(request, wake_up=self._wake_up)
        try:
            raw = self._transport.exchange(wire, timeout=self._timeout)
        except TimeoutError as exc:
            raise MeterTimeoutError(
                f"meter {self._address} did not reply to {what} within {self._timeout:g} s",
                field="transport",
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"the transport to meter {self._address} failed during {what}: {exc}",
                field="transport",
            ) from exc
        if not raw:
            raise MeterTimeoutError(
                f"meter {self._address} did not reply to {what} within {self._timeout:g} s "
                "(the transport returned no bytes)",
                field="transport",
            )
        reply = decode_frame(raw)
        _log.debug("DL/T 645: reply %r", reply)
        if not reply.control.reply:
            raise UnexpectedReplyError(
                f"a request frame (D7 = 0) came back instead of a reply to {what}: "
                "an echo of the request on a half-duplex line?",
                reply=reply,
            )
        if reply.address != request.address:
            raise UnexpectedReplyError(
                f"reply from meter {reply.address}, expected meter {request.address}",
                reply=reply,
            )
        if reply.control.function != request.control.function:
            raise UnexpectedReplyError(
                f"reply to function {reply.control.function:02X}H, expected "
                f"{request.control.function:02X}H ({what})",
                reply=reply,
            )
        if reply.control.abnormal:
            reasons = _error_flags(reply)
            raise MeterRefusedError(
                f"meter {reply.address} refused {what}: {reasons.description}",
                address=reply.address,
                function=reply.control.function,
                reasons=reasons,
            )
        if reply.control.follow_up:
            raise UnexpectedReplyError(
                f"the reply to {what} announces follow-up frames; none are expected",
                reply=reply,
            )
        return reply
