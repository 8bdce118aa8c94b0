"""One posting path: every journal entry, whoever decides it, is posted by payments and
counted toward the next seal once its transaction commits (never when it rolls back)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import psycopg
import pytest

from paygate.gateway import Gateway
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import PaymentIntent
from paygate.reconcile import assign_suspense, reconcile_bank_file, suspense_items
from paygate.store.engine import Store, Tx
from tests.reconcile.support import AT, cny, journal_entries, line, pay, run_lines, scalar
from tests.reconcile.test_bank_leg import REFERENCES, SETTLED_ON, mt940


@pytest.fixture
def sealing(gateway: Gateway) -> Gateway:
    """A gateway that seals after every entry, with one account."""
    gateway.settings = gateway.settings.model_copy(update={"seal_every": 1})
    gateway.open_account("A1")
    return gateway


def _unsealed(gateway: Gateway) -> int:
    return scalar(gateway, "SELECT COUNT(*) FROM seal_queue")


def test_a_suspense_entry_of_reconciliation_is_sealed_on_schedule(sealing: Gateway) -> None:
    run = run_lines(sealing, [line(2, "T77", "WHO?", 4200)])
    assert run.in_suspense == 1
    assert journal_entries(sealing) == 1
    assert _unsealed(sealing) == 0


def test_a_late_payment_posted_by_reconciliation_is_sealed_on_schedule(sealing: Gateway) -> None:
    run = run_lines(sealing, [line(2, "T9", "A1", 1500)])
    assert run.fully_reconciled
    assert journal_entries(sealing) == 1
    assert _unsealed(sealing) == 0


def test_a_payment_assigned_out_of_suspense_is_sealed_on_schedule(sealing: Gateway) -> None:
    run_lines(sealing, [line(2, "T77", "WHO?", 4200)])
    [item] = suspense_items(sealing)
    assign_suspense(sealing, item.id, "A1", actor="li.na")
    assert journal_entries(sealing) == 3  # suspense in, the payment, suspense out
    assert _unsealed(sealing) == 0


def test_a_bank_leg_settlement_is_sealed_on_schedule(sealing: Gateway, tmp_path: Path) -> None:
    pay(sealing, "K1:cash-1", "A1", 12_000)
    run_lines(sealing, [line(2, "K1:cash-1", "A1", 12_000, fee=72)])
    statement = mt940(tmp_path / "bank.sta", [("119,28", f"{SETTLED_ON:%y%m%d}", "KIOSK 20261124")])
    reconcile_bank_file(sealing, statement, references=REFERENCES)
    assert journal_entries(sealing) == 2  # the payment, the settlement
    assert _unsealed(sealing) == 0


def test_payments_bills_and_reversals_are_counted_once_each(gateway: Gateway) -> None:
    gateway.settings = gateway.settings.model_copy(update={"seal_every": 4})
    gateway.open_account("A1")
    gateway.issue_bill(
        "A1", bill_no="B1", amount=cny(1000), period="2026-11", due_date=date(2026, 12, 10)
    )
    receipt = pay(gateway, "T1", "A1", 1000)
    pay(gateway, "T1", "A1", 1000)  # replayed: nothing posted, nothing counted
    assert gateway.payments.pending_seal == 2
    gateway.reverse(receipt.payment_id, "customer's mistake")
    assert gateway.payments.pending_seal == 3 and _unsealed(gateway) == 3
    pay(gateway, "T2", "A1", 500)  # the fourth entry: sealed
    assert gateway.payments.pending_seal == 0 and _unsealed(gateway) == 0


def test_an_entry_of_a_rolled_back_transaction_is_not_counted(gateway: Gateway) -> None:
    def work(tx: Tx) -> None:
        payments = gateway.payments
        cash = payments.ledger_account(tx, "cash:CNY", AccountKind.BANK, "CNY")
        fees = payments.ledger_account(tx, "fees:x:CNY", AccountKind.CHANNEL_FEES, "CNY")
        now = gateway.clock.now()
        payments.post(
            tx,
            [
                EntryDraft(
                    kind="test",
                    reference="rolled-back",
                    memo="an entry whose transaction fails after it",
                    business_date=now.date(),
                    posted_at=now,
                    postings=(PostingDraft(cash, 100, "CNY"), PostingDraft(fees, -100, "CNY")),
                    shard_key=1,
                )
            ],
        )
        raise RuntimeError("the decision fails after posting")

    with pytest.raises(RuntimeError, match="fails after posting"):
        gateway.store.run(work)
    assert gateway.payments.pending_seal == 0
    assert journal_entries(gateway) == 0


def test_after_commit_runs_once_after_commit_and_never_after_a_rollback(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    seen: list[str] = []
    try:
        store.run(lambda tx: tx.after_commit(lambda: seen.append("committed")))
        with pytest.raises(RuntimeError):
            store.run(lambda tx: (tx.after_commit(lambda: seen.append("rolled back")), _fail()))
        with store.transaction() as tx:
            tx.after_commit(lambda: seen.append("block"))
            assert seen == ["committed"]  # not before the block commits
    finally:
        store.dispose()
    assert seen == ["committed", "block"]


def test_a_failing_callback_never_runs_the_committed_work_again(sqlite_url: str) -> None:
    """A conflict raised by what follows a commit (a seal) is not the decision's conflict: the
    decision committed and must not be decided again."""
    store = Store(sqlite_url)
    runs: list[int] = []

    def conflict() -> None:
        raise psycopg.errors.SerializationFailure("a concurrent sealer")

    def work(tx: Tx) -> None:
        runs.append(1)
        tx.after_commit(conflict)

    try:
        with pytest.raises(psycopg.errors.SerializationFailure):
            store.run(work)
    finally:
        store.dispose()
    assert runs == [1]


def _fail() -> None:
    raise RuntimeError("the decision fails")


def test_every_entry_of_one_write_is_queued_for_sealing_once(gateway: Gateway) -> None:
    # A chunk of pay_many writes all its entries in one statement; the journal's trigger
    # (once per statement on PostgreSQL, per row on SQLite) queues each of them exactly once.
    gateway.settings = gateway.settings.model_copy(update={"seal_every": 0, "pay_many_chunk": 50})
    for n in range(5):
        gateway.open_account(f"Q{n}")
    intents = [
        PaymentIntent(
            channel="bank_transfer",
            channel_txn_id=f"SQ{i}",
            account_no=f"Q{i % 5}",
            amount=cny(100 + i),
            paid_at=AT,
        )
        for i in range(120)
    ]
    outcomes = gateway.pay_many(intents)
    assert [o.status for o in outcomes] == ["posted"] * 120
    entries = gateway.store.run(
        lambda tx: [int(r[0]) for r in tx.all("SELECT id FROM journal_entries ORDER BY id")]
    )
    queued = gateway.store.run(
        lambda tx: [int(r[0]) for r in tx.all("SELECT entry_id FROM seal_queue ORDER BY entry_id")]
    )
    assert len(entries) >= 120
    assert queued == entries
    assert gateway.seal() == len(entries)
    assert _unsealed(gateway) == 0
