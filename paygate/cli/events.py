"""``paygate events``: outbox events no sink took: list them and requeue them."""

from __future__ import annotations

from typing import Annotated

import typer

from paygate.cli._common import DatabaseUrl, err, guard, out, settings_for
from paygate.gateway import Gateway

__all__ = ["events_app"]

events_app = typer.Typer(help="Outbox events no sink took: list and requeue.", no_args_is_help=True)


@events_app.command("dead")
def events_dead(database_url: DatabaseUrl = None) -> None:
    """List dead-lettered events: one a line, id first, with the last error."""
    from paygate.outbox import dead_letters

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            dead = dead_letters(gateway)
        for e in dead:
            out.print(
                f"{e.event_id}\t{e.event_type}\t{e.account_no or '-'}\tattempts {e.attempts}\t"
                f"dead {e.dead_at.isoformat(timespec='seconds')}\t{e.last_error or ''}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        err.print(f"{len(dead)} dead-lettered")

    guard(run)


@events_app.command("requeue")
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
            raise InvalidInputError("name event ids or --all, not both", field="event_ids")
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            return requeue(gateway, None if all_dead else event_ids)

    count = guard(run)
    out.print(f"{count} {'event' if count == 1 else 'events'} requeued")
