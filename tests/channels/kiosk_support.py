"""What the kiosk and device tests share: keys, an independent signer, and in-memory fakes.

The signer writes the canonical request from the documented rules (docs/channels/kiosk.md),
not with paygate's helpers, so that a mistake in paygate's canonical string cannot sign and
verify itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from datetime import UTC, date, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paygate.channels.kiosk import (
    KioskAdapter,
    KioskCloseRecord,
    KioskConfig,
    KioskContext,
    KioskTotals,
    MethodTotal,
)
from paygate.clock import FixedClock
from paygate.devices import Device, DeviceStatus, KeyKind
from paygate.money import Money

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TERMINAL = "K0001"
PAY_PATH = "/v1/kiosk/pay"
CLOSE_PATH = "/v1/kiosk/daily-close"


@functools.cache
def ed25519_key(label: str) -> Ed25519PrivateKey:
    """An Ed25519 key per label, generated once per test run."""
    return Ed25519PrivateKey.generate()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def nonce() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def signed_headers(
    key: Ed25519PrivateKey,
    device_id: str,
    body: bytes,
    *,
    path: str = PAY_PATH,
    method: str = "POST",
    at: datetime = NOW,
    request_nonce: str | None = None,
) -> dict[str, str]:
    """Headers signing a request as the scheme documents: five lines, each ending in LF."""
    stamp = str(int(at.timestamp()))
    used = request_nonce if request_nonce is not None else nonce()
    canonical = f"{method}\n{path}\n{stamp}\n{used}\n{hashlib.sha256(body).hexdigest()}\n"
    return {
        "X-Paygate-Device": device_id,
        "X-Paygate-Timestamp": stamp,
        "X-Paygate-Nonce": used,
        "X-Paygate-Signature": base64.b64encode(key.sign(canonical.encode())).decode(),
    }


def device(
    device_id: str = TERMINAL,
    *,
    key: Ed25519PrivateKey | None = None,
    channel: str = "kiosk",
    status: DeviceStatus = DeviceStatus.ACTIVE,
) -> Device:
    return Device(
        device_id=device_id,
        channel=channel,
        key_kind=KeyKind.ED25519,
        public_key_pem=public_pem(key or ed25519_key(device_id)),
        status=status,
        created_at=NOW,
    )


class StaticDevices:
    """A DeviceDirectory over a dict; tests change it to revoke."""

    def __init__(self, *devices: Device) -> None:
        self.devices = {d.device_id: d for d in devices}

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)


class FakeKioskLedger:
    """A KioskLedger with totals set by the test and closes kept in a dict."""

    def __init__(self, currency: str = "CNY") -> None:
        self.totals: dict[tuple[str, date], KioskTotals] = {}
        self.closes: dict[tuple[str, date], KioskCloseRecord] = {}
        self.currency = currency

    def set_totals(
        self, terminal: str, day: date, *, cash: tuple[int, int], card: tuple[int, int]
    ) -> None:
        self.totals[(terminal, day)] = KioskTotals(
            cash=MethodTotal(count=cash[0], amount=Money(cash[1], self.currency)),
            card=MethodTotal(count=card[0], amount=Money(card[1], self.currency)),
        )

    def terminal_totals(
        self, terminal_id: str, business_date: date, currency: str
    ) -> tuple[KioskTotals, KioskTotals]:
        taken = self.totals.get((terminal_id, business_date), KioskTotals.zero(currency))
        return taken, KioskTotals.zero(currency)

    def record_close(self, record: KioskCloseRecord) -> tuple[KioskCloseRecord, bool]:
        key = (record.terminal_id, record.business_date)
        if key in self.closes:
            return self.closes[key], False
        self.closes[key] = record
        return record, True


def build_adapter(
    *devices: Device,
    clock: FixedClock | None = None,
    ledger: Any = None,
    **config: Any,
) -> KioskAdapter:
    """A kiosk adapter over fakes; by default one active kiosk K0001 and the fixed clock."""
    return KioskAdapter(
        KioskConfig.model_validate(config),
        KioskContext(
            clock=clock or FixedClock(NOW),
            devices=StaticDevices(*(devices or (device(),))),
            ledger=ledger if ledger is not None else FakeKioskLedger(),
        ),
    )


def pay_body(**overrides: Any) -> bytes:
    """A cash payment of 120.50 yuan on account 0101234567 at 09:58 Shanghai time."""
    fields: dict[str, Any] = {
        "txn_id": "cash-000123",
        "account_no": "0101234567",
        "amount": 12050,
        "currency": "CNY",
        "method": "cash",
        "paid_at": "2026-11-25T09:58:00+08:00",
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def close_body(
    *,
    day: str = "2026-11-24",
    counted: int = 50000,
    cash: tuple[int, int] = (3, 50000),
    card: tuple[int, int] = (1, 12000),
    **overrides: Any,
) -> bytes:
    """A daily close: the counted cash and the kiosk's totals by method."""
    fields: dict[str, Any] = {
        "business_date": day,
        "currency": "CNY",
        "counted_cash": counted,
        "count": cash[0] + card[0],
        "amount": cash[1] + card[1],
        "by_method": {
            "cash": {"count": cash[0], "amount": cash[1]},
            "card": {"count": card[0], "amount": card[1]},
        },
    }
    fields.update(overrides)
    return json.dumps(fields).encode()
