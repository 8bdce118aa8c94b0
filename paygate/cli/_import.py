"""What ``paygate accounts import`` and ``paygate bills import`` share: the file checked whole
before anything is written, then written through the billing run, with a progress bar and a
summary.

A billing run is all or nothing at the file level: a malformed line (named by its line number
and field) refuses the whole file before the first write, exit code 2. The check streams, so
memory stays flat; standard input (``-``) is spooled to a temporary file while it is checked,
then read again from there. Once written, items that conflict with what is stored or that the
ledger refuses (an unknown account) are listed, exit code 1; all created or replayed, exit 0.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from paygate.cli._common import err, out
from paygate.errors import ParseError
from paygate.models import BulkResult, NewAccount, NewBill

__all__ = ["EXIT_ISSUES", "EXIT_REFUSED", "import_file"]

EXIT_ISSUES = 1
EXIT_REFUSED = 2
_SHOWN_ERRORS = 20

R = TypeVar("R", NewAccount, NewBill)
Reader = Callable[[Iterable[str], str], Iterator[tuple[int, R] | ParseError]]


@contextmanager
def _source(path: str) -> Iterator[tuple[str, IO[str], Callable[[], IO[str]]]]:
    """The file's name, its lines for the check, and how to open it again for the writing."""
    with ExitStack() as stack:
        if path != "-":
            try:
                first = stack.enter_context(Path(path).open(encoding="utf-8-sig", newline=""))
            except OSError as exc:
                err.print(
                    f"[red]error:[/red] {escape(path)}: cannot be read: "
                    f"{escape(exc.strerror or str(exc))}",
                    markup=True,
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(EXIT_REFUSED) from None

            def reopen() -> IO[str]:
                return stack.enter_context(Path(path).open(encoding="utf-8-sig", newline=""))

            yield path, first, reopen
            return
        spool = stack.enter_context(
            tempfile.TemporaryFile("w+", encoding="utf-8", newline="", prefix="paygate-import-")
        )
        stdin = sys.stdin

        class _Tee:
            def __iter__(self) -> Iterator[str]:
                for line in stdin:
                    spool.write(line)
                    yield line

        def rewind() -> IO[str]:
            spool.flush()
            spool.seek(0)
            return spool

        yield "<stdin>", _Tee(), rewind  # type: ignore[misc]


def _check(lines: Iterable[str], read: Reader[R], name: str) -> int:
    """Read the whole file; print every malformed line and exit 2 if there is one; else the
    number of records."""
    count = 0
    bad = 0
    for item in read(lines, name):
        if isinstance(item, ParseError):
            bad += 1
            if bad <= _SHOWN_ERRORS:
                err.print(f"[red]error:[/red] {escape(str(item))}", highlight=False, soft_wrap=True)
        else:
            count += 1
    if bad:
        more = f" (the first {_SHOWN_ERRORS} shown)" if bad > _SHOWN_ERRORS else ""
        err.print(
            f"[red]error:[/red] {escape(name)}: {bad} malformed line(s){more}; nothing was written",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    return count


def import_file(
    path: str,
    *,
    what: str,
    read: Reader[R],
    write: Callable[[Iterable[R], Callable[[int], None]], BulkResult],
    as_json: bool,
) -> None:
    """Check ``path`` whole, then write its records with ``write``; report and set the exit."""
    with _source(path) as (name, lines, reopen):
        total = _check(lines, read, name)

        def records() -> Iterator[R]:
            for item in read(reopen(), name):
                if isinstance(item, ParseError):  # the file changed under us
                    raise item
                yield item[1]

        bar = Progress(
            TextColumn(f"{what} {escape(name)}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        with bar:
            task = bar.add_task(what, total=total)
            result = write(records(), lambda done: bar.update(task, completed=done))
        lines_of = _line_numbers(reopen(), read, name, result)
    _report(what, name, result, lines_of, as_json)


def _line_numbers(
    lines: Iterable[str], read: Reader[R], name: str, result: BulkResult
) -> dict[int, int]:
    """The file line of each item listed as a conflict or refusal (a third, cheap pass, only
    when there are some)."""
    wanted = {i.index for i in (*result.conflicts, *result.refused)}
    if not wanted:
        return {}
    found: dict[int, int] = {}
    for index, item in enumerate(read(lines, name)):
        if index in wanted and not isinstance(item, ParseError):
            found[index] = item[0]
    return found


def _report(
    what: str, name: str, result: BulkResult, lines_of: dict[int, int], as_json: bool
) -> None:
    issues = [("conflict", i) for i in result.conflicts] + [("refused", i) for i in result.refused]
    issues.sort(key=lambda pair: pair[1].index)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "file": name,
                    "read": result.total,
                    "created": result.created_count,
                    "replayed": result.replayed_count,
                    "conflicts": result.conflict_count,
                    "refused": result.refused_count,
                    "issues": [
                        {
                            "line": lines_of.get(i.index),
                            "status": status,
                            "key": i.key,
                            "code": i.code,
                            "field": i.field,
                            "error": i.error,
                        }
                        for status, i in issues
                    ],
                }
            )
        )
    else:
        for status, i in issues:
            out.print(
                f"{escape(name)}:{lines_of.get(i.index)}: {status}: {escape(i.error)}",
                highlight=False,
                soft_wrap=True,
            )
        out.print(
            f"{what}: {result.total} read, {result.created_count} created, "
            f"{result.replayed_count} replayed, {result.conflict_count} conflicts, "
            f"{result.refused_count} refused",
            highlight=False,
        )
    if issues:
        raise typer.Exit(EXIT_ISSUES)
