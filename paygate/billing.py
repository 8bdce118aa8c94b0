"""Bills, late fees (电费违约金) and payment allocation: pure rules, no database.

Late fee, default policy after 供电营业规则 (Rules for Electricity Supply Business) Art. 98:

* per overdue bill, on its unpaid principal only (a late fee never earns a late fee);
* residential customers 0.1% per day; other customers 0.2% per day for the days in the calendar
  year of the bill's due date, 0.3% per day for days after that year has ended (跨年度);
* days count from the day after the due date through the payment date (due 2026-11-15, paid
  2026-11-25: ten days);
* summed over the bills of one charge, rounded half-up to the minor unit; a positive total
  under the minimum (1.00 yuan) is charged as the minimum;
* a bill-day is charged once: each bill remembers the last day charged (``late_fee_through``).

Every figure is a field of :class:`LateFeePolicy`. Allocation is pluggable
(:class:`AllocationPolicy`); the default pays the oldest bill first (due date, then bill
number), its late fee before its principal, and leaves what remains as credit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Protocol

from paygate.models import Category

__all__ = [
    "AllocationPart",
    "AllocationPolicy",
    "LateFeeAccrual",
    "LateFeePolicy",
    "OldestFirst",
    "OpenBill",
    "accrue_late_fees",
    "half_up",
    "late_fee_on",
]


@dataclass(frozen=True, slots=True)
class LateFeePolicy:
    """The late-fee rule's figures; rates are exact fractions per day."""

    residential_daily: Fraction = Fraction(1, 1000)
    other_daily_same_year: Fraction = Fraction(2, 1000)
    other_daily_later_years: Fraction = Fraction(3, 1000)
    minimum_charge: int = 100
    enabled: bool = True
    scale: int = field(init=False, repr=False, compare=False)
    """A common multiple of the rates' denominators: accruals are whole numbers over it."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "scale",
            math.lcm(
                self.residential_daily.denominator,
                self.other_daily_same_year.denominator,
                self.other_daily_later_years.denominator,
            ),
        )

    def daily_rate(self, category: Category, due_year: int, day: date) -> Fraction:
        """The rate that applies on ``day`` to a bill due in ``due_year``."""
        if category is Category.RESIDENTIAL:
            return self.residential_daily
        if day.year <= due_year:
            return self.other_daily_same_year
        return self.other_daily_later_years


@dataclass(frozen=True, slots=True)
class OpenBill:
    """A bill's state as allocation and late fees need it (amounts in minor units)."""

    bill_id: int
    bill_no: str
    due_date: date
    amount: int
    principal_paid: int = 0
    late_fee_charged: int = 0
    late_fee_paid: int = 0
    late_fee_through: date | None = None

    @property
    def principal_due(self) -> int:
        """Principal not yet paid."""
        return self.amount - self.principal_paid

    @property
    def late_fee_due(self) -> int:
        """Late fee charged and not yet paid."""
        return self.late_fee_charged - self.late_fee_paid

    @property
    def is_open(self) -> bool:
        """Anything still owed on this bill."""
        return self.principal_due > 0 or self.late_fee_due > 0

    def overdue_on(self, day: date) -> bool:
        """Whether the bill is past due on ``day``."""
        return self.due_date < day


@dataclass(frozen=True, slots=True)
class LateFeeAccrual:
    """Late fee accrued through ``through``: the total charged and each bill's share."""

    through: date
    total: int
    per_bill: dict[int, int]
    exact: Fraction


