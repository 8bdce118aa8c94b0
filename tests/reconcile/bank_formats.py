"""Writers that put BankStatement records back into each bank file format, and Hypothesis
strategies for statements each format can express. The round-trip tests render generated
statements with these and read them back with paygate's readers.

Each renderer returns the file's bytes and the statements a reader must yield from them, with
the line numbers the renderer wrote them at. Rendering choices the records do not capture
(separators, envelopes, continuation splits, date-time or date, signs written or not) are drawn
from a Hypothesis-controlled ``random.Random``.
"""

from __future__ import annotations

import csv
import io
import random
import string
from dataclasses import dataclass
from datetime import date, timedelta
from xml.sax.saxutils import escape, quoteattr

from hypothesis import strategies as st

from paygate.money import Money, minor_units_exponent
from paygate.reconcile.bank import (
    BankBalance,
    BankEntry,
    BankFormat,
    BankStatement,
    BankTransaction,
    CsvLayout,
)

CURRENCIES = ("CNY", "EUR", "USD", "JPY", "KWD")
ALNUM = string.ascii_letters + string.digits
PLACEHOLDERS = {"NONREF", "NOTPROVIDED"}


def unsigned_text(minor: int, currency: str, mark: str = ".") -> str:
    """The magnitude of ``minor`` in major units with the currency's decimals."""
    exponent = minor_units_exponent(currency)
    magnitude = abs(minor)
    if exponent == 0:
        return str(magnitude)
    whole, fraction = divmod(magnitude, 10**exponent)
    return f"{whole}{mark}{fraction:0{exponent}d}"


# -- shared strategies ---------------------------------------------------------------------


def references(max_size: int = 16) -> st.SearchStrategy[str]:
    return st.text(ALNUM, min_size=1, max_size=max_size).filter(
        lambda text: text.upper() not in PLACEHOLDERS
    )


def optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.none() | strategy


def minor_amounts(limit: int = 10**12) -> st.SearchStrategy[int]:
    return st.integers(min_value=-limit, max_value=limit)


def yy_dates() -> st.SearchStrategy[date]:
    # Two-digit years are read 1980-2079; stay clear of both ends for dates moved by days.
    return st.dates(min_value=date(1981, 1, 1), max_value=date(2078, 12, 31))


_SWIFT_TEXT = string.ascii_letters + string.digits + " /.,+-()?'"


def swift_lines(max_size: int = 65) -> st.SearchStrategy[str]:
    """A line of SWIFT text that starts with a letter, so it can never look like a tag."""
    return st.builds(
        lambda first, rest: (first + rest).rstrip(),
        st.sampled_from(string.ascii_letters),
        st.text(_SWIFT_TEXT, max_size=max_size - 1),
    )


def swift_texts(max_lines: int = 4) -> st.SearchStrategy[str]:
    return st.lists(swift_lines(), min_size=1, max_size=max_lines).map("\n".join)


def balanced_or_not(
    draw: st.DrawFn, opening: Money, entries: list[BankEntry], currency: str
) -> Money:
    total = sum((entry.amount for entry in entries if entry.booked), Money.zero(currency))
    if draw(st.booleans()):
        return opening + total
    return Money(draw(minor_amounts()), currency)


# -- MT940 ---------------------------------------------------------------------------------


@st.composite
def mt940_entries(draw: st.DrawFn, currency: str, around: date) -> BankEntry:
    value_date = around + timedelta(days=draw(st.integers(0, 5)))
    booking_offset = draw(st.none() | st.integers(-60, 60))
    return BankEntry(
        line_no=1,
        value_date=value_date,
        booking_date=None if booking_offset is None else value_date + timedelta(booking_offset),
        amount=Money(draw(minor_amounts()), currency),
        reversal=draw(st.booleans()),
        type_code=draw(st.sampled_from(["NTRF", "NMSC", "NCHK", "FMSC", "NSTO", "S103"])),
        customer_reference=draw(optional(references())),
        bank_reference=draw(optional(references())),
        details=draw(optional(swift_texts())),
        supplementary_details=draw(optional(swift_lines(34))),
    )


@st.composite
def mt940_statements(draw: st.DrawFn) -> BankStatement:
    currency = draw(st.sampled_from(CURRENCIES))
    opening_date = draw(yy_dates())
    opening = Money(draw(minor_amounts()), currency)
    entries = draw(st.lists(mt940_entries(currency, opening_date), max_size=5))
    balances = [
        BankBalance(code=code, amount=Money(draw(minor_amounts()), currency), as_of=day)
        for code, day in draw(
            st.lists(st.tuples(st.sampled_from(["64", "65"]), yy_dates()), max_size=3)
        )
    ]
    balances.sort(key=lambda balance: balance.code)
    return BankStatement(
        format=BankFormat.MT940,
        line_no=1,
        account_id=draw(st.text(ALNUM + "/", min_size=1, max_size=35).map(str.strip)),
        statement_id=draw(references()),
        sequence=f"{draw(st.integers(0, 99999)):05d}/{draw(st.integers(0, 999)):03d}",
        currency=currency,
        opening_balance=opening,
        opening_date=opening_date,
        closing_balance=balanced_or_not(draw, opening, entries, currency),
        closing_date=opening_date + timedelta(days=draw(st.integers(0, 5))),
        entries=tuple(entries),
        balances=tuple(balances),
        information=draw(optional(swift_texts())),
    )


