"""ISO 20022 camt.053 BankToCustomerStatement, any version ``camt.053.001.xx``.

Invariant: the document is read as a stream — one physical line (or 64 KiB of a longer one) at a
time through ElementTree's pull parser — and each ``Ntry`` and each ``Stmt`` is dropped from the
tree as soon as it has become a record (so is each ``TxDtls`` of a batch entry), so memory holds
one statement's records, never the file. A text, tag or comment running over 1 MiB
(:data:`MAX_MARKUP`), elements nested deeper than :data:`MAX_DEPTH`, and more than
:data:`MAX_HELD` elements waiting to become records are refused before they fill memory.
A document type declaration is refused outright, so no entity, internal or external, is ever
expanded or fetched. Every statement yielded has an account, an opening (``OPBD``, else
``PRCD``) and a closing (``CLBD``) booked balance, and all its amounts in the account's
currency; anything else is a ParseError naming the line.

Versions differ in where they put a few things, and the reader looks in each place: a
transaction's amount is ``TxDtls/Amt`` (001.03 onwards) or ``TxDtls/AmtDtls/TxAmt/Amt``
(001.02); an entry's status is ``Sts`` text (up to 001.07) or ``Sts/Cd``; a party's name is
``Dbtr/Nm`` or ``Dbtr/Pty/Nm``.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final

from paygate.errors import ParseError
from paygate.money import Money
from paygate.reconcile.bank._input import (
    MAX_LINE,
    BankSource,
    LineReadable,
    Where,
    build,
    clean,
    money_from_parts,
    opened,
    reference,
)
from paygate.reconcile.bank.model import (
    BankBalance,
    BankEntry,
    BankFormat,
    BankStatement,
    BankTransaction,
)

__all__ = ["read_camt053"]

_NAMESPACE: Final = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.[0-9]{2}")
_AMOUNT: Final = re.compile(r"([0-9]+)(?:\.([0-9]*))?")
_OPENING: Final = ("OPBD", "PRCD")
_CLOSING: Final = "CLBD"
_BOOKED: Final = "BOOK"
# No text, tag or comment of a real statement comes near this; a run of input this long that
# starts or ends no element is refused, so that the parser never buffers a file-sized token.
MAX_MARKUP: Final = 1024 * 1024
# camt.053 nests about a dozen levels deep; anything far deeper is not a statement.
MAX_DEPTH: Final = 64
# Elements of the statement being read that have not yet become records: its header, its
# balances, the entry being read and the transaction being read. Real statements hold a few
# hundred at most, whatever their size, because entries and transactions are dropped as read.
MAX_HELD: Final = 100_000
_UTF16_32_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_camt053(source: BankSource) -> Iterator[BankStatement]:
    """Read the camt.053 statements (``Stmt``) in ``source`` one by one.

    ``source`` is a path or an open file; the XML declaration gives the encoding. Raises
    ParseError, naming the line, for anything that cannot be read, including a document that is
    not camt.053; statements yielded before the error belong to a file that was refused, so act
    on them only once the whole file has been read.
    """
    with opened(source) as (name, stream):
        yield from _Reader(Where(name)).statements(stream)


def _chunks(stream: LineReadable, where: Where) -> Iterator[tuple[int, bytes | str]]:
    """Yield ``(line number, chunk)``: each chunk lies within one physical line.

    UTF-16 and UTF-32 (recognised by their byte-order mark) are decoded here, because their
    line breaks are not single bytes; every other encoding goes to the parser as bytes.
    """
    line = 1
    decoder: codecs.IncrementalDecoder | None = None
    first = True
    while True:
        chunk = stream.readline(MAX_LINE)
        if not chunk:
            if decoder is not None:
                try:
                    tail = decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    raise where.error(
                        "the file ends inside a character", line, "encoding"
                    ) from None
                if tail:
                    yield line, tail
            return
        if first and isinstance(chunk, bytes):
            first = False
            for bom, encoding in _UTF16_32_BOMS:
                if chunk.startswith(bom):
                    decoder = codecs.getincrementaldecoder(encoding)()
                    break
            else:
                if b"\x00" in chunk[:4]:
                    raise where.error(
                        "UTF-16 or UTF-32 without a byte-order mark is not supported",
                        line,
                        "encoding",
                    )
        if decoder is not None and isinstance(chunk, bytes):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                raise where.error("bytes that are not valid UTF-16/32", line, "encoding") from None
            # A byte chunk of UTF-16 ends inside its line break, so the decoded text is split
            # again to keep every piece within one line.
            pieces = text.split("\n")
            for index, piece in enumerate(pieces):
                last = index == len(pieces) - 1
                if piece or not last:
                    yield line, piece if last else piece + "\n"
                if not last:
                    line += 1
            continue
        yield line, chunk
        if isinstance(chunk, bytes):
            line += chunk.count(b"\n")
        else:
            line += chunk.count("\n")


def _declares_doctype(tail: bytes | str, chunk: bytes | str) -> bool:
    """Whether ``<!DOCTYPE`` appears in ``chunk``, or across its join with the previous one."""
    if isinstance(chunk, bytes):
        window = (tail if isinstance(tail, bytes) else b"") + chunk
        return b"<!DOCTYPE" in window
    return "<!DOCTYPE" in (tail if isinstance(tail, str) else "") + chunk


def _iso_date(text: str) -> date | None:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _iso_datetime_date(text: str) -> date | None:
    if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}", text):
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


@dataclass
class _Transactions:
    """The transactions of the entry being read, made records as each ``TxDtls`` ends.

    ``basis`` is the entry amount and reversal indicator they were read against (both come
    before the details in every version of the schema).
    """

    records: list[BankTransaction] = field(default_factory=list)
    basis: tuple[Money, bool] | None = None


@dataclass
class _Balance:
    code: str
    amount: Money
    as_of: date | None
    line: int


class _Reader:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.ns: str | None = None
        self.lines: dict[ET.Element, int] = {}

    # -- streaming -------------------------------------------------------------------------

    def statements(self, stream: LineReadable) -> Iterator[BankStatement]:
        parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
        stack: list[ET.Element] = []
        statement: ET.Element | None = None
        entries: list[BankEntry] = []
        pending = _Transactions()
        found = False
        line = 1
        tail: bytes | str = b""
        quiet = 0
        for line, chunk in _chunks(stream, self.where):
            if _declares_doctype(tail, chunk):
                raise self.where.error(
                    "a document type declaration is not allowed in a bank statement",
                    line,
                    "DOCTYPE",
                )
            tail = chunk[-16:]
            events = self._feed(parser, chunk, line)
            quiet = 0 if events else quiet + len(chunk)
            if quiet > MAX_MARKUP:
                raise self.where.error(
                    f"more than {MAX_MARKUP // 1024} KiB of text, tag or comment without an "
                    "element starting or ending",
                    line,
                    "xml",
                )
            for item in events:
                # Only start and end were asked for, so every event is (name, element).
                elem = item[1] if len(item) == 2 else None
                if not isinstance(elem, ET.Element):
                    continue
                event = item[0]
                if event == "start":
                    stack.append(elem)
                    if len(stack) > MAX_DEPTH:
                        raise self.where.error(
                            f"elements nested more than {MAX_DEPTH} deep", line, "xml"
                        )
                    if statement is not None:
                        self.lines[elem] = line
                        if len(self.lines) > MAX_HELD:
                            raise self.where.error(
                                f"more than {MAX_HELD} elements of the statement from line "
                                f"{self._line(statement, line)} besides its entries read",
                                line,
                                "xml",
                            )
                    elif self._starts_statement(elem, stack, line):
                        statement = elem
                        self.lines[elem] = line
                        entries = []
                    continue
                stack.pop()
                parent = stack[-1] if stack else None
                if statement is None:
                    if parent is not None:
                        parent.remove(elem)
                elif elem is statement:
                    yield self._statement(elem, entries)
                    found = True
                    statement = None
                    self.lines.clear()
                    if parent is not None:
                        parent.remove(elem)
                elif parent is statement and elem.tag == self._q("Ntry"):
                    entries.append(self._entry(elem, self._currency(statement), pending))
                    pending = _Transactions()
                    self._drop(elem, statement)
                elif (
                    parent is not None
                    and elem.tag == self._q("TxDtls")
                    and parent.tag == self._q("NtryDtls")
                    and len(stack) >= 3
                    and stack[-2].tag == self._q("Ntry")
                    and stack[-3] is statement
                ):
                    # A batch entry may list many thousands of transactions: each becomes a
                    # record as soon as it is read, instead of the entry holding them all.
                    self._read_transaction(pending, elem, stack[-2])
                    self._drop(elem, parent)
        try:
            parser.close()
        except ET.ParseError as exc:
            raise self._syntax(exc, line) from None
        if self.ns is None:
            raise self.where.error("no camt.053 Document element found", line, "Document")
        if not found:
            raise self.where.error("no BkToCstmrStmt/Stmt statement found", line, "Stmt")

    def _read_transaction(self, pending: _Transactions, tx: ET.Element, ntry: ET.Element) -> None:
        line = self._line(ntry, 1)
        amount = self._signed_amount(ntry, line, "Ntry")
        if amount is None:
            raise self.where.error("entry has no amount", line, "Ntry/Amt")
        reversal = self._boolean(ntry, "RvslInd", line)
        pending.basis = (amount, reversal)
        pending.records.append(self._transaction(tx, amount, reversal, line))

    def _drop(self, elem: ET.Element, parent: ET.Element) -> None:
        for child in elem.iter():
            self.lines.pop(child, None)
        parent.remove(elem)

    def _feed(
        self, parser: ET.XMLPullParser[ET.Element], chunk: bytes | str, line: int
    ) -> list[tuple[object, ...]]:
        """Feed one chunk and return the events it completed."""
        try:
            parser.feed(chunk)
            # The pull parser queues a syntax error and raises it when its events are read.
            return list(parser.read_events())
        except ET.ParseError as exc:
            raise self._syntax(exc, line) from None
        except (ValueError, LookupError) as exc:
            # An encoding the XML declaration names that expat cannot use (a multi-byte one
            # such as GBK, or an unknown name) surfaces here.
            raise self.where.error(f"cannot decode the document: {exc}", line, "encoding") from None

    def _syntax(self, exc: ET.ParseError, line: int) -> ParseError:
        position = getattr(exc, "position", None)
        if isinstance(position, tuple) and position and isinstance(position[0], int):
            # At the end of input expat counts the empty line after the final line break.
            line = max(min(position[0], line), 1)
        return self.where.error(f"not well-formed XML: {exc.msg}", line, "xml")

    def _starts_statement(self, elem: ET.Element, stack: list[ET.Element], line: int) -> bool:
        namespace, _, local = elem.tag.rpartition("}")
        namespace = namespace.lstrip("{")
        if self.ns is None:
            if local != "Document":
                return False
            if namespace and not _NAMESPACE.fullmatch(namespace):
                raise self.where.error(
                    f"not a camt.053 document: namespace {namespace!r}", line, "Document"
                )
            self.ns = namespace
            return False
        return (
            elem.tag == self._q("Stmt")
            and len(stack) >= 2
            and stack[-2].tag == self._q("BkToCstmrStmt")
        )

    # -- element access --------------------------------------------------------------------

    def _q(self, local: str) -> str:
        return f"{{{self.ns}}}{local}" if self.ns else local

    def _find(self, elem: ET.Element, *path: str) -> ET.Element | None:
        return elem.find("/".join(self._q(part) for part in path))

    def _text(self, elem: ET.Element, *path: str) -> str | None:
        found = self._find(elem, *path)
        return clean(found.text) if found is not None else None

    def _line(self, elem: ET.Element | None, fallback: int) -> int:
        if elem is None:
            return fallback
        return self.lines.get(elem, fallback)

    # -- records ---------------------------------------------------------------------------

    def _statement(self, stmt: ET.Element, entries: list[BankEntry]) -> BankStatement:
        line = self._line(stmt, 1)
        statement_id = self._text(stmt, "Id")
        if statement_id is None:
            raise self.where.error("statement has no Id", line, "Stmt/Id")
        account = self._text(stmt, "Acct", "Id", "IBAN") or self._text(
            stmt, "Acct", "Id", "Othr", "Id"
        )
        if account is None:
            raise self.where.error(
                "statement has no account (Acct/Id/IBAN or Acct/Id/Othr/Id)", line, "Acct/Id"
            )
        balances = [self._balance(bal, line) for bal in stmt.findall(self._q("Bal"))]
        opening = next((bal for code in _OPENING for bal in balances if bal.code == code), None)
        closing = next((bal for bal in balances if bal.code == _CLOSING), None)
        if opening is None:
            raise self.where.error(
                "statement has no opening booked balance (Bal with OPBD or PRCD)",
                line,
                "Bal/OPBD",
            )
        if closing is None:
            raise self.where.error(
                "statement has no closing booked balance (Bal with CLBD)", line, "Bal/CLBD"
            )
        currency = self._text(stmt, "Acct", "Ccy") or opening.amount.currency
        for bal in balances:
            if bal.amount.currency != currency:
                raise self.where.error(
                    f"balance {bal.code} is in {bal.amount.currency}, the account in {currency}",
                    bal.line,
                    "Bal/Amt",
                )
        for entry in entries:
            if entry.amount.currency != currency:
                raise self.where.error(
                    f"entry in {entry.amount.currency}, the account in {currency}",
                    entry.line_no,
                    "Ntry/Amt",
                )
        others = [
            build(
                BankBalance, self.where, bal.line, code=bal.code, amount=bal.amount, as_of=bal.as_of
            )
            for bal in balances
            if bal is not opening and bal is not closing
        ]
        return build(
            BankStatement,
            self.where,
            line,
            format=BankFormat.CAMT053,
            line_no=line,
            account_id=account,
            statement_id=statement_id,
            sequence=self._text(stmt, "ElctrncSeqNb") or self._text(stmt, "LglSeqNb"),
            currency=currency,
            opening_balance=opening.amount,
            opening_date=opening.as_of,
            closing_balance=closing.amount,
            closing_date=closing.as_of,
            entries=tuple(entries),
            balances=tuple(others),
            information=self._text(stmt, "AddtlStmtInf"),
        )

    def _balance(self, bal: ET.Element, stmt_line: int) -> _Balance:
        line = self._line(bal, stmt_line)
        code = self._text(bal, "Tp", "CdOrPrtry", "Cd") or self._text(
            bal, "Tp", "CdOrPrtry", "Prtry"
        )
        if code is None:
            raise self.where.error("balance without a type code", line, "Bal/Tp")
        amount = self._signed_amount(bal, line, "Bal")
        if amount is None:
            raise self.where.error(f"balance {code} has no amount", line, "Bal/Amt")
        return _Balance(code, amount, self._date(bal, "Dt", line), line)

    def _currency(self, stmt: ET.Element) -> str | None:
        """The account's currency as far as the statement has been read (Acct, Bal come first)."""
        currency = self._text(stmt, "Acct", "Ccy")
        if currency is None:
            first = self._find(stmt, "Bal", "Amt")
            currency = clean(first.get("Ccy")) if first is not None else None
        return currency

    def _entry(self, ntry: ET.Element, currency: str | None, read: _Transactions) -> BankEntry:
        line = self._line(ntry, 1)
        amount = self._signed_amount(ntry, line, "Ntry")
        if amount is None:
            raise self.where.error("entry has no amount", line, "Ntry/Amt")
        if currency is not None and amount.currency != currency:
            raise self.where.error(
                f"entry in {amount.currency}, the account in {currency}",
                self._line(self._find(ntry, "Amt"), line),
                "Ntry/Amt",
            )
        reversal = self._boolean(ntry, "RvslInd", line)
        if read.records and read.basis != (amount, reversal):
            raise self.where.error(
                "the entry's amount or reversal indicator comes after its transaction details",
                line,
                "Ntry/NtryDtls",
            )
        transactions = read.records
        status = self._text(ntry, "Sts") or self._text(ntry, "Sts", "Cd")
        batch = self._find(ntry, "NtryDtls", "Btch")
        fields: dict[str, object] = {
            "line_no": line,
            "booking_date": self._date(ntry, "BookgDt", line),
            "value_date": self._date(ntry, "ValDt", line),
            "amount": amount,
            "reversal": reversal,
            "booked": status is None or status == _BOOKED,
            "type_code": self._type_code(ntry),
            "bank_reference": reference(
                self._text(ntry, "AcctSvcrRef") or self._text(ntry, "NtryRef")
            ),
            "supplementary_details": self._text(ntry, "AddtlNtryInf"),
        }
        if batch is not None or len(transactions) > 1:
            fields["transactions"] = tuple(transactions)
            if batch is not None:
                fields["customer_reference"] = reference(
                    self._text(batch, "PmtInfId") or self._text(batch, "MsgId")
                )
        elif transactions:
            single = transactions[0]
            fields["customer_reference"] = single.customer_reference
            fields["details"] = single.details
            fields["counterparty_name"] = single.counterparty_name
            fields["counterparty_account"] = single.counterparty_account
            if fields["bank_reference"] is None:
                fields["bank_reference"] = single.bank_reference
        return build(BankEntry, self.where, line, **fields)

    def _transaction(
        self, tx: ET.Element, entry_amount: Money, reversal: bool, entry_line: int
    ) -> BankTransaction:
        line = self._line(tx, entry_line)
        amount = self._signed_amount(tx, line, "TxDtls", default_sign=entry_amount.minor >= 0)
        if amount is None:
            for path in (("AmtDtls", "TxAmt"), ("AmtDtls", "InstdAmt")):
                holder = self._find(tx, *path)
                if holder is not None:
                    amount = self._signed_amount(
                        holder,
                        self._line(holder, line),
                        "TxDtls/AmtDtls",
                        default_sign=entry_amount.minor >= 0,
                    )
                    break
        positive = amount.minor >= 0 if amount is not None else entry_amount.minor >= 0
        # The counterparty is the other side of the original payment: whoever paid in, for
        # money that came in; a reversal turns the direction round.
        incoming = positive != reversal
        sides = [("Dbtr", "DbtrAcct"), ("Cdtr", "CdtrAcct")]
        if not incoming:
            sides.reverse()
        # A bank often names only the other party (a direct debit return names the debtor
        # although the money goes out), so the expected side falls back to the one present.
        party, account = next(
            (
                side
                for side in sides
                if any(self._find(tx, "RltdPties", name) is not None for name in side)
            ),
            sides[0],
        )
        unstructured = [
            clean(elem.text) for elem in tx.findall(f"{self._q('RmtInf')}/{self._q('Ustrd')}")
        ]
        return build(
            BankTransaction,
            self.where,
            line,
            amount=amount,
            customer_reference=reference(self._text(tx, "Refs", "EndToEndId")),
            bank_reference=reference(
                self._text(tx, "Refs", "AcctSvcrRef") or self._text(tx, "Refs", "TxId")
            ),
            details="\n".join(text for text in unstructured if text) or None,
            counterparty_name=self._text(tx, "RltdPties", party, "Nm")
            or self._text(tx, "RltdPties", party, "Pty", "Nm"),
            counterparty_account=self._text(tx, "RltdPties", account, "Id", "IBAN")
            or self._text(tx, "RltdPties", account, "Id", "Othr", "Id"),
        )

    # -- fields ----------------------------------------------------------------------------

    def _signed_amount(
        self, holder: ET.Element, line: int, owner: str, *, default_sign: bool | None = None
    ) -> Money | None:
        """``Amt`` with its ``Ccy`` and the sibling ``CdtDbtInd``; ``None`` without an ``Amt``."""
        amt = self._find(holder, "Amt")
        if amt is None:
            return None
        amt_line = self._line(amt, line)
        currency = (amt.get("Ccy") or "").strip()
        text = (amt.text or "").strip()
        match = _AMOUNT.fullmatch(text)
        if match is None:
            raise self.where.error(f"{text[:40]!r} is not an amount", amt_line, f"{owner}/Amt")
        indicator = self._text(holder, "CdtDbtInd")
        if indicator is None and default_sign is not None:
            indicator = "CRDT" if default_sign else "DBIT"
        if indicator not in {"CRDT", "DBIT"}:
            raise self.where.error(
                f"credit/debit indicator {indicator!r} is not CRDT or DBIT",
                self._line(self._find(holder, "CdtDbtInd"), line),
                f"{owner}/CdtDbtInd",
            )
        return money_from_parts(
            indicator == "DBIT",
            match.group(1),
            match.group(2) or "",
            currency,
            self.where,
            amt_line,
            f"{owner}/Amt",
        )

    def _date(self, parent: ET.Element, name: str, line: int) -> date | None:
        holder = self._find(parent, name)
        if holder is None:
            return None
        holder_line = self._line(holder, line)
        day = self._text(holder, "Dt")
        if day is not None:
            parsed = _iso_date(day)
            if parsed is None:
                raise self.where.error(
                    f"{day[:40]!r} is not a date",
                    self._line(self._find(holder, "Dt"), holder_line),
                    f"{name}/Dt",
                )
            return parsed
        moment = self._text(holder, "DtTm")
        if moment is not None:
            # The date is taken as the bank wrote it, in the bank's own offset.
            parsed = _iso_datetime_date(moment)
            if parsed is None:
                raise self.where.error(
                    f"{moment[:40]!r} is not a date and time",
                    self._line(self._find(holder, "DtTm"), holder_line),
                    f"{name}/DtTm",
                )
            return parsed
        raise self.where.error(f"{name} has neither Dt nor DtTm", holder_line, name)

    def _boolean(self, parent: ET.Element, name: str, line: int) -> bool:
        text = self._text(parent, name)
        if text is None or text in {"false", "0"}:
            return False
        if text in {"true", "1"}:
            return True
        raise self.where.error(
            f"{text[:20]!r} is not true or false", self._line(self._find(parent, name), line), name
        )

    def _type_code(self, ntry: ET.Element) -> str | None:
        domain = self._text(ntry, "BkTxCd", "Domn", "Cd")
        family = self._text(ntry, "BkTxCd", "Domn", "Fmly", "Cd")
        sub_family = self._text(ntry, "BkTxCd", "Domn", "Fmly", "SubFmlyCd")
        if domain is not None:
            return "/".join(part for part in (domain, family, sub_family) if part)
        return self._text(ntry, "BkTxCd", "Prtry", "Cd")
