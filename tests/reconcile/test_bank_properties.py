"""Properties of the bank statement readers.

* Round trip: a statement generated within what a format can express, written in that format
  (by the renderers in ``bank_formats``) and read back, is the statement generated, line
  numbers included.
* Refusal: whatever bytes or text a reader is given — random, or a real sample file (see
  ``shared/data/SOURCES.md``) or one of this package's bank-style samples, mutated — it yields
  statements or raises ParseError with a line, and nothing else.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from paygate.errors import ParseError
from paygate.reconcile.bank import (
    BankFormat,
    BankStatement,
    CsvLayout,
    detect_bank_format,
    read_bai2,
    read_bank_csv,
    read_bank_statement,
    read_camt053,
    read_mt940,
)
from tests.reconcile.bank_formats import (
    CAMT_VERSIONS,
    Bai2Group,
    CsvCase,
    bai2_groups,
    camt_statements,
    csv_cases,
    mt940_statements,
    render_bai2,
    render_camt053,
    render_csv,
    render_mt940,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HERE = Path(__file__).resolve().parent
SAMPLES = {
    "mt940_betterplace": (DATA / "mt940_betterplace_sepa_mt9401.sta").read_bytes(),
    "mt940_cmxl": (DATA / "mt940_cmxl_mt940.sta").read_bytes(),
    "mt940_citi": (DATA / "mt940_citi_mt940.txt").read_bytes(),
    "bai2_moov": (DATA / "bai2_moov_sample1.bai2").read_bytes(),
    "bai2_citi": (DATA / "bai2_mojbai2_citi_example.bai2").read_bytes(),
    "camt053_v02": (HERE / "data" / "camt053_v02_cny.xml").read_bytes(),
    "camt053_v04": (HERE / "data" / "camt053_v04_eur.xml").read_bytes(),
    "mt940_abnamro": (HERE / "data" / "mt940_abnamro.sta").read_bytes(),
    "mt940_rabobank": (HERE / "data" / "mt940_rabobank.sta").read_bytes(),
    "mt940_ing": (HERE / "data" / "mt940_ing_swift.sta").read_bytes(),
    "bai2_bank_style": (HERE / "data" / "bai2_bank_style.bai2").read_bytes(),
}
CSV_LAYOUT = CsvLayout(
    currency="CNY",
    encoding="gbk",
    date_column="日期",
    debit_column="借方",
    credit_column="贷方",
    balance_column="余额",
    reference_column="流水号",
    footer_rows=1,
)
CSV_SAMPLE = "".join(
    [
        "日期,借方,贷方,余额,流水号\n",
        "2024-03-11,,100.00,1100.00,A1\n",
        "2024-03-11,20.00,,1080.00,A2\n",
        "合计,20.00,100.00,,\n",
    ]
).encode("gbk")
POSITIONAL_LAYOUT = CsvLayout(
    currency="JPY", has_header=False, date_column=0, amount_column=1, details_column=5
)

Reader = Callable[[io.BytesIO | io.StringIO], Iterator[BankStatement]]
READERS: dict[str, Reader] = {
    "mt940": read_mt940,
    "camt053": read_camt053,
    "bai2": read_bai2,
    "csv": lambda source: read_bank_csv(source, CSV_LAYOUT),
    "csv_positional": lambda source: read_bank_csv(source, POSITIONAL_LAYOUT),
    "auto": read_bank_statement,
    "auto_csv": lambda source: read_bank_statement(source, csv_layout=CSV_LAYOUT),
}


def randoms() -> st.SearchStrategy[random.Random]:
    return st.randoms(use_true_random=False)


# -- round trips ---------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(mt940_statements(), min_size=1, max_size=3), randoms())
def test_mt940_round_trip(statements: list[BankStatement], rnd: random.Random) -> None:
    data, expected = render_mt940(statements, rnd)
    assert list(read_mt940(io.BytesIO(data))) == expected
    assert detect_bank_format(io.BytesIO(data)) is BankFormat.MT940


@settings(deadline=None)
@given(st.data(), st.sampled_from(CAMT_VERSIONS), randoms())
def test_camt053_round_trip(data: st.DataObject, version: str, rnd: random.Random) -> None:
    statements = data.draw(st.lists(camt_statements(version), min_size=1, max_size=2))
    document, expected = render_camt053(statements, version, rnd)
    assert list(read_camt053(io.BytesIO(document))) == expected
    assert list(read_bank_statement(io.BytesIO(document))) == expected


@settings(deadline=None)
@given(st.lists(bai2_groups(), min_size=1, max_size=3), randoms())
def test_bai2_round_trip(groups: list[Bai2Group], rnd: random.Random) -> None:
    data, expected = render_bai2(groups, rnd)
    assert list(read_bai2(io.BytesIO(data))) == expected
    assert detect_bank_format(io.BytesIO(data)) is BankFormat.BAI2


@settings(deadline=None)
@given(csv_cases(), randoms())
def test_csv_round_trip(case: CsvCase, rnd: random.Random) -> None:
    data, expected = render_csv(case, rnd)
    assert list(read_bank_csv(io.BytesIO(data), case.layout)) == [expected]
    if expected.balance_difference is not None:
        assert expected.balanced


# -- only ParseError -----------------------------------------------------------------------


def only_parse_errors(reader: Reader, source: io.BytesIO | io.StringIO) -> None:
    refusal: ParseError | None = None
    try:
        for statement in reader(source):
            assert isinstance(statement, BankStatement)
    except ParseError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.line is not None
        assert refusal.line >= 1
        assert str(refusal)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(sorted(READERS)))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes, reader: str) -> None:
    only_parse_errors(READERS[reader], io.BytesIO(data))


@settings(deadline=None)
@given(st.text(max_size=1000), st.sampled_from(sorted(READERS)))
def test_arbitrary_text_raises_only_parse_error(text: str, reader: str) -> None:
    only_parse_errors(READERS[reader], io.StringIO(text))


_FORMAT_TOKENS = [
    b"\n",
    b"\r\n",
    b"-",
    b"-}",
    b"{4:",
    b":20:",
    b":61:",
    b":86:",
    b":62F:",
    b"//",
    b",",
    b"/",
    b"88,",
    b"16,",
    b"49,",
    b"<Ntry>",
    b"</Ntry>",
    b'<Amt Ccy="EUR">',
    b"<!DOCTYPE x>",
    b"&amp;",
    b"\xff",
    b"\x00",
    "张".encode(),
    b"9" * 30,
]


def mutate(draw: st.DrawFn, original: bytes) -> bytes:
    """Apply one to four random edits: byte flips, cuts, insertions, format tokens, repeats."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "token", "truncate", "dup"]))
        if action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 40))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "token":
            data[position:position] = draw(st.sampled_from(_FORMAT_TOKENS))
        elif action == "truncate":
            del data[position:]
        elif action == "dup":
            start = data.rfind(b"\n", 0, position) + 1
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end + 1
            data[end:end] = data[start:end]
    return bytes(data)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(st.sampled_from(sorted(SAMPLES.items())))[1])


