"""``paygate demo``: a month of a small utility on a fresh database, summarised."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from paygate.cli._common import DatabaseUrl, err, guard, out, plural, say_error, settings_for
from paygate.money import Money

__all__ = ["demo"]


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
        say_error(f"{url} exists; the demo needs a fresh database")
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
        f"[bold]paygate demo[/bold] on {url}: {plural(summary.accounts, 'account')}, "
        f"{plural(summary.bills, 'bill')}, "
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
        f"the ledger; recharge vouchers: {summary.cards_sold} sold "
        f"({Money(summary.cards_sold_value, 'CNY')}), {summary.cards_redeemed} redeemed "
        f"({Money(summary.cards_redeemed_value, 'CNY')}), voucher liability "
        f"{summary.voucher_liability}"
    )
    out.print(
        f"reconnection orders: {summary.reconnection_orders} created, "
        f"{summary.reconnected} completed; head-end refused {summary.headend_refusals} "
        f"attempts during its outage; {plural(summary.events_delivered, 'event')} delivered"
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
        f"audit verify: {plural(report.entries, 'entry', 'entries')}, "
        f"{plural(report.blocks, 'seal block')}, {plural(len(report.findings), 'finding')}"
    )
    if not report.ok:
        for finding in report.findings[:20]:
            err.print(f"  {finding}", highlight=False)
        raise typer.Exit(1)
    out.print("[green]audit clean[/green]")


def _hmm(minutes: float) -> str:
    whole = round(minutes)
    return f"{whole // 60}:{whole % 60:02d}"
