"""Reading a statement source line by line, and the field parsers every format shares.

Invariant: a reader holds at most one physical line of its input (capped in length) at a time,
and every way the input can fail to be read — bytes that do not decode, a line too long, an
amount or date that is not one — is a :class:`~paygate.errors.ParseError` naming the source,
the 1-based line and the field. Amounts go from text to integer minor units without ever
passing through a float.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Final, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

from paygate.errors import ConfigurationError, InvalidAmountError, ParseError
from paygate.money import Money, minor_units_exponent

# Longer than any real line of a line-based statement format; a file without line breaks is
# refused at this length instead of being read whole.
MAX_LINE: Final = 64 * 1024

# Integer digits beyond this are no real amount; the cap also keeps int() within Python's
# limit on digit strings.
_MAX_DIGITS: Final = 24

_BOM: Final = "\ufeff"

_Model = TypeVar("_Model", bound=BaseModel)


class LineReadable(Protocol):
    """Anything with ``readline(size)``: binary and text files, and a rewound prefix."""

    def readline(self, size: int = -1, /) -> bytes | str:
        """Return the next line, at most ``size`` characters."""
        ...


BankSource: TypeAlias = str | os.PathLike[str] | LineReadable
"""A path to a statement file, or an open file object: binary, or text already decoded."""


@dataclass(frozen=True)
class Where:
    """The source being read, so that every refusal can name it."""

    source: str | None

    def error(self, message: str, line: int, field: str | None = None) -> ParseError:
        """A ParseError at ``line`` of this source."""
        return ParseError(message, source=self.source, line=line, field=field)


@contextmanager
def opened(source: BankSource) -> Iterator[tuple[str | None, LineReadable]]:
    """Open a path (closing it afterwards) or pass an open file object through, with its name."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as stream:
            yield path, stream
        return
    if not callable(getattr(source, "readline", None)):
        raise TypeError(
            f"a statement source is a path or a file object, not {type(source).__name__}"
        )
    name = getattr(source, "name", None)
    yield (name if isinstance(name, str) else None), source


def check_encoding(encoding: str) -> str:
    """Return the codec's canonical name; refuse codecs that cannot be split at line breaks."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ConfigurationError(f"unknown encoding {encoding!r}", field="encoding") from None
    probe = b"\n\r,;:/|\t 09AZaz"
    try:
        ascii_compatible = probe.decode(info.name) == probe.decode("ascii")
    except (ValueError, LookupError):
        # Codecs that are not text encodings (rot13, hex, …) refuse to decode bytes at all.
        ascii_compatible = False
    if not ascii_compatible:
        raise ConfigurationError(
            f"encoding {encoding!r} is not ASCII-compatible; line-based statements need one "
            "such as utf-8, gbk, gb18030 or latin-1",
            field="encoding",
        )
    return info.name


def numbered_lines(
    stream: LineReadable, where: Where, encoding: str, *, keep_ends: bool = False
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each physical line, decoded strictly.

    Line ends are removed unless ``keep_ends`` (the csv module wants them to see quoted line
    breaks). A byte-order mark at the start of the file is dropped.
    """
    line_no = 0
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        line_no += 1
        if isinstance(raw, bytes):
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                raise where.error(f"line longer than {MAX_LINE} bytes", line_no)
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise where.error(
                    f"byte {raw[exc.start]:#04x} at column {exc.start + 1} is not valid {encoding}",
                    line_no,
                    "encoding",
                ) from None
            except UnicodeError as exc:
                raise where.error(f"not valid {encoding}: {exc}", line_no, "encoding") from None
        else:
            if len(raw) > MAX_LINE and not raw.endswith("\n"):
                raise where.error(f"line longer than {MAX_LINE} characters", line_no)
            text = raw
        if line_no == 1 and text.startswith(_BOM):
            text = text[1:]
        yield line_no, (text if keep_ends else text.rstrip("\r\n"))


def currency_exponent(code: str, where: Where, line: int, field: str = "currency") -> int:
    """The minor-unit exponent of ``code``; an unknown or malformed code is a ParseError."""
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise where.error(f"{code!r} is not an ISO 4217 currency code", line, field)
    try:
        return minor_units_exponent(code)
    except InvalidAmountError:
        raise where.error(f"unknown currency {code!r}", line, field) from None


def money_from_parts(
    negative: bool,
    whole: str,
    fraction: str,
    currency: str,
    where: Where,
    line: int,
    field: str,
) -> Money:
    """Build Money from the digit strings either side of a decimal mark, exactly.

    Trailing zeros beyond the currency's decimals are accepted (``12,50`` and ``12,500`` are the
    same euro amount); a non-zero digit beyond them is refused.
    """
    exponent = currency_exponent(currency, where, line)
    whole = whole.lstrip("0")
    fraction = fraction.rstrip("0")
    if len(whole) > _MAX_DIGITS:
        raise where.error(f"amount with {len(whole)} integer digits is too large", line, field)
    if len(fraction) > exponent:
        raise where.error(
            f"amount has more than {exponent} decimal places for {currency}", line, field
        )
    minor = int(whole or "0") * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    return _bounded(-minor if negative else minor, currency, where, line, field)


def money_from_minor_text(
    text: str, currency: str, where: Where, line: int, field: str
) -> Money | None:
    """Read an implied-decimal amount (``+000000208500``) as minor units; empty text is ``None``."""
    match = re.fullmatch(r"([+-]?)([0-9]+)", text)
    if match is None:
        if text == "":
            return None
        raise where.error(f"{text!r} is not an amount in minor units", line, field)
    sign, digits = match.groups()
    currency_exponent(currency, where, line)
    digits = digits.lstrip("0")
    if len(digits) > _MAX_DIGITS:
        raise where.error(f"amount with {len(digits)} digits is too large", line, field)
    minor = int(digits or "0")
    return _bounded(-minor if sign == "-" else minor, currency, where, line, field)


def _bounded(minor: int, currency: str, where: Where, line: int, field: str) -> Money:
    # Money refuses what a ledger column cannot hold; a statement line that states such an
    # amount is refused naming its line like any other unreadable figure.
    try:
        return Money(minor, currency)
    except InvalidAmountError as exc:
        raise where.error(exc.message, line, field) from None


def yymmdd(text: str, where: Where, line: int, field: str) -> date:
    """A six-digit ``YYMMDD`` date; years 80-99 are 1980-1999, 00-79 are 2000-2079."""
    if not re.fullmatch(r"[0-9]{6}", text):
        raise where.error(f"{text!r} is not a YYMMDD date", line, field)
    year = int(text[:2])
    year += 1900 if year >= 80 else 2000
    try:
        return date(year, int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise where.error(f"{text!r} is not a calendar date", line, field) from None


def clean(text: str | None) -> str | None:
    """Strip a text field; an empty one is ``None``."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def reference(text: str | None) -> str | None:
    """A reference field, with the formats' "no reference" placeholders read as ``None``."""
    text = clean(text)
    if text is None or text.upper() in {"NONREF", "NOTPROVIDED"}:
        return None
    return text


def build(model: type[_Model], where: Where, line: int, **fields: object) -> _Model:
    """Construct a record, turning a validation failure into a ParseError at ``line``."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or None
        raise where.error(first["msg"], line, location) from None
