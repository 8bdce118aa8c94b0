"""DL/T 645-2007, the meter protocol: frames, remote control (跳合闸) and a driver that uses them.

Most electricity meters in China speak DL/T 645-2007 over RS-485, infrared, or a concentrator /
GPRS link that passes the same frames through. This module turns a reconnection order into the
frames a meter obeys and reads back what the meter did.

What it guarantees:

* **Codec.** :func:`decode_frame` accepts exactly one well-formed frame (0-4 wake-up bytes
  ``FE`` allowed before it) and refuses anything else with a :class:`FrameError` whose ``part``
  names what is wrong: wake-up bytes, start byte, address (BCD digit or wildcard), second start
  byte, length, checksum (expected and actual), end byte, trailing bytes. It never raises
  anything else, whatever the bytes. ``decode_frame(encode_frame(f)) == f`` for every
  :class:`Frame`; a single flipped bit anywhere in a frame is always refused.
* **Streams.** :class:`FrameBuffer` hands back every well-formed frame in a byte stream however
  the stream is cut into pieces, skips noise between frames, and holds at most one frame's worth
  of bytes between calls.
* **Attribution.** The driver acts on a reply only if it is a reply (D7 = 1) from the meter that
  was addressed, to the function that was asked (and, for a read, to the data identifier that
  was asked); anything else is refused with :class:`UnexpectedReplyError`.
* **Secrets.** The password and operator code are held as :class:`~pydantic.SecretStr` and never
  appear in a repr, a str, an exception message or a log record; a :class:`Frame` that carries
  them withholds its data from its repr.
* **Outcome.** A reconnection counts as done only when the meter reports its relay closed.
  A close permit (合闸允许) that leaves the relay open for the customer's button is its own
  outcome, :attr:`ReconnectOutcome.AWAITING_CUSTOMER`, never "done".

Errors, under the one paygate hierarchy::

    PaygateError
    ├── ParseError
    │   └── FrameError               bytes that are not one well-formed frame (part named)
    └── Dlt645Error                  the meter could not be driven (catch this around a driver)
        ├── FrameError               the same class: a garbled or malformed reply
        ├── TransportError           the transport failed to carry the request or the reply
        │   └── MeterTimeoutError    no reply within the timeout
        ├── UnexpectedReplyError     a frame that does not answer the request
        └── MeterRefusedError        an abnormal reply; ``reasons`` says why

Wire conventions of DL/T 645-2007: every multi-byte field travels least significant byte
first; the data field travels with 33H added to each byte; the checksum is the sum modulo
256 of every byte from the first 68H through the data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, IntFlag, StrEnum
from typing import ClassVar, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr

from paygate.clock import DEFAULT_TIMEZONE, Clock, require_aware
from paygate.errors import (
    ConfigurationError,
    InvalidInputError,
    ParseError,
    PaygateError,
    UnsupportedOperationError,
)

__all__ = [
    "BROADCAST_ADDRESS",
    "MAX_WAKE_UP_BYTES",
    "RELAY_STATUS_DI",
    "ControlCode",
    "Dlt645Error",
    "Dlt645Meter",
    "Dlt645Transport",
    "Frame",
    "FrameBuffer",
    "FrameError",
    "Function",
    "MeterAddress",
    "MeterCredentials",
    "MeterErrorFlag",
    "MeterRefusedError",
    "MeterTimeoutError",
    "ReconnectMode",
    "ReconnectOutcome",
    "ReconnectResult",
    "RelayState",
    "RelayStatus",
    "RemoteControlAction",
    "RemoteControlCommand",
    "TransportError",
    "UnexpectedReplyError",
    "abnormal_reply",
    "build_read",
    "build_remote_control",
    "decode_data_identifier",
    "decode_frame",
    "encode_data_identifier",
    "encode_frame",
    "normal_reply",
    "parse_read_reply",
    "parse_read_request",
    "parse_remote_control",
]

_log = logging.getLogger(__name__)

_START: Final = 0x68
_END: Final = 0x16
_WAKE_UP: Final = 0xFE
_WILDCARD: Final = 0xAA
_DATA_OFFSET: Final = 0x33
_HEADER_LEN: Final = 10  # 68, A0..A5, 68, C, L
_MIN_FRAME_LEN: Final = 12  # header, CS, 16 (no data)
_MAX_DATA_LEN: Final = 255  # L is one byte

MAX_WAKE_UP_BYTES: Final = 4
"""The standard lets a sender put 1-4 ``FE`` bytes before a frame to wake the receiver's UART."""

