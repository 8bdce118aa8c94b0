"""The ``bank_transfer`` refund route: a transfer line in the file paygate sends to the bank
agent, and the bank's return file that says how each line went.

Both files keep the bank agent's batch conventions (docs/channels/bank_agent.md): ``|``-
delimited records in the agreed encoding (GBK by default), a header ``H`` with the batch
number, date, detail count and total, one ``D`` record per transfer, and a trailer ``T``
repeating the count and total, which the reader checks::

    H|RF20240501001|20240501|2|12050|6222020200112233445
    D|1|R-2024-0001|6217000010001234567|张三|105100000017|10050|0101234567|overpaid bill
    D|2|R-2024-0002|6228480010987654321|李四|103100000026|2000|0101234569|account closed
    T|2|12050

    H|RF20240501001|20240502|2|12050
    D|R-2024-0001|10050|0000|BK240502000017|success
    D|R-2024-0002|2000|3012|BK240502000018|account closed at the receiving bank
    T|2|12050

Invariant: one refund is one line, ever. :meth:`BankTransferRoute.submit` works under an
exclusive lock on the outbound directory (so two processes cannot both add a line), writes
the whole batch file anew beside the old one and renames it into place (so the file on disk
always has a header, every line, and a trailer that agrees), and records each refund in an
index that outlives the batch files, which the sender may move away once closed.
"""

from __future__ import annotations

import codecs
import fcntl
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, Literal

from paygate.channels.wire import iter_source_lines, parse_money, shown
from paygate.clock import Clock, SystemClock
from paygate.errors import IdempotencyConflictError, InvalidInputError, ParseError
from paygate.money import Money
from paygate.refunds.route import (
    RefundOutcome,
    RefundRequest,
    RefundRouteUnavailable,
    RefundState,
)
from paygate.refunds.routes.common import BEIJING

__all__ = [
    "BankTransferRoute",
    "ReturnLine",
    "TransferLine",
    "read_return_file",
    "read_transfer_file",
]

_log = logging.getLogger("paygate.refunds.routes")

AmountUnit = Literal["fen", "yuan"]

OPEN_SUFFIX: Final = ".part"
"""The batch being built; the sender takes only closed batches (``.txt``)."""
CLOSED_SUFFIX: Final = ".txt"
INDEX_NAME: Final = "refunds.index"
LOCK_NAME: Final = ".refunds.lock"

_FORBIDDEN = re.compile(r"[|\r\n\x00-\x1f\x7f]")
_ID = re.compile(r"^[\x21-\x7b\x7d\x7e]{1,64}$")  # printable ASCII without "|"
_FEN = re.compile(r"^[0-9]{1,15}$")
_COUNT = re.compile(r"^[0-9]{1,9}$")


@dataclass(frozen=True, slots=True)
class TransferLine:
    """One transfer of the outbound file."""

    line_no: int
    seq: int
    refund_id: str
    payee_account: str
    payee_name: str
    payee_bank_code: str
    amount: Money
    account_no: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """One line of the bank's return file: how a transfer went."""

    source: str
    line_no: int
    refund_id: str
    amount: Money
    result_code: str
    bank_reference: str
    result_msg: str


@dataclass(frozen=True, slots=True)
class _Batch:
    batch_no: str
    batch_date: date
    lines: tuple[TransferLine, ...]


@dataclass(frozen=True, slots=True)
class _Indexed:
    refund_id: str
    batch_no: str
    amount_minor: int
    payee_account: str


# ── amounts ──────────────────────────────────────────────────────────────────────────────


def amount_text(amount: Money, unit: AmountUnit) -> str:
    """``amount`` as the file writes it: integer fen, or yuan with the currency's decimals."""
    return str(amount.minor) if unit == "fen" else amount.format()


