"""Reading what channels send: headers, form bodies, statement files, amounts and times.

Invariant: these helpers only read; they never decide whether a message is trusted. Every
failure is a :class:`~paygate.errors.ParseError` naming the source and, for files, the
1-based line and the field — never a bare ``ValueError`` or ``UnicodeDecodeError``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar
from urllib.parse import unquote_to_bytes
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from paygate.channels.errors import MissingAccountError
from paygate.errors import InvalidAmountError, InvalidInputError, ParseError
from paygate.models import (
    PAID_AT_CEILING,
    PAID_AT_FLOOR,
    PaymentIntent,
    StatementLine,
    StatementLineKind,
)
from paygate.money import Money, minor_units_exponent

__all__ = [
    "FORM_CHARSETS",
    "Headers",
    "first_validation_error",
    "iter_source_lines",
    "make_intent",
    "make_statement_line",
    "parse_form",
    "parse_json_object",
    "parse_local_time",
    "parse_money",
    "read_json_model",
    "shown",
    "source_label",
    "split_csv_line",
    "within_years",
]

FORM_CHARSETS: Final[Mapping[str, str]] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "gb2312": "gb2312",
    "gb18030": "gb18030",
}
"""Character sets a form body may declare, by lower-cased name, to Python codec names."""

MAX_FORM_FIELDS: Final = 256

# A percent sign not followed by two hex digits: urllib would pass it through silently, and a
# signature computed over a different reading of the value must not be possible.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def shown(value: str, limit: int = 40) -> str:
    """``value`` as it may appear in an error or a log: quoted, escaped, cut to ``limit``.

    Channel messages are attacker-controlled until verified; a newline in a field must not
    forge a log line, and a megabyte of junk must not fill one.
    """
    return repr(value if len(value) <= limit else value[:limit] + "…")


class Headers:
    """Request headers looked up case-insensitively.

    Two spellings of one header with different values are refused: which one a signature
    check read must not be ambiguous.
    """

    def __init__(self, headers: Mapping[str, str], *, source: str) -> None:
        self._values: dict[str, str] = {}
        self._source = source
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ParseError("header names and values must be text", source=source)
            lowered = key.lower()
            if lowered in self._values and self._values[lowered] != value:
                raise ParseError(
                    "header given twice with different values", source=source, field=shown(key)
                )
            self._values[lowered] = value

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self._values.get(name.lower())


def parse_form(
    body: bytes, *, source: str, charset_field: str, default_charset: str = "utf-8"
) -> tuple[dict[str, str], str]:
    """Read an ``application/x-www-form-urlencoded`` body into text fields, and its charset.

    The charset comes from the body's own ``charset_field`` (default ``default_charset``),
    as the wallets and gateways declare it. Empty bodies, fields without ``=``, empty or
    repeated names, malformed ``%`` escapes and undecodable text are refused.
    """
    if not body:
        raise ParseError("empty body", source=source, field="body")
    if _BAD_ESCAPE.search(body):
        raise ParseError("malformed %-escape", source=source, field="body")
    parts = body.split(b"&")
    if len(parts) > MAX_FORM_FIELDS:
        raise ParseError(f"more than {MAX_FORM_FIELDS} fields", source=source, field="body")
    raw: dict[bytes, bytes] = {}
    for part in parts:
        name, equals, value = part.partition(b"=")
        if not equals:
            raise ParseError("a field without '='", source=source, field="body")
        key = unquote_to_bytes(name.replace(b"+", b" "))
        if not key:
            raise ParseError("a field without a name", source=source, field="body")
        if key in raw:
            raise ParseError("a field given twice", source=source, field=_ascii(key))
        raw[key] = unquote_to_bytes(value.replace(b"+", b" "))
    declared = raw.get(charset_field.encode("ascii"), b"").decode("ascii", "replace").strip()
    charset = FORM_CHARSETS.get(declared.lower() if declared else default_charset.lower())
    if charset is None:
        raise ParseError(
            f"unsupported charset {shown(declared)}", source=source, field=charset_field
        )
    fields: dict[str, str] = {}
    for key, value in raw.items():
        try:
            fields[key.decode(charset)] = value.decode(charset)
        except UnicodeDecodeError:
            raise ParseError(
                f"field is not valid {charset}", source=source, field=_ascii(key)
            ) from None
    return fields, charset


MAX_JSON_DEPTH: Final = 16
"""How deeply a JSON body may nest objects and arrays; no channel message needs more than 4."""

MAX_JSON_NUMBER_DIGITS: Final = 40
"""The longest JSON number read: beyond any amount or count, and far below the length at
which Python refuses to convert text to int with a bare ``ValueError``."""

# A JSON string (escapes included) or one bracket: scanning these alone measures nesting
# without the recursion of a parser, so a body of ten thousand "[" costs one regex pass.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_depth(body: bytes) -> int:
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_duplicate_keys(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Two readers of the same body (a proxy, a signature check, us) could each take a
        # different one of two equal keys: the ambiguity itself is refused.
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ParseError("a field given twice", source=source, field=shown(key))
            result[key] = value
        return result

    return hook


def parse_json_object(
    body: bytes | str, *, source: str, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """Read a JSON body that must be one object, strictly.

    Refused with a :class:`~paygate.errors.ParseError` naming ``source``: text that is not
    UTF-8 or not JSON (the position is named, the body is not quoted), a key given twice at
    any level, nesting deeper than ``max_depth``, the constants ``NaN`` and ``Infinity``, and
    anything but an object at the top.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if _json_depth(raw) > max_depth:
        raise ParseError(f"nested deeper than {max_depth} levels", source=source, field="body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the body is not UTF-8", source=source, field="body") from None

    def no_constant(name: str) -> Any:
        raise ParseError(f"{name} is not a JSON number", source=source, field="body")

    def bounded(digits: str) -> str:
        if len(digits) > MAX_JSON_NUMBER_DIGITS:
            raise ParseError(
                f"a number of more than {MAX_JSON_NUMBER_DIGITS} digits",
                source=source,
                field="body",
            )
        return digits

    try:
        message = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys(source),
            parse_constant=no_constant,
            parse_int=lambda digits: int(bounded(digits)),
            # A Decimal, not a float: floats never carry money, and a model that wants an
            # integer still refuses a fraction.
            parse_float=lambda digits: Decimal(bounded(digits)),
        )
    except json.JSONDecodeError as exc:
        # The position only: the decoder's message could quote the body.
        raise ParseError(
            f"the body is not JSON (at character {exc.pos})", source=source, field="body"
        ) from None
    if not isinstance(message, dict):
        raise ParseError("the body is not a JSON object", source=source, field="body")
    return message