RELAY_STATUS_DI: Final = 0x04000503
"""Data identifier DI3..DI0 = 04 00 05 03: 电表运行状态字3 (meter running status word 3)."""


# ── errors ───────────────────────────────────────────────────────────────────────────────────


class Dlt645Error(PaygateError):
    """A meter that could not be driven over DL/T 645."""

    code = "dlt645_error"


class FrameError(ParseError, Dlt645Error):
    """Bytes that are not one well-formed DL/T 645 frame; ``part`` names what is wrong.

    A parse error like any other, and also a :class:`Dlt645Error`, so that one ``except``
    around a driver call catches a garbled reply along with a silent or refusing meter.
    """

    code = "dlt645_frame_error"

    def __init__(
        self,
        message: str,
        *,
        part: str,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        super().__init__(message, source="DL/T 645 frame", field=part)
        self.part = part
        self.expected = expected
        self.actual = actual


class TransportError(Dlt645Error):
    """The transport failed to carry the request or the reply."""

    code = "dlt645_transport_error"


class MeterTimeoutError(TransportError):
    """No reply arrived within the timeout (a silent meter, a broken line, a wrong address)."""

    code = "dlt645_timeout"


class UnexpectedReplyError(Dlt645Error):
    """A well-formed frame that is not the answer to the request that was sent."""

    code = "dlt645_unexpected_reply"

    def __init__(self, message: str, *, reply: Frame) -> None:
        super().__init__(message, field="reply")
        self.reply = reply


class MeterRefusedError(Dlt645Error):
    """The meter answered with an abnormal reply (D6 = 1); ``reasons`` holds its error flags."""

    code = "dlt645_meter_refused"

    def __init__(
        self,
        message: str,
        *,
        address: MeterAddress,
        function: int,
        reasons: MeterErrorFlag,
    ) -> None:
        super().__init__(message, field="reply")
        self.address = address
        self.function = function
        self.reasons = reasons


# ── small helpers ────────────────────────────────────────────────────────────────────────────


def _from_bcd(byte: int) -> int | None:
    high, low = byte >> 4, byte & 0x0F
    if high > 9 or low > 9:
        return None
    return high * 10 + low


def _to_bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {timezone!r}", field="timezone") from exc


# ── address ──────────────────────────────────────────────────────────────────────────────────

_ADDRESS_PAIR = re.compile(r"[0-9]{2}|AA")


def _address_problem(pairs: list[str]) -> str | None:
    """Why these six digit pairs (most significant first) are not an address, or None."""
    for pair in pairs:
        if not _ADDRESS_PAIR.fullmatch(pair):
            return f"{pair!r} is neither two decimal digits nor the wildcard AA"
    # 缩位寻址: the digits that are known are the low-order ones; the wildcard fills the rest.
    seen_digits = False
    for pair in pairs:
        if pair == "AA" and seen_digits:
            return "the wildcard AA may only fill the high-order bytes"
        seen_digits = seen_digits or pair != "AA"
    return None


@dataclass(frozen=True, slots=True)
class MeterAddress:
    """A meter's communication address (通信地址): 12 characters as on the nameplate.

    Written most significant digit first (``"201905241006"``) and sent least significant byte
    first. A shortened address fills its high-order bytes with the wildcard ``AA``
    (``"AAAAAA241006"``); ``"999999999999"`` is the broadcast address, to which meters never
    reply.
    """

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidInputError("a meter address is a 12-character string", field="address")
        text = self.text.upper()
        if len(text) != 12:
            raise InvalidInputError(
                f"a meter address has 12 characters, got {len(text)}", field="address"
            )
        problem = _address_problem([text[i : i + 2] for i in range(0, 12, 2)])
        if problem is not None:
            raise InvalidInputError(problem, field="address")
        object.__setattr__(self, "text", text)

    @classmethod
    def from_wire(cls, raw: bytes) -> MeterAddress:
        """Read A0..A5 as sent (least significant byte first); refuse a byte that is not BCD."""
        if len(raw) != 6:
            raise FrameError(f"an address is 6 bytes, got {len(raw)}", part="address")
        pairs: list[str] = []
        for index, byte in enumerate(raw):
            if byte == _WILDCARD:
                pairs.append("AA")
            elif _from_bcd(byte) is not None:
                pairs.append(f"{byte:02X}")
            else:
                raise FrameError(
                    f"A{index} is {byte:02X}H: neither two BCD digits nor the wildcard AAH",
                    part="address",
                    actual=byte,
                )
        pairs.reverse()
        problem = _address_problem(pairs)
        if problem is not None:
            raise FrameError(problem, part="address")
        return cls("".join(pairs))

    def to_wire(self) -> bytes:
        """A0..A5 as sent: least significant byte first."""
        return bytes.fromhex(self.text)[::-1]

    @property
    def is_broadcast(self) -> bool:
        """True for 999999999999, which every meter obeys and none answers."""
        return self.text == "999999999999"

    @property
    def is_wildcard(self) -> bool:
        """True when some high-order bytes are the wildcard ``AA``."""
        return self.text.startswith("AA")

    def matches(self, meter: MeterAddress) -> bool:
        """Whether a frame sent to this address is for ``meter`` (wildcards and broadcast)."""
        if self.is_broadcast:
            return True
        return all(
            mine in ("AA", theirs)
            for mine, theirs in zip(
                (self.text[i : i + 2] for i in range(0, 12, 2)),
                (meter.text[i : i + 2] for i in range(0, 12, 2)),
                strict=True,
            )
        )

    def __str__(self) -> str:
        return self.text


BROADCAST_ADDRESS: Final = MeterAddress("999999999999")
"""The broadcast address: for broadcast commands (time, freeze); meters do not reply to it."""


# ── control code ─────────────────────────────────────────────────────────────────────────────


class Function(IntEnum):
    """The function code, bits D4-D0 of the control code (DL/T 645-2007)."""

    BROADCAST_TIME = 0x08  # 广播校时
    READ_DATA = 0x11  # 读数据
    READ_FOLLOW_UP = 0x12  # 读后续数据
    READ_ADDRESS = 0x13  # 读通信地址
    WRITE_DATA = 0x14  # 写数据
    WRITE_ADDRESS = 0x15  # 写通信地址
    FREEZE = 0x16  # 冻结命令
    CHANGE_BAUD_RATE = 0x17  # 更改通信速率
    CHANGE_PASSWORD = 0x18  # 修改密码
    CLEAR_DEMAND = 0x19  # 最大需量清零
    CLEAR_METER = 0x1A  # 电表清零
    CLEAR_EVENTS = 0x1B  # 事件清零
    REMOTE_CONTROL = 0x1C  # 跳合闸、报警、保电


# Request functions whose data field opens with a password (PA P0 P1 P2).
_PASSWORD_FUNCTIONS: Final = frozenset(
    {
        Function.WRITE_DATA,
        Function.CHANGE_PASSWORD,
        Function.CLEAR_DEMAND,
        Function.CLEAR_METER,
        Function.CLEAR_EVENTS,
        Function.REMOTE_CONTROL,
    }
)


@dataclass(frozen=True, slots=True)
class ControlCode:
    """The control code C: direction, abnormal flag, follow-up flag and function.

    ``reply`` is D7 (set on frames from the meter), ``abnormal`` D6 (the meter refuses),
    ``follow_up`` D5 (more frames follow), ``function`` D4-D0 (see :class:`Function`).
    """

    function: int
    reply: bool = False
    abnormal: bool = False
    follow_up: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.function, bool) or not 0 <= self.function <= 0x1F:
            raise InvalidInputError("a function code is 00H-1FH", field="function")

    @classmethod
    def from_byte(cls, byte: int) -> ControlCode:
        """Split a control byte into its bits."""
        return cls(
            function=byte & 0x1F,
            reply=bool(byte & 0x80),
            abnormal=bool(byte & 0x40),
            follow_up=bool(byte & 0x20),
        )

    def to_byte(self) -> int:
        """The control byte as sent."""
        return (
            (0x80 if self.reply else 0)
            | (0x40 if self.abnormal else 0)
            | (0x20 if self.follow_up else 0)
            | self.function
        )


