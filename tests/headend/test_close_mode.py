"""Close permit (合闸允许, 1BH) or direct close (直接合闸, 1CH), chosen per DL/T 645 head-end,
and the meter address a supply order goes to, checked when it is set."""

from __future__ import annotations

import csv
import io

import pytest

from paygate.clock import FixedClock
from paygate.errors import ConfigurationError, InvalidInputError
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome, SupplyAction, SupplyCommand
from paygate.headend.dlt645 import RelayState
from paygate.headend.dlt645_headend import Dlt645HeadEndConfig
from paygate.headend.workorder import WorkOrderHeadEnd, export_work_orders
from tests.headend.simulator import HeadEndSimulator
from tests.headend.test_dlt645 import SimulatedMeter
from tests.headend.test_dlt645_headend import ADDRESS, PASSWORD, Bus, headend, order
from tests.headend.test_webhook import adapter as webhook_headend


@pytest.fixture
def meter(clock: FixedClock) -> SimulatedMeter:
    """A disconnected meter: relay open, by command."""
    meter = SimulatedMeter(ADDRESS, clock=clock, password=PASSWORD)
    meter.relay = meter.relay_command = RelayState.OPEN
    return meter


@pytest.fixture
def bus(meter: SimulatedMeter) -> Bus:
    return Bus(meter)


def test_a_head_end_configured_for_close_permit_sends_1b_for_every_reconnection(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    adapter = headend(bus, clock, close_mode="close_permit")
    reconnect = order(command, SupplyAction.DIRECT_CLOSE)  # what the core orders by default
    sent = adapter.send(reconnect)
    assert sent.outcome is HeadEndOutcome.ACKNOWLEDGED  # waiting for the customer
    assert meter.relay is RelayState.OPEN and meter.relay_command is RelayState.CLOSED
    polled = adapter.poll(reconnect)
    assert polled is not None and polled.outcome is HeadEndOutcome.ACKNOWLEDGED
    meter.press_button()
    done = adapter.poll(reconnect)
    assert done is not None and done.outcome is HeadEndOutcome.COMPLETED


def test_the_default_is_direct_close(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    adapter = headend(bus, clock)
    assert adapter.config.close_mode == "direct_close"
    assert adapter.send(order(command, SupplyAction.DIRECT_CLOSE)).outcome is (
        HeadEndOutcome.COMPLETED
    )
    assert meter.relay is RelayState.CLOSED


def test_an_order_asking_for_a_close_permit_gets_one_from_a_direct_close_head_end(
    bus: Bus, meter: SimulatedMeter, clock: FixedClock, command: SupplyCommand
) -> None:
    sent = headend(bus, clock).send(order(command, SupplyAction.CLOSE_PERMIT))
    assert sent.outcome is HeadEndOutcome.ACKNOWLEDGED and meter.relay is RelayState.OPEN


def test_an_unknown_close_mode_is_a_configuration_error(bus: Bus, clock: FixedClock) -> None:
    with pytest.raises(ConfigurationError, match="close_mode"):
        headend(bus, clock, close_mode="whenever")
    assert "close_mode" in Dlt645HeadEndConfig.model_fields


@pytest.mark.parametrize(
    "address",
    [
        "",
        "20190524100",
        "2019052410066",
        "20190524100A",
        "AAAAAA241006",
        "２０１９０５２４１００６",
    ],
)
def test_a_meter_address_is_12_bcd_digits(gateway: Gateway, address: str) -> None:
    gateway.open_account("A1")
    with pytest.raises(InvalidInputError) as caught:
        gateway.set_meter("A1", headend="ami", meter_address=address)
    assert caught.value.field == "meter_address"
    assert (
        gateway.store.run(
            lambda tx: tx.scalar("SELECT meter_address FROM accounts WHERE account_no = 'A1'"),
            write=False,
        )
        is None
    )


def test_the_broadcast_address_and_a_blank_head_end_are_refused(gateway: Gateway) -> None:
    gateway.open_account("A1")
    with pytest.raises(InvalidInputError, match="broadcast"):
        gateway.set_meter("A1", headend="ami", meter_address="999999999999")
    with pytest.raises(InvalidInputError) as caught:
        gateway.set_meter("A1", headend=" ", meter_address="201905241006")
    assert caught.value.field == "headend"
    gateway.set_meter("A1", headend="ami", meter_address="201905241006")
    gateway.set_meter("A1", headend=None, meter_address=None)


def test_a_webhook_head_end_configured_for_close_permit_sends_it_as_the_action(
    simulator: HeadEndSimulator, clock: FixedClock, command: SupplyCommand
) -> None:
    adapter = webhook_headend(simulator, clock, close_mode="close_permit")
    adapter.send(order(command, SupplyAction.DIRECT_CLOSE))
    adapter.send(order(command, SupplyAction.TRIP).model_copy(update={"order_id": 43}))
    assert [r.json()["action"] for r in simulator.requests] == ["close_permit", "trip"]
    plain = webhook_headend(simulator, clock)
    assert plain.config.close_mode is SupplyAction.DIRECT_CLOSE
    plain.send(order(command, SupplyAction.DIRECT_CLOSE).model_copy(update={"order_id": 44}))
    assert simulator.requests[-1].json()["action"] == "direct_close"


def test_field_crews_configured_for_close_permit_get_it_on_the_work_order(
    clock: FixedClock, command: SupplyCommand
) -> None:
    crews = WorkOrderHeadEnd.from_config({"close_mode": "close_permit"}, clock=clock)
    sent = crews.send(order(command, SupplyAction.DIRECT_CLOSE))
    assert sent.detail is not None and "close_permit" in sent.detail
    out = io.StringIO()
    export_work_orders(
        [order(command, SupplyAction.DIRECT_CLOSE)], out, close_mode=crews.config.close_mode
    )
    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["action"] == "close_permit"


@pytest.mark.parametrize("mode", ["trip", "whenever", 1])
def test_a_close_mode_other_than_the_two_is_refused_by_every_head_end(
    simulator: HeadEndSimulator, clock: FixedClock, command: SupplyCommand, mode: object
) -> None:
    with pytest.raises(ConfigurationError, match="close_mode"):
        webhook_headend(simulator, clock, close_mode=mode)
    with pytest.raises(ConfigurationError, match="close_mode"):
        WorkOrderHeadEnd.from_config({"close_mode": mode}, clock=clock)
    with pytest.raises(InvalidInputError) as caught:
        export_work_orders([command], io.StringIO(), close_mode=mode)  # type: ignore[arg-type]
    assert caught.value.field == "close_mode"
