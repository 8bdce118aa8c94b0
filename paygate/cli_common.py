"""What every ``paygate`` sub-command shares: the --database-url and --actor options, settings,
consoles, and the one way errors are shown (one line naming the problem, exit code 2)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from paygate.config import Settings
from paygate.errors import PaygateError

__all__ = ["Actor", "DatabaseUrl", "actor_name", "err", "guard", "out", "settings_for"]

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


def settings_for(database_url: str | None) -> Settings:
    """Settings from the environment, with the command's --database-url if given."""
    return Settings.from_env(database_url=database_url)


def guard(action: Callable[[], T]) -> T:
    """Run ``action``; a PaygateError becomes one line on stderr and exit code 2."""
    try:
        return action()
    except PaygateError as exc:
        # The message may quote what was typed ("[/]" is not a date): never read it as markup.
        err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False)
        raise typer.Exit(2) from None