def _mt940_balance(amount: Money, day: date) -> str:
    mark = "D" if amount.minor < 0 else "C"
    text = unsigned_text(amount.minor, amount.currency, ",")
    if minor_units_exponent(amount.currency) == 0:
        text += ","
    return f"{mark}{day:%y%m%d}{amount.currency}{text}"


def render_mt940(
    statements: list[BankStatement], rnd: random.Random
) -> tuple[bytes, list[BankStatement]]:
    """MT940 text for ``statements`` in the shape one bank or another delivers it.

    ``-`` separators, SWIFT envelopes (with a block 3, and SOH/ETX around a message as a SWIFT
    link leaves them), ABN AMRO's ``ABNANL2A`` / ``940`` header lines before every statement,
    Rabobank's ``:940:`` first line, or none of these; an entry's details in one ``:86:`` or
    spread over several.
    """
    style = rnd.choice(["none", "dash", "envelope", "abn", "rabobank"])
    framed = style == "envelope" and rnd.random() < 0.5
    lines: list[str] = [":940:"] if style == "rabobank" else []
    expected: list[BankStatement] = []
    for statement in statements:
        assert statement.opening_balance is not None
        assert statement.opening_date is not None
        assert statement.closing_balance is not None
        assert statement.closing_date is not None
        if style == "envelope":
            lines.append(
                ("\x01" if framed else "")
                + "{1:F01BANKCNBJAXXX0000000000}{2:O9401200240312BANKCNBJAXXX000000}"
                + rnd.choice(["", "{3:{108:B24031200000001}}"])
                + "{4:"
            )
        elif style == "abn":
            lines += ["ABNANL2A", "940", "ABNANL2A"]
        start = len(lines) + 1
        lines += [
            f":20:{statement.statement_id}",
            f":25:{statement.account_id}",
            f":28C:{statement.sequence}",
            f":60F:{_mt940_balance(statement.opening_balance, statement.opening_date)}",
        ]
        entries = []
        for entry in statement.entries:
            entries.append(entry.model_copy(update={"line_no": len(lines) + 1}))
            negative = entry.amount.minor < 0
            if entry.reversal:
                mark = "RC" if negative or not entry.amount else "RD"
            else:
                mark = "D" if negative else "C"
            text = unsigned_text(entry.amount.minor, entry.amount.currency, ",")
            if minor_units_exponent(entry.amount.currency) == 0:
                text += ","
            assert entry.value_date is not None
            booking = (
                f"{entry.booking_date:%m%d}" if entry.booking_date else rnd.choice(["", "    "])
            )
            line = f":61:{entry.value_date:%y%m%d}{booking}{mark}{rnd.choice(['', 'R'])}{text}"
            line += f"{entry.type_code}{entry.customer_reference or 'NONREF'}"
            if entry.bank_reference:
                line += f"//{entry.bank_reference}"
            lines.append(line)
            if entry.supplementary_details:
                lines.append(entry.supplementary_details)
            if entry.details is not None:
                for index, text in enumerate(entry.details.split("\n")):
                    # Some banks start every line of an entry's details with its own :86:.
                    if index == 0 or rnd.random() < 0.5:
                        text = f":86:{text}"
                    lines.append(text)
        lines.append(f":62F:{_mt940_balance(statement.closing_balance, statement.closing_date)}")
        for balance in statement.balances:
            assert balance.as_of is not None
            lines.append(f":{balance.code}:{_mt940_balance(balance.amount, balance.as_of)}")
        if statement.information is not None:
            first, *rest = statement.information.split("\n")
            lines += [f":86:{first}", *rest]
        if style == "envelope":
            lines.append("-}\x03" if framed else "-}")
        elif style in {"dash", "abn"}:
            lines.append("-")
        if rnd.random() < 0.3:
            lines.append("")
        expected.append(statement.model_copy(update={"line_no": start, "entries": tuple(entries)}))
    newline = rnd.choice(["\n", "\r\n"])
    return (newline.join(lines) + newline).encode("utf-8"), expected


# -- camt.053 ------------------------------------------------------------------------------

_XML_TEXT = st.text(
    st.characters(categories=("L", "N")) | st.sampled_from(list(" -./&<>'\"#")),
    min_size=1,
    max_size=30,
).map(str.strip)


def xml_texts() -> st.SearchStrategy[str]:
    return _XML_TEXT.filter(lambda text: bool(text) and text.upper() not in PLACEHOLDERS)


