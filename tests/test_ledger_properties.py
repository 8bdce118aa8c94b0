"""Random histories of bills, payments, replays, conflicts, reversals, bill corrections
(cancellations and adjustments), refunds (requested, paid, refused, unanswered), account
closures, disconnections and time keep every invariant of DESIGN.md: entries balance, cached
balances equal their postings, every payment's amount is exactly what it allocated, what it
holds as credit and what refunds not failed took of it, credit never waits while a bill is
open, refunds payable is exactly the orders not yet settled, arrears never go negative, each
late fee equals the rule read day by day, a cancelled bill stays at zero, a closed account
allocates nothing, and there is never more than one open reconnection order per account."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from paygate.billing import OpenBill
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import (
    AccountClosedError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    UnknownPaymentError,
)
from paygate.gateway import Gateway
from paygate.models import Category, PaymentIntent, Receipt, SupplyState
from paygate.money import Money
from paygate.refunds.dispatch import dispatch_refunds
from paygate.refunds.route import Payee
from paygate.refunds.split import RefundShortfallError
from paygate.store.engine import Tx
from tests.databases import empty_postgres, fresh_sqlite_url
from tests.oracles import late_fee_oracle
from tests.refund_fakes import PENDING, UNAVAILABLE, ScriptedRoute, failed, succeeded

ACCOUNTS = {"A0": Category.RESIDENTIAL, "A1": Category.NON_RESIDENTIAL, "A2": Category.RESIDENTIAL}
CHANNELS = ["kiosk", "mobile", "bank_agent"]
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")
ANSWERS = {"succeeded": succeeded(), "failed": failed(), "pending": PENDING}


def open_bills(tx: Tx, account_no: str) -> list[OpenBill]:
    rows = tx.all(
        "SELECT b.id, b.bill_no, b.due_date, b.amount, b.principal_paid, b.late_fee_charged, "
        "b.late_fee_paid, b.late_fee_through FROM bills b JOIN accounts a ON a.id = b.account_id "
        "WHERE a.account_no = :n",
        {"n": account_no},
    )
    return [
        OpenBill(
            int(r[0]),
            str(r[1]),
            tx.read_day(r[2]),
            int(r[3]),
            int(r[4]),
            int(r[5]),
            int(r[6]),
            None if r[7] is None else tx.read_day(r[7]),
        )
        for r in rows
    ]


class LedgerMachine(RuleBasedStateMachine):
    database_url: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        url = self.database_url or fresh_sqlite_url(Path(self.dir))
        self.clock = FixedClock(datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
        self.gateway = Gateway.open(
            settings=Settings(
                database_url=url, seal_every=5, sqlite_synchronous="OFF", pay_many_chunk=3
            ),
            clock=self.clock,
        )
        for account_no, category in ACCOUNTS.items():
            self.gateway.open_account(account_no, category=category, prepaid=account_no == "A2")
        self.bills = 0
        self.txns = 0
        self.corrections = 0
        self.bill_accounts: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.routes = {
            "wallet": ScriptedRoute("wallet", "mobile"),
            "transfer": ScriptedRoute("transfer", None),
        }
        self.gateway.use_refund_routes(self.routes)
        self.refunds = 0
        self.closed: set[str] = set()

    posted = Bundle("posted")

    def teardown(self) -> None:
        self.gateway.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        account=st.sampled_from(sorted(ACCOUNTS)),
        amount=st.integers(1, 300_000),
        due_in=st.integers(-90, 40),
    )
    def issue_bill(self, account: str, amount: int, due_in: int) -> None:
        self.bills += 1
        today = self.clock.now().date()

        def issue() -> None:
            self.gateway.issue_bill(
                account,
                bill_no=f"B{self.bills}",
                amount=Money(amount, "CNY"),
                period="2026-11",
                due_date=today + timedelta(days=due_in),
            )

        if account in self.closed:  # a closed account takes no new bill, and nothing changes
            with pytest.raises(AccountClosedError):
                issue()
            self.bills -= 1  # the number was not used: the bills stay B1 … Bn
            return
        issue()
        self.bill_accounts[f"B{self.bills}"] = account

    @rule(
        target=posted,
        account=st.sampled_from(sorted(ACCOUNTS)),
        amount=st.integers(1, 400_000),
        channel=st.sampled_from(CHANNELS),
    )
    def pay(self, account: str, amount: int, channel: str) -> tuple[PaymentIntent, Receipt]:
        self.txns += 1
        intent = PaymentIntent(
            channel=channel,
            channel_txn_id=f"T{self.txns}",
            account_no=account,
            amount=Money(amount, "CNY"),
            paid_at=self.clock.now(),
        )
        bills = self.gateway.store.run(lambda tx: open_bills(tx, account), write=False)
        day = self.clock.now().astimezone(ZoneInfo(self.gateway.settings.timezone)).date()
        expected_fee = late_fee_oracle(bills, ACCOUNTS[account], day)
        receipt = self.gateway.pay(intent)
        allocated = sum(a.late_fee.minor + a.principal.minor for a in receipt.allocations)
        if account in self.closed:  # held in suspense: nothing allocated, no credit
            assert (receipt.late_fee.minor, allocated, receipt.credit.minor) == (0, 0, 0)
            return intent, receipt
        assert receipt.late_fee.minor == expected_fee
        assert allocated + receipt.credit.minor == amount
        assert all(a.late_fee.minor >= 0 and a.principal.minor >= 0 for a in receipt.allocations)
        assert receipt.arrears_after.minor >= 0
        return intent, receipt

    @rule(
        items=st.lists(
            st.tuples(
                st.sampled_from([*sorted(ACCOUNTS), "NOPE"]),
                st.integers(1, 400_000),
                st.sampled_from(CHANNELS),
            ),
            min_size=1,
            max_size=7,
        ),
        repeat=st.booleans(),
    )
    def pay_batch(self, items: list[tuple[str, int, str]], repeat: bool) -> None:
        """A batch through pay_many, chunks of three: an unknown account, a duplicate inside
        the batch and a changed copy of an earlier item each get their own outcome."""
        intents = []
        for account, amount, channel in items:
            self.txns += 1
            intents.append(
                PaymentIntent(
                    channel=channel,
                    channel_txn_id=f"T{self.txns}",
                    account_no=account,
                    amount=Money(amount, "CNY"),
                    paid_at=self.clock.now(),
                )
            )
        extra = []
        if repeat:
            extra.append(intents[0])
            extra.append(
                intents[-1].model_copy(
                    update={"amount": Money(intents[-1].amount.minor + 1, "CNY")}
                )
            )
        outcomes = self.gateway.pay_many([*intents, *extra])
        assert [o.index for o in outcomes] == list(range(len(intents) + len(extra)))
        for intent, outcome in zip(intents, outcomes, strict=False):
            if intent.account_no == "NOPE":
                assert outcome.status == "refused" and outcome.error_code == "unknown_account"
                continue
            assert outcome.status == "posted" and outcome.receipt is not None
            receipt = outcome.receipt
            allocated = sum(a.late_fee.minor + a.principal.minor for a in receipt.allocations)
            held = intent.account_no in self.closed
            assert allocated + receipt.credit.minor == (0 if held else intent.amount.minor)
        if repeat:
            first, again, changed = outcomes[0], outcomes[len(intents)], outcomes[-1]
            if first.status == "posted":
                assert again.status == "replayed" and again.receipt is not None
                assert first.receipt is not None
                assert again.receipt.payment_id == first.receipt.payment_id
            else:
                assert again.status == "refused"
            assert changed.status == "refused"

    @rule(item=posted)
    def replay(self, item: tuple[PaymentIntent, Receipt]) -> None:
        intent, receipt = item
        again = self.gateway.pay(intent)
        assert again.replayed
        assert again.model_copy(update={"replayed": False}) == receipt

    @rule(item=posted, delta=st.integers(1, 1000))
    def conflicting_retry(self, item: tuple[PaymentIntent, Receipt], delta: int) -> None:
        intent, _ = item
        changed = intent.model_copy(update={"amount": Money(intent.amount.minor + delta, "CNY")})
        try:
            self.gateway.pay(changed)
        except IdempotencyConflictError:
            return
        raise AssertionError("a changed amount under the same id was accepted")

    @rule(item=consumes(posted))
    def reverse(self, item: tuple[PaymentIntent, Receipt]) -> None:
        _, receipt = item
        # a replayed copy of the same payment may have been reversed already
        with contextlib.suppress(InvalidStateError):
            self.gateway.reverse(receipt.payment_id, "bounced")

    def _bill_amount(self, bill_no: str) -> int:
        return int(
            self.gateway.store.run(
                lambda tx: tx.scalar("SELECT amount FROM bills WHERE bill_no = :n", {"n": bill_no}),
                write=False,
            )
        )

    @precondition(lambda self: self.bills > 0)
    @rule(pick=st.integers(0, 10_000), again=st.booleans())
    def cancel_bill(self, pick: int, again: bool) -> None:
        bill_no = f"B{pick % self.bills + 1}"
        account = self.bill_accounts[bill_no]
        self.corrections += 1
        cid = f"C{self.corrections}"
        try:
            result = self.gateway.cancel_bill(
                account, bill_no, reason="issued twice", correction_id=cid
            )
        except InvalidStateError:
            assert bill_no in self.cancelled
            return
        assert bill_no not in self.cancelled
        self.cancelled.add(bill_no)
        assert result.amount_after.minor == 0 and result.change.minor < 0
        assert result.credit_applied.minor >= 0 and result.credit_released.minor >= 0
        if again:
            replayed = self.gateway.cancel_bill(
                account, bill_no, reason="issued twice", correction_id=cid
            )
            assert replayed.replayed and replayed.model_copy(update={"replayed": False}) == result

    @precondition(lambda self: self.bills > 0)
    @rule(
        pick=st.integers(0, 10_000),
        delta=st.integers(-300_000, 300_000).filter(bool),
        conflict=st.booleans(),
    )
    def adjust_bill(self, pick: int, delta: int, conflict: bool) -> None:
        bill_no = f"B{pick % self.bills + 1}"
        account = self.bill_accounts[bill_no]
        before = self._bill_amount(bill_no)
        self.corrections += 1
        cid = f"C{self.corrections}"
        try:
            result = self.gateway.adjust_bill(
                account, bill_no, Money(delta, "CNY"), reason="meter re-read", correction_id=cid
            )
        except InvalidStateError:
            assert bill_no in self.cancelled
            return
        except InvalidAmountError:
            assert before + delta <= 0
            return
        assert before + delta > 0 and bill_no not in self.cancelled
        assert result.amount_after.minor == before + delta == self._bill_amount(bill_no)
        assert result.late_fee_reversed.minor >= 0
        if conflict:
            with pytest.raises(IdempotencyConflictError):
                self.gateway.adjust_bill(
                    account, bill_no, Money(delta + 1, "CNY"), reason="meter re-read",
                    correction_id=cid,
                )  # fmt: skip

    @rule(
        account=st.sampled_from(sorted(ACCOUNTS)),
        share=st.integers(1, 100),
        route=st.sampled_from(["wallet", "transfer"]),
        over=st.booleans(),
        then=st.sampled_from([None, "succeeded", "failed"]),
    )
    def refund(self, account: str, share: int, route: str, over: bool, then: str | None) -> None:
        credit = self.gateway.account_status(account).credit.minor
        amount = credit + 1 if over else max(1, credit * share // 100)
        self.refunds += 1
        ask = {
            "refund_id": f"RF{self.refunds}",
            "route": route,
            "payee": PAYEE if route == "transfer" else None,
        }
        try:
            refunds = self.gateway.refund(account, Money(amount, "CNY"), **ask)  # type: ignore[arg-type]
        except InvalidAmountError:
            assert amount > credit
            return
        except UnknownPaymentError:
            assert route == "wallet"
            return
        assert amount <= credit
        assert self.gateway.account_status(account).credit.minor == credit - amount
        again = self.gateway.refund(account, Money(amount, "CNY"), **ask)  # type: ignore[arg-type]
        assert sum(r.amount.minor for r in refunds) == amount
        assert all(r.replayed for r in again)
        assert [r.entry_id for r in again] == [r.entry_id for r in refunds]
        if then is not None:  # the provider answers at once
            self.routes[route].settle_as = ANSWERS[then]
            dispatch_refunds(self.gateway, self.routes, self.clock.now() + timedelta(days=1))

    @rule(
        answer=st.sampled_from(["succeeded", "failed", "pending", "unavailable"]),
        later=st.integers(0, 3),
    )
    def providers_answer(self, answer: str, later: int) -> None:
        for route in self.routes.values():
            if answer == "unavailable":
                route.script(submits=[UNAVAILABLE], queries=[UNAVAILABLE])
            else:
                route.settle_as = ANSWERS[answer]
        dispatch_refunds(self.gateway, self.routes, self.clock.now() + timedelta(days=later))

    @precondition(lambda self: self.refunds > 0)
    @rule(pick=st.integers(0, 10_000), paid=st.booleans())
    def provider_confirms(self, pick: int, paid: bool) -> None:
        refund_id = f"RF{pick % self.refunds + 1}"
        stored = {r.refund_id: r for _, r in self.gateway.refund_orders()}
        order = stored.get(refund_id)
        if order is None:  # refused when it was asked
            return
        try:
            if paid:
                done = self.gateway.complete_refund(refund_id, "PR-9")
            else:
                done = self.gateway.fail_refund(refund_id, "REFUSED", "refused")
        except InvalidStateError:
            assert order.state.final and (order.state == "succeeded") != paid
            return
        assert done.replayed == order.state.final

    @rule(
        account=st.sampled_from(sorted(ACCOUNTS)),
        route=st.sampled_from([None, "transfer", "wallet"]),
    )
    def close_account(self, account: str, route: str | None) -> None:
        status = self.gateway.account_status(account)
        try:
            closed = self.gateway.close_account(
                account,
                closure_id=f"CL-{account}",
                refund_route=route,
                payee=PAYEE if route == "transfer" else None,
                reason="moved away",
            )
        except RefundShortfallError as exc:  # the wallet's payments cannot cover the credit
            short = exc.uncovered.minor
            assert route == "wallet" and short > 0
            assert self.gateway.account_status(account).supply_state == status.supply_state
            return
        except InvalidStateError:
            assert account in self.closed or status.bills
            return
        except IdempotencyConflictError:
            assert account in self.closed
            return
        except InvalidInputError:
            assert route is None and status.credit.minor > 0
            return
        assert sum(r.amount.minor for r in closed.refunds) == closed.refund_amount.minor
        if closed.replayed:  # answered as it was then: the credit is gone since
            assert account in self.closed
        else:
            assert closed.refund_amount.minor <= status.credit.minor
        self.closed.add(account)
        assert self.gateway.account_status(account).supply_state is SupplyState.CLOSED

    @rule(account=st.sampled_from(sorted(ACCOUNTS)))
    def disconnect(self, account: str) -> None:
        status = self.gateway.account_status(account)
        if status.supply_state not in (SupplyState.CONNECTED, SupplyState.DISCONNECTION_PENDING):
            return
        if status.arrears.minor > 0 or (status.prepaid and status.balance.minor > 0):
            self.gateway.disconnect(account, "arrears")
        else:  # nothing would ever bring supply back
            with pytest.raises(InvalidStateError, match="owes nothing"):
                self.gateway.disconnect(account, "arrears")

    @rule(days=st.integers(1, 200), hours=st.integers(0, 23))
    def time_passes(self, days: int, hours: int) -> None:
        self.clock.advance(timedelta(days=days, hours=hours))

    @precondition(lambda self: self.txns > 0)
    @rule()
    def seal(self) -> None:
        self.gateway.seal()

    @invariant()
    def ledger_is_consistent(self) -> None:
        report = self.gateway.verify()
        assert report.ok, report.findings

    @invariant()
    def sub_ledger_agrees_with_the_ledger(self) -> None:
        def read(tx: Tx) -> None:
            for account_no in ACCOUNTS:
                bills = open_bills(tx, account_no)
                owed = sum(b.principal_due + b.late_fee_due for b in bills)
                credit = int(
                    tx.scalar(
                        "SELECT COALESCE(SUM(p.unallocated), 0) FROM payments p JOIN accounts a "
                        "ON a.id = p.account_id WHERE a.account_no = :n AND p.status = 'posted'",
                        {"n": account_no},
                    )
                )
                balance = int(
                    tx.scalar(
                        "SELECT SUM(balance) FROM ledger_balances b JOIN ledger_accounts l "
                        "ON l.id = b.account_id WHERE l.code = :c",
                        {"c": f"receivable:{account_no}"},
                    )
                )
                assert balance == owed - credit
                for b in bills:
                    assert 0 <= b.principal_paid <= b.amount
                    assert 0 <= b.late_fee_paid <= b.late_fee_charged
            held: dict[int, int] = {}
            in_flight = 0
            for taken, state, refund_amount in tx.all(
                "SELECT credit_taken, state, amount FROM refund_orders"
            ):
                if state != "failed":
                    for pid, part in json.loads(taken).items():
                        held[int(pid)] = held.get(int(pid), 0) + int(part)
                if state in ("pending", "submitted"):
                    in_flight += int(refund_amount)
            payable = tx.scalar(
                "SELECT COALESCE(SUM(b.balance), 0) FROM ledger_balances b JOIN ledger_accounts l "
                "ON l.id = b.account_id WHERE l.code = 'refunds_payable:CNY'"
            )
            assert int(payable) == -in_flight
            for pid, amount, unallocated, status in tx.all(
                "SELECT id, amount, unallocated, status FROM payments"
            ):
                net = tx.one(
                    "SELECT COALESCE(SUM(late_fee + principal), 0) FROM allocations "
                    "WHERE payment_id = :p",
                    {"p": pid},
                )
                assert net is not None
                if status == "posted":
                    refunded = held.get(int(pid), 0)
                    assert int(net[0]) + int(unallocated) + refunded == int(amount)
                else:
                    assert int(net[0]) == 0 and int(unallocated) == 0
            open_orders = tx.all(
                "SELECT account_id, COUNT(*) FROM supply_orders WHERE status = 'open' "
                "GROUP BY account_id"
            )
            assert all(int(c) == 1 for _, c in open_orders)

        self.gateway.store.run(read, write=False)

    @invariant()
    def credit_never_waits_while_a_bill_is_open_and_cancelled_bills_stay_at_zero(self) -> None:
        def read(tx: Tx) -> None:
            for account_no in ACCOUNTS:
                bills = open_bills(tx, account_no)
                credit = int(
                    tx.scalar(
                        "SELECT COALESCE(SUM(p.unallocated), 0) FROM payments p JOIN accounts a "
                        "ON a.id = p.account_id WHERE a.account_no = :n AND p.status = 'posted'",
                        {"n": account_no},
                    )
                )
                assert credit == 0 or not any(b.is_open for b in bills)
                for b in bills:
                    if b.bill_no in self.cancelled:
                        assert (b.amount, b.principal_paid, b.late_fee_charged) == (0, 0, 0)

        self.gateway.store.run(read, write=False)

    @invariant()
    def arrears_are_never_negative(self) -> None:
        for account_no in ACCOUNTS:
            status = self.gateway.account_status(account_no)
            assert status.arrears.minor >= 0 and status.late_fee.minor >= 0
            if status.supply_state is SupplyState.RECONNECTION_PENDING:
                assert status.arrears.minor >= 0


TestLedgerOnSQLite = LedgerMachine.TestCase
TestLedgerOnSQLite.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@pytest.mark.postgres
def test_ledger_history_on_postgresql(pg_url: str) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    # One database for the run: each history gets its own accounts by resetting the tables.
    class OnPostgres(LedgerMachine):
        database_url = pg_url

        def __init__(self) -> None:
            empty_postgres(pg_url)
            super().__init__()

    run_state_machine_as_test(
        OnPostgres, settings=settings(max_examples=8, stateful_step_count=20, deadline=None)
    )
