"""The DL/T 645 head-end against the simulated meter of test_dlt645, story by story.

The meter answers real frames; the adapter reaches it through a transport factory that
records which meter was asked for and whether the transport was closed afterwards.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from paygate.clock import FixedClock
from paygate.errors import ConfigurationError
from paygate.headend.base import (
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndUnavailable,
    SupplyAction,
    SupplyCommand,
)
from paygate.headend.dlt645 import MeterAddress, RelayState
from paygate.headend.dlt645_headend import Dlt645HeadEnd, Dlt645HeadEndConfig
from tests.headend.test_dlt645 import ScriptedTransport, SimulatedMeter

ADDRESS = "201905241006"
PASSWORD = "123456"
OPERATOR = "00000001"


class Line:
    """A transport to one simulated meter that knows whether it was closed."""

    def __init__(self, meter: SimulatedMeter) -> None:
        self.meter = meter
        self.closed = False

    def exchange(self, request: bytes, *, timeout: float) -> bytes:
        assert not self.closed, "exchange on a closed transport"
        return self.meter.exchange(request, timeout=timeout)

    def close(self) -> None:
        self.closed = True


class Bus:
    """The transport factory: opens a line to a meter by its address."""

    def __init__(self, *meters: SimulatedMeter) -> None:
        self.meters = {meter.address.text: meter for meter in meters}
        self.opened: list[str] = []
        self.lines: list[Line] = []

    def __call__(self, address: str) -> Line:
        self.opened.append(address)
        line = Line(self.meters[address])
        self.lines.append(line)
        return line


def silent_line(address: str) -> ScriptedTransport:
    """A factory, importable by path, whose meters never answer."""
    return ScriptedTransport(b"")


@pytest.fixture
def meter(clock: FixedClock) -> SimulatedMeter:
    """A disconnected meter: relay open, by command."""
    meter = SimulatedMeter(ADDRESS, clock=clock, password=PASSWORD)
    meter.relay = meter.relay_command = RelayState.OPEN
    return meter


@pytest.fixture
def bus(meter: SimulatedMeter) -> Bus:
    return Bus(meter)


def headend(factory: Any, clock: FixedClock, **overrides: Any) -> Dlt645HeadEnd:
    config: dict[str, Any] = {
        "password": PASSWORD,
        "operator_code": OPERATOR,
        "password_level": 0x02,
        "transport_factory": factory,
    }
    config.update(overrides)
    return Dlt645HeadEnd.from_config(config, clock=clock)


def order(command: SupplyCommand, action: SupplyAction, **changes: Any) -> SupplyCommand:
    kind = "disconnect" if action is SupplyAction.TRIP else "reconnect"
    return command.model_copy(update={"action": action, "kind": kind, **changes})


# ── reconnection ─────────────────────────────────────────────────────────────────────────────


def test_a_direct_close_is_completed_when_the_relay_reads_back_closed(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    result = headend(bus, clock).send(order(command, SupplyAction.DIRECT_CLOSE))

    assert result.outcome is HeadEndOutcome.COMPLETED
    assert result.detail == f"meter {ADDRESS}: relay closed, commanded closed"
    assert result.at == clock.now()
    assert meter.relay is RelayState.CLOSED
    assert bus.opened == [ADDRESS]
    assert all(line.closed for line in bus.lines)


def test_a_close_permit_is_acknowledged_and_completed_only_when_a_poll_reads_it_closed(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    adapter = headend(bus, clock)
    permit = order(command, SupplyAction.CLOSE_PERMIT)

    sent = adapter.send(permit)

    assert sent.outcome is HeadEndOutcome.ACKNOWLEDGED
    assert "waiting for the customer" in sent.detail
    polled = adapter.poll(permit)
    assert polled is not None
    assert polled.outcome is HeadEndOutcome.ACKNOWLEDGED

    clock.advance(timedelta(minutes=40))
    meter.press_button()
    done = adapter.poll(permit)

    assert done is not None
    assert done.outcome is HeadEndOutcome.COMPLETED
    assert done.at == clock.now()
    assert len(bus.lines) == 3
    assert all(line.closed for line in bus.lines)


def test_a_relay_that_does_not_follow_a_direct_close_is_dispatched_not_completed(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.relay_stuck_open = True
    adapter = headend(bus, clock)
    close = order(command, SupplyAction.DIRECT_CLOSE)

    assert adapter.send(close).outcome is HeadEndOutcome.DISPATCHED
    polled = adapter.poll(close)
    assert polled is not None
    assert polled.outcome is HeadEndOutcome.DISPATCHED


def test_a_poll_says_none_when_the_meter_shows_no_sign_of_the_command(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    adapter = headend(bus, clock)

    # Still tripped by command: the close never arrived.
    assert adapter.poll(order(command, SupplyAction.DIRECT_CLOSE)) is None
    assert adapter.poll(order(command, SupplyAction.CLOSE_PERMIT)) is None
    meter.relay = meter.relay_command = RelayState.CLOSED
    # Connected by command: the trip never arrived.
    assert adapter.poll(order(command, SupplyAction.TRIP)) is None


# ── disconnection ────────────────────────────────────────────────────────────────────────────


def test_a_trip_is_completed_when_the_relay_reads_back_open(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.relay = meter.relay_command = RelayState.CLOSED
    adapter = headend(bus, clock)
    trip = order(command, SupplyAction.TRIP)

    assert adapter.send(trip).outcome is HeadEndOutcome.COMPLETED
    assert meter.relay is RelayState.OPEN
    polled = adapter.poll(trip)
    assert polled is not None
    assert polled.outcome is HeadEndOutcome.COMPLETED


def test_a_protected_meter_refuses_a_trip_for_good(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.relay = meter.relay_command = RelayState.CLOSED
    meter.protected = True

    with pytest.raises(HeadEndRejected, match="保电") as caught:
        headend(bus, clock).send(order(command, SupplyAction.TRIP))

    assert "order 42" in str(caught.value)
    assert meter.relay is RelayState.CLOSED
    assert all(line.closed for line in bus.lines)


# ── refusals and failures ────────────────────────────────────────────────────────────────────


def test_a_wrong_password_is_rejected_with_the_meters_reason(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    with pytest.raises(HeadEndRejected, match="密码错/未授权") as caught:
        headend(bus, clock, password="654321").send(order(command, SupplyAction.DIRECT_CLOSE))

    assert "654321" not in str(caught.value)
    assert meter.relay is RelayState.OPEN


def test_a_command_the_meter_finds_expired_is_rejected_naming_the_validity(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.clock_offset = timedelta(minutes=6)  # the meter's clock runs fast

    with pytest.raises(HeadEndRejected, match="valid until"):
        headend(bus, clock).send(order(command, SupplyAction.DIRECT_CLOSE))


def test_a_silent_meter_is_unavailable_and_its_line_is_still_closed(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.silent = True

    with pytest.raises(HeadEndUnavailable, match="did not reply"):
        headend(bus, clock, timeout=0.5).send(order(command, SupplyAction.DIRECT_CLOSE))

    assert [line.closed for line in bus.lines] == [True]


@pytest.mark.parametrize(
    ("transport", "words"),
    [
        (ScriptedTransport(error=ConnectionResetError("reset by peer")), "reset by peer"),
        (ScriptedTransport(bytes.fromhex("68 06 10 24 05 19 20 68 91 00 00 16")), "checksum"),
    ],
    ids=["broken line", "garbled reply"],
)
def test_a_broken_line_or_a_garbled_reply_is_unavailable(
    clock: FixedClock, command: SupplyCommand, transport: ScriptedTransport, words: str
) -> None:
    with pytest.raises(HeadEndUnavailable, match=words):
        headend(lambda address: transport, clock).send(order(command, SupplyAction.DIRECT_CLOSE))


def test_a_reply_from_another_meter_on_the_bus_is_unavailable(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.reply_as = MeterAddress("201905241007")

    with pytest.raises(HeadEndUnavailable, match="201905241007"):
        headend(bus, clock).send(order(command, SupplyAction.DIRECT_CLOSE))


@pytest.mark.parametrize("error", [OSError("no such port"), TimeoutError("DTU offline")])
def test_a_transport_that_cannot_be_opened_is_unavailable(
    clock: FixedClock, command: SupplyCommand, error: OSError
) -> None:
    def factory(address: str) -> ScriptedTransport:
        raise error

    with pytest.raises(HeadEndUnavailable, match=str(error)):
        headend(factory, clock).send(order(command, SupplyAction.DIRECT_CLOSE))


@pytest.mark.parametrize(
    ("meter_address", "words"),
    [
        (None, "names no meter address"),
        ("12345", "12 characters"),
        ("AAAAAA241006", "wildcard"),
        ("999999999999", "broadcast"),
    ],
)
def test_an_order_without_one_meters_address_is_rejected_before_any_line_is_opened(
    bus: Bus,
    clock: FixedClock,
    command: SupplyCommand,
    meter_address: str | None,
    words: str,
) -> None:
    close = order(command, SupplyAction.DIRECT_CLOSE, meter_address=meter_address)

    with pytest.raises(HeadEndRejected, match=words):
        headend(bus, clock).send(close)

    assert bus.opened == []


def test_an_order_whose_kind_contradicts_its_action_is_rejected_untouched(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    meter.relay = meter.relay_command = RelayState.CLOSED
    contradiction = command.model_copy(update={"kind": "reconnect", "action": SupplyAction.TRIP})

    with pytest.raises(HeadEndRejected, match="'reconnect' order"):
        headend(bus, clock).send(contradiction)

    assert bus.opened == []
    assert meter.relay is RelayState.CLOSED


def test_a_transport_that_fails_to_close_does_not_undo_the_result(
    meter: SimulatedMeter,
    clock: FixedClock,
    command: SupplyCommand,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Sticky(Line):
        def close(self) -> None:
            raise OSError("port busy")

    result = headend(lambda address: Sticky(meter), clock).send(
        order(command, SupplyAction.DIRECT_CLOSE)
    )

    assert result.outcome is HeadEndOutcome.COMPLETED
    assert "port busy" in caplog.text


# ── configuration and secrets ────────────────────────────────────────────────────────────────


def test_the_factory_may_be_named_by_import_path(clock: FixedClock, command: SupplyCommand) -> None:
    adapter = headend("tests.headend.test_dlt645_headend:silent_line", clock)

    with pytest.raises(HeadEndUnavailable, match="no bytes"):
        adapter.send(order(command, SupplyAction.DIRECT_CLOSE))


def test_the_constructor_takes_a_typed_configuration(
    bus: Bus, clock: FixedClock, command: SupplyCommand
) -> None:
    config = Dlt645HeadEndConfig(
        password=PASSWORD,
        operator_code=OPERATOR,
        password_level=0x02,  # type: ignore[arg-type]
    )
    adapter = Dlt645HeadEnd(config, transport_factory=bus, clock=clock)

    assert adapter.send(order(command, SupplyAction.DIRECT_CLOSE)).outcome.value == "completed"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"transport_factory": ...}, None),
        ({"transport_factory": "no.such.module:factory"}, "transport_factory"),
        ({"transport_factory": "tests.headend.test_dlt645_headend:ADDRESS"}, "transport_factory"),
        ({"password": "12345"}, "password"),
        ({"operator_code": "xyz"}, "operator_code"),
        ({"password_level": 0x98}, "password_level"),
        ({"password_level": 256}, "password_level"),
        ({"timeout": 0}, "timeout"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"baud_rate": 2400}, "baud_rate"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_at_configuration(
    bus: Bus, clock: FixedClock, changes: dict[str, Any], field: str | None
) -> None:
    config: dict[str, Any] = {
        "password": PASSWORD,
        "operator_code": OPERATOR,
        "password_level": 0x02,
        "transport_factory": bus,
    }
    config.update(changes)
    config = {key: value for key, value in config.items() if value is not ...}

    with pytest.raises(ConfigurationError) as caught:
        Dlt645HeadEnd.from_config(config, clock=clock)

    assert caught.value.field == field
    assert (field or "transport_factory") in str(caught.value)
    assert "12345" not in str(caught.value)
    assert bus.opened == []


def test_secrets_never_reach_repr_errors_or_logs(
    bus: Bus, clock: FixedClock, command: SupplyCommand, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = headend(bus, clock)
    adapter.send(order(command, SupplyAction.CLOSE_PERMIT))
    with pytest.raises(HeadEndRejected) as caught:
        headend(bus, clock, password="654321").send(order(command, SupplyAction.DIRECT_CLOSE))

    shown = "\n".join(
        [caplog.text, repr(adapter), repr(adapter.config), str(adapter.config), str(caught.value)]
    )
    for secret in (PASSWORD, "654321", OPERATOR):
        assert secret not in shown
