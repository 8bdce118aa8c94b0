"""``POST /v1/accounts/import`` and ``POST /v1/bills/import``: a billing system's CSV file over
HTTP, for a service client holding ``accounts:write`` or ``bills:write``.

The body is the file ``paygate accounts import`` / ``paygate bills import`` read
(:mod:`paygate.billing_file`), sent as ``text/csv`` (UTF-8). Invariants:

* **Who, before what.** The bearer token and its scope are verified before a byte of the body
  is read; a declared length over ``[api] import_max_bytes`` is refused (413) before reading,
  and a streamed body is cut off at the limit.
* **A malformed file writes nothing.** The body is streamed into a spooled temporary file
  (memory up to :data:`SPOOL_MEMORY_BYTES`, then disk), and every line is checked before the
  first write: a line that is not a record (a wrong column count, an unknown category, an
  amount that is not a number, bytes that are not UTF-8…) refuses the whole file with one
  ``parse_error`` problem naming the first such line and column, and listing up to
  :data:`MAX_LISTED` of them in ``errors``.
* **Flat memory.** The checked file is read again from the spool, a chunk per transaction,
  into :meth:`Gateway.open_accounts <paygate.gateway.Gateway.open_accounts>` or
  :meth:`Gateway.issue_bills <paygate.gateway.Gateway.issue_bills>`, keeping counts and the
  issues only.
* **Idempotent.** Each line is decided as the single call would: created, replayed (stored
  before with the same data), a conflict or refused. Sending the same file again answers every
  line replayed and changes nothing; a file cut short by a dropped connection is sent again
  whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Annotated, Final, TypeVar

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from paygate.api.bearer import scoped
from paygate.api.deps import Runtime, RuntimeDep, json_response
from paygate.api.problems import (
    MalformedFileError,
    RequestValidationProblem,
    UnsupportedMediaTypeError,
)
from paygate.api.schemas import ImportIssue, ImportResult
from paygate.billing_file import read_accounts, read_bills
from paygate.channels.errors import PayloadTooLargeError
from paygate.errors import ParseError
from paygate.models import BulkResult, NewAccount, NewBill
from paygate.tokens import Principal

__all__ = [
    "ACCOUNTS_IMPORT_PATH",
    "BILLS_IMPORT_PATH",
    "MAX_LINE_BYTES",
    "MAX_LISTED",
    "SPOOL_MEMORY_BYTES",
    "router",
]

router = APIRouter()

ACCOUNTS_IMPORT_PATH: Final = "/v1/accounts/import"
BILLS_IMPORT_PATH: Final = "/v1/bills/import"
CSV_MEDIA_TYPE: Final = "text/csv"

SPOOL_MEMORY_BYTES: Final = 1024 * 1024
"""How much of a body is kept in memory before the spool moves to a temporary file."""

MAX_LINE_BYTES: Final = 64 * 1024
"""The longest line a file may have (a record is a few hundred bytes)."""

MAX_LISTED: Final = 100
"""How many malformed lines a refusal lists (the first ones of the file)."""

R = TypeVar("R", NewAccount, NewBill)
Reader = Callable[[Iterable[str]], Iterator[tuple[int, R] | ParseError]]

AccountWriter = Annotated[Principal, Depends(scoped("accounts:write"))]
BillWriter = Annotated[Principal, Depends(scoped("bills:write"))]


def _check_media_type(request: Request) -> None:
    given = request.headers.get("content-type", "")
    if given.split(";")[0].strip().lower() != CSV_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(
            f"the body must be {CSV_MEDIA_TYPE} (UTF-8), not {given or 'untyped'}",
            field="Content-Type",
        )
    charset = [p.strip().lower() for p in given.split(";")[1:] if "charset=" in p.lower()]
    if charset and charset[0].partition("=")[2].strip('"') not in ("utf-8", "utf8"):
        raise UnsupportedMediaTypeError("the body must be UTF-8", field="Content-Type")


async def _spool(request: Request, limit: int) -> IO[bytes]:
    """The body in a spooled temporary file, refused (413) past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise RequestValidationProblem("Content-Length is not a number", field="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLargeError(
                f"body of {int(declared)} bytes exceeds the import limit of {limit} bytes",
                field="body",
            )
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"body exceeds the import limit of {limit} bytes", field="body"
                )
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool


