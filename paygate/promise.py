"""The service promise and the dunning policy: the rules reconnection and disconnection orders
keep, as settings (:class:`~paygate.config.Settings` holds one of each).

The promise (服务承诺时限) is split backwards into step deadlines: supply confirmed by
``created + promise``; acknowledged by the head-end ``confirm_budget`` earlier; dispatched
``ack_budget`` before that. A step that misses its deadline while the promise still holds is a
*minor* breach; a missed promise is *major*; a missed legal limit (3 days by default) is
*critical*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from paygate.clock import require_aware

__all__ = [
    "DEFAULT_PROMISE",
    "LEGAL_LIMIT",
    "Deadlines",
    "DunningPolicy",
    "ServicePromise",
    "Severity",
    "Step",
    "severity",
]


DEFAULT_PROMISE = timedelta(hours=24)
LEGAL_LIMIT = timedelta(days=3)


class Step(StrEnum):
    """The steps of an order, each with its own deadline."""

    DISPATCH = "dispatch"
    ACKNOWLEDGE = "acknowledge"
    CONFIRM = "confirm"
    LEGAL = "legal"


class Severity(StrEnum):
    """How bad a missed deadline is."""

    MINOR = "minor"  # a step late, the promise still held
    MAJOR = "major"  # the promise missed
    CRITICAL = "critical"  # the legal limit missed


class ServicePromise(BaseModel):
    """The reconnection promise and its step budgets, counted backwards from it.

    Only ``promise`` need be given: a budget left out is the same share of the promise as in
    the default 24 h promise (confirm 20/24, acknowledge 3.75/24), and the legal limit left out
    is 3 days or the promise if longer. ``ServicePromise(promise=timedelta(hours=48))``,
    ``Settings(service_promise=timedelta(hours=48))`` and ``PAYGATE_RECONNECTION_PROMISE=48``
    are the same promise.
    """

    model_config = ConfigDict(frozen=True)

    promise: timedelta = DEFAULT_PROMISE
    legal_limit: timedelta = LEGAL_LIMIT
    confirm_budget: timedelta = DEFAULT_PROMISE * 5 / 6
    ack_budget: timedelta = DEFAULT_PROMISE * 5 / 32

    @model_validator(mode="before")
    @classmethod
    def _scaled(cls, data: Any) -> Any:
        if isinstance(data, timedelta):
            data = {"promise": data}
        if not isinstance(data, dict) or "promise" not in data:
            return data
        promise = data["promise"]
        if not isinstance(promise, timedelta):
            return data  # the field's own validation names the problem
        scaled = dict(data)
        scaled.setdefault("confirm_budget", promise * 5 / 6)
        scaled.setdefault("ack_budget", promise * 5 / 32)
        scaled.setdefault("legal_limit", max(LEGAL_LIMIT, promise))
        return scaled

    @model_validator(mode="after")
    def _fits(self) -> ServicePromise:
        if self.promise <= timedelta(0) or self.legal_limit < self.promise:
            raise ValueError("the legal limit must be at least the promise, both positive")
        if self.confirm_budget < timedelta(0) or self.ack_budget < timedelta(0):
            raise ValueError("step budgets cannot be negative")
        if self.confirm_budget + self.ack_budget >= self.promise:
            raise ValueError("the step budgets leave no time to dispatch within the promise")
        return self

    def deadlines(self, created_at: datetime) -> Deadlines:
        """Each step's deadline for an order created at ``created_at`` (aware)."""
        confirm = require_aware(created_at, "created_at") + self.promise
        acknowledge = confirm - self.confirm_budget
        return Deadlines(
            dispatch=acknowledge - self.ack_budget,
            acknowledge=acknowledge,
            confirm=confirm,
            legal=created_at + self.legal_limit,
        )


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The deadline of each step of one order."""

    dispatch: datetime
    acknowledge: datetime
    confirm: datetime
    legal: datetime

    def of(self, step: Step) -> datetime:
        """The deadline of ``step``."""
        return {
            Step.DISPATCH: self.dispatch,
            Step.ACKNOWLEDGE: self.acknowledge,
            Step.CONFIRM: self.confirm,
            Step.LEGAL: self.legal,
        }[step]


class DunningPolicy(BaseModel):
    """Who may be disconnected, and after which notices; per category where it differs."""

    model_config = ConfigDict(frozen=True)

    overdue_days: int = 30
    notice_days: int = 7
    final_reminder: bool = True
    final_reminder_days: int = 1
    overdue_days_by_category: dict[str, int] = {}

    def overdue_threshold(self, category: str) -> int:
        """Days past due before an account of ``category`` may be disconnected."""
        return self.overdue_days_by_category.get(category, self.overdue_days)


def severity(step: Step, deadlines: Deadlines, at: datetime) -> Severity:
    """How bad it is that ``step`` was not done by its deadline, judged at ``at``."""
    if step is Step.LEGAL or at > deadlines.legal:
        return Severity.CRITICAL
    if step is Step.CONFIRM or at > deadlines.confirm:
        return Severity.MAJOR
    return Severity.MINOR