ModelT = TypeVar("ModelT", bound=BaseModel)


def read_json_model(
    model: type[ModelT],
    body: bytes | str,
    *,
    source: str,
    names: Mapping[str, str] | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> ModelT:
    """Read a JSON body into ``model``: first as strictly as :func:`parse_json_object`, then
    validated in JSON mode (so that a strict model reads dates and enums from their text).

    Every refusal is a :class:`~paygate.errors.ParseError` naming ``source`` and the field;
    the body is read as one unambiguous object before the model sees it, so the two readings
    cannot differ.
    """
    parse_json_object(body, source=source, max_depth=max_depth)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source, names=names) from None


def _ascii(raw: bytes) -> str:
    return shown(raw.decode("ascii", "backslashreplace"))


def source_label(source: str | Path | BinaryIO) -> str:
    """How a statement source is named in errors: its path, or the stream's name."""
    if isinstance(source, str | Path):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


# Longer than any real line of a channel statement; a file without line breaks is refused at
# this length instead of being read whole.
_MAX_LINE_BYTES: Final = 64 * 1024


def iter_source_lines(
    source: str | Path | BinaryIO,
) -> Generator[tuple[int, bytes], None, None]:
    """Yield ``(line number, raw bytes without the line break)`` from a path or stream.

    Streams line by line; a path is opened here and closed when the iteration ends (or is
    abandoned); a stream passed in is left open for its owner. A line longer than 64 KiB is a
    :class:`~paygate.errors.ParseError` naming it, raised before more of it is read, so memory
    stays bounded whatever the file.
    """
    label = source_label(source)
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            yield from _lines(stream, label)
    else:
        yield from _lines(source, label)


