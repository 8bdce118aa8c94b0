"""An account's open bills are read by the partial index on bills still owed, on both
databases: a read never walks the account's paid history, and a reversal still finds the
bills its payment paid (by their ids, beside the open ones)."""

from __future__ import annotations

from datetime import date

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.records import OPEN_BILL

ACCOUNT = "3100000009"


def history(gateway: Gateway, clock: FixedClock, months: int) -> list[int]:
    """``months`` bills issued and paid in full, then one left open; the payments' ids."""
    gateway.open_account(ACCOUNT)
    paid = []
    for month in range(1, months + 1):
        gateway.issue_bill(
            ACCOUNT, bill_no=f"B{month:02d}", amount=Money(10_000, "CNY"),
            period=f"2025-{month:02d}", due_date=date(2025, month, 20),
        )  # fmt: skip
        receipt = gateway.pay(
            PaymentIntent(
                channel="pos", channel_txn_id=f"P{month:02d}", account_no=ACCOUNT,
                amount=gateway.account_status(ACCOUNT).arrears, paid_at=clock.now(),
            )
        )  # fmt: skip
        paid.append(receipt.payment_id)
    gateway.issue_bill(
        ACCOUNT, bill_no="OPEN", amount=Money(7_000, "CNY"), period="2026-11",
        due_date=date(2026, 12, 20),
    )  # fmt: skip
    return paid


def plan(gateway: Gateway, sql: str, params: dict[str, object]) -> str:
    def explain(tx):  # type: ignore[no-untyped-def]
        if gateway.store.dialect == "postgresql":
            tx.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask for the index
            return "\n".join(str(r[0]) for r in tx.all(f"EXPLAIN {sql}", params))
        return "\n".join(str(r[-1]) for r in tx.all(f"EXPLAIN QUERY PLAN {sql}", params))

    return str(gateway.store.run(explain, write=False))


def test_the_open_bills_read_uses_the_partial_index(gateway: Gateway, clock: FixedClock) -> None:
    history(gateway, clock, months=6)
    account_id = gateway.store.run(
        lambda tx: tx.scalar("SELECT id FROM accounts WHERE account_no = :n", {"n": ACCOUNT}),
        write=False,
    )
    sql = f"SELECT b.bill_no FROM bills b WHERE b.account_id = :a AND {OPEN_BILL}"
    assert "ix_bills_open" in plan(gateway, sql, {"a": account_id})
    # The index holds the open bill alone: six paid months are not in it.
    if gateway.store.dialect == "postgresql":
        held = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT pg_get_indexdef('ix_bills_open'::regclass)",
            ),
            write=False,
        )
        assert "WHERE ((principal_paid < amount) OR (late_fee_paid < late_fee_charged))" in held
    else:
        held = gateway.store.run(
            lambda tx: tx.scalar("SELECT sql FROM sqlite_master WHERE name = 'ix_bills_open'"),
            write=False,
        )
        assert "WHERE principal_paid < amount OR late_fee_paid < late_fee_charged" in held
    status = gateway.account_status(ACCOUNT)
    assert [b.bill_no for b in status.bills] == ["OPEN"]


def test_a_reversal_reopens_the_paid_bill_it_paid(gateway: Gateway, clock: FixedClock) -> None:
    paid = history(gateway, clock, months=3)
    gateway.reverse(paid[1], "bank recalled the payment")
    status = gateway.account_status(ACCOUNT)
    assert [b.bill_no for b in status.bills] == ["B02", "OPEN"]
    [reopened] = [b for b in status.bills if b.bill_no == "B02"]
    assert reopened.principal_due == Money(10_000, "CNY")
    assert status.outstanding == Money(17_000, "CNY")
