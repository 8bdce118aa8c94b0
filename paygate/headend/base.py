"""The head-end protocol: how a supply order (reconnect or disconnect) reaches a meter.

A head-end adapter turns a :class:`SupplyCommand` into its own wire form (an HTTP call to an
AMI head-end, a DL/T 645 frame to a meter, a field crew work order) and reports how far the
command got as a :class:`HeadEndResult`. The dispatcher calls :meth:`HeadEnd.send` at least
once per order and retries on :class:`HeadEndUnavailable`; every attempt for one order carries
the same idempotency key (the order id), so a head-end that saw a command before does not act
twice. An adapter never touches the database: the core records what it reports.

Outcomes, in the order a command moves through them:

* ``dispatched``: the head-end accepted the command; it will act on it;
* ``acknowledged``: the head-end confirmed it executed the command (for a close-permit, the
  meter allows closing and waits for the customer's button);
* ``completed``: supply is confirmed restored (or cut), e.g. the relay read back closed.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from paygate.errors import ConfigurationError, PaygateError, UnsupportedOperationError

__all__ = [
    "CloseMode",
    "HeadEnd",
    "HeadEndError",
    "HeadEndOutcome",
    "HeadEndRegistry",
    "HeadEndRejected",
    "HeadEndResult",
    "HeadEndUnavailable",
    "SupplyAction",
    "SupplyCommand",
    "close_mode_of",
]


class SupplyAction(StrEnum):
    """What the meter is asked to do."""

    DIRECT_CLOSE = "direct_close"
    CLOSE_PERMIT = "close_permit"
    TRIP = "trip"


class SupplyCommand(BaseModel):
    """One supply order as a head-end receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: int
    kind: str  # "reconnect" or "disconnect"
    action: SupplyAction
    account_no: str
    meter_address: str | None
    issued_at: datetime
    deadline: datetime
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one order."""
        return f"paygate-order-{self.order_id}"

    def reconnecting_by(self, close_mode: SupplyAction) -> SupplyCommand:
        """This command as a head-end whose meters reconnect by ``close_mode`` carries it.

        The core orders every reconnection as a direct close; under ``close_permit`` it
        becomes a close permit (合闸允许: the customer presses the meter's button). A trip,
        and an order that already asks for a close permit, are unchanged.
        """
        if close_mode is SupplyAction.CLOSE_PERMIT and self.action is SupplyAction.DIRECT_CLOSE:
            return self.model_copy(update={"action": SupplyAction.CLOSE_PERMIT})
        return self


def close_mode_of(value: object) -> SupplyAction:
    """A head-end configuration's ``close_mode``: ``direct_close`` or ``close_permit``."""
    modes = (SupplyAction.DIRECT_CLOSE, SupplyAction.CLOSE_PERMIT)
    if isinstance(value, str) and value in {mode.value for mode in modes}:
        return SupplyAction(value)
    raise ValueError("close_mode is direct_close or close_permit")


CloseMode = Annotated[SupplyAction, BeforeValidator(close_mode_of)]
"""The type of a head-end configuration's ``close_mode`` field, checked by :func:`close_mode_of`."""


class HeadEndOutcome(StrEnum):
    """How far a command got."""

    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"


class HeadEndResult(BaseModel):
    """What a head-end reported for a command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: HeadEndOutcome
    detail: str = ""
    reference: str | None = None
    at: datetime | None = None


class HeadEndError(PaygateError):
    """A head-end could not take a command."""

    code = "headend_error"


class HeadEndUnavailable(HeadEndError):
    """Try again later: the head-end is down, slow, or answered with a server error."""

    code = "headend_unavailable"


class HeadEndRejected(HeadEndError):
    """The head-end refused the command for good (unknown meter, bad request): a person acts."""

    code = "headend_rejected"


class HeadEnd(ABC):
    """One way of reaching meters. Subclasses set ``name`` and implement :meth:`send`."""

    name: ClassVar[str]

    @abstractmethod
    def send(self, command: SupplyCommand) -> HeadEndResult:
        """Deliver ``command``; raise HeadEndUnavailable to be retried, HeadEndRejected to stop."""

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        """Ask how far ``command`` got, for head-ends without callbacks; None if unknown."""
        raise UnsupportedOperationError(f"head-end {self.name} cannot be polled")

    def close(self) -> None:  # noqa: B027 - adapters without resources keep the default
        """Release connections."""


class HeadEndRegistry:
    """Head-end adapters by name: built-ins, then third parties by the ``paygate.headends``
    entry-point group; a duplicate name or a class that is not a HeadEnd is refused by name."""

    BUILTINS: ClassVar[tuple[str, ...]] = (
        "paygate.headend.webhook:WebhookHeadEnd",
        "paygate.headend.dlt645_headend:Dlt645HeadEnd",
        "paygate.headend.workorder:WorkOrderHeadEnd",
    )

    def __init__(self) -> None:
        self._classes: dict[str, type[HeadEnd]] = {}

    @classmethod
    def discover(cls, found: Iterable[EntryPoint] | None = None) -> HeadEndRegistry:
        """Built-ins plus installed entry points."""
        registry = cls()
        for path in cls.BUILTINS:
            module, _, attr = path.partition(":")
            registry.register(getattr(importlib.import_module(module), attr))
        points = entry_points(group="paygate.headends") if found is None else found
        for point in points:
            try:
                loaded = point.load()
            except Exception as exc:
                raise ConfigurationError(
                    f"head-end entry point {point.name!r} cannot be loaded: {exc}"
                ) from exc
            registry.register(loaded, label=point.name)
        return registry

    def register(self, candidate: object, *, label: str | None = None) -> None:
        """Add a head-end class; refuse a duplicate or a non-HeadEnd by name."""
        name = label or getattr(candidate, "name", repr(candidate))
        if not (isinstance(candidate, type) and issubclass(candidate, HeadEnd)):
            raise ConfigurationError(f"head-end {name!r} is not a HeadEnd subclass")
        if not isinstance(getattr(candidate, "name", None), str):
            raise ConfigurationError(f"head-end {name!r} has no name")
        if candidate.name in self._classes:
            raise ConfigurationError(f"head-end {candidate.name!r} is registered twice")
        self._classes[candidate.name] = candidate

    def get(self, name: str) -> type[HeadEnd]:
        """The class registered as ``name``."""
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigurationError(f"no head-end named {name!r}") from None

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._classes))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def config_value(config: Mapping[str, Any], key: str) -> Any:
    """A required configuration value, refused by name when missing."""
    if key not in config:
        raise ConfigurationError(f"head-end configuration needs {key!r}")
    return config[key]