def xml_multiline() -> st.SearchStrategy[str]:
    return st.lists(xml_texts(), min_size=1, max_size=3).map("\n".join)


CAMT_VERSIONS = ("02", "04", "08")


@st.composite
def camt_transactions(
    draw: st.DrawFn, currency: str, version: str, entry_negative: bool
) -> BankTransaction:
    amount: Money | None = None
    if draw(st.booleans()):
        magnitude = draw(st.integers(0, 10**9))
        # 001.02 has no per-transaction credit/debit indicator: the entry's sign applies.
        negative = entry_negative if version == "02" else draw(st.booleans())
        amount = Money(-magnitude if negative else magnitude, currency)
    return BankTransaction(
        amount=amount,
        customer_reference=draw(optional(xml_texts())),
        bank_reference=draw(optional(xml_texts())),
        details=draw(optional(xml_multiline())),
        counterparty_name=draw(optional(xml_texts())),
        counterparty_account=draw(optional(xml_texts())),
    )


@st.composite
def camt_entries(draw: st.DrawFn, currency: str, version: str) -> BankEntry:
    amount = Money(draw(minor_amounts()), currency)
    fields: dict[str, object] = {
        "line_no": 1,
        "amount": amount,
        "reversal": draw(st.booleans()),
        "booked": draw(st.booleans()),
        "booking_date": draw(st.none() | st.dates()),
        "value_date": draw(st.none() | st.dates()),
        "type_code": draw(
            st.sampled_from([None, "PMNT/RCDT/ESCT", "PMNT/IDDT/ESDD", "NTRF+166", "FEE"])
        ),
        "bank_reference": draw(optional(xml_texts())),
        "supplementary_details": draw(optional(xml_texts())),
    }
    kind = draw(st.sampled_from(["plain", "single", "batch"]))
    if kind == "single":
        fields["customer_reference"] = draw(optional(xml_texts()))
        fields["details"] = draw(optional(xml_multiline()))
        fields["counterparty_name"] = draw(optional(xml_texts()))
        fields["counterparty_account"] = draw(optional(xml_texts()))
    elif kind == "batch":
        fields["customer_reference"] = draw(optional(xml_texts()))
        fields["transactions"] = tuple(
            draw(
                st.lists(
                    camt_transactions(currency, version, amount.minor < 0), min_size=1, max_size=4
                )
            )
        )
    return BankEntry(**fields)


@st.composite
def camt_statements(draw: st.DrawFn, version: str) -> BankStatement:
    currency = draw(st.sampled_from(CURRENCIES))
    opening = Money(draw(minor_amounts()), currency)
    entries = draw(st.lists(camt_entries(currency, version), max_size=4))
    balances = [
        BankBalance(code=code, amount=Money(draw(minor_amounts()), currency), as_of=day)
        for code, day in draw(
            st.lists(st.tuples(st.sampled_from(["CLAV", "FWAV", "ITAV"]), st.dates()), max_size=2)
        )
    ]
    return BankStatement(
        format=BankFormat.CAMT053,
        line_no=1,
        account_id=draw(st.text(ALNUM, min_size=5, max_size=34)),
        statement_id=draw(xml_texts()),
        sequence=draw(optional(st.integers(0, 10**6).map(str))),
        currency=currency,
        opening_balance=opening,
        opening_date=draw(st.dates()),
        closing_balance=balanced_or_not(draw, opening, entries, currency),
        closing_date=draw(st.dates()),
        entries=tuple(entries),
        balances=tuple(balances),
        information=draw(optional(xml_texts())),
    )


class _Xml:
    def __init__(self) -> None:
        self.lines: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
        self.depth = 0

    def open(self, tag: str, attrs: str = "") -> int:
        self.lines.append(f"{'  ' * self.depth}<{tag}{attrs}>")
        self.depth += 1
        return len(self.lines)

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.lines.append(f"{'  ' * self.depth}</{tag}>")

    def leaf(self, tag: str, text: str, attrs: str = "") -> None:
        self.lines.append(f"{'  ' * self.depth}<{tag}{attrs}>{escape(text)}</{tag}>")

    def amount(self, tag: str, money: Money) -> None:
        text = unsigned_text(money.minor, money.currency)
        self.leaf(tag, text, f" Ccy={quoteattr(money.currency)}")

    def when(self, tag: str, day: date, rnd: random.Random) -> None:
        self.open(tag)
        if rnd.random() < 0.5:
            self.leaf("Dt", day.isoformat())
        else:
            offset = rnd.choice(["+08:00", "Z", "-05:00", ""])
            self.leaf("DtTm", f"{day.isoformat()}T{rnd.randrange(24):02d}:15:27{offset}")
        self.close(tag)


