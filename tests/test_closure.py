"""Account closure (销户), on SQLite and PostgreSQL: final bill, credit applied and refunded,
refused while anything is owed, supply closed once; a payment after closure is held in
suspense with a finding and never allocated."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from paygate.errors import IdempotencyConflictError, InvalidInputError, InvalidStateError
from paygate.gateway import Gateway
from paygate.models import NewBill, PaymentIntent, SupplyState
from paygate.money import Money
from paygate.refunds.model import RefundOrderState
from paygate.refunds.route import Payee
from tests.refund_fakes import ScriptedRoute

ACCT = "3100000001"
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def pay(gateway: Gateway, txn: str, amount: str, channel: str = "kiosk") -> Any:
    return gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id=txn,
            account_no=ACCT,
            amount=yuan(amount),
            paid_at=gateway.clock.now(),
        )
    )


def final_bill(amount: str = "40.00", bill_no: str = "B-final") -> NewBill:
    return NewBill(
        account_no=ACCT, bill_no=bill_no, amount=yuan(amount), period="2026-11",
        due_date=date(2026, 12, 20),
    )  # fmt: skip


def count(gateway: Gateway, sql: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(sql), write=False))


def events(gateway: Gateway, kind: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all("SELECT payload FROM outbox WHERE event_type = :t", {"t": kind}),
        write=False,
    )
    return [json.loads(r[0])["data"] for r in rows]


@pytest.fixture
def account(gateway: Gateway) -> Gateway:
    gateway.use_refund_routes({"transfer": ScriptedRoute("transfer", None)})
    gateway.open_account(ACCT)
    gateway.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("100.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    return gateway


def test_an_account_owing_nothing_closes_without_a_refund(account: Gateway) -> None:
    pay(account, "K-1", "100.00")
    closed = account.close_account(ACCT, closure_id="CL-1", reason="moved away")
    assert closed.supply_state is SupplyState.CLOSED and closed.refunds == ()
    status = account.account_status(ACCT)
    assert status.supply_state is SupplyState.CLOSED and status.balance.minor == 0
    [data] = events(account, "account.closed")
    assert data["closure_id"] == "CL-1" and data["refund_id"] is None
    assert data["refund_ids"] == [] and data["refund_amount"] == 0
    again = account.close_account(ACCT, closure_id="CL-1", reason="moved away")
    assert again.replayed and again.closed_at == closed.closed_at
    with pytest.raises(IdempotencyConflictError) as caught:
        account.close_account(ACCT, closure_id="CL-1", reason="other")
    assert caught.value.field == "reason"
    with pytest.raises(InvalidStateError):
        account.close_account(ACCT, closure_id="CL-2", reason="twice")
    assert account.verify().ok


def test_the_final_bill_takes_the_credit_and_the_rest_is_refunded(account: Gateway) -> None:
    pay(account, "K-1", "250.00")  # 150.00 credit
    closed = account.close_account(
        ACCT,
        closure_id="CL-1",
        final_bill=final_bill("40.00"),
        refund_route="transfer",
        payee=PAYEE,
        reason="moved away",
    )
    assert closed.credit_applied == yuan("40.00")
    [refund] = closed.refunds
    assert refund.amount == yuan("110.00") and closed.refund_amount == yuan("110.00")
    assert refund.refund_id == "close-CL-1"
    assert refund.state is RefundOrderState.PENDING
    status = account.account_status(ACCT)
    assert status.balance.minor == 0 and status.credit.minor == 0
    assert account.ledger_balances()["refunds_payable:CNY"] == yuan("-110.00")
    assert account.dispatch_refunds().succeeded == 1
    assert account.ledger_balances()["bank:CNY"] == yuan("-110.00")
    assert account.verify().ok


def test_closure_is_refused_while_anything_is_owed_and_writes_nothing(account: Gateway) -> None:
    pay(account, "K-1", "120.00")  # 20.00 credit, less than the final bill
    before = count(account, "SELECT COUNT(*) FROM journal_entries")
    with pytest.raises(InvalidStateError) as caught:
        account.close_account(
            ACCT, closure_id="CL-1", final_bill=final_bill("40.00"), reason="moved away"
        )
    assert "B-final owes 20.00 CNY" in str(caught.value)
    assert count(account, "SELECT COUNT(*) FROM journal_entries") == before
    assert count(account, "SELECT COUNT(*) FROM bills WHERE bill_no = 'B-final'") == 0
    assert account.account_status(ACCT).supply_state is SupplyState.CONNECTED


def test_credit_left_needs_a_refund_route(account: Gateway) -> None:
    pay(account, "K-1", "150.00")
    with pytest.raises(InvalidInputError) as caught:
        account.close_account(ACCT, closure_id="CL-1", reason="moved away")
    assert caught.value.field == "refund_route"
    with pytest.raises(InvalidInputError) as caught:
        account.close_account(ACCT, closure_id="CL-1", refund_route="nope", reason="moved away")
    assert caught.value.field == "route"
    assert count(account, "SELECT COUNT(*) FROM account_closures") == 0


def test_open_supply_orders_are_cancelled_at_closure(account: Gateway) -> None:
    account.clock.advance(date(2027, 1, 5) - date(2026, 11, 25))
    account.disconnect(ACCT, "arrears")
    pay(account, "K-1", "200.00")  # clears the arrears: a reconnection order
    assert count(account, "SELECT COUNT(*) FROM supply_orders WHERE status = 'open'") == 1
    account.close_account(
        ACCT, closure_id="CL-1", refund_route="transfer", payee=PAYEE, reason="demolished"
    )
    assert count(account, "SELECT COUNT(*) FROM supply_orders WHERE status = 'open'") == 0
    assert account.account_status(ACCT).supply_state is SupplyState.CLOSED


def test_a_payment_after_closure_goes_to_suspense_with_a_finding(account: Gateway) -> None:
    pay(account, "K-1", "100.00")
    account.close_account(ACCT, closure_id="CL-1", reason="moved away")
    receipt = pay(account, "K-2", "30.00")
    assert receipt.allocations == () and receipt.credit.minor == 0
    balances = account.ledger_balances()
    assert balances["suspense:CNY"] == yuan("-30.00")
    assert balances[f"receivable:{ACCT}"].minor == 0
    row = account.store.run(
        lambda tx: tx.one(
            "SELECT f.reason, f.amount, p.status, p.unallocated FROM payment_findings f "
            "JOIN payments p ON p.id = f.payment_id WHERE p.channel_txn_id = 'K-2'"
        ),
        write=False,
    )
    assert row is not None and tuple(row) == ("account_closed", 3000, "suspense", 0)
    [held] = events(account, "payment.suspense")
    assert held["reason"] == "account_closed" and held["amount"] == 3000
    assert events(account, "payment.posted")[-1]["channel_txn_id"] == "K-1"
    replay = pay(account, "K-2", "30.00")
    assert replay.replayed and replay.payment_id == receipt.payment_id
    assert count(account, "SELECT COUNT(*) FROM payment_findings") == 1
    assert account.account_status(ACCT).credit.minor == 0
    assert account.verify().ok
