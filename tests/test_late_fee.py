"""The late-fee rule (电费违约金, 供电营业规则 Art. 98) and allocation, as pure functions.

The property tests compare the module with an independent, day-by-day reading of the rule.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.billing import (
    LateFeePolicy,
    OldestFirst,
    OpenBill,
    accrue_late_fees,
    apply_parts,
    arrears,
    charge_late_fees,
    half_up,
)
from paygate.models import Category
from paygate.money import round_half_up
from tests.oracles import late_fee_oracle as oracle
from tests.strategies import days, open_bills, positive_minor

POLICY = LateFeePolicy()


def bill(due: date, amount: int, **kw: object) -> OpenBill:
    return OpenBill(
        bill_id=kw.pop("bill_id", 1),
        bill_no=kw.pop("bill_no", "B1"),  # type: ignore[arg-type]
        due_date=due,
        amount=amount,
        **kw,
    )  # type: ignore[arg-type]


def test_ten_days_from_the_day_after_the_due_date_through_the_payment_date() -> None:
    b = bill(date(2026, 11, 15), 100_000)
    accrual = accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 11, 25), POLICY)
    assert accrual.total == 100_000 * 10 // 1000  # 0.1% a day for 10 days = 100.00 yuan
    accrual = accrue_late_fees([b], Category.NON_RESIDENTIAL, date(2026, 11, 25), POLICY)
    assert accrual.total == 100_000 * 2 * 10 // 1000


def test_nothing_on_or_before_the_due_date() -> None:
    b = bill(date(2026, 11, 15), 100_000)
    assert accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 11, 15), POLICY).total == 0


def test_days_after_the_year_of_the_due_date_cost_more_for_non_residential() -> None:
    # due 2026-12-29: 2 days at 0.2% (30th, 31st), then 5 days at 0.3% (Jan 1-5).
    b = bill(date(2026, 12, 29), 1_000_000)
    accrual = accrue_late_fees([b], Category.NON_RESIDENTIAL, date(2027, 1, 5), POLICY)
    assert accrual.total == 1_000_000 * 2 * 2 // 1000 + 1_000_000 * 3 * 5 // 1000
    residential = accrue_late_fees([b], Category.RESIDENTIAL, date(2027, 1, 5), POLICY)
    assert residential.total == 1_000_000 * 7 // 1000


def test_a_positive_total_under_one_yuan_is_charged_as_one_yuan() -> None:
    b = bill(date(2026, 11, 15), 5_000)  # 50 yuan, 1 day at 0.1% = 0.05 yuan
    assert accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 11, 16), POLICY).total == 100


def test_rounding_is_half_up_on_the_sum_over_bills() -> None:
    # two bills each accruing 0.5 fen more than a whole fen: the sum decides, not each bill
    b1 = bill(date(2026, 1, 1), 150_500, bill_id=1, bill_no="B1")  # x 0.001 x 1 = 150.5
    b2 = bill(date(2026, 1, 1), 150_500, bill_id=2, bill_no="B2")
    accrual = accrue_late_fees([b1, b2], Category.RESIDENTIAL, date(2026, 1, 2), POLICY)
    assert accrual.exact == Fraction(301)
    assert accrual.total == 301
    assert sum(accrual.per_bill.values()) == 301


@given(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=1, max_value=10**18),
)
def test_integer_half_up_is_the_fraction_rounding(numerator: int, denominator: int) -> None:
    # The late fee's rounding runs in integers on a payment's path; it must be exactly the
    # half-up rounding of the exact fraction, halves included, for any sign and scale.
    assert half_up(numerator, denominator) == round_half_up(Fraction(numerator, denominator))


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(1, 10**6))
def test_integer_half_up_on_exact_halves(whole: int, denominator: int) -> None:
    doubled = 2 * denominator
    numerator = whole * doubled + (denominator if whole >= 0 else -denominator)  # x.5 exactly
    assert half_up(numerator, doubled) == round_half_up(Fraction(numerator, doubled))
    assert abs(half_up(numerator, doubled)) == abs(whole) + 1


def test_days_already_charged_are_never_charged_again() -> None:
    b = bill(date(2026, 11, 15), 100_000)
    first = accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 11, 20), POLICY)
    [after] = charge_late_fees([b], first)
    assert after.late_fee_through == date(2026, 11, 20)
    again = accrue_late_fees([after], Category.RESIDENTIAL, date(2026, 11, 20), POLICY)
    assert again.total == 0
    later = accrue_late_fees([after], Category.RESIDENTIAL, date(2026, 11, 25), POLICY)
    assert later.total == 100_000 * 5 // 1000


def test_late_fees_never_earn_late_fees() -> None:
    b = bill(date(2026, 11, 15), 100_000, principal_paid=100_000, late_fee_charged=5_000)
    assert accrue_late_fees([b], Category.NON_RESIDENTIAL, date(2026, 12, 25), POLICY).total == 0


def test_every_figure_is_configurable() -> None:
    policy = LateFeePolicy(residential_daily=Fraction(5, 10000), minimum_charge=0)
    b = bill(date(2026, 11, 15), 100_000)
    assert accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 11, 25), policy).total == 500
    off = LateFeePolicy(enabled=False)
    assert accrue_late_fees([b], Category.RESIDENTIAL, date(2026, 12, 25), off).total == 0


def test_oldest_bill_first_late_fee_before_principal() -> None:
    old = bill(date(2026, 10, 15), 10_000, bill_id=1, bill_no="B-09", late_fee_charged=300)
    new = bill(date(2026, 11, 15), 20_000, bill_id=2, bill_no="B-10")
    parts = OldestFirst().allocate(15_000, [new, old])
    assert [(p.bill_id, p.late_fee, p.principal) for p in parts] == [
        (1, 300, 10_000),
        (2, 0, 4_700),
    ]
    principal_first = OldestFirst(late_fee_first=False).allocate(10_000, [old])
    assert [(p.late_fee, p.principal) for p in principal_first] == [(0, 10_000)]


def test_same_due_date_orders_by_bill_number() -> None:
    a = bill(date(2026, 11, 15), 1_000, bill_id=1, bill_no="B-2")
    b = bill(date(2026, 11, 15), 1_000, bill_id=2, bill_no="B-1")
    assert OldestFirst().allocate(1_000, [a, b])[0].bill_id == 2


@pytest.mark.parametrize("category", list(Category))
@given(bills=open_bills(), through=days)
def test_accrual_matches_the_rule_read_day_by_day(
    category: Category, bills: list[OpenBill], through: date
) -> None:
    accrual = accrue_late_fees(bills, category, through, POLICY)
    assert accrual.total == oracle(bills, category, through)
    assert sum(accrual.per_bill.values()) == accrual.total
    assert all(v > 0 for v in accrual.per_bill.values())


@given(bills=open_bills(), amount=positive_minor, late_fee_first=st.booleans())
def test_allocation_never_exceeds_what_is_paid_or_owed(
    bills: list[OpenBill], amount: int, late_fee_first: bool
) -> None:
    parts = OldestFirst(late_fee_first).allocate(amount, bills)
    assert sum(p.late_fee + p.principal for p in parts) <= amount
    after = apply_parts(bills, parts)
    for b in after:
        assert 0 <= b.principal_paid <= b.amount
        assert 0 <= b.late_fee_paid <= b.late_fee_charged
    owed = sum(b.principal_due + b.late_fee_due for b in bills)
    assert sum(p.late_fee + p.principal for p in parts) == min(amount, owed)


@given(bills=open_bills(), as_of=days)
def test_arrears_are_never_negative_and_include_the_accrual(
    bills: list[OpenBill], as_of: date
) -> None:
    total, accrued = arrears(bills, Category.NON_RESIDENTIAL, as_of, POLICY)
    assert total >= accrued >= 0
    overdue = sum(b.principal_due for b in bills if b.due_date < as_of)
    assert total == overdue + sum(b.late_fee_due for b in bills) + accrued
