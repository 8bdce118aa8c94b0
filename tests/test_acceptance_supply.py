"""Supply stories from acceptance: nobody is stranded without power, naive datetimes and unknown
names are refused by their documented errors. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from paygate.clock import FixedClock
from paygate.errors import (
    InvalidStateError,
    NaiveDatetimeError,
    UnknownAccountError,
    UnknownOrderError,
)
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money

ACCOUNT = "3100000001"


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def pay(gateway: Gateway, txn: str, amount: Money, account: str = ACCOUNT) -> Any:
    return gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id=txn,
            account_no=account,
            amount=amount,
            paid_at=gateway.clock.now(),
        )
    )


def in_arrears(gateway: Gateway, account: str = ACCOUNT, **options: Any) -> None:
    """An account with one bill of 100.00 past due."""
    gateway.open_account(account, **options)
    gateway.issue_bill(
        account,
        bill_no=f"B-{account}",
        amount=yuan("100.00"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )


def orders(gateway: Gateway, account: str = ACCOUNT) -> list[tuple[str, str]]:
    return [
        (str(kind), str(status))
        for kind, status in gateway.store.run(
            lambda tx: tx.all(
                "SELECT o.kind, o.status FROM supply_orders o JOIN accounts a "
                "ON a.id = o.account_id WHERE a.account_no = :n ORDER BY o.id",
                {"n": account},
            ),
            write=False,
        )
    ]


def stranded(gateway: Gateway) -> list[str]:
    """Disconnected accounts that owe nothing and have no reconnection order under way."""
    out = []
    for (account_no,) in gateway.store.run(
        lambda tx: tx.all("SELECT account_no FROM accounts WHERE supply_state = 'disconnected'"),
        write=False,
    ):
        status = gateway.account_status(str(account_no))
        owes = status.arrears.minor > 0 or (status.prepaid and status.balance.minor > 0)
        if not owes and ("reconnect", "open") not in orders(gateway, str(account_no)):
            out.append(str(account_no))
    return out


class TestNobodyIsStranded:
    def test_disconnecting_an_account_that_owes_nothing_is_refused(self, gateway: Gateway) -> None:
        gateway.open_account(ACCOUNT)
        with pytest.raises(InvalidStateError, match="owes nothing"):
            gateway.disconnect(ACCOUNT, "arrears")
        assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED
        assert stranded(gateway) == []

    def test_a_protected_account_that_owes_nothing_is_not_cut_even_by_negotiation(
        self, gateway: Gateway
    ) -> None:
        gateway.open_account("H1", protected=True, category="non_residential")
        with pytest.raises(InvalidStateError, match="owes nothing"):
            gateway.disconnect("H1", "negotiated", negotiated=True)
        with pytest.raises(InvalidStateError, match="owes nothing"):
            gateway.order_disconnection("H1", approved_by="director", negotiated=True)
        assert orders(gateway, "H1") == []

    def test_a_prepaid_account_in_credit_is_not_cut_and_one_below_zero_is(
        self, gateway: Gateway
    ) -> None:
        gateway.open_account("P1", prepaid=True)
        with pytest.raises(InvalidStateError, match="owes nothing"):
            gateway.disconnect("P1", "credit exhausted")
        gateway.issue_bill(
            "P1",
            bill_no="C-1",
            amount=yuan("10.00"),
            period="2026-11",
            due_date=date(2026, 12, 31),
        )
        assert gateway.disconnect("P1", "credit exhausted") is SupplyState.DISCONNECTED
        receipt = pay(gateway, "T-1", yuan("10.00"), "P1")
        # arrears were zero all along (the bill is not due): the receipt still says why
        # supply is coming back
        assert not receipt.arrears_cleared
        assert receipt.reconnection_order_id is not None
        assert receipt.reconnection_reason == "balance settled"
        assert stranded(gateway) == []

    def test_a_disconnected_account_that_pays_everything_gets_one_order(
        self, gateway: Gateway
    ) -> None:
        in_arrears(gateway)
        gateway.disconnect(ACCOUNT, "arrears")
        receipt = pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
        assert receipt.reconnection_order_id is not None
        assert receipt.reconnection_reason == "arrears cleared"
        assert orders(gateway) == [("reconnect", "open")]
        assert stranded(gateway) == []

    def test_a_failed_disconnection_order_of_an_account_that_paid_is_not_sent_again(
        self, gateway: Gateway, clock: FixedClock
    ) -> None:
        in_arrears(gateway)
        order_id = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
        gateway.record_order_failure(order_id, "unknown meter", claim_token=None, retry_at=None)
        pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
        with pytest.raises(InvalidStateError, match="owes nothing"):
            gateway.retry_order(order_id)
        assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED

    def test_a_pending_account_that_pays_cancels_its_failed_disconnection_order(
        self, gateway: Gateway
    ) -> None:
        in_arrears(gateway)
        gateway.serve_notice(ACCOUNT)
        order_id = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
        gateway.record_order_failure(order_id, "unknown meter", claim_token=None, retry_at=None)
        pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
        assert orders(gateway) == [("disconnect", "cancelled")]

    def test_a_cut_that_lands_after_the_customer_paid_brings_supply_straight_back(
        self, gateway: Gateway
    ) -> None:
        in_arrears(gateway)
        order_id = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
        gateway.record_order_progress(order_id, HeadEndOutcome.DISPATCHED)
        pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
        gateway.record_order_progress(order_id, HeadEndOutcome.COMPLETED)
        assert orders(gateway) == [("disconnect", "completed"), ("reconnect", "open")]
        assert gateway.account_status(ACCOUNT).supply_state is SupplyState.RECONNECTION_PENDING
        assert stranded(gateway) == []

    def test_completing_a_reconnection_refuses_a_disconnection_order(
        self, gateway: Gateway
    ) -> None:
        in_arrears(gateway)
        order_id = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
        with pytest.raises(InvalidStateError, match="not a reconnection"):
            gateway.complete_reconnection(order_id)
        assert gateway.account_status(ACCOUNT).supply_state is SupplyState.CONNECTED
        with pytest.raises(UnknownOrderError):
            gateway.complete_reconnection(987654321)

    def test_an_order_is_decided_under_the_lock_not_from_an_earlier_read(
        self, gateway: Gateway, clock: FixedClock
    ) -> None:
        in_arrears(gateway)
        gateway.serve_notice(ACCOUNT)
        clock.advance(timedelta(days=8))
        gateway.serve_notice(ACCOUNT, "final_reminder")
        clock.advance(timedelta(days=2))
        assert [c.account_no for c in gateway.disconnection_candidates()] == [ACCOUNT]
        pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
        with pytest.raises(InvalidStateError):
            gateway.order_disconnection(ACCOUNT, approved_by="ops")
        assert orders(gateway) == []


NAIVE = datetime(2026, 11, 25, 10, 0)


class TestNaiveDatetimesAreRefusedByName:
    @pytest.mark.parametrize(
        ("field", "call"),
        [
            ("now", lambda gw, _o: gw.check_deadlines(NAIVE)),
            ("as_of", lambda gw, _o: gw.disconnection_candidates(NAIVE)),
            ("as_of", lambda gw, _o: gw.account_status(ACCOUNT, NAIVE)),
            ("at", lambda gw, o: gw.record_order_progress(o, HeadEndOutcome.DISPATCHED, at=NAIVE)),
            (
                "next_attempt_at",
                lambda gw, o: gw.record_order_progress(
                    o, HeadEndOutcome.DISPATCHED, next_attempt_at=NAIVE
                ),
            ),
            ("at", lambda gw, o: gw.complete_reconnection(o, at=NAIVE)),
            (
                "retry_at",
                lambda gw, o: gw.record_order_failure(o, "down", claim_token=None, retry_at=NAIVE),
            ),
        ],
    )
    def test_naive(
        self, gateway: Gateway, field: str, call: Callable[[Gateway, int], object]
    ) -> None:
        in_arrears(gateway)
        gateway.serve_notice(ACCOUNT)
        gateway.disconnect(ACCOUNT, "arrears")
        order_id = pay(gateway, "K-1", yuan("200.00")).reconnection_order_id
        with pytest.raises(NaiveDatetimeError) as info:
            call(gateway, order_id)
        assert info.value.field == field
        assert orders(gateway) == [("reconnect", "open")]

    def test_an_aware_as_of_is_a_date_in_the_utility_zone(self, gateway: Gateway) -> None:
        in_arrears(gateway)
        late = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 1 December in Shanghai
        assert gateway.account_status(ACCOUNT, late).as_of == date(2026, 12, 1)


class TestUnknownNamesAreUnknown:
    @pytest.mark.parametrize(
        ("error", "call"),
        [
            (UnknownAccountError, lambda gw: gw.order_disconnection("NO-SUCH", approved_by="x")),
            (
                UnknownAccountError,
                lambda gw: gw.order_disconnection("NO-SUCH", approved_by="x", negotiated=True),
            ),
            (UnknownAccountError, lambda gw: gw.disconnect("NO-SUCH", "arrears")),
            (UnknownAccountError, lambda gw: gw.serve_notice("NO-SUCH")),
            (UnknownAccountError, lambda gw: gw.account_status("NO-SUCH")),
            (
                UnknownAccountError,
                lambda gw: gw.set_meter("NO-SUCH", headend=None, meter_address=None),
            ),
            (UnknownOrderError, lambda gw: gw.retry_order(424242)),
            (UnknownOrderError, lambda gw: gw.complete_reconnection(424242)),
            (
                UnknownOrderError,
                lambda gw: gw.record_order_progress(424242, HeadEndOutcome.DISPATCHED),
            ),
            (
                UnknownOrderError,
                lambda gw: gw.record_order_failure(424242, "x", claim_token=None, retry_at=None),
            ),
        ],
    )
    def test_unknown(
        self, gateway: Gateway, error: type[Exception], call: Callable[[Gateway], object]
    ) -> None:
        with pytest.raises(error):
            call(gateway)


def test_a_service_promise_refuses_a_naive_creation_time() -> None:
    from paygate.supply import ServicePromise

    with pytest.raises(NaiveDatetimeError):
        ServicePromise().deadlines(NAIVE)


def test_the_cli_names_an_unknown_account_or_order(db_url: str) -> None:
    from typer.testing import CliRunner

    from paygate.cli import app

    runner = CliRunner()
    for args, needle in (
        (["dunning", "order", "NO-SUCH", "--approved-by", "ops"], "no account NO-SUCH"),
        (["dunning", "order", "NO-SUCH", "--approved-by", "ops", "--negotiated"], "no account"),
        (["dunning", "notice", "NO-SUCH"], "no account NO-SUCH"),
        (["accounts", "status", "NO-SUCH"], "no account NO-SUCH"),
        (["supply-orders", "retry", "424242"], "no supply order 424242"),
        (["supply-orders", "confirm", "424242"], "no supply order 424242"),
    ):
        result = runner.invoke(app, [*args, "--database-url", db_url])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "candidate" not in result.output


def test_a_late_cut_after_a_reconnection_was_raised_raises_no_second_order(
    gateway: Gateway,
) -> None:
    in_arrears(gateway)
    cut = gateway.order_disconnection(ACCOUNT, approved_by="ops", negotiated=True)
    gateway.record_order_progress(cut, HeadEndOutcome.DISPATCHED)
    gateway.disconnect(ACCOUNT, "crew reported the cut")
    pay(gateway, "K-1", gateway.account_status(ACCOUNT).arrears)
    gateway.record_order_progress(cut, HeadEndOutcome.COMPLETED)
    assert orders(gateway) == [("disconnect", "completed"), ("reconnect", "open")]
    assert gateway.account_status(ACCOUNT).supply_state is SupplyState.RECONNECTION_PENDING