def _camt_balance(
    xml: _Xml, code: str, amount: Money, day: date | None, rnd: random.Random
) -> None:
    xml.open("Bal")
    xml.open("Tp")
    xml.open("CdOrPrtry")
    xml.leaf("Cd", code)
    xml.close("CdOrPrtry")
    xml.close("Tp")
    xml.amount("Amt", amount)
    xml.leaf("CdtDbtInd", "DBIT" if amount.minor < 0 else "CRDT")
    if day is not None:
        xml.when("Dt", day, rnd)
    xml.close("Bal")


def _camt_party(
    xml: _Xml, incoming: bool, name: str | None, account: str | None, version: str
) -> None:
    if name is None and account is None:
        return
    party, party_account = ("Dbtr", "DbtrAcct") if incoming else ("Cdtr", "CdtrAcct")
    xml.open("RltdPties")
    if name is not None:
        xml.open(party)
        if version == "08":
            xml.open("Pty")
            xml.leaf("Nm", name)
            xml.close("Pty")
        else:
            xml.leaf("Nm", name)
        xml.close(party)
    if account is not None:
        xml.open(party_account)
        xml.open("Id")
        xml.open("Othr")
        xml.leaf("Id", account)
        xml.close("Othr")
        xml.close("Id")
        xml.close(party_account)
    xml.close("RltdPties")


def _camt_transaction(
    xml: _Xml,
    tx: BankTransaction,
    entry: BankEntry,
    version: str,
) -> None:
    xml.open("TxDtls")
    if tx.customer_reference is not None or tx.bank_reference is not None:
        xml.open("Refs")
        if tx.bank_reference is not None:
            xml.leaf("AcctSvcrRef", tx.bank_reference)
        if tx.customer_reference is not None:
            xml.leaf("EndToEndId", tx.customer_reference)
        xml.close("Refs")
    if tx.amount is not None:
        if version == "02":
            xml.open("AmtDtls")
            xml.open("TxAmt")
            xml.amount("Amt", tx.amount)
            xml.close("TxAmt")
            xml.close("AmtDtls")
        else:
            xml.amount("Amt", tx.amount)
            xml.leaf("CdtDbtInd", "DBIT" if tx.amount.minor < 0 else "CRDT")
    positive = (tx.amount if tx.amount is not None else entry.amount).minor >= 0
    _camt_party(
        xml, positive != entry.reversal, tx.counterparty_name, tx.counterparty_account, version
    )
    if tx.details is not None:
        xml.open("RmtInf")
        for line in tx.details.split("\n"):
            xml.leaf("Ustrd", line)
        xml.close("RmtInf")
    xml.close("TxDtls")


def _camt_entry(xml: _Xml, entry: BankEntry, version: str, rnd: random.Random) -> int:
    line = xml.open("Ntry")
    xml.amount("Amt", entry.amount)
    xml.leaf("CdtDbtInd", "DBIT" if entry.amount.minor < 0 else "CRDT")
    if entry.reversal:
        xml.leaf("RvslInd", rnd.choice(["true", "1"]))
    elif rnd.random() < 0.3:
        xml.leaf("RvslInd", "false")
    status = "BOOK" if entry.booked else rnd.choice(["PDNG", "INFO"])
    if version == "08":
        xml.open("Sts")
        xml.leaf("Cd", status)
        xml.close("Sts")
    else:
        xml.leaf("Sts", status)
    if entry.booking_date is not None:
        xml.when("BookgDt", entry.booking_date, rnd)
    if entry.value_date is not None:
        xml.when("ValDt", entry.value_date, rnd)
    if entry.bank_reference is not None:
        xml.leaf("AcctSvcrRef", entry.bank_reference)
    if entry.type_code is not None:
        xml.open("BkTxCd")
        parts = entry.type_code.split("/")
        if len(parts) == 3:
            xml.open("Domn")
            xml.leaf("Cd", parts[0])
            xml.open("Fmly")
            xml.leaf("Cd", parts[1])
            xml.leaf("SubFmlyCd", parts[2])
            xml.close("Fmly")
            xml.close("Domn")
        else:
            xml.open("Prtry")
            xml.leaf("Cd", entry.type_code)
            xml.close("Prtry")
        xml.close("BkTxCd")
    single = BankTransaction(
        customer_reference=entry.customer_reference,
        details=entry.details,
        counterparty_name=entry.counterparty_name,
        counterparty_account=entry.counterparty_account,
    )
    if entry.transactions:
        xml.open("NtryDtls")
        xml.open("Btch")
        if entry.customer_reference is not None:
            xml.leaf("PmtInfId", entry.customer_reference)
        xml.leaf("NbOfTxs", str(len(entry.transactions)))
        xml.close("Btch")
        for tx in entry.transactions:
            _camt_transaction(xml, tx, entry, version)
        xml.close("NtryDtls")
    elif single != BankTransaction():
        xml.open("NtryDtls")
        _camt_transaction(xml, single, entry, version)
        xml.close("NtryDtls")
    if entry.supplementary_details is not None:
        xml.leaf("AddtlNtryInf", entry.supplementary_details)
    xml.close("Ntry")
    return line


