"""The two functions paygate drives: remote control (1CH, 跳合闸) and read data (11H) with
the relay status word. Credentials are secrets and never shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import ClassVar, Final

from pydantic import SecretStr

from paygate.clock import DEFAULT_TIMEZONE, require_aware
from paygate.errors import InvalidInputError
from paygate.headend.dlt645.codec import (
    ControlCode,
    Frame,
    FrameError,
    Function,
    MeterAddress,
    _from_bcd,
    _to_bcd,
    _zone,
)
from paygate.headend.dlt645.replies import UnexpectedReplyError

RELAY_STATUS_DI: Final = 0x04000503
"""Data identifier DI3..DI0 = 04 00 05 03: 电表运行状态字3 (meter running status word 3)."""


# ── remote control (1CH) ─────────────────────────────────────────────────────────────────────


class RemoteControlAction(IntEnum):
    """N1 of a remote-control command: what the meter's relay or alarm should do."""

    TRIP = 0x1A  # 跳闸/拉闸: open the relay, supply off
    CLOSE_PERMIT = 0x1B  # 合闸允许: allow closing; the customer presses the button to restore
    DIRECT_CLOSE = 0x1C  # 直接合闸: close the relay now, supply on
    ALARM = 0x2A  # 报警
    ALARM_RELEASE = 0x2B  # 报警解除
    PROTECT = 0x3A  # 保电: the meter refuses to trip
    PROTECT_RELEASE = 0x3B  # 保电解除


_ACTION_WORDS: Final = {
    RemoteControlAction.TRIP: "trip (跳闸)",
    RemoteControlAction.CLOSE_PERMIT: "close permit (合闸允许)",
    RemoteControlAction.DIRECT_CLOSE: "direct close (直接合闸)",
    RemoteControlAction.ALARM: "alarm (报警)",
    RemoteControlAction.ALARM_RELEASE: "alarm release (报警解除)",
    RemoteControlAction.PROTECT: "protect (保电)",
    RemoteControlAction.PROTECT_RELEASE: "protect release (保电解除)",
}

_HEX_8 = re.compile(r"[0-9A-F]{8}")
_HEX_6 = re.compile(r"[0-9A-F]{6}")
_CIPHERTEXT_LEVELS: Final = frozenset({0x96, 0x98, 0x99})


@dataclass(frozen=True, slots=True)
class MeterCredentials:
    """Who is asking: password level PA, password P0-P2 and operator code C0-C3.

    ``password`` is 6 hex digits and ``operator_code`` 8 hex digits, both written most
    significant first (``"123456"``); on the wire they go least significant byte first, like
    every multi-byte field. Both are secrets and never shown.
    """

    password_level: int
    password: SecretStr
    operator_code: SecretStr

    def __post_init__(self) -> None:
        if isinstance(self.password_level, bool) or not 0 <= self.password_level <= 0xFF:
            raise InvalidInputError("a password level is one byte", field="password_level")
        for name, pattern, digits in (
            ("password", _HEX_6, 6),
            ("operator_code", _HEX_8, 8),
        ):
            secret = getattr(self, name)
            if not isinstance(secret, SecretStr):
                raise InvalidInputError(f"{name} must be a SecretStr", field=name)
            value = secret.get_secret_value().upper()
            if not pattern.fullmatch(value):
                # Say what shape is wanted, never what was given: it is a secret.
                raise InvalidInputError(f"{name} must be {digits} hex digits", field=name)
            object.__setattr__(self, name, SecretStr(value))

    def to_wire(self) -> bytes:
        """PA P0 P1 P2 C0 C1 C2 C3, as meant (before 33H is added)."""
        password = bytes.fromhex(self.password.get_secret_value())[::-1]
        operator = bytes.fromhex(self.operator_code.get_secret_value())[::-1]
        return bytes((self.password_level,)) + password + operator


@dataclass(frozen=True, slots=True)
class RemoteControlCommand:
    """One remote-control command (control code 1CH), in plain text (not the ESAM ciphertext).

    ``expiry`` is when the meter must stop accepting the command (命令有效截止时间), sent as the
    meter's local wall-clock time to the second; ``None`` is sent as six zero bytes, which
    meters without an expiry check accept. ``reserved`` is N2, 00H by the standard.
    """

    action: RemoteControlAction
    credentials: MeterCredentials
    expiry: datetime | None
    reserved: int = 0

    def __post_init__(self) -> None:
        if self.expiry is not None:
            require_aware(self.expiry, "expiry")
        if isinstance(self.reserved, bool) or not 0 <= self.reserved <= 0xFF:
            raise InvalidInputError("N2 is one byte", field="reserved")


