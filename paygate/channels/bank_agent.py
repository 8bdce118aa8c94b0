"""Bank agent collection (金融机构代收/代扣): real-time counter payments and daily batch files.

Invariant: a bank's real-time message reaches the core only after its signature verified
with the method and key configured for that bank (RSA or HMAC, never chosen by the message);
a batch file posts nothing until every one of its lines has been read and its record counts
and totals agree with what its header and trailer state; and every payment's channel
transaction id is the bank's own serial (behind the bank's code), so a re-sent message or a
re-sent file posts nothing twice.

Two paths carry the same money:

* **Counter payments, in real time.** The bank's counter (or its e-banking) takes the money
  and sends a signed ``pay`` message; if it gets no answer it sends a ``reversal`` (冲正)
  naming the original serial. :meth:`BankAgentAdapter.handle_notify` takes both;
  :meth:`BankAgentAdapter.handle_reversal` takes only reversals.
* **The daily batch file.** Direct-debit results and the day's counter collections: a header
  (batch number, date, count, total), one detail per debit (account, amount, serial, result
  code), a trailer. Each bank agrees its own layout, so the layout is configuration
  (:class:`DelimitedLayout`, :class:`FixedWidthLayout`). :meth:`BankAgentAdapter.verify_batch_file`
  reads the file once, checking everything and keeping an exact private copy;
  :func:`post_batch_file` then posts the verified copy in chunks through ``pay_many``.

The module reads top to bottom: wire model, signature check, mapping to
:class:`~paygate.models.PaymentIntent`, batch files, statement reader, settlement rules, the
adapter.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, ClassVar, Final, Literal, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from paygate.channels.base import (
    HELD_ERRORS,
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    FeeSchedule,
    NotifyResult,
    Operation,
    PaymentSink,
    SettlementRules,
    StatementSource,
    acknowledged,
    held_for_suspense,
    refused,
)
from paygate.channels.errors import MerchantMismatchError, MissingAccountError, SignatureError
from paygate.channels.signing import (
    KeyEncoding,
    VerifyingKey,
    canonical_string,
    decode_secret,
    decode_signature,
    load_verifying_key,
    verify_sha256_rsa,
)
from paygate.channels.wire import (
    FORM_CHARSETS,
    first_validation_error,
    make_intent,
    make_statement_line,
    parse_form,
    parse_local_time,
    parse_money,
    shown,
    source_label,
    split_csv_line,
)
from paygate.errors import (
    ConfigurationError,
    InvalidInputError,
    InvalidStateError,
    ParseError,
    PaygateError,
    StoreError,
    UnknownPaymentError,
)
from paygate.models import PaymentIntent, PayOutcome, Receipt, StatementLine, StatementLineKind
from paygate.money import Money

__all__ = [
    "BANK_STATEMENT_COLUMNS",
    "DETAIL_FIELDS",
    "HEADER_FIELDS",
    "MIN_HMAC_KEY_BYTES",
    "SIGN_TYPES",
    "TRAILER_FIELDS",
    "BankAgentAdapter",
    "BankAgentConfig",
    "BankMessageType",
    "BankNotification",
    "BatchDetail",
    "BatchFileLayout",
    "BatchFileSummary",
    "BatchResult",
    "BatchSink",
    "DelimitedLayout",
    "FailedDebit",
    "FixedWidthLayout",
    "RefusedPayment",
    "SignMethod",
    "VerifiedBatchFile",
    "bank_agent_settlement",
    "bank_signing_string",
    "bank_txn_id",
    "counter_intent",
    "post_batch_file",
    "read_bank_statement",
    "verify_bank_notify",
]

_log = logging.getLogger("paygate.channels.bank_agent")

BEIJING: Final = ZoneInfo("Asia/Shanghai")
_FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"

MIN_HMAC_KEY_BYTES: Final = 32
"""A shared key shorter than SHA-256's output would be the weakest part of the check."""

_PRINTABLE: Final = r"^[\x21-\x7e]+$"
_FEN: Final = r"^[0-9]{1,12}$"


# ── wire model ───────────────────────────────────────────────────────────────────────────


class BankMessageType(StrEnum):
    """What a bank's real-time message reports."""

    PAY = "pay"
    """Money taken at the counter for an account."""
    REVERSAL = "reversal"
    """冲正: the bank undoes a payment it could not complete (no answer, or cancelled)."""


