"""What every ``paygate`` sub-command shares: the --database-url and --actor options, settings,
consoles, and the one way errors are shown (one line naming the problem, exit code 2)."""

from __future__ import annotations

import csv
import getpass
import io
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column as RichColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from typer import rich_utils
from typer.core import TyperArgument, TyperOption

from paygate.config import PaygateConfig, Settings
from paygate.errors import InvalidInputError, PaygateError
from paygate.money import Money
from paygate.reconcile.config import reconcile_config
from paygate.reconcile.report import terminal_text
from paygate.refunds.route import RefundRoute
from paygate.store import migrate

__all__ = [
    "Actor",
    "After",
    "AsJson",
    "Cell",
    "Column",
    "DatabaseUrl",
    "Format",
    "Limit",
    "Listing",
    "OutputFormat",
    "actor_name",
    "chosen_format",
    "close_routes",
    "config_for",
    "emit",
    "err",
    "guard",
    "int_cursor",
    "load_config",
    "local_time",
    "out",
    "page",
    "plural",
    "refund_routes_for",
    "root_config",
    "say_error",
    "settings_for",
]

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database URL (default: $PAYGATE_DATABASE_URL, else sqlite:///paygate.db).",
        show_default=False,
    ),
]

Actor = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who acts, for the audit record (default: the operating-system user).",
        show_default=False,
    ),
]


def actor_name(given: str | None) -> str:
    """``--actor`` as given, else the operating-system user: who is recorded as acting."""
    if given and given.strip():
        return given.strip()[:64]
    try:
        return getpass.getuser()[:64] or "operator"
    except (KeyError, OSError):
        # No user name in the environment or the password database (a bare container).
        return "operator"


# `paygate --config FILE …`: the root command's option, for whichever sub-command runs (set by
# the root callback for the length of one invocation).
root_config: ContextVar[Path | None] = ContextVar("paygate_root_config", default=None)


def load_config(
    files: Mapping[str, Path | None] | None = None, *, database_url: str | None = None
) -> PaygateConfig:
    """The configuration: ``paygate --config`` (else ``$PAYGATE_CONFIG``), a command's own
    ``--config`` for its section (``files``), the environment, then the command's flags;
    checked whole (the ``[reconcile]`` tables too) whichever command reads it."""
    config = PaygateConfig.load(root_config.get(), files=files, database_url=database_url)
    reconcile_config(config)
    return config


def config_for(
    database_url: str | None,
    *,
    files: Mapping[str, Path | None] | None = None,
    database: Literal["current", "existing", "any"] = "current",
) -> PaygateConfig:
    """The configuration, with the command's --database-url if given, once the database is
    known to be fit for the command.

    Opening a SQLite file creates it, and a Gateway migrates what it opens: so a mistyped path
    would become a new, empty database that every read answers for ("audit clean"). Only
    ``db upgrade`` and ``demo`` make databases (``database="any"``); ``db current`` reads any
    database that exists (``"existing"``); every other command needs one migrated to the
    code's revision (``"current"``). Anything else stops the command here, before it opens the
    database: one line naming the database and what to run, exit code 2.
    """
    config = guard(lambda: load_config(files, database_url=database_url))
    if database == "current":
        guard(lambda: migrate.require_current(config.database_url))
    elif database == "existing":
        guard(lambda: migrate.require_database(config.database_url))
    return config


def settings_for(
    database_url: str | None, *, database: Literal["current", "existing", "any"] = "current"
) -> Settings:
    """The core settings of :func:`config_for`."""
    return config_for(database_url, database=database).settings


def refund_routes_for(config: PaygateConfig) -> dict[str, RefundRoute]:
    """The refund routes ``[refunds]`` configures, built (keys read and checked) now."""
    from paygate.refunds.routes import build_routes

    return guard(lambda: build_routes(config.refunds))


def close_routes(routes: Mapping[str, RefundRoute]) -> None:
    """Close the HTTP clients of the routes that hold one."""
    for route in routes.values():
        close = getattr(route, "close", None)
        if callable(close):
            close()