def render_camt053(
    statements: list[BankStatement], version: str, rnd: random.Random
) -> tuple[bytes, list[BankStatement]]:
    """A camt.053.001.``version`` document holding ``statements``."""
    xml = _Xml()
    xml.open("Document", f' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}"')
    xml.open("BkToCstmrStmt")
    xml.open("GrpHdr")
    xml.leaf("MsgId", "ROUNDTRIP")
    xml.leaf("CreDtTm", "2024-03-12T06:00:00+08:00")
    xml.close("GrpHdr")
    expected = []
    for statement in statements:
        assert statement.opening_balance is not None
        assert statement.closing_balance is not None
        start = xml.open("Stmt")
        xml.leaf("Id", statement.statement_id or "")
        if statement.sequence is not None:
            xml.leaf(rnd.choice(["ElctrncSeqNb", "LglSeqNb"]), statement.sequence)
        xml.open("Acct")
        xml.open("Id")
        if rnd.random() < 0.5:
            xml.leaf("IBAN", statement.account_id or "")
        else:
            xml.open("Othr")
            xml.leaf("Id", statement.account_id or "")
            xml.close("Othr")
        xml.close("Id")
        if rnd.random() < 0.7:
            xml.leaf("Ccy", statement.currency)
        xml.close("Acct")
        opening_code = rnd.choice(["OPBD", "PRCD"])
        _camt_balance(xml, opening_code, statement.opening_balance, statement.opening_date, rnd)
        _camt_balance(xml, "CLBD", statement.closing_balance, statement.closing_date, rnd)
        for balance in statement.balances:
            _camt_balance(xml, balance.code, balance.amount, balance.as_of, rnd)
        entries = []
        for entry in statement.entries:
            line = _camt_entry(xml, entry, version, rnd)
            entries.append(entry.model_copy(update={"line_no": line}))
        if statement.information is not None:
            xml.leaf("AddtlStmtInf", statement.information)
        xml.close("Stmt")
        expected.append(statement.model_copy(update={"line_no": start, "entries": tuple(entries)}))
    xml.close("BkToCstmrStmt")
    xml.close("Document")
    return ("\n".join(xml.lines) + "\n").encode("utf-8"), expected


# -- BAI2 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bai2Group:
    """A group: its as-of date, its currency (``None``: BAI2's default USD) and accounts."""

    as_of: date
    currency: str | None
    statements: tuple[BankStatement, ...]


_BAI2_TEXT = string.ascii_letters + string.digits + " ,/.-:'&"


def bai2_text_lines() -> st.SearchStrategy[str]:
    return (
        st.text(_BAI2_TEXT, min_size=1, max_size=40)
        .map(str.strip)
        .filter(lambda text: bool(text) and not text.endswith("/") and text.strip() == text)
    )


@st.composite
def bai2_entries(draw: st.DrawFn, currency: str, as_of: date) -> BankEntry:
    magnitude = draw(st.integers(0, 10**12))
    credit = draw(st.booleans())
    code = draw(st.integers(100, 399) if credit else st.integers(400, 699))
    return BankEntry(
        line_no=1,
        booking_date=as_of,
        value_date=draw(st.none() | yy_dates()),
        amount=Money(magnitude if credit else -magnitude, currency),
        type_code=f"{code:03d}",
        customer_reference=draw(optional(references())),
        bank_reference=draw(optional(references())),
        details=draw(optional(st.lists(bai2_text_lines(), min_size=1, max_size=3).map("\n".join))),
    )


@st.composite
def bai2_statements(draw: st.DrawFn, currency: str, as_of: date) -> BankStatement:
    opening = draw(st.none() | minor_amounts().map(lambda minor: Money(minor, currency)))
    closing = draw(st.none() | minor_amounts().map(lambda minor: Money(minor, currency)))
    entries = draw(st.lists(bai2_entries(currency, as_of), max_size=4))
    if opening is not None and closing is not None and draw(st.booleans()):
        closing = opening + sum((entry.amount for entry in entries), Money.zero(currency))
    balances = [
        BankBalance(
            code=code,
            amount=Money(draw(minor_amounts()), currency),
            as_of=as_of,
            item_count=draw(st.none() | st.integers(0, 999)),
        )
        for code in draw(
            st.lists(st.sampled_from(["040", "045", "072", "074", "100", "400"]), max_size=3)
        )
    ]
    return BankStatement(
        format=BankFormat.BAI2,
        line_no=1,
        account_id=draw(st.text(string.digits, min_size=4, max_size=17)),
        statement_id="FILE01",
        currency=currency,
        opening_balance=opening,
        opening_date=as_of if opening is not None else None,
        closing_balance=closing,
        closing_date=as_of if closing is not None else None,
        entries=tuple(entries),
        balances=tuple(balances),
    )


