"""The public API is what ``paygate.__all__`` says, and every name in it exists."""

from __future__ import annotations

import paygate


def test_public_api() -> None:
    assert sorted(paygate.__all__) == [
        "AccountKind",
        "AccountStatus",
        "Allocation",
        "AllocationPolicy",
        "BillIssued",
        "BillStatus",
        "BulkIssue",
        "BulkResult",
        "Category",
        "Clock",
        "FixedClock",
        "Gateway",
        "LateFeePolicy",
        "Money",
        "NewAccount",
        "NewBill",
        "OldestFirst",
        "PayOutcome",
        "PaygateError",
        "PaymentIntent",
        "Receipt",
        "Reversal",
        "Settings",
        "StatementLine",
        "StatementLineKind",
        "SupplyState",
        "SystemClock",
    ]
    for name in paygate.__all__:
        assert getattr(paygate, name).__doc__, name
