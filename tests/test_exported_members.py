"""The public API is what ``paygate.__all__`` says, and every name in it exists."""

from __future__ import annotations

import importlib
import re
import warnings

import pytest

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


# Retired public names (docs/architecture.md, Glossary) and what they are aliases of now: each
# still resolves, to the very object, with a DeprecationWarning naming the new spelling.
RETIRED_ALIASES = {
    ("paygate.channels.prepaid_card", "PrepaidCardAdapter"): (
        "paygate.channels.voucher",
        "VoucherAdapter",
    ),
    ("paygate.channels.prepaid_card", "PrepaidCardConfig"): (
        "paygate.channels.voucher",
        "VoucherConfig",
    ),
    ("paygate.channels.prepaid_card", "PrepaidCardContext"): (
        "paygate.channels.voucher",
        "VoucherContext",
    ),
    ("paygate.channels.prepaid_card", "PREPAID_CARD_STATEMENT_COLUMNS"): (
        "paygate.channels.voucher",
        "VOUCHER_STATEMENT_COLUMNS",
    ),
    ("paygate.channels.prepaid_card", "read_prepaid_card_statement"): (
        "paygate.channels.voucher",
        "read_voucher_statement",
    ),
    ("paygate.channels.prepaid_card", "prepaid_card_settlement"): (
        "paygate.channels.voucher",
        "voucher_settlement",
    ),
    ("paygate.channels.prepaid_card", "RedeemRequest"): (
        "paygate.channels.voucher",
        "RedeemRequest",
    ),
    ("paygate.channels.prepaid_card", "VoucherRedeemer"): (
        "paygate.channels.voucher",
        "VoucherRedeemer",
    ),
    ("paygate.channels.prepaid_card", "parse_redeem_request"): (
        "paygate.channels.voucher",
        "parse_redeem_request",
    ),
    ("paygate.api.schemas", "ReconnectionProgress"): ("paygate.api.schemas", "SupplyOrderProgress"),
}


@pytest.mark.parametrize(("old", "new"), sorted(RETIRED_ALIASES.items()))
def test_retired_public_names_are_aliases_of_the_new_ones(
    old: tuple[str, str], new: tuple[str, str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old module warns on import
        old_module = importlib.import_module(old[0])
    target = getattr(importlib.import_module(new[0]), new[1])
    with pytest.warns(DeprecationWarning, match=re.escape(f"use {new[0]}.{new[1]}")):
        assert getattr(old_module, old[1]) is target
    assert target.__doc__ or not callable(target), new