# ── frame codec ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """One DL/T 645 frame. ``data`` is the data field as meant, before 33H is added for the wire."""

    address: MeterAddress
    control: ControlCode
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray):
            raise InvalidInputError("frame data must be bytes", field="data")
        if len(self.data) > _MAX_DATA_LEN:
            raise InvalidInputError(
                f"a frame carries at most {_MAX_DATA_LEN} data bytes, got {len(self.data)}",
                field="data",
            )
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def carries_password(self) -> bool:
        """True for a request whose data opens with a password (write, clear, remote control)."""
        return not self.control.reply and self.control.function in _PASSWORD_FUNCTIONS

    def __repr__(self) -> str:
        if self.carries_password and self.data:
            data = f"<{len(self.data)} bytes withheld: they carry a password>"
        else:
            data = self.data.hex(" ").upper() or "<none>"
        return (
            f"Frame(address={self.address.text}, control={self.control.to_byte():02X}H, "
            f"data={data})"
        )


def encode_frame(frame: Frame, *, wake_up: int = 0) -> bytes:
    """The bytes to send for ``frame``, preceded by ``wake_up`` (0-4) ``FE`` bytes."""
    if isinstance(wake_up, bool) or not 0 <= wake_up <= MAX_WAKE_UP_BYTES:
        raise InvalidInputError(
            f"wake-up bytes must number 0-{MAX_WAKE_UP_BYTES}, got {wake_up}", field="wake_up"
        )
    body = bytearray((_START, *frame.address.to_wire(), _START))
    body.append(frame.control.to_byte())
    body.append(len(frame.data))
    body.extend((byte + _DATA_OFFSET) & 0xFF for byte in frame.data)
    body.append(sum(body) & 0xFF)
    body.append(_END)
    return bytes((_WAKE_UP,) * wake_up) + bytes(body)


