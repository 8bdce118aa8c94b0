"""The bank agent's daily batch files: layouts, the reader that checks them, posting.

Invariant: a batch file posts nothing until every one of its lines has been read and its record
counts and totals agree with what its header and trailer state; each payment's channel
transaction id is the bank's own serial, so a re-sent file posts nothing twice.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Final, Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paygate.channels.bank_agent.realtime import bank_txn_id
from paygate.channels.base import StatementSource
from paygate.channels.wire import make_intent, parse_local_time, parse_money, shown
from paygate.errors import ParseError, PaygateError
from paygate.models import PaymentIntent
from paygate.money import Money

# ── batch files ──────────────────────────────────────────────────────────────────────────

HEADER_FIELDS: Final = (
    frozenset({"batch_no", "batch_date", "count", "total"}),
    frozenset({"success_count", "success_total"}),
)
"""Required and optional fields of the header record."""
DETAIL_FIELDS: Final = (
    frozenset({"account_no", "amount", "serial_no", "result_code"}),
    frozenset({"result_msg", "txn_time"}),
)
"""Required and optional fields of a detail record."""
TRAILER_FIELDS: Final = (
    frozenset[str](),
    frozenset({"batch_no", "count", "total", "success_count", "success_total"}),
)
"""Required and optional fields of the trailer record."""

_RECORDS: Final = {"header": HEADER_FIELDS, "detail": DETAIL_FIELDS, "trailer": TRAILER_FIELDS}
_ASCII_PROBE: Final = "|,;\t 0123456789.:-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"


def _check_fields(record: str, names: Iterable[str]) -> None:
    required, optional = _RECORDS[record]
    given = set(names)
    missing = required - given
    unknown = given - required - optional
    if missing:
        raise ValueError(f"the {record} record lacks {sorted(missing)}")
    if unknown:
        raise ValueError(f"the {record} record has unknown fields {sorted(unknown)}")


def _decode(raw: bytes, encoding: str, *, source: str, line: int, field: str | None) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise ParseError(
            f"not valid {encoding}: wrong encoding or damaged bytes",
            source=source,
            line=line,
            field=field,
        ) from None


class _Layout(BaseModel):
    """What every batch file layout states besides where the fields are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoding: str = Field(default="gbk", description="the file's text encoding")
    amount_unit: Literal["fen", "yuan"] = Field(
        default="fen", description="fen: integer minor units; yuan: decimal major units"
    )
    date_format: str = Field(default="%Y%m%d", description="strptime format of batch_date")
    time_format: str = Field(
        default="%Y%m%d%H%M%S",
        description="strptime format of txn_time; without a date part the batch date is used",
    )
    header_tag: str = "H"
    detail_tag: str = "D"
    trailer_tag: str = "T"
    success_codes: frozenset[str] = Field(
        default=frozenset({"0000"}), min_length=1, description="result codes that mean paid"
    )
    max_line_bytes: int = Field(default=4096, ge=64, le=1 << 20)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        # Lines are split on b"\n" and delimiters, digits and tags read as ASCII.
        if _ASCII_PROBE.encode(value, "strict") != _ASCII_PROBE.encode("ascii"):
            raise ValueError(f"encoding {value!r} is not ASCII-compatible")
        return value

    @model_validator(mode="after")
    def _tags(self) -> _Layout:
        tags = (self.header_tag, self.detail_tag, self.trailer_tag)
        if any(not tag or tag != tag.strip() for tag in tags) or len(set(tags)) != 3:
            raise ValueError("the record tags must be three distinct, non-blank values")
        return self

    def record_kind(self, tag: str, *, source: str, line: int) -> str:
        """Which record a line is, by its tag."""
        kinds = {self.header_tag: "header", self.detail_tag: "detail", self.trailer_tag: "trailer"}
        kind = kinds.get(tag)
        if kind is None:
            raise ParseError(
                f"unknown record type {shown(tag)}", source=source, line=line, field="record_type"
            )
        return kind