def _text_lines(raw: IO[bytes]) -> Iterator[str]:
    """The spooled body from its start, line by line as text; a line not UTF-8, or longer
    than :data:`MAX_LINE_BYTES` (never held whole), is named."""
    raw.seek(0)
    number = 0
    while line := raw.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise ParseError(f"a line longer than {MAX_LINE_BYTES} bytes", line=number)
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"not UTF-8 text (byte {exc.start + 1} of the line)", line=number
            ) from None


def _check(raw: IO[bytes], read: Reader[R]) -> None:
    """Every line of the file a record, or the refusal naming the malformed ones."""
    errors: list[ParseError] = []
    total = 0
    try:
        for item in read(_text_lines(raw)):
            if isinstance(item, ParseError):
                total += 1
                if len(errors) < MAX_LISTED:
                    errors.append(item)
    except ParseError as exc:  # bytes that are not text: the lines after it cannot be read
        total += 1
        errors.append(exc)
    if errors:
        raise MalformedFileError(errors[0], errors, total)


def _records(raw: IO[bytes], read: Reader[R]) -> Iterator[R]:
    for item in read(_text_lines(raw)):
        if isinstance(item, ParseError):  # checked before: the spool is this request's own
            raise item
        yield item[1]


def _result(raw: IO[bytes], read: Reader[R], result: BulkResult) -> ImportResult:
    """The answer, each issue at its line of the file (one more pass, only when there are)."""
    wanted = {i.index: ("conflict", i) for i in result.conflicts} | {
        i.index: ("refused", i) for i in result.refused
    }
    lines: dict[int, int] = {}
    if wanted:
        for index, item in enumerate(read(_text_lines(raw))):
            if index in wanted and not isinstance(item, ParseError):
                lines[index] = item[0]
    issues = [
        ImportIssue(
            line=lines[index],
            status="conflict" if status == "conflict" else "refused",
            key=issue.key,
            code=issue.code,
            field=issue.field,
            error=issue.error,
        )
        for index, (status, issue) in sorted(wanted.items())
    ]
    return ImportResult(
        read=result.total,
        created=result.created_count,
        replayed=result.replayed_count,
        conflicts=result.conflict_count,
        refused=result.refused_count,
        issues=issues,
    )


async def _import(
    request: Request,
    runtime: Runtime,
    read: Reader[R],
    write: Callable[[Iterable[R]], BulkResult],
) -> Response:
    _check_media_type(request)
    spool = await _spool(request, runtime.import_max_bytes)

    def work() -> ImportResult:
        with spool:
            _check(spool, read)
            result = write(_records(spool, read))
            return _result(spool, read, result)

    return json_response(await runtime.run(work))


@router.post(ACCOUNTS_IMPORT_PATH, operation_id="importAccounts", tags=["billing"])
async def import_accounts(
    request: Request, runtime: RuntimeDep, _writer: AccountWriter
) -> Response:
    """Open every account of a CSV file; the file is checked whole before anything is written."""

    def read(lines: Iterable[str]) -> Iterator[tuple[int, NewAccount] | ParseError]:
        return read_accounts(lines, source="body")

    def write(accounts: Iterable[NewAccount]) -> BulkResult:
        return runtime.gateway.open_accounts(accounts, keep_keys=False)

    return await _import(request, runtime, read, write)


@router.post(BILLS_IMPORT_PATH, operation_id="importBills", tags=["billing"])
async def import_bills(request: Request, runtime: RuntimeDep, _writer: BillWriter) -> Response:
    """Issue every bill of a CSV file; the file is checked whole before anything is written."""
    currency = runtime.gateway.settings.currency

    def read(lines: Iterable[str]) -> Iterator[tuple[int, NewBill] | ParseError]:
        return read_bills(lines, currency=currency, source="body")

    def write(bills: Iterable[NewBill]) -> BulkResult:
        return runtime.gateway.issue_bills(bills, keep_keys=False)

    return await _import(request, runtime, read, write)
