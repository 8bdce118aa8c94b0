"""``paygate staff``: the service centre's staff who sign in to the console.

A password is read from a prompt (typed twice, not echoed) or, with ``--password-stdin``, as
the first line of standard input; never from a flag, which the shell's history and the
process list would keep. It is hashed with argon2 and never printed or logged. A staff member
who signs in through the identity provider is linked to the provider's name for them
(``--oidc-identity``, ``paygate staff link``); their role stays the one given here. Adding,
linking and disabling a staff member are written to the console's audit trail (``/console/audit``)
with the person who did it (``--actor``, by default the operating-system user) and their
``--reason``, which is required. Errors are one line naming the problem, exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from paygate.cli._common import (
    Actor,
    After,
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Limit,
    Listing,
    OutputFormat,
    actor_name,
    chosen_format,
    emit,
    guard,
    int_cursor,
    out,
    page,
    settings_for,
)
from paygate.config import Settings
from paygate.console.audit import AuditTrail
from paygate.console.staff import MIN_PASSWORD_LENGTH, Role, StaffMember, StaffRegistry
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway

__all__ = ["staff_app"]

T = TypeVar("T")

staff_app = typer.Typer(
    help="Staff of the service centre who sign in to the console (/console).",
    no_args_is_help=True,
)


OidcIdentity = Annotated[
    str | None,
    typer.Option(
        "--oidc-identity",
        help="Let them sign in through the identity provider (\\[console.oidc]) as this: the "
        "value of its staff_claim (their e-mail address by default).",
    ),
]


Reason = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why, for the audit trail (required).",
        show_default=False,
    ),
]


def _with_registry(
    database_url: str | None, work: Callable[[StaffRegistry], T], settings: Settings | None = None
) -> T:
    def run() -> T:
        chosen = settings if settings is not None else settings_for(database_url)
        with Gateway.open(settings=chosen) as gateway:
            return work(StaffRegistry(gateway.store, gateway.clock))

    return guard(run)


def _audited(
    database_url: str | None,
    action: str,
    subject: str,
    actor: str | None,
    reason: str,
    work: Callable[[StaffRegistry], StaffMember],
    settings: Settings | None = None,
) -> StaffMember:
    """``work`` on the registry under the console's audit trail: requested, then done or
    refused with the refusal's words, by ``actor`` (default: the operating-system user)."""

    def run() -> StaffMember:
        chosen = settings if settings is not None else settings_for(database_url)
        with Gateway.open(settings=chosen) as gateway:
            registry = StaffRegistry(gateway.store, gateway.clock)
            trail = AuditTrail(gateway.store, gateway.clock)
            return trail.act(
                actor_name(actor), None, action, subject[:160], reason,
                lambda: work(registry), describe=lambda member: member.username,
            )  # fmt: skip

    return guard(run)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise InvalidInputError("no password on standard input", field="--password-stdin")
        return line
    typed: str = typer.prompt(
        f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
        hide_input=True,
        confirmation_prompt=True,
    )
    return typed


@staff_app.command(
    "add",
    epilog="Example: paygate staff add li.na --role clerk --name 李娜 --reason 'new clerk, desk 3'",
)
def staff_add(
    username: Annotated[str, typer.Argument(help="The user name to sign in with, e.g. li.na.")],
    role: Annotated[
        Role,
        typer.Option("--role", help="clerk, finance, supervisor or admin.", show_default=False),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="The name shown in the console.")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ] = False,
    oidc_identity: OidcIdentity = None,
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a staff member; the password is prompted (or read from stdin), never a flag."""
    # The database and the reason are checked before anyone types a password.
    settings = settings_for(database_url)
    guard(lambda: _require_reason(reason))
    password = guard(lambda: _read_password(password_stdin))
    member = _audited(
        database_url, "staff_add", f"staff:{username.strip().lower()}:{role.value}", actor,
        reason,
        lambda registry: registry.add(
            username, role, password, display_name=name, oidc_identity=oidc_identity
        ),
        settings,
    )  # fmt: skip
    linked = f", signs in through the provider as {member.oidc_identity}" if oidc_identity else ""
    out.print(
        f"added {member.username} ({member.role.value}){linked}", highlight=False, soft_wrap=True
    )


@staff_app.command(
    "link",
    epilog="Example: paygate staff link li.na li.na@grid.example --reason 'identity provider'",
)
def staff_link(
    username: Annotated[str, typer.Argument(help="The staff member to link.")],
    identity: Annotated[
        str | None,
        typer.Argument(
            help="The identity provider's name for them: the value of \\[console.oidc] "
            "staff_claim (their e-mail address by default).",
            show_default=False,
        ),
    ] = None,
    unlink: Annotated[
        bool, typer.Option("--unlink", help="Remove the link: no sign-in through the provider.")
    ] = False,
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Link a staff member to the identity provider's name for them (one staff member each)."""
    if (identity is None) != unlink:
        guard(lambda: _refuse_link())
    guard(lambda: _require_reason(reason))
    subject = f"staff:{username.strip().lower()}->{identity if identity is not None else '-'}"
    member = _audited(
        database_url, "staff_link", subject, actor, reason,
        lambda registry: registry.link(username, identity),
    )  # fmt: skip
    if member.oidc_identity is None:
        out.print(f"unlinked {member.username}", highlight=False, soft_wrap=True)
    else:
        out.print(
            f"linked {member.username} to {member.oidc_identity}", highlight=False, soft_wrap=True
        )


def _refuse_link() -> None:
    raise InvalidInputError("give an identity, or --unlink (not both)", field="identity")


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise InvalidInputError("a reason is required, for the audit trail", field="--reason")


@staff_app.command(
    "disable", epilog="Example: paygate staff disable li.na --reason 'left the service centre'"
)
def staff_disable(
    username: Annotated[str, typer.Argument(help="The staff member to refuse from now on.")],
    reason: Reason = "",
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Disable a staff member: their sessions end now and no sign-in succeeds."""
    guard(lambda: _require_reason(reason))
    member = _audited(
        database_url, "staff_disable", f"staff:{username.strip().lower()}", actor, reason,
        lambda registry: registry.disable(username),
    )  # fmt: skip
    out.print(f"disabled {member.username}", highlight=False, soft_wrap=True)


STAFF_COLUMNS = (
    Column("username", "user"),
    Column("name", "name"),
    Column("role", "role"),
    Column("status", "status"),
    Column("created_at", "registered"),
    Column("last_signin_at", "last sign-in"),
    Column("locked_until", "locked until"),
    Column("disabled_at", "disabled"),
    Column("oidc_identity", "provider identity"),
)


@staff_app.command("list", epilog="Example: paygate staff list --format csv")
def staff_list(
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """List the staff with role and status (never a password or its hash)."""
    start = guard(lambda: int_cursor(after))
    found = _with_registry(
        database_url,
        lambda registry: registry.list(limit=None if limit is None else limit + 1, after=start),
    )
    shown, cursor = page(found, limit, lambda m: str(m.id))
    zone = guard(lambda: settings_for(database_url)).timezone
    rows: list[dict[str, Cell]] = [
        {
            "username": m.username,
            "name": m.display_name,
            "role": m.role.value,
            "status": "active" if m.active else "disabled",
            "created_at": m.created_at,
            "last_signin_at": m.last_signin_at,
            "locked_until": m.locked_until,
            "disabled_at": m.disabled_at,
            "oidc_identity": m.oidc_identity,
        }
        for m in shown
    ]
    emit(Listing(STAFF_COLUMNS, rows, zone, next=cursor), chosen_format(as_json, fmt))