class BankNotification(BaseModel):
    """A bank's real-time message (the fields paygate reads), after its signature verified.

    ``amount`` is integer fen; ``txn_time`` is ``YYYYMMDDhhmmss`` Beijing time. A payment
    needs ``account_no`` and ``amount``; a reversal needs ``orig_serial_no``.
    """

    # Banks add fields (teller, branch, channel code); unknown ones are ignored, known checked.
    model_config = ConfigDict(frozen=True, extra="ignore")

    msg_type: BankMessageType
    merchant_id: str = Field(min_length=1, max_length=32)
    serial_no: str = Field(pattern=_PRINTABLE, max_length=48)
    orig_serial_no: str | None = Field(default=None, pattern=_PRINTABLE, max_length=48)
    account_no: str | None = None
    amount: str | None = Field(default=None, pattern=_FEN)
    txn_time: str = Field(pattern=r"^[0-9]{14}$")


# ── signature check ──────────────────────────────────────────────────────────────────────


class SignMethod(StrEnum):
    """How a bank signs its real-time messages; agreed per bank, configured, never negotiated."""

    RSA = "rsa"
    """SHA256withRSA (PKCS#1 v1.5) with the bank's key, base64; ``sign_type=RSA2``."""
    HMAC = "hmac"
    """HMAC-SHA256 with a shared key, lower-case hex; ``sign_type=HMAC-SHA256``."""


SIGN_TYPES: Final[Mapping[SignMethod, str]] = {
    SignMethod.RSA: "RSA2",
    SignMethod.HMAC: "HMAC-SHA256",
}
"""The ``sign_type`` a message must carry under each method."""


def bank_signing_string(params: Mapping[str, str]) -> str:
    """What the bank signs: every field except ``sign`` (``sign_type`` and empty fields
    included), sorted by name, as ``k=v`` joined by ``&``, values as received."""
    return canonical_string(params, exclude=frozenset({"sign"}), drop_empty=False)


def verify_bank_notify(
    body: bytes,
    *,
    method: SignMethod,
    rsa_keys: tuple[VerifyingKey, ...] = (),
    hmac_key: bytes | None = None,
    default_charset: str = "utf-8",
    source: str,
) -> BankNotification:
    """Read a form-encoded bank message and verify it by the configured ``method``.

    The message's ``sign_type`` must name that method; a message cannot downgrade an RSA
    bank to HMAC (or the reverse) by saying so.
    """
    params, charset = parse_form(
        body, source=source, charset_field="charset", default_charset=default_charset
    )
    expected_type = SIGN_TYPES[method]
    if params.get("sign_type") != expected_type:
        raise SignatureError(
            f"sign_type {shown(params.get('sign_type', ''))} is not accepted; "
            f"{expected_type} is required",
            field="sign_type",
        )
    message = bank_signing_string(params).encode(charset)
    if method is SignMethod.RSA:
        signature = decode_signature(params.get("sign"), field="sign")
        verify_sha256_rsa(rsa_keys, message, signature, field="sign")
    else:
        if hmac_key is None:
            raise ConfigurationError("no shared key for an HMAC bank", field="shared_key")
        given = params.get("sign")
        if not given:
            raise SignatureError("signature missing", field="sign")
        expected = hmac.new(hmac_key, message, hashlib.sha256).hexdigest()
        # Bytes on both sides: the given value is attacker-controlled and may be non-ASCII.
        if not hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8")):
            raise SignatureError("signature does not verify", field="sign")
    present = {name: value for name, value in params.items() if value != ""}
    try:
        return BankNotification.model_validate(present)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source) from None


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────


def bank_txn_id(bank_code: str, serial_no: str) -> str:
    """The channel transaction id of a bank's serial: ``bank_code:serial``.

    A utility collects through several banks, each numbering its own serials; the code keeps
    two banks' serials apart, and the same serial from the same bank is the same payment
    whether it arrives in real time or in the daily file.
    """
    return f"{bank_code}:{serial_no}"


def counter_intent(
    notification: BankNotification, *, channel: str, bank_code: str, currency: str
) -> PaymentIntent:
    """The payment a verified ``pay`` message reports."""
    n = notification
    if not n.account_no:
        # Verified: the counter took the money, so it is held for suspense, not refused.
        raise MissingAccountError("the payment names no account", field="account_no")
    if n.amount is None:
        raise ParseError("a payment needs amount", source=channel, field="amount")
    return make_intent(
        channel=channel,
        channel_txn_id=bank_txn_id(bank_code, n.serial_no),
        account_no=n.account_no,
        amount=Money(int(n.amount), currency),
        paid_at=parse_local_time(
            n.txn_time, "%Y%m%d%H%M%S", BEIJING, source=channel, field="txn_time"
        ),
        names={"channel_txn_id": "serial_no", "amount": "amount", "paid_at": "txn_time"},
    )


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


