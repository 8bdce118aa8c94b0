"""The bank leg: a channel day's net settlement reaching the utility's bank statement closes
its clearing account and books the fees, exactly once; on written statements and on every
real bank statement sample in shared/data."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from paygate.errors import ParseError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.reconcile import (
    FindingClass,
    FindingStatus,
    list_runs,
    load_run,
    reconcile,
    reconcile_bank_file,
    settle_bank_credits,
)
from paygate.reconcile.bank import read_bank_statement
from tests.conftest import SHARED_DATA
from tests.reconcile.support import (
    DAY,
    all_findings,
    balance,
    digest,
    journal_entries,
    line,
    pay,
    run_lines,
    scalar,
)

SETTLED_ON = DAY + timedelta(days=1)
REFERENCES = {"kiosk": r"KIOSK {date:%Y%m%d}", "online": r"UNIONPAY {date:%Y%m%d}"}


def mt940(path: Path, credits: list[tuple[str, str, str]], *, close: str | None = None) -> Path:
    """A one-statement MT940 file: (amount "12,34", value date YYMMDD, reference) credits."""
    lines = [":20:STMT1", ":25:755912345610001", ":28C:1/1", ":60F:C261124CNY1000,00"]
    total = 100_000
    for amount, value, reference in credits:
        lines.append(f":61:{value}{value[2:]}C{amount}NTRF{reference}//B1")
        whole, cents = amount.split(",")
        total += int(whole) * 100 + int(cents.ljust(2, "0"))
    closing = close or f"{total // 100},{total % 100:02d}"
    lines.append(f":62F:C{SETTLED_ON:%y%m%d}CNY{closing}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def kiosk_day(gateway: Gateway) -> Gateway:
    """A kiosk day of 120.00 + 80.00 with 1.20 of fees: net 198.80."""
    gateway.open_account("A1")
    pay(gateway, "K1:cash-1", "A1", 12_000)
    pay(gateway, "K1:cash-2", "A1", 8_000)
    run = run_lines(
        gateway,
        [line(2, "K1:cash-1", "A1", 12_000, fee=72), line(3, "K1:cash-2", "A1", 8_000, fee=48)],
    )
    assert run.fully_reconciled and run.net.minor == 19_880
    return gateway


def test_the_settlement_reference_closes_clearing_and_books_the_fees(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    statement = mt940(
        tmp_path / "bank.sta",
        [("198,80", f"{SETTLED_ON:%y%m%d}", "KIOSK 20261124"), ("55,00", "261125", "RENT")],
    )
    bank = reconcile_bank_file(kiosk_day, statement, references=REFERENCES)
    found = {f.finding_class: f for f in all_findings(kiosk_day, bank)}
    assert set(found) == {FindingClass.SETTLEMENT_MATCHED, FindingClass.BANK_UNMATCHED}
    assert found[FindingClass.SETTLEMENT_MATCHED].status is FindingStatus.OK
    assert found[FindingClass.BANK_UNMATCHED].amount == Money(5_500, "CNY")
    assert bank.open_findings == 1
    assert balance(kiosk_day, "bank:CNY") == 19_880
    assert balance(kiosk_day, "fees:kiosk:CNY") == 120
    assert balance(kiosk_day, "clearing:kiosk:CNY") == 0
    [day_run] = list_runs(kiosk_day, channel="kiosk")
    assert day_run.settlement is not None
    assert (day_run.settlement.net.minor, day_run.settlement.fees.minor) == (19_880, 120)
    assert day_run.settlement.value_date == SETTLED_ON
    assert kiosk_day.verify().ok
    # The same file again: the same run, nothing posted twice.
    entries = journal_entries(kiosk_day)
    again = reconcile_bank_file(kiosk_day, statement, references=REFERENCES)
    assert again.id == bank.id and again.replayed
    assert journal_entries(kiosk_day) == entries


def test_without_a_reference_the_exact_net_on_the_settlement_date_settles(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    early = mt940(tmp_path / "early.sta", [("198,80", "261124", "NONREF")])
    bank = reconcile_bank_file(kiosk_day, early)
    assert [f.finding_class for f in all_findings(kiosk_day, bank)] == [FindingClass.BANK_UNMATCHED]
    on_time = mt940(tmp_path / "on-time.sta", [("198,80", "261125", "NONREF")])
    bank = reconcile_bank_file(kiosk_day, on_time)
    assert FindingClass.SETTLEMENT_MATCHED in {
        f.finding_class for f in all_findings(kiosk_day, bank)
    }
    assert balance(kiosk_day, "bank:CNY") == 19_880


def test_two_channel_days_with_the_same_net_are_not_guessed(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    pay(kiosk_day, "Q1", "A1", 12_000, channel="online")
    pay(kiosk_day, "Q2", "A1", 8_000, channel="online")
    online = reconcile(
        kiosk_day,
        "online",
        DAY,
        iter([line(2, "Q1", "A1", 12_000, fee=72), line(3, "Q2", "A1", 8_000, fee=48)]),
        file_sha256=digest("online day"),
    )
    assert online.net.minor == 19_880
    bank = reconcile_bank_file(kiosk_day, mt940(tmp_path / "b.sta", [("198,80", "261125", "X")]))
    [credit] = all_findings(kiosk_day, bank)
    assert credit.finding_class is FindingClass.BANK_UNMATCHED
    assert "kiosk 2026-11-24" in (credit.note or "") and "online 2026-11-24" in (credit.note or "")
    assert balance(kiosk_day, "bank:CNY") == 0
    # Named by its reference, the kiosk's credit settles only the kiosk's day.
    settle_bank_credits(kiosk_day, {"kiosk": r"^X$"})
    assert balance(kiosk_day, "clearing:kiosk:CNY") == 0
    assert balance(kiosk_day, "clearing:online:CNY") == 20_000


def test_a_reference_naming_a_day_of_another_amount_is_a_settlement_mismatch(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    statement = mt940(tmp_path / "b.sta", [("190,00", "261125", "KIOSK 20261124")])
    bank = reconcile_bank_file(kiosk_day, statement, references=REFERENCES)
    [credit] = all_findings(kiosk_day, bank)
    assert credit.finding_class is FindingClass.SETTLEMENT_MISMATCH and credit.open_finding
    assert "198.80" not in (credit.note or "") and "19880" in (credit.note or "")
    assert balance(kiosk_day, "bank:CNY") == 0


def test_a_channel_reconciled_after_its_bank_statement_still_finds_its_money(
    gateway: Gateway, tmp_path: Path
) -> None:
    gateway.open_account("A1")
    statement = mt940(tmp_path / "b.sta", [("50,00", "261125", "KIOSK 20261124")])
    bank = reconcile_bank_file(gateway, statement, references=REFERENCES)
    assert bank.open_findings == 1
    pay(gateway, "K1:cash-9", "A1", 5_000)
    run_lines(gateway, [line(2, "K1:cash-9", "A1", 5_000)])
    assert settle_bank_credits(gateway, REFERENCES) == 1
    assert load_run(gateway, bank.id).open_findings == 0
    assert balance(gateway, "clearing:kiosk:CNY") == 0


def test_an_unbalanced_statement_is_a_finding_and_an_unreadable_one_records_nothing(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    statement = mt940(tmp_path / "b.sta", [("10,00", "261125", "X")], close="1000,00")
    bank = reconcile_bank_file(kiosk_day, statement)
    unbalanced = [
        f for f in all_findings(kiosk_day, bank) if f.finding_class is FindingClass.BANK_UNBALANCED
    ]
    assert [f.amount.minor for f in unbalanced] == [1_000]
    truncated = tmp_path / "cut.sta"
    truncated.write_text("\n".join(statement.read_text().splitlines()[:-1]) + "\n")
    runs = scalar(kiosk_day, "SELECT COUNT(*) FROM reconciliation_runs")
    with pytest.raises(ParseError) as caught:
        reconcile_bank_file(kiosk_day, truncated)
    assert caught.value.line is not None
    assert scalar(kiosk_day, "SELECT COUNT(*) FROM reconciliation_runs") == runs


# -- the real samples -----------------------------------------------------------------------

SAMPLES = [
    "mt940_betterplace_sepa_mt9401.sta",
    "mt940_cmxl_mt940.sta",
    "mt940_citi_mt940.txt",
    "bai2_moov_sample1.bai2",
    "bai2_mojbai2_citi_example.bai2",
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_real_bank_sample_settles_a_channel_day_and_reports_the_rest(
    gateway: Gateway, sample: str
) -> None:
    path = SHARED_DATA / sample
    statements = list(read_bank_statement(path))
    if len({s.currency for s in statements}) > 1:
        # Accounts in several currencies in one file: not one bank account's statement.
        with pytest.raises(ParseError, match="is in EUR; the utility's bank account is in DEM"):
            reconcile_bank_file(gateway, path, currency=statements[0].currency)
        return
    credits = [
        (e.amount, e.value_date or e.booking_date or s.closing_date)
        for s in statements
        for e in s.entries
        if e.booked and e.amount.minor > 0
    ]
    unique = [c for c in credits if credits.count(c) == 1 and c[1] is not None]
    settled: Money | None = None
    if unique:
        # A channel day in the statement's currency whose net is one credit, paid the day
        # before its value date (the kiosk settles T+1).
        settled, value_date = unique[0]
        assert value_date is not None
        currency = settled.currency
        business_day = value_date - timedelta(days=1)
        paid_at = datetime.combine(business_day, time(3, 0), tzinfo=UTC)
        gateway.open_account("E1", currency=currency)
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="REAL-1",
                account_no="E1",
                amount=settled,
                paid_at=paid_at,
            )
        )
        day_line = line(2, "REAL-1", "E1", settled.minor, currency=currency, at=paid_at)
        run = reconcile(
            gateway, "kiosk", business_day, iter([day_line]), file_sha256=digest(sample)
        )
        assert run.fully_reconciled
    # These are other banks' accounts: state the currency as a deployment holding it would.
    bank = reconcile_bank_file(gateway, path, currency=statements[0].currency)
    found = all_findings(gateway, bank)
    classes = [f.finding_class for f in found]
    assert classes.count(FindingClass.SETTLEMENT_MATCHED) == (1 if unique else 0)
    assert classes.count(FindingClass.BANK_UNMATCHED) == len(credits) - (1 if unique else 0)
    unbalanced = sum(1 for s in statements if s.balanced is False)
    assert classes.count(FindingClass.BANK_UNBALANCED) == unbalanced
    if settled is not None:
        assert balance(gateway, f"bank:{settled.currency}") == settled.minor
        assert balance(gateway, f"clearing:kiosk:{settled.currency}") == 0
    assert gateway.verify().ok


def test_the_citi_bai2_sample_is_reported_as_not_balancing(gateway: Gateway) -> None:
    bank = reconcile_bank_file(
        gateway, SHARED_DATA / "bai2_mojbai2_citi_example.bai2", currency="GBP"
    )
    [unbalanced] = [
        f for f in all_findings(gateway, bank) if f.finding_class is FindingClass.BANK_UNBALANCED
    ]
    assert unbalanced.amount == Money(1, "GBP")  # 100.00 + 0.01 is not the stated 100.00
    assert unbalanced.value_date == date(2015, 7, 15)
    assert unbalanced.open_finding
