"""The ``paygate`` command: database, audit, accounts and the demo.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). Errors are printed as one line naming the problem, exit code 2;
an audit that finds something wrong exits 1.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from paygate import __version__
from paygate.cli_common import Actor, DatabaseUrl, actor_name, err, guard, out, settings_for
from paygate.cli_devices import devices_app
from paygate.cli_reconcile import exceptions_app, reconcile_app, suspense_app
from paygate.cli_reports import reports_app
from paygate.cli_serve import serve
from paygate.cli_vouchers import vouchers_app
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.reconcile.report import terminal_text
from paygate.store import migrate

__all__ = ["app", "main"]


app = typer.Typer(
    name="paygate",
    help="Electricity bill payments from every channel into one ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create and upgrade the database schema.", no_args_is_help=True)
audit_app = typer.Typer(help="Seal and verify the journal.", no_args_is_help=True)
accounts_app = typer.Typer(help="Look at customer accounts.", no_args_is_help=True)
orders_app = typer.Typer(help="Reconnection and disconnection orders.", no_args_is_help=True)
dunning_app = typer.Typer(help="Notices and disconnection candidates.", no_args_is_help=True)
events_app = typer.Typer(help="Outbox events no sink took: list and requeue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(accounts_app, name="accounts")
app.add_typer(orders_app, name="orders")
app.add_typer(dunning_app, name="dunning")
app.add_typer(events_app, name="events")
app.add_typer(reports_app, name="report", help="Reports: the service promise.")
app.add_typer(vouchers_app, name="vouchers", help="Recharge voucher cards.")
app.add_typer(devices_app, name="devices", help="Kiosk and POS terminals and their keys.")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(suspense_app, name="suspense")
app.add_typer(exceptions_app, name="exceptions")
app.command("serve")(serve)


def _version(show: bool) -> None:
    if show:
        out.print(f"paygate {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _paygate(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Electricity bill payments from every channel into one ledger."""


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, revision: str = "head") -> None:
    """Create the database if it is not there, and apply the schema migrations (Alembic) up to
    REVISION."""
    settings = settings_for(database_url, database="any")
    guard(lambda: migrate.upgrade(settings.database_url, revision))
    current = guard(lambda: migrate.current_revision(settings.database_url))
    out.print(f"database at revision {current}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database and of the code."""
    settings = settings_for(database_url, database="existing")
    current = guard(lambda: migrate.current_revision(settings.database_url))
    head = guard(migrate.head_revision)
    out.print(f"database: {current or 'empty'}  code: {head}")


@audit_app.command("verify")
def audit_verify(
    database_url: DatabaseUrl = None,
    expect_head: Annotated[
        str | None,
        typer.Option(help="The head block hash recorded earlier: exit 1 unless it still is."),
    ] = None,
) -> None:
    """Recompute every balance and entry from the postings and check every seal.

    Prints the head block hash: record it where the database's administrators cannot write,
    and pass it back with --expect-head to prove the chain was not rewritten since.
    """
    import hmac

    def run() -> int:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            report = gateway.verify()
        out.print(
            f"{report.entries} entries, {report.accounts} accounts, {report.blocks} seal blocks "
            f"({report.sealed_entries} sealed, {report.unsealed_entries} awaiting a seal)"
        )
        if report.head_hash is None:
            out.print("head block: none (nothing sealed yet)")
        else:
            out.print(
                f"head block {report.head_block}: {report.head_hash}",
                highlight=False,
                soft_wrap=True,
            )
        code = 0
        if expect_head is not None:
            expected = expect_head.strip().lower()
            if report.head_hash is None or not hmac.compare_digest(expected, report.head_hash):
                earlier = report.block_hashes.get(expected)
                where = (
                    f"it is block {earlier}'s hash; the head has moved on"
                    if earlier is not None
                    else "it is not the hash of any block in the chain"
                )
                err.print(
                    f"[red]head mismatch:[/red] expected {escape(expected)}: {where}",
                    highlight=False,
                    soft_wrap=True,
                )
                code = 1
        if report.ok:
            if code == 0:
                out.print("[green]audit clean[/green]")
            return code
        first = report.findings[0]
        err.print(f"[red]audit failed:[/red] first problem: {first}", highlight=False)
        for finding in report.findings[1:20]:
            err.print(f"  {finding}", highlight=False)
        if len(report.findings) > 20:
            err.print(f"  ... and {len(report.findings) - 20} more")
        return 1

    code = guard(run)
    raise typer.Exit(code)


@audit_app.command("seal")
def audit_seal(database_url: DatabaseUrl = None) -> None:
    """Seal every committed journal entry that is not sealed yet."""

    def run() -> int:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            return gateway.seal()

    sealed = guard(run)
    out.print(f"sealed {sealed} {'entry' if sealed == 1 else 'entries'}")


@accounts_app.command("status")
def accounts_status(
    account_no: str,
    database_url: DatabaseUrl = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Show what an account owes: arrears, late fee, bills, supply state."""

    def run() -> None:
        day = date.fromisoformat(as_of) if as_of else None
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            status = gateway.account_status(account_no, day)
        out.print(
            f"account {status.account_no} ({status.category.value}), supply "
            f"{status.supply_state.value}, as of {status.as_of}\n"
            f"balance {status.balance}  arrears {status.arrears}  late fee {status.late_fee}  "
            f"credit {status.credit}"
        )
        table = Table("bill", "period", "due", "amount", "principal due", "late fee", "overdue")
        for bill in status.bills:
            fee = bill.late_fee_charged - bill.late_fee_paid + bill.late_fee_accrued
            table.add_row(
                bill.bill_no,
                bill.period,
                str(bill.due_date),
                bill.amount.format(),
                bill.principal_due.format(),
                fee.format(),
                "yes" if bill.overdue else "",
            )
        out.print(table)

    guard(run)


@app.command("dispatch")
def dispatch(
    database_url: DatabaseUrl = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file naming head-ends and event sinks.")
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Deliver what is due now (the whole backlog), then exit.")
    ] = False,
    max_items: Annotated[
        int,
        typer.Option("--max", min=1, help="With --once: stop after this many orders and events."),
    ] = 10_000,
    idle_wait: Annotated[float, typer.Option(help="Seconds to wait when nothing is due.")] = 1.0,
) -> None:
    """Deliver supply orders to head-ends and events to sinks until stopped (SIGTERM, Ctrl-C).

    A stop signal lets the current delivery finish and exits cleanly; a killed dispatcher
    loses nothing: its leased rows go out again once the lease runs out. Events wait in the
    outbox while no sink is configured.
    """
    import signal
    import threading

    from paygate.dispatch_config import dispatcher_options, load_dispatch_config
    from paygate.outbox import Dispatcher

    stop = threading.Event()

    def run() -> None:
        setup = load_dispatch_config(config)
        try:
            with Gateway.open(settings=settings_for(database_url)) as gateway:
                dispatcher = Dispatcher(
                    gateway,
                    headends=setup.headends,
                    sinks=setup.sinks,
                    default_headend=setup.default_headend,
                    **dispatcher_options(setup.options),
                )
                if not setup.sinks:
                    err.print("no event sink configured: events stay in the outbox")
                if once:
                    report = dispatcher.drain(max_items)
                    out.print(
                        f"orders: {report.orders_attempted} attempted, "
                        f"{report.orders_progressed} progressed, {report.orders_retrying} "
                        f"retrying, {report.orders_failed} failed; events: "
                        f"{report.events_delivered} delivered, {report.events_retrying} "
                        f"retrying, {report.events_dead} dead; breaches: {len(report.breaches)}"
                    )
                    return
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                out.print("dispatching; SIGTERM or Ctrl-C stops")
                dispatcher.run(stop, idle_wait=idle_wait)
                out.print("stopped")
        finally:
            setup.close()

    guard(run)


@orders_app.command("list")
def orders_list(
    database_url: DatabaseUrl = None,
    status: Annotated[str | None, typer.Option(help="open, dispatched, failed, ...")] = None,
) -> None:
    """List supply orders with their deadlines and progress."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            where = "WHERE o.status = :s " if status else ""
            rows = gateway.store.run(
                lambda tx: tx.all(
                    "SELECT o.id, o.kind, o.status, a.account_no, o.created_at, o.due_at, "  # noqa: S608
                    "o.attempts, o.last_error FROM supply_orders o JOIN accounts a "
                    f"ON a.id = o.account_id {where}ORDER BY o.id",
                    {"s": status},
                ),
                write=False,
            )
        # One line an order, whole (no table to truncate it): operators grep this.
        for order_id, kind, state, account_no, created, due, attempts, error in rows:
            # The error quotes what a head-end answered: text, never markup or escapes.
            out.print(
                f"{order_id}\t{kind}\t{state}\t{terminal_text(account_no)}\tcreated {created}\t"
                f"due {due}\tattempts {attempts}" + (f"\t{terminal_text(error)}" if error else ""),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    guard(run)


@orders_app.command("confirm")
def orders_confirm(
    order_id: int,
    database_url: DatabaseUrl = None,
    actor: Actor = None,
) -> None:
    """Confirm that a work order was carried out: supply restored (or cut)."""
    from paygate.headend.base import HeadEndOutcome

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            status = gateway.record_order_progress(
                order_id, HeadEndOutcome.COMPLETED, actor=actor_name(actor)
            )
        out.print(f"order {order_id}: {status.value}")

    guard(run)


@orders_app.command("retry")
def orders_retry(order_id: int, database_url: DatabaseUrl = None) -> None:
    """Put a failed order back in the dispatch queue."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            gateway.retry_order(order_id)
        out.print(f"order {order_id} queued again")

    guard(run)


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


@dunning_app.command("notice")
def dunning_notice(
    account_no: str,
    database_url: DatabaseUrl = None,
    final: Annotated[bool, typer.Option(help="The final reminder, not the first notice.")] = False,
    served_by: str = "operator",
) -> None:
    """Record that a written notice (or the final reminder) was served."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            gateway.serve_notice(
                account_no, "final_reminder" if final else "notice", served_by=served_by
            )
        out.print(f"{'final reminder' if final else 'notice'} recorded for {account_no}")

    guard(run)


@dunning_app.command("candidates")
def dunning_candidates(database_url: DatabaseUrl = None) -> None:
    """Accounts the dunning policy allows to be disconnected now (never protected ones)."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            candidates = gateway.disconnection_candidates()
        table = Table("account", "arrears", "oldest due", "notice", "final reminder")
        for c in candidates:
            table.add_row(
                c.account_no,
                str(c.arrears),
                str(c.oldest_due_date),
                c.notice_served_at.isoformat(timespec="minutes"),
                c.final_reminder_at.isoformat(timespec="minutes") if c.final_reminder_at else "",
            )
        out.print(table)

    guard(run)


@dunning_app.command("order")
def dunning_order(
    account_no: str,
    approved_by: Annotated[str, typer.Option(help="Who approved the disconnection.")],
    database_url: DatabaseUrl = None,
    negotiated: Annotated[
        bool, typer.Option(help="A negotiated order (required for protected accounts).")
    ] = False,
) -> None:
    """Order the disconnection of a candidate account."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            order_id = gateway.order_disconnection(
                account_no, approved_by=approved_by, negotiated=negotiated
            )
        out.print(f"disconnection order {order_id} for {account_no}")

    guard(run)


@app.command("demo")
def demo(
    database_url: DatabaseUrl = None,
    accounts: Annotated[int, typer.Option(min=10, max=100_000)] = 300,
    seed: int = 2026,
) -> None:
    """Run a month of a small utility end to end on a fresh database and verify the ledger."""
    import logging
    from collections import Counter

    from paygate.demo import CHANNELS, run_demo

    settings = settings_for(database_url, database="any")
    url = settings.database_url
    if url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).exists():
        err.print(
            f"[red]error:[/red] {url} exists; the demo needs a fresh database",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    # The demo's refusals and its kiosk shortage are deliberate, and the summary shows each;
    # the channel layer's warning for every one of them would only repeat it on stderr.
    quiet = logging.NullHandler()
    logging.getLogger("paygate").addHandler(quiet)
    try:
        summary = guard(lambda: run_demo(url, accounts=accounts, seed=seed))
    finally:
        logging.getLogger("paygate").removeHandler(quiet)

    out.print(
        f"[bold]paygate demo[/bold] on {url}: {summary.accounts} accounts, {summary.bills} bills, "
        f"{summary.disconnected} disconnected for arrears"
    )
    out.print(
        "every payment came through its channel's adapter as the channel sends it, "
        "authenticated with keys (and card PINs) generated for this run"
    )
    table = Table(
        "channel", "payments", "amount", "refused", "answered", title="Payments by channel (CNY)"
    )
    for channel in CHANNELS:
        answers = summary.answers.get(channel, Counter())
        table.add_row(
            channel,
            str(summary.payments[channel]),
            Money(summary.amounts[channel], "CNY").format(),
            str(summary.refusals[channel]),
            ", ".join(label for label, _ in answers.most_common()),
        )
    out.print(table)
    batch = summary.batch
    bank_file = "no bank file"
    if batch is not None:
        failed = len(batch.failed_debits)
        bank_file = (
            f"bank file {batch.file.batch_no}: {batch.posted} posted, {len(batch.refused)} "
            f"refused, {failed} debit{'s' if failed != 1 else ''} the bank could not collect"
        )
    out.print(
        f"late fees charged: {Money(summary.late_fees, 'CNY')}; replays answered from the "
        f"original receipt: {summary.replays}; {bank_file}; reversals: {summary.reversals}"
    )
    forged = Table(
        "channel",
        "message",
        "answered",
        "posted",
        title="Forged messages (an impostor's key; a guessed PIN)",
    )
    for message in summary.forged:
        forged.add_row(
            message.channel,
            message.operation,
            f"{message.status_code} {message.error_code or 'accepted'}",
            "the ledger changed!" if message.posted else "nothing",
        )
    out.print(forged)
    terminals = sorted({close.terminal_id for close in summary.kiosk_closes})
    closes = Table(
        "business day",
        "kiosk",
        "ledger",
        "comparison",
        title=f"Kiosk {', '.join(terminals)} daily closes (payments · amount)",
    )
    for close in summary.kiosk_closes:
        cash = close.outcome.value
        if close.cash_difference.minor:
            cash += f" {Money(abs(close.cash_difference.minor), 'CNY').format()}"
        closes.add_row(
            close.business_date.isoformat(),
            f"{close.reported.count} · {close.reported.amount.format()}",
            f"{close.ledger.count} · {close.ledger.amount.format()}",
            f"{'match' if close.reported_matches_ledger else 'differ'}, cash {cash}",
        )
    out.print(closes)
    out.print(
        f"POS batches settled: {summary.pos_batches}, {summary.pos_batches_matched} matching "
        f"the ledger; recharge cards: {summary.cards_sold} sold "
        f"({Money(summary.cards_sold_value, 'CNY')}), {summary.cards_redeemed} redeemed "
        f"({Money(summary.cards_redeemed_value, 'CNY')}), voucher liability "
        f"{summary.voucher_liability}"
    )
    out.print(
        f"reconnection orders: {summary.reconnection_orders} created, "
        f"{summary.reconnected} completed; head-end refused {summary.headend_refusals} "
        f"attempts during its outage; {summary.events_delivered} events delivered"
    )
    steps = Table("reconnection step", "median (h:mm)", "worst (h:mm)", title="Supply back")
    for label, (median, worst) in summary.step_minutes.items():
        steps.add_row(f"order created → {label}", _hmm(median), _hmm(worst))
    out.print(steps)
    out.print(
        "breaches of the service promise: "
        + (", ".join(f"{n} {sev}" for sev, n in sorted(summary.breaches.items())) or "none")
    )
    report = summary.verify
    assert report is not None
    out.print(
        f"audit verify: {report.entries} entries, {report.blocks} seal blocks, "
        f"{len(report.findings)} findings"
    )
    if not report.ok:
        for finding in report.findings[:20]:
            err.print(f"  {finding}", highlight=False)
        raise typer.Exit(1)
    out.print("[green]audit clean[/green]")


def _hmm(minutes: float) -> str:
    whole = round(minutes)
    return f"{whole // 60}:{whole % 60:02d}"


def main() -> None:
    """Entry point of the ``paygate`` console script."""
    app(prog_name="paygate")


if __name__ == "__main__":
    main()
