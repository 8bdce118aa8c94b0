"""``paygate db``: create and upgrade the database schema (Alembic)."""

from __future__ import annotations

import typer

from paygate.cli._common import DatabaseUrl, guard, out, settings_for
from paygate.store import migrate

__all__ = ["db_app"]

db_app = typer.Typer(help="Create and upgrade the database schema.", no_args_is_help=True)


@db_app.command("upgrade", epilog="Example: paygate db upgrade --database-url sqlite:///paygate.db")
def db_upgrade(database_url: DatabaseUrl = None, revision: str = "head") -> None:
    """Create the database if it is not there, and apply the schema migrations (Alembic) up to
    REVISION."""
    settings = settings_for(database_url, database="any")
    guard(lambda: migrate.upgrade(settings.database_url, revision))
    current = guard(lambda: migrate.current_revision(settings.database_url))
    out.print(f"database at revision {current}")


@db_app.command("current", epilog="Example: paygate db current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database and of the code."""
    settings = settings_for(database_url, database="existing")
    current = guard(lambda: migrate.current_revision(settings.database_url))
    head = guard(migrate.head_revision)
    out.print(f"database: {current or 'empty'}  code: {head}")
