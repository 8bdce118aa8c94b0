"""Payment findings resolved by finance, on SQLite and PostgreSQL.

A payment to a closed account is held in suspense with a finding. Finance assigns it to
another open account (out of suspense, onto that account, its oldest bills paid first) or
refunds it to the payer through a refund route (a failure puts it back in suspense and opens
the finding again). Each finding is resolved once, each resolution id takes effect once, and
suspense always holds exactly the open findings' money.
"""

from __future__ import annotations

import json
import tempfile
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import (
    AccountClosedError,
    IdempotencyConflictError,
    InvalidInputError,
    UnknownAccountError,
)
from paygate.feeds import PaymentItem, PaymentStatus, RefundItem
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.refunds.findings import (
    SUSPENSE_CHANNEL,
    PaymentFindingAction,
    PaymentFindingResolvedError,
    PaymentFindingState,
    UnknownPaymentFindingError,
)
from paygate.refunds.model import RefundOrderState
from paygate.refunds.route import Payee
from tests.conftest import PG_ADMIN_URL
from tests.databases import empty_postgres, fresh_sqlite_url
from tests.refund_fakes import ScriptedRoute, failed
from tests.test_feeds import drain

CLOSED = "3100000001"
OTHER = "3100000002"
PAYEE = Payee("Zhang San", "6222020200112233", "102100099996")


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def pay(gateway: Gateway, account_no: str, txn: str, amount: Money, channel: str = "alipay") -> Any:
    return gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id=txn,
            account_no=account_no,
            amount=amount,
            paid_at=gateway.clock.now(),
        )
    )


def balance(gateway: Gateway, code: str) -> int:
    found = gateway.ledger_balances().get(code)
    return 0 if found is None else found.minor


def events(gateway: Gateway, kind: str) -> list[dict[str, Any]]:
    rows = gateway.store.run(
        lambda tx: tx.all("SELECT payload FROM outbox WHERE event_type = :t", {"t": kind}),
        write=False,
    )
    return [json.loads(r[0])["data"] for r in rows]


def balanced(gateway: Gateway) -> None:
    """Suspense holds exactly the open findings' money; the ledger adds up and verifies."""
    held = sum(f.amount.minor for f in gateway.payment_findings.list())
    assert balance(gateway, "suspense:CNY") == -held
    assert sum(m.minor for m in gateway.ledger_balances().values()) == 0
    assert not gateway.verify().findings


def close(gateway: Gateway, account_no: str) -> None:
    gateway.open_account(account_no)
    gateway.close_account(account_no, closure_id=f"CL-{account_no}", reason="moved away")


@pytest.fixture
def held(gateway: Gateway) -> Gateway:
    """A closed account that has taken a payment of 150.00 (finding 1 of the listing)."""
    gateway.use_refund_routes(
        {
            "alipay": ScriptedRoute("alipay", "alipay"),
            "transfer": ScriptedRoute("transfer", None),
            "wechatpay": ScriptedRoute("wechatpay", "wechatpay"),
        }
    )
    close(gateway, CLOSED)
    pay(gateway, CLOSED, "AP-1", yuan("150.00"))
    gateway.open_account(OTHER)
    return gateway


def only_finding(gateway: Gateway) -> int:
    [finding] = gateway.payment_findings.list()
    return finding.id


def test_a_payment_for_a_closed_account_is_an_open_finding(held: Gateway) -> None:
    [finding] = held.payment_findings.list()
    assert finding.state is PaymentFindingState.OPEN and finding.resolution is None
    assert (finding.account_no, finding.amount, finding.reason) == (
        CLOSED,
        yuan("150.00"),
        "account_closed",
    )
    assert (finding.channel, finding.channel_txn_id) == ("alipay", "AP-1")
    assert held.payment_findings.get(finding.id) == finding
    balanced(held)


def test_assigned_money_leaves_suspense_and_pays_the_oldest_bill_first(held: Gateway) -> None:
    held.issue_bill(
        OTHER, bill_no="B-new", amount=yuan("100.00"), period="2026-11", due_date=date(2026, 12, 20)
    )
    held.issue_bill(
        OTHER, bill_no="B-old", amount=yuan("100.00"), period="2026-10", due_date=date(2026, 11, 20)
    )
    finding = only_finding(held)
    # B-old is five days overdue: the money meets it today, so the late fee it has accrued
    # (the minimum charge) is charged first, as a payment arriving today would charge it.
    fee = held.account_status(OTHER).late_fee
    assert fee == yuan("1.00")
    revenue = held.ledger_balances().get("revenue:late_fee:CNY", yuan("0.00"))
    done = held.payment_findings.assign(
        finding, OTHER, resolution_id="PF-1", reason="the customer's new flat", actor="li.na"
    )
    assert done.action is PaymentFindingAction.ASSIGNED and not done.replayed
    assert (done.account_no, done.amount, done.actor) == (OTHER, yuan("150.00"), "li.na")
    status = held.account_status(OTHER)
    owed = {b.bill_no: b.principal_due for b in status.bills}
    assert owed.get("B-old", yuan("0.00")) == yuan("0.00") and owed["B-new"] == yuan("50.00") + fee
    assert status.balance == yuan("50.00") + fee and status.late_fee == yuan("0.00")
    assert held.ledger_balances()["revenue:late_fee:CNY"] == revenue - fee
    [posted] = events(held, "payment.posted")[-1:]
    assert posted["channel"] == SUSPENSE_CHANNEL and posted["amount"] == 15000
    assert held.payment_findings.list() == []
    [resolved] = held.payment_findings.list(open_only=False)
    assert resolved.state is PaymentFindingState.ASSIGNED and resolved.resolution == done
    balanced(held)
    # The payment feed shows the money arriving on the other account, credited.
    items, _ = drain(
        lambda c, n: held.feeds.payments_since(c, n, account_no=OTHER), None, limit=50, expect=1
    )
    [arrived] = [i for i in items if isinstance(i, PaymentItem)]
    assert arrived.status is PaymentStatus.POSTED and arrived.channel == SUSPENSE_CHANNEL


