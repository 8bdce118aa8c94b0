"""paygate: every payment channel into one double-entry ledger, reconciled, with reconnection.

Billing systems start here::

    from datetime import date
    from paygate import Gateway, Money, PaymentIntent

    with Gateway.open("sqlite:///paygate.db") as gateway:
        gateway.open_account("3100000001", category="residential")
        gateway.issue_bill("3100000001", bill_no="B-2026-10-1", amount=Money.parse("120.50", "CNY"),
                           period="2026-10", due_date=date(2026, 11, 15))
        status = gateway.account_status("3100000001")

See docs/ for each kind of user.
"""

from paygate.billing import AllocationPolicy, LateFeePolicy, OldestFirst
from paygate.clock import Clock, FixedClock, SystemClock
from paygate.config import Settings
from paygate.errors import PaygateError
from paygate.gateway import Gateway
from paygate.ledger import AccountKind
from paygate.models import (
    AccountStatus,
    Allocation,
    BillIssued,
    BillStatus,
    BulkIssue,
    BulkResult,
    Category,
    NewAccount,
    NewBill,
    PaymentIntent,
    PayOutcome,
    Receipt,
    Reversal,
    StatementLine,
    StatementLineKind,
    SupplyState,
)
from paygate.money import Money

__all__ = [
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

__version__ = "0.1.0"
