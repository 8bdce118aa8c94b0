"""``paygate reconcile``, ``paygate suspense``, ``paygate exceptions``: reconciliation for finance.

Invariant: the exit code of ``paygate reconcile`` tells a script what to do next, and only
that: 0 every channel day is fully reconciled (no exception, nothing in suspense, the bank leg
found when a bank statement was given); 1 exceptions remain for people; 2 an input could not
be read (the message names the file and line) or the command could not run. A file that cannot
be read posts nothing.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). Who acted (``--actor``) defaults to the operating-system user, and
is recorded with every resolution.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from paygate.channels.base import ChannelRegistry
from paygate.cli_common import settings_for
from paygate.config import Settings
from paygate.errors import InvalidInputError, ParseError, PaygateError
from paygate.gateway import Gateway
from paygate.reconcile.bank import BankFormat
from paygate.reconcile.bank_leg import reconcile_bank_file
from paygate.reconcile.config import (
    ReconcileConfig,
    channel_rules,
    load_config,
    statement_path,
    statement_reader,
)
from paygate.reconcile.engine import reconcile_file
from paygate.reconcile.model import FindingClass, ReconciliationRun, ResolutionAction
from paygate.reconcile.report import summary_table, write_report
from paygate.reconcile.resolution import (
    assign_suspense,
    release_suspense,
    resolve_finding,
    suspense_items,
)
from paygate.reconcile.runs import findings, list_runs, load_run

__all__ = ["exceptions_app", "reconcile_app", "suspense_app"]

T = TypeVar("T")

EXIT_RECONCILED = 0
EXIT_EXCEPTIONS = 1
EXIT_UNREADABLE = 2

# Files from this size on get a progress bar: a channel's day that takes more than a moment.
LARGE_FILE = 1 << 20

reconcile_app = typer.Typer(
    help="Reconcile channel statements (and the bank statement) against the ledger.",
)
suspense_app = typer.Typer(
    help="Money in suspense: statement lines whose account is unknown.", no_args_is_help=True
)
exceptions_app = typer.Typer(
    help="Findings that wait for a person: list them, reverse or confirm.", no_args_is_help=True
)

out = Console()
err = Console(stderr=True)

# Declared here rather than imported from paygate.cli: that module mounts these apps.
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
    typer.Option(help="Who acts, for the audit record (default: the operating-system user)."),
]


def _settings(database_url: str | None) -> Settings:
    return settings_for(database_url)


def _actor(given: str | None) -> str:
    if given:
        return given[:64]
    try:
        return getpass.getuser()[:64] or "finance"
    except (KeyError, OSError):
        return "finance"


def _say_error(exc: BaseException) -> None:
    # The message may quote file content: never read it as markup.
    err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)


def _guard(action: Callable[[], T]) -> T:
    try:
        return action()
    except PaygateError as exc:
        _say_error(exc)
        raise typer.Exit(EXIT_UNREADABLE) from None


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{text!r} is not a date YYYY-MM-DD", field="date") from None


@contextmanager
def _progress(label: str, path: Path) -> Iterator[Callable[[int, int | None], None]]:
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=size < LARGE_FILE,
    )
    with bar:
        task = bar.add_task(label, total=size or None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _unreadable(exc: ParseError | OSError, path: Path) -> None:
    if isinstance(exc, OSError):
        err.print(
            f"[red]error:[/red] {escape(str(path))}: cannot be read: "
            f"{escape(exc.strerror or str(exc))}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
        return
    where = exc.source or str(path)
    line = f":{exc.line}" if exc.line is not None else ""
    field = f" ({exc.field})" if exc.field else ""
    err.print(
        f"[red]error:[/red] {escape(where)}{line}: {escape(exc.message)}{escape(field)}; "
        "nothing was posted",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )


def _channel_run(
    gateway: Gateway,
    channel: str,
    day: date,
    statement: Path | None,
    config: ReconcileConfig,
    registry: ChannelRegistry,
) -> ReconciliationRun | None:
    """One channel's run, or None when its file could not be read (already reported)."""
    setup = config.channel(channel)
    rules = channel_rules(channel, setup, registry)
    if statement is None:
        if setup.statement is None:
            raise InvalidInputError(
                f"no statement for {channel}: give --statement or a statement pattern in the "
                "configuration",
                field="statement",
            )
        statement = statement_path(
            setup.statement, day, rules.settlement_date(day), config.base_dir
        )
    reader = statement_reader(channel, setup, registry)
    try:
        with _progress(f"{channel} {statement.name}", statement) as progress:
            return reconcile_file(
                gateway,
                channel,
                day,
                statement,
                reader=reader,
                policy=config.policy,
                rules=rules,
                progress=progress,
            )
    except (ParseError, OSError) as exc:
        _unreadable(exc, statement)
        return None