def test_a_finding_is_resolved_once_and_a_resolution_id_takes_effect_once(held: Gateway) -> None:
    finding = only_finding(held)
    first = held.payment_findings.assign(
        finding, OTHER, resolution_id="PF-1", reason="same person", actor="li.na"
    )
    again = held.payment_findings.assign(
        finding, OTHER, resolution_id="PF-1", reason="same person", actor="li.na"
    )
    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    with pytest.raises(IdempotencyConflictError) as conflict:
        held.payment_findings.assign(
            finding, "3100000009", resolution_id="PF-1", reason="same person", actor="li.na"
        )
    assert conflict.value.field == "account_no"
    before = held.ledger_balances()
    with pytest.raises(PaymentFindingResolvedError) as resolved:
        held.payment_findings.assign(
            finding, OTHER, resolution_id="PF-2", reason="again", actor="wang.wu"
        )
    assert resolved.value.field == "finding_id" and "li.na" in str(resolved.value)
    with pytest.raises(PaymentFindingResolvedError):
        held.payment_findings.refund(
            finding, resolution_id="PF-3", route="alipay", reason="back", actor="wang.wu"
        )
    assert held.ledger_balances() == before
    assert held.refund_orders() == []
    balanced(held)


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"account_no": CLOSED}, AccountClosedError, "account_no"),
        ({"account_no": "3100009999"}, UnknownAccountError, "account_no"),
        ({"reason": " "}, InvalidInputError, "reason"),
        ({"actor": ""}, InvalidInputError, "actor"),
        ({"resolution_id": "PF 1"}, InvalidInputError, "resolution_id"),
        ({"finding_id": 999_999}, UnknownPaymentFindingError, "finding_id"),
    ],
)
def test_a_refused_assignment_names_the_field_and_changes_nothing(
    held: Gateway, change: dict[str, Any], error: type[Exception], field: str
) -> None:
    ask: dict[str, Any] = {
        "finding_id": only_finding(held),
        "account_no": OTHER,
        "resolution_id": "PF-1",
        "reason": "wrong account",
        "actor": "li.na",
    }
    ask.update(change)
    before = held.ledger_balances()
    with pytest.raises(error) as caught:
        held.payment_findings.assign(ask.pop("finding_id"), ask.pop("account_no"), **ask)
    assert getattr(caught.value, "field", None) == field
    assert held.ledger_balances() == before
    assert [f.state for f in held.payment_findings.list(open_only=False)] == [
        PaymentFindingState.OPEN
    ]


def test_a_refund_to_the_payer_goes_through_the_payments_own_channel(held: Gateway) -> None:
    finding = only_finding(held)
    with pytest.raises(InvalidInputError) as wrong:
        held.payment_findings.refund(
            finding, resolution_id="PF-1", route="wechatpay", reason="back", actor="li.na"
        )
    assert wrong.value.field == "route"
    with pytest.raises(InvalidInputError) as no_payee:
        held.payment_findings.refund(
            finding, resolution_id="PF-1", route="transfer", reason="back", actor="li.na"
        )
    assert no_payee.value.field == "payee"
    assert held.refund_orders() == []
    done = held.payment_findings.refund(
        finding, resolution_id="PF-1", route="alipay", reason="payer asked", actor="li.na"
    )
    assert done.refund_id == "PF-1" and done.refund_state is RefundOrderState.PENDING
    assert balance(held, "suspense:CNY") == 0 and balance(held, "refunds_payable:CNY") == -15000
    assert held.account_status(CLOSED).balance == yuan("0.00")  # the account is never credited
    balanced(held)
    done_pass = held.dispatch_refunds()
    assert done_pass.succeeded == 1
    order = held.refund_order("PF-1")
    assert order.state is RefundOrderState.SUCCEEDED
    assert order.original_channel_txn_id == "AP-1" and order.amount == yuan("150.00")
    assert balance(held, "refunds_payable:CNY") == 0 and balance(held, "clearing:alipay:CNY") == 0
    [resolved] = held.payment_findings.list(open_only=False)
    assert resolved.state is PaymentFindingState.REFUNDED
    assert resolved.resolution is not None
    assert resolved.resolution.refund_state is RefundOrderState.SUCCEEDED
    balanced(held)
    # The feed marks every movement of this refund as suspense money: not the account's.
    items, _ = drain(
        lambda c, n: held.feeds.payments_since(c, n, account_no=CLOSED), None, limit=50, expect=3
    )
    refunds = [i for i in items if isinstance(i, RefundItem)]
    assert [r.status for r in refunds] == [PaymentStatus.SUSPENSE] * 2


