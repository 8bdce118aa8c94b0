"""Resolving what reconciliation found: the policy's late payments and suspense, people's
reversals, confirmations and assignments, each audited and each posted exactly once."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import StatementLineKind, SupplyState
from paygate.reconcile import (
    FindingClass,
    FindingNotOpenError,
    FindingStatus,
    ReconcilePolicy,
    ResolutionAction,
    SuspenseAlreadyAssignedError,
    assign_suspense,
    load_run,
    release_suspense,
    resolve_finding,
    suspense_items,
)
from tests.reconcile.support import (
    all_findings,
    balance,
    cny,
    journal_entries,
    line,
    pay,
    run_lines,
    scalar,
)

CLEARING = "clearing:kiosk:CNY"


@pytest.fixture
def accounts(gateway: Gateway) -> Gateway:
    for account in ("A1", "A2"):
        gateway.open_account(account)
    return gateway


def test_a_late_line_clears_a_disconnected_account_and_orders_reconnection(
    gateway: Gateway,
) -> None:
    gateway.open_account("H7")
    gateway.issue_bill(
        "H7", bill_no="H7-10", amount=cny(20_000), period="2026-10", due_date=date(2026, 11, 10)
    )
    gateway.disconnect("H7", "arrears")
    owed = gateway.account_status("H7", as_of=date(2026, 11, 24)).arrears
    assert owed.minor > 20_000  # principal and the late fee of the days overdue
    run = run_lines(gateway, [line(2, "KZ:cash-77", "H7", owed.minor)])
    [finding] = all_findings(gateway, run)
    assert finding.finding_class is FindingClass.ONLY_IN_STATEMENT
    assert finding.status is FindingStatus.RESOLVED
    resolution = finding.resolution
    assert resolution is not None and resolution.action is ResolutionAction.POSTED
    assert resolution.actor == "reconciliation" and resolution.payment_id is not None
    status = gateway.account_status("H7", as_of=date(2026, 11, 24))
    assert status.arrears.minor == 0
    assert status.supply_state is SupplyState.RECONNECTION_PENDING
    receipt = scalar(
        gateway,
        "SELECT late_fee FROM payments WHERE id = :p",
        {"p": resolution.payment_id},
    )
    assert receipt == owed.minor - 20_000
    assert run.fully_reconciled


def test_suspense_is_assigned_once_and_posts_the_payment_once(accounts: Gateway) -> None:
    run = run_lines(accounts, [line(2, "T77", "WHO?", 4200)])
    assert run.in_suspense == 1 and not run.fully_reconciled
    assert balance(accounts, "suspense:CNY") == -4200
    assert balance(accounts, CLEARING) == 4200
    [item] = suspense_items(accounts)
    assert (item.channel, item.line_no, item.channel_txn_id, item.account_no) == (
        "kiosk",
        2,
        "T77",
        "WHO?",
    )
    receipt = assign_suspense(accounts, item.id, "A2", actor="li.na")
    assert receipt.account_no == "A2" and receipt.amount == cny(4200)
    assert balance(accounts, "suspense:CNY") == 0
    assert balance(accounts, CLEARING) == 4200  # debited once, by the payment
    assert balance(accounts, "receivable:A2") == -4200
    entries = journal_entries(accounts)
    with pytest.raises(SuspenseAlreadyAssignedError, match="already assigned to account A2"):
        assign_suspense(accounts, item.id, "A1", actor="someone.else")
    assert journal_entries(accounts) == entries
    assert balance(accounts, "receivable:A1") == 0
    assert suspense_items(accounts) == []
    [finding] = all_findings(accounts, load_run(accounts, run.id))
    assert finding.status is FindingStatus.RESOLVED
    assert finding.resolution is not None
    assert finding.resolution.action is ResolutionAction.ASSIGNED
    assert finding.resolution.actor == "li.na"
    assert load_run(accounts, run.id).fully_reconciled
    # The channel's next file still lists the line: it is the customer's payment now.
    again = run_lines(accounts, [line(2, "T77", "WHO?", 4200)], name="second file")
    assert again.fully_reconciled and again.in_suspense == 0
    assert accounts.verify().ok


def test_money_released_from_suspense_leaves_no_trace_on_clearing(accounts: Gateway) -> None:
    run_lines(accounts, [line(2, "T5", "GHOST", 900)])
    [item] = suspense_items(accounts)
    release_suspense(accounts, item.id, actor="li.na", reason="the channel withdrew the line")
    assert balance(accounts, "suspense:CNY") == 0 and balance(accounts, CLEARING) == 0
    with pytest.raises(SuspenseAlreadyAssignedError, match="already released"):
        assign_suspense(accounts, item.id, "A1")


def test_a_person_reverses_a_payment_the_channel_never_settled(
    accounts: Gateway, clock: FixedClock
) -> None:
    ghost = pay(accounts, "T1", "A1", 3000)
    run = run_lines(accounts, [])
    clock.set(clock.now() + timedelta(days=2))
    late = load_run(accounts, run.id)
    assert late.open_findings == 1
    [finding] = all_findings(accounts, late)
    done = resolve_finding(
        accounts,
        run.id,
        finding.seq,
        ResolutionAction.REVERSED,
        actor="wang.fang",
        reason="kiosk K1 never took this payment",
    )
    assert (done.action, done.actor, done.payment_id) == (
        ResolutionAction.REVERSED,
        "wang.fang",
        ghost.payment_id,
    )
    status = scalar(
        accounts,
        "SELECT COUNT(*) FROM payments WHERE id = :p AND status = 'reversed'",
        {"p": ghost.payment_id},
    )
    assert status == 1 and done.entry_id is not None
    assert balance(accounts, CLEARING) == 0
    assert load_run(accounts, run.id).fully_reconciled
    with pytest.raises(FindingNotOpenError):
        resolve_finding(
            accounts, run.id, finding.seq, "reversed", actor="wang.fang", reason="again"
        )


def test_a_reversal_interrupted_before_it_was_recorded_is_recorded_not_repeated(
    accounts: Gateway,
) -> None:
    ghost = pay(accounts, "T1", "A1", 3000)
    run = run_lines(accounts, [])
    [finding] = all_findings(accounts, run)
    # The reversal committed, then the process died before the resolution was written.
    reversal = accounts.reverse(ghost.payment_id, "kiosk never took it")
    entries = journal_entries(accounts)
    done = resolve_finding(
        accounts, run.id, finding.seq, "reversed", actor="wang.fang", reason="retry"
    )
    assert done.entry_id == reversal.reversal_entry_id
    assert journal_entries(accounts) == entries


def test_a_refund_the_ledger_missed_is_reversed_by_a_person(accounts: Gateway) -> None:
    original = pay(accounts, "P1", "A1", 2500)
    lines = [
        line(2, "P1", "A1", 2500),
        line(3, "R1", "A1", 2500, kind=StatementLineKind.REFUND, original="P1"),
    ]
    run = run_lines(accounts, lines)
    [finding] = all_findings(accounts, run)
    assert finding.finding_class is FindingClass.ONLY_IN_STATEMENT and finding.open_finding
    done = resolve_finding(
        accounts, run.id, finding.seq, "reversed", actor="wang.fang", reason="refund R1"
    )
    assert done.payment_id == original.payment_id
    assert balance(accounts, "receivable:A1") == 0
    # Tomorrow's corrected file sees the refund against a reversed original.
    again = run_lines(accounts, lines, name="corrected")
    assert [f.finding_class for f in all_findings(accounts, again)] == [
        FindingClass.REVERSAL_MATCHED
    ]


def test_a_confirmation_carries_over_to_the_next_file_of_the_day(accounts: Gateway) -> None:
    pay(accounts, "T1", "A1", 1000)
    lines = [line(2, "T1", "A1", 1100)]
    first = run_lines(accounts, lines, name="v1")
    [mismatch] = all_findings(accounts, first)
    with pytest.raises(FindingNotOpenError, match="no payment to reverse"):
        resolve_finding(accounts, first.id, mismatch.seq, "reversed", actor="x", reason="no")
    resolve_finding(
        accounts, first.id, mismatch.seq, "confirmed", actor="zhao.lei", reason="fee adjusted"
    )
    assert load_run(accounts, first.id).fully_reconciled
    second = run_lines(accounts, [*lines, line(3, "T1", "A1", 1100)], name="v2")
    found = {f.line_key: f for f in all_findings(accounts, second)}
    assert found["txn:T1"].status is FindingStatus.RESOLVED
    assert found["txn:T1#2"].status is FindingStatus.OPEN
    with pytest.raises(FindingNotOpenError, match="superseded"):
        resolve_finding(accounts, first.id, mismatch.seq, "confirmed", actor="x", reason="y")


def test_the_policy_decides_what_is_automatic(accounts: Gateway) -> None:
    lines = [
        line(2, "T1", "A1", 500),
        line(3, "T2", "A1", 90_000),  # above the limit
        line(4, "T3", "NOBODY", 700),
        line(5, "has space", "A2", 300),  # no channel transaction id the Gateway accepts
    ]
    policy = ReconcilePolicy(max_late_payment=50_000, suspense_unknown_accounts=False)
    run = run_lines(accounts, lines, policy=policy)
    found = {f.line_no: f for f in all_findings(accounts, run)}
    assert found[2].status is FindingStatus.RESOLVED
    assert found[3].status is FindingStatus.OPEN
    assert found[3].note == "above the policy's limit for late payments"
    assert found[4].status is FindingStatus.OPEN and found[4].note is None
    assert found[5].status is FindingStatus.OPEN
    assert (found[5].note or "").startswith("cannot be posted: channel_txn_id")
    assert run.open_findings == 3
    assert balance(accounts, "suspense:CNY") == 0
    assert accounts.verify().ok


def test_money_a_corrected_file_dropped_is_released_from_suspense_by_a_person(
    accounts: Gateway,
) -> None:
    run_lines(accounts, [line(2, "T1", "GHOST", 600)], name="v1")
    corrected = run_lines(accounts, [], name="v2")
    [orphan] = all_findings(accounts, corrected)
    assert orphan.line_key.startswith("suspense:")
    done = resolve_finding(
        accounts, corrected.id, orphan.seq, "reversed", actor="li.na", reason="line withdrawn"
    )
    assert done.action is ResolutionAction.REVERSED
    assert balance(accounts, "suspense:CNY") == 0 and balance(accounts, CLEARING) == 0
    assert suspense_items(accounts) == []
    assert load_run(accounts, corrected.id).fully_reconciled
