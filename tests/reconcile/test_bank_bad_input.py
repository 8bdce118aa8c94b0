"""Bank statement files that cannot be read are refused with ParseError at the right line.

The broken files are real ones (see ``shared/data/SOURCES.md`` for their origin) and this
package's own camt.053 samples, each changed in one place; the tests name the line the change
is on and expect the refusal to name it too.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from paygate.errors import ConfigurationError, ParseError
from paygate.reconcile.bank import (
    BankStatement,
    CsvLayout,
    detect_bank_format,
    read_bai2,
    read_bank_csv,
    read_bank_statement,
    read_camt053,
    read_mt940,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HERE = Path(__file__).resolve().parent
BETTERPLACE = DATA / "mt940_betterplace_sepa_mt9401.sta"
CITI_MT940 = DATA / "mt940_citi_mt940.txt"
MOOV_BAI2 = DATA / "bai2_moov_sample1.bai2"
CAMT_V02 = HERE / "data" / "camt053_v02_cny.xml"
CAMT_V04 = HERE / "data" / "camt053_v04_eur.xml"

Reader = Callable[[io.BytesIO], Iterator[BankStatement]]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def with_line(path: Path, line_no: int, old: bytes, new: bytes) -> bytes:
    """The file with ``old`` replaced by ``new`` on line ``line_no`` (which must hold it)."""
    lines = lines_of(path)
    assert old in lines[line_no - 1], lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new)
    return b"".join(lines)


def without_lines(path: Path, *line_nos: int) -> bytes:
    return b"".join(
        line for number, line in enumerate(lines_of(path), start=1) if number not in line_nos
    )


def refusal(reader: Reader, data: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        list(reader(io.BytesIO(data)))
    return caught.value


# -- MT940 ---------------------------------------------------------------------------------


def test_mt940_truncated_inside_a_statement() -> None:
    data = b"".join(lines_of(BETTERPLACE)[:15])
    error = refusal(read_mt940, data)
    assert error.line == 15
    assert error.field == ":62F:"
    assert "T089413946000001" in error.message


def test_mt940_missing_closing_balance_before_a_separator() -> None:
    # Line 23 is the first statement's :62F:; the "-" that ends the statement moves to 24.
    error = refusal(read_mt940, without_lines(BETTERPLACE, 23))
    assert error.line == 24
    assert error.field == ":62F:"
    assert "T089413946000001" in error.message
    error = refusal(read_mt940, without_lines(CITI_MT940, 21))
    assert (error.line, error.field) == (22, ":62F:")


def test_mt940_missing_closing_balance_at_end_of_file() -> None:
    # Without :62F: (line 21) and the closing "-" (line 23) the file ends at the :64: line.
    error = refusal(read_mt940, without_lines(CITI_MT940, 21, 23))
    assert (error.line, error.field) == (21, ":62F:")


def test_mt940_missing_account() -> None:
    error = refusal(read_mt940, without_lines(CITI_MT940, 2))
    assert (error.line, error.field) == (22, ":25:")


@pytest.mark.parametrize(
    ("line_no", "old", "new", "field"),
    [
        (4, b"17376,67", b"17376.67", ":60F:"),
        (4, b"C240312", b"X240312", ":60F:"),
        (4, b"C240312", b"C241312", ":60F:"),
        (4, b"USD", b"usd", ":60F:"),
        (5, b"212,39", b"212,391", ":61: amount"),
        (5, b"212,39", b"21A,39", ":61:"),
        (5, b"240312", b"240230", ":61: value date"),
        (21, b"16233,92", b"16233,9,2", ":62F:"),
        (22, b"USD", b"EUR", ":64:"),
    ],
)
def test_mt940_bad_fields(line_no: int, old: bytes, new: bytes, field: str) -> None:
    error = refusal(read_mt940, with_line(CITI_MT940, line_no, old, new))
    assert error.line == line_no
    assert error.field == field


def test_mt940_bad_entry_date() -> None:
    data = with_line(BETTERPLACE, 5, b"0709040904CR", b"0709041332CR")
    error = refusal(read_mt940, data)
    assert (error.line, error.field) == (5, ":61: entry date")


def test_mt940_entry_before_opening_balance() -> None:
    lines = lines_of(CITI_MT940)
    lines[3], lines[4] = lines[4], lines[3]
    error = refusal(read_mt940, b"".join(lines))
    assert (error.line, error.field) == (4, ":61:")


def test_mt940_second_opening_balance() -> None:
    lines = lines_of(CITI_MT940)
    lines.insert(4, lines[3])
    error = refusal(read_mt940, b"".join(lines))
    assert (error.line, error.field) == (5, ":60F:")


def test_mt940_continuation_of_a_single_line_tag() -> None:
    lines = lines_of(CITI_MT940)
    lines.insert(3, b"stray text\n")
    error = refusal(read_mt940, b"".join(lines))
    assert (error.line, error.field) == (4, ":28:")


def test_mt940_garbage_bytes() -> None:
    error = refusal(read_mt940, b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff")
    assert error.line == 1
    error = refusal(read_mt940, b"hello\nworld\n")
    assert error.line == 1


def test_mt940_wrong_encoding_names_the_line() -> None:
    data = with_line(CITI_MT940, 7, b"SOMETHING FOO BAR", "MÜLLER STROM".encode("latin-1"))
    error = refusal(read_mt940, data)
    assert (error.line, error.field) == (7, "encoding")
    (statement,) = read_mt940(io.BytesIO(data), encoding="latin-1")
    assert statement.entries[0].details is not None
    assert "MÜLLER STROM" in statement.entries[0].details


def test_mt940_empty_and_blank_files() -> None:
    assert refusal(read_mt940, b"").line == 1
    assert refusal(read_mt940, b"\n\n-\n").line == 3


def test_mt940_tag_outside_a_statement() -> None:
    error = refusal(read_mt940, b":25:123\n")
    assert error.line == 1
    data = BETTERPLACE.read_bytes().splitlines(keepends=True)
    # After the "-" on line 24 the next statement must start with :20:.
    error = refusal(read_mt940, b"".join(data[:24]) + b":25:X\n")
    assert error.line == 25


def test_mt940_source_is_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.sta"
    path.write_bytes(without_lines(CITI_MT940, 21, 23))
    with pytest.raises(ParseError) as caught:
        list(read_mt940(path))
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}:21: ")


def test_mt940_encoding_must_be_line_compatible() -> None:
    with pytest.raises(ConfigurationError):
        read_mt940(CITI_MT940, encoding="utf-16")
    with pytest.raises(ConfigurationError):
        read_mt940(CITI_MT940, encoding="no-such-codec")


# -- BAI2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line_no", "old", "new", "field"),
    [
        (16, b"834000,14", b"834001,14", "49 control total"),
        (16, b"834000,14", b"834000,13", "49 record count"),
        (26, b"1280000,2,25", b"1280001,2,25", "98 control total"),
        (26, b"1280000,2,25", b"1280000,3,25", "98 number of accounts"),
        (26, b"1280000,2,25", b"1280000,2,24", "98 record count"),
        (27, b"1280000,1,27", b"1280010,1,27", "99 control total"),
        (27, b"1280000,1,27", b"1280000,2,27", "99 number of groups"),
        (27, b"1280000,1,27", b"1280000,1,28", "99 record count"),
        (27, b"1280000,1,27", b"1280000,1,", "99 record count"),
        (5, b"000000000002500", b"0000000000025O0", "16 amount"),
        (5, b"000000000002500,V", b"000000000002500,Q", "16 funds type"),
        (5, b"060316", b"060230", "16 value date"),
        (5, b"16,409", b"16,4A9", "16 type code"),
        (4, b"000000000208500,00003", b"00000000020850X,00003", "03 amount"),
        (4, b"00003", b"0000x", "03 item count"),
        (3, b"CAD", b"XYZ", "03 currency"),
        (2, b"060317", b"061317", "02 as-of date"),
        (1, b",2/", b",3/", "01 version"),
        (7, b"16,", b"17,", "record code"),
    ],
)
def test_bai2_broken_totals_and_fields(line_no: int, old: bytes, new: bytes, field: str) -> None:
    error = refusal(read_bai2, with_line(MOOV_BAI2, line_no, old, new))
    assert error.line == line_no
    assert error.field == field


def test_bai2_detail_total_includes_the_changed_amount() -> None:
    # Changing a detail amount alone breaks the account control total on the 49 record.
    data = with_line(MOOV_BAI2, 5, b"000000000002500", b"000000000002600")
    error = refusal(read_bai2, data)
    assert (error.line, error.field) == (16, "49 control total")


def test_bai2_truncated_files() -> None:
    lines = lines_of(MOOV_BAI2)
    error = refusal(read_bai2, b"".join(lines[:-1]))
    assert error.line == 26
    assert "99" in error.message
    error = refusal(read_bai2, b"".join(lines[:20]))
    assert error.line == 20
    assert "49" in error.message


def test_bai2_records_out_of_place() -> None:
    lines = lines_of(MOOV_BAI2)
    error = refusal(read_bai2, b"".join(lines[1:]))
    assert (error.line, error.field) == (1, "02")
    error = refusal(read_bai2, b"88,100/\n" + b"".join(lines))
    assert (error.line, error.field) == (1, "88")
    error = refusal(read_bai2, b"".join(lines) + b"\n" + lines[0])
    assert error.line == 28
    # Without its 03 record the account's 88 continues the group header, which has no room.
    error = refusal(read_bai2, without_lines(MOOV_BAI2, 3))
    assert (error.line, error.field) == (3, "02")


def test_bai2_detail_code_with_no_direction() -> None:
    error = refusal(read_bai2, with_line(MOOV_BAI2, 5, b"16,409", b"16,890"))
    assert (error.line, error.field) == (5, "16 type code")


def test_bai2_garbage_and_empty() -> None:
    assert refusal(read_bai2, b"").line == 1
    assert refusal(read_bai2, b"\x00\x01\x02garbage").line == 1
    assert refusal(read_bai2, b"01,a,b,240101,0000,1,,,2/\n\xff\xfe/\n").line == 2


# -- camt.053 ------------------------------------------------------------------------------


def test_camt_truncated() -> None:
    data = b"".join(lines_of(CAMT_V04)[:100])
    error = refusal(read_camt053, data)
    assert (error.line, error.field) == (100, "xml")


def test_camt_missing_closing_balance() -> None:
    error = refusal(read_camt053, without_lines(CAMT_V04, *range(31, 43)))
    assert (error.line, error.field) == (8, "Bal/CLBD")
    error = refusal(read_camt053, without_lines(CAMT_V04, *range(19, 31)))
    assert (error.line, error.field) == (8, "Bal/OPBD")


@pytest.mark.parametrize(
    ("line_no", "old", "new", "field"),
    [
        (57, b">1500.00<", b">1,500.00<", "Ntry/Amt"),
        (57, b">1500.00<", b">1500.001<", "Ntry/Amt"),
        (57, b">1500.00<", b">-1500.00<", "Ntry/Amt"),
        (57, b'Ccy="EUR"', b'Ccy="USD"', "Ntry/Amt"),
        (57, b'Ccy="EUR"', b'Ccy="XXX"', "currency"),
        (58, b"CRDT", b"CREDIT", "Ntry/CdtDbtInd"),
        (25, b">250.00<", b">abc<", "Bal/Amt"),
        (40, b"2024-03-11", b"2024-02-30", "Dt/Dt"),
        (28, b"2024-03-10T23:59:59", b"2024-03-10 late", "Dt/DtTm"),
    ],
)
def test_camt_bad_fields(line_no: int, old: bytes, new: bytes, field: str) -> None:
    error = refusal(read_camt053, with_line(CAMT_V04, line_no, old, new))
    assert error.line == line_no
    assert error.field == field


def test_camt_wrong_encoding_names_the_line() -> None:
    data = with_line(CAMT_V02, 93, "张三".encode(), "张三".encode("gbk"))
    error = refusal(read_camt053, data)
    assert (error.line, error.field) == (93, "xml")


def test_camt_declared_multibyte_encoding_is_refused() -> None:
    data = CAMT_V02.read_text("utf-8").replace("UTF-8", "GBK").encode("gbk")
    error = refusal(read_camt053, data)
    assert (error.line, error.field) == (1, "encoding")


def test_camt_entities_are_never_expanded() -> None:
    for doctype in (
        b'<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n',
        b'<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n',
    ):
        lines = lines_of(CAMT_V04)
        data = lines[0] + doctype + b"".join(lines[1:])
        error = refusal(read_camt053, data)
        assert (error.line, error.field) == (2, "DOCTYPE")


def test_camt_other_documents_are_refused() -> None:
    data = CAMT_V04.read_bytes().replace(b"camt.053.001.04", b"camt.052.001.04")
    error = refusal(read_camt053, data)
    assert (error.line, error.field) == (2, "Document")
    error = refusal(read_camt053, b'<?xml version="1.0"?>\n<invoice><total>1</total></invoice>\n')
    assert (error.line, error.field) == (2, "Document")
    data = CAMT_V04.read_bytes().replace(b"BkToCstmrStmt", b"BkToCstmrAcctRpt")
    error = refusal(read_camt053, data)
    assert error.field == "Stmt"


def test_camt_garbage() -> None:
    assert refusal(read_camt053, b"").line == 1
    assert refusal(read_camt053, b"\x00\x00\xfe\xff<").line == 1
    assert refusal(read_camt053, b"not xml at all\n").line == 1
    assert refusal(read_camt053, b"\xef\xbb\xbf<Document>\n<a>\n").line == 2


# -- CSV -----------------------------------------------------------------------------------

LAYOUT = CsvLayout(
    currency="CNY",
    encoding="gbk",
    date_column="日期",
    amount_column="金额",
    reference_column="流水号",
)


def csv_reader(layout: CsvLayout = LAYOUT) -> Reader:
    return lambda stream: read_bank_csv(stream, layout)


def gbk(text: str) -> bytes:
    return text.encode("gbk")


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("2024-03-01,12.345,A1\n", 2, "amount_column"),
        ("2024-03-01,1 2,A1\n", 2, "amount_column"),
        ("2024-03-01,,A1\n", 2, "amount_column"),
        ("2024-03-01,10.00,A1\n2024-13-01,10.00,A2\n", 3, "date_column"),
        ("2024-03-01,10.00,A1\n2024-03-02\n", 3, "amount_column"),
        ('2024-03-01,10.00,"A1\n', 2, "csv"),
    ],
)
def test_csv_bad_rows(body: str, line: int, field: str) -> None:
    error = refusal(csv_reader(), gbk("日期,金额,流水号\n" + body))
    assert (error.line, error.field) == (line, field)


def test_csv_header_without_a_named_column() -> None:
    error = refusal(csv_reader(), gbk("标题\n日期,金额\n2024-03-01,1.00\n"))
    assert (error.line, error.field) == (1, "date_column")
    error = refusal(
        csv_reader(LAYOUT.model_copy(update={"skip_rows": 1})), gbk("标题\n日期,金额\n")
    )
    assert (error.line, error.field) == (2, "reference_column")


def test_csv_wrong_encoding_names_the_line() -> None:
    data = gbk("日期,金额,流水号\n2024-03-01,1.00,A1\n") + b"2024-03-02,2.00,\xff\n"
    error = refusal(csv_reader(), data)
    assert (error.line, error.field) == (3, "encoding")
    error = refusal(csv_reader(LAYOUT.model_copy(update={"encoding": "utf-8"})), data)
    assert (error.line, error.field) == (1, "encoding")


def test_csv_debit_and_credit_columns_are_checked() -> None:
    layout = CsvLayout(
        currency="CNY",
        date_column=0,
        debit_column=1,
        credit_column=2,
        has_header=False,
        debits_negative=False,
    )
    reader = csv_reader(layout)
    assert refusal(reader, b"2024-03-01,5.00,6.00\n").field == "debit_column"
    assert refusal(reader, b"2024-03-01,-5.00,\n").field == "debit_column"
    assert refusal(reader, b"2024-03-01,,-6.00\n").field == "credit_column"
    assert refusal(reader, b"2024-03-01,,\n2024-03-02,,\n").line == 1
    assert refusal(reader, b"").line == 1


def test_csv_unknown_direction_marker() -> None:
    layout = CsvLayout(
        currency="CNY", date_column=0, amount_column=1, direction_column=2, has_header=False
    )
    error = refusal(csv_reader(layout), "2024-03-01,5.00,借\n2024-03-01,5.00,转\n".encode())
    assert (error.line, error.field) == (2, "direction_column")
    error = refusal(csv_reader(layout), "2024-03-01,-5.00,借\n".encode())
    assert (error.line, error.field) == (1, "amount_column")


@pytest.mark.parametrize(
    "fields",
    [
        {"date_column": "d"},
        {"date_column": "d", "amount_column": "a", "debit_column": "b", "credit_column": "c"},
        {"date_column": "d", "debit_column": "b"},
        {"date_column": "d", "amount_column": "a", "has_header": False},
        {"date_column": 0, "amount_column": 1, "encoding": "utf-16"},
        {"date_column": 0, "amount_column": -1},
        {"date_column": 0, "amount_column": 1, "delimiter": ";;"},
        {"date_column": 0, "amount_column": 1, "thousands_separator": "."},
        {"date_column": 0, "amount_column": 1, "date_format": "YYYY-MM-DD"},
        {"date_column": 0, "amount_column": 1, "credit_markers": frozenset({"D"})},
    ],
)
def test_csv_layouts_that_cannot_work(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CsvLayout(currency="CNY", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CsvLayout(currency="XXX", date_column=0, amount_column=1)


# -- detection -----------------------------------------------------------------------------


def test_detection_refuses_what_it_cannot_name(tmp_path: Path) -> None:
    path = tmp_path / "export.bin"
    path.write_bytes(b"\x00\x01\x02\x03")
    with pytest.raises(ParseError) as caught:
        detect_bank_format(path)
    assert (caught.value.line, caught.value.field, caught.value.source) == (1, "format", str(path))
    with pytest.raises(ParseError):
        detect_bank_format(io.BytesIO(b'<?xml version="1.0"?><pain.001/>'))
    with pytest.raises(ParseError):
        list(read_bank_statement(io.BytesIO(b"date,amount\n")))
    with pytest.raises(ValueError, match="csv_layout"):
        read_bank_statement(io.BytesIO(b"x"), "csv")
    with pytest.raises(ValueError, match="unknown bank statement format"):
        read_bank_statement(io.BytesIO(b"x"), "qif")


# -- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bom", "encoding", "text"),
    [
        (b"\xff\xfe", "utf-16-le", ":20:X\n"),
        (b"\xfe\xff", "utf-16-be", ":20:X\n"),
        (b"\xff\xfe\x00\x00", "utf-32-le", "01,a\n"),
        (b"\x00\x00\xfe\xff", "utf-32-be", "01,a\n"),
    ],
)
def test_detection_reads_a_byte_order_mark_without_a_unicode_error(
    bom: bytes, encoding: str, text: str
) -> None:
    """A mark followed by text or by a broken character is a format or a refusal, no crash."""
    data = bom + text.encode(encoding)
    assert detect_bank_format(io.BytesIO(data)) in {"mt940", "bai2"}
    with pytest.raises(ParseError):
        list(read_bank_statement(io.BytesIO(data)))
    with pytest.raises(ParseError):
        detect_bank_format(io.BytesIO(bom + b"\x00"))
