"""The Gateway, told as the stories a utility lives through; each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from paygate.clock import FixedClock
from paygate.errors import (
    BillConflictError,
    CurrencyMismatchError,
    DuplicateAccountError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    NaiveDatetimeError,
    UnknownAccountError,
    UnknownPaymentError,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money

CNY = "CNY"


def yuan(text: str) -> Money:
    return Money.parse(text, CNY)


def intent(
    txn: str,
    amount: str,
    account: str = "3100000001",
    *,
    channel: str = "kiosk",
    at: datetime | None = None,
) -> PaymentIntent:
    return PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no=account,
        amount=yuan(amount),
        paid_at=at or datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
    )


def snapshot(gateway: Gateway) -> tuple[object, ...]:
    """Everything a refused request must leave untouched."""

    def read(tx):  # type: ignore[no-untyped-def]
        return tuple(
            tx.scalar(f"SELECT COUNT(*) FROM {t}")
            for t in (
                "journal_entries",
                "postings",
                "payments",
                "allocations",
                "outbox",
                "supply_orders",
                "bills",
                "accounts",
            )
        )

    return (read_all := gateway.store.run(read, write=False), gateway.ledger_balances())  # noqa: F841


def events(gateway: Gateway, event_type: str) -> list[dict[str, object]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", {"t": event_type}
        ),
        write=False,
    )
    return [json.loads(r[0]) for r in rows]


@pytest.fixture
def billed(gateway: Gateway) -> Gateway:
    """A residential account with one 1000.00 bill due 2026-11-15 (overdue on the 25th)."""
    gateway.open_account("3100000001", category="residential", name="Zhang San")
    gateway.issue_bill(
        "3100000001",
        bill_no="B-2026-10",
        amount=yuan("1000.00"),
        period="2026-10",
        due_date=date(2026, 11, 15),
    )
    return gateway


class TestAccountsAndBills:
    def test_opening_the_same_account_twice_is_a_no_op_and_a_different_one_conflicts(
        self, gateway: Gateway
    ) -> None:
        gateway.open_account("A1", category="non_residential")
        gateway.open_account("A1", category="non_residential")
        with pytest.raises(DuplicateAccountError):
            gateway.open_account("A1", category="residential")
        with pytest.raises(InvalidInputError, match="category"):
            gateway.open_account("A2", category="industrial")

    def test_a_bill_debits_the_customer_and_credits_energy_revenue(self, billed: Gateway) -> None:
        balances = billed.ledger_balances()
        assert balances["receivable:3100000001"] == yuan("1000.00")
        assert balances["revenue:energy:CNY"] == yuan("-1000.00")

    def test_issuing_the_same_bill_again_is_a_no_op_and_different_data_conflicts(
        self, billed: Gateway
    ) -> None:
        again = billed.issue_bill(
            "3100000001",
            bill_no="B-2026-10",
            amount=yuan("1000.00"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
        assert again.created is False
        assert billed.ledger_balances()["receivable:3100000001"] == yuan("1000.00")
        with pytest.raises(BillConflictError):
            billed.issue_bill(
                "3100000001",
                bill_no="B-2026-10",
                amount=yuan("999.00"),
                period="2026-10",
                due_date=date(2026, 11, 15),
            )

    def test_bad_bills_are_refused_by_name(self, billed: Gateway) -> None:
        with pytest.raises(UnknownAccountError):
            billed.issue_bill(
                "nope", bill_no="X", amount=yuan("1"), period="p", due_date=date(2026, 1, 1)
            )
        with pytest.raises(InvalidAmountError):
            billed.issue_bill(
                "3100000001", bill_no="X", amount=yuan("0"), period="p", due_date=date(2026, 1, 1)
            )
        with pytest.raises(CurrencyMismatchError):
            billed.issue_bill(
                "3100000001",
                bill_no="X",
                amount=Money(1, "USD"),
                period="p",
                due_date=date(2026, 1, 1),
            )


class TestStatus:
    def test_status_shows_arrears_and_the_late_fee_accrued_to_the_day(
        self, billed: Gateway
    ) -> None:
        before_due = billed.account_status("3100000001", date(2026, 11, 15))
        assert before_due.arrears == yuan("0") and before_due.outstanding == yuan("1000.00")
        status = billed.account_status("3100000001", date(2026, 11, 25))
        assert status.late_fee == yuan("10.00")  # 0.1% x 10 days
        assert status.arrears == yuan("1010.00")
        assert status.balance == yuan("1000.00")
        assert status.supply_state is SupplyState.CONNECTED
        [bill] = status.bills
        assert bill.overdue and bill.late_fee_accrued == yuan("10.00")
        with pytest.raises(UnknownAccountError):
            billed.account_status("nope")


class TestPayments:
    def test_a_late_payment_charges_the_late_fee_then_pays_the_bill(self, billed: Gateway) -> None:
        receipt = billed.pay(intent("K-1", "1010.00"))
        assert receipt.late_fee == yuan("10.00")
        [alloc] = receipt.allocations
        assert (alloc.bill_no, alloc.late_fee, alloc.principal) == (
            "B-2026-10",
            yuan("10.00"),
            yuan("1000.00"),
        )
        assert receipt.balance_after == yuan("0") and receipt.credit == yuan("0")
        assert receipt.arrears_cleared and receipt.reconnection_order_id is None
        balances = billed.ledger_balances()
        assert balances["clearing:kiosk:CNY"] == yuan("1010.00")
        assert balances["revenue:late_fee:CNY"] == yuan("-10.00")
        assert balances["receivable:3100000001"] == yuan("0")
        assert [e["data"]["payment_id"] for e in events(billed, "payment.posted")] == [
            receipt.payment_id
        ]

    def test_the_same_payment_again_returns_the_original_receipt_marked_replayed(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        first = billed.pay(intent("K-1", "300.00"))
        clock.advance(timedelta(days=3))
        before = snapshot(billed)
        again = billed.pay(intent("K-1", "300.00"))
        assert again.replayed and not first.replayed
        assert again.model_copy(update={"replayed": False}) == first
        assert snapshot(billed) == before

    @pytest.mark.parametrize(
        "changed",
        [
            {"amount": yuan("301.00")},
            {"account_no": "3100000002"},
            {"amount": Money(30000, "USD")},
            {"paid_at": datetime(2026, 11, 25, 3, 0, tzinfo=UTC)},
        ],
    )
    def test_the_same_id_with_different_content_is_a_conflict_and_changes_nothing(
        self, billed: Gateway, changed: dict[str, object]
    ) -> None:
        billed.open_account("3100000002")
        billed.pay(intent("K-1", "300.00"))
        before = snapshot(billed)
        with pytest.raises(IdempotencyConflictError) as info:
            billed.pay(intent("K-1", "300.00").model_copy(update=changed))
        assert info.value.field == "channel_txn_id"
        assert snapshot(billed) == before

    def test_the_same_id_on_another_channel_is_another_payment(self, billed: Gateway) -> None:
        a = billed.pay(intent("T-1", "100.00", channel="kiosk"))
        b = billed.pay(intent("T-1", "100.00", channel="pos"))
        assert a.payment_id != b.payment_id and not b.replayed

    def test_refusals_name_the_problem_and_change_nothing(self, billed: Gateway) -> None:
        before = snapshot(billed)
        with pytest.raises(UnknownAccountError) as unknown:
            billed.pay(intent("K-2", "1.00", account="3199999999"))
        assert unknown.value.field == "account_no"
        with pytest.raises(InvalidAmountError) as zero:
            billed.pay(intent("K-3", "0.00"))
        assert zero.value.field == "amount"
        with pytest.raises(InvalidAmountError):
            billed.pay(intent("K-3", "-5.00"))
        with pytest.raises(CurrencyMismatchError):
            billed.pay(intent("K-4", "1.00").model_copy(update={"amount": Money(100, "USD")}))
        with pytest.raises(NaiveDatetimeError):
            billed.pay(
                intent("K-5", "1.00").model_copy(update={"paid_at": datetime(2026, 11, 25, 10, 0)})
            )
        with pytest.raises(NaiveDatetimeError) as naive:
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K",
                account_no="A",
                amount=yuan("1"),
                paid_at=datetime(2026, 11, 25),
            )  # type: ignore[arg-type]
        assert naive.value.field == "paid_at"
        with pytest.raises(TypeError):
            billed.pay({"channel": "kiosk"})  # type: ignore[arg-type]
        assert snapshot(billed) == before

    def test_a_partial_payment_charges_the_fee_once_and_the_next_only_new_days(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        first = billed.pay(intent("K-1", "500.00"))
        assert first.late_fee == yuan("10.00")  # 10 days on 1000.00
        assert first.allocations[0].principal == yuan("490.00")
        assert first.arrears_after == yuan("510.00")
        # five days later: only days 26-30 on the 510.00 still unpaid, under 1 yuan? no: 2.55
        later = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
        second = billed.pay(intent("K-2", "512.55", at=later))
        assert second.late_fee == yuan("2.55")
        assert second.balance_after == yuan("0") and second.arrears_cleared

    def test_statuses_of_many_accounts_are_each_what_account_status_says(
        self, billed: Gateway
    ) -> None:
        billed.open_account("3100000002", category="non_residential", name="Li Si")
        billed.open_account("3100000003", category="residential", name="Wang Wu")
        billed.issue_bill(
            "3100000002",
            bill_no="B-2026-10-2",
            amount=yuan("5000.00"),
            period="2026-10",
            due_date=date(2026, 12, 15),
        )
        billed.pay(intent("K-1", "300.00"))
        billed.pay(intent("K-2", "20.00", account="3100000003"))  # credit: no bill to pay
        numbers = ["3100000003", "3100000001", "3100000002", "3100000001"]
        day = date(2026, 11, 25)
        statuses = billed.account_statuses(numbers, day)
        assert sorted(statuses) == ["3100000001", "3100000002", "3100000003"]
        for number, status in statuses.items():
            assert status == billed.account_status(number, day)
        assert statuses["3100000001"].arrears == yuan("710.00")  # 1000 + 10 late - 300
        assert statuses["3100000003"].credit == yuan("20.00")
        assert billed.account_statuses([]) == {}

    def test_statuses_refuse_an_unknown_account_by_name(self, billed: Gateway) -> None:
        with pytest.raises(UnknownAccountError, match="nope") as caught:
            billed.account_statuses(["3100000001", "nope"])
        assert caught.value.field == "account_no"

    def test_overpayment_becomes_credit_that_the_next_bill_consumes(self, billed: Gateway) -> None:
        receipt = billed.pay(intent("K-1", "1100.00"))
        assert receipt.credit == yuan("90.00") and receipt.balance_after == yuan("-90.00")
        assert billed.account_status("3100000001").credit == yuan("90.00")
        issued = billed.issue_bill(
            "3100000001",
            bill_no="B-2026-11",
            amount=yuan("200.00"),
            period="2026-11",
            due_date=date(2026, 12, 15),
        )
        assert issued.credit_applied == yuan("90.00")
        status = billed.account_status("3100000001", date(2026, 12, 1))
        assert status.credit == yuan("0") and status.outstanding == yuan("110.00")
        assert status.balance == yuan("110.00")

    def test_paying_before_the_due_date_charges_no_late_fee(self, billed: Gateway) -> None:
        receipt = billed.pay(
            intent("K-1", "1000.00", at=datetime(2026, 11, 15, 15, 59, tzinfo=UTC))
        )
        assert receipt.late_fee == yuan("0")  # 23:59 in Shanghai on the due date
        receipt2 = billed.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM payments"))
        assert receipt2 == 1


class TestReconnection:
    def test_a_partial_payment_never_reconnects(self, billed: Gateway) -> None:
        billed.disconnect("3100000001", "arrears")
        receipt = billed.pay(intent("K-1", "500.00"))
        assert receipt.reconnection_order_id is None and not receipt.arrears_cleared
        assert billed.account_status("3100000001").supply_state is SupplyState.DISCONNECTED
        assert events(billed, "reconnection.requested") == []

    def test_clearing_the_arrears_of_a_disconnected_account_creates_one_order(
        self, billed: Gateway, clock: FixedClock
    ) -> None:
        billed.disconnect("3100000001", "arrears")
        receipt = billed.pay(intent("K-1", "1100.00"))  # overpayment clears too
        assert receipt.arrears_cleared and receipt.reconnection_order_id is not None
        status = billed.account_status("3100000001")
        assert status.supply_state is SupplyState.RECONNECTION_PENDING
        [requested] = events(billed, "reconnection.requested")
        assert requested["data"]["order_id"] == receipt.reconnection_order_id
        due = datetime.fromisoformat(str(requested["data"]["due_at"]))
        assert due == clock.now() + timedelta(hours=24)
        # a second payment does not create a second order
        again = billed.pay(intent("K-2", "10.00"))
        assert again.reconnection_order_id is None
        assert len(events(billed, "reconnection.requested")) == 1
        clock.advance(timedelta(hours=2))
        assert billed.complete_reconnection(receipt.reconnection_order_id) is SupplyState.CONNECTED
        [done] = events(billed, "reconnection.completed")
        assert done["data"]["on_time"] is True

    def test_protected_accounts_are_never_disconnected_without_negotiation(
        self, gateway: Gateway
    ) -> None:
        gateway.open_account("H1", category="non_residential", protected=True, name="Hospital")
        gateway.issue_bill(
            "H1",
            bill_no="B-H1",
            amount=yuan("100.00"),
            period="2026-10",
            due_date=date(2026, 11, 1),
        )
        with pytest.raises(InvalidStateError, match="protected"):
            gateway.disconnect("H1", "arrears")
        assert gateway.disconnect("H1", "negotiated", negotiated=True) is SupplyState.DISCONNECTED

    def test_a_disconnection_pending_account_that_pays_is_connected_again(
        self, billed: Gateway
    ) -> None:
        billed.store.run(
            lambda tx: tx.execute("UPDATE accounts SET supply_state = 'disconnection_pending'")
        )
        billed.pay(intent("K-1", "1010.00"))
        assert billed.account_status("3100000001").supply_state is SupplyState.CONNECTED
        assert len(events(billed, "disconnection.cancelled")) == 1


class TestReversal:
    def test_a_reversal_reopens_what_the_payment_paid(self, billed: Gateway) -> None:
        receipt = billed.pay(intent("K-1", "1010.00"))
        reversal = billed.reverse(receipt.payment_id, "cheque bounced")
        assert reversal.balance_after == yuan("1010.00")
        [reopened] = reversal.reopened
        assert (reopened.late_fee, reopened.principal) == (yuan("10.00"), yuan("1000.00"))
        assert billed.ledger_balances()["clearing:kiosk:CNY"] == yuan("0")
        status = billed.account_status("3100000001", date(2026, 11, 25))
        assert status.arrears == yuan("1010.00")  # the fee stays charged; no new day accrued
        with pytest.raises(InvalidStateError, match="reversed"):
            billed.reverse(receipt.payment_id, "again")
        with pytest.raises(UnknownPaymentError):
            billed.reverse(999_999_999, "nope")
        # the reversed payment replays as itself, it is not posted again
        assert billed.pay(intent("K-1", "1010.00")).replayed

    def test_reversing_a_payment_whose_credit_paid_a_later_bill_reopens_that_bill(
        self, billed: Gateway
    ) -> None:
        receipt = billed.pay(intent("K-1", "1200.00"))  # 190.00 credit
        billed.issue_bill(
            "3100000001",
            bill_no="B-2026-11",
            amount=yuan("150.00"),
            period="2026-11",
            due_date=date(2026, 12, 15),
        )
        reversal = billed.reverse(receipt.payment_id, "fraud")
        assert {a.bill_no for a in reversal.reopened} == {"B-2026-10", "B-2026-11"}
        status = billed.account_status("3100000001", date(2026, 11, 25))
        assert status.outstanding == yuan("1150.00") and status.credit == yuan("0")
        assert status.balance == yuan("1160.00")

    def test_reverse_by_channel_txn(self, billed: Gateway) -> None:
        billed.pay(intent("K-9", "5.00"))
        assert billed.reverse_by_channel_txn("kiosk", "K-9", "void").reason == "void"
        with pytest.raises(UnknownPaymentError):
            billed.reverse_by_channel_txn("kiosk", "missing", "void")


class TestPayMany:
    def test_a_batch_posts_the_good_items_and_refuses_the_bad_by_name(
        self, billed: Gateway
    ) -> None:
        billed.open_account("3100000002")
        items = [
            intent("BA-1", "100.00", channel="bank_agent"),
            intent("BA-2", "5.00", account="3199999999", channel="bank_agent"),
            intent("BA-1", "100.00", channel="bank_agent"),  # same line twice in the file
            intent("BA-3", "0.00", channel="bank_agent"),
            intent("BA-1", "200.00", channel="bank_agent"),  # same id, other amount
            intent("BA-4", "50.00", account="3100000002", channel="bank_agent"),
            intent("BA-5", "950.00", channel="bank_agent"),
        ]
        outcomes = billed.pay_many(items)
        assert [o.status for o in outcomes] == [
            "posted",
            "refused",
            "replayed",
            "refused",
            "refused",
            "posted",
            "posted",
        ]
        assert outcomes[1].error_code == "unknown_account"
        assert outcomes[3].error_code == "invalid_amount"
        assert outcomes[4].error_code == "idempotency_conflict"
        assert outcomes[2].receipt == outcomes[0].receipt.model_copy(update={"replayed": True})  # type: ignore[union-attr]
        assert [o.index for o in outcomes] == list(range(7))
        # both payments on one account in one batch compose: late fee once, then principal
        assert outcomes[0].receipt.late_fee == yuan("10.00")  # type: ignore[union-attr]
        assert outcomes[6].receipt.late_fee == yuan("0")  # type: ignore[union-attr]
        assert outcomes[6].receipt.balance_after == yuan("-40.00")  # type: ignore[union-attr]
        # sending the whole file again posts nothing
        again = billed.pay_many(items)
        assert [o.status for o in again] == [
            "replayed",
            "refused",
            "replayed",
            "refused",
            "refused",
            "replayed",
            "replayed",
        ]
        assert billed.verify().ok

    def test_chunks_commit_separately(self, db_url: str, clock: FixedClock) -> None:
        from paygate.config import Settings

        settings = Settings(database_url=db_url, pay_many_chunk=3, seal_every=0)
        with Gateway.open(settings=settings, clock=clock) as gw:
            for n in range(10):
                gw.open_account(f"A{n}")
            outcomes = gw.pay_many(intent(f"T{n}", "1.00", account=f"A{n}") for n in range(10))
            assert all(o.status == "posted" for o in outcomes)
            assert gw.ledger_balances()["clearing:kiosk:CNY"] == yuan("10.00")


class TestPrepaid:
    def test_a_top_up_reconnects_only_once_the_account_is_back_in_credit(
        self, gateway: Gateway, clock: FixedClock
    ) -> None:
        gateway.open_account("P1", prepaid=True)
        # consumption charged but not yet due: no arrears, yet the account is below zero credit
        gateway.issue_bill(
            "P1",
            bill_no="C-1",
            amount=yuan("100.00"),
            period="2026-11",
            due_date=date(2026, 12, 31),
        )
        gateway.disconnect("P1", "credit exhausted")
        first = gateway.pay(intent("T-1", "50.00", account="P1"))
        assert first.arrears_after == yuan("0") and first.balance_after == yuan("50.00")
        assert first.reconnection_order_id is None
        second = gateway.pay(intent("T-2", "60.00", account="P1"))
        assert second.balance_after == yuan("-10.00")
        assert second.reconnection_order_id is not None
        assert gateway.account_status("P1").supply_state is SupplyState.RECONNECTION_PENDING


class TestChannelCutoffs:
    def test_a_channel_cutoff_decides_the_business_date(
        self, db_url: str, clock: FixedClock
    ) -> None:
        from paygate.channels.base import ChannelRegistry
        from paygate.config import Settings

        registry = ChannelRegistry.discover()
        pos_class = registry.get("pos")
        pos_rules = pos_class.config_model.model_fields["settlement"].get_default(
            call_default_factory=True
        )

        class Pos:
            name = "pos"
            settlement = pos_rules

        settings = Settings(database_url=db_url, seal_every=0).with_channels([Pos()])  # type: ignore[list-item]
        assert settings.cutoff("pos") == pos_rules.cutoff
        with Gateway.open(settings=settings, clock=clock) as gw:
            gw.open_account("A1")
            # 23:30 in Shanghai on 25 November: after a 23:00 cut-off it is the 26th's business
            late = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
            pos = gw.pay(intent("P-1", "1.00", account="A1", channel="pos", at=late))
            kiosk = gw.pay(intent("K-1", "1.00", account="A1", channel="kiosk", at=late))
        assert pos_rules.cutoff.hour == 23
        assert pos.business_date == date(2026, 11, 26)
        assert kiosk.business_date == date(2026, 11, 25)

    def test_an_adapter_in_another_time_zone_is_refused(self) -> None:
        from paygate.channels.base import SettlementRules
        from paygate.config import Settings
        from paygate.errors import ConfigurationError

        class Foreign:
            name = "foreign"
            settlement = SettlementRules(timezone="Europe/London")

        with pytest.raises(ConfigurationError, match="one time zone"):
            Settings().with_channels([Foreign()])  # type: ignore[list-item]
