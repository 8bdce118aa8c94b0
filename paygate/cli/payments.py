"""``paygate payments findings``: payments held in suspense, and finance's resolution of each.

A payment for a closed account is held in suspense with a payment finding
(docs/refunds.md); finance lists them and resolves each once: ``assign`` it to another open
account, or ``refund`` it to the payer through a refund route. docs/finance.md has the
workflow, :mod:`paygate.refunds.findings` the rules.
"""

from __future__ import annotations

from typing import Annotated

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
    close_routes,
    config_for,
    emit,
    guard,
    int_cursor,
    out,
    page,
    plural,
    refund_routes_for,
    settings_for,
)
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.refunds.findings import PaymentFindingResolution
from paygate.refunds.route import Payee

__all__ = ["payments_app"]

payments_app = typer.Typer(help="Payments: those held in suspense.", no_args_is_help=True)
findings_app = typer.Typer(
    help="Payment findings: payments held in suspense (a closed account's), and their resolution.",
    no_args_is_help=True,
)
payments_app.add_typer(findings_app, name="findings")

FINDING_COLUMNS = (
    Column("finding", "FINDING"),
    Column("reason", "reason"),
    Column("account_no", "account"),
    Column("amount", "amount"),
    Column("channel", "channel"),
    Column("channel_txn_id", "transaction"),
    Column("paid_at", "paid"),
    Column("state", "state"),
    Column("resolution_id", "resolution"),
    Column("resolved_by", "by"),
    Column("to", "to"),
)

ResolutionId = Annotated[
    str,
    typer.Option(
        "--resolution-id", help="Your id for this resolution (1-64 letters, digits, _-|*@)."
    ),
]
Reason = Annotated[str, typer.Option(help="Why: recorded with the resolution.")]


@findings_app.command("list", epilog="Example: paygate payments findings list --json")
def findings_list(
    database_url: DatabaseUrl = None,
    every: Annotated[
        bool, typer.Option("--all", help="Resolved findings too, not only the open ones.")
    ] = False,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """Payment findings, oldest first: the open ones (money still in suspense), or --all."""

    def run() -> Listing:
        start = int_cursor(after)
        more = None if limit is None else limit + 1
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            found = gateway.payment_findings.list(open_only=not every, after=start, limit=more)
            zone = gateway.settings.timezone
        shown, cursor = page(found, limit, lambda f: str(f.id))
        rows: list[dict[str, Cell]] = []
        for f in shown:
            done = f.resolution
            rows.append(
                {
                    "finding": f.id,
                    "reason": f.reason,
                    "account_no": f.account_no,
                    "amount": f.amount,
                    "channel": f.channel,
                    "channel_txn_id": f.channel_txn_id,
                    "paid_at": f.paid_at,
                    "state": f.state.value,
                    "resolution_id": None if done is None else done.resolution_id,
                    "resolved_by": None if done is None else done.actor,
                    "to": None if done is None else done.account_no or done.refund_id,
                }
            )
        summary = plural(len(shown), "open payment finding" if not every else "payment finding")
        currencies = {f.amount.currency for f in shown}
        if not every and len(currencies) == 1:
            held = sum(f.amount.minor for f in shown)
            summary += f", {Money(held, currencies.pop()).format()} held in suspense"
        if cursor is not None or after is not None:
            summary += " (this page)"
        return Listing(FINDING_COLUMNS, rows, zone, next=cursor, summary=summary)

    emit(guard(run), chosen_format(as_json, fmt))


def _say(done: PaymentFindingResolution, as_json: bool) -> None:
    if as_json:
        out.print_json(done.model_dump_json())
        return
    whom = done.account_no if done.account_no is not None else f"refund {done.refund_id}"
    again = " (replayed)" if done.replayed else ""
    out.print(
        f"payment finding {done.finding_id}: {done.action.value} to {whom}, "
        f"{done.amount.format()} {done.amount.currency}, by {done.actor}{again}",
        markup=False,
        highlight=False,
    )


@findings_app.command(
    "assign",
    epilog="Example: paygate payments findings assign 42 3100000002 --resolution-id PF-42 "
    "--reason 'customer moved to the new flat'",
)
def findings_assign(
    finding: Annotated[int, typer.Argument(help="FINDING as listed.")],
    account_no: Annotated[str, typer.Argument(help="The open account that gets the money.")],
    resolution_id: ResolutionId,
    reason: Reason,
    actor: Actor = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Assign a payment finding's money to another, open account: out of suspense, onto
    that account, spent on its open bills oldest first."""

    def run() -> None:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            done = gateway.payment_findings.assign(
                finding,
                account_no,
                resolution_id=resolution_id,
                reason=reason,
                actor=actor_name(actor),
            )
        _say(done, as_json)

    guard(run)


@findings_app.command(
    "refund",
    epilog="Example: paygate payments findings refund 42 --route alipay --resolution-id PF-42 "
    "--reason 'account closed, payer asked for the money back'",
)
def findings_refund(
    finding: Annotated[int, typer.Argument(help="FINDING as listed.")],
    route: Annotated[str, typer.Option(help="The refund route (the \\[refunds] tables).")],
    resolution_id: ResolutionId,
    reason: Reason,
    payee_name: Annotated[str | None, typer.Option(help="A transfer's payee name.")] = None,
    payee_account: Annotated[str | None, typer.Option(help="The payee's account.")] = None,
    payee_bank: Annotated[str | None, typer.Option(help="The payee bank's code.")] = None,
    actor: Actor = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Refund a payment finding's money to the payer through a refund route; the refund
    order's id is --resolution-id, and `paygate dispatch` sends it."""

    def run() -> None:
        configured = config_for(database_url)
        payee = None
        if payee_name or payee_account or payee_bank:
            payee = Payee(payee_name or "", payee_account or "", payee_bank or "")
        routes = refund_routes_for(configured)
        try:
            with Gateway.open(settings=configured.settings) as gateway:
                gateway.use_refund_routes(routes)
                done = gateway.payment_findings.refund(
                    finding,
                    resolution_id=resolution_id,
                    route=route,
                    reason=reason,
                    actor=actor_name(actor),
                    payee=payee,
                )
        finally:
            close_routes(routes)
        _say(done, as_json)

    guard(run)