def parse_day(text: str, flag: str) -> date:
    """A YYYY-MM-DD option's value, or an InvalidInputError naming the flag (``--as-of``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a date YYYY-MM-DD", field=flag) from None


def guard(action: Callable[[], T]) -> T:
    """Run ``action``; a PaygateError becomes one line on stderr and exit code 2.

    So does a database that cannot be reached from any command (the driver's first line, the
    URL never with its password): no traceback reaches the operator.
    """
    try:
        return action()
    except PaygateError as exc:
        say_error(_flag_named(exc))
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        say_error(f"the database could not be used: {_driver_reason(exc)}")
        raise typer.Exit(2) from None


def say_error(text: str) -> None:
    """``error: TEXT`` on stderr, one line however narrow the terminal (a wrapped path cannot
    be copied back); the text may quote what was typed, so it is never read as markup."""
    err.print(f"[red]error:[/red] {escape(text)}", markup=True, highlight=False, soft_wrap=True)


def _driver_reason(exc: SQLAlchemyError) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    # A driver may quote its connection string: never a password.
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", reason)


def _flag_named(exc: PaygateError) -> str:
    """The error's text, its field named as the operator typed it (``--as-of``, ``ACCOUNT_NO``)
    when it is one of the running command's parameters (``as_of``)."""
    text = str(exc)
    field = exc.field
    context = _running_command()
    if not field or field.startswith("-") or context is None:
        return text
    for param in context.command.params:
        if param.name != field.replace("-", "_"):
            continue
        if getattr(param, "param_type_name", "") == "option":
            longs = [o for o in param.opts if o.startswith("--")]
            named = longs[0] if longs else param.opts[0]
        else:
            named = (param.name or field).upper()
        return text.replace(f"{field}: ", f"{named}: ", 1)
    return text


def _running_command() -> Any:
    """The click context of the command running now, or None (called outside a command).

    typer carries its own copy of click; its context stack is the one a command runs in.
    """
    for module in ("typer._click.globals", "click.globals"):
        find = getattr(sys.modules.get(module), "get_current_context", None)
        if find is not None and (context := find(silent=True)) is not None:
            return context
    return None


# -- output for people and for scripts --------------------------------------------------------


