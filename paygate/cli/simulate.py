"""``paygate simulate``: a seed-replayable month of a utility on a fresh database."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from paygate.cli._common import AsJson, DatabaseUrl, err, guard, out, say_error, settings_for
from paygate.money import Money

__all__ = ["simulate"]

EXIT_INVARIANT = 1


def simulate(
    seed: Annotated[
        int, typer.Option(help="Seed of every random source: same seed, same run.")
    ] = 1,
    accounts: Annotated[int, typer.Option(min=10, max=1_000_000)] = 500,
    days: Annotated[int, typer.Option(min=1, max=366)] = 30,
    faults: Annotated[
        str, typer.Option(help="Fault profile: none, default, harsh, or a TOML file.")
    ] = "default",
    replay: Annotated[
        int | None,
        typer.Option(help="Stop after step N (from a failure's message) and show it in full."),
    ] = None,
    bug: Annotated[
        str | None,
        typer.Option(help="Plant a bug on purpose (ack_without_post) to test the checks."),
    ] = None,
    bug_step: Annotated[int, typer.Option(help="Step at which --bug is planted.")] = 200,
    http_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of wallet, online and bank notifications, kiosk payments, POS sales "
            "and voucher redemptions sent over real HTTP.",
        ),
    ] = 0.0,
    html: Annotated[
        Path | None, typer.Option(help="Also write the service report of the run to FILE (HTML).")
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Simulate a utility's month: payments through every channel, faults, reconnections
    against the service promise, invariants checked as it runs."""
    from paygate.simulation import (
        BUGS,
        InvariantBroken,
        SimulationConfig,
        load_profile,
        run_simulation,
    )

    if bug is not None and bug not in BUGS:
        say_error(f"--bug: no bug {bug!r}; the bugs are {', '.join(BUGS)}")
        raise typer.Exit(2)

    settings = settings_for(database_url, database="any")
    url = settings.database_url
    if url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).exists():
        say_error(f"{url} exists; the simulation needs a fresh database")
        raise typer.Exit(2)
    profile = guard(lambda: load_profile(faults))
    bar = Progress(
        TextColumn("simulated days"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    # Refusals of forged messages are the point of the run; the channel layer's warning for
    # each would only repeat the summary on stderr.
    quiet = logging.NullHandler()
    logger = logging.getLogger("paygate")
    logger.addHandler(quiet)
    propagate, logger.propagate = logger.propagate, False
    try:
        with bar:
            task = bar.add_task("days", total=None)
            config = SimulationConfig(
                database_url=url,
                seed=seed,
                accounts=accounts,
                days=days,
                faults=profile,
                bug=bug,
                bug_step=bug_step,
                stop_at=replay,
                http_share=http_share,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            try:
                result = guard(lambda: run_simulation(config))
            except InvariantBroken as broken:
                again = f"--faults {faults}"
                if http_share:
                    again += f" --http-share {http_share}"
                if bug is not None:
                    again += f" --bug {bug} --bug-step {bug_step}"
                _broken(broken, accounts, days, again, as_json)
                raise typer.Exit(EXIT_INVARIANT) from None
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate
    if html is not None:
        _html(url, html)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    _table(result)


def _broken(broken: object, accounts: int, days: int, again: str, as_json: bool) -> None:
    from paygate.simulation import InvariantBroken

    assert isinstance(broken, InvariantBroken)
    replay = (
        f"paygate simulate --seed {broken.seed} --accounts {accounts} --days {days} "
        f"{again} --replay {broken.step} --database-url <fresh database>"
    )
    if as_json:
        document = {
            "invariant": broken.name,
            "seed": broken.seed,
            "step": broken.step,
            "at": broken.at.isoformat(),
            "problems": broken.problems,
            "replay": replay,
        }
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    say_error(
        f"invariant {broken.name} broken at step {broken.step} ({broken.at:%Y-%m-%d %H:%M} UTC),"
        f" seed {broken.seed}: {broken.problems[0]}"
    )
    err.print(f"replay: {replay}", highlight=False, markup=False, soft_wrap=True)


def _html(url: str, path: Path) -> None:
    from paygate.gateway import Gateway
    from paygate.reports import render_html, service_report
    from paygate.simulation.world import START, local_day

    def write() -> None:
        with Gateway.open(settings=settings_for(url)) as gateway:
            today = local_day(gateway.clock.now())
            report = service_report(
                gateway, start=local_day(START), end=max(today, local_day(START))
            )
        path.write_text(render_html(report), encoding="utf-8")

    guard(write)


def _table(result: object) -> None:
    from paygate.simulation import SimulationResult

    assert isinstance(result, SimulationResult)
    p = result.promise
    if result.stopped_at is not None:
        out.print(f"[bold]stopped after step {result.stopped_at}[/bold]; every invariant holds")
        for line in result.step_events:
            out.print(f"  {line}", highlight=False, markup=False)
    out.print(
        f"[bold]paygate simulate[/bold] seed {result.seed}, {result.accounts} accounts, "
        f"{result.days} days, faults {result.faults}: {result.elapsed_seconds:.1f} s, "
        f"{result.days_per_minute:.1f} simulated days a minute"
    )
    promise = Table("reconnection orders", "count", "share", title="Service promise")
    for label, count in (
        ("raised", p.orders),
        ("dispatched by the step deadline", p.within_dispatch),
        ("acknowledged by the step deadline", p.within_acknowledge),
        ("restored within 24 h (the promise)", p.within_24h),
        ("restored within 3 days (legal limit)", p.within_3d),
    ):
        promise.add_row(label, str(count), f"{p.share(count):.2%}")
    out.print(promise)
    breaches = Table("severity", "caused by", "breaches", title="Breaches, by the injected fault")
    for severity, causes in result.breaches.items():
        for cause, count in sorted(causes.items()):
            breaches.add_row(severity, cause, str(count))
    out.print(breaches)
    channels = Table(
        "channel", "payments", "amount", "genuine refused", "over HTTP", title="Channels (CNY)"
    )
    for channel, figures in result.channels.items():
        channels.add_row(
            channel,
            str(figures["payments"]),
            Money(figures["amount"], "CNY").format(),
            str(figures["refused_genuine"]),
            str(figures["over_http"]),
        )
    out.print(channels)
    faults = ", ".join(f"{k} {v}" for k, v in result.faults_injected.items())
    out.print(f"faults injected: {faults}", highlight=False)
    fin = result.finance
    out.print(
        f"finance: {fin['runs']} statements reconciled, {fin['found']} of "
        f"{fin['injected_differences']} injected differences found, "
        f"{fin['suspense_assigned']} suspense items assigned; restarts: "
        + (", ".join(f"{k} {v}" for k, v in result.restarts.items()) or "none"),
        highlight=False,
    )
    out.print(
        f"invariants checked {result.invariant_checks} times, all held; digest {result.digest}"
    )
