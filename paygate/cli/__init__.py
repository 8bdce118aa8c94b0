"""The ``paygate`` command, one module per command group.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). Errors are printed as one line naming the problem, exit code 2;
an audit that finds something wrong exits 1. The commands read and change the ledger only
through the Gateway and the read functions of the modules that own the tables: no SQL here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from paygate import __version__
from paygate.cli._common import err, out, root_config
from paygate.cli.accounts import accounts_app
from paygate.cli.audit import audit_app
from paygate.cli.bills import bills_app
from paygate.cli.clients import clients_app
from paygate.cli.config import config_app
from paygate.cli.db import db_app
from paygate.cli.demo import demo
from paygate.cli.devices import devices_app
from paygate.cli.dispatch import dispatch
from paygate.cli.dunning import dunning_app
from paygate.cli.events import events_app
from paygate.cli.payments import payments_app
from paygate.cli.reconcile import RECONCILE_SETTINGS, findings_app, reconcile, suspense_app
from paygate.cli.refunds import refunds_app
from paygate.cli.reports import reports_app
from paygate.cli.serve import serve
from paygate.cli.simulate import simulate
from paygate.cli.staff import staff_app
from paygate.cli.supply_orders import supply_orders_app
from paygate.cli.vouchers import vouchers_app

__all__ = ["app", "main"]


def _retired(old: str, new: str) -> Callable[[], None]:
    """The callback of a retired command group: one deprecation line on stderr, then on."""

    def warn() -> None:
        err.print(f"paygate {old} is deprecated; use paygate {new}", highlight=False, markup=False)

    warn.__doc__ = f"Deprecated: use `paygate {new}`."
    return warn


app = typer.Typer(
    name="paygate",
    help="Electricity bill payments from every channel into one ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The order here is the order `paygate --help` lists them in.
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(accounts_app, name="accounts")
app.add_typer(bills_app, name="bills")
app.add_typer(supply_orders_app, name="supply-orders")
app.add_typer(refunds_app, name="refunds")
app.add_typer(payments_app, name="payments")
app.add_typer(dunning_app, name="dunning")
app.add_typer(events_app, name="events")
app.add_typer(reports_app, name="report", help="Reports: the service promise.")
app.add_typer(vouchers_app, name="vouchers", help="Recharge voucher cards.")
app.add_typer(devices_app, name="devices", help="Kiosk and POS terminals and their keys.")
app.add_typer(clients_app, name="clients", help="Service clients (billing systems) and scopes.")
app.add_typer(staff_app, name="staff", help="Staff who sign in to the console, and their roles.")
app.command(
    "reconcile",
    context_settings=RECONCILE_SETTINGS,
    epilog="Example: paygate reconcile alipay --date 2026-11-25 --bank bank.sta --report day.html",
)(reconcile)
app.add_typer(suspense_app, name="suspense")
app.add_typer(findings_app, name="findings")
# Retired names of command groups: hidden, working, and saying what they are called now.
app.add_typer(
    supply_orders_app, name="orders", hidden=True, callback=_retired("orders", "supply-orders")
)
app.add_typer(
    findings_app, name="exceptions", hidden=True, callback=_retired("exceptions", "findings")
)
app.add_typer(config_app, name="config")
app.command("serve", epilog="Example: paygate serve --host 0.0.0.0 --port 8000 --workers 4")(serve)
app.command("dispatch", epilog="Example: paygate dispatch --config paygate.toml --once")(dispatch)
app.command("demo", epilog="Example: paygate demo --database-url sqlite:///demo.db --accounts 300")(
    demo
)
app.command(
    "simulate",
    epilog="Example: paygate simulate --seed 7 --accounts 2000 --days 30 --faults harsh "
    "--database-url sqlite:///sim.db",
)(simulate)


def _version(show: bool) -> None:
    if show:
        out.print(f"paygate {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _paygate(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The configuration file (TOML; default: $PAYGATE_CONFIG; docs/operations.md).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Electricity bill payments from every channel into one ledger."""
    token = root_config.set(config)
    context.call_on_close(lambda: root_config.reset(token))


def main() -> None:
    """Entry point of the ``paygate`` console script."""
    app(prog_name="paygate")