_REMOTE_CONTROL_LEN: Final = 16  # PA P0-P2, C0-C3, N1, N2, N3-N8


def build_remote_control(
    address: MeterAddress, command: RemoteControlCommand, *, timezone: str = DEFAULT_TIMEZONE
) -> Frame:
    """The 1CH request frame for ``command``; the expiry is written in ``timezone``'s wall clock.

    Data: PA, P0-P2, C0-C3, N1 (action), N2 (reserved), N3-N8 (expiry as BCD
    ss mm hh DD MM YY). A sub-second expiry is cut to the second, never later than asked.
    """
    if command.expiry is None:
        expiry = bytes(6)
    else:
        local = command.expiry.astimezone(_zone(timezone))
        if not 2000 <= local.year <= 2099:
            raise InvalidInputError(
                "the expiry's year must be 2000-2099 in the meter's time zone (YY has two digits)",
                field="expiry",
            )
        expiry = bytes(
            _to_bcd(part)
            for part in (
                local.second,
                local.minute,
                local.hour,
                local.day,
                local.month,
                local.year - 2000,
            )
        )
    data = command.credentials.to_wire() + bytes((int(command.action), command.reserved)) + expiry
    return Frame(address=address, control=ControlCode(Function.REMOTE_CONTROL), data=data)


def parse_remote_control(frame: Frame, *, timezone: str = DEFAULT_TIMEZONE) -> RemoteControlCommand:
    """Read a 1CH request frame back into its command (what a meter does on receiving it)."""
    if frame.control.reply or frame.control.function != Function.REMOTE_CONTROL:
        raise FrameError(
            f"control code {frame.control.to_byte():02X}H is not a remote-control request (1CH)",
            part="control",
        )
    data = frame.data
    if len(data) != _REMOTE_CONTROL_LEN:
        raise FrameError(
            f"a plain-text remote-control command has {_REMOTE_CONTROL_LEN} data bytes, "
            f"got {len(data)}",
            part="data",
            expected=_REMOTE_CONTROL_LEN,
            actual=len(data),
        )
    credentials = MeterCredentials(
        password_level=data[0],
        password=SecretStr(data[1:4][::-1].hex().upper()),
        operator_code=SecretStr(data[4:8][::-1].hex().upper()),
    )
    try:
        action = RemoteControlAction(data[8])
    except ValueError:
        raise FrameError(
            f"N1 = {data[8]:02X}H is not a remote-control action", part="data.N1", actual=data[8]
        ) from None
    return RemoteControlCommand(
        action=action,
        credentials=credentials,
        expiry=_parse_expiry(data[10:16], timezone),
        reserved=data[9],
    )


def _parse_expiry(raw: bytes, timezone: str) -> datetime | None:
    if raw == bytes(6):
        return None
    values: list[int] = []
    for name, byte in zip(("ss", "mm", "hh", "DD", "MM", "YY"), raw, strict=True):
        value = _from_bcd(byte)
        if value is None:
            raise FrameError(
                f"expiry {name} is {byte:02X}H, not two BCD digits", part="data.expiry", actual=byte
            )
        values.append(value)
    second, minute, hour, day, month, year = values
    try:
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=_zone(timezone))
    except ValueError as exc:
        raise FrameError(f"expiry is not a real time: {exc}", part="data.expiry") from None


# ── read data (11H) and the relay status word ────────────────────────────────────────────────


def encode_data_identifier(identifier: int) -> bytes:
    """DI3..DI0 (written ``0x04000503``) as sent: DI0 first."""
    if isinstance(identifier, bool) or not 0 <= identifier <= 0xFFFFFFFF:
        raise InvalidInputError("a data identifier is four bytes", field="data_identifier")
    return identifier.to_bytes(4, "little")


def decode_data_identifier(raw: bytes) -> int:
    """Four bytes as sent (DI0 first) back to DI3..DI0."""
    if len(raw) != 4:
        raise FrameError(f"a data identifier is 4 bytes, got {len(raw)}", part="data.DI")
    return int.from_bytes(raw, "little")


def build_read(address: MeterAddress, identifier: int) -> Frame:
    """The 11H request frame reading data item ``identifier`` (DI3..DI0)."""
    return Frame(
        address=address,
        control=ControlCode(Function.READ_DATA),
        data=encode_data_identifier(identifier),
    )


def parse_read_request(frame: Frame) -> int:
    """The data identifier an 11H request asks for (the meter's side of :func:`build_read`)."""
    if frame.control.reply or frame.control.function != Function.READ_DATA:
        raise FrameError(
            f"control code {frame.control.to_byte():02X}H is not a read request (11H)",
            part="control",
        )
    # The standard also allows DI followed by a block count or a time for load records;
    # only the plain four-byte form is read here.
    return decode_data_identifier(frame.data)


