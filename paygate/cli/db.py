"""``paygate db``: create and upgrade the database schema (Alembic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

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


@db_app.command("partitions", epilog="Example: paygate db partitions --months-ahead 2 --json")
def db_partitions(
    database_url: DatabaseUrl = None,
    months_ahead: Annotated[
        int, typer.Option(min=0, max=24, help="Also create the partitions of this many months.")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="The partitions as JSON.")] = False,
) -> None:
    """Create the monthly partitions of the journal, postings and outbox for this month and the
    months ahead, move new ids into this month's range, and list the partitions (PostgreSQL;
    SQLite has none). Run it daily: it does nothing when there is nothing to do."""
    from paygate.gateway import Gateway
    from paygate.store import partitions

    def run() -> tuple[partitions.MaintenanceReport, list[partitions.Partition]]:
        today = datetime.now(UTC).date()
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            report = gateway.store.run(
                lambda tx: partitions.maintain(tx, today, months_ahead=months_ahead)
            )
            listing = gateway.store.run(partitions.partitions, write=False)
        return report, listing

    report, listing = guard(run)
    if as_json:
        rows = [
            {
                "table": p.table,
                "partition": p.name,
                "first_id": p.low,
                "end_id": p.high,
                "rows_estimate": p.rows_estimate,
            }
            for p in listing
        ]
        out.print_json(json.dumps({"created": report.created, "partitions": rows}))
        return
    if not report.supported:
        out.print("this database has no partitions (SQLite): nothing to do")
        return
    for name in report.created:
        out.print(f"created {name}", highlight=False)
    if report.sequence_moved_to is not None:
        out.print(f"new ids from {report.sequence_moved_to}", highlight=False)
    for p in listing:
        low = "-" if p.low is None else str(p.low)
        high = "-" if p.high is None else str(p.high)
        out.print(
            f"{p.table}\t{p.name}\tids {low} to {high}\t~{p.rows_estimate} rows",
            highlight=False,
            markup=False,
        )