def decode_frame(data: bytes) -> Frame:
    """Read exactly one frame from ``data``; refuse anything else with a :class:`FrameError`.

    Up to four wake-up bytes ``FE`` may precede the frame; nothing may follow it. Use
    :class:`FrameBuffer` for a stream that may hold partial frames, several frames or noise.
    """
    raw = bytes(data)
    at = 0
    while at < len(raw) and raw[at] == _WAKE_UP:
        at += 1
    if at > MAX_WAKE_UP_BYTES:
        raise FrameError(
            f"{at} wake-up bytes FEH before the frame; at most {MAX_WAKE_UP_BYTES} are allowed",
            part="wake_up",
        )
    size = len(raw) - at
    if size < _MIN_FRAME_LEN:
        raise FrameError(
            f"{size} bytes; the shortest frame (68, address, 68, C, L, CS, 16) has "
            f"{_MIN_FRAME_LEN}",
            part="length",
        )
    if raw[at] != _START:
        raise FrameError(
            f"got {raw[at]:02X}H, expected 68H",
            part="start",
            expected=_START,
            actual=raw[at],
        )
    if raw[at + 7] != _START:
        raise FrameError(
            f"got {raw[at + 7]:02X}H at byte 7, expected 68H",
            part="second_start",
            expected=_START,
            actual=raw[at + 7],
        )
    address = MeterAddress.from_wire(raw[at + 1 : at + 7])
    control = ControlCode.from_byte(raw[at + 8])
    length = raw[at + 9]
    needed = _MIN_FRAME_LEN + length
    if size < needed:
        raise FrameError(
            f"L = {length:02X}H announces {length} data bytes, a {needed}-byte frame, "
            f"but only {size} bytes are here",
            part="length",
            expected=needed,
            actual=size,
        )
    checksum_at = at + _HEADER_LEN + length
    expected_sum = sum(raw[at:checksum_at]) & 0xFF
    if raw[checksum_at] != expected_sum:
        raise FrameError(
            f"got {raw[checksum_at]:02X}H, expected {expected_sum:02X}H",
            part="checksum",
            expected=expected_sum,
            actual=raw[checksum_at],
        )
    if raw[checksum_at + 1] != _END:
        raise FrameError(
            f"got {raw[checksum_at + 1]:02X}H, expected 16H",
            part="end",
            expected=_END,
            actual=raw[checksum_at + 1],
        )
    if size > needed:
        raise FrameError(
            f"{size - needed} bytes after the end byte 16H; one frame was expected",
            part="trailing",
        )
    payload = bytes((byte - _DATA_OFFSET) & 0xFF for byte in raw[at + _HEADER_LEN : checksum_at])
    return Frame(address=address, control=control, data=payload)


