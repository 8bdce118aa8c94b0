"""Every reader of a statement file holds a bounded amount of it, whatever the file.

A file of several megabytes with no line break (a wrong upload, a truncated transfer, an attack)
is refused with a ParseError naming the line, and the reader never holds more than its cap of
it: peak memory is measured with tracemalloc against a bound well below the file's size.
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from paygate.channels.bank_agent import read_bank_statement as read_bank_agent_statement
from paygate.channels.kiosk import KIOSK_STATEMENT_COLUMNS, read_kiosk_statement
from paygate.channels.mobile import read_alipay_bill, read_wechat_trade_bill
from paygate.channels.online import read_online_statement
from paygate.channels.pos import read_pos_statement
from paygate.channels.voucher import read_voucher_statement
from paygate.errors import ParseError
from paygate.reconcile.bank import (
    CsvLayout,
    detect_bank_format,
    read_bai2,
    read_bank_csv,
    read_bank_statement,
    read_camt053,
    read_mt940,
)

# Big enough that holding it would stand out against the bound; small enough to stay fast.
LONG = 8 * 1024 * 1024
# What a line reader may hold: its 64 KiB line and the bookkeeping around it.
LINE_BOUND = 1024 * 1024
# camt.053 has no lines (real files are often one line); a run of 1 MiB of text is its cap.
XML_BOUND = 4 * 1024 * 1024

Reader = Callable[[Path], Iterable[object]]


def _peak_while_refused(read: Reader, path: Path) -> tuple[ParseError, int]:
    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as caught:
            for _ in read(path):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return caught.value, peak


def _write(path: Path, prefix: bytes, filler: bytes = b"A") -> Path:
    with path.open("wb") as out:
        out.write(prefix)
        chunk = filler * (1024 * 1024)
        for _ in range(LONG // len(chunk)):
            out.write(chunk)
    return path


LAYOUT = CsvLayout(currency="CNY", date_column="date", amount_column="amount")

LINE_READERS: dict[str, tuple[bytes, int, Reader]] = {
    # name: (what comes before the endless line, its line number, the reader)
    "mt940": (b":20:STMT1\n:25:", 2, read_mt940),
    "bai2": (b"01,SENDER,RECEIVER,240311,0815,F1,,,2/\n02,", 2, read_bai2),
    "bank csv": (b"date,amount\n2024-03-11,", 2, lambda p: read_bank_csv(p, LAYOUT)),
    "auto-detected mt940": (b":20:STMT1\n", 2, read_bank_statement),
    "kiosk": (b"", 1, lambda p: read_kiosk_statement(p, currency="CNY")),
    "kiosk after its header": (
        ",".join(KIOSK_STATEMENT_COLUMNS).encode() + b"\n",
        2,
        lambda p: read_kiosk_statement(p, currency="CNY"),
    ),
    "online": (b"", 1, lambda p: read_online_statement(p, currency="CNY")),
    "pos": (b"", 1, lambda p: read_pos_statement(p, currency="CNY")),
    "voucher": (
        b"",
        1,
        lambda p: read_voucher_statement(p, currency="CNY", timezone="Asia/Shanghai"),
    ),
    "wechat": (b"", 1, lambda p: read_wechat_trade_bill(p, currency="CNY")),
    "alipay": (b"#\n", 2, lambda p: read_alipay_bill(p, currency="CNY")),
    "bank agent": (
        b"",
        1,
        lambda p: read_bank_agent_statement(p, currency="CNY", bank_code="ICBC"),
    ),
}


@pytest.mark.parametrize("name", sorted(LINE_READERS))
def test_an_endless_line_is_refused_without_being_held(name: str, tmp_path: Path) -> None:
    prefix, line, read = LINE_READERS[name]
    path = _write(tmp_path / "endless", prefix)
    error, peak = _peak_while_refused(read, path)
    assert error.line == line
    assert "longer than" in error.message
    assert peak < LINE_BOUND, f"{name} held {peak} bytes of an {LONG}-byte line"


def test_an_endless_line_from_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    path = _write(tmp_path / "endless", b":20:STMT1\n:25:")

    class Pipe:
        def __init__(self, raw: io.BufferedReader) -> None:
            self.raw = raw

        def readline(self, size: int = -1, /) -> bytes:
            return self.raw.readline(size)

    def read(p: Path) -> Iterable[object]:
        with p.open("rb") as raw:
            yield from read_bank_statement(Pipe(raw))

    error, peak = _peak_while_refused(read, path)
    assert error.line == 2
    assert peak < LINE_BOUND


def test_detection_reads_only_the_head(tmp_path: Path) -> None:
    path = _write(tmp_path / "endless", b"")
    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as caught:
            detect_bank_format(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.line == 1
    assert peak < LINE_BOUND


CAMT_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
    b"<BkToCstmrStmt><Stmt><Id>S1</Id><AddtlStmtInf>"
)


@pytest.mark.parametrize(
    ("what", "prefix", "filler"),
    [
        ("text", CAMT_HEAD, b"A"),
        ("comment", CAMT_HEAD + b"<!--", b"A"),
        ("attribute", CAMT_HEAD + b'<X a="', b"A"),
    ],
)
def test_an_endless_xml_token_is_refused_without_being_held(
    what: str, prefix: bytes, filler: bytes, tmp_path: Path
) -> None:
    path = _write(tmp_path / f"endless-{what}.xml", prefix, filler)
    error, peak = _peak_while_refused(read_camt053, path)
    assert error.line == 1
    assert error.field == "xml"
    assert peak < XML_BOUND, f"camt.053 held {peak} bytes of an endless {what}"


CAMT_STATEMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
    b"<Stmt><Id>S1</Id><Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id><Ccy>EUR</Ccy></Acct>"
    b"<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>0.00</Amt>"
    b"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-11</Dt></Dt></Bal>"
)
# Elements cost far more in memory than in the file: a million of them held would be hundreds
# of megabytes.
ELEMENT_BOUND = 32 * 1024 * 1024


def test_a_one_line_camt053_document_still_reads(tmp_path: Path) -> None:
    # Real camt.053 files often have no line breaks at all: the cap is on a run without
    # elements, not on the line.
    entry = (
        b"<Ntry><Amt Ccy='EUR'>1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>"
        b"<BookgDt><Dt>2024-03-11</Dt></BookgDt><BkTxCd/></Ntry>"
    )
    count = 10_000
    body = (
        CAMT_STATEMENT
        + b"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>%d.00</Amt>"
        b"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-11</Dt></Dt></Bal>"
        % count
        + entry * count
        + b"</Stmt></BkToCstmrStmt></Document>"
    )
    path = tmp_path / "one-line.xml"
    path.write_bytes(body)
    assert len(body) > LINE_BOUND
    (statement,) = read_camt053(path)
    assert len(statement.entries) == count
    assert statement.balanced


@pytest.mark.parametrize(
    ("what", "body", "message"),
    [
        ("nested", b"<a>" * 1_000_000, "nested more than"),
        ("siblings", b"<X/>" * 1_000_000, "elements of the statement"),
    ],
)
def test_endless_xml_elements_are_refused_without_being_held(
    what: str, body: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{what}.xml"
    path.write_bytes(CAMT_STATEMENT + body)
    error, peak = _peak_while_refused(read_camt053, path)
    assert (error.line, error.field) == (1, "xml")
    assert message in error.message
    assert peak < ELEMENT_BOUND, f"camt.053 held {peak} bytes of {what} elements"


PEAK_FOR_BATCH = 12 * 1024 * 1024


def test_a_large_batch_entry_holds_its_records_not_its_elements(tmp_path: Path) -> None:
    count = 5_000
    transaction = (
        b"<TxDtls><Refs><EndToEndId>E2E-%06d</EndToEndId></Refs><Amt Ccy='EUR'>1.00</Amt>"
        b"<RltdPties><Dbtr><Nm>Customer</Nm></Dbtr><DbtrAcct><Id><IBAN>NL02ABNA0123456789"
        b"</IBAN></Id></DbtrAcct></RltdPties><RmtInf><Ustrd>electricity bill</Ustrd></RmtInf>"
        b"</TxDtls>"
    )
    path = tmp_path / "batch.xml"
    path.write_bytes(
        CAMT_STATEMENT
        + b"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>%d.00</Amt>"
        b"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-11</Dt></Dt></Bal>"
        % count
        + b"<Ntry><Amt Ccy='EUR'>%d.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>"
        b"<BkTxCd/><NtryDtls><Btch><PmtInfId>B1</PmtInfId></Btch>"
        % count
        + b"".join(transaction % index for index in range(count))
        + b"</NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>"
    )
    tracemalloc.start()
    try:
        (statement,) = read_camt053(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (entry,) = statement.entries
    assert entry.customer_reference == "B1"
    assert len(entry.transactions) == count
    assert entry.transactions[-1].customer_reference == f"E2E-{count - 1:06d}"
    assert statement.balanced
    # The 5,000 records themselves take about 8 MB; their XML elements, held until the entry
    # ended, took as much again.
    assert peak < PEAK_FOR_BATCH