class DelimitedLayout(_Layout):
    """Fields separated by ``delimiter``; columns are 1-based, per record kind.

    The record type is in column ``record_type_column`` of every line. Extra columns after
    the last one a record uses are allowed (banks append columns); fewer are refused.
    """

    kind: Literal["delimited"] = "delimited"
    delimiter: str = Field(default="|", min_length=1, max_length=1)
    record_type_column: int = Field(default=1, ge=1)
    header: dict[str, int]
    detail: dict[str, int]
    trailer: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _columns(self) -> DelimitedLayout:
        if self.delimiter in "\r\n" or self.delimiter.isalnum():
            raise ValueError("the delimiter must not be a letter, a digit or a line break")
        for record in ("header", "detail", "trailer"):
            columns: dict[str, int] = getattr(self, record)
            _check_fields(record, columns)
            used = [*columns.values(), self.record_type_column]
            if any(column < 1 for column in used) or len(set(used)) != len(used):
                raise ValueError(f"the {record} columns must be distinct and at least 1")
        return self

    def split(self, raw: bytes, *, source: str, line: int) -> tuple[str, dict[str, str]]:
        """The record kind of one line and its fields as text, stripped."""
        parts = _decode(raw, self.encoding, source=source, line=line, field=None).split(
            self.delimiter
        )
        if len(parts) < self.record_type_column:
            raise ParseError("no record type", source=source, line=line, field="record_type")
        kind = self.record_kind(
            parts[self.record_type_column - 1].strip(), source=source, line=line
        )
        columns: dict[str, int] = getattr(self, kind)
        needed = max([self.record_type_column, *columns.values()])
        if len(parts) < needed:
            raise ParseError(
                f"{len(parts)} fields, a {kind} record has at least {needed}: truncated?",
                source=source,
                line=line,
            )
        return kind, {name: parts[column - 1].strip() for name, column in columns.items()}


