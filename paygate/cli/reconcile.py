"""``paygate reconcile``, ``paygate suspense``, ``paygate findings``: reconciliation for finance.

Invariant: the exit code of ``paygate reconcile`` tells a script what to do next, and only
that: 0 every channel day is fully reconciled (no open finding, nothing in suspense, the bank leg
found when a bank statement was given); 1 open findings remain for people; 2 an input could not
be read (the message names the file and line) or the command could not run. Every input (the
options, each channel statement, the bank statement, the report path) is read and checked
before the first decision is written, so exit code 2 means nothing was posted or recorded.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). Who acted (``--actor``) defaults to the operating-system user, and
is recorded with every resolution, automatic ones of the run included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from paygate.channels.base import ChannelRegistry
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
    err,
    guard,
    int_cursor,
    load_config,
    out,
    page,
    parse_day,
    plural,
    say_error,
    settings_for,
)
from paygate.config import Settings
from paygate.errors import InvalidInputError, ParseError
from paygate.gateway import Gateway
from paygate.reconcile.bank import BankFormat
from paygate.reconcile.bank_leg import (
    BankFile,
    check_bank_statements,
    read_bank_file,
    reconcile_bank,
)
from paygate.reconcile.config import (
    ReconcileConfig,
    channel_rules,
    reconcile_config,
    statement_path,
    statement_reader,
)
from paygate.reconcile.engine import PreparedRun, prepare_file
from paygate.reconcile.model import Finding, FindingClass, ReconciliationRun, ResolutionAction
from paygate.reconcile.report import (
    check_report_path,
    summary_table,
    terminal_text,
    unbalanced_statements,
    write_report,
)
from paygate.reconcile.resolution import (
    assign_suspense,
    release_suspense,
    resolve_finding,
    suspense_items,
)
from paygate.reconcile.runs import findings, list_runs, load_run
from paygate.renames import current_channel
from paygate.reports.i18n import Words

__all__ = ["RECONCILE_SETTINGS", "findings_app", "reconcile", "suspense_app"]

# `paygate reconcile alipay --date …` and `paygate reconcile --date … alipay` alike.
RECONCILE_SETTINGS = {"allow_interspersed_args": True}

T = TypeVar("T")

EXIT_RECONCILED = 0
EXIT_OPEN_FINDINGS = 1
EXIT_UNREADABLE = 2

# Files from this size on get a progress bar: a channel's day that takes more than a moment.
LARGE_FILE = 1 << 20

suspense_app = typer.Typer(
    help="Money in suspense: statement lines whose account is unknown.", no_args_is_help=True
)
findings_app = typer.Typer(
    help="Open findings: what reconciliation left for a person; list them, reverse or confirm.",
    no_args_is_help=True,
)


def _settings(database_url: str | None) -> Settings:
    return settings_for(database_url)


_actor = actor_name


def _say_error(exc: BaseException) -> None:
    say_error(str(exc))


_guard = guard


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


def _statement_of(
    channel: str,
    day: date,
    statement: Path | None,
    config: ReconcileConfig,
    registry: ChannelRegistry,
) -> Path:
    """The statement file of ``channel`` for ``day``: --statement, else the configured one."""
    if statement is not None:
        return statement
    setup = config.channel(channel)
    if setup.statement is None:
        raise InvalidInputError(
            f"no statement for {channel}: give --statement or a statement pattern in the "
            "configuration",
            field="--statement",
        )
    rules = channel_rules(channel, setup, registry)
    return statement_path(setup.statement, day, rules.settlement_date(day), config.base_dir)


def _prepare_channel(
    gateway: Gateway,
    channel: str,
    day: date,
    statement: Path,
    config: ReconcileConfig,
    registry: ChannelRegistry,
) -> PreparedRun | None:
    """One channel's statement read and staged, or None when it could not be (reported)."""
    setup = config.channel(channel)
    rules = channel_rules(channel, setup, registry)
    reader = statement_reader(channel, setup, registry)
    try:
        with _progress(f"{channel} {statement.name}", statement) as progress:
            return prepare_file(
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


def _read_bank(
    gateway: Gateway, bank: Path, fmt: str, config: ReconcileConfig, day: date
) -> BankFile | None:
    """The bank statement read whole and checked against the utility's account, or None."""
    try:
        read = read_bank_file(bank, format=fmt, csv_layout=config.bank.csv)
        check_bank_statements(
            read.statements,
            currency=config.bank.currency or gateway.settings.currency,
            account=config.bank.account,
            business_date=day,
            window_days=config.bank.window_days,
            source=read.source,
        )
    except (ParseError, OSError) as exc:
        _unreadable(exc, bank)
        return None
    return read


def _bank_run(
    gateway: Gateway, read: BankFile, config: ReconcileConfig, actor: str, day: date
) -> ReconciliationRun:
    references = {
        name: setup.bank_reference
        for name, setup in config.channels.items()
        if setup.bank_reference
    }
    return reconcile_bank(
        gateway,
        read.statements,
        file_sha256=read.sha256,
        source=read.source,
        references=references,
        actor=actor,
        account=config.bank.account,
        currency=config.bank.currency,
        business_date=day,
        window_days=config.bank.window_days,
    )


def _exit_code(
    channel_runs: list[ReconciliationRun],
    bank: ReconciliationRun | None,
    *,
    unreadable: bool,
    whole_bank: bool,
    bank_open_findings: int,
) -> int:
    if unreadable:
        return EXIT_UNREADABLE
    if any(not run.fully_reconciled for run in channel_runs):
        return EXIT_OPEN_FINDINGS
    if bank is not None:
        if any(run.settlement is None and run.net.minor > 0 for run in channel_runs):
            return EXIT_OPEN_FINDINGS
        # Reconciling one channel, credits of the other channels are expected on the statement;
        # a statement that does not balance, and money out of the account, are open findings
        # either way.
        if bank_open_findings:
            return EXIT_OPEN_FINDINGS
        if whole_bank and bank.open_findings:
            return EXIT_OPEN_FINDINGS
    return EXIT_RECONCILED


def _bank_open_findings(gateway: Gateway, bank: ReconciliationRun | None) -> int:
    """Open findings about the bank statement itself (not about a channel's credit)."""
    if bank is None:
        return 0
    own = [FindingClass.BANK_UNBALANCED, FindingClass.BANK_DEBIT]
    return sum(1 for _ in findings(gateway, bank.id, classes=own, open_findings_only=True))


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
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            help="Language of the HTML report: zh-CN or en (default: \\[reports] lang).",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The configuration file whose \\[reconcile] names statement patterns, bank "
            "references, policy (default: paygate --config, else $PAYGATE_CONFIG).",
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every channel the configuration names.")
    ] = False,
    actor: Actor = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Reconcile CHANNEL's statement for --date (or --all channels, or the --bank statement
    alone) and report.

    Exit code 0: fully reconciled; 1: open findings remain; 2: an input could not be read (nothing
    was posted).
    """

    def setup() -> tuple[date, ReconcileConfig, list[str], str, str]:
        day = parse_day(business_date, "--date") if business_date else None
        if day is None:
            raise InvalidInputError("--date YYYY-MM-DD is required", field="--date")
        if every and channel is not None:
            raise InvalidInputError("name one CHANNEL, or --all", field="CHANNEL")
        if not every and channel is None and bank is None:
            raise InvalidInputError(
                "name one CHANNEL, or --all (or give --bank alone)", field="CHANNEL"
            )
        if lang is not None:
            try:
                Words(lang)
            except InvalidInputError as exc:
                raise InvalidInputError(exc.message, field="--lang") from None
        whole = load_config({"reconcile": config_file})
        config = reconcile_config(whole)
        names = (
            sorted(config.channels)
            if every
            else []
            if channel is None
            else [current_channel(channel, where="CHANNEL", category=FutureWarning)]
        )
        if every and not names:
            raise InvalidInputError("--all needs a configuration naming channels", field="--config")
        if statement is not None and len(names) != 1:
            raise InvalidInputError("--statement names one channel's file", field="--statement")
        chosen = fmt if fmt != "auto" else config.bank.format
        if chosen != "auto":
            try:
                BankFormat(chosen)
            except ValueError:
                raise InvalidInputError(
                    f"--format must be auto or one of {', '.join(f.value for f in BankFormat)}",
                    field="--format",
                ) from None
        if report is not None:
            check_report_path(report)
        return day, config, names, chosen, lang if lang is not None else whole.reports.lang

    day, config, names, bank_format, report_lang = _guard(setup)
    who = _actor(actor)
    # The run's automatic resolutions are recorded as this person's too: --actor, else the
    # configuration's [policy] actor, else the operating-system user.
    if actor or "actor" not in config.policy.model_fields_set:
        config = config.model_copy(
            update={"policy": config.policy.model_copy(update={"actor": who})}
        )
    registry = _guard(ChannelRegistry.discover)
    statements = _guard(
        lambda: [(n, _statement_of(n, day, statement, config, registry)) for n in names]
    )
    bank_file = bank
    if bank_file is None and every and config.bank.statement:
        bank_file = _guard(
            lambda: statement_path(
                str(config.bank.statement), day, day + timedelta(days=1), config.base_dir
            )
        )

    def run() -> tuple[list[ReconciliationRun], ReconciliationRun | None, bool, int]:
        runs: list[ReconciliationRun] = []
        with Gateway.open(settings=_settings(database_url)) as gateway:
            # Every input is read and checked before the first run decides anything.
            read = None
            if bank_file is not None:
                read = _read_bank(gateway, bank_file, bank_format, config, day)
                if read is None:
                    return [], None, True, 0
            prepared: list[PreparedRun] = []
            try:
                for name, path in statements:
                    staged = _prepare_channel(gateway, name, day, path, config, registry)
                    if staged is None:
                        for done in prepared:
                            done.discard()
                        return [], None, True, 0
                    prepared.append(staged)
            except BaseException:
                for done in prepared:
                    done.discard()
                raise
            runs = [p.complete() for p in prepared]
            bank_run = None
            if read is not None:
                bank_run = _bank_run(gateway, read, config, who, day)
                # The bank leg may have settled the runs just made: read them again.
                runs = [load_run(gateway, r.id, replayed=r.replayed) for r in runs]
            shown = [*runs, *([bank_run] if bank_run is not None else [])]
            if shown:
                out.print(summary_table(shown), crop=False)
                if bank_run is not None and (off := unbalanced_statements(gateway, bank_run)):
                    out.print(off, markup=False, highlight=False, soft_wrap=True)
                for r in runs:
                    if r.superseded_by is None and r.supersedes is not None:
                        out.print(f"run {r.id} supersedes run {r.supersedes} (another file)")
            own = _bank_open_findings(gateway, bank_run)
            if report is not None and shown:
                try:
                    write_report(gateway, shown, report, lang=report_lang)
                except InvalidInputError as exc:
                    # Checked before anything was decided, the path failed only now (a full
                    # disk): the runs are recorded, and the same command again only reports.
                    _say_error(exc)
                    err.print(
                        "the reconciliation above is recorded; run the same command again for "
                        "the report (nothing is posted twice)",
                        markup=False,
                        highlight=False,
                    )
                    return runs, bank_run, True, own
                out.print(f"report written to {report}", markup=False, highlight=False)
        return runs, bank_run, False, own

    runs, bank_run, unreadable, own = _guard(run)
    code = _exit_code(
        runs,
        bank_run,
        unreadable=unreadable,
        whole_bank=every or not names,
        bank_open_findings=own,
    )
    if code == EXIT_OPEN_FINDINGS:
        err.print(
            "open findings remain: see `paygate findings list` and `paygate suspense list`",
            markup=False,
            highlight=False,
        )
    raise typer.Exit(code)


def _line(*fields: str) -> None:
    out.print(
        "\t".join(terminal_text(f) for f in fields), markup=False, highlight=False, soft_wrap=True
    )


# -- suspense -------------------------------------------------------------------------------


SUSPENSE_COLUMNS = (
    Column("item", "ITEM"),
    Column("channel", "channel"),
    Column("business_date", "business date"),
    Column("line_no", "file line"),
    Column("channel_txn_id", "transaction"),
    Column("account_no", "account named"),
    Column("amount", "amount"),
    Column("since", "since"),
)


@suspense_app.command("list", epilog="Example: paygate suspense list --channel alipay --limit 100")
def suspense_list(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """Money waiting in suspense, oldest first: the ITEM number is what `assign` and
    `release` take, and what the reports show."""

    def run() -> Listing:
        start = int_cursor(after)
        more = None if limit is None else limit + 1
        with Gateway.open(settings=_settings(database_url)) as gateway:
            items = suspense_items(
                gateway, channel=_channel_option(channel), limit=more, after=start
            )
            zone = gateway.settings.timezone
        shown, cursor = page(items, limit, lambda item: str(item.id))
        rows: list[dict[str, Cell]] = [
            {
                "item": item.id,
                "channel": item.channel,
                "business_date": item.business_date,
                "line_no": item.line_no,
                "channel_txn_id": item.channel_txn_id,
                "account_no": item.account_no,
                "amount": item.amount,
                "since": item.since,
            }
            for item in shown
        ]
        more_text = " (this page)" if cursor is not None or after is not None else ""
        summary = f"{plural(len(rows), 'item')} in suspense{more_text}"
        return Listing(SUSPENSE_COLUMNS, rows, zone, next=cursor, summary=summary)

    emit(_guard(run), chosen_format(as_json, fmt))


@suspense_app.command("assign", epilog="Example: paygate suspense assign 12 3100000001")
def suspense_assign(
    line: Annotated[int, typer.Argument(help="The suspense item (ITEM in `suspense list`).")],
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


@suspense_app.command(
    "release", epilog="Example: paygate suspense release 12 --reason 'withdrawn by the channel'"
)
def suspense_release(
    line: Annotated[int, typer.Argument(help="The suspense item (ITEM in `suspense list`).")],
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


# -- findings -------------------------------------------------------------------------------


FINDING_COLUMNS = (
    Column("finding", "FINDING"),
    Column("channel", "channel"),
    Column("business_date", "date"),
    Column("class", "class"),
    Column("line_no", "line"),
    Column("subject", "subject"),
    Column("ledger", "ledger"),
    Column("statement", "statement"),
    Column("difference", "difference"),
    Column("note", "note"),
)


@findings_app.command("list", epilog="Example: paygate findings list --date 2026-11-25 --json")
def findings_list(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    business_date: Annotated[
        str | None, typer.Option("--date", help="Only this business date.")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """Open findings of the current runs: FINDING (run:number), what, the ledger's amount,
    the statement's, the difference (statement - ledger), note; signed: a refund is negative,
    and its ledger side is the original's reversal, or 0 while the original is still posted."""

    def run() -> Listing:
        day = parse_day(business_date, "--date") if business_date else None
        from_run, from_seq = _finding_cursor(after)
        rows: list[dict[str, Cell]] = []
        cursor = None
        with Gateway.open(settings=_settings(database_url)) as gateway:
            zone = gateway.settings.timezone
            runs = list_runs(gateway, channel=_channel_option(channel), business_date=day)
            if from_run is not None:
                ids = [r.id for r in runs]
                if from_run not in ids:
                    raise InvalidInputError(
                        f"{after!r} is not a cursor of this listing", field="--after"
                    )
                runs = runs[ids.index(from_run) :]
            for current in runs:
                start = from_seq if current.id == from_run else 0
                for f in findings(gateway, current.id, open_findings_only=True, after=start):
                    if limit is not None and len(rows) == limit:
                        cursor = str(rows[-1]["finding"])
                        break
                    rows.append(_finding_row(current, f))
                if cursor is not None:
                    break
        more_text = " (this page)" if cursor is not None or after is not None else ""
        summary = f"{plural(len(rows), 'open finding')}{more_text}"
        return Listing(FINDING_COLUMNS, rows, zone, next=cursor, summary=summary)

    emit(_guard(run), chosen_format(as_json, fmt))


