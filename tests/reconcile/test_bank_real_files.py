"""Real bank statement files read by paygate's readers, with facts checked against the files.

The files are third-party samples kept in ``shared/data`` (see ``shared/data/SOURCES.md``,
whose attribution applies here):

* ``mt940_betterplace_sepa_mt9401.sta`` — wolph/mt940, mt940_tests/betterplace/sepa_mt9401.sta
  (Apache-2.0)
* ``mt940_cmxl_mt940.sta`` — wolph/mt940, mt940_tests/cmxl/mt940.sta (MIT)
* ``mt940_citi_mt940.txt`` — wolph/mt940, mt940_tests/citi/mt940.txt (BSD-3-Clause)
* ``bai2_moov_sample1.bai2`` — moov-io/bai2, test/testdata/sample1.txt (Apache-2.0)
* ``bai2_mojbai2_citi_example.bai2`` — ministryofjustice/bai2, tests/data/citi_example.bai2 (MIT)

Every number below was read off the files by hand (line numbers are the files' own).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from paygate.errors import ParseError
from paygate.money import Money
from paygate.reconcile.bank import (
    BankFormat,
    BankStatement,
    detect_bank_format,
    read_bai2,
    read_bank_statement,
    read_mt940,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BETTERPLACE = DATA / "mt940_betterplace_sepa_mt9401.sta"
CMXL = DATA / "mt940_cmxl_mt940.sta"
CITI_MT940 = DATA / "mt940_citi_mt940.txt"
MOOV_BAI2 = DATA / "bai2_moov_sample1.bai2"
CITI_BAI2 = DATA / "bai2_mojbai2_citi_example.bai2"


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def cad(text: str) -> Money:
    return Money.parse(text, "CAD")


def gbp(text: str) -> Money:
    return Money.parse(text, "GBP")


# -- MT940: betterplace SEPA ---------------------------------------------------------------


@pytest.fixture(scope="module")
def betterplace() -> list[BankStatement]:
    return list(read_mt940(BETTERPLACE))


def test_betterplace_has_26_statements_that_all_balance(betterplace: list[BankStatement]) -> None:
    assert len(betterplace) == 26
    assert all(statement.balanced for statement in betterplace)
    assert [statement.balance_difference for statement in betterplace] == [eur("0")] * 26
    assert sum(len(statement.entries) for statement in betterplace) == 97
    assert {statement.format for statement in betterplace} == {BankFormat.MT940}


def test_betterplace_first_statement_opens_and_closes_in_debit(
    betterplace: list[BankStatement],
) -> None:
    first = betterplace[0]
    assert first.line_no == 1
    assert first.statement_id == "T089413946000001"
    assert first.account_id == "50880050/0194774600888"
    assert first.sequence == "00004/00001"
    assert first.currency == "EUR"
    assert first.opening_balance == eur("-1234718.36")
    assert first.opening_date == date(2007, 9, 3)
    assert first.closing_balance == eur("-1237628.23")
    assert first.closing_date == date(2007, 9, 4)
    assert [(b.code, b.amount, b.as_of) for b in first.balances] == [
        ("64", eur("-1237628.23"), date(2007, 9, 4))
    ]
    assert [entry.amount for entry in first.entries] == [
        eur("300"),
        eur("335.33"),
        eur("15000"),
        eur("66295.08"),
        eur("915311.55"),
        eur("-204.88"),
        eur("-999946.95"),
    ]
    assert first.total == eur("-2909.87")


def test_betterplace_cr_entry_is_a_credit_with_funds_code(
    betterplace: list[BankStatement],
) -> None:
    entry = betterplace[0].entries[0]
    # ":61:0709040904CR300,NTRFTFNr 40005 MSGID//0724710345313905": C and funds code R.
    assert entry.line_no == 5
    assert entry.value_date == date(2007, 9, 4)
    assert entry.booking_date == date(2007, 9, 4)
    assert entry.amount == eur("300.00")
    assert entry.reversal is False
    assert entry.type_code == "NTRF"
    assert entry.customer_reference == "TFNr 40005 MSGID"
    assert entry.bank_reference == "0724710345313905"
    assert entry.details is not None
    assert entry.details.startswith("159?00RETOURE?100399?20EREF+TFNR 40005 00005")
    assert entry.details.count("\n") == 1


def test_betterplace_rcr_is_a_reversal_of_credit_so_money_out(
    betterplace: list[BankStatement],
) -> None:
    reversal = betterplace[0].entries[5]
    assert reversal.line_no == 19
    assert reversal.reversal is True
    assert reversal.amount == eur("-204.88")
    assert reversal.type_code == "NRTI"
    assert reversal.customer_reference is None  # NONREF
    assert reversal.details == "079?00SAMMLER/STORNO?109800?200904059003"
    other = betterplace[4].entries[1]
    assert (other.line_no, other.amount, other.reversal) == (101, eur("-204.88"), True)
    assert other.customer_reference == "MSGIDCTSc03MintT"
    assert other.bank_reference == "R724710290656678"
    reversals = [e for statement in betterplace for e in statement.entries if e.reversal]
    assert len(reversals) == 2


def test_betterplace_counterparty_from_german_subfields(
    betterplace: list[BankStatement],
) -> None:
    entry = betterplace[1].entries[0]
    assert entry.line_no == 30
    assert entry.amount == eur("15000.05")
    # ?31 and ?32/?33 run over the 65-character line breaks of :86:.
    assert entry.counterparty_account == "DE42100100100043921105"
    assert entry.counterparty_name == "Richter Renate 70 Zeichen Beginn Fuellzeichen xxxxxxxx"
    debit = betterplace[4].entries[2]
    assert debit.amount == eur("-50990.05")
    assert debit.customer_reference == "KREF+"
    assert debit.counterparty_name == "Empfaenger Florian Frech UK 01"
    assert debit.counterparty_account == "DE76508800500194780101"


def test_betterplace_intermediate_pages_chain(betterplace: list[BankStatement]) -> None:
    page_one, page_two = betterplace[6], betterplace[7]
    # :62M: closes page 00004/00001 and :60M: opens page 00004/00002 with the same balance.
    assert (page_one.statement_id, page_one.sequence) == ("T089414006000001", "00004/00001")
    assert (page_two.statement_id, page_two.sequence) == ("T089414006000002", "00004/00002")
    assert page_one.line_no == 128
    assert page_two.line_no == 159
    assert page_one.closing_balance == page_two.opening_balance == eur("-30503.83")
    assert page_one.balances == ()
    assert page_two.closing_balance == eur("-100854.45")


def test_betterplace_last_statement_opens_at_zero(betterplace: list[BankStatement]) -> None:
    last = betterplace[-1]
    assert last.line_no == 582
    assert last.statement_id == "T089414136000001"
    assert last.sequence == "00001/00001"
    assert last.opening_balance == eur("0")
    assert last.opening_date == date(2007, 8, 22)
    assert last.closing_balance == eur("50.05")
    assert [entry.amount for entry in last.entries] == [eur("50.05")]


# -- MT940: citi ---------------------------------------------------------------------------


def test_citi_mt940_blank_entry_dates_and_zero_informational_lines() -> None:
    (statement,) = read_mt940(CITI_MT940)
    assert statement.statement_id == "asdfsdfdsf"
    assert statement.account_id == "123456789"
    assert statement.sequence == "1/1"  # the old :28: tag
    assert statement.opening_balance == usd("17376.67")
    assert statement.closing_balance == usd("16233.92")
    assert statement.opening_date == statement.closing_date == date(2024, 3, 12)
    assert [(b.code, b.amount) for b in statement.balances] == [("64", usd("16233.92"))]
    assert statement.balanced is True
    assert [entry.line_no for entry in statement.entries] == [5, 9, 13, 15, 17]
    assert [entry.amount for entry in statement.entries] == [
        usd("-212.39"),
        usd("-369.28"),
        usd("0"),
        usd("0"),
        usd("-561.08"),
    ]
    # "240312    DD212,39": four blanks where the entry date would be.
    assert all(entry.booking_date is None for entry in statement.entries)
    assert all(entry.value_date == date(2024, 3, 12) for entry in statement.entries)
    assert [entry.type_code for entry in statement.entries] == [
        "NMSC",
        "NDEF",
        "NDEF",
        "NDEF",
        "NDEF",
    ]
    assert all(entry.customer_reference is None for entry in statement.entries)
    assert all(entry.bank_reference is None for entry in statement.entries)
    zero = statement.entries[2]
    assert zero.supplementary_details == "/ABC/DEF/C 37897,00 BAI CD 025"
    assert zero.details is None
    first = statement.entries[0]
    assert first.supplementary_details == "/ABC/DEF/MISCELLANEOUS"
    assert first.details == "/PT/FT/PY/SOMETHING FOO BAR          112233\n   123456789"


# -- MT940: cmxl ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cmxl() -> list[BankStatement]:
    return list(read_mt940(CMXL))


def dem(text: str) -> Money:
    return Money.parse(text, "DEM")


def pln(text: str) -> Money:
    return Money.parse(text, "PLN")


def test_cmxl_keeps_each_statement_in_its_own_currency(cmxl: list[BankStatement]) -> None:
    # Deutsche Mark, euro and zloty statements in one file: each amount stays in its currency.
    assert [s.currency for s in cmxl] == ["DEM", "EUR", "PLN"]
    assert {e.amount.currency for e in cmxl[0].entries} == {"DEM"}
    assert {e.amount.currency for e in cmxl[2].entries} == {"PLN"}


def test_cmxl_three_statements_from_different_banks(cmxl: list[BankStatement]) -> None:
    assert [s.line_no for s in cmxl] == [1, 31, 49]
    assert [s.statement_id for s in cmxl] == ["131110", "1234567", "TELEWIZORY S.A."]
    assert [s.account_id for s in cmxl] == [
        "45050050/76198810",
        "10020030/1234567",
        "BPHKPLPK/320000546101",
    ]
    assert [s.sequence for s in cmxl] == ["27/01", "5/1", "00084/001"]
    assert [len(s.entries) for s in cmxl] == [11, 2, 3]
    assert all(s.balanced for s in cmxl)
    assert [s.opening_balance for s in cmxl] == [dem("84349.74"), eur("2187.95"), pln("40000")]
    assert [s.closing_balance for s in cmxl] == [dem("84437.04"), eur("4387.95"), pln("50040")]
    # The third statement's :62F: is dated before its :60F:; it is read as written.
    assert cmxl[2].opening_date == date(2003, 10, 2)
    assert cmxl[2].closing_date == date(2002, 3, 25)


def test_cmxl_first_statement_entries_without_entry_dates(cmxl: list[BankStatement]) -> None:
    entries = cmxl[0].entries
    assert entries[0].amount == dem("-6800")  # "D6800," with nothing after the comma
    assert entries[0].customer_reference == "16703074"
    assert entries[0].type_code == "NCHK"
    assert entries[1].amount == dem("-620.30")  # "D620,3"
    assert entries[3].value_date == date(2013, 10, 15)
    assert all(entry.booking_date is None for entry in entries)
    assert cmxl[0].total == dem("87.30")


def test_cmxl_dr_cr_marks_and_german_subfields(cmxl: list[BankStatement]) -> None:
    debit, credit = cmxl[1].entries
    # ":61:0211011102DR800,NSTONONREF//55555": D with funds code R, entry date 2 November.
    assert debit.line_no == 36
    assert debit.amount == eur("-800")
    assert debit.value_date == date(2002, 11, 1)
    assert debit.booking_date == date(2002, 11, 2)
    assert debit.type_code == "NSTO"
    assert debit.customer_reference is None
    assert debit.bank_reference == "55555"
    assert debit.counterparty_name == "MUELLER"
    assert debit.counterparty_account == "234567"
    assert credit.amount == eur("3000")
    assert credit.details is not None
    assert credit.details.split("\n")[0] == "051?00UEBERWEISUNG?100599?20Gehalt Oktob"
    # ?31084756 / 4700 runs over a line break.
    assert credit.counterparty_account == "0847564700"


def test_cmxl_polish_statement_type_code_f_and_utf8_details(cmxl: list[BankStatement]) -> None:
    first, second, third = cmxl[2].entries
    assert first.type_code == "FMSC"
    assert first.supplementary_details == "Card transaction"
    assert first.bank_reference == "8327000090031789"
    assert first.amount == pln("20000")
    assert second.customer_reference == "REF 25611247"
    assert second.amount == pln("-10000")
    assert second.supplementary_details == "Transfer"
    assert third.amount == pln("40")
    assert third.details is not None
    assert "Uznanie kwotą odsetek" in third.details


# -- BAI2 ----------------------------------------------------------------------------------


def test_moov_bai2_two_accounts_without_ledger_balances() -> None:
    first, second = read_bai2(MOOV_BAI2)
    for statement, line in ((first, 3), (second, 17)):
        assert statement.format is BankFormat.BAI2
        assert statement.line_no == line
        assert statement.account_id == "10200123456"
        assert statement.statement_id == "001"
        assert statement.currency == "CAD"
        # Only 040/045 (available) are given, no 010/015 ledger balances: nothing to check.
        assert statement.opening_balance is None
        assert statement.closing_balance is None
        assert statement.balance_difference is None
        assert statement.balanced is None
        assert statement.total == cad("0")
    assert [(b.code, b.amount, b.item_count) for b in first.balances] == [
        ("040", cad("0"), None),
        ("045", cad("0"), None),
        ("100", cad("2085.00"), 3),
        ("400", cad("2085.00"), 8),
    ]
    assert {b.as_of for b in first.balances} == {date(2006, 3, 17)}
    assert len(first.entries) == 11
    assert len(second.entries) == 6
    returned = first.entries[0]
    assert returned.line_no == 5
    assert returned.type_code == "409"
    assert returned.amount == cad("-25.00")
    assert returned.value_date == date(2006, 3, 16)
    assert returned.booking_date == date(2006, 3, 17)
    assert returned.details == "RETURNED CHEQUE"
    charge = first.entries[2]
    assert (charge.line_no, charge.amount, charge.details) == (
        7,
        cad("-5.00"),
        "RTD CHQ SERVICE CHRG",
    )
    transfer = first.entries[3]
    assert (transfer.type_code, transfer.amount, transfer.details) == (
        "108",
        cad("2035.00"),
        "TFR 1020 0345678",
    )
    assert [e.amount for e in second.entries] == [
        cad("115.00"),
        cad("1000.00"),
        cad("-1000.00"),
        cad("-90.00"),
        cad("-20.00"),
        cad("-5.00"),
    ]
    assert second.entries[-1].details == "GALERIES RICHELIEU"


def test_citi_bai2_does_not_balance_by_one_penny() -> None:
    (statement,) = read_bai2(CITI_BAI2)
    assert statement.line_no == 3
    assert statement.account_id == "77777777"
    assert statement.statement_id == "00131100"
    assert statement.currency == "GBP"
    assert statement.opening_balance == gbp("100.00")
    assert statement.closing_balance == gbp("100.00")
    assert statement.opening_date == statement.closing_date == date(2015, 7, 15)
    assert statement.balance_difference == gbp("0.01")
    assert statement.balanced is False
    (entry,) = statement.entries
    assert entry.line_no == 4
    assert entry.type_code == "191"
    assert entry.amount == gbp("0.01")
    assert entry.value_date == date(2015, 7, 15)  # funds type V
    assert entry.bank_reference == "1234567890"
    assert entry.customer_reference == "RP12312312312312"
    assert entry.details is not None
    lines = entry.details.split("\n")
    assert len(lines) == 7  # one per 88 continuation record
    assert lines[0] == "FR:FP SIP INCOMING"
    assert lines[3] == "PY:RP1231231231231200                 A1234BC 22/03/66"
    assert lines[-1] == "BO:11111111 BO1:DOE JO"


# -- detection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (BETTERPLACE, BankFormat.MT940),
        (CMXL, BankFormat.MT940),
        (CITI_MT940, BankFormat.MT940),
        (MOOV_BAI2, BankFormat.BAI2),
        (CITI_BAI2, BankFormat.BAI2),
    ],
)
def test_real_files_are_detected(path: Path, expected: BankFormat) -> None:
    assert detect_bank_format(path) == expected
    assert detect_bank_format(str(path)) == expected


def test_read_bank_statement_auto_matches_the_format_readers() -> None:
    assert list(read_bank_statement(BETTERPLACE)) == list(read_mt940(BETTERPLACE))
    assert list(read_bank_statement(MOOV_BAI2, "bai2")) == list(read_bai2(MOOV_BAI2))
    with CITI_BAI2.open("rb") as stream:
        assert list(read_bank_statement(stream)) == list(read_bai2(CITI_BAI2))


def test_sources_md_is_not_a_statement() -> None:
    with pytest.raises(ParseError) as caught:
        detect_bank_format(DATA / "SOURCES.md")
    assert caught.value.line == 1
    assert caught.value.field == "format"


class _Pipe:
    """A stream that can only be read forward, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def readline(self, size: int = -1, /) -> bytes:
        return self._stream.readline(size)


@pytest.mark.parametrize("path", [BETTERPLACE, CITI_MT940, MOOV_BAI2, CITI_BAI2])
def test_read_bank_statement_from_a_stream_that_cannot_seek(path: Path) -> None:
    expected = list(read_bank_statement(path))
    assert list(read_bank_statement(_Pipe(path.read_bytes()))) == expected
