"""What reconciliation needs of the core: a narrow view, which a Gateway satisfies.

Reconciliation reads and writes its own tables through the store, dates runs by the clock and
the settings' zone, and posts money only through :class:`~paygate.payments.Payments`, the one
posting path (late payments, suspense, bank legs, reversals).
"""

from __future__ import annotations

from typing import Protocol

from paygate.clock import Clock
from paygate.config import Settings
from paygate.payments import Payments
from paygate.store.engine import Store

__all__ = ["Books"]


class Books(Protocol):
    """The store, settings, clock and payments of the core (a Gateway is one)."""

    @property
    def store(self) -> Store: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def payments(self) -> Payments: ...