@st.composite
def bai2_groups(draw: st.DrawFn) -> Bai2Group:
    currency = draw(st.none() | st.sampled_from(CURRENCIES))
    as_of = draw(yy_dates())
    statements = draw(st.lists(bai2_statements(currency or "USD", as_of), min_size=1, max_size=3))
    return Bai2Group(as_of, currency, tuple(statements))


def _bai2_funds(rnd: random.Random, value_date: date | None) -> list[str]:
    if value_date is not None:
        return ["V", f"{value_date:%y%m%d}", rnd.choice(["", "1200", "2400", "120000", "12:00:00"])]
    kind = rnd.choice(["", "0", "1", "2", "Z", "S", "D"])
    if kind == "S":
        return ["S", str(rnd.randrange(10**6)), "", f"+{rnd.randrange(10**6)}"]
    if kind == "D":
        count = rnd.randrange(3)
        pairs = [
            str(value) for _ in range(count) for value in (rnd.randrange(9), rnd.randrange(10**6))
        ]
        return ["D", str(count), *pairs]
    return [kind]


def _bai2_amount(minor: int, rnd: random.Random, signed: bool) -> str:
    digits = f"{abs(minor):0{rnd.choice([1, 12, 15])}d}"
    if minor < 0:
        return f"-{digits}"
    return f"+{digits}" if signed and rnd.random() < 0.5 else digits


def _bai2_pieces(code: str, fields: list[str], rnd: random.Random) -> list[str]:
    """Split a record's fields over the record and its 88 continuations, each ending in /."""
    pieces: list[list[str]] = [[]]
    for index, value in enumerate(fields):
        if index and rnd.random() < 0.2:
            pieces.append([])
        pieces[-1].append(value)
    return [f"{code if i == 0 else '88'},{','.join(piece)}/" for i, piece in enumerate(pieces)]


_BAI2_TIMES = ("0600", "060000", "06:00:00", "06:00")


def _bai2_closed_pieces(
    head: list[str], summaries: list[list[str]], rnd: random.Random
) -> list[str]:
    """An 03 record as many banks write it: each physical line ends ``,/`` after a whole
    summary, and the next summary goes on in an 88."""
    pieces: list[list[str]] = [head]
    for summary in summaries:
        if rnd.random() < 0.5:
            pieces.append([])
        pieces[-1] += summary
    return [
        f"{'03' if i == 0 else '88'},{','.join(piece)}{rnd.choice([',/', '/'])}"
        for i, piece in enumerate(pieces)
    ]


def render_bai2(groups: list[Bai2Group], rnd: random.Random) -> tuple[bytes, list[BankStatement]]:
    """A BAI2 file with ``groups``, every control total and record count computed."""
    # Banks write their times with and without seconds and colons.
    lines = [f"01,SENDER,RECEIVER,240312,{rnd.choice(_BAI2_TIMES)},FILE01,,,2/"]
    expected: list[BankStatement] = []
    file_total = 0
    for group in groups:
        group_start = len(lines)
        lines.append(
            f"02,RECEIVER,ORIGINATOR,1,{group.as_of:%y%m%d},{rnd.choice(_BAI2_TIMES)},"
            f"{group.currency or ''},2/"
        )
        group_total = 0
        for statement in group.statements:
            account_start = len(lines)
            account_total = 0
            summary: list[str] = []
            figures: list[tuple[str, Money, int | None]] = []
            if statement.opening_balance is not None:
                figures.append(("010", statement.opening_balance, None))
            if statement.closing_balance is not None:
                figures.append(("015", statement.closing_balance, None))
            figures += [(b.code, b.amount, b.item_count) for b in statement.balances]
            for code, amount, count in figures:
                account_total += amount.minor
                summary.append(
                    [
                        code,
                        _bai2_amount(amount.minor, rnd, signed=True),
                        "" if count is None else str(count),
                        *_bai2_funds(rnd, None),
                    ]
                )
            currency_field = statement.currency if group.currency != statement.currency else ""
            if rnd.random() < 0.5:
                currency_field = statement.currency
            if rnd.random() < 0.5:
                lines += _bai2_pieces(
                    "03",
                    [statement.account_id or "", currency_field, *(f for g in summary for f in g)],
                    rnd,
                )
            else:
                lines += _bai2_closed_pieces(
                    [statement.account_id or "", currency_field], summary, rnd
                )
            entries = []
            for entry in statement.entries:
                entries.append(entry.model_copy(update={"line_no": len(lines) + 1}))
                written = abs(entry.amount.minor)
                account_total += written
                fields = [
                    entry.type_code or "",
                    _bai2_amount(written, rnd, signed=True),
                    *_bai2_funds(rnd, entry.value_date),
                    entry.bank_reference or "",
                    entry.customer_reference or "",
                ]
                text_lines = entry.details.split("\n") if entry.details else []
                if text_lines and rnd.random() < 0.5:
                    pieces = _bai2_pieces("16", fields, rnd)
                    pieces[-1] = pieces[-1][:-1] + "," + text_lines[0] + rnd.choice(["", "/"])
                    text_lines = text_lines[1:]
                else:
                    pieces = _bai2_pieces("16", fields, rnd)
                lines += pieces
                lines += [f"88,{text}" for text in text_lines]
            records = len(lines) - account_start + 1
            lines.append(f"49,{_bai2_amount(account_total, rnd, signed=True)},{records}/")
            group_total += account_total
            expected.append(
                statement.model_copy(
                    update={
                        "line_no": account_start + 1,
                        "entries": tuple(entries),
                        "statement_id": "FILE01",
                    }
                )
            )
        records = len(lines) - group_start + 1
        lines.append(
            f"98,{_bai2_amount(group_total, rnd, signed=True)},{len(group.statements)},{records}/"
        )
        file_total += group_total
    lines.append(f"99,{_bai2_amount(file_total, rnd, signed=True)},{len(groups)},{len(lines) + 1}/")
    newline = rnd.choice(["\n", "\r\n"])
    return (newline.join(lines) + newline).encode("ascii"), expected


