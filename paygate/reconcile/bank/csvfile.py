"""Bank statements exported as CSV, read through a layout that says where everything is.

Invariant: a CSV file is one statement of one account in one currency (the layout's). Every
data row becomes exactly one entry, or the file is refused with a ParseError naming the row's
line and the column; a row is never skipped unless the layout says it is a header, a leading or
a trailing row, or the row is blank. Amounts are read from text to minor units without a float,
with the layout's decimal and thousands separators.

Where the export has a running balance column, the opening balance is the first booking's
balance before it and the closing balance the last booking's balance after it, so a row missing
from the middle of the file shows as an unbalanced statement.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paygate.errors import ConfigurationError, InvalidAmountError
from paygate.money import Money, minor_units_exponent
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
)
from paygate.reconcile.bank.model import BankEntry, BankFormat, BankStatement

__all__ = ["Column", "CsvLayout", "read_bank_csv"]

Column: TypeAlias = str | int
"""A column by its header name, or by its 0-based position."""


class CsvLayout(BaseModel):
    """Where a bank's CSV export keeps each field, and how it writes numbers and dates.

    The amount is either one ``amount_column`` or a pair ``debit_column`` / ``credit_column``.

    * One amount column, no ``direction_column``: with ``debits_negative`` (the default) a
      negative number is money out; without it the bank writes money out as a positive number and
      money in as a negative one.
    * One amount column and a ``direction_column``: the amount is written unsigned and the
      direction cell says which way it went (``debit_markers`` / ``credit_markers``, compared
      case-insensitively).
    * Debit and credit columns: one of the two cells is filled (a zero counts as empty). With
      ``debits_negative`` the debit column holds negative numbers, without it positive ones; a
      number of the other sign is refused rather than guessed at.

    Left out, ``debits_negative`` is true for one amount column and false for debit and credit
    columns, which is how most banks write them.

    ``balance_column`` is the running balance after each row; with it the statement gets opening
    and closing balances (``newest_first`` for exports that list the latest booking first).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str
    account_id: str | None = None
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    has_header: bool = True
    skip_rows: int = Field(default=0, ge=0, description="rows before the header (titles, notes)")
    footer_rows: int = Field(default=0, ge=0, description="rows after the data (totals)")
    date_column: Column
    date_format: str = "%Y-%m-%d"
    value_date_column: Column | None = None
    amount_column: Column | None = None
    debit_column: Column | None = None
    credit_column: Column | None = None
    debits_negative: bool = True
    direction_column: Column | None = None
    debit_markers: frozenset[str] = frozenset({"D", "DR", "DEBIT", "借", "支出"})
    credit_markers: frozenset[str] = frozenset({"C", "CR", "CREDIT", "贷", "收入"})
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal[",", ".", " ", "'", "\u00a0"] | None = None
    reference_column: Column | None = None
    bank_reference_column: Column | None = None
    details_column: Column | None = None
    counterparty_name_column: Column | None = None
    counterparty_account_column: Column | None = None
    type_column: Column | None = None
    balance_column: Column | None = None
    newest_first: bool = False

    @model_validator(mode="before")
    @classmethod
    def _default_sign(cls, data: object) -> object:
        if isinstance(data, dict) and "debits_negative" not in data:
            split = data.get("debit_column") is not None or data.get("credit_column") is not None
            return {**data, "debits_negative": not split}
        return data

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        try:
            minor_units_exponent(value)
        except InvalidAmountError:
            raise ValueError(f"unknown currency {value!r}") from None
        return value

    @field_validator("encoding")
    @classmethod
    def _line_encoding(cls, value: str) -> str:
        try:
            return check_encoding(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("date_format")
    @classmethod
    def _has_directives(cls, value: str) -> str:
        if "%" not in value:
            raise ValueError("date_format needs strftime directives such as %Y-%m-%d")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CsvLayout:
        split = self.debit_column is not None or self.credit_column is not None
        if split == (self.amount_column is not None):
            raise ValueError("give either amount_column or both debit_column and credit_column")
        if split and (self.debit_column is None or self.credit_column is None):
            raise ValueError("debit_column and credit_column go together")
        if split and self.direction_column is not None:
            raise ValueError("direction_column applies to a single amount_column")
        if self.thousands_separator == self.decimal_separator:
            raise ValueError("the thousands and decimal separators must differ")
        if self.delimiter == self.quotechar:
            raise ValueError("the delimiter and the quote character must differ")
        markers = {marker.upper() for marker in self.debit_markers}
        if markers & {marker.upper() for marker in self.credit_markers}:
            raise ValueError("a direction marker cannot be both debit and credit")
        if not self.has_header:
            named = [name for name, column in self._columns() if isinstance(column, str)]
            if named:
                raise ValueError(
                    f"without a header row columns are positions; {named[0]} is a name"
                )
        for name, column in self._columns():
            if isinstance(column, int) and column < 0:
                raise ValueError(f"{name} must be a position from 0")
        return self

    def _columns(self) -> list[tuple[str, Column]]:
        return [
            (name, value)
            for name, value in self
            if name.endswith("_column") and isinstance(value, str | int)
        ]


def read_bank_csv(source: BankSource, layout: CsvLayout) -> Iterator[BankStatement]:
    """Read the CSV export ``source`` as described by ``layout``: one statement per file.

    ``source`` is a path or an open file (text streams are read as they are; binary ones are
    decoded with ``layout.encoding``). Raises ParseError, naming the line and column, for
    anything that cannot be read.
    """
    return _read(source, layout)


@dataclass
class _Row:
    line: int
    cells: list[str]


@dataclass
class _Booking:
    entry: BankEntry
    balance: Money | None


def _read(source: BankSource, layout: CsvLayout) -> Iterator[BankStatement]:
    with opened(source) as (name, stream):
        where = Where(name)
        reader = _RowReader(where, layout)
        rows = reader.rows(numbered_lines(stream, where, layout.encoding, keep_ends=True))
        yield reader.statement(rows)


class _RowReader:
    def __init__(self, where: Where, layout: CsvLayout) -> None:
        self.where = where
        self.layout = layout
        self.header: dict[str, int] = {}
        self.header_line = 0
        self.amount_pattern = re.compile(
            r"([0-9]+)(?:" + re.escape(layout.decimal_separator) + r"([0-9]*))?"
        )

    def rows(self, lines: Iterator[tuple[int, str]]) -> Iterator[_Row]:
        """Every CSV record with the line it starts on; csv errors become ParseErrors."""
        last = 0

        def texts() -> Iterator[str]:
            nonlocal last
            for line_no, text in lines:
                last = line_no
                yield text

        reader = csv.reader(
            texts(),
            delimiter=self.layout.delimiter,
            quotechar=self.layout.quotechar,
            strict=True,
        )
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self.where.error(f"not valid CSV: {exc}", max(last, start), "csv") from None
            yield _Row(start, cells)
            start = reader.line_num + 1

    def statement(self, rows: Iterator[_Row]) -> BankStatement:
        layout = self.layout
        for _ in range(layout.skip_rows):
            if next(rows, None) is None:
                raise self.where.error("the file ends before its header", 1, "header")
        first_line: int | None = None
        if layout.has_header:
            header = next(rows, None)
            if header is None:
                raise self.where.error("the file has no header row", 1, "header")
            self.header_line = first_line = header.line
            for position, name in enumerate(header.cells):
                self.header.setdefault(name.strip(), position)
            for name, column in layout._columns():
                self._position(column, name)
        bookings: list[_Booking] = []
        footer: deque[_Row] = deque()
        for row in rows:
            if not any(cell.strip() for cell in row.cells):
                continue
            footer.append(row)
            if len(footer) > layout.footer_rows:
                booked = footer.popleft()
                bookings.append(self._booking(booked))
                if first_line is None:
                    first_line = booked.line
        if first_line is None:
            raise self.where.error("the file has no header and no rows", 1, "header")
        return self._statement(first_line, bookings)

    def _statement(self, line: int, bookings: list[_Booking]) -> BankStatement:
        opening: Money | None = None
        closing: Money | None = None
        opening_date: date | None = None
        closing_date: date | None = None
        if bookings:
            oldest, newest = bookings[0], bookings[-1]
            if self.layout.newest_first:
                oldest, newest = newest, oldest
            if oldest.balance is not None:
                opening = oldest.balance - oldest.entry.amount
                opening_date = oldest.entry.booking_date
            if newest.balance is not None:
                closing = newest.balance
                closing_date = newest.entry.booking_date
        return build(
            BankStatement,
            self.where,
            line,
            format=BankFormat.CSV,
            line_no=line,
            account_id=self.layout.account_id,
            currency=self.layout.currency,
            opening_balance=opening,
            opening_date=opening_date,
            closing_balance=closing,
            closing_date=closing_date,
            entries=tuple(booking.entry for booking in bookings),
        )

    def _position(self, column: Column, name: str) -> int:
        if isinstance(column, int):
            return column
        try:
            return self.header[column]
        except KeyError:
            raise self.where.error(
                f"the header has no column {column!r} ({name})", self.header_line, name
            ) from None

    def _cell(self, row: _Row, column: Column | None, name: str) -> str | None:
        if column is None:
            return None
        position = self._position(column, name)
        if position >= len(row.cells):
            raise self.where.error(
                f"the row has {len(row.cells)} fields; {name} is field {position + 1}",
                row.line,
                name,
            )
        return row.cells[position].strip()

    def _booking(self, row: _Row) -> _Booking:
        layout = self.layout
        booking_date = self._date(row, layout.date_column, "date_column")
        if booking_date is None:
            raise self.where.error("the date is empty", row.line, "date_column")
        amount = self._amount(row)
        entry = build(
            BankEntry,
            self.where,
            row.line,
            line_no=row.line,
            booking_date=booking_date,
            value_date=self._date(row, layout.value_date_column, "value_date_column"),
            amount=amount,
            type_code=clean(self._cell(row, layout.type_column, "type_column")),
            customer_reference=reference(
                self._cell(row, layout.reference_column, "reference_column")
            ),
            bank_reference=reference(
                self._cell(row, layout.bank_reference_column, "bank_reference_column")
            ),
            details=clean(self._cell(row, layout.details_column, "details_column")),
            counterparty_name=clean(
                self._cell(row, layout.counterparty_name_column, "counterparty_name_column")
            ),
            counterparty_account=clean(
                self._cell(row, layout.counterparty_account_column, "counterparty_account_column")
            ),
        )
        balance_text = self._cell(row, layout.balance_column, "balance_column")
        balance = self._money(balance_text, row, "balance_column") if balance_text else None
        return _Booking(entry, balance)

    def _date(self, row: _Row, column: Column | None, name: str) -> date | None:
        text = self._cell(row, column, name)
        if not text:
            return None
        try:
            # Only the calendar date is kept, so the missing time zone does not matter.
            return datetime.strptime(text, self.layout.date_format).date()  # noqa: DTZ007
        except ValueError:
            raise self.where.error(
                f"{text[:40]!r} does not match the date format {self.layout.date_format!r}",
                row.line,
                name,
            ) from None

    def _amount(self, row: _Row) -> Money:
        layout = self.layout
        if layout.amount_column is not None:
            text = self._cell(row, layout.amount_column, "amount_column")
            if not text:
                raise self.where.error("the amount is empty", row.line, "amount_column")
            amount = self._money(text, row, "amount_column")
            if layout.direction_column is not None:
                return self._directed(row, amount)
            return amount if layout.debits_negative else -amount
        debit_text = self._cell(row, layout.debit_column, "debit_column")
        credit_text = self._cell(row, layout.credit_column, "credit_column")
        debit = self._money(debit_text, row, "debit_column") if debit_text else None
        credit = self._money(credit_text, row, "credit_column") if credit_text else None
        if debit and credit:
            raise self.where.error(
                "both the debit and the credit cell hold an amount", row.line, "debit_column"
            )
        if debit:
            if (debit.minor < 0) != layout.debits_negative:
                sign = "negative" if layout.debits_negative else "positive"
                raise self.where.error(
                    f"the layout says debits are written {sign}; this one is not",
                    row.line,
                    "debit_column",
                )
            return debit if layout.debits_negative else -debit
        if credit is not None:
            if credit.minor < 0:
                raise self.where.error(
                    "a negative amount in the credit column", row.line, "credit_column"
                )
            return credit
        if debit is not None:
            return debit
        raise self.where.error(
            "neither the debit nor the credit cell holds an amount", row.line, "credit_column"
        )

    def _directed(self, row: _Row, amount: Money) -> Money:
        layout = self.layout
        marker = (self._cell(row, layout.direction_column, "direction_column") or "").upper()
        if amount.minor < 0:
            raise self.where.error(
                "a signed amount where the direction column gives the sign",
                row.line,
                "amount_column",
            )
        if marker in {value.upper() for value in layout.debit_markers}:
            return -amount
        if marker in {value.upper() for value in layout.credit_markers}:
            return amount
        raise self.where.error(
            f"direction {marker[:20]!r} is neither a debit nor a credit marker",
            row.line,
            "direction_column",
        )

    def _money(self, text: str, row: _Row, name: str) -> Money:
        layout = self.layout
        body = text.strip()
        negative = False
        if body.startswith("(") and body.endswith(")"):
            negative, body = True, body[1:-1].strip()
        elif body.endswith("-"):
            negative, body = True, body[:-1].strip()
        elif body[:1] in {"-", "+"}:
            negative, body = body[0] == "-", body[1:].strip()
        if layout.thousands_separator is not None:
            body = body.replace(layout.thousands_separator, "")
        match = self.amount_pattern.fullmatch(body)
        if match is None:
            raise self.where.error(f"{text[:40]!r} is not an amount", row.line, name)
        return money_from_parts(
            negative,
            match.group(1),
            match.group(2) or "",
            layout.currency,
            self.where,
            row.line,
            name,
        )
