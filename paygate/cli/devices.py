"""``paygate devices``: register, revoke and list kiosks and POS terminals.

Keys never appear on the command line, where shell history and process listings would keep
them: a public key comes from a file, a MAC key from an environment variable named with
``--mac-key-env``, and the key-encryption key from ``PAYGATE_KEY_ENCRYPTION_KEY``. Errors
are one line naming the problem, exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import SecretBytes

from paygate.cli._common import (
    After,
    AsJson,
    Cell,
    Column,
    DatabaseUrl,
    Format,
    Limit,
    Listing,
    OutputFormat,
    chosen_format,
    emit,
    err,
    guard,
    local_time,
    out,
    page,
    settings_for,
)
from paygate.devices import Device, DeviceRegistry, key_encryption_key_from_env, load_public_key
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway

__all__ = ["devices_app"]


T = TypeVar("T")

devices_app = typer.Typer(
    help="Register, revoke and list kiosks and POS terminals.", no_args_is_help=True
)


class TerminalChannel(StrEnum):
    """The channels whose terminals are registered here."""

    KIOSK = "kiosk"
    POS = "pos"


def _with_registry(database_url: str | None, work: Callable[[DeviceRegistry], T]) -> T:
    def run() -> T:
        kek = key_encryption_key_from_env()
        with Gateway.open(settings=settings_for(database_url)) as gateway:
            return work(DeviceRegistry(gateway.store, gateway.clock, kek))

    return guard(run)


def _read_public_key(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read {path}: {exc.strerror or exc}", field="--public-key"
        ) from None
    # Checked here so that the message names the file; the registry stores it as PEM.
    load_public_key(data)
    return data.decode("ascii", "replace")


def _read_mac_key(variable: str) -> SecretBytes:
    text = os.environ.get(variable)
    if text is None or not text.strip():
        raise InvalidInputError(
            f"environment variable {variable} is not set", field="--mac-key-env"
        )
    try:
        return SecretBytes(bytes.fromhex(text.strip()))
    except ValueError:
        # Say what form is expected; the value itself is a secret and is not repeated.
        raise InvalidInputError(
            f"{variable} must hold the MAC key in hexadecimal", field="--mac-key-env"
        ) from None


def _show(device: Device) -> str:
    key = device.fingerprint or "MAC key (encrypted)"
    return f"{device.device_id} ({device.channel}, {device.status.value}): {key}"


@devices_app.command(
    "add", epilog="Example: paygate devices add K-017 --channel kiosk --public-key k017.pub"
)
def devices_add(
    device_id: Annotated[str, typer.Argument(help="The terminal's id, as it signs requests.")],
    channel: Annotated[TerminalChannel, typer.Option("--channel", help="kiosk or pos.")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="File with the Ed25519 public key: PEM, or the raw 32 bytes in base64.",
            show_default=False,
        ),
    ] = None,
    mac_key_env: Annotated[
        str | None,
        typer.Option(
            "--mac-key-env",
            help="Name of the environment variable holding the MAC key (hex); the key is "
            "stored encrypted under $PAYGATE_KEY_ENCRYPTION_KEY.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[str | None, typer.Option(help="Where the terminal stands.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a terminal with its Ed25519 public key or its MAC key."""
    if (public_key is None) == (mac_key_env is None):
        err.print("[red]error:[/red] give exactly one of --public-key and --mac-key-env")
        raise typer.Exit(2)

    def add(registry: DeviceRegistry) -> Device:
        if public_key is not None:
            return registry.add(
                device_id, channel.value, public_key_pem=_read_public_key(public_key), label=label
            )
        assert mac_key_env is not None
        return registry.add(
            device_id, channel.value, mac_key=_read_mac_key(mac_key_env), label=label
        )

    device = _with_registry(database_url, add)
    out.print(f"registered {_show(device)}", highlight=False, soft_wrap=True)


@devices_app.command("revoke", epilog="Example: paygate devices revoke K-017")
def devices_revoke(
    device_id: Annotated[str, typer.Argument(help="The terminal to refuse from now on.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a terminal: its very next request is refused."""
    device = _with_registry(database_url, lambda registry: registry.revoke(device_id))
    assert device.revoked_at is not None
    zone = guard(lambda: settings_for(database_url)).timezone
    out.print(
        f"revoked {device.device_id} at {local_time(device.revoked_at, zone)}",
        highlight=False,
        soft_wrap=True,
    )


DEVICE_COLUMNS = (
    Column("device_id", "device"),
    Column("channel", "channel"),
    Column("key", "key"),
    Column("label", "label"),
    Column("status", "status"),
    Column("registered_at", "registered"),
    Column("revoked_at", "revoked"),
)


@devices_app.command("list", epilog="Example: paygate devices list --json")
def devices_list(
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
    fmt: Format = OutputFormat.TABLE,
    limit: Limit = None,
    after: After = None,
) -> None:
    """List every registered terminal with its key fingerprint (whole: the operator's check
    against the terminal's own) and status."""

    def work(registry: DeviceRegistry) -> list[Device]:
        return registry.list(limit=None if limit is None else limit + 1, after=after or "")

    devices = _with_registry(database_url, work)
    zone = guard(lambda: settings_for(database_url)).timezone
    shown, cursor = page(devices, limit, lambda d: d.device_id)
    rows: list[dict[str, Cell]] = [
        {
            "device_id": d.device_id,
            "channel": d.channel,
            "key": d.fingerprint or "MAC key (encrypted)",
            "label": d.label,
            "status": d.status.value,
            "registered_at": d.created_at,
            "revoked_at": d.revoked_at,
        }
        for d in shown
    ]
    emit(Listing(DEVICE_COLUMNS, rows, zone, next=cursor), chosen_format(as_json, fmt))