def _bank_run(
    gateway: Gateway,
    bank: Path,
    fmt: str,
    config: ReconcileConfig,
    actor: str,
) -> ReconciliationRun | None:
    references = {
        name: setup.bank_reference
        for name, setup in config.channels.items()
        if setup.bank_reference
    }
    try:
        return reconcile_bank_file(
            gateway,
            bank,
            format=fmt,
            csv_layout=config.bank.csv,
            references=references,
            actor=actor,
        )
    except (ParseError, OSError) as exc:
        _unreadable(exc, bank)
        return None


def _exit_code(
    channel_runs: list[ReconciliationRun],
    bank: ReconciliationRun | None,
    *,
    unreadable: bool,
    every_channel: bool,
) -> int:
    if unreadable:
        return EXIT_UNREADABLE
    if any(not run.fully_reconciled for run in channel_runs):
        return EXIT_EXCEPTIONS
    if bank is not None:
        if any(run.settlement is None and run.net.minor > 0 for run in channel_runs):
            return EXIT_EXCEPTIONS
        # Reconciling one channel, credits of the other channels are expected on the statement;
        # a statement that does not balance is an exception either way.
        if bank.total(FindingClass.BANK_UNBALANCED).count:
            return EXIT_EXCEPTIONS
        if every_channel and bank.exceptions:
            return EXIT_EXCEPTIONS
    return EXIT_RECONCILED


