"""camt.053 statements read from two hand-built files, one per schema version.

``data/camt053_v02_cny.xml`` (camt.053.001.02) is a Chinese bank's day for a utility's
collection account: a kiosk payment, a wallet's batch settlement with three transactions, the
reversal of the kiosk payment, an account fee, and a second account whose statement does not
balance (and holds a pending entry). ``data/camt053_v04_eur.xml`` (camt.053.001.04) has date-time
booking dates, a debit opening balance, a batch of direct debit returns and the reversal of a
refund.
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
    BankTransaction,
    detect_bank_format,
    read_bank_statement,
    read_camt053,
)

HERE = Path(__file__).resolve().parent
V02 = HERE / "data" / "camt053_v02_cny.xml"
V04 = HERE / "data" / "camt053_v04_eur.xml"


def cny(text: str) -> Money:
    return Money.parse(text, "CNY")


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


@pytest.fixture(scope="module")
def v02() -> list[BankStatement]:
    return list(read_camt053(V02))


@pytest.fixture(scope="module")
def v04() -> list[BankStatement]:
    return list(read_camt053(V04))


def test_v02_collection_account_balances(v02: list[BankStatement]) -> None:
    collection, other = v02
    assert collection.format is BankFormat.CAMT053
    assert collection.line_no == 12
    assert collection.statement_id == "CMB-755912345610001-20240311"
    assert collection.sequence == "71"
    assert collection.account_id == "755912345610001"  # Acct/Id/Othr/Id
    assert collection.currency == "CNY"
    assert collection.opening_balance == cny("1000000.00")
    assert collection.closing_balance == cny("1000335.50")
    assert collection.opening_date == collection.closing_date == date(2024, 3, 11)
    assert collection.balanced is True
    assert [entry.line_no for entry in collection.entries] == [60, 110, 180, 223]
    assert [entry.amount for entry in collection.entries] == [
        cny("12050.00"),
        cny("350.50"),
        cny("-12050.00"),
        cny("-15.00"),
    ]
    assert other.line_no == 243


def test_v02_kiosk_payment_is_matched_by_end_to_end_id(v02: list[BankStatement]) -> None:
    payment = v02[0].entries[0]
    assert payment.customer_reference == "KIOSK-20240311-0001"
    assert payment.bank_reference == "BK20240311000123"
    assert payment.type_code == "PMNT/RCDT/DMCT"
    assert payment.booking_date == payment.value_date == date(2024, 3, 11)
    assert payment.details == "户号 0100234567\n2024年2月电费"
    assert payment.counterparty_name == "张三"
    assert payment.counterparty_account == "6222020200112233445"
    assert payment.transactions == ()
    assert payment.reversal is False


def test_v02_wallet_settlement_batch(v02: list[BankStatement]) -> None:
    batch = v02[0].entries[1]
    assert batch.customer_reference == "WXPAY-SETTLE-20240310"  # Btch/PmtInfId
    assert batch.supplementary_details == "财付通 2024-03-10 结算"
    assert batch.details is None
    assert batch.transactions == (
        BankTransaction(
            amount=cny("100.00"),
            customer_reference="4200002151202403100001",
            details="户号 0100234501",
        ),
        BankTransaction(
            amount=cny("200.00"),
            customer_reference="4200002151202403100002",
            details="户号 0100234502",
        ),
        BankTransaction(
            amount=cny("50.50"),
            customer_reference="4200002151202403100003",
            details="户号 0100234503",
        ),
    )
    assert sum(tx.amount.minor for tx in batch.transactions if tx.amount) == batch.amount.minor


def test_v02_reversal_of_the_kiosk_payment_goes_out(v02: list[BankStatement]) -> None:
    reversal = v02[0].entries[2]
    assert reversal.reversal is True
    assert reversal.amount == cny("-12050.00")
    assert reversal.customer_reference == "KIOSK-20240311-0001"
    # The original payment came in from the customer, so the customer stays the counterparty.
    assert reversal.counterparty_name == "张三"
    fee = v02[0].entries[3]
    assert fee.type_code == "FEE"  # BkTxCd/Prtry/Cd
    assert fee.supplementary_details == "账户管理费"
    assert fee.customer_reference is None


def test_v02_second_account_does_not_balance(v02: list[BankStatement]) -> None:
    statement = v02[1]
    assert statement.statement_id == "CMB-755912345610002-20240311"
    assert statement.sequence == "12"  # LglSeqNb when there is no ElctrncSeqNb
    # PRCD (previous closing) stands in for a missing OPBD.
    assert statement.opening_balance == cny("500.00")
    assert statement.opening_date == date(2024, 3, 10)
    assert statement.closing_balance == cny("800.00")
    assert [(b.code, b.amount) for b in statement.balances] == [("CLAV", cny("899.00"))]
    booked, pending = statement.entries
    assert booked.customer_reference is None  # EndToEndId NOTPROVIDED
    assert booked.details == "POS 结算 20240310"
    assert pending.booked is False
    assert pending.booking_date is None
    # The pending 99.00 does not count: 500 + 200 - 800 = -100.
    assert statement.total == cny("200.00")
    assert statement.balance_difference == cny("-100.00")
    assert statement.balanced is False
    assert statement.information == "余额不符，请联系开户行"


def test_v04_statement_with_datetimes_and_debit_opening(v04: list[BankStatement]) -> None:
    (statement,) = v04
    assert statement.line_no == 8
    assert statement.account_id == "DE89370400440532013000"  # Acct/Id/IBAN
    assert statement.sequence == "58"
    assert statement.opening_balance == eur("-250.00")
    assert statement.opening_date == date(2024, 3, 10)  # from Dt/DtTm
    assert statement.closing_balance == eur("1425.30")
    assert statement.balanced is True
    assert [(b.code, b.amount) for b in statement.balances] == [("CLAV", eur("1425.30"))]
    payment, returns, reversal = statement.entries
    assert payment.booking_date == date(2024, 3, 11)  # "2024-03-11T09:15:27.123+01:00"
    assert payment.customer_reference == "ONLINE-7c1f0e2a"
    assert payment.counterparty_name == "Stadtwerke Kunde GmbH"
    assert payment.counterparty_account == "DE02120300000000202051"
    assert payment.type_code == "PMNT/RCDT/ESCT"
    assert returns.amount == eur("-60.50")
    assert returns.customer_reference == "DD-RETURNS-20240311"  # Btch/MsgId
    assert [tx.amount for tx in returns.transactions] == [eur("-40.25"), eur("-20.25")]
    assert [tx.bank_reference for tx in returns.transactions] == ["R-0001", "R-0002"]
    # A return names only the debtor; that is the counterparty although money goes out.
    assert [tx.counterparty_name for tx in returns.transactions] == [
        "Max Mustermann",
        "Erika Musterfrau",
    ]
    assert returns.transactions[0].counterparty_account == "DE75512108001245126199"
    assert reversal.reversal is True
    assert reversal.amount == eur("235.80")  # reversal of a debit: money back in
    assert reversal.value_date == date(2024, 3, 11)
    assert reversal.counterparty_name == "Hans Meier"


def test_camt_files_are_detected_and_read_from_streams() -> None:
    assert detect_bank_format(V02) is BankFormat.CAMT053
    assert detect_bank_format(V04) is BankFormat.CAMT053
    data = V04.read_bytes()
    assert list(read_bank_statement(io.BytesIO(data))) == list(read_camt053(V04))
    assert list(read_camt053(io.StringIO(data.decode("utf-8")))) == list(read_camt053(V04))


def test_utf16_document_with_byte_order_mark() -> None:
    text = V04.read_text("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    assert list(read_camt053(io.BytesIO(text.encode("utf-16")))) == list(read_camt053(V04))


def test_single_line_document_reports_line_one() -> None:
    text = " ".join(line.strip() for line in V04.read_text("utf-8").splitlines())
    (statement,) = read_camt053(io.BytesIO(text.encode("utf-8")))
    assert statement.line_no == 1
    assert {entry.line_no for entry in statement.entries} == {1}
    broken = text.replace('<Amt Ccy="EUR">60.50</Amt>', '<Amt Ccy="EUR">60,50</Amt>')
    with pytest.raises(ParseError) as caught:
        list(read_camt053(io.BytesIO(broken.encode("utf-8"))))
    assert caught.value.line == 1
    assert caught.value.field == "Ntry/Amt"


@pytest.mark.parametrize("version", ["02", "04", "08", "13"])
def test_any_camt053_001_namespace_is_accepted(version: str) -> None:
    text = V02.read_text("utf-8").replace("camt.053.001.02", f"camt.053.001.{version}")
    assert len(list(read_camt053(io.BytesIO(text.encode("utf-8"))))) == 2


def test_document_without_namespace_or_inside_an_envelope() -> None:
    text = V04.read_text("utf-8")
    bare = text.replace(' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"', "")
    assert list(read_camt053(io.BytesIO(bare.encode("utf-8")))) == list(read_camt053(V04))
    declaration, _, body = text.partition("\n")
    wrapped = "\n".join(
        [
            declaration,
            '<BizMsg xmlns="urn:example:envelope"><AppHdr><BizMsgIdr>B1</BizMsgIdr></AppHdr>',
            body.rstrip("\n"),
            "</BizMsg>",
        ]
    )
    (statement,) = read_camt053(io.BytesIO(wrapped.encode("utf-8")))
    assert statement.line_no == 9  # one line further down than in the file itself
    assert statement.balanced is True
