"""What every ``paygate`` sub-command shares: the --database-url and --actor options, settings,
consoles, and the one way errors are shown (one line naming the problem, exit code 2)."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from paygate.config import PaygateConfig, Settings
from paygate.errors import InvalidInputError, PaygateError
from paygate.reconcile.config import reconcile_config
from paygate.store import migrate

__all__ = [
    "Actor",
    "DatabaseUrl",
    "actor_name",
    "config_for",
    "err",
    "guard",
    "load_config",
    "out",
    "root_config",
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


def parse_day(text: str, flag: str) -> date:
    """A YYYY-MM-DD option's value, or an InvalidInputError naming the flag (``--as-of``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a date YYYY-MM-DD", field=flag) from None


def guard(action: Callable[[], T]) -> T:
    """Run ``action``; a PaygateError becomes one line on stderr and exit code 2."""
    try:
        return action()
    except PaygateError as exc:
        # The message may quote what was typed ("[/]" is not a date): never read it as markup.
        # One line however narrow the terminal: a wrapped path cannot be copied back.
        err.print(
            f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