def _finding_cursor(after: str | None) -> tuple[int | None, int]:
    if after is None:
        return None, 0
    run_text, _, seq_text = after.partition(":")
    if not (run_text.isdigit() and seq_text.isdigit()):
        raise InvalidInputError(f"{after!r} is not a cursor RUN:NUMBER", field="--after")
    return int(run_text), int(seq_text)


def _finding_row(current: ReconciliationRun, f: Finding) -> dict[str, Cell]:
    signed = f.signed
    return {
        "finding": f"{current.id}:{f.seq}",
        "channel": current.channel,
        "business_date": current.business_date,
        "class": f.finding_class.value,
        "line_no": f.line_no,
        "subject": f.channel_txn_id or f.reference or f.line_key,
        "ledger": signed.ledger,
        "statement": signed.statement,
        "difference": signed.difference,
        "note": f.note,
    }


RUN_COLUMNS = (
    Column("run", "RUN"),
    Column("kind", "kind"),
    Column("channel", "channel"),
    Column("business_date", "business date"),
    Column("status", "status"),
    Column("lines", "lines"),
    Column("net", "net"),
    Column("open_findings", "open findings"),
    Column("in_suspense", "in suspense"),
    Column("pending", "pending"),
    Column("settled", "bank leg settled"),
    Column("supersedes", "supersedes"),
    Column("completed_at", "completed"),
)


