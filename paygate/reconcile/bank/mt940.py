"""SWIFT MT940 customer statements: one file, one or more statements.

Invariant: every statement yielded had its mandatory tags (``:20:``, ``:25:``, ``:28C:``,
``:60F:``/``:60M:``, ``:62F:``/``:62M:``) in order, every amount and date in it was read exactly,
and all its balances are in the currency of its opening balance. Anything else is a ParseError
at the line where the file stopped making sense. Whether the balances agree with the entries is
reported on the statement, not refused.

What the reader accepts, because real files do it:

* statements one after another with or without ``-`` separators, inside SWIFT ``{1:…}{2:…}{4:``
  envelopes closed by ``-}``, and blank lines between them;
* the header lines banks put before a statement's ``:20:`` (see :func:`is_header_line`):
  ABN AMRO's sender BIC and message type (``ABNANL2A`` / ``940`` / ``ABNANL2A``), Rabobank's
  ``:940:``, and the SOH/ETX characters that frame a message sent over SWIFT;
* ``:28:`` as well as ``:28C:``;
* a ``:61:`` entry date (MMDD) that rolls over the year end, or blank padding in its place;
* debit/credit marks followed by a funds code letter, which is how ``DR``, ``CR`` and ``RCR``
  come about (``D`` + ``R``, ``C`` + ``R``, ``RC`` + ``R``);
* ``:86:`` details over several lines, or over several ``:86:`` tags after one ``:61:`` (each
  continues the entry's details); German ``?20``-style subfields are kept as text, and the
  counterparty is taken from ``?31`` (account) and ``?32``/``?33`` (name) where present.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from paygate.money import Money
from paygate.reconcile.bank._input import (
    BankSource,
    Where,
    build,
    check_encoding,
    clean,
    money_from_parts,
    numbered_lines,
    opened,
    reference,
    yymmdd,
)
from paygate.reconcile.bank.model import BankBalance, BankEntry, BankFormat, BankStatement

__all__ = ["is_header_line", "read_mt940", "starts_like_mt940"]

_TAG: Final = re.compile(r":([0-9]{2}[A-Z]?|NS):")
_BALANCE: Final = re.compile(r"([CD])([0-9]{6})([A-Z]{3})([0-9]+)(?:,([0-9]*))?")
_ENTRY: Final = re.compile(
    r"(?P<value>[0-9]{6})(?P<entry>[0-9]{4})?[ ]*"
    r"(?P<mark>RC|RD|C|D)(?P<funds>[A-Z])?"
    r"(?P<whole>[0-9]+)(?:,(?P<fraction>[0-9]*))?"
    r"(?P<type>[NFS][A-Z0-9]{3})(?P<rest>.*)"
)
_STRUCTURED: Final = re.compile(r"\s*[0-9]{3}\?")
_SUBFIELD: Final = re.compile(r"\?([0-9]{2})")
_SINGLE_LINE: Final = frozenset({"20", "21", "25", "28", "28C", "60F", "60M", "62F", "62M", "64"})
# A header line: a BIC (8 or 11 characters), a message type (940, 942, 950) bare or as a tag.
_HEADER: Final = re.compile(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?|9[0-9]{2}|:9[0-9]{2}:")
_ENVELOPE: Final = re.compile(r"\{[0-9]:")
# SWIFT's start- and end-of-message characters, which survive in files saved from a SWIFT link.
_FRAMING: Final = " \t\r\n\x01\x03"
# After these tags a statement has no more text to continue, so a header line is the next one's.
_CLOSED: Final = frozenset({"62F", "62M", "64", "65"})


def is_header_line(line: str) -> bool:
    """Whether ``line`` is one of the header lines banks write before a statement's ``:20:``.

    These are a bank identifier code on a line of its own (ABN AMRO writes ``ABNANL2A``, ``940``
    and ``ABNANL2A`` before every statement) and a message type (``940``, or Rabobank's
    ``:940:``), with any SOH/ETX characters of a SWIFT transmission around them.
    """
    return _HEADER.fullmatch(line.strip(_FRAMING)) is not None


def starts_like_mt940(text: str) -> bool:
    """Whether ``text``, the beginning of a file, is MT940: ``:20:`` after any header lines.

    Header lines (:func:`is_header_line`), blank lines and SWIFT envelope blocks ``{1:…}{2:…}``
    may come first; the first other line must start a statement with ``:20:``.
    """
    for line in text.splitlines():
        stripped = line.strip(_FRAMING)
        if _ENVELOPE.match(stripped):
            start = stripped.find("{4:")
            if start < 0:
                continue
            stripped = stripped[start + 3 :].strip(_FRAMING)
        if not stripped or _HEADER.fullmatch(stripped):
            continue
        return stripped.startswith(":20:")
    return False


def read_mt940(source: BankSource, *, encoding: str = "utf-8") -> Iterator[BankStatement]:
    """Read the MT940 statements in ``source`` one by one.

    ``source`` is a path or an open file; ``encoding`` is the file's character set (SWIFT files
    are ASCII; bank exports are often UTF-8 or Latin-1). Raises ParseError, naming the line, for
    anything that cannot be read; statements yielded before the error belong to a file that was
    refused, so act on them only once the whole file has been read.
    """
    codec = check_encoding(encoding)
    return _read(source, codec)


def _read(source: BankSource, codec: str) -> Iterator[BankStatement]:
    with opened(source) as (name, stream):
        where = Where(name)
        yield from _Parser(where).statements(numbered_lines(stream, where, codec))


@dataclass
class _Tag:
    name: str
    line: int
    lines: list[tuple[int, str]]

    @property
    def value(self) -> str:
        return self.lines[0][1]


@dataclass
class _Balance:
    amount: Money
    as_of: date


@dataclass
class _Entry:
    """A :61: line read, waiting for the :86: that may follow it."""

    line_no: int
    value_date: date
    booking_date: date | None
    amount: Money
    reversal: bool
    type_code: str
    customer_reference: str | None
    bank_reference: str | None
    supplementary_details: str | None
    details: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    has_details: bool = False

    def record(self, where: Where) -> BankEntry:
        fields = dict(vars(self))
        del fields["has_details"]
        return build(BankEntry, where, self.line_no, **fields)


@dataclass
class _Block:
    """A statement being read: what its tags said so far."""

    line: int
    reference: str
    account: str | None = None
    sequence: str | None = None
    opening: _Balance | None = None
    closing: _Balance | None = None
    entries: list[_Entry] = field(default_factory=list)
    balances: list[BankBalance] = field(default_factory=list)
    information: list[str] = field(default_factory=list)
    last_tag: str = "20"
    # Whether the last tag was :86: text that went to the last entry (not to the statement).
    entry_details: bool = False


class _Parser:
    def __init__(self, where: Where) -> None:
        self.where = where

    def statements(self, lines: Iterator[tuple[int, str]]) -> Iterator[BankStatement]:
        block: _Block | None = None
        tag: _Tag | None = None
        last_line = 0
        found = False
        for line_no, text in lines:
            last_line = line_no
            stripped = text.strip(_FRAMING)
            if not stripped:
                continue
            text = text.strip("\x01\x03")
            if stripped == "-" or stripped.startswith("-}"):
                if tag is not None and block is not None:
                    self._apply(block, tag)
                tag = None
                if block is not None:
                    yield self._finish(block, line_no)
                    found = True
                block = None
                continue
            if _ENVELOPE.match(stripped):
                # A SWIFT envelope: blocks 1-3 are routing headers, block 4 holds the tags.
                start = stripped.find("{4:")
                if start < 0:
                    continue
                text = stripped[start + 3 :]
                if not text:
                    continue
            match = _TAG.match(text)
            if match is None and (tag is None or tag.name in _CLOSED) and is_header_line(text):
                continue
            if match is None:
                if tag is None:
                    raise self.where.error(
                        f"expected an MT940 tag such as :20:, found {stripped[:20]!r}", line_no
                    )
                tag.lines.append((line_no, text.rstrip()))
                continue
            if tag is not None and block is not None:
                self._apply(block, tag)
            name = match.group(1)
            if name == "20":
                if block is not None:
                    yield self._finish(block, line_no)
                    found = True
                block = _Block(line=line_no, reference="")
            elif block is None:
                raise self.where.error(
                    f"tag :{name}: outside a statement; a statement starts with :20:", line_no
                )
            tag = _Tag(name, line_no, [(line_no, text[match.end() :].rstrip())])
        if tag is not None and block is not None:
            self._apply(block, tag)
        if block is not None:
            yield self._finish(block, max(last_line, 1))
            found = True
        if not found:
            raise self.where.error("no MT940 statement found", max(last_line, 1))

    def _apply(self, block: _Block, tag: _Tag) -> None:
        name = tag.name
        if name in _SINGLE_LINE and len(tag.lines) > 1:
            raise self.where.error(
                f"unexpected continuation of :{name}:", tag.lines[1][0], f":{name}:"
            )
        if name == "20":
            block.reference = tag.value.strip()
            if not block.reference:
                raise self.where.error("empty statement reference", tag.line, ":20:")
        elif name == "25":
            self._once(block.account, tag)
            block.account = tag.value.strip()
            if not block.account:
                raise self.where.error("empty account identification", tag.line, ":25:")
        elif name in {"28", "28C"}:
            self._once(block.sequence, tag)
            block.sequence = tag.value.strip()
            if not block.sequence:
                raise self.where.error("empty statement number", tag.line, f":{name}:")
        elif name in {"60F", "60M"}:
            self._once(block.opening, tag)
            block.opening = self._balance(tag, None)
        elif name == "61":
            self._entry(block, tag)
        elif name == "86":
            text = "\n".join(line for _, line in tag.lines).strip("\n")
            if block.last_tag == "61" and not block.entries[-1].has_details:
                _add_details(block.entries[-1], text)
                block.entry_details = True
            elif block.last_tag == "86" and block.entry_details:
                # Some banks write an entry's details as several :86: tags; a reference on a
                # later one must still be found on the entry.
                _add_details(block.entries[-1], text)
            elif text:
                block.information.append(text)
        elif name in {"62F", "62M"}:
            if block.opening is None:
                raise self.where.error(
                    f":{name}: before the opening balance :60F:", tag.line, f":{name}:"
                )
            self._once(block.closing, tag)
            block.closing = self._balance(tag, block.opening.amount.currency)
        elif name in {"64", "65"}:
            if block.opening is None:
                raise self.where.error(
                    f":{name}: before the opening balance :60F:", tag.line, f":{name}:"
                )
            balance = self._balance(tag, block.opening.amount.currency)
            block.balances.append(
                build(
                    BankBalance,
                    self.where,
                    tag.line,
                    code=name,
                    amount=balance.amount,
                    as_of=balance.as_of,
                )
            )
        # Other tags (:21:, :13D:, :NS:, MT942's :34F:/:90D: …) carry nothing a statement keeps.
        if name != "86":
            block.entry_details = False
        block.last_tag = name

    def _once(self, current: object, tag: _Tag) -> None:
        if current is not None:
            raise self.where.error(
                f"second :{tag.name}: in one statement", tag.line, f":{tag.name}:"
            )

    def _balance(self, tag: _Tag, currency: str | None) -> _Balance:
        field_name = f":{tag.name}:"
        match = _BALANCE.fullmatch(tag.value.strip())
        if match is None:
            raise self.where.error(
                f"{tag.value.strip()[:40]!r} is not a balance (D/C mark, YYMMDD, currency, amount)",
                tag.line,
                field_name,
            )
        mark, when, code, whole, fraction = match.groups()
        if currency is not None and code != currency:
            raise self.where.error(
                f"balance in {code}, the statement opened in {currency}", tag.line, field_name
            )
        amount = money_from_parts(
            mark == "D", whole, fraction or "", code, self.where, tag.line, field_name
        )
        return _Balance(amount, yymmdd(when, self.where, tag.line, field_name))

    def _entry(self, block: _Block, tag: _Tag) -> None:
        if block.opening is None:
            raise self.where.error(":61: before the opening balance :60F:", tag.line, ":61:")
        if block.closing is not None:
            raise self.where.error(":61: after the closing balance :62F:", tag.line, ":61:")
        match = _ENTRY.fullmatch(tag.value)
        if match is None:
            raise self.where.error(
                f"{tag.value[:40]!r} is not a statement line (date, mark, amount, type code)",
                tag.line,
                ":61:",
            )
        value_date = yymmdd(match["value"], self.where, tag.line, ":61: value date")
        booking_date = None
        if match["entry"] is not None:
            booking_date = self._entry_date(value_date, match["entry"], tag.line)
        mark = match["mark"]
        amount = money_from_parts(
            mark in {"D", "RC"},
            match["whole"],
            match["fraction"] or "",
            block.opening.amount.currency,
            self.where,
            tag.line,
            ":61: amount",
        )
        customer, _, bank = match["rest"].partition("//")
        supplementary = "\n".join(line for _, line in tag.lines[1:]).strip("\n")
        block.entries.append(
            _Entry(
                line_no=tag.line,
                value_date=value_date,
                booking_date=booking_date,
                amount=amount,
                reversal=mark in {"RC", "RD"},
                type_code=match["type"],
                customer_reference=reference(customer),
                bank_reference=reference(bank),
                supplementary_details=supplementary or None,
            )
        )

    def _entry_date(self, value_date: date, mmdd: str, line: int) -> date:
        # MMDD has no year: take the year that puts the booking nearest the value date, so a
        # booking on 2 January of a payment valued 31 December lands in the next year.
        month, day = int(mmdd[:2]), int(mmdd[2:])
        candidates: list[date] = []
        for year in (value_date.year - 1, value_date.year, value_date.year + 1):
            try:
                candidates.append(date(year, month, day))
            except ValueError:
                continue
        if not candidates:
            raise self.where.error(f"{mmdd!r} is not an MMDD date", line, ":61: entry date")
        return min(candidates, key=lambda day_: abs((day_ - value_date).days))

    def _finish(self, block: _Block, end_line: int) -> BankStatement:
        missing = [
            tag
            for tag, value in (
                (":25: account", block.account),
                (":28C: statement number", block.sequence),
                (":60F: opening balance", block.opening),
                (":62F: closing balance", block.closing),
            )
            if value is None
        ]
        if missing:
            raise self.where.error(
                f"statement {block.reference!r} from line {block.line} has no {missing[0]}",
                end_line,
                missing[0].split(" ", 1)[0],
            )
        assert block.opening is not None
        assert block.closing is not None
        currency = block.opening.amount.currency
        entries = tuple(entry.record(self.where) for entry in block.entries)
        return build(
            BankStatement,
            self.where,
            block.line,
            format=BankFormat.MT940,
            line_no=block.line,
            account_id=block.account,
            statement_id=block.reference,
            sequence=block.sequence,
            currency=currency,
            opening_balance=block.opening.amount,
            opening_date=block.opening.as_of,
            closing_balance=block.closing.amount,
            closing_date=block.closing.as_of,
            entries=entries,
            balances=tuple(block.balances),
            information="\n".join(block.information) or None,
        )


def _add_details(entry: _Entry, text: str) -> None:
    """Attach (or add to) an entry's :86: text, and the counterparty from German subfields."""
    entry.has_details = True
    if entry.details and text:
        text = f"{entry.details}\n{text}"
    elif entry.details:
        text = entry.details
    entry.details = text or None
    # The 65-character line breaks fall anywhere, even inside a subfield marker.
    joined = text.replace("\n", "")
    if _STRUCTURED.match(joined):
        parts = _SUBFIELD.split(joined)
        subfields: dict[str, str] = {}
        for key, value in zip(parts[1::2], parts[2::2], strict=True):
            subfields[key] = subfields.get(key, "") + value
        entry.counterparty_account = clean(subfields.get("31"))
        entry.counterparty_name = clean(subfields.get("32", "") + subfields.get("33", ""))