# ── stream extraction ────────────────────────────────────────────────────────────────────────


def _probe(buffer: bytes | bytearray, start: int) -> Frame | int | None:
    """Look at a 68H at ``start``: the frame it begins, its size so far if incomplete, or None.

    Returns a Frame when a complete, valid frame starts there; None when no frame can start
    there; otherwise the number of bytes still missing (a positive int).
    """
    available = len(buffer) - start
    # Refuse noise on the bytes already here instead of waiting for a length that may
    # never come: address bytes are BCD or AAH, and the second 68H sits at +7.
    for offset in range(1, min(available, 7)):
        byte = buffer[start + offset]
        if byte != _WILDCARD and _from_bcd(byte) is None:
            return None
    if available > 7 and buffer[start + 7] != _START:
        return None
    if available < _HEADER_LEN:
        return _HEADER_LEN - available
    needed = _MIN_FRAME_LEN + buffer[start + 9]
    if available < needed:
        return needed - available
    try:
        return decode_frame(bytes(buffer[start : start + needed]))
    except FrameError:
        return None


class FrameBuffer:
    """Turns a byte stream into frames, however the transport cuts it into pieces.

    Feed it whatever arrives; it returns each complete, well-formed frame once, in order.
    Wake-up bytes and noise between frames are skipped (noise is counted in :attr:`noise`).
    When the earliest candidate frame is still incomplete but a complete, valid frame already
    sits later in the buffer, the candidate is taken for noise: the data field is sent with
    33H added to every byte, so a real frame does not contain another valid frame, and waiting
    for the candidate's announced length could otherwise hold a real reply back until the
    transport times out. Between calls the buffer keeps less than one maximum frame (267
    bytes).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._noise = 0

    @property
    def pending(self) -> bytes:
        """Bytes kept for a frame that has not finished arriving."""
        return bytes(self._pending)

    @property
    def noise(self) -> int:
        """How many bytes were skipped that were neither part of a frame nor wake-up bytes."""
        return self._noise

    def clear(self) -> None:
        """Forget any partial frame (for example after the transport reconnects)."""
        self._pending.clear()

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add ``chunk`` and return the frames it completed, oldest first."""
        buffer = self._pending
        buffer.extend(chunk)
        frames: list[Frame] = []
        position = 0
        while True:
            start = buffer.find(_START, position)
            if start < 0:
                self._skip(buffer[position:])
                position = len(buffer)
                break
            found = _probe(buffer, start)
            if isinstance(found, Frame):
                self._skip(buffer[position:start])
                frames.append(found)
                position = start + _MIN_FRAME_LEN + len(found.data)
            elif found is None:
                self._skip(buffer[position : start + 1])
                position = start + 1
            else:
                later = self._next_complete(buffer, start + 1)
                if later is None:
                    self._skip(buffer[position:start])
                    position = start
                    break
                self._skip(buffer[position:later])
                position = later
        del buffer[:position]
        return frames

    @staticmethod
    def _next_complete(buffer: bytearray, position: int) -> int | None:
        while (start := buffer.find(_START, position)) >= 0:
            if isinstance(_probe(buffer, start), Frame):
                return start
            position = start + 1
        return None

    def _skip(self, skipped: bytes | bytearray) -> None:
        self._noise += sum(1 for byte in skipped if byte != _WAKE_UP)