class OutputFormat(StrEnum):
    """How a listing is printed: a table for people, CSV or one JSON document for scripts."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


AsJson = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document (same as --format json)."),
]
Format = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (people), csv or json (scripts).", show_default=True),
]
Limit = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        help="At most this many rows; the next page's cursor is printed (default: all).",
        show_default=False,
    ),
]
After = Annotated[
    str | None,
    typer.Option(
        "--after",
        help="The cursor a previous page printed: list from there on.",
        show_default=False,
    ),
]

Cell = str | int | bool | Money | datetime | date | None


@dataclass(frozen=True)
class Column:
    """One column of a listing: its key in JSON and CSV, its header in the table."""

    key: str
    header: str


@dataclass
class Listing:
    """Rows to print, one way for people and the same rows for scripts (see :func:`emit`).

    ``rows`` map each column's key to a cell: text, a number, Money (JSON: ``minor``,
    ``currency``, ``display``), a datetime (ISO 8601 in ``zone``, the business zone) or a date.
    ``head`` holds the fields of a report that are not rows (JSON: top-level keys; table: one
    ``key: value`` line each before the table). ``next`` is the cursor of the next page;
    ``summary`` a closing line for people (stderr, never in JSON or CSV).
    """

    columns: Sequence[Column]
    rows: list[dict[str, Cell]]
    zone: str
    next: str | None = None
    head: dict[str, Cell] = field(default_factory=dict)
    summary: str | None = None


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and the noun in the number it takes: ``1 finding``, ``2 findings``."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def local_time(instant: datetime, zone: str) -> str:
    """ISO 8601 in the business zone, with its offset: ``2026-11-24T08:00:00+08:00``."""
    return instant.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def _json_cell(value: Cell, zone: str) -> object:
    if isinstance(value, Money):
        return {"minor": value.minor, "currency": value.currency, "display": str(value)}
    if isinstance(value, datetime):
        return local_time(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _text_cell(value: Cell, zone: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, datetime):
        return local_time(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    return terminal_text(str(value))


# A spreadsheet runs a cell that starts like a formula; text from statements is not trusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Cell, zone: str) -> str:
    text = _text_cell(value, zone)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def chosen_format(as_json: bool, fmt: OutputFormat) -> OutputFormat:
    """``--json`` is ``--format json``."""
    return OutputFormat.JSON if as_json else fmt


def emit(listing: Listing, fmt: OutputFormat) -> None:
    """Print ``listing``: a table on a terminal; tab-separated lines when piped (never cut
    short); CSV; or one JSON document ``{…head, "items": [...], "next": cursor|null}``."""
    zone = listing.zone
    keys = [c.key for c in listing.columns]
    if fmt is OutputFormat.JSON:
        document: dict[str, object] = {k: _json_cell(v, zone) for k, v in listing.head.items()}
        document["items"] = [
            {k: _json_cell(row.get(k), zone) for k in keys} for row in listing.rows
        ]
        document["next"] = listing.next
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    if fmt is OutputFormat.CSV:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(keys)
        for row in listing.rows:
            writer.writerow([_csv_cell(row.get(k), zone) for k in keys])
        typer.echo(buffer.getvalue(), nl=False)
    else:
        for key, value in listing.head.items():
            typer.echo(f"{key}: {_text_cell(value, zone)}")
        cells = [[_text_cell(row.get(k), zone) for k in keys] for row in listing.rows]
        _table([c.header for c in listing.columns], cells)
    if listing.next is not None:
        err.print(f"next page: --after {listing.next}", highlight=False, markup=False)
    if listing.summary:
        err.print(listing.summary, highlight=False, markup=False, soft_wrap=True)


def _table(headers: list[str], cells: list[list[str]]) -> None:
    if not out.is_terminal:
        # Piped: one line a row, every value whole, for grep, cut and paste.
        lines = ["\t".join(headers), *("\t".join(row) for row in cells)]
        typer.echo("\n".join(lines))
        return
    # Every column as wide as its widest cell, the table as wide as its widest row: a terminal
    # narrower than that wraps the lines, and a fingerprint or an amount is never shortened.
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    table = Table(
        *(
            RichColumn(h, overflow="fold", min_width=w)
            for h, w in zip(headers, widths, strict=True)
        ),
        width=sum(widths) + 3 * len(widths) + 1,
    )
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    out.print(table, crop=False)


def page(
    rows: list[T], limit: int | None, cursor: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``rows`` (read as ``limit + 1``) and the next page's cursor."""
    if limit is None or len(rows) <= limit:
        return rows, None
    shown = rows[:limit]
    return shown, cursor(shown[-1])


def int_cursor(after: str | None) -> int:
    """``--after`` as the id it holds (0: from the start), or an error naming the flag."""
    if after is None:
        return 0
    if not after.isdigit():
        raise InvalidInputError(f"{after!r} is not a cursor this listing printed", field="--after")
    return int(after)


# -- help -------------------------------------------------------------------------------------

# typer labels each value with its Python type (``<str>``, ``<bool>``); help says what to type.
_VALUE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}


def _value_label(shown: str | None) -> str | None:
    if shown is None or shown == "<bool>":
        return None
    return re.sub(
        r"<([a-z]+)(?: range)?(\.*)>",
        lambda m: _VALUE_NAMES.get(m.group(1), m.group(1).upper()) + m.group(2),
        shown,
    )


def _plain_labels(kind: type[TyperOption] | type[TyperArgument]) -> None:
    typed = kind.display_type_rich

    def display_type_rich(self: TyperOption | TyperArgument, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        return _value_label(typed(self, ctx))  # type: ignore[arg-type]

    kind.display_type_rich = display_type_rich  # type: ignore[method-assign]


_plain_labels(TyperOption)
_plain_labels(TyperArgument)


def _usage_error_line(error: Any) -> None:
    """A flag typer refuses (an unknown option, a bad value): one line like every other
    refusal, naming the help to read, instead of a framed box."""
    context = getattr(error, "ctx", None)
    where = f" (see `{context.command_path} --help`)" if context is not None else ""
    say_error(f"{error.format_message()}{where}")


rich_utils.rich_format_error = _usage_error_line  # type: ignore[assignment]
