"""The demo, read back from its database: every channel's payments came through its adapter,
the books agree with what the kiosk and the recharge vouchers say, and the impostors posted
nothing. One small run per database kind serves every test here."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from paygate.channels.kiosk import CloseOutcome, split_channel_txn_id
from paygate.demo import DemoSummary, run_demo
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.store import migrate
from tests.conftest import PG_ADMIN_URL

Demo = tuple[str, DemoSummary]

MOBILE = frozenset({"alipay", "wechatpay"})


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """A demo of 40 accounts on a fresh database of each kind, and its summary."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
        yield url, run_demo(url, accounts=40)
        return
    # A database of its own, migrated here: the session's shared one holds other tests' rows.
    name = f"paygate_demo_{uuid.uuid4().hex[:12]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{base}/{name}"
        migrate.upgrade(url)
        yield url, run_demo(url, accounts=40)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """What ``sql`` reads from the demo's database."""
    with Gateway.open(url) as gateway:
        return gateway.store.run(lambda tx: tx.all(sql, params), write=False)


def test_every_channel_took_payments_through_its_adapter(demo: Demo) -> None:
    url, summary = demo
    by_channel = dict(rows(url, "SELECT channel, COUNT(*) FROM payments GROUP BY channel"))
    families = {"mobile" if channel in MOBILE else channel for channel in by_channel}
    assert families == {"mobile", "online", "kiosk", "pos", "bank_agent", "voucher"}
    # Every payment in the ledger is one the demo saw a channel's adapter accept.
    assert by_channel == dict(summary.payments)
    # Each carries the identifiers only its adapter gives: the authenticated kiosk and its own
    # transaction id, the POS terminal's batch and trace, the bank's code before its serial.
    for channel, txn, terminal in rows(
        url, "SELECT channel, channel_txn_id, terminal_id FROM payments"
    ):
        if channel == "kiosk":
            assert terminal == "K0001" and split_channel_txn_id(txn) is not None, txn
        elif channel == "pos":
            assert terminal == "HALL0001" and txn.startswith("HALL0001-"), txn
        elif channel == "bank_agent":
            assert txn.startswith("ICBC:") and terminal is None, txn
        else:
            assert terminal is None, txn
    # Online payments were ordered first: one order per payment, and the forged one.
    (orders,) = rows(url, "SELECT COUNT(*) FROM payment_orders WHERE channel = 'online'")
    assert orders[0] == summary.payments["online"] + 1
    # A card's redemption is its payment: the serial is the transaction id.
    unlinked = rows(
        url,
        "SELECT p.channel_txn_id FROM payments p LEFT JOIN vouchers v ON v.payment_id = p.id "
        "WHERE p.channel = 'voucher' AND (v.serial IS NULL OR v.serial <> p.channel_txn_id "
        "OR v.status <> 'redeemed')",
    )
    assert unlinked == []
    answered = {channel: set(labels) for channel, labels in summary.answers.items()}
    assert answered["alipay"] == {"200 success"}
    assert answered["wechatpay"] == {"204"}


def test_voucher_liability_is_cards_sold_less_cards_redeemed(demo: Demo) -> None:
    url, summary = demo
    [(sold, redeemed)] = rows(
        url,
        "SELECT COALESCE(SUM(CASE WHEN v.status IN ('activated', 'redeemed') "
        "THEN b.face_value ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN v.status = 'redeemed' THEN b.face_value ELSE 0 END), 0) "
        "FROM vouchers v JOIN voucher_batches b ON b.id = v.batch_id",
    )
    [(balance,)] = rows(
        url,
        "SELECT COALESCE(SUM(b.balance), 0) FROM ledger_accounts l "
        "JOIN ledger_balances b ON b.account_id = l.id WHERE l.code = 'voucher_liability:CNY'",
    )
    [(paid_by_card,)] = rows(
        url, "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE channel = 'voucher'"
    )
    assert int(sold) > int(redeemed) > 0
    assert int(paid_by_card) == int(redeemed)
    # A liability is a credit balance.
    assert -int(balance) == int(sold) - int(redeemed)
    assert summary.voucher_liability == Money(int(sold) - int(redeemed), "CNY")


def test_every_kiosk_payment_is_in_its_terminals_close(demo: Demo) -> None:
    url, summary = demo
    days = rows(
        url,
        "SELECT p.terminal_id, COUNT(*), SUM(p.amount), c.ledger_count, c.ledger_total, "
        "c.reported_count, c.reported_total FROM payments p LEFT JOIN kiosk_closes c "
        "ON c.terminal_id = p.terminal_id AND c.business_date = p.business_date "
        "WHERE p.channel = 'kiosk' AND p.status = 'posted' "
        "GROUP BY p.terminal_id, p.business_date, c.ledger_count, c.ledger_total, "
        "c.reported_count, c.reported_total",
    )
    assert days
    for terminal, count, total, ledger_count, ledger_total, kiosk_count, kiosk_total in days:
        assert terminal == "K0001"
        assert (ledger_count, ledger_total) == (count, total)
        assert (kiosk_count, kiosk_total) == (count, total)
    assert all(close.reported_matches_ledger for close in summary.kiosk_closes)
    outcomes = Counter(close.outcome for close in summary.kiosk_closes)
    assert outcomes[CloseOutcome.SHORTAGE] == 1
    assert outcomes[CloseOutcome.OVERAGE] == 0
    [short] = [c for c in summary.kiosk_closes if c.outcome is CloseOutcome.SHORTAGE]
    assert short.cash_difference == Money(-5_000, "CNY")


def test_the_forged_messages_posted_nothing(demo: Demo) -> None:
    url, summary = demo
    forged = {message.channel: message for message in summary.forged}
    assert set(forged) == {
        "alipay",
        "wechatpay",
        "online",
        "kiosk",
        "pos",
        "bank_agent",
        "voucher",
    }
    for channel, message in forged.items():
        assert message.status_code == 401, channel
        expected = "wrong_pin" if channel == "voucher" else "invalid_signature"
        assert message.error_code == expected, channel
        assert not message.posted, channel
    [(payments,)] = rows(url, "SELECT COUNT(*) FROM payments")
    assert int(payments) == sum(summary.payments.values())
    # The card whose PIN was guessed: one wrong PIN recorded against it, and never redeemed.
    [(serial, status, payment_id, failed)] = rows(
        url,
        "SELECT v.serial, v.status, v.payment_id, v.failed_attempts FROM vouchers v "
        "JOIN voucher_attempts a ON a.serial = v.serial WHERE a.outcome = 'wrong_pin'",
    )
    assert (status, payment_id, failed) == ("activated", None, 1)
    assert rows(url, "SELECT id FROM payments WHERE channel_txn_id = :s", {"s": serial}) == []


def test_the_ledger_verifies_clean(demo: Demo) -> None:
    url, summary = demo
    assert summary.verify is not None and summary.verify.ok
    with Gateway.open(url) as gateway:
        report = gateway.verify()
    assert report.ok, report.findings[:5]
    assert report.entries == summary.verify.entries
