"""Gateway.reconcile: the same run as paygate.reconcile.reconcile, from the one door."""

from __future__ import annotations

from datetime import UTC, datetime

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, StatementLine
from paygate.money import Money
from paygate.reconcile import FindingClass


def test_gateway_reconcile_matches_and_finds_what_the_statement_lacks(
    gateway: Gateway, clock: FixedClock
) -> None:
    gateway.open_account("A1")
    paid_at = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    for txn in ("T1", "T2"):
        gateway.pay(
            PaymentIntent(
                channel="alipay",
                channel_txn_id=txn,
                account_no="A1",
                amount=Money(1_000, "CNY"),
                paid_at=paid_at,
            )
        )
    line = StatementLine(
        line_no=2,
        channel_txn_id="T1",
        account_no="A1",
        gross=Money(1_000, "CNY"),
        fee=Money(6, "CNY"),
        net=Money(994, "CNY"),
        occurred_at=paid_at,
    )
    run = gateway.reconcile("alipay", paid_at.date(), [line], file_sha256="a" * 64)
    assert run.line_count == 1
    assert run.total(FindingClass.ONLY_IN_LEDGER).count == 1  # T2: not on the statement
    again = gateway.reconcile("alipay", paid_at.date(), [line], file_sha256="a" * 64)
    assert again.replayed and again.id == run.id
