"""The DL/T 645-2007 frame codec: meter addresses, control codes, frames, stream extraction.

Invariant: :func:`decode_frame` accepts exactly one well-formed frame and refuses anything else
with a :class:`FrameError` naming the part that is wrong; ``decode_frame(encode_frame(f)) == f``
for every frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from paygate.errors import ConfigurationError, InvalidInputError, ParseError, PaygateError

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