@reconcile_app.callback(
    invoke_without_command=True, context_settings={"allow_interspersed_args": True}
)
def reconcile(
    channel: Annotated[
        str | None, typer.Argument(help="The channel (alipay, kiosk, …); or --all.")
    ] = None,
    business_date: Annotated[
        str, typer.Option("--date", help="The channel business date, YYYY-MM-DD.")
    ] = "",
    statement: Annotated[
        Path | None, typer.Option(help="The channel's statement file (else the configured one).")
    ] = None,
    bank: Annotated[
        Path | None, typer.Option(help="The utility's bank statement: closes the bank leg.")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="Bank statement format: auto, mt940, camt053, bai2, csv."),
    ] = "auto",
    report: Annotated[
        Path | None, typer.Option(help="Write a report: PATH.html, PATH.csv or PATH.json.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML: statement patterns, bank references, policy."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every channel the configuration names.")
    ] = False,
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Reconcile CHANNEL's statement for --date (or --all channels) and report.

    Exit code 0: fully reconciled; 1: exceptions remain; 2: an input could not be read.
    """
    unreadable = False

    def setup() -> tuple[date, ReconcileConfig, list[str], str]:
        day = _day(business_date) if business_date else None
        if day is None:
            raise InvalidInputError("--date YYYY-MM-DD is required", field="date")
        if every == (channel is not None):
            raise InvalidInputError("name one CHANNEL, or --all", field="channel")
        config = (
            load_config(config_file)
            if config_file is not None
            else ReconcileConfig(base_dir=Path.cwd())
        )
        names = sorted(config.channels) if every else [str(channel)]
        if every and not names:
            raise InvalidInputError("--all needs a configuration naming channels", field="config")
        if every and statement is not None:
            raise InvalidInputError("--statement names one channel's file", field="statement")
        chosen = fmt if fmt != "auto" else config.bank.format
        if chosen != "auto":
            try:
                BankFormat(chosen)
            except ValueError:
                raise InvalidInputError(
                    f"--format must be auto or one of {', '.join(f.value for f in BankFormat)}",
                    field="format",
                ) from None
        return day, config, names, chosen

    day, config, names, bank_format = _guard(setup)
    who = _actor(actor)
    if actor:
        config = config.model_copy(
            update={"policy": config.policy.model_copy(update={"actor": who})}
        )
    registry = _guard(ChannelRegistry.discover)

    def run() -> tuple[list[ReconciliationRun], ReconciliationRun | None, bool]:
        failed = False
        runs: list[ReconciliationRun] = []
        with Gateway.open(settings=_settings(database_url)) as gateway:
            for name in names:
                found = _channel_run(gateway, name, day, statement, config, registry)
                if found is None:
                    failed = True
                else:
                    runs.append(found)
            bank_file = bank
            if bank_file is None and every and config.bank.statement:
                bank_file = statement_path(
                    config.bank.statement, day, day + timedelta(days=1), config.base_dir
                )
            bank_run = None
            if bank_file is not None:
                bank_run = _bank_run(gateway, bank_file, bank_format, config, who)
                failed = failed or bank_run is None
                # The bank leg may have settled the runs just made: read them again.
                runs = [load_run(gateway, r.id, replayed=r.replayed) for r in runs]
            shown = [*runs, *([bank_run] if bank_run is not None else [])]
            if shown:
                out.print(summary_table(shown))
                for r in runs:
                    if r.superseded_by is None and r.supersedes is not None:
                        out.print(f"run {r.id} supersedes run {r.supersedes} (another file)")
            if report is not None and shown:
                write_report(gateway, shown, report)
                out.print(f"report written to {report}", markup=False, highlight=False)
        return runs, bank_run, failed

    runs, bank_run, unreadable = _guard(run)
    code = _exit_code(runs, bank_run, unreadable=unreadable, every_channel=every)
    if code == EXIT_EXCEPTIONS:
        err.print("exceptions remain: see `paygate exceptions list` and `paygate suspense list`")
    raise typer.Exit(code)


def _line(*fields: str) -> None:
    out.print("\t".join(fields), markup=False, highlight=False, soft_wrap=True)


# -- suspense -------------------------------------------------------------------------------


@suspense_app.command("list")
def suspense_list(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Money waiting in suspense, oldest first: the LINE number is what `assign` takes."""

    def run() -> None:
        with Gateway.open(settings=_settings(database_url)) as gateway:
            items = suspense_items(gateway, channel=channel)
        # One line an item, whole (no table to cut it short): people grep and paste these.
        _line(
            "LINE", "channel", "business date", "file line", "transaction", "account named",
            "amount", "since",
        )  # fmt: skip
        for item in items:
            _line(
                str(item.id),
                item.channel,
                str(item.business_date),
                "" if item.line_no is None else str(item.line_no),
                item.channel_txn_id or "",
                item.account_no or "",
                str(item.amount),
                item.since.isoformat(timespec="minutes"),
            )
        out.print(f"{len(items)} item{'s' if len(items) != 1 else ''} in suspense")

    _guard(run)


@suspense_app.command("assign")
def suspense_assign(
    line: Annotated[int, typer.Argument(help="The suspense item (LINE in `suspense list`).")],
    account: Annotated[str, typer.Argument(help="The customer account the money is for.")],
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Move an item out of suspense and post it as the account's payment (once only)."""

    def run() -> None:
        with Gateway.open(settings=_settings(database_url)) as gateway:
            receipt = assign_suspense(gateway, line, account, actor=_actor(actor))
        out.print(
            f"suspense item {line} posted to {receipt.account_no}: payment {receipt.payment_id}, "
            f"{receipt.amount}; arrears after {receipt.arrears_after}"
            + (
                f"; reconnection order {receipt.reconnection_order_id}"
                if receipt.reconnection_order_id
                else ""
            ),
            markup=False,
            highlight=False,
        )

    _guard(run)


@suspense_app.command("release")
def suspense_release(
    line: Annotated[int, typer.Argument(help="The suspense item (LINE in `suspense list`).")],
    reason: Annotated[str, typer.Option(help="Why the money leaves suspense unassigned.")],
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Take an item back out of suspense (the channel withdrew the line)."""

    def run() -> None:
        with Gateway.open(settings=_settings(database_url)) as gateway:
            entry = release_suspense(gateway, line, actor=_actor(actor), reason=reason)
        out.print(f"suspense item {line} released (journal entry {entry})")

    _guard(run)


# -- exceptions -----------------------------------------------------------------------------


@exceptions_app.command("list")
def exceptions_list(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    business_date: Annotated[
        str | None, typer.Option("--date", help="Only this business date.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Open exceptions of the current runs: FINDING (run:number), what, amount, note."""

    def run() -> int:
        day = _day(business_date) if business_date else None
        count = 0
        with Gateway.open(settings=_settings(database_url)) as gateway:
            _line("FINDING", "channel", "date", "class", "line", "subject", "amount", "note")
            for current in list_runs(gateway, channel=channel, business_date=day):
                for f in findings(gateway, current.id, exceptions_only=True):
                    count += 1
                    _line(
                        f"{current.id}:{f.seq}",
                        current.channel,
                        str(current.business_date),
                        f.finding_class.value,
                        "" if f.line_no is None else str(f.line_no),
                        f.channel_txn_id or f.reference or f.line_key,
                        str(f.amount),
                        f.note or "",
                    )
        return count

    count = _guard(run)
    out.print(f"{count} exception{'s' if count != 1 else ''}")


@exceptions_app.command("resolve")
def exceptions_resolve(
    finding: Annotated[str, typer.Argument(help="FINDING as listed: RUN:NUMBER.")],
    reason: Annotated[str, typer.Option(help="Why: recorded with the resolution.")],
    reverse: Annotated[
        bool, typer.Option("--reverse", help="Reverse the payment (through the Gateway).")
    ] = False,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Confirm the ledger as it stands.")
    ] = False,
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Resolve one exception: --reverse the payment it names, or --confirm the ledger."""

    def run() -> None:
        if reverse == confirm:
            raise InvalidInputError("choose --reverse or --confirm", field="action")
        run_text, _, seq_text = finding.partition(":")
        if not (run_text.isdigit() and seq_text.isdigit()):
            raise InvalidInputError(f"{finding!r} is not RUN:NUMBER", field="finding")
        action = ResolutionAction.REVERSED if reverse else ResolutionAction.CONFIRMED
        with Gateway.open(settings=_settings(database_url)) as gateway:
            done = resolve_finding(
                gateway, int(run_text), int(seq_text), action, actor=_actor(actor), reason=reason
            )
        out.print(
            f"finding {finding}: {done.action.value} by {done.actor}",
            markup=False,
            highlight=False,
        )

    _guard(run)