def _lines(stream: BinaryIO, label: str) -> Iterator[tuple[int, bytes]]:
    number = 0
    while True:
        raw = stream.readline(_MAX_LINE_BYTES + 1)
        if not raw:
            return
        if not isinstance(raw, bytes):
            raise TypeError("a statement stream must be opened in binary mode")
        number += 1
        if len(raw) > _MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise ParseError(f"line longer than {_MAX_LINE_BYTES} bytes", source=label, line=number)
        yield number, raw.rstrip(b"\r\n")


def split_csv_line(text: str, *, source: str, line: int) -> list[str]:
    """Split one CSV line into fields (RFC 4180 quoting); a broken quote is a ParseError."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ParseError(f"malformed CSV: {exc}", source=source, line=line) from None
    if len(rows) != 1:
        raise ParseError("malformed CSV line", source=source, line=line)
    return rows[0]


def parse_money(
    text: str,
    currency: str,
    *,
    source: str,
    line: int | None = None,
    field: str,
    written_decimals: int | None = None,
) -> Money:
    """Read a major-unit amount such as ``"120.50"`` with :meth:`Money.parse`'s strict rule.

    Text that is not a plain decimal, has more decimals than ``currency`` or is beyond what
    the ledger holds is a :class:`~paygate.errors.ParseError` naming ``source``, ``line``
    and the channel's ``field``. ``written_decimals`` is for a column the channel always
    writes with more decimals than the currency has (WeChat Pay's fee, ``0.72000``): text
    with exactly that many is read when the surplus digits are zeros.
    """
    try:
        if written_decimals is not None:
            text = _trim_written_decimals(text, currency, written_decimals)
        return Money.parse(text, currency)
    except InvalidAmountError as exc:
        raise ParseError(exc.message, source=source, line=line, field=field) from None


def _trim_written_decimals(text: str, currency: str, written: int) -> str:
    exponent = minor_units_exponent(currency)
    surplus = written - exponent
    whole, point, fraction = text.partition(".")
    if surplus <= 0 or not point or len(fraction) != written:
        return text
    if fraction[-surplus:] != "0" * surplus:
        raise InvalidAmountError(
            f"{shown(text)} has more than {exponent} decimal places for {currency}", field="amount"
        )
    return f"{whole}.{fraction[:-surplus]}"


def parse_local_time(
    text: str, fmt: str, zone: ZoneInfo, *, source: str, line: int | None = None, field: str
) -> datetime:
    """Read a wall-clock time in ``zone`` (channels send Beijing time without an offset).

    A time outside [:data:`~paygate.models.PAID_AT_FLOOR`,
    :data:`~paygate.models.PAID_AT_CEILING`) is refused too: no channel event is dated there,
    and converting year 1 or 9999 to UTC would overflow further on.
    """
    # Some exports pad the gap between date and time; one space is what the format means.
    normalized = " ".join(text.split())
    try:
        naive = datetime.strptime(normalized, fmt)  # noqa: DTZ007 - the zone is attached below
    except ValueError:
        raise ParseError(
            f"not a time in the form {fmt!r}: {shown(text)}", source=source, line=line, field=field
        ) from None
    return within_years(naive.replace(tzinfo=zone), source=source, line=line, field=field)


def within_years(
    instant: datetime, *, source: str, line: int | None = None, field: str
) -> datetime:
    """``instant`` (aware) when it lies in [PAID_AT_FLOOR, PAID_AT_CEILING), else ParseError."""
    try:
        utc = instant.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not PAID_AT_FLOOR <= utc < PAID_AT_CEILING:
        raise ParseError(
            f"{shown(instant.isoformat())} is outside {PAID_AT_FLOOR.year}-"
            f"{PAID_AT_CEILING.year - 1}",
            source=source,
            line=line,
            field=field,
        )
    return instant


def make_statement_line(
    *,
    line_no: int,
    kind: StatementLineKind,
    gross: Money,
    fee: Money,
    occurred_at: datetime,
    channel_txn_id: str | None,
    account_no: str | None = None,
    original_txn_id: str | None = None,
    reference: str | None = None,
    source: str,
) -> StatementLine:
    """A :class:`StatementLine` with ``net = gross - fee``; a non-positive gross is refused."""
    if gross.minor <= 0:
        raise ParseError("the line's amount must be positive", source=source, line=line_no)
    return StatementLine(
        line_no=line_no,
        channel_txn_id=channel_txn_id or None,
        account_no=account_no or None,
        gross=gross,
        fee=fee,
        net=gross - fee,
        occurred_at=occurred_at,
        kind=kind,
        original_txn_id=original_txn_id or None,
        reference=reference or None,
    )


def first_validation_error(
    exc: ValidationError, *, source: str, names: Mapping[str, str] | None = None
) -> ParseError:
    """Turn a pydantic error on a wire model into a ParseError naming the native field.

    ``names`` maps model field names to the channel's own names. The rejected value is not
    echoed: a message may carry personal data.
    """
    first = exc.errors(include_input=False, include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    if location and names and location[0] in names:
        location[0] = names[location[0]]
    return ParseError(first["msg"], source=source, field=".".join(location) or None)


def make_intent(
    *,
    channel: str,
    channel_txn_id: str,
    account_no: str,
    amount: Money,
    paid_at: datetime,
    names: Mapping[str, str],
) -> PaymentIntent:
    """A :class:`PaymentIntent`, or a ParseError naming the channel's field that broke it.

    ``names`` maps ``channel_txn_id`` and ``account_no`` to the native field names, so that
    an over-long transaction id is reported as, say, ``trade_no``.
    """
    if amount.minor <= 0:
        raise InvalidAmountError("a payment's amount must be positive", field=names.get("amount"))
    try:
        return PaymentIntent(
            channel=channel,
            channel_txn_id=channel_txn_id,
            account_no=account_no,
            amount=amount,
            paid_at=paid_at,
        )
    except ValidationError as exc:
        if exc.errors(include_input=False)[0]["loc"][:1] == ("account_no",):
            # A verified payment naming no account that can exist: held like a missing one.
            raise MissingAccountError(
                "the account number is not a usable account number",
                field=names.get("account_no", "account_no"),
            ) from None
        raise first_validation_error(exc, source=channel, names=names) from None
    except InvalidInputError as exc:
        # The model's own refusals (a naive or absurd paid_at) name its field; the channel
        # knows the field by its own name.
        if exc.field is not None and exc.field in names:
            exc.field = names[exc.field]
        raise


def csv_statement_rows(
    source: str | Path | BinaryIO, columns: tuple[str, ...], *, what: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of a UTF-8 CSV statement (BOM tolerated) whose header is exactly ``columns``.

    Yields ``(line number, row by column name)`` line by line; blank lines are skipped. A file
    that is not UTF-8, whose header is not ``columns``, with a row of another width, or with no
    header at all is a :class:`~paygate.errors.ParseError` naming the line; ``what`` names
    the statement in the message ("a POS statement").
    """
    label = source_label(source)
    header_seen = False
    last_line = 0
    for line_no, raw in iter_source_lines(source):
        last_line = line_no
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("not valid UTF-8", source=label, line=line_no) from None
        if not text.strip():
            continue
        fields = [f.strip() for f in split_csv_line(text, source=label, line=line_no)]
        if not header_seen:
            if tuple(fields) != columns:
                raise ParseError(f"not {what} header", source=label, line=line_no)
            header_seen = True
            continue
        if len(fields) != len(columns):
            raise ParseError(
                f"expected {len(columns)} fields, found {len(fields)}", source=label, line=line_no
            )
        yield line_no, dict(zip(columns, fields, strict=True))
    if not header_seen:
        raise ParseError("empty file: no statement header", source=label, line=last_line or 1)