def parse_amount(
    text: str, unit: AmountUnit, currency: str, *, source: str, line: int, field: str
) -> Money:
    """An amount of the file, exactly; anything else is a ParseError naming line and field."""
    if unit == "fen":
        if not _FEN.match(text):
            raise ParseError(
                f"not an amount in minor units: {shown(text)}",
                source=source,
                line=line,
                field=field,
            )
        return Money(int(text), currency)
    return parse_money(text, currency, source=source, line=line, field=field)


# ── reading the two files ────────────────────────────────────────────────────────────────


def _records(
    source: str | Path, encoding: str, detail_fields: int
) -> Iterator[tuple[str, int, list[str]]]:
    """``(kind, line, fields)`` of a framed file, the framing checked: one header first, the
    trailer last, nothing after it, each record with its number of fields."""
    label = Path(source).name
    sizes = {"H": None, "D": detail_fields, "T": 3}
    seen_header = seen_trailer = False
    last = 0
    for line_no, raw in iter_source_lines(source):
        last = line_no
        if not raw.strip():
            continue
        try:
            text = raw.rstrip(b"\r").decode(encoding)
        except UnicodeDecodeError:
            raise ParseError(f"not valid {encoding}", source=label, line=line_no) from None
        fields = text.split("|")
        kind = fields[0]
        if kind not in sizes:
            raise ParseError(
                f"unknown record type {shown(kind)}",
                source=label,
                line=line_no,
                field="record_type",
            )
        if seen_trailer:
            raise ParseError("data after the trailer record", source=label, line=line_no)
        if kind == "H":
            if seen_header:
                raise ParseError("a second header record", source=label, line=line_no)
            seen_header = True
        elif not seen_header:
            raise ParseError(f"a {kind} record before the header", source=label, line=line_no)
        if kind == "T":
            seen_trailer = True
        expected = sizes[kind]
        if expected is not None and len(fields) != expected:
            raise ParseError(
                f"{len(fields)} fields, a {kind} record has {expected}", source=label, line=line_no
            )
        yield kind, line_no, fields
    if not seen_header:
        raise ParseError("no header record: an empty file", source=label, line=last or 1)
    if not seen_trailer:
        raise ParseError("no trailer record: the file is truncated", source=label, line=last or 1)


class _Totals:
    def __init__(self, label: str, unit: AmountUnit, currency: str) -> None:
        self.label, self.unit, self.currency = label, unit, currency
        self.count = 0
        self.total = Money.zero(currency)
        self.stated: tuple[int, int, Money] | None = None

    def state(self, fields: list[str], line: int, *, count_at: int) -> None:
        self.stated = (line, *self._figures(fields, line, count_at))

    def add(self, amount: Money) -> None:
        self.count += 1
        self.total += amount

    def _figures(self, fields: list[str], line: int, count_at: int) -> tuple[int, Money]:
        if len(fields) <= count_at + 1:
            raise ParseError("count and total missing", source=self.label, line=line)
        count = fields[count_at]
        if not _COUNT.match(count):
            raise ParseError(
                f"not a count: {shown(count)}", source=self.label, line=line, field="count"
            )
        total = parse_amount(
            fields[count_at + 1],
            self.unit,
            self.currency,
            source=self.label,
            line=line,
            field="total",
        )
        return int(count), total

    def check(self, fields: list[str], line: int, *, count_at: int, record: str) -> None:
        count, total = self._figures(fields, line, count_at)
        if count != self.count:
            raise ParseError(
                f"the {record} states {count} lines, the file has {self.count}",
                source=self.label,
                line=line,
                field="count",
            )
        if total != self.total:
            raise ParseError(
                f"the {record} states a total of {total.format()}, the lines add up to "
                f"{self.total.format()}",
                source=self.label,
                line=line,
                field="total",
            )

    def finish(self, header: list[str]) -> None:
        assert self.stated is not None
        self.check(header, self.stated[0], count_at=3, record="header")


def _batch_date(text: str, *, source: str, line: int) -> date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ParseError(
            f"not a date YYYYMMDD: {shown(text)}", source=source, line=line, field="batch_date"
        ) from None


