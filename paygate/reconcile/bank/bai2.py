"""BAI2 cash management balance reports: one statement per account (``03`` … ``49``).

Invariant: a statement is yielded only after its ``49`` account trailer has been checked — the
control total equals the algebraic sum of every amount in the ``03`` and ``16`` records (their
``88`` continuations included) and the record count equals the records read — and the file is
read to the end only if every ``98`` group trailer and the ``99`` file trailer agree in the same
way. A mismatch, a record out of place or a file that ends before ``99`` is a ParseError naming
the line. Amounts are integers in the currency's minor units (BAI2 implies the decimal point from
the currency), so they become :class:`~paygate.money.Money` without any arithmetic at all.

Record layout read here: ``01`` file header (version must be 2), ``02`` group header (as-of date,
default currency), ``03`` account with status and summary figures (``010`` opening ledger and
``015`` closing ledger become the statement's balances; every other type code is kept as an
informational balance), ``16`` transaction detail (``100``-``399`` credits, ``400``-``699``
debits), ``88`` continuation of the previous record, and the trailers. Funds types ``0``, ``1``,
``2``, ``Z`` take no further fields, ``V`` a value date and time, ``S`` three availability amounts,
``D`` a count of distributions followed by that many (days, amount) pairs.

What the reader accepts, because real files do it: times written ``HHMM``, ``HHMMSS`` or
``HH:MM:SS``; an ``03`` record whose physical lines each end with ``,/`` and whose summaries go
on in ``88`` records (the empty field before the ``/`` is the bank's way of closing the line, not
a summary); a record ended by ``/`` in the middle of a field group, continued in the ``88``;
an empty control total in a trailer whose records have no amounts (an account with no
activity), which agrees with their sum, zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from paygate.errors import ParseError
from paygate.money import Money
from paygate.reconcile.bank._input import (
    BankSource,
    Where,
    build,
    check_encoding,
    clean,
    currency_exponent,
    money_from_minor_text,
    numbered_lines,
    opened,
    reference,
    yymmdd,
)
from paygate.reconcile.bank.model import BankBalance, BankEntry, BankFormat, BankStatement

__all__ = ["read_bai2"]

_RECORD: Final = re.compile(r"([0-9]{2}),(.*)")
_SEPARATOR: Final = re.compile(r"[,/]")
_CLOCK: Final = re.compile(r"[0-9]{4}(?:[0-9]{2})?|[0-9]{2}:[0-9]{2}(?::[0-9]{2})?")
_DEFAULT_CURRENCY: Final = "USD"
_OPENING_LEDGER: Final = "010"
_CLOSING_LEDGER: Final = "015"


def read_bai2(source: BankSource, *, encoding: str = "utf-8") -> Iterator[BankStatement]:
    """Read the BAI2 file ``source``, yielding one statement per account record.

    ``source`` is a path or an open file. Every account, group and file trailer is checked
    against what was read; a mismatch raises ParseError with the trailer's line. Statements
    yielded before an error belong to a file that was refused, so act on them only once the
    whole file has been read.
    """
    codec = check_encoding(encoding)
    return _read(source, codec)


def _read(source: BankSource, codec: str) -> Iterator[BankStatement]:
    with opened(source) as (name, stream):
        where = Where(name)
        parser = _Parser(where)
        for record in _records(numbered_lines(stream, where, codec), where):
            statement = parser.feed(record)
            if statement is not None:
                yield statement
        parser.finish()


@dataclass
class _Record:
    """A logical record: its code and its physical pieces (the record and its ``88`` lines)."""

    code: str
    pieces: list[tuple[int, str]]

    @property
    def line(self) -> int:
        return self.pieces[0][0]


def _records(lines: Iterator[tuple[int, str]], where: Where) -> Iterator[_Record]:
    pending: _Record | None = None
    last_line = 0
    for line_no, text in lines:
        last_line = line_no
        if not text.strip():
            continue
        match = _RECORD.fullmatch(text.rstrip())
        if match is None:
            raise where.error(
                f"expected a BAI2 record ('NN,…'), found {text.strip()[:20]!r}",
                line_no,
                "record code",
            )
        code, content = match.groups()
        if code == "88":
            if pending is None:
                raise where.error("continuation record 88 before any record", line_no, "88")
            pending.pieces.append((line_no, content))
            continue
        if pending is not None:
            yield pending
        pending = _Record(code, [(line_no, content)])
    if pending is None:
        raise where.error("no BAI2 records found", max(last_line, 1))
    yield pending


class _Fields:
    """Reads the comma-separated fields of a logical record across its continuation pieces.

    A ``/`` ends the data of a physical record; the next field is taken from the next piece.
    """

    def __init__(self, record: _Record, where: Where) -> None:
        self.pieces = record.pieces
        self.where = where
        self.index = 0
        self.pos = 0
        self.ended = False
        self.line = record.line

    def next(self) -> str | None:
        """The next field, ``""`` when defaulted, ``None`` when the record has no more fields."""
        while self.index < len(self.pieces):
            line, text = self.pieces[self.index]
            if not self.ended and self.pos < len(text):
                break
            self.index += 1
            self.pos = 0
            self.ended = False
        else:
            return None
        self.line = line
        start = self.pos
        separator = _SEPARATOR.search(text, start)
        if separator is None:
            self.pos = len(text)
            return text[start:].strip()
        if separator.group() == "/":
            self.ended = True
        self.pos = separator.end()
        return text[start : separator.start()].strip()

    def text(self) -> str | None:
        """The rest of the record as free text (a ``16`` record's last field), lines kept."""
        parts: list[str] = []
        if self.index < len(self.pieces):
            if not self.ended:
                parts.append(self.pieces[self.index][1][self.pos :])
            parts += [text for _, text in self.pieces[self.index + 1 :]]
        self.index = len(self.pieces)
        kept: list[str] = []
        for part in parts:
            part = part.rstrip()
            # A slash right at the end closes the record; it is not part of the text.
            if part.endswith("/"):
                part = part[:-1].rstrip()
            if part:
                kept.append(part)
        return "\n".join(kept) or None

    def error(self, message: str, field_name: str) -> ParseError:
        return self.where.error(message, self.line, field_name)

    def end(self, record: str) -> None:
        """Refuse fields beyond the last one a header or trailer record has."""
        while (value := self.next()) is not None:
            if value:
                raise self.error(
                    f"unexpected field {value[:20]!r} after the last field of record {record}",
                    record,
                )

    def required(self, field_name: str) -> str:
        value = self.next()
        if not value:
            raise self.error(f"{field_name} is missing", field_name)
        return value

    def integer(self, field_name: str, *, signed: bool = False) -> int | None:
        value = self.next()
        if not value:
            return None
        pattern = r"[+-]?[0-9]{1,24}" if signed else r"[0-9]{1,24}"
        if not re.fullmatch(pattern, value):
            raise self.error(f"{value!r} is not a whole number", field_name)
        return int(value)

    def required_integer(self, field_name: str, *, signed: bool = False) -> int:
        value = self.integer(field_name, signed=signed)
        if value is None:
            raise self.error(f"{field_name} is missing", field_name)
        return value

    def control_total(self, field_name: str, read: int) -> int:
        """A trailer's control total; banks leave it empty for accounts with no amounts, which
        agrees only when what was read sums to zero."""
        value = self.integer(field_name, signed=True)
        if value is None:
            if read:
                raise self.error(f"{field_name} is missing", field_name)
            return 0
        return value

    def day(self, field_name: str) -> date | None:
        value = self.next()
        if not value:
            return None
        return yymmdd(value, self.where, self.line, field_name)

    def clock(self, field_name: str) -> None:
        value = self.next()
        # 2400 and 9999 both mean end of day; the time is only checked, not kept. Banks also
        # write seconds, with or without colons (``0815``, ``081500``, ``08:15:00``).
        if value and not _CLOCK.fullmatch(value):
            raise self.error(f"{value!r} is not an HHMM or HH:MM:SS time", field_name)

    def money(self, currency: str, field_name: str) -> Money | None:
        value = self.next()
        if value is None:
            return None
        return money_from_minor_text(value, currency, self.where, self.line, field_name)

    def funds(self, currency: str, owner: str) -> date | None:
        """Read a funds type and its extra fields; return the value date of funds type V."""
        funds_type = self.next()
        if funds_type in {None, "", "0", "1", "2", "Z"}:
            return None
        if funds_type == "V":
            value_date = self.day(f"{owner} value date")
            self.clock(f"{owner} value time")
            return value_date
        if funds_type == "S":
            for name in ("immediate", "one-day", "two-or-more-day"):
                self.money(currency, f"{owner} {name} availability")
            return None
        if funds_type == "D":
            count = self.integer(f"{owner} distribution count") or 0
            for pair in range(count):
                days = self.integer(f"{owner} availability days")
                amount = self.money(currency, f"{owner} availability amount")
                if days is None or amount is None:
                    raise self.error(
                        f"{count} availability distributions announced, {pair} given",
                        f"{owner} distribution count",
                    )
            return None
        raise self.error(f"unknown funds type {funds_type!r}", f"{owner} funds type")


@dataclass
class _Account:
    line: int
    account_id: str
    currency: str
    records: int = 1
    total: int = 0
    opening: Money | None = None
    closing: Money | None = None
    balances: list[BankBalance] = field(default_factory=list)
    entries: list[BankEntry] = field(default_factory=list)


@dataclass
class _Group:
    line: int
    as_of: date
    currency: str
    records: int = 1
    total: int = 0
    accounts: int = 0


class _Parser:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.file_id: str | None = None
        self.file_open = False
        self.file_closed = False
        self.file_records = 0
        self.file_total = 0
        self.groups = 0
        self.group: _Group | None = None
        self.account: _Account | None = None
        self.last_line = 1

    def feed(self, record: _Record) -> BankStatement | None:
        """Take one logical record; return a statement when an account trailer closes one."""
        self.last_line = record.pieces[-1][0]
        size = len(record.pieces)
        code = record.code
        if self.file_closed:
            raise self._error(record, f"record {code} after the file trailer 99", code)
        if code == "01":
            if self.file_open:
                raise self._error(record, "second file header 01", code)
            self._file_header(record)
            self.file_records = size
            return None
        if not self.file_open:
            raise self._error(record, f"record {code} before the file header 01", code)
        self.file_records += size
        if self.group is not None:
            self.group.records += size
        if self.account is not None:
            self.account.records += size
        if code == "02":
            self._group_header(record)
        elif code == "03":
            self._account_header(record)
        elif code == "16":
            self._detail(record)
        elif code == "49":
            return self._account_trailer(record)
        elif code == "98":
            self._group_trailer(record)
        elif code == "99":
            self._file_trailer(record)
        else:
            raise self._error(record, f"unknown record code {code}", "record code")
        return None

    def finish(self) -> None:
        """Refuse a file that ended before its file trailer."""
        if not self.file_closed:
            missing = "49" if self.account else "98" if self.group else "99"
            raise self.where.error(
                f"the file ends without its trailer {missing}; it is truncated", self.last_line
            )

    def _error(self, record: _Record, message: str, field_name: str | None) -> ParseError:
        return self.where.error(message, record.line, field_name)

    def _file_header(self, record: _Record) -> None:
        fields = _Fields(record, self.where)
        fields.required("01 sender")
        fields.required("01 receiver")
        fields.day("01 creation date")
        fields.clock("01 creation time")
        self.file_id = fields.required("01 file id")
        fields.integer("01 record length")
        fields.integer("01 block size")
        version = fields.next()
        if version != "2":
            raise fields.error(f"version {version!r} is not BAI2 (2)", "01 version")
        fields.end("01")
        self.file_open = True

    def _group_header(self, record: _Record) -> None:
        if self.group is not None:
            raise self._error(record, "group header 02 inside a group; 98 is missing", "02")
        fields = _Fields(record, self.where)
        fields.next()  # ultimate receiver, optional
        fields.required("02 originator")
        status = fields.next()
        if status not in {"1", "2", "3", "4"}:
            raise fields.error(f"group status {status!r} is not 1-4", "02 group status")
        as_of = fields.day("02 as-of date")
        if as_of is None:
            raise fields.error("02 as-of date is missing", "02 as-of date")
        fields.clock("02 as-of time")
        currency = fields.next() or _DEFAULT_CURRENCY
        currency_exponent(currency, self.where, fields.line, "02 currency")
        fields.next()  # as-of-date modifier, optional
        fields.end("02")
        self.group = _Group(record.line, as_of, currency, records=len(record.pieces))
        self.groups += 1

    def _account_header(self, record: _Record) -> None:
        if self.group is None:
            raise self._error(record, "account record 03 outside a group", "03")
        if self.account is not None:
            raise self._error(record, "account record 03 inside an account; 49 is missing", "03")
        fields = _Fields(record, self.where)
        account_id = fields.required("03 account number")
        currency = fields.next() or self.group.currency
        currency_exponent(currency, self.where, fields.line, "03 currency")
        account = _Account(record.line, account_id, currency, records=len(record.pieces))
        self.group.accounts += 1
        while True:
            type_code = fields.next()
            if type_code is None:
                break
            if not type_code and fields.ended:
                # ``,/`` closing a line: many banks end every physical record so, and the
                # summary goes on in the next ``88``; it is no summary of its own.
                continue
            amount = fields.money(currency, "03 amount")
            count = fields.integer("03 item count")
            fields.funds(currency, "03")
            if not type_code:
                if amount is not None or count is not None:
                    raise fields.error("an amount without a type code", "03 type code")
                continue
            if not re.fullmatch(r"[0-9]{3}", type_code):
                raise fields.error(f"{type_code!r} is not a type code", "03 type code")
            if amount is None:
                continue
            account.total += amount.minor
            if type_code == _OPENING_LEDGER and account.opening is None:
                account.opening = amount
            elif type_code == _CLOSING_LEDGER and account.closing is None:
                account.closing = amount
            else:
                account.balances.append(
                    build(
                        BankBalance,
                        self.where,
                        fields.line,
                        code=type_code,
                        amount=amount,
                        as_of=self.group.as_of,
                        item_count=count,
                    )
                )
        self.account = account

    def _detail(self, record: _Record) -> None:
        account = self.account
        if account is None or self.group is None:
            raise self._error(record, "transaction detail 16 outside an account", "16")
        fields = _Fields(record, self.where)
        type_code = fields.required("16 type code")
        if not re.fullmatch(r"[0-9]{3}", type_code):
            raise fields.error(f"{type_code!r} is not a type code", "16 type code")
        written = fields.money(account.currency, "16 amount")
        if written is None:
            raise fields.error("16 amount is missing", "16 amount")
        account.total += written.minor
        value_date = fields.funds(account.currency, "16")
        bank_reference = fields.next()
        customer_reference = fields.next()
        text = fields.text()
        code = int(type_code)
        if 100 <= code <= 399:
            amount = written
        elif 400 <= code <= 699:
            amount = -written
        elif not written:
            amount = written
        else:
            raise self._error(
                record,
                f"type code {type_code} is neither a credit (100-399) nor a debit (400-699) "
                "detail, so the direction of its amount is unknown",
                "16 type code",
            )
        account.entries.append(
            build(
                BankEntry,
                self.where,
                record.line,
                line_no=record.line,
                booking_date=self.group.as_of,
                value_date=value_date,
                amount=amount,
                type_code=type_code,
                customer_reference=reference(customer_reference),
                bank_reference=reference(bank_reference),
                details=clean(text),
            )
        )

    def _account_trailer(self, record: _Record) -> BankStatement:
        account = self.account
        group = self.group
        if account is None or group is None:
            raise self._error(record, "account trailer 49 outside an account", "49")
        fields = _Fields(record, self.where)
        total = fields.control_total("49 control total", account.total)
        count = fields.required_integer("49 record count")
        fields.end("49")
        if total != account.total:
            raise fields.error(
                f"account control total {total} does not match the sum of the account's "
                f"amounts, {account.total}",
                "49 control total",
            )
        if count != account.records:
            raise fields.error(
                f"account record count {count} does not match the {account.records} records "
                f"read from line {account.line}",
                "49 record count",
            )
        group.total += total
        self.account = None
        as_of = group.as_of
        return build(
            BankStatement,
            self.where,
            account.line,
            format=BankFormat.BAI2,
            line_no=account.line,
            account_id=account.account_id,
            statement_id=self.file_id,
            currency=account.currency,
            opening_balance=account.opening,
            opening_date=as_of if account.opening is not None else None,
            closing_balance=account.closing,
            closing_date=as_of if account.closing is not None else None,
            entries=tuple(account.entries),
            balances=tuple(account.balances),
        )

    def _group_trailer(self, record: _Record) -> None:
        group = self.group
        if group is None:
            raise self._error(record, "group trailer 98 outside a group", "98")
        if self.account is not None:
            raise self._error(record, "group trailer 98 inside an account; 49 is missing", "98")
        fields = _Fields(record, self.where)
        total = fields.control_total("98 control total", group.total)
        accounts = fields.required_integer("98 number of accounts")
        count = fields.required_integer("98 record count")
        fields.end("98")
        if total != group.total:
            raise fields.error(
                f"group control total {total} does not match the sum of its account trailers, "
                f"{group.total}",
                "98 control total",
            )
        if accounts != group.accounts:
            raise fields.error(
                f"group says {accounts} accounts, {group.accounts} were read",
                "98 number of accounts",
            )
        if count != group.records:
            raise fields.error(
                f"group record count {count} does not match the {group.records} records read "
                f"from line {group.line}",
                "98 record count",
            )
        self.file_total += total
        self.group = None

    def _file_trailer(self, record: _Record) -> None:
        if self.group is not None:
            raise self._error(record, "file trailer 99 inside a group; 98 is missing", "99")
        fields = _Fields(record, self.where)
        total = fields.control_total("99 control total", self.file_total)
        groups = fields.required_integer("99 number of groups")
        count = fields.required_integer("99 record count")
        fields.end("99")
        if total != self.file_total:
            raise fields.error(
                f"file control total {total} does not match the sum of its group trailers, "
                f"{self.file_total}",
                "99 control total",
            )
        if groups != self.groups:
            raise fields.error(
                f"file says {groups} groups, {self.groups} were read", "99 number of groups"
            )
        if count != self.file_records:
            raise fields.error(
                f"file record count {count} does not match the {self.file_records} records read",
                "99 record count",
            )
        self.file_closed = True
