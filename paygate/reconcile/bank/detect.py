"""Recognising a bank statement file's format from its first bytes, and reading any of them.

Invariant: detection only looks, it never consumes: a file object handed to
:func:`read_bank_statement` is read from where it stood, whether or not it can seek. A file
that matches no format is a ParseError at line 1, never a guess.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from typing import Final

from paygate.errors import ParseError
from paygate.reconcile.bank._input import BankSource, LineReadable, opened
from paygate.reconcile.bank.bai2 import read_bai2
from paygate.reconcile.bank.camt053 import read_camt053
from paygate.reconcile.bank.csvfile import CsvLayout, read_bank_csv
from paygate.reconcile.bank.model import BankFormat, BankStatement
from paygate.reconcile.bank.mt940 import read_mt940, starts_like_mt940

__all__ = ["detect_bank_format", "read_bank_statement"]

# Enough to get past an XML declaration, comments and the root element to its namespace.
_SNIFF_BYTES: Final = 8 * 1024
# The byte order is named, not left to the codec: the mark is cut off before decoding, and a
# plain "utf-16"/"utf-32" decoder refuses a stream that does not start with one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def detect_bank_format(source: BankSource) -> BankFormat:
    """Tell the format of a bank statement from its first bytes.

    ``:20:`` as the first line after any bank header lines and SWIFT envelope blocks is MT940,
    an XML document naming camt.053 is camt.053, a ``01,`` record is BAI2. A file object is read
    and put back where it was (it must be seekable; :func:`read_bank_statement` handles streams
    that are not). CSV has no signature: anything else is a ParseError, and a CSV export is read
    with an explicit layout.
    """
    with opened(source) as (name, stream):
        if isinstance(source, str | os.PathLike):
            head = _read_head(stream)
        else:
            position = _tell(stream)
            head = _read_head(stream)
            _seek(stream, position)
        return _classify(head, name)


def read_bank_statement(
    source: BankSource,
    format: BankFormat | str = "auto",
    csv_layout: CsvLayout | None = None,
) -> Iterator[BankStatement]:
    """Read the statements in ``source`` in the given format, or the detected one (``"auto"``).

    A ``csv_layout`` is required for CSV; with ``"auto"`` it is used when the file matches none
    of the other formats. Raises ParseError for anything that cannot be read.
    """
    if format == "auto":
        return _read_detected(source, csv_layout)
    try:
        chosen = BankFormat(format)
    except ValueError:
        raise ValueError(
            f"unknown bank statement format {format!r}; "
            f"use one of {', '.join(item.value for item in BankFormat)} or 'auto'"
        ) from None
    return _read_as(chosen, source, csv_layout)


def _read_detected(source: BankSource, csv_layout: CsvLayout | None) -> Iterator[BankStatement]:
    if isinstance(source, str | os.PathLike):
        chosen = _detect_or_csv(source, csv_layout)
        yield from _read_as(chosen, source, csv_layout)
        return
    with opened(source) as (name, stream):
        head = _read_head(stream)
        try:
            chosen = _classify(head, name)
        except ParseError:
            if csv_layout is None:
                raise
            chosen = BankFormat.CSV
        # The wrapper carries the stream's name, so errors still name the file.
        yield from _read_as(chosen, _Rewound(head, stream, name), csv_layout)


def _detect_or_csv(source: BankSource, csv_layout: CsvLayout | None) -> BankFormat:
    try:
        return detect_bank_format(source)
    except ParseError:
        if csv_layout is None:
            raise
        return BankFormat.CSV


def _read_as(
    chosen: BankFormat, source: BankSource, csv_layout: CsvLayout | None
) -> Iterator[BankStatement]:
    if chosen is BankFormat.MT940:
        return read_mt940(source)
    if chosen is BankFormat.CAMT053:
        return read_camt053(source)
    if chosen is BankFormat.BAI2:
        return read_bai2(source)
    if csv_layout is None:
        raise ValueError("reading a CSV bank statement needs a csv_layout")
    return read_bank_csv(source, csv_layout)


def _classify(head: bytes | str, name: str | None) -> BankFormat:
    text = _head_text(head)
    start = text.lstrip()
    if starts_like_mt940(text):
        return BankFormat.MT940
    if start.startswith("<"):
        if re.search(r"camt\.053\.001\.[0-9]{2}", text) or "BkToCstmrStmt" in text:
            return BankFormat.CAMT053
        raise ParseError(
            "an XML document that is not a camt.053 bank statement",
            source=name,
            line=1,
            field="format",
        )
    if re.match(r"01,", start):
        return BankFormat.BAI2
    raise ParseError(
        "not a bank statement format paygate recognises (MT940, camt.053, BAI2); "
        "a CSV export needs a csv_layout",
        source=name,
        line=1,
        field="format",
    )


def _head_text(head: bytes | str) -> str:
    if isinstance(head, str):
        return head.removeprefix("\ufeff")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            body = head[len(bom) :]
            return codecs.getincrementaldecoder(encoding)(errors="replace").decode(body)
    # Only ASCII signatures are looked for, so undecodable bytes may safely become U+FFFD.
    return head.decode("utf-8", errors="replace")


def _read_head(stream: LineReadable) -> bytes | str:
    parts: list[bytes | str] = []
    size = 0
    while size < _SNIFF_BYTES:
        part = stream.readline(_SNIFF_BYTES - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if not parts:
        return b""
    if isinstance(parts[0], bytes):
        return b"".join(part for part in parts if isinstance(part, bytes))
    return "".join(part for part in parts if isinstance(part, str))


def _tell(stream: LineReadable) -> int:
    tell = getattr(stream, "tell", None)
    seekable = getattr(stream, "seekable", None)
    if tell is None or seekable is None or not seekable():
        raise ValueError(
            "detect_bank_format needs a path or a seekable file; "
            "read_bank_statement(format='auto') also takes other streams"
        )
    position = tell()
    if not isinstance(position, int):
        raise ValueError("the file object's tell() did not return a position")
    return position


def _seek(stream: LineReadable, position: int) -> None:
    seek = getattr(stream, "seek", None)
    if seek is not None:
        seek(position)


class _Rewound:
    """A stream that first gives back the bytes already read for sniffing, then the rest."""

    def __init__(self, head: bytes | str, stream: LineReadable, name: str | None) -> None:
        self._head = head
        self._stream = stream
        self.name = name

    def readline(self, size: int = -1, /) -> bytes | str:
        """The next line, at most ``size`` characters, from the sniffed head first."""
        head = self._head
        if not head:
            return self._stream.readline(size)
        limit = len(head) if size < 0 else min(size, len(head))
        end = head.find(b"\n", 0, limit) if isinstance(head, bytes) else head.find("\n", 0, limit)
        cut = limit if end < 0 else end + 1
        line, self._head = head[:cut], head[cut:]
        if end < 0 and not self._head and (size < 0 or cut < size):
            # The line runs on past what was sniffed: the stream holds the rest of it.
            rest = self._stream.readline(-1 if size < 0 else size - cut)
            if isinstance(line, bytes) and isinstance(rest, bytes):
                return line + rest
            if isinstance(line, str) and isinstance(rest, str):
                return line + rest
            raise TypeError("the stream changed between bytes and text")
        return line