def _id(text: str, *, source: str, line: int, field: str) -> str:
    if not _ID.match(text):
        raise ParseError(f"not an id: {shown(text)}", source=source, line=line, field=field)
    return text


def read_return_file(
    source: str | Path,
    *,
    encoding: str = "gbk",
    amount_unit: AmountUnit = "fen",
    currency: str = "CNY",
) -> list[ReturnLine]:
    """Read and check the bank's return file; a malformed one is a ParseError naming the file,
    the line and the field, and yields nothing.

    Layout: ``H|batch_no|batch_date|count|total``, then
    ``D|refund_id|amount|result_code|bank_reference|result_msg`` per transfer, then
    ``T|count|total``; the counts and totals must agree with the lines, and a refund appears
    at most once.
    """
    label = Path(source).name
    totals = _Totals(label, amount_unit, currency)
    header: list[str] = []
    lines: list[ReturnLine] = []
    seen: set[str] = set()
    for kind, line_no, fields in _records(source, encoding, 6):
        if kind == "H":
            header = fields
            _id(fields[1] if len(fields) > 1 else "", source=label, line=line_no, field="batch_no")
            _batch_date(fields[2] if len(fields) > 2 else "", source=label, line=line_no)
            totals.state(fields, line_no, count_at=3)
        elif kind == "D":
            refund_id = _id(fields[1], source=label, line=line_no, field="refund_id")
            if refund_id in seen:
                raise ParseError(
                    f"refund {shown(refund_id)} returned twice",
                    source=label,
                    line=line_no,
                    field="refund_id",
                )
            seen.add(refund_id)
            amount = parse_amount(
                fields[2], amount_unit, currency, source=label, line=line_no, field="amount"
            )
            if amount.minor <= 0:
                raise ParseError(
                    "the amount must be positive", source=label, line=line_no, field="amount"
                )
            code = fields[3].strip()
            if not code:
                raise ParseError(
                    "result_code missing", source=label, line=line_no, field="result_code"
                )
            totals.add(amount)
            lines.append(
                ReturnLine(
                    label, line_no, refund_id, amount, code, fields[4].strip(), fields[5].strip()
                )
            )
        else:
            totals.check(fields, line_no, count_at=1, record="trailer")
    totals.finish(header)
    return lines


def read_transfer_file(
    source: str | Path,
    *,
    encoding: str = "gbk",
    amount_unit: AmountUnit = "fen",
    currency: str = "CNY",
) -> tuple[str, date, list[TransferLine]]:
    """Read and check an outbound transfer file: its batch number, date and lines."""
    label = Path(source).name
    totals = _Totals(label, amount_unit, currency)
    header: list[str] = []
    lines: list[TransferLine] = []
    batch_no, batch_date = "", date.min
    for kind, line_no, fields in _records(source, encoding, 9):
        if kind == "H":
            header = fields
            if len(fields) != 6:
                raise ParseError(
                    f"{len(fields)} fields, a H record has 6", source=label, line=line_no
                )
            batch_no = _id(fields[1], source=label, line=line_no, field="batch_no")
            batch_date = _batch_date(fields[2], source=label, line=line_no)
            totals.state(fields, line_no, count_at=3)
        elif kind == "D":
            amount = parse_amount(
                fields[6], amount_unit, currency, source=label, line=line_no, field="amount"
            )
            if not fields[1].isdigit():
                raise ParseError("not a line number", source=label, line=line_no, field="seq")
            totals.add(amount)
            lines.append(
                TransferLine(
                    line_no=line_no,
                    seq=int(fields[1]),
                    refund_id=_id(fields[2], source=label, line=line_no, field="refund_id"),
                    payee_account=fields[3],
                    payee_name=fields[4],
                    payee_bank_code=fields[5],
                    amount=amount,
                    account_no=fields[7],
                    reason=fields[8],
                )
            )
        else:
            totals.check(fields, line_no, count_at=1, record="trailer")
    totals.finish(header)
    return batch_no, batch_date, lines


