"""Statement files as banks deliver them, with their headers, envelopes and habits.

The files in ``tests/reconcile/data`` were written for these tests after the layouts the banks
publish: ABN AMRO's MT940 (``ABNANL2A`` / ``940`` / ``ABNANL2A`` before every statement, ``-``
after it), Rabobank's (a ``:940:`` line first, an entry's details over several ``:86:`` tags,
no separators), ING's SWIFT envelopes (``{1:…}{2:…}{3:…}{4:`` … ``-}``, one per statement), and
a BAI2 file in the style of US banks (``HH:MM:SS`` times, ``,/`` closing every physical record
and the record going on in an ``88``). Account numbers, names and amounts are made up.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import pytest

from paygate.errors import ParseError
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.reconcile import FindingClass, reconcile_bank_file
from paygate.reconcile.bank import (
    BankFormat,
    detect_bank_format,
    read_bai2,
    read_bank_statement,
    read_mt940,
)
from tests.reconcile.support import DAY, all_findings, balance, line, pay, run_lines

DATA = Path(__file__).parent / "data"
ABN_AMRO = DATA / "mt940_abnamro.sta"
RABOBANK = DATA / "mt940_rabobank.sta"
ING = DATA / "mt940_ing_swift.sta"
BAI2_BANK = DATA / "bai2_bank_style.bai2"


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


class _Pipe:
    """A stream that cannot seek, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readline(self, size: int = -1, /) -> bytes:
        return self._data.readline(size)


@pytest.mark.parametrize(
    ("path", "statements"),
    [(ABN_AMRO, 2), (RABOBANK, 2), (ING, 2), (BAI2_BANK, 2)],
    ids=["abn-amro", "rabobank", "ing", "bai2"],
)
def test_every_bank_style_is_detected_and_read_whole(path: Path, statements: int) -> None:
    expected = BankFormat.BAI2 if path.suffix == ".bai2" else BankFormat.MT940
    assert detect_bank_format(path) is expected
    assert detect_bank_format(io.BytesIO(path.read_bytes())) is expected
    from_path = list(read_bank_statement(path))
    from_pipe = list(read_bank_statement(_Pipe(path.read_bytes())))
    assert len(from_path) == statements
    assert from_pipe == from_path
    assert all(s.balanced for s in from_path)


def test_abn_amro_header_lines_before_every_statement() -> None:
    first, second = read_mt940(ABN_AMRO)
    assert (first.line_no, second.line_no) == (4, 20)
    assert first.statement_id == "ABN AMRO BANK NV"
    assert (first.account_id, first.sequence) == ("417164300", "24071/1")
    assert first.opening_balance == eur("12500.00")
    assert [e.amount for e in first.entries] == [eur("1250.50"), eur("-35.25")]
    assert first.entries[0].customer_reference is None  # NONREF
    assert first.entries[0].details is not None
    assert "/REMI/ALIPAY 20240310 NET/" in first.entries[0].details.replace("\n", "")
    assert [b.code for b in first.balances] == ["64"]
    assert second.closing_balance == eur("17715.25")


def test_rabobank_940_line_and_details_over_several_86_tags() -> None:
    first, second = read_mt940(RABOBANK)
    assert (first.line_no, second.line_no) == (2, 14)
    credit, fee = first.entries
    assert credit.amount == eur("300.00")
    assert credit.supplementary_details == "NL91ABNA0417164300"
    assert credit.details == "KIOSK OPERATOR BV\nKIOSK 20240311 NET\nDAGAFREKENING KIOSKEN"
    assert fee.details == "KOSTEN BETALINGSVERKEER"
    # Nothing of the entries' details leaked into the statement's own information.
    assert first.information is None
    assert second.entries == ()
    assert second.balanced


def test_ing_swift_envelopes_one_per_statement() -> None:
    first, second = read_mt940(ING)
    assert (first.line_no, second.line_no) == (2, 19)
    assert first.account_id == "NL69INGB0123456789EUR"
    assert [e.amount for e in first.entries] == [eur("1.56"), eur("-1.57")]
    assert first.entries[0].supplementary_details == "/TRCD/00100/"
    # A :86: after the closing balance is the statement's, not the last entry's.
    assert first.information == "/SUM/2/1/1,56/1,57/"
    assert first.entries[1].details == "/PREF/M000000003333333//REMI/USTD//TOTAAL 1 VZ/"
    assert [b.code for b in first.balances] == ["64", "65"]
    assert second.closing_balance == eur("912.22")