class FixedWidthLayout(_Layout):
    """Fields at fixed byte positions: ``(start, length)``, 1-based, per record kind.

    Positions count bytes of the encoded line, as the banks' specifications do (a Chinese
    character is two bytes in GBK). Anything after a record's last field must be spaces.
    """

    kind: Literal["fixed"] = "fixed"
    record_type: tuple[int, int] = (1, 1)
    header: dict[str, tuple[int, int]]
    detail: dict[str, tuple[int, int]]
    trailer: dict[str, tuple[int, int]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positions(self) -> FixedWidthLayout:
        for record in ("header", "detail", "trailer"):
            positions: dict[str, tuple[int, int]] = getattr(self, record)
            _check_fields(record, positions)
            spans = sorted([self.record_type, *positions.values()])
            if any(start < 1 or length < 1 for start, length in spans):
                raise ValueError(f"the {record} positions must start at 1 or later, length 1+")
            for (start, length), (next_start, _) in pairwise(spans):
                if start + length > next_start:
                    raise ValueError(f"two {record} fields overlap at byte {next_start}")
        return self

    def split(self, raw: bytes, *, source: str, line: int) -> tuple[str, dict[str, str]]:
        """The record kind of one line and its fields as text, stripped."""
        start, length = self.record_type
        tag = _decode(
            raw[start - 1 : start - 1 + length],
            self.encoding,
            source=source,
            line=line,
            field="record_type",
        )
        kind = self.record_kind(tag.strip(), source=source, line=line)
        positions: dict[str, tuple[int, int]] = getattr(self, kind)
        end = max(first + size - 1 for first, size in [self.record_type, *positions.values()])
        if len(raw) < end:
            raise ParseError(
                f"{len(raw)} bytes, a {kind} record needs {end}: truncated?",
                source=source,
                line=line,
            )
        if raw[end:].strip(b" "):
            raise ParseError(
                f"data after byte {end}, where a {kind} record ends", source=source, line=line
            )
        fields = {
            name: _decode(
                raw[first - 1 : first - 1 + size],
                self.encoding,
                source=source,
                line=line,
                field=name,
            ).strip()
            for name, (first, size) in positions.items()
        }
        return kind, fields


BatchFileLayout = Annotated[DelimitedLayout | FixedWidthLayout, Field(discriminator="kind")]
"""A bank's batch file layout: ``kind`` ``delimited`` or ``fixed``."""


@dataclass(frozen=True, slots=True)
class BatchDetail:
    """One verified detail record; ``intent`` is set when its result code means paid."""

    line_no: int
    serial_no: str
    account_no: str
    amount: Money
    result_code: str
    result_msg: str | None
    paid_at: datetime
    intent: PaymentIntent | None


class FailedDebit(BaseModel):
    """A detail whose result code is not a success: the bank did not collect it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_no: int
    serial_no: str
    account_no: str
    amount: Money
    result_code: str
    result_msg: str | None = None


class RefusedPayment(BaseModel):
    """A collected payment the core refused (unknown account, idempotency conflict …)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_no: int
    serial_no: str
    account_no: str
    amount: Money
    error_code: str
    error: str


class BatchFileSummary(BaseModel):
    """What verification established about a batch file: all of it agreed with itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    sha256: str = Field(description="hex SHA-256 of the file's bytes, exactly as read")
    size: int = Field(description="bytes")
    lines: int
    batch_no: str
    batch_date: date
    count: int = Field(description="detail records")
    total: Money = Field(description="sum of every detail's amount")
    success_count: int
    success_total: Money

    @property
    def failed_count(self) -> int:
        """Details whose result code is not a success."""
        return self.count - self.success_count


class BatchResult(BaseModel):
    """What posting a batch file did, item by item, with the file's hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: BatchFileSummary
    posted: int = Field(description="payments posted now")
    replayed: int = Field(description="payments the core already held (a re-sent file)")
    refused: tuple[RefusedPayment, ...]
    failed_debits: tuple[FailedDebit, ...]

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (hex)."""
        return self.file.sha256

    @property
    def already_posted(self) -> bool:
        """True when the file posted nothing new and the core knew its payments: a re-sent file."""
        return self.posted == 0 and self.replayed > 0


# Fixed-width files pad figures with leading zeros to the column's width.
_COUNT_RE: Final = re.compile(r"^0*[0-9]{1,9}$")
_FEN_RE: Final = re.compile(r"^0*[0-9]{1,15}$")
_YUAN_RE: Final = re.compile(r"^0*[0-9]{1,13}(\.[0-9]+)?$")
_ID_RE: Final = re.compile(r"^[\x21-\x7e]{1,64}$")
_DATE_DIRECTIVES: Final = ("%Y", "%y", "%m", "%d", "%j")


def _digits(text: str) -> int:
    # Without the padding: int() refuses text of more than 4300 digits, zeros included.
    return int(text.lstrip("0") or "0")


class _BatchReader:
    """One pass over a batch file's lines: yields details, checks the totals at the trailer.

    After a complete pass its attributes hold the header's batch number and date and what
    the details added up to. Every failure is a ParseError with the 1-based line.
    """

    def __init__(
        self,
        layout: DelimitedLayout | FixedWidthLayout,
        *,
        channel: str,
        bank_code: str,
        currency: str,
        zone: ZoneInfo,
        source: str,
        max_payment: int,
    ) -> None:
        self.layout = layout
        self.max_payment = max_payment
        self.channel = channel
        self.bank_code = bank_code
        self.currency = currency
        self.zone = zone
        self.source = source
        self.batch_no = ""
        self.batch_date = date.min
        self.count = 0
        self.total = Money.zero(currency)
        self.success_count = 0
        self.success_total = Money.zero(currency)
        self.lines = 0
        self._serial_max = 64 - len(bank_code) - 1

    def _fail(self, message: str, line: int, field: str | None = None) -> ParseError:
        return ParseError(message, source=self.source, line=line, field=field)

    def read(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[BatchDetail]:
        header: dict[str, str] | None = None
        header_line = 0
        trailer_seen = False
        utf8 = codecs.lookup(self.layout.encoding).name == "utf-8"
        for line_no, raw in lines:
            self.lines = line_no
            if line_no == 1 and utf8 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            if trailer_seen:
                raise self._fail("data after the trailer record", line_no)
            kind, fields = self.layout.split(raw, source=self.source, line=line_no)
            if header is None:
                if kind != "header":
                    raise self._fail("the file must begin with a header record", line_no)
                header, header_line = fields, line_no
                self._read_header(fields, line_no)
            elif kind == "header":
                raise self._fail("a second header record", line_no)
            elif kind == "detail":
                yield self._detail(fields, line_no)
            else:
                trailer_seen = True
                self._check_stated("header", header, header_line)
                self._check_stated("trailer", fields, line_no)
                if "batch_no" in fields and fields["batch_no"] != self.batch_no:
                    raise self._fail(
                        f"the trailer names batch {shown(fields['batch_no'])}, the header "
                        f"{shown(self.batch_no)}",
                        line_no,
                        "batch_no",
                    )
        if header is None:
            raise self._fail("empty file: no header record", self.lines or 1)
        if not trailer_seen:
            raise self._fail(
                f"the file ends at line {self.lines} without a trailer record: truncated",
                self.lines,
            )

    def _read_header(self, fields: Mapping[str, str], line: int) -> None:
        batch_no = fields["batch_no"]
        if not re.match(r"^[\x21-\x7e]{1,32}$", batch_no):
            raise self._fail(f"not a batch number: {shown(batch_no)}", line, "batch_no")
        self.batch_no = batch_no
        self.batch_date = parse_local_time(
            fields["batch_date"],
            self.layout.date_format,
            self.zone,
            source=self.source,
            line=line,
            field="batch_date",
        ).date()
        # Read now so that a malformed figure is named on its own line, not at the trailer.
        for name in ("count", "success_count"):
            if name in fields:
                self._count(fields[name], line, name)
        for name in ("total", "success_total"):
            if name in fields:
                self._amount(fields[name], line, name, positive=False)

    def _count(self, text: str, line: int, field: str) -> int:
        if not _COUNT_RE.match(text):
            raise self._fail(f"not a count: {shown(text)}", line, field)
        return _digits(text)

    def _amount(self, text: str, line: int, field: str, *, positive: bool) -> Money:
        if self.layout.amount_unit == "fen":
            if not _FEN_RE.match(text):
                raise self._fail(f"not an amount in fen: {shown(text)}", line, field)
            amount = Money(_digits(text), self.currency)
        else:
            if not _YUAN_RE.match(text):
                raise self._fail(f"not an amount in yuan: {shown(text)}", line, field)
            amount = parse_money(text, self.currency, source=self.source, line=line, field=field)
        if positive and amount.minor <= 0:
            raise self._fail("the amount must be positive", line, field)
        return amount

    def _check_stated(self, record: str, fields: Mapping[str, str], line: int) -> None:
        given: dict[str, tuple[int | Money, Callable[[str], int | Money]]] = {
            "count": (self.count, lambda text: self._count(text, line, "count")),
            "total": (self.total, lambda text: self._amount(text, line, "total", positive=False)),
            "success_count": (
                self.success_count,
                lambda text: self._count(text, line, "success_count"),
            ),
            "success_total": (
                self.success_total,
                lambda text: self._amount(text, line, "success_total", positive=False),
            ),
        }
        for name, (actual, read) in given.items():
            if name not in fields:
                continue
            stated = read(fields[name])
            if stated != actual:
                shown_stated = stated.format() if isinstance(stated, Money) else str(stated)
                shown_actual = actual.format() if isinstance(actual, Money) else str(actual)
                raise self._fail(
                    f"the {record} states {name} {shown_stated}, the details give {shown_actual}",
                    line,
                    name,
                )

    def _paid_at(self, text: str | None, line: int) -> datetime:
        fmt = self.layout.time_format
        if not text:
            # No time column: the batch date at midnight. Late fees count whole days, so the
            # date is what decides; midnight never places a payment after the bank's own date.
            return datetime.combine(self.batch_date, time(0, 0), self.zone)
        parsed = parse_local_time(
            text, fmt, self.zone, source=self.source, line=line, field="txn_time"
        )
        if any(directive in fmt for directive in _DATE_DIRECTIVES):
            return parsed
        return datetime.combine(self.batch_date, parsed.time(), self.zone)

    def _detail(self, fields: Mapping[str, str], line: int) -> BatchDetail:
        account_no, serial_no = fields["account_no"], fields["serial_no"]
        if not _ID_RE.match(account_no):
            raise self._fail(f"not an account number: {shown(account_no)}", line, "account_no")
        if not (_ID_RE.match(serial_no) and len(serial_no) <= self._serial_max):
            raise self._fail(
                f"not a bank serial of at most {self._serial_max} characters: {shown(serial_no)}",
                line,
                "serial_no",
            )
        amount = self._amount(fields["amount"], line, "amount", positive=True)
        code = fields["result_code"]
        if not code:
            raise self._fail("result code missing", line, "result_code")
        paid_at = self._paid_at(fields.get("txn_time"), line)
        if amount.minor > self.max_payment:
            raise self._fail(
                f"the amount exceeds the largest single payment ({self.max_payment} minor units)",
                line,
                "amount",
            )
        self.count += 1
        self.total += amount
        intent = None
        if code in self.layout.success_codes:
            self.success_count += 1
            self.success_total += amount
            try:
                intent = make_intent(
                    channel=self.channel,
                    channel_txn_id=bank_txn_id(self.bank_code, serial_no),
                    account_no=account_no,
                    amount=amount,
                    paid_at=paid_at,
                    names={
                        "channel_txn_id": "serial_no",
                        "amount": "amount",
                        "paid_at": "txn_time",
                    },
                )
            except PaygateError as exc:
                raise self._fail(exc.message, line, exc.field) from None
        return BatchDetail(
            line_no=line,
            serial_no=serial_no,
            account_no=account_no,
            amount=amount,
            result_code=code,
            result_msg=fields.get("result_msg") or None,
            paid_at=paid_at,
            intent=intent,
        )


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _lines(
    stream: IO[bytes],
    *,
    limit: int,
    source: str,
    digest: _Digest | None = None,
    copy: IO[bytes] | None = None,
) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes without the line break)``; each raw line also hashed and copied.

    A line longer than ``limit`` is refused before more of it is read, so a file without line
    breaks cannot fill memory.
    """
    line_no = 0
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        if not isinstance(raw, bytes):
            raise TypeError("a batch file stream must be opened in binary mode")
        line_no += 1
        if digest is not None:
            digest.update(raw)
        if copy is not None:
            copy.write(raw)
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise ParseError(f"line longer than {limit} bytes", source=source, line=line_no)
        yield line_no, raw.rstrip(b"\r\n")


@contextmanager
def _opened(source: StatementSource) -> Iterator[IO[bytes]]:
    # A path is opened and closed here; a stream passed in stays open for its owner.
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            yield stream
    else:
        yield source


class VerifiedBatchFile:
    """A batch file that passed every check, held as an exact private copy until closed.

    The copy is what :meth:`details` reads, so what posts is byte for byte what was verified,
    even if the original changes afterwards or was a stream that cannot be read twice. Up to
    4 MiB stay in memory; a larger copy goes to a private temporary file, deleted on close.
    Read it one pass at a time; use it as a context manager.
    """

    def __init__(
        self,
        summary: BatchFileSummary,
        copy: IO[bytes],
        reader: Callable[[], _BatchReader],
        limit: int,
    ) -> None:
        self.summary = summary
        self._copy = copy
        self._reader = reader
        self._limit = limit

    def details(self) -> Iterator[BatchDetail]:
        """Every detail record in file order (paid and failed)."""
        self._copy.seek(0)
        lines = _lines(self._copy, limit=self._limit, source=self.summary.source)
        yield from self._reader().read(lines)

    def intents(self) -> Iterator[PaymentIntent]:
        """The payments of the details whose result code means paid."""
        for detail in self.details():
            if detail.intent is not None:
                yield detail.intent

    def failed_debits(self) -> Iterator[FailedDebit]:
        """The details the bank did not collect."""
        for detail in self.details():
            if detail.intent is None:
                yield _failed(detail)

    def close(self) -> None:
        """Discard the copy."""
        self._copy.close()

    def __enter__(self) -> VerifiedBatchFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _failed(detail: BatchDetail) -> FailedDebit:
    return FailedDebit(
        line_no=detail.line_no,
        serial_no=detail.serial_no,
        account_no=detail.account_no,
        amount=detail.amount,
        result_code=detail.result_code,
        result_msg=detail.result_msg,
    )
