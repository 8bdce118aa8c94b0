"""The read functions the CLI, the demo and the HTTP API read through, on both databases.

They sit beside each table's owner (supply, ledger, reports, the store) so that no edge holds
SQL; these tests pin what they answer, the filters included.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.gateway import Gateway
from paygate.ledger import entry_count
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.reports import database_figures
from paygate.supply import OrderStatus, Severity, breach_counts, list_orders

CREATED = datetime(2026, 11, 2, 8, 30, 15, 250_000, tzinfo=UTC)


@pytest.fixture
def gateway(db_url: str) -> Gateway:
    """A disconnected account paid off (one open reconnection order) and one that is not."""
    with Gateway.open(db_url) as gateway:
        for account in ("A1", "A2"):
            gateway.open_account(account)
            gateway.issue_bill(
                account,
                bill_no=f"B-{account}",
                amount=Money(100, "CNY"),
                period="2026-10",
                due_date=CREATED.date() - timedelta(days=20),
            )
            gateway.disconnect(account, "arrears")
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K1",
                account_no="A1",
                amount=Money(10_000, "CNY"),
                paid_at=CREATED,
            )
        )
    return Gateway.open(db_url)


def test_orders_are_listed_typed_and_filtered(gateway: Gateway) -> None:
    with gateway:
        every = gateway.store.run(list_orders, write=False)
        [order] = every
        assert (order.kind, order.status, order.account_no) == (
            "reconnect",
            OrderStatus.OPEN,
            "A1",
        )
        assert order.created_at.tzinfo is not None and order.due_at > order.created_at
        assert order.dispatched_at is None and order.attempts == 0 and order.last_error is None

        def listed(**given: str) -> list[int]:
            return [o.id for o in gateway.store.run(lambda tx: list_orders(tx, **given))]

        assert listed(status="open") == [order.id]
        assert listed(kind="reconnect", status="open") == [order.id]
        assert listed(status="completed") == []
        assert listed(kind="disconnect") == []
        # An operator's word that names no status lists nothing; it does not fail.
        assert listed(status="no-such-status") == []


def test_orders_list_prints_business_time_alike_on_both_databases(
    gateway: Gateway, db_url: str
) -> None:
    with gateway:
        [order] = gateway.store.run(list_orders, write=False)
        zone = ZoneInfo(gateway.settings.timezone)
    result = CliRunner().invoke(app, ["supply-orders", "list", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()
    assert header.split("\t")[:6] == ["ORDER", "kind", "status", "account", "created", "due"]
    cells = line.split("\t")
    assert cells[:4] == [str(order.id), "reconnect", "open", "A1"]
    # ISO 8601 in the business zone with its offset, whichever database stored it.
    assert cells[4] == order.created_at.astimezone(zone).isoformat(timespec="seconds")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", cells[5])
    assert cells[9:] == ["0", ""]


def test_breaches_are_counted_by_severity_and_open_ones_reach_the_metrics(
    gateway: Gateway,
) -> None:
    with gateway:
        assert gateway.store.run(breach_counts, write=False) == {}
        [order] = gateway.store.run(list_orders, write=False)
        recorded = gateway.check_deadlines(now=order.due_at + timedelta(days=5))
        assert recorded
        counts = gateway.store.run(breach_counts, write=False)
        assert sum(counts.values()) == len(recorded)
        assert set(counts) <= set(Severity)
        figures = gateway.store.run(database_figures, write=False)
        assert dict(figures.open_breaches) == {s.value: n for s, n in counts.items()}
        assert figures.payments == (("kiosk", "posted", 1),)
        assert figures.outbox_dead == 0


def test_the_entry_count_moves_with_money_and_the_store_answers_a_ping(gateway: Gateway) -> None:
    with gateway:
        before = gateway.store.run(entry_count, write=False)
        assert before == gateway.verify().entries
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K2",
                account_no="A2",
                amount=Money(100, "CNY"),
                paid_at=CREATED,
            )
        )
        assert gateway.store.run(entry_count, write=False) > before
        gateway.store.ping()
