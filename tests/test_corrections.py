"""Bill corrections (作废 cancellation, 退补 adjustment), on SQLite and PostgreSQL: the journal,
credit and its re-allocation, late fees, supply, events, idempotency and refusals."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from paygate.clock import FixedClock
from paygate.corrections import BillCorrection
from paygate.errors import (
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
    UnknownAccountError,
    UnknownBillError,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.store.engine import Tx

CNY = "CNY"
ACCT = "3100000001"


def yuan(text: str) -> Money:
    return Money.parse(text, CNY)


def pay(gateway: Gateway, txn: str, amount: str, account: str = ACCT) -> Any:
    return gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id=txn,
            account_no=account,
            amount=yuan(amount),
            paid_at=gateway.clock.now(),
        )
    )


def bill(gateway: Gateway, bill_no: str, amount: str, due: date, account: str = ACCT) -> None:
    gateway.issue_bill(
        account, bill_no=bill_no, amount=yuan(amount), period="2026-10", due_date=due
    )


def cancel(account: str = ACCT, bill_no: str = "B-10", reason: str = "r", cid: str = "C9") -> Any:
    return lambda g: g.cancel_bill(account, bill_no, reason=reason, correction_id=cid)


def adjust(
    amount: Money, account: str = ACCT, bill_no: str = "B-10", reason: str = "r", cid: str = "C9"
) -> Any:
    return lambda g: g.adjust_bill(account, bill_no, amount, reason=reason, correction_id=cid)


def bill_row(gateway: Gateway, bill_no: str) -> tuple[int, ...]:
    row = gateway.store.run(
        lambda tx: tx.one(
            "SELECT amount, principal_paid, late_fee_charged, late_fee_paid FROM bills "
            "WHERE bill_no = :n",
            {"n": bill_no},
        ),
        write=False,
    )
    assert row is not None
    return tuple(int(v) for v in row)


def credit(gateway: Gateway, account: str = ACCT) -> int:
    return gateway.account_status(account).credit.minor


def events(gateway: Gateway, event_type: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", {"t": event_type}
        ),
        write=False,
    )
    return [json.loads(r[0]) for r in rows]


def snapshot(gateway: Gateway) -> tuple[object, ...]:
    """Everything a refused correction must leave untouched."""

    def read(tx: Tx) -> tuple[object, ...]:
        counts = tuple(
            tx.scalar(f"SELECT COUNT(*) FROM {t}")
            for t in (
                "journal_entries",
                "postings",
                "allocations",
                "outbox",
                "supply_orders",
                "bill_corrections",
            )
        )
        bills = tuple(
            tuple(r)
            for r in tx.all(
                "SELECT bill_no, amount, principal_paid, late_fee_charged, late_fee_paid "
                "FROM bills ORDER BY bill_no"
            )
        )
        credits = tuple(
            tuple(r) for r in tx.all("SELECT id, unallocated FROM payments ORDER BY id")
        )
        return counts, bills, credits

    return gateway.store.run(read, write=False), gateway.ledger_balances()


def assert_sub_ledger_agrees(gateway: Gateway, account: str = ACCT) -> None:
    """Receivable = owed on bills - credit; each posted payment = its allocations + its credit."""

    balance = gateway.ledger_balances()[f"receivable:{account}"].minor

    def read(tx: Tx) -> None:
        owed = int(
            tx.scalar(
                "SELECT COALESCE(SUM(b.amount - b.principal_paid + b.late_fee_charged "
                "- b.late_fee_paid), 0) FROM bills b JOIN accounts a ON a.id = b.account_id "
                "WHERE a.account_no = :n",
                {"n": account},
            )
        )
        for pid, amount, unallocated in tx.all(
            "SELECT id, amount, unallocated FROM payments WHERE status = 'posted'"
        ):
            net = tx.scalar(
                "SELECT COALESCE(SUM(late_fee + principal), 0) FROM allocations "
                "WHERE payment_id = :p",
                {"p": pid},
            )
            assert int(net) + int(unallocated) == int(amount)
            assert int(unallocated) >= 0
        left = int(
            tx.scalar(
                "SELECT COALESCE(SUM(p.unallocated), 0) FROM payments p JOIN accounts a "
                "ON a.id = p.account_id WHERE a.account_no = :n AND p.status = 'posted'",
                {"n": account},
            )
        )
        assert balance == owed - left

    gateway.store.run(read, write=False)
    assert gateway.verify().ok


@pytest.fixture
def billed(gateway: Gateway) -> Gateway:
    """A residential account with a 1000.00 bill due 2026-11-15 and a 300.00 bill due
    2026-12-15; the clock stands at 2026-11-25 10:00 in Shanghai."""
    gateway.open_account(ACCT, category="residential")
    bill(gateway, "B-10", "1000.00", date(2026, 11, 15))
    bill(gateway, "B-11", "300.00", date(2026, 12, 15))
    return gateway


class TestCancellation:
    def test_an_unpaid_bill_is_cancelled_by_reversing_its_charge(self, billed: Gateway) -> None:
        result = billed.cancel_bill(ACCT, "B-11", reason="issued twice", correction_id="C1")
        assert result.kind == "cancel" and not result.replayed
        assert result.amount_before == yuan("300.00") and result.amount_after == yuan("0.00")
        assert result.change == yuan("-300.00")
        assert result.balance_after == yuan("1000.00")
        balances = billed.ledger_balances()
        assert balances[f"receivable:{ACCT}"] == yuan("1000.00")
        assert balances["revenue:energy:CNY"] == yuan("-1000.00")
        assert bill_row(billed, "B-11") == (0, 0, 0, 0)
        status = billed.account_status(ACCT)
        assert [b.bill_no for b in status.bills] == ["B-10"]
        kind, reference = billed.store.run(
            lambda tx: tx.one(
                "SELECT kind, reference FROM journal_entries WHERE id = :e",
                {"e": result.entry_id},
            ),
            write=False,
        )
        assert (kind, reference) == ("correction", "correction:C1")
        assert_sub_ledger_agrees(billed)

    def test_money_paid_on_a_cancelled_bill_becomes_credit_spent_oldest_first(
        self, billed: Gateway
    ) -> None:
        bill(billed, "B-09", "200.00", date(2026, 12, 1))
        pay(billed, "T1", "500.00")  # the 1000.00 bill (overdue) takes it all, fee first
        fee = bill_row(billed, "B-10")[2]
        assert fee > 0
        result = billed.cancel_bill(ACCT, "B-10", reason="misread meter", correction_id="C1")
        assert result.late_fee_reversed == Money(fee, CNY)
        assert result.credit_released == yuan("500.00")
        # re-spent oldest first: B-09 (due 12-01) then B-11 (due 12-15)
        assert result.credit_applied == yuan("500.00")
        assert bill_row(billed, "B-09") == (20000, 20000, 0, 0)
        assert bill_row(billed, "B-11") == (30000, 30000, 0, 0)
        assert credit(billed) == 0
        assert billed.ledger_balances()["revenue:late_fee:CNY"] == yuan("0.00")
        assert_sub_ledger_agrees(billed)

    def test_credit_beyond_the_open_bills_stays_on_the_account(self, billed: Gateway) -> None:
        pay(billed, "T1", "1310.00")  # both bills and the late fee of 10.00
        assert credit(billed) == 0
        result = billed.cancel_bill(ACCT, "B-10", reason="wrong account", correction_id="C1")
        assert result.credit_released == yuan("1010.00")
        assert result.credit_applied == yuan("0.00")
        assert credit(billed) == 101000
        assert result.balance_after == yuan("-1010.00")
        assert_sub_ledger_agrees(billed)
        # the credit pays the next bill, as any credit does
        issued = billed.issue_bill(
            ACCT, bill_no="B-12", amount=yuan("90.00"), period="2026-12", due_date=date(2027, 1, 15)
        )
        assert issued.credit_applied == yuan("90.00")
        assert_sub_ledger_agrees(billed)

    def test_a_cancelled_bill_earns_no_late_fee_and_cannot_be_corrected_again(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        billed.cancel_bill(ACCT, "B-10", reason="issued twice", correction_id="C1")
        clock.advance(timedelta(days=60))  # past both due dates
        receipt = pay(billed, "T1", "300.00")
        # only B-11 (due 12-15) is late: 300.00 * 0.1% * 40 days (12-16..01-24) = 12.00
        assert receipt.late_fee == yuan("12.00")
        assert bill_row(billed, "B-10") == (0, 0, 0, 0)
        with pytest.raises(InvalidStateError, match="cancelled"):
            billed.cancel_bill(ACCT, "B-10", reason="again", correction_id="C2")
        with pytest.raises(InvalidStateError, match="cancelled"):
            billed.adjust_bill(ACCT, "B-10", yuan("5.00"), reason="again", correction_id="C3")

    def test_the_bill_issued_again_after_a_correction_is_still_a_no_op(
        self, billed: Gateway
    ) -> None:
        billed.adjust_bill(ACCT, "B-10", yuan("-100.00"), reason="misread", correction_id="C1")
        again = billed.issue_bill(
            ACCT,
            bill_no="B-10",
            amount=yuan("1000.00"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
        assert not again.created
        assert bill_row(billed, "B-10")[0] == 90000


class TestAdjustment:
    def test_a_debit_raises_the_bill_and_the_receivable(self, billed: Gateway) -> None:
        result = billed.adjust_bill(
            ACCT, "B-11", yuan("45.50"), reason="meter re-read", correction_id="C1"
        )
        assert result.kind == "adjust" and result.amount_after == yuan("345.50")
        assert billed.ledger_balances()[f"receivable:{ACCT}"] == yuan("1345.50")
        assert billed.ledger_balances()["revenue:energy:CNY"] == yuan("-1345.50")
        assert_sub_ledger_agrees(billed)

    def test_a_debit_on_a_paid_bill_reopens_it_and_spends_the_credit(self, billed: Gateway) -> None:
        pay(billed, "T1", "1400.00")  # 1010.00 on B-10, 300.00 on B-11, 90.00 credit
        assert credit(billed) == 9000
        result = billed.adjust_bill(
            ACCT, "B-10", yuan("120.00"), reason="re-read", correction_id="C1"
        )
        assert result.credit_applied == yuan("90.00")
        assert bill_row(billed, "B-10") == (112000, 109000, 1000, 1000)
        assert billed.account_status(ACCT).arrears == yuan("30.00")
        assert_sub_ledger_agrees(billed)

    def test_a_credit_below_what_was_paid_turns_the_excess_into_credit(
        self, billed: Gateway
    ) -> None:
        pay(billed, "T1", "810.00")  # fee 10.00, principal 800.00 on B-10
        result = billed.adjust_bill(
            ACCT, "B-10", yuan("-400.00"), reason="misread", correction_id="C1"
        )
        # fee on the 400.00 taken off for the ten days charged: 4.00 back
        assert result.late_fee_reversed == yuan("4.00")
        # paid 800.00 of a 600.00 bill and 10.00 of a 6.00 fee: 204.00 freed
        assert result.credit_released == yuan("204.00")
        # spent again oldest first: nothing left on B-10, then B-11
        assert bill_row(billed, "B-10") == (60000, 60000, 600, 600)
        assert bill_row(billed, "B-11") == (30000, 20400, 0, 0)
        assert result.credit_applied == yuan("204.00")
        assert result.balance_after == yuan("96.00")
        assert_sub_ledger_agrees(billed)

    def test_a_bill_stays_above_zero(self, billed: Gateway) -> None:
        before = snapshot(billed)
        with pytest.raises(InvalidAmountError, match="cancel the bill instead") as exc:
            billed.adjust_bill(ACCT, "B-11", yuan("-300.00"), reason="x", correction_id="C1")
        assert exc.value.field == "amount"
        with pytest.raises(InvalidAmountError):
            billed.adjust_bill(ACCT, "B-11", yuan("-300.01"), reason="x", correction_id="C1")
        assert snapshot(billed) == before
        result = billed.adjust_bill(ACCT, "B-11", yuan("-299.99"), reason="x", correction_id="C1")
        assert result.amount_after == yuan("0.01")


class TestLateFees:
    def test_a_reduction_gives_back_the_fee_on_the_reduced_part_and_days_are_not_charged_twice(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        pay(billed, "T1", "10.00")  # the fee through 11-25 on 1000.00: 10.00, paid
        assert bill_row(billed, "B-10") == (100000, 0, 1000, 1000)
        result = billed.adjust_bill(ACCT, "B-10", yuan("-400.00"), reason="r", correction_id="C1")
        assert result.late_fee_reversed == yuan("4.00")
        # the 4.00 paid on the fee given back is credit, spent on the bill's principal
        assert bill_row(billed, "B-10") == (60000, 400, 600, 600)
        assert billed.ledger_balances()["revenue:late_fee:CNY"] == yuan("-6.00")
        clock.advance(timedelta(days=10))
        receipt = pay(billed, "T2", "1.00")
        # days 11-26..12-05 only, on the corrected principal due: 596.00 * 0.1% * 10 = 5.96
        assert receipt.late_fee == yuan("5.96")
        assert_sub_ledger_agrees(billed)

    def test_a_debit_does_not_reach_back_into_days_already_charged(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        pay(billed, "T1", "10.00")  # charged through 11-25
        billed.adjust_bill(ACCT, "B-10", yuan("200.00"), reason="r", correction_id="C1")
        clock.advance(timedelta(days=10))
        receipt = pay(billed, "T2", "1.00")
        # 1200.00 * 0.1% * 10 days (11-26..12-05); nothing again for 11-16..11-25
        assert receipt.late_fee == yuan("12.00")

    def test_a_correction_of_a_bill_never_charged_counts_from_its_due_date(
        self, billed: Gateway
    ) -> None:
        billed.adjust_bill(ACCT, "B-10", yuan("-500.00"), reason="r", correction_id="C1")
        # nothing was charged: nothing to give back; the fee accrues on 500.00 from 11-16
        receipt = pay(billed, "T1", "1.00")
        assert receipt.late_fee == yuan("5.00")

    def test_the_fee_given_back_is_at_most_the_fee_charged(
        self, gateway: Gateway, clock: FixedClock
    ) -> None:
        gateway.open_account(ACCT, category="residential")
        bill(gateway, "B-1", "100.00", date(2026, 11, 20))
        pay(gateway, "T1", "1.00")  # 100.00 * 0.1% * 5 days = 0.50, charged as the 1.00 minimum
        assert bill_row(gateway, "B-1")[2] == 100
        result = gateway.adjust_bill(ACCT, "B-1", yuan("-99.00"), reason="r", correction_id="C1")
        assert result.late_fee_reversed == yuan("0.50")  # 99.00 * 0.1% * 5 = 0.495
        gateway.cancel_bill(ACCT, "B-1", reason="r", correction_id="C2")
        assert bill_row(gateway, "B-1") == (0, 0, 0, 0)
        assert gateway.ledger_balances()["revenue:late_fee:CNY"] == yuan("0.00")
        assert_sub_ledger_agrees(gateway)


class TestSupply:
    def test_cancelling_the_last_arrears_of_a_disconnected_account_orders_reconnection(
        self, billed: Gateway
    ) -> None:
        assert billed.disconnect(ACCT, "arrears") is SupplyState.DISCONNECTED
        result = billed.cancel_bill(ACCT, "B-10", reason="misread", correction_id="C1")
        assert result.arrears_cleared and result.arrears_after == yuan("0.00")
        assert result.reconnection_order_id is not None
        assert result.supply_state is SupplyState.RECONNECTION_PENDING
        assert billed.account_status(ACCT).supply_state is SupplyState.RECONNECTION_PENDING
        requested = events(billed, "reconnection.requested")
        assert [e["data"]["order_id"] for e in requested] == [result.reconnection_order_id]
        assert events(billed, "arrears.cleared")[0]["data"]["correction_id"] == "C1"

    def test_reducing_the_arrears_away_takes_a_pending_disconnection_back(
        self, billed: Gateway
    ) -> None:
        pay(billed, "T1", "610.00")  # fee 10.00, 600.00 on B-10
        billed.serve_notice(ACCT)
        assert billed.account_status(ACCT).supply_state is SupplyState.DISCONNECTION_PENDING
        result = billed.adjust_bill(ACCT, "B-10", yuan("-400.00"), reason="r", correction_id="C1")
        assert result.arrears_after == yuan("0.00")
        assert result.supply_state is SupplyState.CONNECTED
        assert result.reconnection_order_id is None
        assert len(events(billed, "disconnection.cancelled")) == 1

    def test_a_correction_that_leaves_arrears_changes_no_supply_state(
        self, billed: Gateway
    ) -> None:
        billed.disconnect(ACCT, "arrears")
        result = billed.adjust_bill(ACCT, "B-10", yuan("-1.00"), reason="r", correction_id="C1")
        assert result.arrears_after.minor > 0 and not result.arrears_cleared
        assert result.supply_state is SupplyState.DISCONNECTED
        assert result.reconnection_order_id is None

    def test_a_debit_that_creates_arrears_follows_dunning_as_a_new_bill_would(
        self, billed: Gateway
    ) -> None:
        pay(billed, "T1", "1010.00")
        assert billed.account_status(ACCT).arrears == yuan("0.00")
        result = billed.adjust_bill(ACCT, "B-10", yuan("80.00"), reason="r", correction_id="C1")
        assert result.arrears_after == yuan("80.00")
        assert result.supply_state is SupplyState.CONNECTED  # no notice served: no dunning yet
        assert billed.disconnection_candidates() == []
        billed.serve_notice(ACCT)  # the arrears are real: a notice can be served for them
        assert billed.account_status(ACCT).supply_state is SupplyState.DISCONNECTION_PENDING


class TestEvents:
    def test_each_correction_is_announced_with_its_figures(self, billed: Gateway) -> None:
        billed.adjust_bill(ACCT, "B-11", yuan("-50.00"), reason="re-read", correction_id="C1")
        billed.cancel_bill(ACCT, "B-11", reason="issued twice", correction_id="C2")
        [adjusted] = events(billed, "bill.adjusted")
        [cancelled] = events(billed, "bill.cancelled")
        assert adjusted["account_no"] == ACCT
        assert adjusted["data"] | {} == {
            "correction_id": "C1",
            "bill_no": "B-11",
            "reason": "re-read",
            "amount_before": 30000,
            "amount_after": 25000,
            "change": -5000,
            "currency": "CNY",
            "late_fee_reversed": 0,
            "credit_released": 0,
            "credit_applied": 0,
            "balance_after": 125000,
            "arrears_after": 101000,
        }
        assert cancelled["data"]["amount_before"] == 25000
        assert cancelled["data"]["amount_after"] == 0
        assert cancelled["data"]["change"] == -25000


class TestIdempotency:
    def test_the_same_correction_again_is_replayed_and_changes_nothing(
        self, billed: Gateway
    ) -> None:
        first = billed.adjust_bill(ACCT, "B-10", yuan("-10.00"), reason="r", correction_id="C1")
        before = snapshot(billed)
        again = billed.adjust_bill(ACCT, "B-10", yuan("-10.00"), reason="r", correction_id="C1")
        assert again.replayed
        assert again.model_copy(update={"replayed": False}) == first
        assert snapshot(billed) == before
        cancel = billed.cancel_bill(ACCT, "B-11", reason="twice", correction_id="C2")
        assert billed.cancel_bill(ACCT, "B-11", reason="twice", correction_id="C2").replayed
        assert cancel.amount_after == yuan("0.00")

    @pytest.mark.parametrize(
        ("call", "field"),
        [
            (adjust(yuan("-11.00"), cid="C1"), "amount"),
            (adjust(yuan("-10.00"), reason="s", cid="C1"), "reason"),
            (adjust(yuan("-10.00"), bill_no="B-11", cid="C1"), "bill_no"),
            (adjust(yuan("-10.00"), account="3100000002", bill_no="B-20", cid="C1"), "account_no"),
            (cancel(cid="C1"), "correction_id"),
        ],
    )
    def test_the_same_id_with_other_content_is_a_conflict_naming_the_field(
        self, billed: Gateway, call: Any, field: str
    ) -> None:
        billed.open_account("3100000002")
        bill(billed, "B-20", "50.00", date(2026, 12, 1), account="3100000002")
        billed.adjust_bill(ACCT, "B-10", yuan("-10.00"), reason="r", correction_id="C1")
        before = snapshot(billed)
        with pytest.raises(IdempotencyConflictError) as exc:
            call(billed)
        assert exc.value.field == field
        assert snapshot(billed) == before

    def test_concurrent_copies_of_one_correction_take_effect_once(self, billed: Gateway) -> None:
        pay(billed, "T1", "500.00")
        barrier = threading.Barrier(2)
        results: list[BillCorrection | BaseException] = []

        def correct() -> None:
            barrier.wait()
            try:
                results.append(billed.cancel_bill(ACCT, "B-10", reason="twice", correction_id="C1"))
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=correct) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(isinstance(r, BillCorrection) for r in results), results
        corrections = [r for r in results if isinstance(r, BillCorrection)]
        assert sorted(r.replayed for r in corrections) == [False, True]
        assert len({r.entry_id for r in corrections}) == 1
        count = billed.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM journal_entries WHERE kind = 'correction'"),
            write=False,
        )
        assert int(count) == 1
        assert len(events(billed, "bill.cancelled")) == 1
        assert_sub_ledger_agrees(billed)


def test_one_id_raced_for_two_accounts_takes_effect_once(billed: Gateway) -> None:
    """Different accounts do not wait for each other's lock: the unique constraint decides."""
    billed.open_account("3100000002")
    bill(billed, "B-20", "50.00", date(2026, 12, 1), account="3100000002")
    barrier = threading.Barrier(2)
    results: list[BillCorrection | BaseException] = []

    def correct(account: str, bill_no: str) -> None:
        barrier.wait()
        try:
            results.append(billed.cancel_bill(account, bill_no, reason="r", correction_id="C1"))
        except BaseException as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=correct, args=(ACCT, "B-11")),
        threading.Thread(target=correct, args=("3100000002", "B-20")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if isinstance(r, BillCorrection)]
    refused = [r for r in results if isinstance(r, IdempotencyConflictError)]
    assert len(done) == 1 and len(refused) == 1, results
    assert refused[0].field in ("account_no", "bill_no")
    count = billed.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM bill_corrections"), write=False
    )
    assert int(count) == 1
    amounts = {n: bill_row(billed, n)[0] for n in ("B-11", "B-20")}
    assert sorted(amounts.values()) == [0, 5000 if done[0].bill_no == "B-11" else 30000]


