"""The head-end registry: the built-ins, third parties by entry point, and what is refused."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import pytest

from paygate.clock import FixedClock
from paygate.errors import ConfigurationError
from paygate.headend.base import HeadEnd, HeadEndOutcome, HeadEndRegistry, HeadEndResult
from paygate.headend.base import SupplyCommand as Command
from paygate.headend.dlt645_headend import Dlt645HeadEnd
from paygate.headend.webhook import WebhookHeadEnd
from paygate.headend.workorder import WorkOrderHeadEnd
from tests.headend.test_dlt645 import ScriptedTransport


class AcmeHeadEnd(HeadEnd):
    """A third party's head-end, as a plug-in package would ship it."""

    name: ClassVar[str] = "acme"

    def send(self, command: Command) -> HeadEndResult:
        return HeadEndResult(outcome=HeadEndOutcome.DISPATCHED)


class ImpostorWebhook(AcmeHeadEnd):
    """A plug-in that takes a built-in's name."""

    name: ClassVar[str] = "webhook"


class NotAHeadEnd:
    """Has a name and a send method, but is no HeadEnd."""

    name = "duck"

    def send(self, command: Command) -> HeadEndResult:
        return HeadEndResult(outcome=HeadEndOutcome.DISPATCHED)


def point(name: str, target: str) -> EntryPoint:
    return EntryPoint(
        name=name, value=f"tests.headend.test_registry:{target}", group="paygate.headends"
    )


def test_the_built_ins_are_listed() -> None:
    registry = HeadEndRegistry.discover(found=[])

    assert registry.names() == ("dlt645", "webhook", "workorder")
    assert registry.get("webhook") is WebhookHeadEnd
    assert registry.get("dlt645") is Dlt645HeadEnd
    assert registry.get("workorder") is WorkOrderHeadEnd


def test_a_third_party_head_end_arrives_by_entry_point() -> None:
    registry = HeadEndRegistry.discover(found=[point("acme", "AcmeHeadEnd")])

    assert registry.get("acme") is AcmeHeadEnd
    assert list(registry) == ["acme", "dlt645", "webhook", "workorder"]


def test_a_second_head_end_under_a_taken_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="'webhook' is registered twice"):
        HeadEndRegistry.discover(found=[point("webhook", "ImpostorWebhook")])


def test_something_that_is_not_a_head_end_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="'duck' is not a HeadEnd subclass"):
        HeadEndRegistry.discover(found=[point("duck", "NotAHeadEnd")])
    with pytest.raises(ConfigurationError, match="not a HeadEnd subclass"):
        HeadEndRegistry().register(AcmeHeadEnd())


def test_an_entry_point_that_cannot_be_loaded_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="'ghost' cannot be loaded"):
        HeadEndRegistry.discover(found=[point("ghost", "DoesNotExist")])


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("webhook", {"url": "https://head-end.example/paygate/commands", "secret": "s" * 32}),
        (
            "dlt645",
            {
                "password": "123456",
                "operator_code": "00000001",
                "password_level": 2,
                "transport_factory": lambda address: ScriptedTransport(),
            },
        ),
        ("workorder", {}),
    ],
)
def test_every_built_in_is_built_from_a_mapping_the_same_way(
    name: str, config: dict[str, Any], clock: FixedClock
) -> None:
    cls = HeadEndRegistry.discover(found=[]).get(name)

    headend = cls.from_config(config, clock=clock)  # type: ignore[attr-defined]

    try:
        assert isinstance(headend, cls)
        assert headend.name == name
    finally:
        headend.close()


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no head-end named 'mqtt'"):
        HeadEndRegistry.discover(found=[]).get("mqtt")