def _bill_accrual(
    bill: OpenBill, category: Category, through: date, policy: LateFeePolicy, scale: int
) -> int:
    """The bill's exact accrual through ``through``, in minor units times ``scale``."""
    principal = bill.principal_due
    if principal <= 0 or bill.due_date >= through:
        return 0
    start = bill.due_date + timedelta(days=1)
    if bill.late_fee_through is not None and bill.late_fee_through >= start:
        start = bill.late_fee_through + timedelta(days=1)
    if start > through:
        return 0
    due_year = bill.due_date.year
    year_end = date(due_year, 12, 31)
    same_days = max(0, (min(through, year_end) - start).days + 1)
    later_days = (through - start).days + 1 - same_days
    same_rate = policy.daily_rate(category, due_year, year_end)
    later_rate = policy.daily_rate(category, due_year, date(due_year + 1, 1, 1))
    # scale is a common multiple of the rates' denominators: the products are whole numbers
    per_day_same = same_rate.numerator * (scale // same_rate.denominator)
    per_day_later = later_rate.numerator * (scale // later_rate.denominator)
    return principal * (same_days * per_day_same + later_days * per_day_later)


def late_fee_on(
    principal: int, due_date: date, through: date, category: Category, policy: LateFeePolicy
) -> int:
    """The late fee the rule gives on ``principal`` unpaid from the day after ``due_date``
    through ``through``, rounded half-up to the minor unit, without the minimum charge: what a
    bill's reduction gives back for the days already charged (docs/late-fees.md)."""
    if not policy.enabled or principal <= 0:
        return 0
    virtual = OpenBill(bill_id=0, bill_no="", due_date=due_date, amount=principal)
    scaled = _bill_accrual(virtual, category, through, policy, policy.scale)
    return half_up(scaled, policy.scale)


def half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to a whole number, halves away from zero: the same
    as :func:`paygate.money.round_half_up` of the fraction, in integers alone (no
    ``Fraction`` and its gcd on a payment's path). ``denominator`` is positive."""
    whole, rest = divmod(abs(numerator), denominator)
    if rest * 2 >= denominator:
        whole += 1
    return -whole if numerator < 0 else whole


def accrue_late_fees(
    bills: Sequence[OpenBill], category: Category, through: date, policy: LateFeePolicy
) -> LateFeeAccrual:
    """The late fee to charge through ``through`` (inclusive) on ``bills``, split by bill.

    The rounded total (with the minimum) is shared back over the bills in proportion to their
    exact accruals, largest remainder first, so that the shares always add up to the total.
    Exact throughout: accruals are integers over a common denominator, never floats.
    """
    if not policy.enabled:
        return LateFeeAccrual(through, 0, {}, Fraction(0))
    scale = policy.scale
    scaled = {
        b.bill_id: a for b in bills if (a := _bill_accrual(b, category, through, policy, scale)) > 0
    }
    if not scaled:
        return LateFeeAccrual(through, 0, {}, Fraction(0))
    summed = sum(scaled.values())
    total = max(half_up(summed, scale), policy.minimum_charge)
    return LateFeeAccrual(through, total, _share(total, scaled), Fraction(summed, scale))


def _share(total: int, weights: dict[int, int]) -> dict[int, int]:
    weight_sum = sum(weights.values())
    shares = {}
    remainders = {}
    for k, w in weights.items():
        shares[k], remainders[k] = divmod(total * w, weight_sum)
    left = total - sum(shares.values())
    for k in sorted(remainders, key=lambda k: (-remainders[k], k))[:left]:
        shares[k] += 1
    return {k: v for k, v in shares.items() if v}


def overdue_owed(bills: Sequence[OpenBill], day: date) -> int:
    """Overdue principal plus late fee charged and unpaid, on ``day`` (nothing accrued)."""
    return sum(b.principal_due for b in bills if b.overdue_on(day)) + sum(
        b.late_fee_due for b in bills
    )


def charge_late_fees(bills: Sequence[OpenBill], accrual: LateFeeAccrual) -> list[OpenBill]:
    """Bills after charging ``accrual``: fee added, and every overdue bill marked charged through
    the accrual date so that those days are never charged again."""
    out = []
    for bill in bills:
        charged = accrual.per_bill.get(bill.bill_id, 0)
        through = bill.late_fee_through
        if bill.principal_due > 0 and bill.due_date < accrual.through:
            through = accrual.through if through is None else max(through, accrual.through)
        if charged or through != bill.late_fee_through:
            bill = replace(
                bill, late_fee_charged=bill.late_fee_charged + charged, late_fee_through=through
            )
        out.append(bill)
    return out


@dataclass(frozen=True, slots=True)
class AllocationPart:
    """The part of a payment given to one bill."""

    bill_id: int
    late_fee: int
    principal: int


class AllocationPolicy(Protocol):
    """Decides how an amount is spread over a customer's open bills."""

    def allocate(self, amount: int, bills: Sequence[OpenBill]) -> list[AllocationPart]:
        """Parts that together take at most ``amount``; what is left becomes credit."""
        ...


@dataclass(frozen=True, slots=True)
class OldestFirst:
    """Oldest bill first (due date, then bill number); within a bill, late fee first."""

    late_fee_first: bool = True

    def allocate(self, amount: int, bills: Sequence[OpenBill]) -> list[AllocationPart]:
        """Spread ``amount`` over ``bills`` oldest first."""
        parts = []
        left = amount
        for bill in sorted(bills, key=lambda b: (b.due_date, b.bill_no)):
            if left <= 0:
                break
            if self.late_fee_first:
                fee = min(left, bill.late_fee_due)
                principal = min(left - fee, bill.principal_due)
            else:
                principal = min(left, bill.principal_due)
                fee = min(left - principal, bill.late_fee_due)
            if fee or principal:
                parts.append(AllocationPart(bill.bill_id, fee, principal))
                left -= fee + principal
        return parts


def apply_parts(bills: Sequence[OpenBill], parts: Sequence[AllocationPart]) -> list[OpenBill]:
    """Bills after ``parts`` were paid (or, with negative parts, re-opened)."""
    by_bill = {p.bill_id: p for p in parts}
    out = []
    for bill in bills:
        part = by_bill.get(bill.bill_id)
        if part is not None:
            bill = replace(
                bill,
                principal_paid=bill.principal_paid + part.principal,
                late_fee_paid=bill.late_fee_paid + part.late_fee,
            )
        out.append(bill)
    return out


def arrears(
    bills: Sequence[OpenBill], category: Category, as_of: date, policy: LateFeePolicy
) -> tuple[int, int]:
    """``(arrears, uncharged late fee)`` on ``as_of``: overdue principal, unpaid late fees,
    and the late fee that would be charged for the days not yet charged."""
    accrued = accrue_late_fees(bills, category, as_of, policy).total
    return overdue_owed(bills, as_of) + accrued, accrued
