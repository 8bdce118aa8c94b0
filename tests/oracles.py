"""Independent readings of paygate's rules, written the slow, obvious way, for comparison."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from paygate.billing import OpenBill
from paygate.models import Category


def late_fee_oracle(bills: list[OpenBill], category: Category, through: date) -> int:
    """The rule read literally: walk every day of every bill and add that day's fee."""
    total = Decimal(0)
    for bill in bills:
        principal = bill.amount - bill.principal_paid
        day = bill.due_date + timedelta(days=1)
        while day <= through and principal > 0:
            if bill.late_fee_through is None or day > bill.late_fee_through:
                if category is Category.RESIDENTIAL:
                    rate = Decimal("0.001")
                elif day.year == bill.due_date.year:
                    rate = Decimal("0.002")
                else:
                    rate = Decimal("0.003")
                total += principal * rate
            day += timedelta(days=1)
    if total == 0:
        return 0
    rounded = int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(rounded, 100)