def test_a_failed_refund_puts_the_money_back_in_suspense_and_opens_the_finding(
    held: Gateway,
) -> None:
    finding = only_finding(held)
    route = ScriptedRoute("transfer", None)
    route.script(submits=[failed()])
    held.use_refund_routes({"transfer": route})
    held.payment_findings.refund(
        finding,
        resolution_id="PF-1",
        route="transfer",
        reason="payer asked",
        actor="li.na",
        payee=PAYEE,
    )
    balanced(held)
    assert held.dispatch_refunds().failed == 1
    [again] = held.payment_findings.list()
    assert again.id == finding and again.state is PaymentFindingState.OPEN
    assert balance(held, "suspense:CNY") == -15000 and balance(held, "refunds_payable:CNY") == 0
    assert held.account_status(CLOSED).balance == yuan("0.00")
    [failed_refund] = held.payment_findings.resolutions(finding)
    assert failed_refund.reopened_at is not None
    assert failed_refund.refund_state is RefundOrderState.FAILED
    balanced(held)
    # Open again: finance can now assign it.
    held.payment_findings.assign(
        finding, OTHER, resolution_id="PF-2", reason="found the customer", actor="wang.wu"
    )
    assert held.account_status(OTHER).credit == yuan("150.00")
    assert [r.resolution_id for r in held.payment_findings.resolutions(finding)] == [
        "PF-1",
        "PF-2",
    ]
    balanced(held)


# -- the property: suspense is the open findings ----------------------------------------------

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["pay", "assign", "refund", "refund_fails", "assign_again"]),
        st.integers(1, 5_000_000),
    ),
    min_size=1,
    max_size=10,
)


def _story(gateway: Gateway, steps: list[tuple[str, int]]) -> None:
    route = ScriptedRoute("transfer", None)
    gateway.use_refund_routes({"transfer": route})
    close(gateway, CLOSED)
    gateway.open_account(OTHER)
    gateway.issue_bill(
        OTHER, bill_no="B-1", amount=yuan("300.00"), period="2026-10", due_date=date(2026, 12, 1)
    )
    for n, (step, amount) in enumerate(steps):
        if step == "pay":
            pay(gateway, CLOSED, f"AP-{n}", Money(amount, "CNY"))
            balanced(gateway)
            continue
        found = gateway.payment_findings.list(open_only=step != "assign_again")
        if not found:
            continue
        finding = found[amount % len(found)].id
        try:
            if step in ("assign", "assign_again"):
                gateway.payment_findings.assign(
                    finding, OTHER, resolution_id=f"R-{n}", reason="found", actor="li.na"
                )
            else:
                if step == "refund_fails":
                    route.script(submits=[failed()])
                gateway.payment_findings.refund(
                    finding,
                    resolution_id=f"R-{n}",
                    route="transfer",
                    reason="back",
                    actor="li.na",
                    payee=PAYEE,
                )
                gateway.dispatch_refunds()
        except PaymentFindingResolvedError:
            assert step == "assign_again"
        balanced(gateway)


def _gateway(url: str) -> Gateway:
    return Gateway.open(
        settings=Settings(database_url=url, seal_every=0, sqlite_synchronous="OFF"),
        clock=FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC) + timedelta(0)),
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_sqlite_suspense_is_always_the_open_findings(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as where, _gateway(fresh_sqlite_url(Path(where))) as gw:
        _story(gw, steps)


@pytest.mark.postgres
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_postgresql_suspense_is_always_the_open_findings(
    pg_template: str, steps: list[tuple[str, int]]
) -> None:
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{pg_template}"
    empty_postgres(url)
    with _gateway(url) as gateway:
        _story(gateway, steps)


def test_two_people_resolving_one_finding_at_once_resolve_it_once(held: Gateway) -> None:
    finding = only_finding(held)
    held.open_account("3100000003")
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def resolve(account_no: str, resolution_id: str) -> None:
        start.wait()
        try:
            outcomes.append(
                held.payment_findings.assign(
                    finding, account_no, resolution_id=resolution_id, reason="mine", actor="x"
                )
            )
        except PaymentFindingResolvedError as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=resolve, args=(OTHER, "PF-A")),
        threading.Thread(target=resolve, args=("3100000003", "PF-B")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == [
        "PaymentFindingResolution",
        "PaymentFindingResolvedError",
    ]
    credited = [held.account_status(a).credit.minor for a in (OTHER, "3100000003")]
    assert sorted(credited) == [0, 15000]
    balanced(held)