def test_swift_transmission_characters_around_a_message() -> None:
    framed = b"\x01" + ING.read_bytes().replace(b"-}\n", b"-}\x03\n\x01", 1) + b"\x03"
    assert detect_bank_format(io.BytesIO(framed)) is BankFormat.MT940
    statements = list(read_mt940(io.BytesIO(framed)))
    assert statements == list(read_mt940(ING))


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # A header line is only ever before a statement; inside one it is out of place.
        (b":20:S\n:25:A\nABNANL2A\n:28C:1\n", 3),
        # Text that is no header before the first :20: is still not MT940.
        (b"ABNANL2A\nStatement of account\n:20:S\n", 2),
        # Header lines and nothing else.
        (b"ABNANL2A\n940\nABNANL2A\n", 3),
    ],
)
def test_header_lines_are_not_a_licence_for_anything(text: bytes, line: int) -> None:
    with pytest.raises(ParseError) as caught:
        list(read_mt940(io.BytesIO(text)))
    assert caught.value.line == line


def test_detection_does_not_take_any_text_for_mt940() -> None:
    for head in (b"ABNANL2A\nhello\n", b"940\n:25:123\n", b"{1:F01X}{2:I940X}\n01,A,B\n"):
        with pytest.raises(ParseError) as caught:
            detect_bank_format(io.BytesIO(head))
        assert caught.value.field == "format"


# -- BAI2 as banks write it -----------------------------------------------------------------


def test_bai2_with_clock_times_and_records_closed_before_their_88() -> None:
    first, second = read_bai2(BAI2_BANK)
    usd = "USD"
    assert (first.line_no, second.line_no) == (3, 10)
    assert first.opening_balance == Money(1_250_000, usd)
    assert first.closing_balance == Money(1_437_550, usd)
    assert [(b.code, b.amount.minor) for b in first.balances] == [
        ("040", 1_437_550),
        ("045", 1_437_550),
    ]
    deposit, cheque = first.entries
    assert deposit.customer_reference == "KIOSK-20240310-NET"
    assert deposit.details == "KIOSK OPERATOR SETTLEMENT"
    assert cheque.amount == Money(-12_450, usd)
    assert [(b.code, b.amount.minor, b.item_count) for b in second.balances] == [
        ("100", 100_000, 1)
    ]
    assert second.entries[0].details == "INCOMING WIRE ONLINE PAYMENTS"
    assert deposit.booking_date == date(2024, 3, 10)


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        (b"49,5775100,7/", b"49,5775101,7/", 9, "49 control total"),
        (b"49,400000,5/", b"49,400000,4/", 14, "49 record count"),
        (b"08:15:00", b"8:15", 1, "01 creation time"),
        (b"23:59:59", b"23.59", 2, "02 as-of time"),
    ],
)
def test_bai2_bank_style_still_checks_its_trailers_and_times(
    old: bytes, new: bytes, line: int, field: str
) -> None:
    data = BAI2_BANK.read_bytes()
    assert old in data
    with pytest.raises(ParseError) as caught:
        list(read_bai2(io.BytesIO(data.replace(old, new))))
    assert (caught.value.line, caught.value.field) == (line, field)


DORMANT = (
    b"01,1111,PAYGATE,240311,0101,F2,,,2/\n"
    b"02,PAYGATE,1111,1,240310,2359,,2/\n"
    b"03,12345,/\n"
    b"49,,2/\n"
    b"03,54321,USD,/\n"
    b"49,,2/\n"
    b"98,0,2,6/\n"
    b"99,0,1,8/\n"
)


