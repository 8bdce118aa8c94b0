"""Fixtures for the head-end tests: the head-end simulator, a callback receiver, an adapter.

Everything listens on 127.0.0.1 ports chosen by the system, and is closed after each test (a
server or client left open would surface as a ResourceWarning, an error here).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from paygate.clock import FixedClock
from paygate.headend.base import SupplyAction, SupplyCommand
from paygate.headend.webhook import WebhookHeadEnd
from tests.headend.simulator import (
    CALLBACK_SECRET,
    COMMAND_SECRET,
    CallbackReceiver,
    HeadEndSimulator,
)


@pytest.fixture
def simulator(clock: FixedClock) -> Iterator[HeadEndSimulator]:
    """A running head-end simulator on the test's clock; it must not have crashed."""
    with HeadEndSimulator(
        secret=COMMAND_SECRET, callback_secret=CALLBACK_SECRET, clock=clock
    ) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    """A running server that keeps the callbacks it is sent."""
    with CallbackReceiver() as receiver:
        yield receiver
    assert receiver.errors == []


@pytest.fixture
def webhook(
    simulator: HeadEndSimulator, callback_receiver: CallbackReceiver, clock: FixedClock
) -> Iterator[WebhookHeadEnd]:
    """The webhook adapter pointed at the simulator, with short timeouts."""
    headend = WebhookHeadEnd.from_config(
        {
            "url": simulator.commands_url,
            "secret": COMMAND_SECRET,
            "callback_secret": CALLBACK_SECRET,
            "callback_url": f"{callback_receiver.url}/headend/callback",
            "connect_timeout": 2.0,
            "read_timeout": 2.0,
        },
        clock=clock,
    )
    with headend:
        yield headend


@pytest.fixture
def command(clock: FixedClock) -> SupplyCommand:
    """Order 42: reconnect account 0100234567 by direct close, 24 hours from now."""
    return SupplyCommand(
        order_id=42,
        kind="reconnect",
        action=SupplyAction.DIRECT_CLOSE,
        account_no="0100234567",
        meter_address="201905241006",
        issued_at=clock.now(),
        deadline=clock.now() + timedelta(hours=24),
        attempt=1,
    )
