"""Invariants on a hand-made ledger: a prepaid account's supply is due back only once it owes
nothing at all, a postpaid one's once nothing is overdue; a protected account may be cut only
by the order of an approved negotiation."""

from __future__ import annotations

from datetime import UTC, date, datetime

from paygate.console.negotiations import Negotiations
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.simulation.invariants import cleared_arrears_restored, no_protected_cut

PREPAID_PAID, PREPAID_OWING, POSTPAID_OWING = "3100000001", "3100000002", "3100000003"


def test_an_account_whose_supply_is_due_back_must_be_connected(gateway: Gateway) -> None:
    for number in (PREPAID_PAID, PREPAID_OWING, POSTPAID_OWING):
        gateway.open_account(number, prepaid=number != POSTPAID_OWING, name=f"Customer {number}")
        gateway.issue_bill(
            number,
            bill_no=f"B-{number}",
            amount=Money(10_000, "CNY"),
            period="2026-11",
            due_date=date(2026, 12, 15),
        )
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0001:cash-000001",
            account_no=PREPAID_PAID,
            amount=Money(10_000, "CNY"),
            paid_at=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        )
    )
    today = date(2026, 11, 25)
    assert cleared_arrears_restored(gateway, today) == []
    # Every account cut off behind the rules: only the prepaid one that owes nothing at all
    # is owed its supply; the others' bills are not due yet, which keeps the prepaid one off
    # and makes the postpaid one due back too.
    gateway.store.run(lambda tx: tx.execute("UPDATE accounts SET supply_state = 'disconnected'"))
    assert cleared_arrears_restored(gateway, today) == [
        f"account {PREPAID_PAID} cleared its arrears and is still disconnected",
        f"account {POSTPAID_OWING} cleared its arrears and is still disconnected",
    ]


def test_a_protected_account_is_cut_only_by_a_negotiated_order(gateway: Gateway) -> None:
    negotiated, unilateral = "3100000011", "3100000012"
    for number in (negotiated, unilateral):
        gateway.open_account(number, protected=True, name=f"Hospital {number}")
        gateway.issue_bill(
            number,
            bill_no=f"B-{number}",
            amount=Money(500_000, "CNY"),
            period="2026-09",
            due_date=date(2026, 10, 15),
        )
    negotiations = Negotiations(gateway)
    agreed = negotiations.record(
        negotiated,
        counterpart="the facilities manager",
        agreed_on=date(2026, 11, 25),
        terms="cut at the meter; the generator carries the wards",
        recorded_by="supervisor",
    )
    negotiations.approve(agreed, approved_by="supervisor")
    # Both cut at the meter: the negotiated one by its order, the other behind the rules.
    gateway.store.run(lambda tx: tx.execute("UPDATE accounts SET supply_state = 'disconnected'"))
    assert no_protected_cut(gateway) == [
        f"protected account {unilateral} is disconnected without a negotiated order"
    ]