def parse_read_reply(frame: Frame, identifier: int) -> bytes:
    """The value in a normal 91H reply to a read of ``identifier``, after its echoed DI."""
    if not frame.control.reply or frame.control.function != Function.READ_DATA:
        raise FrameError(
            f"control code {frame.control.to_byte():02X}H is not a read reply (91H)",
            part="control",
        )
    if frame.control.abnormal:
        raise FrameError("an abnormal reply carries no value", part="control")
    answered = decode_data_identifier(frame.data[:4])
    if answered != identifier:
        raise UnexpectedReplyError(
            f"the reply answers data identifier {answered:08X}, not {identifier:08X}",
            reply=frame,
        )
    return frame.data[4:]


class RelayState(StrEnum):
    """Where a relay (or the meter's command for it) stands."""

    CLOSED = "closed"  # 通: supply on
    OPEN = "open"  # 断: supply off


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """Status word 3 (电表运行状态字3, DI 04000503), the bits that say where supply stands.

    Decoded bits, as defined by DL/T 645-2007 and the State Grid filing (备案文件) that added
    bits 5-15:

    * bit 4, relay state (继电器状态): 0 closed (通), 1 open (断): what the relay is doing;
    * bit 6, relay command state (继电器命令状态): 0 closed, 1 open: what the meter has been
      told; after a close permit it reads closed while bit 4 still reads open;
    * bit 7, pre-trip alarm (预跳闸报警状态): 0 none, 1 alarming;
    * bit 12, protect state (保电状态): 0 not protected, 1 protected.

    The other bits (time-slot and tariff sets, supply source, programming enable, meter type
    in bits 8-9, authentication and account states) are kept in :attr:`word` undecoded. Bit 8
    is part of the meter type, not the protect state.
    """

    word: int

    RELAY_BIT: ClassVar[int] = 4
    RELAY_COMMAND_BIT: ClassVar[int] = 6
    PRE_TRIP_ALARM_BIT: ClassVar[int] = 7
    PROTECT_BIT: ClassVar[int] = 12

    def __post_init__(self) -> None:
        if isinstance(self.word, bool) or not 0 <= self.word <= 0xFFFF:
            raise InvalidInputError("a status word is 16 bits", field="word")

    @classmethod
    def compose(
        cls,
        *,
        relay: RelayState,
        relay_command: RelayState,
        pre_trip_alarm: bool = False,
        protected: bool = False,
        other_bits: int = 0,
    ) -> RelayStatus:
        """A status word with these decoded bits set, on top of ``other_bits``."""
        decoded = (
            1 << cls.RELAY_BIT
            | 1 << cls.RELAY_COMMAND_BIT
            | 1 << cls.PRE_TRIP_ALARM_BIT
            | 1 << cls.PROTECT_BIT
        )
        word = other_bits & ~decoded & 0xFFFF
        if relay is RelayState.OPEN:
            word |= 1 << cls.RELAY_BIT
        if relay_command is RelayState.OPEN:
            word |= 1 << cls.RELAY_COMMAND_BIT
        if pre_trip_alarm:
            word |= 1 << cls.PRE_TRIP_ALARM_BIT
        if protected:
            word |= 1 << cls.PROTECT_BIT
        return cls(word)

    @classmethod
    def from_wire(cls, raw: bytes) -> RelayStatus:
        """The two status bytes as sent (low byte first)."""
        if len(raw) != 2:
            raise FrameError(f"status word 3 is 2 bytes, got {len(raw)}", part="data")
        return cls(int.from_bytes(raw, "little"))

    def to_wire(self) -> bytes:
        """The two status bytes as sent (low byte first)."""
        return self.word.to_bytes(2, "little")

    def _bit(self, bit: int) -> bool:
        return bool(self.word >> bit & 1)

    @property
    def relay(self) -> RelayState:
        """Bit 4: whether the relay is closed (supply on) or open."""
        return RelayState.OPEN if self._bit(self.RELAY_BIT) else RelayState.CLOSED

    @property
    def relay_command(self) -> RelayState:
        """Bit 6: what the relay has been commanded to be."""
        return RelayState.OPEN if self._bit(self.RELAY_COMMAND_BIT) else RelayState.CLOSED

    @property
    def pre_trip_alarm(self) -> bool:
        """Bit 7: the meter is sounding its pre-trip alarm."""
        return self._bit(self.PRE_TRIP_ALARM_BIT)

    @property
    def protected(self) -> bool:
        """Bit 12: the meter is protected (保电) and will refuse to trip."""
        return self._bit(self.PROTECT_BIT)
