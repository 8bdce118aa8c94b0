"""``paygate vouchers``: issue, activate, freeze and report recharge voucher card batches.

Invariant: the printer file written by ``issue`` is the only place PINs ever exist in clear.
It is created new (never overwriting a file) with mode 0600, fsynced, and deleted again if
the batch was not issued; no command prints a PIN.

Every command takes ``--database-url`` (else ``PAYGATE_DATABASE_URL``, else
``sqlite:///paygate.db``). ``issue`` needs the PIN key in ``PAYGATE_VOUCHER_PIN_KEY``; the
other commands do not touch PINs and run without it. Errors are printed as one line naming
the problem, exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from paygate.cli._common import (
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Listing,
    OutputFormat,
    chosen_format,
    emit,
    guard,
    out,
    parse_day,
    plural,
    settings_for,
)
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.vouchers import (
    DEFAULT_PIN_LENGTH,
    MAX_BATCH_CARDS,
    VoucherBatches,
    VoucherService,
    load_pin_key,
)

__all__ = ["vouchers_app"]


vouchers_app = typer.Typer(
    help="Recharge voucher cards: issue batches, activate, freeze, report.",
    no_args_is_help=True,
)


# Declared here rather than imported from paygate.cli: that module mounts this one.


@vouchers_app.command(
    "issue",
    epilog="Example: paygate vouchers issue VB2026-11 --count 500 --face-value 50.00 "
    "--expires-on 2027-12-31 --out cards.csv",
)
def issue(
    batch_no: str,
    count: Annotated[int, typer.Option(min=1, max=MAX_BATCH_CARDS, help="Cards in the batch.")],
    face_value: Annotated[str, typer.Option(help="Face value of each card, e.g. 50.00.")],
    expires_on: Annotated[str, typer.Option(help="Last day a card redeems, YYYY-MM-DD.")],
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The printer file to create (mode 0600); an existing file is never replaced.",
        ),
    ],
    currency: Annotated[
        str | None, typer.Option(help="Currency (default: $PAYGATE_CURRENCY, else CNY).")
    ] = None,
    pin_length: Annotated[int, typer.Option(min=16, max=32)] = DEFAULT_PIN_LENGTH,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue a batch: store PIN hashes, write serials and PINs to the printer file only."""
    settings = settings_for(database_url)

    def run() -> str:
        key = load_pin_key()
        value = Money.parse(face_value, currency or settings.currency)
        expiry = parse_day(expires_on, "--expires-on")
        try:
            fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InvalidInputError(
                f"{out_file} exists; the printer file is never overwritten", field="--out"
            ) from None
        except OSError as exc:
            raise InvalidInputError(
                f"cannot create {out_file}: {exc.strerror}", field="--out"
            ) from None
        issued = None
        try:
            with os.fdopen(fd, "wb") as stream:
                os.fchmod(stream.fileno(), 0o600)  # whatever the umask: no one else reads PINs
                with Gateway.open(settings=settings) as gateway:
                    issued = VoucherService(gateway, key).issue_batch(
                        batch_no, count, value, expiry, stream, pin_length=pin_length
                    )
                stream.flush()
                os.fsync(stream.fileno())
        finally:
            if issued is None:
                # Not issued: the PINs in the file belong to no card and must not survive.
                out_file.unlink(missing_ok=True)
        return (
            f"batch {issued.batch_no} issued: {plural(issued.cards, 'card')} of "
            f"{issued.face_value}, "
            f"serials {issued.first_serial} to {issued.last_serial}, expiring "
            f"{issued.expires_on}\nprinter file: {out_file} (serials and PINs; hand it to the "
            "printer and destroy it)"
        )

    out.print(guard(run), highlight=False, soft_wrap=True)


@vouchers_app.command(
    "activate", epilog="Example: paygate vouchers activate VB2026-11 --retailer shop-1"
)
def activate(
    batch_no: str,
    retailer: Annotated[str, typer.Option(help="The retailer the batch is sold to.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Sell a batch to a retailer: its cards redeem from now on, the liability is booked."""

    def run() -> str:
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            done = VoucherBatches(gateway).activate(batch_no, retailer=retailer)
        if not done.created:
            return f"batch {done.batch_no} was already activated for {done.retailer}"
        return (
            f"batch {done.batch_no} activated for {done.retailer}: {plural(done.cards, 'card')}, "
            f"voucher liability {done.amount}"
        )

    out.print(guard(run), highlight=False, soft_wrap=True)


@vouchers_app.command(
    "freeze", epilog="Example: paygate vouchers freeze --batch VB2026-11 --reason 'box lost'"
)
def freeze(
    reason: Annotated[str, typer.Option(help="Why (a lost box, a stolen batch …).")],
    batch: Annotated[str | None, typer.Option(help="Freeze a whole batch.")] = None,
    first: Annotated[
        str | None, typer.Option("--from", help="First serial of the range to freeze.")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="Last serial of the range to freeze.")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Freeze a batch (--batch) or a serial range (--from, --to): frozen cards never redeem."""

    def run() -> str:
        by_range = first is not None or last is not None
        if (batch is not None) == by_range:
            raise InvalidInputError("give either --batch or both --from and --to", field="--batch")
        if by_range and (first is None or last is None):
            raise InvalidInputError("a range needs both --from and --to", field="--to")
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            book = VoucherBatches(gateway)
            if first is not None and last is not None:
                done = book.freeze_serials(first, last, reason=reason)
            else:
                done = book.freeze_batch(str(batch), reason=reason)
        return (
            f"batch {done.batch_no}: {done.frozen} sold and {done.frozen_unsold} unsold cards "
            f"frozen now; liability held for the sold ones: {done.frozen_value}"
        )

    out.print(guard(run), highlight=False, soft_wrap=True)


BATCH_COLUMNS = (
    Column("batch_no", "batch"),
    Column("status", "status"),
    Column("retailer", "retailer"),
    Column("face_value", "face"),
    Column("expires_on", "expires"),
    Column("cards", "cards"),
    Column("issued", "issued"),
    Column("activated", "activated"),
    Column("redeemed", "redeemed"),
    Column("expired", "expired"),
    Column("frozen", "frozen"),
    Column("locked", "locked"),
    Column("outstanding", "outstanding"),
    Column("expired_unredeemed", "expired unredeemed"),
    Column("frozen_liability", "frozen liability"),
)


@vouchers_app.command("report", epilog="Example: paygate vouchers report --as-of 2026-11-30 --json")
def report(
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
) -> None:
    """Cards by state per batch, outstanding liability and expired unredeemed value."""

    def run() -> Listing:
        day = parse_day(as_of, "--as-of") if as_of else None
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            result = VoucherBatches(gateway).report(day)
            zone = gateway.settings.timezone
        rows: list[dict[str, Cell]] = [
            {
                "batch_no": b.batch_no,
                "status": b.status,
                "retailer": b.retailer,
                "face_value": b.face_value,
                "expires_on": b.expires_on,
                "cards": b.cards,
                "issued": b.issued,
                "activated": b.activated,
                "redeemed": b.redeemed,
                "expired": b.expired,
                "frozen": b.frozen,
                "locked": b.locked,
                "outstanding": b.outstanding,
                "expired_unredeemed": b.expired_unredeemed,
                "frozen_liability": b.frozen_liability,
            }
            for b in result.batches
        ]
        return Listing(BATCH_COLUMNS, rows, zone, head={"as_of": result.as_of})

    emit(guard(run), chosen_format(as_json, fmt))