# ── the route ────────────────────────────────────────────────────────────────────────────


class BankTransferRoute:
    """Refunds paid by bank transfer: ``submit`` adds a line to the open batch file,
    ``query`` reads the bank's return files. Needs the request's ``payee``."""

    def __init__(
        self,
        *,
        outbound_dir: Path,
        return_dir: Path,
        payer_account: str,
        batch_prefix: str = "RF",
        encoding: str = "gbk",
        amount_unit: AmountUnit = "fen",
        success_codes: Iterable[str] = ("0000",),
        currency: str = "CNY",
        name: str = "bank_transfer",
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.channel: str | None = None
        self.outbound_dir = Path(outbound_dir)
        self.return_dir = Path(return_dir)
        self._payer_account = payer_account
        self._prefix = batch_prefix
        self._encoding = encoding
        self._unit: AmountUnit = amount_unit
        self._success = frozenset(success_codes)
        self._currency = currency
        self._clock = clock or SystemClock()
        if not _ID.match(payer_account):
            raise ValueError("payer_account must be printable ASCII without '|', at most 64")
        codecs.lookup(encoding)
        self._returns: dict[str, tuple[tuple[int, int], list[ReturnLine] | ParseError]] = {}
        self.outbound_dir.mkdir(parents=True, exist_ok=True)
        self.return_dir.mkdir(parents=True, exist_ok=True)

    # ── submit ──

    def submit(self, request: RefundRequest) -> RefundOutcome:
        """Add the refund's line to the open batch (once, ever); the outcome is pending."""
        self._check(request)
        with self._locked():
            index = self._index()
            known = index.get(request.refund_id)
            if known is None:
                known = self._append(request, index)
            self._same(known, request)
        return RefundOutcome(RefundState.PENDING, provider_reference=known.batch_no)

    def close_batch(self) -> Path | None:
        """Close the open batch: it becomes ``<batch_no>.txt``, for the sender to take to the
        bank; the next refund opens a new batch. ``None`` when no batch is open."""
        with self._locked():
            self._index()
            current = self._open_batch()
            if current is None:
                return None
            path, _ = current
            closed = path.with_suffix("")
            os.replace(path, closed)
            _fsync_dir(self.outbound_dir)
            _log.info("%s: batch %s closed", self.name, closed.name)
            return closed

    def _check(self, request: RefundRequest) -> None:
        payee = request.payee
        if payee is None:
            raise InvalidInputError("a bank transfer needs the payee's account", field="payee")
        if request.amount.currency != self._currency or request.amount.minor <= 0:
            raise InvalidInputError(
                f"a transfer is a positive amount in {self._currency}", field="amount"
            )
        for field, value in (
            ("refund_id", request.refund_id),
            ("payee.account_number", payee.account_number),
            ("payee.bank_code", payee.bank_code),
            ("account_no", request.account_no),
        ):
            if not _ID.match(value):
                _refuse(field, "printable ASCII without '|', at most 64")
        if not payee.name.strip() or _FORBIDDEN.search(payee.name):
            _refuse("payee.name", "a name without '|' or line breaks")
        try:
            payee.name.encode(self._encoding)
        except UnicodeEncodeError:
            _refuse("payee.name", f"a name the file's encoding ({self._encoding}) can write")

    def _same(self, known: _Indexed, request: RefundRequest) -> None:
        assert request.payee is not None
        if (
            known.amount_minor != request.amount.minor
            or known.payee_account != request.payee.account_number
        ):
            raise IdempotencyConflictError(
                f"refund {request.refund_id!r} is already in batch {known.batch_no} with another "
                "amount or payee",
                field="refund_id",
            )

    def _append(self, request: RefundRequest, index: dict[str, _Indexed]) -> _Indexed:
        assert request.payee is not None
        today = self._clock.now().astimezone(BEIJING).date()
        current = self._open_batch()
        if current is not None and current[1].batch_date != today:
            # Yesterday's batch is complete: it is closed, and today's opens.
            os.replace(current[0], current[0].with_suffix(""))
            current = None
        if current is None:
            batch = _Batch(self._next_batch_no(today, index), today, ())
        else:
            batch = current[1]
        payee = request.payee
        line = TransferLine(
            line_no=0,
            seq=len(batch.lines) + 1,
            refund_id=request.refund_id,
            payee_account=payee.account_number,
            payee_name=payee.name.strip(),
            payee_bank_code=payee.bank_code,
            amount=request.amount,
            account_no=request.account_no,
            # Free text: what the encoding cannot write becomes "?", never a refusal.
            reason=_FORBIDDEN.sub(" ", request.reason)
            .encode(self._encoding, "replace")
            .decode(self._encoding)
            .strip(),
        )
        batch = _Batch(batch.batch_no, batch.batch_date, (*batch.lines, line))
        self._write(batch)
        entry = _Indexed(
            request.refund_id, batch.batch_no, request.amount.minor, payee.account_number
        )
        self._record([entry])
        index[entry.refund_id] = entry
        _log.info("%s: refund %s added to batch %s", self.name, request.refund_id, batch.batch_no)
        return entry

    def _next_batch_no(self, today: date, index: dict[str, _Indexed]) -> str:
        stem = f"{self._prefix}{today:%Y%m%d}"
        used = {entry.batch_no for entry in index.values()}
        used |= {p.name.split(".")[0] for p in self.outbound_dir.iterdir()}
        seq = 1 + max(
            (
                int(no[len(stem) :])
                for no in used
                if no.startswith(stem) and no[len(stem) :].isdigit()
            ),
            default=0,
        )
        return f"{stem}{seq:03d}"

    def _write(self, batch: _Batch) -> None:
        total = sum((line.amount for line in batch.lines), Money.zero(self._currency))
        count = len(batch.lines)
        records = [
            f"H|{batch.batch_no}|{batch.batch_date:%Y%m%d}|{count}|{amount_text(total, self._unit)}"
            f"|{self._payer_account}"
        ]
        records += [
            f"D|{line.seq}|{line.refund_id}|{line.payee_account}|{line.payee_name}|"
            f"{line.payee_bank_code}|{amount_text(line.amount, self._unit)}|{line.account_no}|"
            f"{line.reason}"
            for line in batch.lines
        ]
        records.append(f"T|{count}|{amount_text(total, self._unit)}")
        data = ("\r\n".join(records) + "\r\n").encode(self._encoding)
        final = self.outbound_dir / f"{batch.batch_no}{CLOSED_SUFFIX}{OPEN_SUFFIX}"
        temporary = final.with_name(f".{final.name}.tmp")
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, final)
        _fsync_dir(self.outbound_dir)

    # ── the lock, the index, the open batch ──

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.outbound_dir / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _open_batch(self) -> tuple[Path, _Batch] | None:
        found = sorted(self.outbound_dir.glob(f"*{CLOSED_SUFFIX}{OPEN_SUFFIX}"))
        if not found:
            return None
        if len(found) > 1:
            raise RefundRouteUnavailable(
                f"{self.name}: more than one open batch in {self.outbound_dir}: "
                + ", ".join(p.name for p in found)
            )
        path = found[0]
        batch_no, batch_date, lines = read_transfer_file(
            path, encoding=self._encoding, amount_unit=self._unit, currency=self._currency
        )
        return path, _Batch(batch_no, batch_date, tuple(lines))

    def _index(self) -> dict[str, _Indexed]:
        """The index, completed from the open batch: a line written just before a crash that
        kept it out of the index is entered now, under the lock, before anything else."""
        entries: dict[str, _Indexed] = {}
        path = self.outbound_dir / INDEX_NAME
        if path.exists():
            for line_no, raw in iter_source_lines(path):
                if not raw.strip():
                    continue
                parts = raw.decode("utf-8", "replace").split("|")
                if len(parts) != 4 or not parts[2].isdigit():
                    # A line cut by a crash mid-write is the last; it is written again below.
                    _log.warning("%s: index line %d unreadable, ignored", self.name, line_no)
                    continue
                entries[parts[0]] = _Indexed(parts[0], parts[1], int(parts[2]), parts[3])
        current = self._open_batch()
        if current is not None:
            missing = [
                _Indexed(line.refund_id, current[1].batch_no, line.amount.minor, line.payee_account)
                for line in current[1].lines
                if line.refund_id not in entries
            ]
            if missing:
                self._record(missing)
                entries.update((entry.refund_id, entry) for entry in missing)
        return entries

    def _record(self, entries: list[_Indexed]) -> None:
        path = self.outbound_dir / INDEX_NAME
        text = "".join(
            f"\n{e.refund_id}|{e.batch_no}|{e.amount_minor}|{e.payee_account}\n" for e in entries
        )
        with open(path, "ab") as stream:
            stream.write(text.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())

    # ── query ──

    def query(self, request: RefundRequest) -> RefundOutcome:
        """How the bank's return files say the transfer went; pending until one returns it."""
        with self._locked():
            known = self._index().get(request.refund_id)
        if known is None:
            return RefundOutcome(
                RefundState.FAILED,
                failure_code="not_submitted",
                failure_message="no transfer line was written for this refund",
            )
        found: list[ReturnLine] = []
        for path in sorted(self.return_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            found += [
                line for line in self._return_lines(path) if line.refund_id == request.refund_id
            ]
        if not found:
            return RefundOutcome(RefundState.PENDING, provider_reference=known.batch_no)
        outcomes = {(line.result_code, line.amount) for line in found}
        line = found[0]
        if len(outcomes) > 1:
            raise self._unbelieved(
                request,
                "returned differently in " + ", ".join(f"{x.source}:{x.line_no}" for x in found),
            )
        if line.amount.minor != known.amount_minor:
            raise self._unbelieved(
                request,
                f"{line.source}:{line.line_no} returns {line.amount.format()}, "
                "the line was for another amount",
            )
        if line.result_code in self._success:
            _log.info("%s: refund %s paid (%s)", self.name, request.refund_id, line.bank_reference)
            return RefundOutcome(
                RefundState.SUCCEEDED, provider_reference=line.bank_reference or None
            )
        _log.info("%s: refund %s returned %s", self.name, request.refund_id, line.result_code)
        return RefundOutcome(
            RefundState.FAILED,
            provider_reference=line.bank_reference or None,
            failure_code=line.result_code,
            failure_message=line.result_msg or None,
        )

    def _return_lines(self, path: Path) -> list[ReturnLine]:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._returns.get(path.name)
        if cached is None or cached[0] != stamp:
            try:
                result: list[ReturnLine] | ParseError = read_return_file(
                    path, encoding=self._encoding, amount_unit=self._unit, currency=self._currency
                )
            except ParseError as exc:
                result = exc
            cached = (stamp, result)
            self._returns[path.name] = cached
        if isinstance(cached[1], ParseError):
            # Nothing is concluded from the other files either until this one is put right:
            # the line it garbles may be the one asked about.
            _log.error("%s: return file refused: %s", self.name, cached[1])
            raise RefundRouteUnavailable(f"{self.name}: return file refused: {cached[1]}")
        return cached[1]

    def _unbelieved(self, request: RefundRequest, why: str) -> RefundRouteUnavailable:
        _log.error("%s: refund %s: %s", self.name, request.refund_id, why)
        return RefundRouteUnavailable(f"{self.name}: refund {request.refund_id}: {why}")


def _refuse(field: str, what: str) -> None:
    raise InvalidInputError(f"{field} must be {what}", field=field)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
