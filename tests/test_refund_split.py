"""A refund larger than any one payment's remainder is split, one refund order per payment, on
SQLite and PostgreSQL: through ``Gateway.refund`` and through an account's closure; replays,
conflicts, shortfalls refused whole, each order settled on its own."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.errors import IdempotencyConflictError, InvalidInputError, UnknownPaymentError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.refunds.model import RefundOrderState
from paygate.refunds.route import Payee
from paygate.refunds.split import Piece, Refundable, RefundShortfallError, plan
from tests.refund_fakes import ScriptedRoute, failed

ACCT = "3100000001"
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def pay(gateway: Gateway, txn: str, amount: int, channel: str = "mobile", acct: str = ACCT) -> None:
    gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id=txn,
            account_no=acct,
            amount=Money(amount, "CNY"),
            paid_at=gateway.clock.now(),
        )
    )
    gateway.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]


def count(gateway: Gateway, sql: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(sql), write=False))


def events(gateway: Gateway, kind: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", {"t": kind}
        ),
        write=False,
    )
    return [json.loads(r[0])["data"] for r in rows]


@pytest.fixture
def routes() -> dict[str, ScriptedRoute]:
    return {
        "alipay": ScriptedRoute("alipay", "mobile"),
        "transfer": ScriptedRoute("transfer", None),
    }


@pytest.fixture
def three(gateway: Gateway, routes: dict[str, ScriptedRoute]) -> Gateway:
    """An account paid 100.00, 50.00 and 30.00 through the mobile channel (M-1 oldest) and
    20.00 at a kiosk: 200.00 of credit."""
    gateway.use_refund_routes(routes)
    gateway.open_account(ACCT)
    pay(gateway, "M-1", 10000)
    pay(gateway, "M-2", 5000)
    pay(gateway, "M-3", 3000)
    pay(gateway, "K-1", 2000, channel="kiosk")
    return gateway


def test_a_refund_beyond_every_payment_is_split_newest_first(
    three: Gateway, routes: dict[str, ScriptedRoute]
) -> None:
    orders = three.refund(ACCT, yuan("170.00"), refund_id="R-1", route="alipay", reason="moving")
    assert [(o.refund_id, o.amount.minor, o.original_channel_txn_id) for o in orders] == [
        ("R-1", 3000, "M-3"),
        ("R-1*2", 5000, "M-2"),
        ("R-1*3", 9000, "M-1"),
    ]
    assert all(o.state is RefundOrderState.PENDING and not o.replayed for o in orders)
    assert three.account_status(ACCT).credit == yuan("30.00")
    assert three.ledger_balances()["refunds_payable:CNY"] == yuan("-170.00")
    requested = events(three, "refund.requested")
    assert [e["refund_id"] for e in requested] == ["R-1", "R-1*2", "R-1*3"]
    assert [e["balance_after"] for e in requested] == [-17000, -12000, -3000]

    again = three.refund(ACCT, yuan("170.00"), refund_id="R-1", route="alipay", reason="moving")
    assert [o.refund_id for o in again] == ["R-1", "R-1*2", "R-1*3"]
    assert all(o.replayed for o in again)
    with pytest.raises(IdempotencyConflictError) as caught:
        three.refund(ACCT, yuan("90.00"), refund_id="R-1", route="alipay", reason="moving")
    assert caught.value.field == "amount"
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 3

    # Each order goes to the provider against its own payment; one fails, the others pay.
    routes["alipay"].script(submits=[failed(), *([routes["alipay"].settle_as] * 2)])
    three.dispatch_refunds()
    sent = routes["alipay"].accepted
    assert {rid: (r.original_channel_txn_id, r.amount.minor) for rid, r in sent.items()} == {
        "R-1": ("M-3", 3000),
        "R-1*2": ("M-2", 5000),
        "R-1*3": ("M-1", 9000),
    }
    assert three.refund_order("R-1").state is RefundOrderState.FAILED
    assert three.account_status(ACCT).credit == yuan("60.00")  # 30.00 left + R-1's 30.00
    assert three.ledger_balances()["refunds_payable:CNY"].minor == 0
    assert three.verify().ok


def test_a_refund_one_payment_covers_stays_one_order(three: Gateway) -> None:
    [order] = three.refund(ACCT, yuan("60.00"), refund_id="R-1", route="alipay")
    assert order.original_channel_txn_id == "M-1"  # the newest that covers it, as before


def test_a_shortfall_is_refused_whole_naming_what_is_not_covered(three: Gateway) -> None:
    journal = count(three, "SELECT COUNT(*) FROM journal_entries")
    with pytest.raises(RefundShortfallError) as caught:
        three.refund(ACCT, yuan("190.00"), refund_id="R-1", route="alipay")
    error = caught.value
    assert isinstance(error, UnknownPaymentError) and error.field == "route"
    assert (error.covered, error.uncovered) == (yuan("180.00"), yuan("10.00"))
    assert "shortfall of 10.00 CNY" in str(error) and "M-1 100.00 CNY" in str(error)
    assert count(three, "SELECT COUNT(*) FROM journal_entries") == journal
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 0
    assert three.account_status(ACCT).credit == yuan("200.00")


def test_a_split_counts_the_refunds_already_against_each_payment(three: Gateway) -> None:
    three.refund(ACCT, yuan("80.00"), refund_id="R-1", route="alipay")  # against M-1
    orders = three.refund(ACCT, yuan("100.00"), refund_id="R-2", route="alipay")
    assert [(o.original_channel_txn_id, o.amount.minor) for o in orders] == [
        ("M-3", 3000),
        ("M-2", 5000),
        ("M-1", 2000),
    ]
    with pytest.raises(RefundShortfallError):
        three.refund(ACCT, yuan("0.01"), refund_id="R-3", route="alipay")


def test_ids_that_name_a_part_are_refused_and_parts_must_fit(three: Gateway) -> None:
    with pytest.raises(InvalidInputError) as caught:
        three.refund(ACCT, yuan("1.00"), refund_id="R*2", route="alipay")
    assert caught.value.field == "refund_id"
    long_id = "R" * 63
    with pytest.raises(InvalidInputError) as caught:
        three.refund(ACCT, yuan("170.00"), refund_id=long_id, route="alipay")
    assert caught.value.field == "refund_id" and "shorten the id by 1" in str(caught.value)
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 0
    [one] = three.refund(ACCT, yuan("10.00"), refund_id=long_id, route="alipay")
    assert one.refund_id == long_id


def test_a_closure_splits_its_refund_and_replays_it(three: Gateway) -> None:
    three.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("40.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    closed = three.close_account(
        ACCT, closure_id="CL-1", refund_route="alipay", reason="moved away"
    )
    assert closed.refund_amount == yuan("160.00")
    assert [(o.refund_id, o.amount.minor, o.original_channel_txn_id) for o in closed.refunds] == [
        ("close-CL-1", 3000, "M-3"),
        ("close-CL-1*2", 5000, "M-2"),
        ("close-CL-1*3", 8000, "M-1"),
    ]
    [data] = events(three, "account.closed")
    assert data["refund_ids"] == ["close-CL-1", "close-CL-1*2", "close-CL-1*3"]
    assert (data["refund_id"], data["refund_amount"]) == ("close-CL-1", 16000)
    again = three.close_account(ACCT, closure_id="CL-1", refund_route="alipay", reason="moved away")
    assert again.replayed and again.refunds == closed.refunds
    with pytest.raises(IdempotencyConflictError) as caught:
        three.close_account(
            ACCT, closure_id="CL-1", refund_route="transfer", payee=PAYEE, reason="moved away"
        )
    assert caught.value.field == "refund_route"
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 3
    assert three.verify().ok


def test_a_closure_its_route_cannot_cover_is_refused_and_nothing_is_written(
    three: Gateway,
) -> None:
    journal = count(three, "SELECT COUNT(*) FROM journal_entries")
    with pytest.raises(RefundShortfallError) as caught:
        three.close_account(ACCT, closure_id="CL-1", refund_route="alipay", reason="moved away")
    assert caught.value.uncovered == yuan("20.00") and caught.value.field == "route"
    assert count(three, "SELECT COUNT(*) FROM journal_entries") == journal
    assert count(three, "SELECT COUNT(*) FROM account_closures") == 0
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 0
    assert three.account_status(ACCT).supply_state is SupplyState.CONNECTED
    # The transfer route covers any credit: one order to the payee.
    closed = three.close_account(
        ACCT, closure_id="CL-1", refund_route="transfer", payee=PAYEE, reason="moved away"
    )
    [order] = closed.refunds
    assert (order.refund_id, order.amount) == ("close-CL-1", yuan("200.00"))


def test_a_closure_id_too_long_for_its_parts_is_refused(three: Gateway) -> None:
    three.issue_bill(
        ACCT, bill_no="B-1", amount=yuan("20.00"), period="2026-10", due_date=date(2026, 12, 10)
    )
    with pytest.raises(InvalidInputError) as caught:
        three.close_account(ACCT, closure_id="C" * 58, refund_route="alipay", reason="moved")
    assert caught.value.field == "closure_id"
    assert count(three, "SELECT COUNT(*) FROM account_closures") == 0
    assert count(three, "SELECT COUNT(*) FROM refund_orders") == 0


# ── properties ───────────────────────────────────────────────────────────────────────────

remainders = st.lists(st.integers(0, 50_000), max_size=8)


@given(remainders, st.integers(1, 200_000))
def test_a_plan_covers_the_amount_exactly_or_is_none(left: list[int], amount: int) -> None:
    payments = [Refundable(i, f"M-{i}", n + 1, n) for i, n in enumerate(left)]
    pieces = plan(payments, amount)
    if pieces is None:
        assert sum(left) < amount
        return
    assert sum(p.amount for p in pieces) == amount
    assert all(p.payment is not None and 0 < p.amount <= p.payment.remainder for p in pieces)
    ids = [p.payment.payment_id for p in pieces if p.payment is not None]
    assert len(set(ids)) == len(ids)
    if any(n >= amount for n in left):
        assert pieces == [Piece(next(p for p in payments if p.remainder >= amount), amount)]
    else:
        assert ids == sorted(ids)  # newest first: the order the payments came in


_accounts = itertools.count(1)
paid = st.lists(
    st.tuples(st.sampled_from(["mobile", "mobile", "kiosk"]), st.integers(1, 40_000)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paid=paid, billed=st.integers(0, 100), fail=st.integers(0, 10))
def test_a_closures_orders_sum_to_the_credit_and_a_failure_returns_exactly_its_amount(
    gateway: Gateway, paid: list[tuple[str, int]], billed: int, fail: int
) -> None:
    route = ScriptedRoute("alipay", "mobile")
    gateway.use_refund_routes({"alipay": route})
    acct = f"P{next(_accounts):09d}"
    gateway.open_account(acct)
    total = sum(n for _, n in paid)
    bill = total * billed // 100
    if bill:
        gateway.issue_bill(
            acct, bill_no=f"B-{acct}", amount=Money(bill, "CNY"), period="2026-10",
            due_date=date(2026, 12, 10),
        )  # fmt: skip
    amounts = {}
    for n, (channel, amount) in enumerate(paid):
        pay(gateway, f"{acct}-{n}", amount, channel=channel, acct=acct)
        amounts[f"{acct}-{n}"] = (channel, amount)
    credit = total - bill
    mobile = sum(n for c, n in paid if c == "mobile")
    journal = count(gateway, "SELECT COUNT(*) FROM journal_entries")
    if mobile < credit:
        with pytest.raises(RefundShortfallError) as caught:
            gateway.close_account(
                acct, closure_id=f"CL-{acct}", refund_route="alipay", reason="moved away"
            )
        assert caught.value.uncovered.minor == credit - mobile
        assert count(gateway, "SELECT COUNT(*) FROM journal_entries") == journal
        assert gateway.account_status(acct).supply_state is SupplyState.CONNECTED
        return
    closed = gateway.close_account(
        acct, closure_id=f"CL-{acct}", refund_route="alipay", reason="moved away"
    )
    orders = closed.refunds
    assert sum(o.amount.minor for o in orders) == credit == closed.refund_amount.minor
    against = [o.original_channel_txn_id for o in orders]
    assert len(set(against)) == len(against)
    for order in orders:
        assert order.original_channel_txn_id is not None
        channel, amount = amounts[order.original_channel_txn_id]
        assert channel == "mobile" and 0 < order.amount.minor <= amount
    assert gateway.account_status(acct).credit.minor == 0
    if not orders:
        return
    failing = orders[fail % len(orders)]
    gateway.fail_refund(failing.refund_id, "REFUSED", "refused")
    assert gateway.account_status(acct).credit == failing.amount