_SPOOL_BYTES: Final = 4 * 1024 * 1024


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


class BatchSink(Protocol):
    """The part of the core that posts a batch; ``paygate.gateway.Gateway`` implements it."""

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post each intent (chunked transactions); one outcome per intent, by index."""
        ...


def post_batch_file(
    adapter: BankAgentAdapter,
    source: StatementSource,
    sink: BatchSink,
    *,
    chunk_size: int | None = None,
) -> BatchResult:
    """Verify a batch file completely, then post its paid details through ``pay_many``.

    A bad file raises :class:`~paygate.errors.ParseError` (with the line) and posts nothing.
    A re-sent file posts nothing again: every serial replays in the core, and the result
    says ``already_posted``. Each chunk commits on its own; if the core fails part-way, what
    was posted stays posted and running the same file again posts only the rest.
    """
    size = chunk_size if chunk_size is not None else adapter.config.batch_chunk
    if size < 1:
        raise InvalidInputError("the chunk size must be at least 1", field="chunk_size")
    posted = replayed = 0
    refused_items: list[RefusedPayment] = []
    failed: list[FailedDebit] = []
    with adapter.verify_batch_file(source) as verified:
        chunk: list[BatchDetail] = []

        def flush() -> None:
            nonlocal posted, replayed
            outcomes = {
                outcome.index: outcome
                for outcome in sink.pay_many([d.intent for d in chunk if d.intent is not None])
            }
            if sorted(outcomes) != list(range(len(chunk))):
                raise StoreError(
                    f"the core answered {len(outcomes)} outcomes for {len(chunk)} payments",
                    field="pay_many",
                )
            for index, detail in enumerate(chunk):
                outcome = outcomes[index]
                if outcome.status == "posted":
                    posted += 1
                elif outcome.status == "replayed":
                    replayed += 1
                else:
                    refused_items.append(
                        RefusedPayment(
                            line_no=detail.line_no,
                            serial_no=detail.serial_no,
                            account_no=detail.account_no,
                            amount=detail.amount,
                            error_code=outcome.error_code or "refused",
                            error=outcome.error or "",
                        )
                    )
            chunk.clear()

        for detail in verified.details():
            if detail.intent is None:
                failed.append(_failed(detail))
                continue
            chunk.append(detail)
            if len(chunk) >= size:
                flush()
        if chunk:
            flush()
        summary = verified.summary
    result = BatchResult(
        file=summary,
        posted=posted,
        replayed=replayed,
        refused=tuple(refused_items),
        failed_debits=tuple(failed),
    )
    _log.info(
        "%s: batch %s (%s, sha256 %s): %d posted, %d replayed, %d refused, %d failed debits",
        adapter.name,
        summary.batch_no,
        summary.source,
        summary.sha256,
        posted,
        replayed,
        len(refused_items),
        len(failed),
    )
    return result


# ── statement reader ─────────────────────────────────────────────────────────────────────

BANK_STATEMENT_COLUMNS: Final = (
    "serial_no",
    "account_no",
    "txn_type",
    "amount",
    "fee",
    "net",
    "txn_time",
    "orig_serial_no",
)
"""The header of the bank's settlement statement CSV."""

_BANK_KINDS: Final[Mapping[str, StatementLineKind]] = {
    "payment": StatementLineKind.PAYMENT,
    "reversal": StatementLineKind.REVERSAL,
}