# ── replies and their error flags ────────────────────────────────────────────────────────────


class MeterErrorFlag(IntFlag):
    """The error information byte ERR of an abnormal reply (错误信息字).

    The standard defines one ERR byte for every abnormal reply, remote control (DCH) included.
    It has no flag of its own for a remote-control command that arrives after its expiry, for
    a trip refused because the meter is protected (保电), or for a meter clock error: meters
    report those as :attr:`OTHER`.
    """

    OTHER = 0x01  # 其他错误
    NO_REQUESTED_DATA = 0x02  # 无请求数据
    UNAUTHORISED = 0x04  # 密码错/未授权
    BAUD_RATE_UNCHANGEABLE = 0x08  # 通信速率不能更改
    TOO_MANY_YEAR_ZONES = 0x10  # 年时区数超
    TOO_MANY_DAY_SLOTS = 0x20  # 日时段数超
    TOO_MANY_TARIFFS = 0x40  # 费率数超
    RESERVED = 0x80  # 保留

    @property
    def description(self) -> str:
        """The reasons in words, English then the standard's Chinese term."""
        if not self:
            return "no reason given"
        return ", ".join(_ERROR_WORDS[flag] for flag in self)


_ERROR_WORDS: Final = {
    MeterErrorFlag.OTHER: "other error (其他错误)",
    MeterErrorFlag.NO_REQUESTED_DATA: "no requested data (无请求数据)",
    MeterErrorFlag.UNAUTHORISED: "wrong password or unauthorised (密码错/未授权)",
    MeterErrorFlag.BAUD_RATE_UNCHANGEABLE: "baud rate cannot be changed (通信速率不能更改)",
    MeterErrorFlag.TOO_MANY_YEAR_ZONES: "too many year time zones (年时区数超)",
    MeterErrorFlag.TOO_MANY_DAY_SLOTS: "too many daily time slots (日时段数超)",
    MeterErrorFlag.TOO_MANY_TARIFFS: "too many tariffs (费率数超)",
    MeterErrorFlag.RESERVED: "reserved bit 7 (保留)",
}


def normal_reply(
    request: Frame, data: bytes = b"", *, address: MeterAddress | None = None
) -> Frame:
    """The meter's normal reply to ``request`` (D7 = 1), from ``address`` if not the request's.

    A meter answers a wildcard request with its own full address, hence ``address``.
    """
    control = ControlCode(function=request.control.function, reply=True)
    return Frame(address=address or request.address, control=control, data=data)


def abnormal_reply(
    request: Frame, errors: MeterErrorFlag, *, address: MeterAddress | None = None
) -> Frame:
    """The meter's abnormal reply to ``request`` (D7 = D6 = 1) carrying the ERR byte."""
    control = ControlCode(function=request.control.function, reply=True, abnormal=True)
    return Frame(address=address or request.address, control=control, data=bytes((int(errors),)))


def _error_flags(reply: Frame) -> MeterErrorFlag:
    if len(reply.data) != 1:
        raise FrameError(
            f"an abnormal reply carries one error byte, got {len(reply.data)} bytes",
            part="data",
        )
    return MeterErrorFlag(reply.data[0])


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
    the reconnection order decides when to try again (every command here can be repeated).
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
