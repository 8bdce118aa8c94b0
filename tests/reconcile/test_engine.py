"""The reconciliation engine told as finance's mornings: what a channel's statement and the
ledger say about a business day, every line and payment classified, on both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from paygate.channels.base import StatementSource
from paygate.clock import FixedClock
from paygate.errors import CurrencyMismatchError, ParseError, UnsupportedOperationError
from paygate.gateway import Gateway
from paygate.models import StatementLine, StatementLineKind
from paygate.reconcile import (
    FindingClass,
    FindingStatus,
    ReconcilePolicy,
    RunStatus,
    findings,
    list_runs,
    load_run,
    reconcile,
    reconcile_file,
    sha256_of,
    statement_reader,
)
from tests.reconcile.support import (
    AT,
    CHANNEL,
    DAY,
    all_findings,
    balance,
    by_class,
    cny,
    counts,
    digest,
    journal_entries,
    kiosk_statement,
    line,
    numbered,
    pay,
    run_lines,
    scalar,
)

REFUND = StatementLineKind.REFUND
VOID = StatementLineKind.VOID


@pytest.fixture
def accounts(gateway: Gateway) -> Gateway:
    for account in ("A1", "A2", "A3"):
        gateway.open_account(account)
    return gateway


def test_a_day_where_every_line_matches_is_fully_reconciled(accounts: Gateway) -> None:
    pay(accounts, "T1", "A1", 1000)
    pay(accounts, "T2", "A2", 2500)
    lines = [line(2, "T1", "A1", 1000, fee=6), line(3, "T2", "A2", 2500, fee=15)]
    run = run_lines(accounts, lines)
    assert run.status is RunStatus.DONE
    assert counts(run) == {"matched": 2}
    assert run.fully_reconciled and run.open_findings == 0 and run.pending == 0
    assert (run.gross.minor, run.fees.minor, run.net.minor) == (3500, 21, 3479)
    assert run.settlement_date == DAY + timedelta(days=1)
    # The plain case leaves no finding rows: the pair is the ledger's own key.
    assert all_findings(accounts, run) == []


def test_each_kind_of_discrepancy_is_found_once(accounts: Gateway) -> None:
    pay(accounts, "T1", "A1", 1000)
    pay(accounts, "T2", "A2", 2000)
    missing = pay(accounts, "T3", "A3", 3000)
    voided = pay(accounts, "T5", "A2", 5000)
    accounts.reverse(voided.payment_id, "voided at the terminal")
    lines = [
        line(2, "T1", "A1", 1000),
        line(3, "T2", "A2", 2100),  # changed amount
        line(4, "T1", "A1", 1000),  # listed twice
        line(5, "T9", "A1", 900),  # the ledger never heard of it, the account is known
        line(6, "T10", "NOBODY", 700),  # …and this account is not
        line(7, "T5", "A2", 5000),
        line(8, "V5", "A2", 5000, kind=VOID, original="T5"),
    ]
    run = run_lines(accounts, lines)
    found = {(f.finding_class, f.line_key, f.status) for f in all_findings(accounts, run)}
    assert found == {
        (FindingClass.AMOUNT_MISMATCH, "txn:T2", FindingStatus.OPEN),
        (FindingClass.DUPLICATE_IN_STATEMENT, "txn:T1#2", FindingStatus.OPEN),
        (FindingClass.ONLY_IN_STATEMENT, "txn:T9", FindingStatus.RESOLVED),
        (FindingClass.ONLY_IN_STATEMENT, "txn:T10", FindingStatus.SUSPENSE),
        (FindingClass.REVERSAL_MATCHED, "rev:T5#1", FindingStatus.OK),
        (FindingClass.ONLY_IN_LEDGER, f"payment:{missing.payment_id}", FindingStatus.OPEN),
    }
    assert counts(run) == {
        "matched": 2,
        "amount_mismatch": 1,
        "duplicate_in_statement": 1,
        "only_in_statement": 2,
        "reversal_matched": 1,
        "only_in_ledger": 1,
    }
    # Mismatch and duplicate wait for people; the missing payment is inside its grace days.
    assert (run.open_findings, run.pending, run.in_suspense, run.resolved) == (2, 1, 1, 1)
    assert not run.fully_reconciled
    mismatch = next(f for f in all_findings(accounts, run) if f.line_key == "txn:T2")
    assert (mismatch.amount.minor, mismatch.ledger_amount) == (2100, cny(2000))
    assert mismatch.line_no == 3 and mismatch.channel_txn_id == "T2"
    # The retired names answer the same, with a deprecation warning.
    with pytest.warns(DeprecationWarning, match="use open_findings"):
        assert run.exceptions == 2
    with pytest.warns(DeprecationWarning, match="use open_finding"):
        assert mismatch.exception is True
    opened = [f.seq for f in findings(accounts, run.id, open_findings_only=True, as_of=run.as_of)]
    with pytest.warns(DeprecationWarning, match="use open_findings_only"):
        retired = [f.seq for f in findings(accounts, run.id, exceptions_only=True, as_of=run.as_of)]
    assert len(opened) == 2 and retired == opened


def test_lines_without_ids_pair_by_account_amount_and_time(accounts: Gateway) -> None:
    near = pay(accounts, "C1", "A1", 1200, at=AT)
    far = pay(accounts, "C2", "A2", 800, at=AT)
    pay(accounts, "C3", "A3", 500, at=AT)
    lines = [
        line(2, None, "A1", 1200, at=AT + timedelta(minutes=10)),
        line(3, None, "A2", 800, at=AT + timedelta(hours=3)),  # outside the 30-minute window
        line(4, None, "A3", 500, at=AT + timedelta(minutes=1)),
        line(5, None, "A3", 500, at=AT + timedelta(minutes=1)),  # the same line again
    ]
    run = run_lines(accounts, lines, policy=ReconcilePolicy(post_late_payments=False))
    found = {f.line_no: f for f in all_findings(accounts, run)}
    assert found[2].finding_class is FindingClass.MATCHED
    assert found[2].payment_id == near.payment_id
    assert found[3].finding_class is FindingClass.ONLY_IN_STATEMENT
    assert found[4].finding_class is FindingClass.MATCHED
    assert found[5].finding_class is FindingClass.DUPLICATE_IN_STATEMENT
    assert found[5].line_key == found[4].line_key + "#2"
    [ledger_only] = [f for f in found.values() if f.finding_class is FindingClass.ONLY_IN_LEDGER]
    assert ledger_only.payment_id == far.payment_id
    assert counts(run)["matched"] == 2


def test_refunds_pair_with_their_original_only_when_the_ledger_reversed_it(
    accounts: Gateway,
) -> None:
    reversed_payment = pay(accounts, "P1", "A1", 4000)
    accounts.reverse(reversed_payment.payment_id, "refunded")
    pay(accounts, "P2", "A2", 3000)
    pay(accounts, "P3", "A3", 2000)
    lines = [
        line(2, "P1", "A1", 4000),
        line(3, "R1", "A1", 4000, kind=REFUND, original="P1"),
        line(4, "P2", "A2", 3000),
        line(5, "R2", "A2", 3000, kind=REFUND, original="P2"),  # the ledger still has P2
        line(6, "P3", "A3", 2000),
        line(7, "R3", "A3", 500, kind=REFUND, original="P3"),  # a partial refund
        line(8, "R4", "A3", 900, kind=REFUND, original="NEVER"),
        line(9, "R1b", "A1", 4000, kind=REFUND, original="P1"),  # refunded twice
    ]
    run = run_lines(accounts, lines)
    found = {f.line_no: f for f in all_findings(accounts, run)}
    assert found[3].finding_class is FindingClass.REVERSAL_MATCHED
    assert found[3].status is FindingStatus.OK
    assert found[5].finding_class is FindingClass.ONLY_IN_STATEMENT
    assert found[5].note == "the original payment is not reversed in the ledger"
    assert found[7].finding_class is FindingClass.AMOUNT_MISMATCH
    assert found[8].finding_class is FindingClass.ONLY_IN_STATEMENT
    assert found[8].note == "the original payment is not in the ledger"
    assert found[9].finding_class is FindingClass.DUPLICATE_IN_STATEMENT
    # A refund line is never posted as a payment nor parked in suspense.
    assert {found[n].status for n in (5, 7, 8, 9)} == {FindingStatus.OPEN}
    assert run.in_suspense == 0 and run.resolved == 0
    assert run.net.minor == 4000 + 3000 + 2000 - (4000 + 3000 + 500 + 900 + 4000)


def test_a_reversal_only_the_ledger_knows_is_only_in_the_ledger(accounts: Gateway) -> None:
    voided = pay(accounts, "P1", "A1", 4000)
    accounts.reverse(voided.payment_id, "voided")
    run = run_lines(accounts, [line(2, "P1", "A1", 4000)])
    [finding] = all_findings(accounts, run)
    assert finding.finding_class is FindingClass.ONLY_IN_LEDGER
    assert finding.line_key == f"reversal:{voided.payment_id}"
    assert finding.status is FindingStatus.OPEN


def test_a_payment_and_its_reversal_both_absent_net_to_zero_and_are_confirmed(
    accounts: Gateway,
) -> None:
    voided = pay(accounts, "P1", "A1", 4000)
    accounts.reverse(voided.payment_id, "voided")
    run = run_lines(accounts, [])
    [finding] = all_findings(accounts, run)
    assert finding.finding_class is FindingClass.ONLY_IN_LEDGER
    assert finding.status is FindingStatus.RESOLVED
    assert finding.resolution is not None
    assert finding.resolution.actor == "reconciliation"
    assert "nets to zero" in (finding.resolution.note or "")
    assert run.fully_reconciled


def test_a_line_of_a_payment_booked_on_another_day_is_not_a_match(accounts: Gateway) -> None:
    earlier = pay(accounts, "T1", "A1", 1000, at=AT - timedelta(days=1))
    run = run_lines(accounts, [line(2, "T1", "A1", 1000)])
    [finding] = all_findings(accounts, run)
    assert finding.finding_class is FindingClass.OTHER_BUSINESS_DATE
    assert finding.status is FindingStatus.OPEN and finding.open_finding
    assert finding.payment_id == earlier.payment_id
    assert finding.note == "the ledger has it on business date 2026-11-23"
    assert not run.fully_reconciled


def test_the_same_file_again_is_the_same_run_and_posts_nothing(accounts: Gateway) -> None:
    pay(accounts, "T1", "A1", 1000)
    lines = [line(2, "T1", "A1", 1000), line(3, "T9", "A2", 700), line(4, "T8", "X", 300)]
    first = run_lines(accounts, lines, name="day-file")
    entries = journal_entries(accounts)

    class NeverRead:
        def __iter__(self) -> Iterator[StatementLine]:
            raise AssertionError("a file already reconciled is not read again")

    again = reconcile(accounts, CHANNEL, DAY, NeverRead(), file_sha256=digest("day-file"))
    assert again.id == first.id and again.replayed and not first.replayed
    assert journal_entries(accounts) == entries
    assert counts(again) == counts(first)
    # Read from the file again (hashing as it streams), the same happens.
    repeat = run_lines(accounts, lines, name="day-file")
    assert repeat.id == first.id and repeat.replayed
    assert journal_entries(accounts) == entries
    assert scalar(accounts, "SELECT COUNT(*) FROM reconciliation_runs") == 1


def test_another_file_for_the_day_supersedes_the_run_and_keeps_its_history(
    accounts: Gateway,
) -> None:
    pay(accounts, "T1", "A1", 1000)
    first_lines = [line(2, "T1", "A1", 1000), line(3, "T9", "A2", 700), line(4, "U1", "X", 300)]
    first = run_lines(accounts, first_lines, name="v1")
    suspense_after_first = balance(accounts, "suspense:CNY")
    entries = journal_entries(accounts)
    corrected = [*first_lines, line(5, "T1", "A1", 1000)]  # the channel's second file
    second = run_lines(accounts, corrected, name="v2")
    assert second.id != first.id and second.supersedes == first.id
    old = load_run(accounts, first.id)
    assert old.superseded_by == second.id
    assert counts(old) == counts(first)  # history kept as it was
    assert len(all_findings(accounts, old)) == len(all_findings(accounts, first))
    # T9 was posted as a late payment by the first run: it is a plain match now. U1 is still
    # in suspense from the first run: linked, not posted again.
    found = {f.line_key: f for f in all_findings(accounts, second)}
    assert "txn:T9" not in found
    assert found["txn:U1"].status is FindingStatus.SUSPENSE
    assert found["txn:T1#2"].finding_class is FindingClass.DUPLICATE_IN_STATEMENT
    assert balance(accounts, "suspense:CNY") == suspense_after_first == -300
    assert journal_entries(accounts) == entries
    assert [r.id for r in list_runs(accounts, channel=CHANNEL)] == [second.id]
    assert len(list_runs(accounts, channel=CHANNEL, include_superseded=True)) == 2


def test_money_parked_from_a_line_the_new_file_drops_is_only_in_the_ledger(
    accounts: Gateway,
) -> None:
    pay(accounts, "T1", "A1", 1000)
    first = run_lines(accounts, [line(2, "T1", "A1", 1000), line(3, "U1", "X", 300)], name="v1")
    assert first.in_suspense == 1
    second = run_lines(accounts, [line(2, "T1", "A1", 1000)], name="v2")
    [finding] = all_findings(accounts, second)
    assert finding.finding_class is FindingClass.ONLY_IN_LEDGER
    assert finding.line_key.startswith("suspense:")
    assert finding.amount.minor == 300


def test_only_in_ledger_is_pending_through_the_grace_days_then_an_open_finding(
    accounts: Gateway, clock: FixedClock
) -> None:
    missing = pay(accounts, "T1", "A1", 1000)
    run = run_lines(accounts, [])
    [finding] = all_findings(accounts, run)
    assert finding.due_on == DAY + timedelta(days=2)  # the kiosk's two grace days
    assert (run.pending, run.open_findings, run.fully_reconciled) == (1, 0, True)
    clock.set(clock.now() + timedelta(days=1))  # the last grace day
    assert load_run(accounts, run.id).open_findings == 0
    clock.set(clock.now() + timedelta(days=1))
    late = load_run(accounts, run.id)
    assert (late.pending, late.open_findings, late.fully_reconciled) == (0, 1, False)
    assert [f.payment_id for f in all_findings(accounts, late) if f.open_finding] == [
        missing.payment_id
    ]


def test_a_later_days_statement_that_shows_the_payment_does_not_match_it(
    accounts: Gateway,
) -> None:
    late = pay(accounts, "T1", "A1", 1000)
    day_run = run_lines(accounts, [])
    assert day_run.pending == 1
    pay(accounts, "T2", "A1", 500, at=AT + timedelta(days=1))
    next_day = run_lines(
        accounts,
        [line(2, "T1", "A1", 1000), line(3, "T2", "A1", 500, at=AT + timedelta(days=1))],
        day=DAY + timedelta(days=1),
    )
    assert counts(next_day) == {"matched": 1, "other_business_date": 1}
    [finding] = all_findings(accounts, load_run(accounts, day_run.id))
    assert finding.status is FindingStatus.OPEN and finding.resolution is None
    assert finding.payment_id == late.payment_id


def test_a_statement_that_fails_part_way_leaves_nothing(accounts: Gateway) -> None:
    pay(accounts, "T1", "A1", 1000)
    entries = journal_entries(accounts)

    def broken() -> Iterator[StatementLine]:
        for n in range(200):
            yield line(n + 2, f"X{n}", "A1", 100)
        raise ParseError("not a kiosk statement row", source="k.csv", line=202)

    with pytest.raises(ParseError) as caught:
        reconcile(
            accounts,
            CHANNEL,
            DAY,
            broken(),
            file_sha256=digest("broken"),
            policy=ReconcilePolicy(stage_chunk=64),
        )
    assert caught.value.line == 202
    assert scalar(accounts, "SELECT COUNT(*) FROM reconciliation_runs") == 0
    assert scalar(accounts, "SELECT COUNT(*) FROM reconciliation_lines") == 0
    assert journal_entries(accounts) == entries


def test_a_line_in_another_currency_is_refused(accounts: Gateway) -> None:
    lines = [line(2, "T1", "A1", 1000), line(3, "T2", "A1", 1000, currency="USD")]
    with pytest.raises(CurrencyMismatchError, match="line 3"):
        run_lines(accounts, lines)
    assert scalar(accounts, "SELECT COUNT(*) FROM reconciliation_runs") == 0


def test_lines_are_staged_in_chunks_as_they_stream(accounts: Gateway) -> None:
    pulled: list[int] = []
    staged: list[int] = []

    def stream() -> Iterator[StatementLine]:
        for n in range(200):
            pulled.append(n)
            yield line(n + 2, f"S{n}", "A1", 100)

    def progress(done: int, _total: int | None) -> None:
        staged.append(done)
        # Never more than one chunk read ahead of what is in the database.
        assert len(pulled) - done <= 1

    run = reconcile(
        accounts,
        CHANNEL,
        DAY,
        stream(),
        file_sha256=digest("chunks"),
        policy=ReconcilePolicy(stage_chunk=64, post_late_payments=False),
        progress=progress,
    )
    assert staged == [64, 128, 192, 200]
    assert run.line_count == 200
    assert by_class(accounts, run) == {"only_in_statement": 200}


def test_a_renumbered_statement_is_classified_by_content_not_position(
    accounts: Gateway,
) -> None:
    pay(accounts, "T1", "A1", 1000)
    pay(accounts, "T2", "A2", 2000)
    lines = numbered([line(0, "T2", "A2", 2000), line(0, "T1", "A1", 1000)])
    run = run_lines(accounts, lines)
    assert counts(run) == {"matched": 2}


def test_the_worked_example_for_finance_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "finance.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "clock" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/finance.md", "exec"), namespace)
    assert capsys.readouterr().out.splitlines() == ["2 1 0", "True 250.50 CNY"]
    receipt = namespace["receipt"]
    assert receipt.account_no == "3100000002"  # type: ignore[attr-defined]


def test_a_statement_file_is_hashed_as_it_streams_and_not_read_again(
    accounts: Gateway, tmp_path: Path
) -> None:
    pay(accounts, "K1:cash-0001", "A1", 12_050)
    path = tmp_path / "kiosk-20261124.csv"
    path.write_bytes(kiosk_statement([("K1", "cash-0001", "A1", "120.50", AT)]))
    kiosk = statement_reader("kiosk")
    reads: list[object] = []

    def reader(source: StatementSource) -> Iterator[StatementLine]:
        reads.append(source)
        return kiosk(source)

    first = reconcile_file(accounts, CHANNEL, DAY, path, reader=reader)
    assert first.file_sha256 == sha256_of(path) and first.source == str(path)
    assert counts(first) == {"matched": 1}
    again = reconcile_file(accounts, CHANNEL, DAY, path, reader=reader)
    assert again.id == first.id and again.replayed
    assert len(reads) == 1


def test_voucher_sales_are_not_reconciled_against_payments(accounts: Gateway) -> None:
    with pytest.raises(UnsupportedOperationError, match="voucher_liability"):
        run_lines(accounts, [line(2, "B1:100-199", None, 5_000)], channel="voucher")
    assert scalar(accounts, "SELECT COUNT(*) FROM reconciliation_runs") == 0