def read_bank_statement(
    source: StatementSource, *, currency: str, bank_code: str, encoding: str = "gbk"
) -> Iterator[StatementLine]:
    """Read the bank's settlement statement CSV line by line.

    Layout: the header :data:`BANK_STATEMENT_COLUMNS`, then one row per collection
    (``payment``: a counter payment or a successful debit) or reversal (``reversal``, naming
    ``orig_serial_no``). Amounts are yuan, positive, in the direction of ``txn_type``;
    ``fee`` is the bank's per-item fee (given back on a reversal) and ``net`` must equal
    ``amount - fee``; ``txn_time`` is ``YYYY-MM-DD hh:mm:ss`` Beijing time. Serials become
    channel transaction ids as :func:`bank_txn_id` makes them.
    """
    label = source_label(source)
    header_seen = False
    last_line = 0
    utf8 = codecs.lookup(encoding).name == "utf-8"
    with _opened(source) as stream:
        for line_no, raw in _lines(stream, limit=64 * 1024, source=label):
            last_line = line_no
            if line_no == 1 and utf8 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text = _decode(raw, encoding, source=label, line=line_no, field=None)
            if not text.strip():
                continue
            fields = [f.strip() for f in split_csv_line(text, source=label, line=line_no)]
            if not header_seen:
                if tuple(fields) != BANK_STATEMENT_COLUMNS:
                    raise ParseError(
                        "not a bank agent statement header", source=label, line=line_no
                    )
                header_seen = True
                continue
            if len(fields) != len(BANK_STATEMENT_COLUMNS):
                raise ParseError(
                    f"expected {len(BANK_STATEMENT_COLUMNS)} fields, found {len(fields)}",
                    source=label,
                    line=line_no,
                )
            row = dict(zip(BANK_STATEMENT_COLUMNS, fields, strict=True))
            yield _bank_statement_line(row, currency, bank_code, label, line_no)
    if not header_seen:
        raise ParseError("empty file: no statement header", source=label, line=last_line or 1)


