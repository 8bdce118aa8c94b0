"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import strategies as st

from paygate.billing import OpenBill
from paygate.money import Money

currencies = st.sampled_from(["CNY", "USD", "JPY", "KWD", "EUR"])
minor_amounts = st.integers(min_value=-(10**15), max_value=10**15)
positive_minor = st.integers(min_value=1, max_value=10**9)
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def money(draw: st.DrawFn, currency: str | None = None) -> Money:
    """Any amount in a known currency."""
    return Money(draw(minor_amounts), currency or draw(currencies))


@st.composite
def aware_datetimes(draw: st.DrawFn) -> datetime:
    """An aware instant between 2024 and 2028."""
    naive = draw(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31)))
    return naive.replace(tzinfo=UTC)


@st.composite
def open_bills(draw: st.DrawFn, max_size: int = 6) -> list[OpenBill]:
    """Bills in any state of payment, some with late fee already charged through some day."""
    n = draw(st.integers(min_value=0, max_value=max_size))
    bills = []
    for i in range(n):
        due = draw(days)
        amount = draw(st.integers(min_value=1, max_value=10**8))
        paid = draw(st.integers(min_value=0, max_value=amount))
        charged = draw(st.integers(min_value=0, max_value=10**6))
        fee_paid = draw(st.integers(min_value=0, max_value=charged))
        through = draw(
            st.one_of(st.none(), st.integers(0, 400).map(lambda d, due=due: due + timedelta(d)))
        )
        bills.append(
            OpenBill(
                bill_id=i + 1,
                bill_no=f"B{i:03d}",
                due_date=due,
                amount=amount,
                principal_paid=paid,
                late_fee_charged=charged,
                late_fee_paid=fee_paid,
                late_fee_through=through,
            )
        )
    return bills