@findings_app.command("runs", epilog="Example: paygate findings runs --channel alipay --limit 30")
def findings_runs(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    business_date: Annotated[
        str | None, typer.Option("--date", help="Only this business date.")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """The current reconciliation runs, newest business date first: per channel and day, what
    was reconciled and what still waits for people."""

    def run() -> Listing:
        day = parse_day(business_date, "--date") if business_date else None
        start = int_cursor(after) if after is not None else None
        with Gateway.open(settings=_settings(database_url)) as gateway:
            runs = list_runs(
                gateway,
                channel=_channel_option(channel),
                business_date=day,
                limit=None if limit is None else limit + 1,
                after=start,
            )
            zone = gateway.settings.timezone
        shown, cursor = page(runs, limit, lambda r: str(r.id))
        rows: list[dict[str, Cell]] = [
            {
                "run": r.id,
                "kind": r.kind.value,
                "channel": r.channel,
                "business_date": r.business_date,
                "status": r.status.value,
                "lines": r.line_count,
                "net": r.net,
                "open_findings": r.open_findings,
                "in_suspense": r.in_suspense,
                "pending": r.pending,
                "settled": r.settlement is not None,
                "supersedes": r.supersedes,
                "completed_at": r.completed_at,
            }
            for r in shown
        ]
        return Listing(RUN_COLUMNS, rows, zone, next=cursor)

    emit(_guard(run), chosen_format(as_json, fmt))


@findings_app.command(
    "resolve", epilog="Example: paygate findings resolve 7:3 --confirm --reason 'bank slip checked'"
)
def findings_resolve(
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
    """Resolve one open finding: --reverse the payment it names, or --confirm the ledger."""

    def run() -> None:
        if reverse == confirm:
            raise InvalidInputError("choose --reverse or --confirm")
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


def _channel_option(channel: str | None) -> str | None:
    # A retired channel name still filters: it is read as the channel's name (renames).
    if channel is None:
        return None
    return current_channel(channel, where="--channel", category=FutureWarning)