def _bank_statement_line(
    row: Mapping[str, str], currency: str, bank_code: str, label: str, line_no: int
) -> StatementLine:
    def fail(message: str, field: str) -> ParseError:
        return ParseError(message, source=label, line=line_no, field=field)

    kind = _BANK_KINDS.get(row["txn_type"])
    if kind is None:
        raise fail(f"unknown txn_type {shown(row['txn_type'])}", "txn_type")
    if not _ID_RE.match(row["serial_no"]):
        raise fail(f"not a bank serial: {shown(row['serial_no'])}", "serial_no")
    original = None
    if kind is StatementLineKind.REVERSAL:
        if not _ID_RE.match(row["orig_serial_no"]):
            raise fail("a reversal names the serial it reverses", "orig_serial_no")
        original = bank_txn_id(bank_code, row["orig_serial_no"])
    gross, fee, net = (
        parse_money(row[name], currency, source=label, line=line_no, field=name)
        for name in ("amount", "fee", "net")
    )
    if net != gross - fee:
        raise fail(f"net {net.format()} is not amount less fee", "net")
    return make_statement_line(
        line_no=line_no,
        kind=kind,
        gross=gross,
        fee=fee,
        occurred_at=parse_local_time(
            row["txn_time"],
            "%Y-%m-%d %H:%M:%S",
            BEIJING,
            source=label,
            line=line_no,
            field="txn_time",
        ),
        channel_txn_id=bank_txn_id(bank_code, row["serial_no"]),
        account_no=row["account_no"],
        original_txn_id=original,
        source=label,
    )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def bank_agent_settlement() -> SettlementRules:
    """The bank's day ends at midnight Beijing time; T+1; a fixed fee per item (0.50 yuan).

    The fee is a placeholder; configure the agreement's. Banks settle on banking days while
    these rules count calendar days, so reconciliation waits three days (a weekend) for a
    late line instead of two.
    """
    return SettlementRules(cutoff=time(0, 0), lag_days=1, grace_days=3, fee=FeeSchedule(fixed=50))


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class BankAgentConfig(ChannelConfig):
    """Configuration of the ``bank_agent`` channel: one bank's agreement."""

    merchant_id: str = Field(
        min_length=1, max_length=32, description="the utility's collection agreement number"
    )
    bank_code: str = Field(
        pattern=r"^[A-Za-z0-9]{2,12}$", description="prefix of this bank's serials"
    )
    sign_method: SignMethod
    bank_public_keys: tuple[str, ...] = Field(
        default=(), max_length=4, description="RSA: the bank's key(s), PEM; several in rotation"
    )
    shared_key_encoding: KeyEncoding = Field(
        default=KeyEncoding.UTF8,
        description="HMAC: how the shared_key text becomes the key's bytes (utf-8, hex, base64)",
    )
    shared_key: SecretBytes | None = Field(
        default=None,
        description="HMAC: the shared key, as text in shared_key_encoding (bytes are taken as "
        "they are)",
    )
    notify_charset: str = Field(
        default="utf-8", description="charset of a message that declares none"
    )
    batch_layout: BatchFileLayout | None = None
    batch_chunk: int = Field(default=500, ge=1, le=100_000)
    statement_encoding: str = "gbk"
    settlement: SettlementRules = Field(default_factory=bank_agent_settlement)

    @field_validator("shared_key", mode="before")
    @classmethod
    def _shared_key_text(cls, value: object, info: ValidationInfo) -> object:
        # Text (TOML, the environment) is decoded as configured; bytes are already the key.
        encoding = info.data.get("shared_key_encoding")
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and isinstance(encoding, KeyEncoding):
            return decode_secret(value, encoding)
        return value

    @field_validator("bank_public_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            load_verifying_key(text)
        return value

    @field_validator("notify_charset")
    @classmethod
    def _charset(cls, value: str) -> str:
        if value.lower() not in FORM_CHARSETS:
            raise ValueError(f"charset must be one of {sorted(FORM_CHARSETS)}")
        return value

    @field_validator("statement_encoding")
    @classmethod
    def _statement_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _method(self) -> BankAgentConfig:
        if self.sign_method is SignMethod.RSA:
            if not self.bank_public_keys or self.shared_key is not None:
                raise ValueError("an RSA bank needs bank_public_keys and no shared_key")
        else:
            if self.shared_key is None or self.bank_public_keys:
                raise ValueError("an HMAC bank needs shared_key and no bank_public_keys")
            if len(self.shared_key.get_secret_value()) < MIN_HMAC_KEY_BYTES:
                raise ValueError(f"the shared key must be at least {MIN_HMAC_KEY_BYTES} bytes")
        return self


def _form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode("ascii")


class BankAgentAdapter(ChannelAdapter[BankAgentConfig]):
    """One agent bank: signed counter payments and reversals, daily batch files, statement.

    Answers are form-encoded: ``result=paid`` (with ``payment_id``), ``reversed``,
    ``original_not_found``; ``result=refused`` with ``error_code`` otherwise. A replayed
    message gets the same bytes it got the first time.
    """

    name: ClassVar[str] = "bank_agent"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.NOTIFY, Operation.REVERSAL, Operation.BATCH_FILE, Operation.STATEMENT}
    )
    config_model: ClassVar[type[ChannelConfig]] = BankAgentConfig

    def __init__(self, config: BankAgentConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self._rsa_keys = tuple(load_verifying_key(text) for text in config.bank_public_keys)
        self._hmac_key = (
            config.shared_key.get_secret_value() if config.shared_key is not None else None
        )

    # real-time messages

    def verify_notify(self, body: bytes, headers: Mapping[str, str]) -> BankNotification:
        """Check size, signature and agreement number of a message; nothing is posted."""
        self.check_body(body)
        notification = verify_bank_notify(
            body,
            method=self.config.sign_method,
            rsa_keys=self._rsa_keys,
            hmac_key=self._hmac_key,
            default_charset=self.config.notify_charset,
            source=self.name,
        )
        if notification.merchant_id != self.config.merchant_id:
            raise MerchantMismatchError("message for another agreement", field="merchant_id")
        return notification

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A counter payment or a reversal, dispatched on ``msg_type``."""
        return self._answer(body, headers, sink, None)

    def handle_reversal(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A reversal (冲正) only."""
        return self._answer(body, headers, sink, BankMessageType.REVERSAL)

    def _answer(
        self,
        body: bytes,
        headers: Mapping[str, str],
        sink: PaymentSink,
        expected: BankMessageType | None,
    ) -> NotifyResult:
        receipt: Receipt | None = None
        n = None
        try:
            n = self.verify_notify(body, headers)
            if expected is not None and n.msg_type is not expected:
                raise ParseError(
                    f"a {n.msg_type.value} message sent to the {expected.value} operation",
                    source=self.name,
                    field="msg_type",
                )
            if n.msg_type is BankMessageType.PAY:
                intent = counter_intent(
                    n,
                    channel=self.name,
                    bank_code=self.config.bank_code,
                    currency=self.config.currency,
                )
                receipt = sink.pay(self.admit(intent, time_field="txn_time"))
                # Nothing here depends on whether the core replayed: a bank retrying gets
                # the bytes of its first answer.
                fields = {
                    "result": "paid",
                    "serial_no": n.serial_no,
                    "payment_id": str(receipt.payment_id),
                    "account_no": receipt.account_no,
                    "amount": str(receipt.amount.minor),
                }
            else:
                fields = self.reverse(n, sink)
        except HELD_ERRORS as exc:
            # Raised only for a verified payment: the counter took the money, and the bank
            # would repeat the message for hours without an answer that stops it.
            assert n is not None
            held = {
                "result": "held",
                "serial_no": n.serial_no,
                "account_no": n.account_no or "",
                "error_code": exc.code,
            }
            return held_for_suspense(
                self.name,
                exc,
                channel_txn_id=bank_txn_id(self.config.bank_code, n.serial_no),
                body=_form(held),
                content_type=_FORM,
            )
        except PaygateError as exc:
            answer = {"result": "refused", "error_code": exc.code}
            return refused(self.name, exc, body=_form(answer), content_type=_FORM)
        return acknowledged(receipt, body=_form(fields), content_type=_FORM)

    def reverse(self, notification: BankNotification, sink: PaymentSink) -> dict[str, str]:
        """Reverse the payment a verified reversal names; the answer's fields.

        A payment already reversed answers ``reversed`` again (the bank repeats a reversal
        until it hears back). A serial the core does not know answers
        ``original_not_found``: the bank's payment never reached the ledger, so there is
        nothing to undo, and the bank needs to hear that rather than retry.
        """
        n = notification
        if not n.orig_serial_no:
            raise ParseError(
                "a reversal needs orig_serial_no", source=self.name, field="orig_serial_no"
            )
        original = bank_txn_id(self.config.bank_code, n.orig_serial_no)
        fields = {"serial_no": n.serial_no, "orig_serial_no": n.orig_serial_no}
        try:
            sink.reverse_by_channel_txn(self.name, original, f"bank reversal {n.serial_no}")
        except InvalidStateError as exc:
            _log.info("%s: %s not reversed again: %r", self.name, original, str(exc))
        except UnknownPaymentError:
            _log.warning(
                "%s: reversal %s names %s, which the ledger does not hold",
                self.name,
                n.serial_no,
                original,
            )
            return {"result": "original_not_found", **fields}
        return {"result": "reversed", **fields}

    # batch files

    def _layout(self) -> DelimitedLayout | FixedWidthLayout:
        layout = self.config.batch_layout
        if layout is None:
            raise ConfigurationError(
                "channel 'bank_agent' has no batch_layout configured", field="batch_layout"
            )
        return layout

    def _batch_reader(self, label: str) -> _BatchReader:
        return _BatchReader(
            self._layout(),
            channel=self.name,
            bank_code=self.config.bank_code,
            currency=self.config.currency,
            zone=ZoneInfo(self.config.settlement.timezone),
            source=label,
            max_payment=self.config.max_payment,
        )

    def verify_batch_file(self, source: StatementSource) -> VerifiedBatchFile:
        """Read a batch file once, checking every line, count and total; keep a copy.

        Raises :class:`~paygate.errors.ParseError` naming the 1-based line of the first
        defect. Nothing is posted here.
        """
        label = source_label(source)
        layout = self._layout()
        limit = layout.max_line_bytes
        # Not a with-block: the copy outlives this call, owned and closed by VerifiedBatchFile.
        copy: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        try:
            digest = hashlib.sha256()
            reader = self._batch_reader(label)
            with _opened(source) as stream:
                for _ in reader.read(
                    _lines(stream, limit=limit, source=label, digest=digest, copy=copy)
                ):
                    pass
            summary = BatchFileSummary(
                source=label,
                sha256=digest.hexdigest(),
                size=copy.tell(),
                lines=reader.lines,
                batch_no=reader.batch_no,
                batch_date=reader.batch_date,
                count=reader.count,
                total=reader.total,
                success_count=reader.success_count,
                success_total=reader.success_total,
            )
        except BaseException:
            copy.close()
            raise
        return VerifiedBatchFile(summary, copy, lambda: self._batch_reader(label), limit)

    def read_batch_file(self, source: StatementSource) -> Iterator[PaymentIntent]:
        """The paid details' payments, yielded only after the whole file verified.

        The first ``next()`` reads and checks the entire file; a bad file raises there,
        before any payment is yielded. :func:`post_batch_file` also reports failed debits
        and what the core did with each payment.
        """
        with self.verify_batch_file(source) as verified:
            yield from verified.intents()

    # statement

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the bank's settlement statement CSV."""
        return read_bank_statement(
            source,
            currency=self.config.currency,
            bank_code=self.config.bank_code,
            encoding=self.config.statement_encoding,
        )
