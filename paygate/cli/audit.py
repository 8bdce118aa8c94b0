"""``paygate audit``: seal the journal, and verify every balance, entry and seal."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from paygate.cli._common import AsJson, DatabaseUrl, err, guard, out, plural, settings_for
from paygate.gateway import Gateway
from paygate.ledger import VerifyReport

__all__ = ["audit_app"]

audit_app = typer.Typer(help="Seal and verify the journal.", no_args_is_help=True)


def _json_report(report: VerifyReport, expect_head: str | None) -> int:
    """One JSON document: the counts, the head, every finding, and whether --expect-head is a
    block of this chain (null without it); the exit code as without --json."""
    expected = None if expect_head is None else expect_head.strip().lower()
    known = None if expected is None else report.block_hashes.get(expected)
    document = {
        "ok": report.ok,
        "entries": report.entries,
        "accounts": report.accounts,
        "blocks": report.blocks,
        "sealed_entries": report.sealed_entries,
        "unsealed_entries": report.unsealed_entries,
        "head_block": report.head_block,
        "head_hash": report.head_hash,
        "expected_head_block": known,
        "expected_head_found": None if expected is None else known is not None,
        "findings": [str(finding) for finding in report.findings],
    }
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
    return 0 if report.ok and (expected is None or known is not None) else 1


@audit_app.command("verify", epilog="Example: paygate audit verify --json")
def audit_verify(
    database_url: DatabaseUrl = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            help="A head block hash recorded earlier: exit 1 unless it is a block of this chain."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Recompute every balance and entry from the postings and check every seal.

    Prints the head block hash: record it where the database's administrators cannot write,
    and pass it back with --expect-head to prove the chain up to it was not rewritten since
    (later blocks may have been sealed on top of it; the links prove they follow it).
    """

    def run() -> int:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            report = gateway.verify()
        if as_json:
            return _json_report(report, expect_head)
        out.print(
            f"{plural(report.entries, 'entry', 'entries')}, {plural(report.accounts, 'account')}, "
            f"{plural(report.blocks, 'seal block')} "
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
            recorded = report.block_hashes.get(expected)
            if recorded is None:
                err.print(
                    f"[red]head mismatch:[/red] expected {escape(expected)}: it is not the hash "
                    "of any block in the chain (rewritten, or not this database's chain)",
                    highlight=False,
                    soft_wrap=True,
                )
                code = 1
            elif recorded != report.head_block:
                out.print(
                    f"recorded hash is block {recorded}'s: the chain links it to head block "
                    f"{report.head_block} (record the new head)",
                    highlight=False,
                    soft_wrap=True,
                )
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


@audit_app.command("seal", epilog="Example: paygate audit seal")
def audit_seal(database_url: DatabaseUrl = None) -> None:
    """Seal every committed journal entry that is not sealed yet."""

    def run() -> int:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            return gateway.seal()

    sealed = guard(run)
    out.print(f"sealed {plural(sealed, 'entry', 'entries')}")