@st.composite
def mutated_renderings(draw: st.DrawFn) -> tuple[bytes, Reader]:
    """A generated statement file in one of the formats, mutated, with the reader for it."""
    rnd = draw(randoms())
    kind = draw(st.sampled_from(["mt940", "camt053", "bai2", "csv"]))
    if kind == "mt940":
        data, _ = render_mt940(draw(st.lists(mt940_statements(), min_size=1, max_size=2)), rnd)
        reader: Reader = read_mt940
    elif kind == "camt053":
        version = draw(st.sampled_from(CAMT_VERSIONS))
        statements = draw(st.lists(camt_statements(version), min_size=1, max_size=2))
        data, _ = render_camt053(statements, version, rnd)
        reader = read_camt053
    elif kind == "bai2":
        data, _ = render_bai2(draw(st.lists(bai2_groups(), min_size=1, max_size=2)), rnd)
        reader = read_bai2
    else:
        case = draw(csv_cases())
        data, _ = render_csv(case, rnd)

        def reader(source: io.BytesIO | io.StringIO) -> Iterator[BankStatement]:
            return read_bank_csv(source, case.layout)

    return mutate(draw, data), reader


@settings(max_examples=300, deadline=None)
@given(mutated_samples(), st.sampled_from(sorted(READERS)))
def test_mutated_samples_raise_only_parse_error(data: bytes, reader: str) -> None:
    only_parse_errors(READERS[reader], io.BytesIO(data))


@settings(max_examples=200, deadline=None)
@given(mutated_renderings())
def test_mutated_renderings_raise_only_parse_error(case: tuple[bytes, Reader]) -> None:
    data, reader = case
    only_parse_errors(reader, io.BytesIO(data))


@settings(deadline=None)
@given(mutated_samples())
def test_detection_raises_only_parse_error(data: bytes) -> None:
    refusal: ParseError | None = None
    try:
        assert detect_bank_format(io.BytesIO(data)) in set(BankFormat)
    except ParseError as exc:
        refusal = exc
    assert refusal is None or refusal.line == 1


def test_unmutated_samples_read() -> None:
    for name, data in SAMPLES.items():
        assert list(read_bank_statement(io.BytesIO(data))), name
    assert len(list(READERS["csv"](io.BytesIO(CSV_SAMPLE)))) == 1
