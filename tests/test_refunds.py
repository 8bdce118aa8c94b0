"""Refunds (退费), on SQLite and PostgreSQL: credit to refunds payable, the order through its
route, success paid out through the channel, failure back to credit and re-allocated; replays,
conflicts, refusals, an unreachable provider, a crash between the provider's answer and the
commit, asynchronous confirmations, and concurrent duplicates."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from paygate.clock import FixedClock
from paygate.errors import (
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
    UnknownAccountError,
    UnknownPaymentError,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.refunds.dispatch import dispatch_refunds
from paygate.refunds.model import RefundOrderState
from paygate.refunds.route import Payee, RefundOutcome, RefundState
from paygate.refunds.service import Refunds, UnknownRefundError
from tests.refund_fakes import PENDING, UNAVAILABLE, ScriptedRoute, failed, succeeded

ACCT = "3100000001"
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")


def yuan(text: str, currency: str = "CNY") -> Money:
    return Money.parse(text, currency)


def pay(gateway: Gateway, txn: str, amount: str, channel: str = "mobile") -> int:
    return gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id=txn,
            account_no=ACCT,
            amount=yuan(amount),
            paid_at=gateway.clock.now(),
        )
    ).payment_id


def balances(gateway: Gateway) -> dict[str, int]:
    return {code: m.minor for code, m in gateway.ledger_balances().items()}


def events(gateway: Gateway, kind: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", {"t": kind}
        ),
        write=False,
    )
    return [json.loads(r[0])["data"] for r in rows]


def count(gateway: Gateway, sql: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(sql), write=False))


def credit(gateway: Gateway) -> int:
    return gateway.account_status(ACCT).credit.minor


@pytest.fixture
def routes() -> dict[str, ScriptedRoute]:
    return {
        "alipay": ScriptedRoute("alipay", "mobile"),
        "transfer": ScriptedRoute("transfer", None),
    }


@pytest.fixture
def funded(gateway: Gateway, routes: dict[str, ScriptedRoute]) -> Gateway:
    """An account with a 100.00 bill and 300.00 paid through the mobile channel: 200.00 credit."""
    gateway.use_refund_routes(routes)
    gateway.open_account(ACCT)
    gateway.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("100.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    pay(gateway, "T-1", "300.00")
    return gateway


def test_a_refund_moves_credit_to_refunds_payable_and_is_paid_out_through_the_channel(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    before = balances(funded)
    [refund] = funded.refund(
        ACCT, yuan("50.00"), refund_id="R-1", route="alipay", reason="overpaid"
    )
    assert refund.state is RefundOrderState.PENDING
    assert refund.original_channel_txn_id == "T-1" and refund.channel == "mobile"
    after = balances(funded)
    assert after[f"receivable:{ACCT}"] - before[f"receivable:{ACCT}"] == 5000
    assert after["refunds_payable:CNY"] == -5000
    assert credit(funded) == 15000
    [requested] = events(funded, "refund.requested")
    assert requested["amount"] == 5000 and requested["original_channel_txn_id"] == "T-1"

    result = funded.dispatch_refunds()
    assert (result.succeeded, result.handled) == (1, 1)
    assert routes["alipay"].calls == [("submit", "R-1")]
    sent = routes["alipay"].accepted["R-1"]
    assert sent.original_amount == yuan("300.00") and sent.amount == yuan("50.00")
    done = funded.refund_order("R-1")
    assert done.state is RefundOrderState.SUCCEEDED and done.provider_reference == "PR-1"
    end = balances(funded)
    assert end["refunds_payable:CNY"] == 0
    assert end["clearing:mobile:CNY"] == before["clearing:mobile:CNY"] - 5000
    assert events(funded, "refund.succeeded")[0]["provider_reference"] == "PR-1"
    assert funded.dispatch_refunds().handled == 0  # settled: never sent again
    assert funded.verify().ok


def test_a_transfer_refund_goes_to_the_payee_and_leaves_through_the_bank(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    funded.refund(ACCT, yuan("200.00"), refund_id="R-2", route="transfer", payee=PAYEE)
    funded.dispatch_refunds()
    assert routes["transfer"].accepted["R-2"].payee == PAYEE
    assert balances(funded)["bank:CNY"] == -20000
    assert credit(funded) == 0


def test_the_payment_refunded_against_is_the_newest_with_enough_left(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    pay(funded, "T-2", "30.00")
    pay(funded, "T-3", "20.00", channel="kiosk")
    # T-2 (newest mobile) cannot cover 40.00; T-1 can
    [first] = funded.refund(ACCT, yuan("40.00"), refund_id="R-a", route="alipay")
    assert first.original_channel_txn_id == "T-1"
    [second] = funded.refund(ACCT, yuan("30.00"), refund_id="R-b", route="alipay")
    assert second.original_channel_txn_id == "T-2"
    # T-1 has 260.00 left to refund, T-2 none; the account's credit is what limits now
    with pytest.raises(InvalidAmountError):
        funded.refund(ACCT, yuan("260.00"), refund_id="R-c", route="alipay")


def ask(account: str = ACCT, amount: str = "1.00", currency: str = "CNY", **kw: Any) -> Any:
    kw.setdefault("refund_id", "R")
    kw.setdefault("route", "alipay")
    return lambda g: g.refund(account, yuan(amount, currency), **kw)


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (ask(amount="0.00"), InvalidAmountError, "amount"),
        (ask(amount="200.01"), InvalidAmountError, "amount"),
        (ask(route="wechat"), InvalidInputError, "route"),
        (ask(route="transfer"), InvalidInputError, "payee"),
        (ask(payee=PAYEE), InvalidInputError, "payee"),
        (ask("3199999999"), UnknownAccountError, "account_no"),
        (ask(currency="USD"), CurrencyMismatchError, "amount"),
        (ask(refund_id="R 1"), InvalidInputError, "refund_id"),
        (ask(refund_id="x" * 65), InvalidInputError, "refund_id"),
    ],
)
def test_a_refused_refund_names_the_field_and_writes_nothing(
    funded: Gateway, call: Any, error: type[PaygateError], field: str
) -> None:
    before = (balances(funded), count(funded, "SELECT COUNT(*) FROM journal_entries"))
    with pytest.raises(error) as caught:
        call(funded)
    assert caught.value.field == field
    assert (balances(funded), count(funded, "SELECT COUNT(*) FROM journal_entries")) == before
    assert count(funded, "SELECT COUNT(*) FROM refund_orders") == 0
    assert count(funded, "SELECT COUNT(*) FROM outbox WHERE event_type LIKE 'refund.%'") == 0


def test_a_provider_route_without_a_payment_on_its_channel_is_refused(funded: Gateway) -> None:
    funded.reverse_by_channel_txn("mobile", "T-1", "chargeback")
    pay(funded, "K-1", "300.00", channel="kiosk")
    with pytest.raises(UnknownPaymentError) as caught:
        funded.refund(ACCT, yuan("10.00"), refund_id="R", route="alipay")
    assert caught.value.field == "route"
    assert count(funded, "SELECT COUNT(*) FROM refund_orders") == 0


def test_the_same_refund_again_is_replayed_and_other_content_is_a_conflict(
    funded: Gateway,
) -> None:
    [first] = funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay", reason="r")
    [again] = funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay", reason="r")
    assert again.replayed and again.entry_id == first.entry_id
    assert credit(funded) == 15000
    for kwargs, field in [
        ({"amount": yuan("51.00")}, "amount"),
        ({"route": "transfer", "payee": PAYEE}, "route"),
        ({"reason": "other"}, "reason"),
    ]:
        args: dict[str, Any] = {"amount": yuan("50.00"), "route": "alipay", "reason": "r"}
        args.update(kwargs)
        with pytest.raises(IdempotencyConflictError) as caught:
            funded.refund(ACCT, refund_id="R-1", **args)
        assert caught.value.field == field
    assert count(funded, "SELECT COUNT(*) FROM refund_orders") == 1
    assert credit(funded) == 15000


def test_an_unreachable_provider_is_asked_again_after_backoff_then_the_refund_succeeds(
    funded: Gateway, routes: dict[str, ScriptedRoute], clock: FixedClock
) -> None:
    routes["alipay"].script(submits=[UNAVAILABLE])
    funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    first = funded.dispatch_refunds()
    assert (first.unavailable, first.succeeded) == (1, 0)
    held = funded.refund_order("R-1")
    assert held.state is RefundOrderState.PENDING and held.attempts == 1
    assert held.last_error is not None and "connection refused" in held.last_error
    assert held.next_attempt_at is not None and held.next_attempt_at > clock.now()
    assert funded.dispatch_refunds().handled == 0  # not due yet
    assert balances(funded)["refunds_payable:CNY"] == -5000  # nothing returned meanwhile
    clock.advance(timedelta(hours=2))
    assert funded.dispatch_refunds().succeeded == 1
    # attempted before: asked first, submitted again only because the provider had nothing
    assert routes["alipay"].calls == [("submit", "R-1"), ("query", "R-1"), ("submit", "R-1")]
    assert funded.refund_order("R-1").state is RefundOrderState.SUCCEEDED


def test_an_order_that_keeps_failing_to_reach_its_provider_raises_an_alert_and_never_fails(
    funded: Gateway, routes: dict[str, ScriptedRoute], clock: FixedClock
) -> None:
    routes["alipay"].script(submits=[UNAVAILABLE], queries=[UNAVAILABLE] * 3)
    funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    for _ in range(4):
        dispatch_refunds(funded, routes, alert_after=3)
        clock.advance(timedelta(hours=2))
    order = funded.refund_order("R-1")
    assert order.state is RefundOrderState.PENDING and order.attempts == 4
    [alert] = events(funded, "refund.alert")
    assert alert == {"refund_id": "R-1", "route": "alipay", "attempts": 3}
    assert credit(funded) == 15000


def test_a_failed_refund_returns_the_credit_which_pays_open_bills_oldest_first(
    gateway: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    gateway.use_refund_routes(routes)
    gateway.open_account(ACCT)
    pay(gateway, "T-1", "300.00")
    gateway.refund(ACCT, yuan("200.00"), refund_id="R-1", route="alipay")
    issued = gateway.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("250.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    assert issued.credit_applied == yuan("100.00")
    assert gateway.account_status(ACCT).balance == yuan("150.00")
    routes["alipay"].settle_as = failed("PAYER_CLOSED", "the payer's account is closed")
    result = gateway.dispatch_refunds()
    assert result.failed == 1
    order = gateway.refund_order("R-1")
    assert order.state is RefundOrderState.FAILED and order.failure_code == "PAYER_CLOSED"
    status = gateway.account_status(ACCT)
    assert status.balance == yuan("-50.00") and status.credit == yuan("50.00")
    assert all(b.principal_due.minor == 0 for b in status.bills)
    [data] = events(gateway, "refund.failed")
    assert data["credit_applied"] == 15000 and data["balance_after"] == -5000
    assert balances(gateway)["refunds_payable:CNY"] == 0
    assert gateway.verify().ok


def test_credit_a_failed_refund_returns_pays_the_late_fee_its_overdue_bill_accrued_first(
    gateway: Gateway, routes: dict[str, ScriptedRoute], clock: FixedClock
) -> None:
    """The credit meets the bill the day the refund fails: the fee accrued by then is charged
    first, as a payment arriving that day would charge it."""
    gateway.use_refund_routes(routes)
    gateway.open_account(ACCT)
    pay(gateway, "T-1", "300.00")
    gateway.refund(ACCT, yuan("200.00"), refund_id="R-1", route="alipay")
    gateway.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("250.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    clock.set(datetime(2026, 12, 20, 2, 0, tzinfo=UTC))  # ten days past due, 150.00 owed
    fee = gateway.account_status(ACCT).late_fee
    assert fee == yuan("1.50")
    revenue = balances(gateway).get("revenue:late_fee:CNY", 0)
    routes["alipay"].settle_as = failed("PAYER_CLOSED", "the payer's account is closed")
    assert gateway.dispatch_refunds().failed == 1
    status = gateway.account_status(ACCT)
    assert status.late_fee == yuan("0.00") and status.arrears == yuan("0.00")
    assert status.balance == yuan("-50.00") + fee and status.credit == yuan("50.00") - fee
    assert balances(gateway)["revenue:late_fee:CNY"] == revenue - fee.minor
    assert gateway.verify().ok


def test_a_crash_after_the_provider_answered_never_pays_twice(
    funded: Gateway, routes: dict[str, ScriptedRoute], clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    original = Refunds.settle

    def crash(self: Refunds, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("power cut before the commit")

    monkeypatch.setattr(Refunds, "settle", crash)
    with pytest.raises(RuntimeError):
        funded.dispatch_refunds()
    monkeypatch.setattr(Refunds, "settle", original)
    assert funded.refund_order("R-1").state is RefundOrderState.PENDING
    clock.advance(timedelta(hours=2))
    assert funded.dispatch_refunds().succeeded == 1
    # asked, not submitted again: the provider holds one refund
    assert routes["alipay"].calls == [("submit", "R-1"), ("query", "R-1")]
    assert list(routes["alipay"].accepted) == ["R-1"]
    assert (
        count(funded, "SELECT COUNT(*) FROM journal_entries WHERE reference LIKE 'refund-paid:%'")
        == 1
    )
    assert balances(funded)["refunds_payable:CNY"] == 0


def test_asynchronous_confirmations_settle_once(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    routes["alipay"].settle_as = PENDING
    funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    funded.refund(ACCT, yuan("20.00"), refund_id="R-2", route="alipay")
    assert funded.dispatch_refunds().submitted == 2
    assert funded.refund_order("R-1").state is RefundOrderState.SUBMITTED
    done = funded.complete_refund("R-1", "2026112522001")
    assert done.state is RefundOrderState.SUCCEEDED and done.provider_reference == "2026112522001"
    assert funded.complete_refund("R-1", "2026112522001").replayed
    with pytest.raises(InvalidStateError):
        funded.fail_refund("R-1", "LATE", "too late")
    back = funded.fail_refund("R-2", "REFUND_REJECTED", "rejected by the payer's bank")
    assert back.state is RefundOrderState.FAILED
    assert funded.fail_refund("R-2", "REFUND_REJECTED", "again").replayed
    with pytest.raises(InvalidStateError):
        funded.complete_refund("R-2")
    with pytest.raises(UnknownRefundError):
        funded.complete_refund("R-404")
    assert credit(funded) == 15000  # 200 - 50 paid; the 20 came back
    assert count(funded, "SELECT COUNT(*) FROM journal_entries WHERE kind = 'refund'") == 4
    assert funded.dispatch_refunds().handled == 0


def test_concurrent_copies_of_one_refund_take_effect_once(funded: Gateway) -> None:
    results: list[Any] = []  # each a list of refund orders, or an error
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            [order] = funded.refund(ACCT, yuan("80.00"), refund_id="R-1", route="alipay")
            results.append(order)
        except PaygateError as exc:  # pragma: no cover - shown in the assertion
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.replayed for r in results) == [False, True]
    assert len({r.entry_id for r in results}) == 1
    assert count(funded, "SELECT COUNT(*) FROM refund_orders") == 1
    assert credit(funded) == 12000


def test_refund_orders_list_by_state(funded: Gateway, routes: dict[str, ScriptedRoute]) -> None:
    routes["alipay"].settle_as = PENDING
    funded.refund(ACCT, yuan("10.00"), refund_id="R-1", route="alipay")
    funded.refund(ACCT, yuan("20.00"), refund_id="R-2", route="alipay")
    funded.dispatch_refunds()
    funded.refund(ACCT, yuan("30.00"), refund_id="R-3", route="alipay")
    pending = funded.refund_orders(state=RefundOrderState.PENDING)
    assert [r.refund_id for _, r in pending] == ["R-3"]
    everything = funded.refund_orders()
    assert [r.refund_id for _, r in everything] == ["R-1", "R-2", "R-3"]
    page = funded.refund_orders(after=everything[0][0], limit=1)
    assert [r.refund_id for _, r in page] == ["R-2"]


def test_a_route_registered_under_another_name_is_refused(gateway: Gateway) -> None:
    with pytest.raises(InvalidInputError) as caught:
        gateway.use_refund_routes({"wechat": ScriptedRoute("alipay", "mobile")})
    assert caught.value.field == "routes"


def test_the_route_answer_is_the_providers_state(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    routes["alipay"].script(submits=[RefundOutcome(RefundState.PENDING, "P-9")])
    routes["alipay"].script(queries=[succeeded("P-9")])
    funded.refund(ACCT, yuan("10.00"), refund_id="R-1", route="alipay")
    funded.dispatch_refunds()
    assert funded.refund_order("R-1").provider_reference == "P-9"


def test_a_payment_whose_credit_is_being_refunded_is_not_reversed(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    [refund] = funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    with pytest.raises(InvalidStateError, match="R-1") as caught:
        funded.reverse_by_channel_txn("mobile", "T-1", "chargeback")
    assert caught.value.field == "payment_id"
    funded.fail_refund(refund.refund_id, "REFUSED", "refused")
    reversal = funded.reverse_by_channel_txn("mobile", "T-1", "chargeback")
    assert reversal.balance_after == yuan("100.00")
    assert funded.verify().ok


def test_the_dispatcher_sends_refund_orders_through_the_routes_it_is_given(
    funded: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    from paygate.outbox import Dispatcher

    funded.refund(ACCT, yuan("50.00"), refund_id="R-1", route="alipay")
    assert Dispatcher(funded, headends={}).dispatch_once().refunds_handled == 0
    assert funded.refund_order("R-1").state is RefundOrderState.PENDING
    report = Dispatcher(funded, headends={}, refund_routes=routes).dispatch_once()
    assert report.refunds_handled == 1 and not report.idle
    assert funded.refund_order("R-1").state is RefundOrderState.SUCCEEDED