# -- CSV -----------------------------------------------------------------------------------

_CSV_TEXT = (
    string.ascii_letters + string.digits + " ,;|\"'-./#" + "电费户号缴存支付宝微信结算张三李四"
)
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y", "%Y年%m月%d日")
_OPTIONAL_COLUMNS = (
    "value_date",
    "reference",
    "bank_reference",
    "details",
    "counterparty_name",
    "counterparty_account",
    "type",
    "balance",
)
_HEADERS = {
    "date": "交易日期",
    "value_date": "起息日",
    "amount": "交易金额",
    "debit": "借方发生额",
    "credit": "贷方发生额",
    "direction": "借贷标志",
    "reference": "客户流水号",
    "bank_reference": "银行流水号",
    "details": "摘要",
    "counterparty_name": "对方户名",
    "counterparty_account": "对方账号",
    "type": "交易类型",
    "balance": "余额",
}


def csv_texts() -> st.SearchStrategy[str]:
    return (
        st.text(_CSV_TEXT, min_size=1, max_size=20)
        .map(str.strip)
        .filter(lambda text: bool(text) and text.upper() not in PLACEHOLDERS)
    )


@dataclass(frozen=True)
class CsvCase:
    """A layout, the statement its file holds, and how the file writes amounts."""

    layout: CsvLayout
    statement: BankStatement
    amount_mode: str
    columns: tuple[str, ...]


@st.composite
def csv_cases(draw: st.DrawFn) -> CsvCase:
    decimal = draw(st.sampled_from([".", ","]))
    delimiter = draw(st.sampled_from([c for c in [",", ";", "\t", "|"] if c != decimal]))
    thousands = draw(
        st.sampled_from([None] + [c for c in [",", ".", " ", "'"] if c not in {decimal, delimiter}])
    )
    amount_mode = draw(
        st.sampled_from(["single", "inverted", "split_neg", "split_pos", "direction"])
    )
    optional_columns = draw(st.lists(st.sampled_from(_OPTIONAL_COLUMNS), unique=True))
    amount_columns = {
        "single": ["amount"],
        "inverted": ["amount"],
        "direction": ["amount", "direction"],
        "split_neg": ["debit", "credit"],
        "split_pos": ["debit", "credit"],
    }[amount_mode]
    columns = draw(st.permutations(["date", *amount_columns, *optional_columns]))
    has_header = draw(st.booleans())
    currency = draw(st.sampled_from(CURRENCIES))

    positions: dict[str, str | int] = {
        name: _HEADERS[name] if has_header else index for index, name in enumerate(columns)
    }
    where = positions.get
    layout = CsvLayout(
        currency=currency,
        account_id=draw(optional(st.text(ALNUM, min_size=1, max_size=20))),
        encoding=draw(st.sampled_from(["utf-8", "gbk", "gb18030"])),
        delimiter=delimiter,
        has_header=has_header,
        skip_rows=draw(st.integers(0, 2)),
        footer_rows=draw(st.integers(0, 1)),
        date_column=positions["date"],
        date_format=draw(st.sampled_from(_DATE_FORMATS)),
        value_date_column=where("value_date"),
        amount_column=where("amount"),
        debit_column=where("debit"),
        credit_column=where("credit"),
        debits_negative=amount_mode in {"single", "split_neg", "direction"},
        direction_column=where("direction"),
        decimal_separator=decimal,
        thousands_separator=thousands,
        reference_column=where("reference"),
        bank_reference_column=where("bank_reference"),
        details_column=where("details"),
        counterparty_name_column=where("counterparty_name"),
        counterparty_account_column=where("counterparty_account"),
        type_column=where("type"),
        balance_column=where("balance"),
    )
    entries = [
        BankEntry(
            line_no=1,
            booking_date=draw(st.dates(min_value=date(1900, 1, 1))),
            value_date=draw(st.dates(min_value=date(1900, 1, 1)))
            if "value_date" in columns
            else None,
            amount=Money(draw(minor_amounts()), currency),
            customer_reference=draw(optional(csv_texts())) if "reference" in columns else None,
            bank_reference=draw(optional(csv_texts())) if "bank_reference" in columns else None,
            details=draw(optional(csv_texts())) if "details" in columns else None,
            counterparty_name=draw(optional(csv_texts()))
            if "counterparty_name" in columns
            else None,
            counterparty_account=draw(optional(csv_texts()))
            if "counterparty_account" in columns
            else None,
            type_code=draw(optional(csv_texts())) if "type" in columns else None,
        )
        # Without a header an export with no rows is an empty file, which is refused.
        for _ in range(draw(st.integers(0 if has_header else 1, 5)))
    ]
    opening: Money | None = None
    closing: Money | None = None
    if "balance" in columns and entries:
        opening = Money(draw(minor_amounts()), currency)
        closing = opening + sum((entry.amount for entry in entries), Money.zero(currency))
    statement = BankStatement(
        format=BankFormat.CSV,
        line_no=1,
        account_id=layout.account_id,
        currency=currency,
        opening_balance=opening,
        opening_date=entries[0].booking_date if opening is not None else None,
        closing_balance=closing,
        closing_date=entries[-1].booking_date if closing is not None else None,
        entries=tuple(entries),
    )
    return CsvCase(layout, statement, amount_mode, tuple(columns))