def test_bai2_empty_control_totals_of_accounts_without_amounts() -> None:
    # Banks leave the control total of a dormant (or closed) account empty: it agrees with the
    # nothing that was read.
    statements = list(read_bai2(io.BytesIO(DORMANT)))
    assert [(s.account_id, s.entries, s.balanced) for s in statements] == [
        ("12345", (), None),
        ("54321", (), None),
    ]
    with_amount = DORMANT.replace(b"03,12345,/", b"03,12345,USD,040,100,,/")
    with pytest.raises(ParseError) as caught:
        list(read_bai2(io.BytesIO(with_amount)))
    assert (caught.value.line, caught.value.field) == (4, "49 control total")


# -- what reconciliation makes of them ------------------------------------------------------

# Days after the settlement date, so that only the reference, not the amount, can match.
LATE = DAY + timedelta(days=4)


@pytest.fixture
def kiosk_day(gateway: Gateway) -> Gateway:
    """A kiosk day of 120.00 + 80.00 with 1.20 of fees: net 198.80."""
    gateway.open_account("A1")
    pay(gateway, "K1:cash-1", "A1", 12_000)
    pay(gateway, "K1:cash-2", "A1", 8_000)
    run_lines(
        gateway,
        [line(2, "K1:cash-1", "A1", 12_000, fee=72), line(3, "K1:cash-2", "A1", 8_000, fee=48)],
    )
    return gateway


def test_a_reference_on_a_second_86_settles_the_channel_day(
    kiosk_day: Gateway, tmp_path: Path
) -> None:
    statement = tmp_path / "rabo.sta"
    statement.write_text(
        ":940:\n"
        ":20:940S261125\n"
        ":25:NL50RABO0123456789 CNY\n"
        ":28C:0\n"
        ":60F:C261124CNY1000,00\n"
        f":61:{LATE:%y%m%d}C198,80N541NONREF\n"
        ":86:KIOSK OPERATOR\n"
        f":86:KIOSK {DAY:%Y%m%d}\n"
        f":62F:C{LATE:%y%m%d}CNY1198,80\n"
    )
    bank = reconcile_bank_file(kiosk_day, statement, references={"kiosk": r"KIOSK {date:%Y%m%d}"})
    classes = [f.finding_class for f in all_findings(kiosk_day, bank)]
    assert classes == [FindingClass.SETTLEMENT_MATCHED]
    assert balance(kiosk_day, "clearing:kiosk:CNY") == 0
    assert balance(kiosk_day, "bank:CNY") == 19_880


def test_each_unbalanced_statement_is_reported_with_its_own_difference(
    gateway: Gateway, tmp_path: Path
) -> None:
    statement = tmp_path / "two.sta"
    statement.write_text(
        ":20:S1\n:25:A\n:28C:1\n:60F:C261124CNY100,00\n:61:2611251125C10,00NTRFX\n"
        ":62F:C261125CNY115,00\n-\n"
        ":20:S2\n:25:B\n:28C:1\n:60F:C261124CNY100,00\n:61:2611251125C10,00NTRFY\n"
        ":62F:C261125CNY105,00\n-\n"
    )
    bank = reconcile_bank_file(gateway, statement)
    unbalanced = [
        f for f in all_findings(gateway, bank) if f.finding_class is FindingClass.BANK_UNBALANCED
    ]
    assert [(f.reference, f.amount.minor) for f in unbalanced] == [
        ("statement S1 of A", -500),
        ("statement S2 of B", 500),
    ]
    assert [f.note for f in unbalanced] == [
        "line 1: opening 100.00 CNY + entries 10.00 CNY - closing 115.00 CNY = -5.00 CNY",
        "line 8: opening 100.00 CNY + entries 10.00 CNY - closing 105.00 CNY = 5.00 CNY",
    ]
    total = bank.total(FindingClass.BANK_UNBALANCED)
    # Off by 5.00 one way and 5.00 the other is 10.00 to explain, not 0.00.
    assert (total.count, total.amount) == (2, Money(1_000, "CNY"))


@pytest.mark.parametrize("path", [ABN_AMRO, RABOBANK, ING, BAI2_BANK], ids=lambda p: p.name)
def test_lines_ended_by_cr_alone_are_refused_not_misread(path: Path) -> None:
    data = path.read_bytes().replace(b"\n", b"\r")
    with pytest.raises(ParseError):
        list(read_bank_statement(io.BytesIO(data)))
