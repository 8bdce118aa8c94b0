"""The kiosk's daily close: its totals, the ledger's, and the outcome of comparing them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paygate.channels.kiosk.messages import KioskCloseRequest
from paygate.models import Instant
from paygate.money import Money


class MethodTotal(BaseModel):
    """How many payments of one method, and how much."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=0)
    amount: Money


class KioskTotals(BaseModel):
    """A terminal's takings for a day, by method, as the kiosk or the ledger counts them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cash: MethodTotal
    card: MethodTotal

    @model_validator(mode="after")
    def _one_currency(self) -> KioskTotals:
        if self.cash.amount.currency != self.card.amount.currency:
            raise ValueError("cash and card totals are in different currencies")
        return self

    @classmethod
    def zero(cls, currency: str) -> KioskTotals:
        """No takings."""
        nothing = MethodTotal(count=0, amount=Money.zero(currency))
        return cls(cash=nothing, card=nothing)

    @property
    def currency(self) -> str:
        """The currency of every amount here."""
        return self.cash.amount.currency

    @property
    def count(self) -> int:
        """Payments of every method."""
        return self.cash.count + self.card.count

    @property
    def amount(self) -> Money:
        """The amount of every method."""
        return self.cash.amount + self.card.amount


class KioskCloseRecord(BaseModel):
    """A close as stored: the figures the kiosk reported and the ledger's totals at the time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal_id: str
    business_date: date
    currency: str
    counted_cash: int
    reported_count: int
    reported_total: int
    ledger_count: int
    ledger_total: int
    closed_at: Instant

    def same_figures(self, other: KioskCloseRecord) -> bool:
        """True when ``other`` reports what this close reported (the ledger may have moved)."""
        return (
            self.currency,
            self.counted_cash,
            self.reported_count,
            self.reported_total,
        ) == (other.currency, other.counted_cash, other.reported_count, other.reported_total)


class KioskLedger(Protocol):
    """The ledger side of the daily close; the core implements it on its database."""

    def terminal_totals(
        self, terminal_id: str, business_date: date, currency: str
    ) -> tuple[KioskTotals, KioskTotals]:
        """Its payments that day (posted or in suspense, not reversed), and the suspense ones."""
        ...

    def record_close(self, record: KioskCloseRecord) -> tuple[KioskCloseRecord, bool]:
        """Store ``record`` unless the day is closed already; the stored close, and if new."""
        ...


class CloseOutcome(StrEnum):
    """How the counted cash compares with the ledger's cash."""

    BALANCED = "balanced"
    SHORTAGE = "shortage"
    OVERAGE = "overage"


class KioskCloseResult(BaseModel):
    """The answer to a daily close: counted cash, the kiosk's and the ledger's totals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal_id: str
    business_date: date
    counted_cash: Money
    reported: KioskTotals
    ledger: KioskTotals = Field(description="the ledger's: posted and suspense payments")
    ledger_suspense: KioskTotals = Field(description="of those, held in suspense (closed account)")
    cash_difference: Money = Field(
        description="counted cash − the ledger's cash: negative is a shortage"
    )
    outcome: CloseOutcome
    reported_matches_ledger: bool = Field(
        description="the kiosk's counts and amounts by method equal the ledger's"
    )
    closed_at: Instant
    replayed: bool = False


def close_result(
    terminal_id: str,
    request: KioskCloseRequest,
    ledger: KioskTotals,
    suspense: KioskTotals,
    *,
    closed_at: datetime,
    replayed: bool,
) -> KioskCloseResult:
    """Compare a close request with the ledger's totals (posted and suspense payments)."""
    currency = request.currency
    cash, card = request.by_method.cash, request.by_method.card
    reported = KioskTotals(
        cash=MethodTotal(count=cash.count, amount=Money(cash.amount, currency)),
        card=MethodTotal(count=card.count, amount=Money(card.amount, currency)),
    )
    counted = Money(request.counted_cash, currency)
    difference = counted - ledger.cash.amount
    outcome = CloseOutcome.BALANCED
    if difference.minor:
        outcome = CloseOutcome.SHORTAGE if difference.minor < 0 else CloseOutcome.OVERAGE
    return KioskCloseResult(
        terminal_id=terminal_id,
        business_date=request.business_date,
        counted_cash=counted,
        reported=reported,
        ledger=ledger,
        ledger_suspense=suspense,
        cash_difference=difference,
        outcome=outcome,
        reported_matches_ledger=reported == ledger,
        closed_at=closed_at,
        replayed=replayed,
    )
