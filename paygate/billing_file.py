"""The billing run's CSV files: accounts and bills, one per line, read as they stream.

Invariant: every line becomes a :class:`~paygate.models.NewAccount` or
:class:`~paygate.models.NewBill`, or a :class:`~paygate.errors.ParseError` naming the line and
the field; nothing else. Errors are values (a reader yields them in place of the record), so
that a whole file can be checked before anything is written.

The columns (a header line is required; its names in any order; UTF-8, a BOM allowed):

* accounts: ``account_no`` (required), ``category`` (``residential`` by default or
  ``non_residential``), ``prepaid`` and ``protected`` (``true``/``false``, ``yes``/``no``,
  ``1``/``0``; empty is false), ``name``, ``currency`` (empty: the settings' currency);
* bills: ``account_no``, ``bill_no``, ``amount`` (decimal, in major units: ``120.50``),
  ``period``, ``due_date`` (``YYYY-MM-DD``) all required, and ``currency`` (empty or absent:
  the settings' currency).

A field may not hold a line break: each record is one line, so the line number of a problem
is the line of the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Final

from paygate.errors import ParseError, PaygateError
from paygate.models import NewAccount, NewBill
from paygate.money import Money

__all__ = ["ACCOUNT_FILE_COLUMNS", "BILL_FILE_COLUMNS", "read_accounts", "read_bills"]

ACCOUNT_FILE_COLUMNS: Final = ("account_no", "category", "prepaid", "protected", "name", "currency")
BILL_FILE_COLUMNS: Final = ("account_no", "bill_no", "amount", "currency", "period", "due_date")
_ACCOUNT_REQUIRED: Final = frozenset({"account_no"})
_BILL_REQUIRED: Final = frozenset({"account_no", "bill_no", "amount", "period", "due_date"})
_TRUE: Final = frozenset({"true", "yes", "1"})
_FALSE: Final = frozenset({"false", "no", "0", ""})


def _rows(
    lines: Iterable[str], source: str, known: tuple[str, ...], required: frozenset[str]
) -> Iterator[tuple[int, dict[str, str]] | ParseError]:
    """The file's records as (line number, column -> text), after a checked header."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        yield ParseError("the file is empty: a header line is required", source=source, line=1)
        return
    except csv.Error as exc:
        yield ParseError(str(exc), source=source, line=1)
        return
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in known]
    missing = sorted(required - set(names))
    if unknown or missing or len(set(names)) != len(names):
        problem = (
            f"unknown column {unknown[0]!r}"
            if unknown
            else f"missing column {missing[0]!r}"
            if missing
            else "a column is named twice"
        )
        yield ParseError(
            f"{problem}; the columns are {', '.join(known)}", source=source, line=1, field="header"
        )
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParseError(str(exc), source=source, line=reader.line_num)
            return
        line = reader.line_num
        if not row:
            continue  # a blank line
        if len(row) != len(names):
            yield ParseError(
                f"{len(row)} fields where the header has {len(names)}", source=source, line=line
            )
            continue
        record = dict(zip(names, row, strict=True))
        broken = next((n for n, v in record.items() if "\n" in v or "\r" in v), None)
        if broken is not None:
            yield ParseError("a line break inside a field", source=source, line=line, field=broken)
            continue
        yield line, record


def _flag(text: str, field: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParseError(f"{text!r} is not true or false", field=field)


def _located(exc: PaygateError, source: str, line: int) -> ParseError:
    return ParseError(exc.message, source=source, line=line, field=exc.field)


def read_accounts(
    lines: Iterable[str], *, source: str = "<accounts>"
) -> Iterator[tuple[int, NewAccount] | ParseError]:
    """The accounts of a CSV file (its lines as text), each with its line number, or the
    error of a line that is not one."""
    for item in _rows(lines, source, ACCOUNT_FILE_COLUMNS, _ACCOUNT_REQUIRED):
        if isinstance(item, ParseError):
            yield item
            continue
        line, r = item
        try:
            account = NewAccount(
                account_no=r["account_no"].strip(),
                category=r.get("category", "").strip() or "residential",
                prepaid=_flag(r.get("prepaid", ""), "prepaid"),
                protected=_flag(r.get("protected", ""), "protected"),
                name=r.get("name") or None,
                currency=r.get("currency", "").strip() or None,
            )
        except PaygateError as exc:
            yield _located(exc, source, line)
            continue
        yield line, account


def read_bills(
    lines: Iterable[str], *, currency: str, source: str = "<bills>"
) -> Iterator[tuple[int, NewBill] | ParseError]:
    """The bills of a CSV file (its lines as text), each with its line number, or the error
    of a line that is not one. ``currency`` is used where the file gives none."""
    for item in _rows(lines, source, BILL_FILE_COLUMNS, _BILL_REQUIRED):
        if isinstance(item, ParseError):
            yield item
            continue
        line, r = item
        try:
            bill = _bill(r, currency)
        except PaygateError as exc:
            yield _located(exc, source, line)
            continue
        yield line, bill


def _bill(r: dict[str, str], default_currency: str) -> NewBill:
    cur = r.get("currency", "").strip() or default_currency
    try:
        amount = Money.parse(r["amount"].strip(), cur)
    except PaygateError as exc:
        raise ParseError(exc.message, field=exc.field or "amount") from None
    text = r["due_date"].strip()
    try:
        due = date.fromisoformat(text)
    except ValueError:
        raise ParseError(f"{text!r} is not a date YYYY-MM-DD", field="due_date") from None
    return NewBill(
        account_no=r["account_no"].strip(),
        bill_no=r["bill_no"].strip(),
        amount=amount,
        period=r["period"].strip(),
        due_date=due,
    )
