"""``paygate dispatch``: the dispatcher that delivers supply orders and events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from paygate.cli._common import (
    DatabaseUrl,
    close_routes,
    config_for,
    err,
    guard,
    out,
    refund_routes_for,
)
from paygate.gateway import Gateway

__all__ = ["dispatch"]


def dispatch(
    database_url: DatabaseUrl = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="The configuration file whose \\[dispatch] names head-ends and event sinks "
            "(default: paygate --config, else $PAYGATE_CONFIG)."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Deliver what is due now (the whole backlog), then exit.")
    ] = False,
    max_items: Annotated[
        int,
        typer.Option("--max", min=1, help="With --once: stop after this many orders and events."),
    ] = 10_000,
    idle_wait: Annotated[float, typer.Option(help="Seconds to wait when nothing is due.")] = 1.0,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="debug, info (a line per delivery), warning or error; default: \\[log] level.",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text or json (one JSON object per line); default: \\[log] format.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deliver supply orders to head-ends and events to sinks until stopped (SIGTERM, Ctrl-C).

    A stop signal lets the current delivery finish and exits cleanly; a killed dispatcher
    loses nothing: its leased rows go out again once the lease runs out. Events wait in the
    outbox while no sink is configured. Every attempt, retry and dead letter is logged
    (stderr; ``--log-level``, ``--log-format``).
    """
    import signal
    import threading

    from paygate.dispatch_config import dispatch_config, dispatcher_options
    from paygate.logs import configure_logging, log_options
    from paygate.outbox import Dispatcher

    stop = threading.Event()

    def run() -> None:
        configured = config_for(database_url, files={"dispatch": config})
        configure_logging(*log_options(log_level, log_format, configured.log))
        setup = dispatch_config(configured)
        refund_routes = refund_routes_for(configured)
        try:
            with Gateway.open(settings=configured.settings) as gateway:
                gateway.use_refund_routes(refund_routes)
                dispatcher = Dispatcher(
                    gateway,
                    headends=setup.headends,
                    sinks=setup.sinks,
                    default_headend=setup.default_headend,
                    refund_routes=refund_routes,
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
                        f"retrying, {report.events_dead} dead; refunds: "
                        f"{report.refunds_handled} handled; breaches: {len(report.breaches)}"
                    )
                    return
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                out.print("dispatching; SIGTERM or Ctrl-C stops")
                dispatcher.run(stop, idle_wait=idle_wait)
                out.print("stopped")
        finally:
            setup.close()
            close_routes(refund_routes)

    guard(run)