def _csv_number(minor: int, case: CsvCase, rnd: random.Random) -> str:
    layout = case.layout
    text = unsigned_text(minor, layout.currency, layout.decimal_separator)
    if layout.thousands_separator is not None:
        whole, mark, fraction = text.partition(layout.decimal_separator)
        groups = []
        while len(whole) > 3:
            whole, groups = whole[:-3], [whole[-3:], *groups]
        text = layout.thousands_separator.join([whole, *groups]) + mark + fraction
    if minor >= 0:
        return text
    return rnd.choice([f"-{text}", f"{text}-", f"({text})"])


def render_csv(case: CsvCase, rnd: random.Random) -> tuple[bytes, BankStatement]:
    """The CSV export ``case.layout`` describes, holding ``case.statement``."""
    layout = case.layout
    out = io.StringIO()
    writer = csv.writer(out, delimiter=layout.delimiter, lineterminator="\n")
    line = 1
    for index in range(layout.skip_rows):
        writer.writerow([f"账户明细 {index}"])
        line += 1
    first_line = line
    if layout.has_header:
        writer.writerow([_HEADERS[name] for name in case.columns])
        line += 1
    balance = case.statement.opening_balance
    entries = []
    for entry in case.statement.entries:
        entries.append(entry.model_copy(update={"line_no": line}))
        amount = entry.amount.minor
        cells: dict[str, str] = {
            "date": f"{entry.booking_date:{layout.date_format}}",
            "value_date": f"{entry.value_date:{layout.date_format}}" if entry.value_date else "",
            "reference": entry.customer_reference or "",
            "bank_reference": entry.bank_reference or "",
            "details": entry.details or "",
            "counterparty_name": entry.counterparty_name or "",
            "counterparty_account": entry.counterparty_account or "",
            "type": entry.type_code or "",
            "debit": "",
            "credit": "",
        }
        if case.amount_mode == "single":
            cells["amount"] = _csv_number(amount, case, rnd)
        elif case.amount_mode == "inverted":
            cells["amount"] = _csv_number(-amount, case, rnd)
        elif case.amount_mode == "direction":
            cells["amount"] = _csv_number(abs(amount), case, rnd)
            cells["direction"] = rnd.choice(["借", "D", "dr"] if amount < 0 else ["贷", "C", "cr"])
        elif amount < 0:
            written = amount if case.amount_mode == "split_neg" else -amount
            cells["debit"] = _csv_number(written, case, rnd)
            cells["credit"] = rnd.choice(["", _csv_number(0, case, rnd)])
        else:
            cells["credit"] = _csv_number(amount, case, rnd)
        if balance is not None:
            balance = balance + entry.amount
            cells["balance"] = _csv_number(balance.minor, case, rnd)
        writer.writerow([cells.get(name, "") for name in case.columns])
        line += 1
        if rnd.random() < 0.1:
            writer.writerow([])
            line += 1
    for _ in range(layout.footer_rows):
        writer.writerow(["合计", str(len(entries))])
    statement = case.statement.model_copy(
        update={
            "line_no": first_line if layout.has_header else entries[0].line_no,
            "entries": tuple(entries),
        }
    )
    return out.getvalue().encode(layout.encoding), statement
