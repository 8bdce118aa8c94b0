"""``paygate events``: outbox events no sink took: list them and requeue them."""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.cli._common import (
    After,
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Limit,
    Listing,
    OutputFormat,
    chosen_format,
    emit,
    guard,
    int_cursor,
    out,
    page,
    plural,
    settings_for,
)
from paygate.gateway import Gateway

__all__ = ["events_app"]

events_app = typer.Typer(help="Outbox events no sink took: list and requeue.", no_args_is_help=True)


EVENT_COLUMNS = (
    Column("event_id", "EVENT"),
    Column("event_type", "type"),
    Column("account_no", "account"),
    Column("attempts", "attempts"),
    Column("dead_at", "dead since"),
    Column("last_error", "last error"),
)

# What one listing shows when --limit is not given: the dead letters are a queue to work off.
DEAD_PAGE = 1000


@events_app.command("dead", epilog="Example: paygate events dead --limit 100 --json")
def events_dead(
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """List dead-lettered events, oldest first, id first, with the last error
    (--limit: default 1000 a page)."""
    from paygate.outbox import dead_letters

    size = limit or DEAD_PAGE

    def run() -> Listing:
        start = int_cursor(after)
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            dead = dead_letters(gateway, limit=size + 1, after=start)
            zone = gateway.settings.timezone
        shown, cursor = page(dead, size, lambda e: str(e.event_id))
        rows: list[dict[str, Cell]] = [
            {
                "event_id": e.event_id,
                "event_type": e.event_type,
                "account_no": e.account_no,
                "attempts": e.attempts,
                "dead_at": e.dead_at,
                "last_error": e.last_error,
            }
            for e in shown
        ]
        summary = f"{len(rows)} dead-lettered" + (" (this page)" if cursor or after else "")
        return Listing(EVENT_COLUMNS, rows, zone, next=cursor, summary=summary)

    emit(guard(run), chosen_format(as_json, fmt))


@events_app.command("requeue", epilog="Example: paygate events requeue 17 18")
def events_requeue(
    event_ids: Annotated[list[int] | None, typer.Argument(help="Event ids (see events dead).")] = (
        None
    ),
    all_dead: Annotated[bool, typer.Option("--all", help="Every dead-lettered event.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Put dead-lettered events back in the queue, due at once with a fresh attempt count."""
    from paygate.errors import InvalidInputError
    from paygate.outbox import requeue

    def run() -> int:
        if bool(event_ids) == all_dead:
            raise InvalidInputError("name event ids or --all, not both", field="EVENT_IDS")
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            return requeue(gateway, None if all_dead else event_ids)

    count = guard(run)
    out.print(f"{plural(count, 'event')} requeued")