def test_the_unique_constraint_not_the_check_makes_a_correction_take_effect_once(
    billed: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy that slips past the check (as a concurrent one can) fails at the insert, its
    transaction is rolled back, and it is answered from the stored original."""
    from paygate import corrections

    first = billed.adjust_bill(ACCT, "B-10", yuan("-10.00"), reason="r", correction_id="C1")
    real = corrections._stored
    calls: list[int] = []

    def blind(tx: Tx, request: Any) -> BillCorrection | None:
        calls.append(1)
        return None if len(calls) <= 2 else real(tx, request)  # the first attempt sees nothing

    monkeypatch.setattr(corrections, "_stored", blind)
    before = snapshot(billed)
    again = billed.adjust_bill(ACCT, "B-10", yuan("-10.00"), reason="r", correction_id="C1")
    assert len(calls) == 3
    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    assert snapshot(billed) == before
    assert bill_row(billed, "B-10")[0] == 99000


class TestRefusals:
    @pytest.mark.parametrize(
        ("call", "error", "field"),
        [
            (cancel(account="NOPE"), UnknownAccountError, "account_no"),
            (cancel(bill_no="NOPE"), UnknownBillError, "bill_no"),
            (cancel(bill_no="B-20"), UnknownBillError, "bill_no"),
            (adjust(yuan("0")), InvalidAmountError, "amount"),
            (adjust(Money(100, "USD")), CurrencyMismatchError, "amount"),
            (cancel(bill_no="B-09"), InvalidStateError, "bill_no"),
            (adjust(yuan("1.00"), bill_no="B-09"), InvalidStateError, "bill_no"),
            (cancel(reason=" "), InvalidInputError, "reason"),
            (cancel(reason=""), InvalidInputError, "reason"),
            (cancel(cid=""), InvalidInputError, "correction_id"),
            (cancel(cid="x" * 65), InvalidInputError, "correction_id"),
            (adjust(yuan("-1000.00")), InvalidAmountError, "amount"),
        ],
    )
    def test_a_refused_correction_changes_nothing(
        self, billed: Gateway, call: Any, error: type[PaygateError], field: str
    ) -> None:
        billed.open_account("3100000002")
        bill(billed, "B-20", "50.00", date(2026, 12, 1), account="3100000002")
        bill(billed, "B-09", "20.00", date(2026, 12, 1))
        billed.cancel_bill(ACCT, "B-09", reason="twice", correction_id="C0")
        pay(billed, "T1", "100.00")
        before = snapshot(billed)
        with pytest.raises(error) as exc:
            call(billed)
        assert exc.value.field == field
        assert snapshot(billed) == before
        # a refusal stores nothing under its id: the id is still free
        result = billed.adjust_bill(ACCT, "B-10", yuan("1.00"), reason="r", correction_id="C9")
        assert not result.replayed

    def test_an_amount_that_is_not_money_is_a_type_error(self, billed: Gateway) -> None:
        with pytest.raises(TypeError):
            billed.adjust_bill(ACCT, "B-10", 100, reason="r", correction_id="C1")  # type: ignore[arg-type]


def test_a_correction_is_one_transaction(billed: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at the last write leaves nothing of the correction behind."""
    pay(billed, "T1", "500.00")
    before = snapshot(billed)
    from paygate import corrections

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(corrections, "write_states", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        billed.cancel_bill(ACCT, "B-10", reason="twice", correction_id="C1")
    assert snapshot(billed) == before
    monkeypatch.undo()
    assert billed.cancel_bill(ACCT, "B-10", reason="twice", correction_id="C1").credit_released


def test_migration_0010_keeps_the_bills_of_a_populated_database(db_url: str) -> None:
    """The bills' amount check is replaced in place (SQLite: the table rebuilt): bills,
    allocations and their references survive the way down and up again."""
    from paygate.config import Settings
    from paygate.store import migrate

    settings = Settings(database_url=db_url, seal_every=0)
    clock = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    with Gateway.open(settings=settings, clock=clock) as gw:
        gw.open_account(ACCT)
        bill(gw, "B-10", "1000.00", date(2026, 11, 15))
        pay(gw, "T1", "400.00")
        before = snapshot(gw)
    migrate.downgrade(db_url, "0010")
    migrate.upgrade(db_url)
    with Gateway.open(settings=settings, clock=clock) as gw:
        assert snapshot(gw) == before
        result = gw.cancel_bill(ACCT, "B-10", reason="issued twice", correction_id="C1")
        assert result.credit_released == yuan("400.00")
        assert bill_row(gw, "B-10") == (0, 0, 0, 0)
        assert_sub_ledger_agrees(gw)
        if db_url.startswith("sqlite"):
            assert gw.store.run(lambda tx: tx.all("PRAGMA foreign_key_check"), write=False) == []
