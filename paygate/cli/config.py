"""``paygate config``: the configuration in effect, each value with where it came from.

No database is opened: ``config show`` reads the configuration file, the environment and the
flags as every other command does, checks them (the ``[reconcile]`` tables included), and
prints each value by its dotted key with its source (``default``, ``file``, ``env``, ``given``).
Secrets are never values of the configuration (only the names of the variables that hold them);
a value under a secret's name, and a database URL's password, are shown masked.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from paygate.cli._common import DatabaseUrl, guard, load_config, out

__all__ = ["config_app", "show"]

config_app = typer.Typer(
    help="The configuration: what is in effect, and where each value comes from.",
    no_args_is_help=True,
)


@config_app.command("show", epilog="Example: paygate config show --json")
def show(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per value, in a list.")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the effective configuration: every key, its value (secrets masked), its source."""
    config = guard(lambda: load_config(database_url=database_url))
    rows = [
        {"key": key, "value": value, "source": origin.source, "where": origin.where or None}
        for key, value, origin in config.entries()
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        source = f"{row['source']} {row['where']}" if row["where"] else row["source"]
        value = json.dumps(row["value"], ensure_ascii=False)
        out.print(
            f"{row['key']} = {value}  # {source}", highlight=False, soft_wrap=True, markup=False
        )
