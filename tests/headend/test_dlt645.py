"""DL/T 645-2007: the codec against a real frame and properties, the driver against a meter.

The meter here is a small simulator that speaks real frames through the module's own codec:
it keeps its relay and command state, checks the password, honours the command's expiry by
its own (possibly drifting) clock, refuses to trip while protected, and stays silent for
frames addressed to other meters.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from paygate.clock import FixedClock
from paygate.errors import (
    ConfigurationError,
    InvalidInputError,
    NaiveDatetimeError,
    ParseError,
    UnsupportedOperationError,
)
from paygate.headend.dlt645 import (
    BROADCAST_ADDRESS,
    RELAY_STATUS_DI,
    ControlCode,
    Dlt645Error,
    Dlt645Meter,
    Dlt645Transport,
    Frame,
    FrameBuffer,
    FrameError,
    Function,
    MeterAddress,
    MeterCredentials,
    MeterErrorFlag,
    MeterRefusedError,
    MeterTimeoutError,
    ReconnectMode,
    ReconnectOutcome,
    RelayState,
    RelayStatus,
    RemoteControlAction,
    RemoteControlCommand,
    TransportError,
    UnexpectedReplyError,
    abnormal_reply,
    build_read,
    build_remote_control,
    decode_data_identifier,
    decode_frame,
    encode_data_identifier,
    encode_frame,
    normal_reply,
    parse_read_reply,
    parse_read_request,
    parse_remote_control,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Trip (拉闸) for meter 201905241006, password level 02, password, operator code and expiry
# all zero, as sent by public meter-control code.
REAL_TRIP = bytes.fromhex(
    "68 06 10 24 05 19 20 68 1C 10 35 33 33 33 33 33 33 33 4D 33 33 33 33 33 33 33 C0 16"
)
REAL_ADDRESS = MeterAddress("201905241006")
ZERO_CREDENTIALS = MeterCredentials(
    password_level=0x02, password=SecretStr("000000"), operator_code=SecretStr("00000000")
)

# Read status word 3 (DI 04 00 05 03, sent DI0 first with 33H added: 36 38 33 37) from the
# same meter; checksum worked by hand: 68+06+10+24+05+19+20+68+11+04+36+38+33+37 = 235H.
READ_STATUS = bytes.fromhex("68 06 10 24 05 19 20 68 11 04 36 38 33 37 35 16")


# ── strategies ───────────────────────────────────────────────────────────────────────────────


@st.composite
def addresses(draw: st.DrawFn) -> MeterAddress:
    wildcards = draw(st.integers(0, 6))
    digits = draw(st.lists(st.integers(0, 99), min_size=6 - wildcards, max_size=6 - wildcards))
    return MeterAddress("AA" * wildcards + "".join(f"{pair:02d}" for pair in digits))


controls = st.builds(
    ControlCode,
    function=st.integers(0, 0x1F),
    reply=st.booleans(),
    abnormal=st.booleans(),
    follow_up=st.booleans(),
)


def frames(max_data: int = 255) -> st.SearchStrategy[Frame]:
    return st.builds(
        Frame, address=addresses(), control=controls, data=st.binary(max_size=max_data)
    )


wake_ups = st.integers(0, 4)


def hex_digits(count: int) -> st.SearchStrategy[SecretStr]:
    return st.text("0123456789ABCDEFabcdef", min_size=count, max_size=count).map(SecretStr)


credentials = st.builds(
    MeterCredentials,
    password_level=st.integers(0, 0xFF),
    password=hex_digits(6),
    operator_code=hex_digits(8),
)

expiries = st.none() | st.builds(
    lambda local, zone: local.replace(microsecond=0).astimezone(zone),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31, 23, 59, 59),
        timezones=st.just(SHANGHAI),
    ),
    st.sampled_from([SHANGHAI, UTC, ZoneInfo("America/New_York")]),
)

commands = st.builds(
    RemoteControlCommand,
    action=st.sampled_from(RemoteControlAction),
    credentials=credentials,
    expiry=expiries,
    reserved=st.integers(0, 0xFF),
)

# Line noise for stream tests: no 68H (which could start a candidate frame) and no FEH (which
# is a wake-up byte, not counted as noise).
noise = st.lists(st.integers(0, 0xFF).filter(lambda b: b not in (0x68, 0xFE)), max_size=12).map(
    bytes
)


# ── the real frame ───────────────────────────────────────────────────────────────────────────


def test_real_trip_frame_is_reproduced_byte_for_byte() -> None:
    command = RemoteControlCommand(
        action=RemoteControlAction.TRIP, credentials=ZERO_CREDENTIALS, expiry=None
    )

    frame = build_remote_control(REAL_ADDRESS, command)

    assert encode_frame(frame) == REAL_TRIP
    assert encode_frame(frame, wake_up=4) == b"\xfe\xfe\xfe\xfe" + REAL_TRIP


def test_real_trip_frame_decodes_to_the_command() -> None:
    frame = decode_frame(REAL_TRIP)

    assert frame.address == REAL_ADDRESS
    assert frame.control == ControlCode(Function.REMOTE_CONTROL)
    assert len(frame.data) == 16
    command = parse_remote_control(frame)
    assert command.action is RemoteControlAction.TRIP
    assert command.credentials == ZERO_CREDENTIALS
    assert command.expiry is None
    assert command.reserved == 0


def test_read_of_status_word_3_is_sent_di0_first() -> None:
    frame = build_read(REAL_ADDRESS, RELAY_STATUS_DI)

    assert encode_frame(frame) == READ_STATUS
    assert parse_read_request(decode_frame(READ_STATUS)) == RELAY_STATUS_DI


def test_password_and_operator_code_go_least_significant_byte_first() -> None:
    credentials = MeterCredentials(
        password_level=0x04, password=SecretStr("123456"), operator_code=SecretStr("89abcdef")
    )

    assert credentials.to_wire() == bytes.fromhex("04 56 34 12 EF CD AB 89")


def test_expiry_is_bcd_seconds_first_in_the_meters_wall_clock() -> None:
    expiry = datetime(2024, 5, 1, 2, 5, 30, tzinfo=UTC)  # 10:05:30 in Shanghai
    command = RemoteControlCommand(
        action=RemoteControlAction.DIRECT_CLOSE, credentials=ZERO_CREDENTIALS, expiry=expiry
    )

    data = build_remote_control(REAL_ADDRESS, command).data

    assert data[8:] == bytes.fromhex("1C 00 30 05 10 01 05 24")
    wire = encode_frame(Frame(REAL_ADDRESS, ControlCode(Function.REMOTE_CONTROL), data))
    assert parse_remote_control(decode_frame(wire)).expiry == expiry


def test_a_naive_expiry_is_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        RemoteControlCommand(
            action=RemoteControlAction.TRIP,
            credentials=ZERO_CREDENTIALS,
            expiry=datetime(2024, 5, 1, 10, 5),
        )


# ── every part of a frame is checked, and named ──────────────────────────────────────────────


def _replace(data: bytes, index: int, value: int) -> bytes:
    changed = bytearray(data)
    changed[index] = value
    return bytes(changed)


@pytest.mark.parametrize(
    ("wire", "part"),
    [
        (_replace(REAL_TRIP, 0, 0x69), "start"),
        (_replace(REAL_TRIP, 7, 0x69), "second_start"),
        (_replace(REAL_TRIP, -2, 0xC1), "checksum"),
        (_replace(REAL_TRIP, -1, 0x17), "end"),
        (REAL_TRIP[:-1], "length"),
        (REAL_TRIP[:5], "length"),
        (REAL_TRIP + b"\x00", "trailing"),
        (b"\xfe" * 5 + REAL_TRIP, "wake_up"),
        (_replace(REAL_TRIP, 3, 0x2A), "address"),
        (READ_STATUS[:1] + bytes.fromhex("06 10 24 05 AA 20") + READ_STATUS[7:], "address"),
    ],
)
def test_each_broken_part_is_named(wire: bytes, part: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_frame(wire)

    assert caught.value.part == part
    assert isinstance(caught.value, ParseError)
    assert part in str(caught.value)


def test_checksum_error_says_what_was_expected_and_what_came() -> None:
    with pytest.raises(FrameError) as caught:
        decode_frame(_replace(REAL_TRIP, -2, 0xC1))

    assert (caught.value.expected, caught.value.actual) == (0xC0, 0xC1)
    assert "C0H" in str(caught.value)
    assert "C1H" in str(caught.value)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4])
def test_up_to_four_wake_up_bytes_are_tolerated(count: int) -> None:
    assert decode_frame(b"\xfe" * count + REAL_TRIP) == decode_frame(REAL_TRIP)


def test_wildcard_and_broadcast_addresses() -> None:
    short = MeterAddress("aaaaaa241006")

    assert short.text == "AAAAAA241006"
    assert short.to_wire() == bytes.fromhex("06 10 24 AA AA AA")
    assert short.is_wildcard
    assert short.matches(REAL_ADDRESS)
    assert not short.matches(MeterAddress("201905241007"))
    assert BROADCAST_ADDRESS.is_broadcast
    assert BROADCAST_ADDRESS.matches(REAL_ADDRESS)
    with pytest.raises(InvalidInputError):
        MeterAddress("2019AA241006")
    with pytest.raises(InvalidInputError):
        MeterAddress("20190524100")


# ── properties of the codec ──────────────────────────────────────────────────────────────────


@given(frames(), wake_ups)
def test_any_frame_encodes_then_decodes_to_itself(frame: Frame, wake_up: int) -> None:
    wire = encode_frame(frame, wake_up=wake_up)

    assert decode_frame(wire) == frame
    assert encode_frame(decode_frame(wire)) == wire[wake_up:]


@given(addresses(), commands)
def test_any_remote_control_command_encodes_then_decodes_to_itself(
    address: MeterAddress, command: RemoteControlCommand
) -> None:
    frame = decode_frame(encode_frame(build_remote_control(address, command)))

    assert frame.address == address
    assert parse_remote_control(frame) == command


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_a_frame_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    assert encode_frame(frame) == data.lstrip(b"\xfe")


@given(frames(max_data=40), st.data())
def test_damaged_frames_raise_nothing_but_a_frame_error(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 0xFF))
    cut = data.draw(st.integers(0, len(wire) + 2))
    damaged = bytes(wire[:cut]) + data.draw(st.binary(max_size=2))
    try:
        decoded = decode_frame(damaged)
    except FrameError:
        return
    assert encode_frame(decoded) == damaged.lstrip(b"\xfe")


@given(addresses(), st.binary(min_size=16, max_size=16))
def test_any_remote_control_data_parses_or_raises_a_frame_error(
    address: MeterAddress, data: bytes
) -> None:
    frame = Frame(address, ControlCode(Function.REMOTE_CONTROL), data)
    try:
        command = parse_remote_control(frame)
    except FrameError:
        return
    assert build_remote_control(address, command).data == data


@given(frames(max_data=60), wake_ups, st.data())
def test_a_single_flipped_bit_is_always_detected(
    frame: Frame, wake_up: int, data: st.DataObject
) -> None:
    wire = bytearray(encode_frame(frame, wake_up=wake_up))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)

    with pytest.raises(FrameError):
        decode_frame(bytes(wire))


# ── streams ──────────────────────────────────────────────────────────────────────────────────


def test_a_frame_fed_one_byte_at_a_time_arrives_once_at_its_last_byte() -> None:
    buffer = FrameBuffer()
    wire = b"\xfe\xfe" + REAL_TRIP

    arrived = [buffer.feed(wire[i : i + 1]) for i in range(len(wire))]

    assert arrived[:-1] == [[]] * (len(wire) - 1)
    assert arrived[-1] == [decode_frame(REAL_TRIP)]
    assert buffer.pending == b""
    assert buffer.noise == 0


def test_the_real_frame_with_noise_survives_a_split_at_every_byte() -> None:
    stream = b"\x00\x11\x16" + b"\xfe\xfe" + REAL_TRIP + b"\x42" + READ_STATUS + b"\x99"
    expected = [decode_frame(REAL_TRIP), decode_frame(READ_STATUS)]

    for cut in range(len(stream) + 1):
        buffer = FrameBuffer()
        assert buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) == expected
        assert buffer.noise == 5
        assert buffer.pending == b""


@settings(deadline=None)
@given(st.lists(st.tuples(noise, frames(max_data=30), wake_ups), min_size=1, max_size=3), noise)
def test_frames_in_noise_survive_a_split_at_every_possible_byte(
    parts: list[tuple[bytes, Frame, int]], tail: bytes
) -> None:
    stream = b"".join(junk + encode_frame(frame, wake_up=w) for junk, frame, w in parts) + tail
    expected = [frame for _, frame, _ in parts]
    noise_bytes = sum(len(junk) for junk, _, _ in parts) + len(tail)

    for cut in range(len(stream) + 1):
        buffer = FrameBuffer()
        assert buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) == expected
        assert buffer.noise == noise_bytes


@settings(deadline=None)
@given(
    st.lists(st.tuples(noise, frames(max_data=30), wake_ups), min_size=1, max_size=4),
    st.lists(st.integers(1, 400), max_size=12),
)
def test_frames_survive_any_cutting_into_pieces(
    parts: list[tuple[bytes, Frame, int]], cuts: list[int]
) -> None:
    stream = b"".join(junk + encode_frame(frame, wake_up=w) for junk, frame, w in parts)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    buffer = FrameBuffer()

    arrived: list[Frame] = []
    for start, end in pairwise(points):
        arrived += buffer.feed(stream[start:end])

    assert arrived == [frame for _, frame, _ in parts]


def test_a_false_start_in_noise_does_not_hold_back_a_complete_frame() -> None:
    # 68, six BCD bytes, 68, control, L = FFH: a header announcing 255 data bytes that never come.
    false_start = bytes.fromhex("68 11 11 11 11 11 11 68 91 FF")
    buffer = FrameBuffer()

    assert buffer.feed(false_start + REAL_TRIP) == [decode_frame(REAL_TRIP)]
    assert buffer.noise == len(false_start)


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_a_buffer_never_raises_and_keeps_less_than_one_frame(chunks: list[bytes]) -> None:
    buffer = FrameBuffer()
    header = bytes.fromhex("68 11 11 11 11 11 11 68 91 FF")

    for chunk in [header, *chunks]:
        buffer.feed(chunk)
        assert len(buffer.pending) < 12 + 255


# ── status word and error flags ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("word", "relay", "command", "alarm", "protected"),
    [
        (0x0000, RelayState.CLOSED, RelayState.CLOSED, False, False),
        (0x0050, RelayState.OPEN, RelayState.OPEN, False, False),
        (0x0010, RelayState.OPEN, RelayState.CLOSED, False, False),
        (0x0080, RelayState.CLOSED, RelayState.CLOSED, True, False),
        (0x1000, RelayState.CLOSED, RelayState.CLOSED, False, True),
        (0x0100, RelayState.CLOSED, RelayState.CLOSED, False, False),  # bit 8: meter type
    ],
)
def test_status_word_3_bits(
    word: int, relay: RelayState, command: RelayState, alarm: bool, protected: bool
) -> None:
    status = RelayStatus.from_wire(word.to_bytes(2, "little"))

    assert (status.relay, status.relay_command) == (relay, command)
    assert (status.pre_trip_alarm, status.protected) == (alarm, protected)
    assert (
        RelayStatus.compose(
            relay=relay,
            relay_command=command,
            pre_trip_alarm=alarm,
            protected=protected,
            other_bits=word,
        )
        == status
    )


def test_error_byte_reasons_are_named() -> None:
    reasons = MeterErrorFlag(0x05)

    assert MeterErrorFlag.UNAUTHORISED in reasons
    assert (
        reasons.description
        == "other error (其他错误), wrong password or unauthorised (密码错/未授权)"
    )


def test_a_read_reply_must_echo_the_identifier_asked_for() -> None:
    request = build_read(REAL_ADDRESS, RELAY_STATUS_DI)
    wrong = normal_reply(request, encode_data_identifier(0x04000501) + b"\x00\x00")

    assert decode_data_identifier(bytes.fromhex("03 05 00 04")) == RELAY_STATUS_DI
    with pytest.raises(UnexpectedReplyError):
        parse_read_reply(decode_frame(encode_frame(wrong)), RELAY_STATUS_DI)


# ── a meter to drive ─────────────────────────────────────────────────────────────────────────


class SimulatedMeter:
    """A small DL/T 645-2007 meter on the other end of a transport.

    It answers real frames, keeps its relay state (relay and relay command), checks the
    password and level, refuses a command whose expiry has passed by its own clock (which may
    drift from paygate's by ``clock_offset``), refuses to trip while protected, and stays
    silent (a timeout for the master) for frames addressed to another meter.
    """

    def __init__(
        self,
        address: str,
        *,
        clock: FixedClock,
        password: str = "123456",
        password_level: int = 0x02,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.address = MeterAddress(address)
        self.clock_offset = timedelta(0)
        self.relay = RelayState.CLOSED
        self.relay_command = RelayState.CLOSED
        self.protected = False
        self.alarm = False
        self.relay_stuck_open = False
        self.silent = False
        self.echo = False
        self.reply_as: MeterAddress | None = None
        self.requests: list[bytes] = []
        self.accepted: list[RemoteControlCommand] = []
        self._clock = clock
        self._password = password
        self._password_level = password_level
        self._timezone = timezone

    def now(self) -> datetime:
        return self._clock.now() + self.clock_offset

    def press_button(self) -> None:
        """The customer presses the meter's button: it closes only if closing is permitted."""
        if self.relay_command is RelayState.CLOSED and not self.relay_stuck_open:
            self.relay = RelayState.CLOSED

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        self.requests.append(request)
        received = FrameBuffer().feed(request)
        if self.silent or len(received) != 1:
            raise TimeoutError(f"no reply within {timeout} s")
        frame = received[0]
        if frame.address.is_broadcast or not frame.address.matches(self.address):
            raise TimeoutError(f"no reply within {timeout} s")
        if self.echo:
            return request
        reply = self._answer(frame)
        if self.reply_as is not None:
            reply = Frame(self.reply_as, reply.control, reply.data)
        return encode_frame(reply, wake_up=2)

    def _answer(self, frame: Frame) -> Frame:
        if frame.control.function == Function.REMOTE_CONTROL:
            return self._remote_control(frame)
        if frame.control.function == Function.READ_DATA:
            identifier = parse_read_request(frame)
            if identifier != RELAY_STATUS_DI:
                return abnormal_reply(frame, MeterErrorFlag.NO_REQUESTED_DATA, address=self.address)
            status = RelayStatus.compose(
                relay=self.relay,
                relay_command=self.relay_command,
                pre_trip_alarm=self.alarm,
                protected=self.protected,
                other_bits=0x0200,  # 电费型预付费表 in bits 8-9
            )
            data = encode_data_identifier(identifier) + status.to_wire()
            return normal_reply(frame, data, address=self.address)
        return abnormal_reply(frame, MeterErrorFlag.OTHER, address=self.address)

    def _remote_control(self, frame: Frame) -> Frame:
        refuse = abnormal_reply(frame, MeterErrorFlag.OTHER, address=self.address)
        try:
            command = parse_remote_control(frame, timezone=self._timezone)
        except FrameError:
            return refuse
        given = command.credentials
        if (
            given.password_level != self._password_level
            or given.password.get_secret_value() != self._password
        ):
            return abnormal_reply(frame, MeterErrorFlag.UNAUTHORISED, address=self.address)
        if command.expiry is not None and self.now() > command.expiry:
            return refuse
        action = command.action
        if action is RemoteControlAction.TRIP:
            if self.protected:
                return refuse
            self.relay = self.relay_command = RelayState.OPEN
        elif action is RemoteControlAction.CLOSE_PERMIT:
            self.relay_command = RelayState.CLOSED
        elif action is RemoteControlAction.DIRECT_CLOSE:
            self.relay_command = RelayState.CLOSED
            if not self.relay_stuck_open:
                self.relay = RelayState.CLOSED
        elif action in (RemoteControlAction.PROTECT, RemoteControlAction.PROTECT_RELEASE):
            self.protected = action is RemoteControlAction.PROTECT
        else:
            self.alarm = action is RemoteControlAction.ALARM
        self.accepted.append(command)
        return normal_reply(frame, address=self.address)


class ScriptedTransport:
    """Answers every request with the same bytes, or raises the same error."""

    def __init__(self, reply: bytes = b"", error: OSError | None = None) -> None:
        self.reply = reply
        self.error = error

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        if self.error is not None:
            raise self.error
        return self.reply


class ChunkedLine:
    """A line that delivers the meter's reply after noise, a few bytes at a time.

    This is how a serial or TCP transport finds the end of a reply: it feeds what it reads
    into a :class:`FrameBuffer` until a frame comes out.
    """

    def __init__(self, meter: SimulatedMeter, *, chunk: int = 3) -> None:
        self.meter = meter
        self.chunk = chunk

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        line = b"\x00\x07\x16" + self.meter.exchange(request, timeout=timeout)
        buffer = FrameBuffer()
        for start in range(0, len(line), self.chunk):
            for frame in buffer.feed(line[start : start + self.chunk]):
                return encode_frame(frame)
        raise TimeoutError("no complete frame")


START = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
ADDRESS = "201905241006"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def sim(clock: FixedClock) -> SimulatedMeter:
    return SimulatedMeter(ADDRESS, clock=clock)


def driver(
    transport: Dlt645Transport,
    clock: FixedClock,
    *,
    address: MeterAddress | str = ADDRESS,
    password: str = "123456",
    password_level: int = 0x02,
    command_validity: timedelta = timedelta(minutes=5),
    timeout: float = 5.0,
) -> Dlt645Meter:
    return Dlt645Meter(
        transport,
        address,
        password=password,
        operator_code="00000001",
        password_level=password_level,
        clock=clock,
        command_validity=command_validity,
        timeout=timeout,
    )


# ── the driver, story by story ───────────────────────────────────────────────────────────────


def test_trip_then_direct_close_restores_supply_confirmed_by_read_back(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock)

    meter.trip()
    assert meter.relay_status().relay is RelayState.OPEN
    assert sim.relay is RelayState.OPEN

    result = meter.reconnect(ReconnectMode.DIRECT_CLOSE)

    assert result.outcome is ReconnectOutcome.SUPPLY_RESTORED
    assert result.done
    assert result.status.relay is RelayState.CLOSED
    assert sim.relay is RelayState.CLOSED


def test_close_permit_waits_for_the_customer_and_is_not_done(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock)
    meter.trip()

    result = meter.reconnect(ReconnectMode.CLOSE_PERMIT)

    assert result.outcome is ReconnectOutcome.AWAITING_CUSTOMER
    assert not result.done
    assert result.status.relay is RelayState.OPEN
    assert result.status.relay_command is RelayState.CLOSED

    sim.press_button()
    assert meter.relay_status().relay is RelayState.CLOSED


def test_a_relay_that_does_not_follow_a_direct_close_is_not_confirmed(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock)
    meter.trip()
    sim.relay_stuck_open = True

    result = meter.reconnect(ReconnectMode.DIRECT_CLOSE)

    assert result.outcome is ReconnectOutcome.NOT_CONFIRMED
    assert not result.done


def test_a_wrong_password_is_refused_with_its_reason(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock, password="654321")

    with pytest.raises(MeterRefusedError) as caught:
        meter.trip()

    assert caught.value.reasons == MeterErrorFlag.UNAUTHORISED
    assert caught.value.address == MeterAddress(ADDRESS)
    assert caught.value.function == Function.REMOTE_CONTROL
    assert "密码错/未授权" in str(caught.value)
    assert sim.relay is RelayState.CLOSED


def test_the_command_expires_in_the_meters_local_time_by_the_injected_clock(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock, command_validity=timedelta(minutes=5))

    meter.trip()

    sent = decode_frame(sim.requests[-1])
    assert sent.data[10:16] == bytes.fromhex("00 05 10 01 05 24")  # 10:05:00, 1 May 2024
    assert sim.accepted[-1].expiry == datetime(2024, 5, 1, 10, 5, tzinfo=SHANGHAI)
    assert sim.requests[-1].startswith(b"\xfe" * 4 + b"\x68")


def test_a_command_that_reaches_the_meter_after_its_expiry_is_refused(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock, command_validity=timedelta(minutes=5))
    meter.trip()
    sim.clock_offset = timedelta(minutes=5, seconds=1)  # the meter's clock runs fast

    with pytest.raises(MeterRefusedError) as caught:
        meter.reconnect(ReconnectMode.DIRECT_CLOSE)

    assert caught.value.reasons == MeterErrorFlag.OTHER
    assert "valid until 2024-05-01T10:05:00+08:00" in str(caught.value)
    assert sim.relay is RelayState.OPEN


def test_a_command_still_within_its_validity_is_obeyed(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(sim, clock, command_validity=timedelta(minutes=5))
    meter.trip()
    sim.clock_offset = timedelta(minutes=5)

    assert meter.reconnect(ReconnectMode.DIRECT_CLOSE).done


def test_a_protected_meter_refuses_to_trip(sim: SimulatedMeter, clock: FixedClock) -> None:
    meter = driver(sim, clock)

    meter.protect(True)
    assert meter.relay_status().protected
    with pytest.raises(MeterRefusedError) as caught:
        meter.trip()
    assert "保电" in str(caught.value)

    meter.protect(False)
    meter.trip()
    assert sim.relay is RelayState.OPEN


def test_alarm_shows_in_the_status_word(sim: SimulatedMeter, clock: FixedClock) -> None:
    meter = driver(sim, clock)

    meter.alarm(True)
    assert meter.relay_status().pre_trip_alarm
    meter.alarm(False)
    assert not meter.relay_status().pre_trip_alarm


def test_a_reply_from_another_meter_is_refused(sim: SimulatedMeter, clock: FixedClock) -> None:
    meter = driver(sim, clock)
    sim.reply_as = MeterAddress("201905241007")

    with pytest.raises(UnexpectedReplyError) as caught:
        meter.relay_status()

    assert "201905241007" in str(caught.value)
    assert ADDRESS in str(caught.value)


def test_an_echo_of_the_request_is_not_taken_for_a_reply(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    sim.echo = True

    with pytest.raises(UnexpectedReplyError, match="echo"):
        driver(sim, clock).trip()


def test_a_silent_meter_surfaces_as_a_timeout(sim: SimulatedMeter, clock: FixedClock) -> None:
    sim.silent = True

    with pytest.raises(MeterTimeoutError) as caught:
        driver(sim, clock, timeout=1.5).reconnect(ReconnectMode.DIRECT_CLOSE)

    assert isinstance(caught.value.__cause__, TimeoutError)
    assert "1.5 s" in str(caught.value)


def test_an_empty_read_is_a_timeout_and_a_broken_line_a_transport_error(
    clock: FixedClock,
) -> None:
    with pytest.raises(MeterTimeoutError):
        driver(ScriptedTransport(b""), clock).trip()
    with pytest.raises(TransportError) as caught:
        driver(ScriptedTransport(error=ConnectionResetError("reset by peer")), clock).trip()
    assert not isinstance(caught.value, MeterTimeoutError)


def test_a_garbled_reply_is_a_frame_error_and_a_driver_error(clock: FixedClock) -> None:
    with pytest.raises(FrameError) as caught:
        driver(ScriptedTransport(_replace(READ_STATUS, -2, 0x00)), clock).relay_status()

    assert caught.value.part == "checksum"
    assert isinstance(caught.value, Dlt645Error)


def test_a_normal_reply_to_another_function_is_refused(clock: FixedClock) -> None:
    read_reply = normal_reply(build_read(MeterAddress(ADDRESS), RELAY_STATUS_DI))

    with pytest.raises(UnexpectedReplyError, match="function"):
        driver(ScriptedTransport(encode_frame(read_reply)), clock).trip()


def test_a_reply_cut_into_pieces_after_noise_still_drives_the_meter(
    sim: SimulatedMeter, clock: FixedClock
) -> None:
    meter = driver(ChunkedLine(sim), clock)

    meter.trip()

    assert meter.reconnect(ReconnectMode.DIRECT_CLOSE).done


def test_secrets_never_reach_repr_str_or_logs(
    sim: SimulatedMeter, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paygate.headend.dlt645")
    meter = driver(sim, clock)
    meter.trip()
    meter.reconnect(ReconnectMode.CLOSE_PERMIT)
    with pytest.raises(MeterRefusedError) as caught:
        driver(sim, clock, password="654321").trip()
    request = decode_frame(sim.requests[0])
    command = parse_remote_control(request)

    shown = "\n".join(
        [caplog.text, repr(meter), str(caught.value), repr(request), repr(command), str(command)]
    )
    for secret in ("123456", "654321", "00000001"):
        assert secret not in shown
    assert sim.requests[0].hex() not in caplog.text
    assert "withheld" in repr(request)
    assert "accepted trip" in caplog.text


def test_the_driver_refuses_what_it_cannot_do_safely(clock: FixedClock) -> None:
    transport = ScriptedTransport()

    with pytest.raises(ConfigurationError):
        driver(transport, clock, address="AAAAAA241006")
    with pytest.raises(ConfigurationError):
        driver(transport, clock, address=BROADCAST_ADDRESS)
    with pytest.raises(ConfigurationError):
        driver(transport, clock, command_validity=timedelta(0))
    with pytest.raises(UnsupportedOperationError):
        driver(transport, clock, password_level=0x98)
    with pytest.raises(InvalidInputError, match="6 hex digits"):
        driver(transport, clock, password="12345")
