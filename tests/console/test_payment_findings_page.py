"""Payment findings in the console's finance view, over real HTTP on both databases: finance
sees the money held for closed accounts and resolves it (assigned or refunded) with a
reason, audited; a form sent twice takes effect once; a clerk and a forged form are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from paygate.api.config import ApiConfig
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.refunds.findings import PaymentFindingState
from paygate.refunds.model import RefundOrderState
from tests.api.support import LiveServer, live_server
from tests.console.conftest import Clients, ConsoleWorld
from tests.console.support import DISCONNECTED
from tests.refund_fakes import ScriptedRoute

CLOSED = "3100000077"


@pytest.fixture
def transfer() -> ScriptedRoute:
    return ScriptedRoute("transfer", None)


@pytest.fixture
def server(db_url: str, world: ConsoleWorld, transfer: ScriptedRoute) -> Iterator[LiveServer]:
    """The console with a bank-transfer refund route configured."""
    config = ApiConfig(refund_routes={"transfer": transfer})
    with live_server(db_url, config, clock=world.clock) as running:
        yield running


@pytest.fixture
def finding(world: ConsoleWorld) -> int:
    """A payment of 88.00 to a closed account: held in suspense."""
    gateway = world.gateway
    gateway.open_account(CLOSED, name="王五")
    gateway.close_account(CLOSED, closure_id="CL-77", reason="moved away")
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K9:cash-7701",
            account_no=CLOSED,
            amount=Money(8_800, "CNY"),
            paid_at=world.clock.now(),
        )
    )
    [held] = gateway.payment_findings.list()
    return held.id


def audit(world: ConsoleWorld, action: str) -> list[tuple[object, ...]]:
    return world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT username, subject, outcome, reason FROM console_audit WHERE action = :a "
            "ORDER BY at, id",
            {"a": action},
        ),
        write=False,
    )


def form_id(page: str, finding: int, kind: str) -> str:
    match = re.search(rf'name="resolution_id" value="(pf{finding}-{kind}-[0-9a-f]+)"', page)
    assert match, page
    return match.group(1)


def test_finance_assigns_a_payment_held_for_a_closed_account(
    world: ConsoleWorld, clients: Clients, finding: int
) -> None:
    finance = clients.signed_in("wang.finance")
    page = finance.http.get("/console/finance").text
    assert f'id="payment-finding-{finding}"' in page and "K9:cash-7701" in page
    assert "销户后来款" in page and "¥88.00" in page
    resolution = form_id(page, finding, "a")
    path = f"/console/payment-findings/{finding}/assign"
    ask = {"account_no": DISCONNECTED, "reason": "客户持凭证来柜台", "resolution_id": resolution}
    # A clerk may not; a form without the session's token is refused; nothing moved.
    clerk = clients.signed_in("li.clerk")
    assert clerk.post(path, ask).status_code == 403
    assert finance.post(path, ask, csrf="forged").status_code == 403
    assert world.gateway.payment_findings.list()[0].id == finding
    before = world.gateway.account_status(DISCONNECTED)
    assert finance.post(path, {**ask, "reason": ""}).status_code == 422
    done = finance.post(path, ask)
    assert done.status_code == 303
    again = finance.post(path, ask)  # the same form sent twice: answered, not done again
    assert again.status_code == 303
    # The account's overdue bill meets the money today: its accrued late fee is charged first.
    after = world.gateway.account_status(DISCONNECTED)
    assert before.late_fee > Money(0, "CNY") and after.late_fee == Money(0, "CNY")
    assert after.balance == before.balance + before.late_fee - Money(8_800, "CNY")
    [held] = world.gateway.payment_findings.list(open_only=False)
    assert held.state is PaymentFindingState.ASSIGNED and held.resolution is not None
    assert (held.resolution.actor, held.resolution.reason) == ("wang.finance", "客户持凭证来柜台")
    other = finance.post(path, {**ask, "resolution_id": "pf-other-1"})
    assert other.status_code == 409  # resolved already
    outcomes = [(r[0], r[2]) for r in audit(world, "assign_payment_finding")]
    assert outcomes == [  # the form without a reason was refused before the trail
        ("wang.finance", "requested"),
        ("wang.finance", "done"),
        ("wang.finance", "requested"),
        ("wang.finance", "done"),
        ("wang.finance", "requested"),
        ("wang.finance", "refused"),
    ]
    assert f'id="payment-finding-{finding}"' not in finance.http.get("/console/finance").text


def test_finance_refunds_a_payment_held_for_a_closed_account_to_the_payer(
    world: ConsoleWorld, clients: Clients, finding: int
) -> None:
    finance = clients.signed_in("wang.finance")
    page = finance.http.get("/console/finance").text
    path = f"/console/payment-findings/{finding}/refund"
    ask = {
        "route": "transfer",
        "reason": "付款人申请原路退回",
        "resolution_id": form_id(page, finding, "r"),
    }
    refused = finance.post(path, ask)  # a transfer needs the payee
    assert refused.status_code == 422 and world.gateway.refund_orders() == []
    payee = {
        "payee_name": "王五",
        "payee_account": "6222020200115566",
        "payee_bank": "102100099996",
    }
    assert finance.post(path, {**ask, **payee}).status_code == 303
    [(_, order)] = world.gateway.refund_orders()
    assert order.refund_id == ask["resolution_id"] and order.amount == Money(8_800, "CNY")
    assert order.state is RefundOrderState.PENDING and order.account_no == CLOSED
    assert world.gateway.ledger_balances()["refunds_payable:CNY"].minor == -8_800
    assert [r[2] for r in audit(world, "refund_payment_finding")] == [
        "requested",
        "refused",
        "requested",
        "done",
    ]
