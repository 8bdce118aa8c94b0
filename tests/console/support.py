"""What the console's tests share: staff of every role, an account's story, a signed-in client.

The story (:func:`build_story`) is one service centre's morning: a disconnected customer who
owes an overdue bill, a protected hospital behind on its bills, a customer whose reconnection
order the head-end refused for good, and a kiosk day whose statement misses three payments and
carries a stranger's (open findings, money in suspense).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from argon2 import PasswordHasher

from paygate.console.staff import StaffRegistry
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.reconcile import reconcile_file, statement_reader
from tests.reconcile.support import kiosk_statement

PASSWORD = "correct horse battery staple"
STAFF = {
    "li.clerk": "clerk",
    "wang.finance": "finance",
    "zhao.supervisor": "supervisor",
    "chen.admin": "admin",
}
DISCONNECTED = "3100000001"
HOSPITAL = "3100000002"
FAILED = "3100000003"
METER = "000012345678"
ZONE = ZoneInfo("Asia/Shanghai")

# Cheap argon2 for the tests' own registries: the server verifies these hashes (and
# replaces them with its own parameters at the first sign-in).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def add_staff(gateway: Gateway) -> StaffRegistry:
    """One staff member of each role, all with :data:`PASSWORD`."""
    registry = StaffRegistry(gateway.store, gateway.clock, hasher=FAST_HASHER)
    for username, role in STAFF.items():
        registry.add(username, role, PASSWORD, display_name=username.split(".")[0])
    return registry


@dataclass
class Story:
    """What :func:`build_story` made."""

    today: date
    failed_order: int
    kiosk_run: int
    suspense_item: int


def build_story(gateway: Gateway, tmp: Path) -> Story:
    """The service centre's morning (see the module's docstring), at the gateway's clock."""
    now = gateway.clock.now()
    today = now.astimezone(ZONE).date()
    due = today - timedelta(days=40)
    for account_no, name, protected in (
        (DISCONNECTED, "张三", False),
        (HOSPITAL, "市第一人民医院", True),
        (FAILED, "李四", False),
    ):
        gateway.open_account(
            account_no,
            name=name,
            protected=protected,
            category="non_residential" if protected else "residential",
        )
        gateway.issue_bill(
            account_no,
            bill_no=f"B-{account_no}",
            amount=Money(101_000, "CNY"),
            period=f"{due:%Y-%m}",
            due_date=due,
        )
    gateway.set_meter(DISCONNECTED, headend=None, meter_address=METER)
    gateway.disconnect(DISCONNECTED, "arrears")
    gateway.disconnect(FAILED, "arrears")
    receipt = gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0001:cash-2001",
            account_no=FAILED,
            amount=Money(200_000, "CNY"),
            paid_at=now - timedelta(hours=2),
        )
    )
    assert receipt.reconnection_order_id is not None
    failed_order = receipt.reconnection_order_id
    gateway.record_order_failure(
        failed_order, "head-end refused: meter offline", claim_token=None, retry_at=None
    )
    # A kiosk day: three payments the statement misses, and a stranger's line.
    paid = datetime.combine(today - timedelta(days=7), datetime.min.time(), ZONE) + timedelta(
        hours=10
    )
    for n in (1, 2, 3):
        gateway.open_account(f"31000001{n:02d}", name=f"客户{n}")
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id=f"K0001:cash-100{n}",
                account_no=f"31000001{n:02d}",
                amount=Money(1_000 * n, "CNY"),
                paid_at=paid,
            )
        )
    statement = tmp / "kiosk.csv"
    statement.write_bytes(kiosk_statement([("K0001", "cash-9001", "3100999999", "50.00", paid)]))
    run = reconcile_file(gateway, "kiosk", paid.date(), statement, reader=statement_reader("kiosk"))
    items = gateway.store.run(
        lambda tx: tx.all(
            "SELECT id FROM reconciliation_resolutions WHERE action = 'suspense' ORDER BY id"
        ),
        write=False,
    )
    return Story(today, failed_order, run.id, int(items[0][0]))


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class StaffClient:
    """A browser-like HTTP client of the console: cookies kept, forms posted with their CSRF
    token and this origin."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = self.http.get("/console/sign-in")
        match = _CSRF.search(form.text)
        assert match, form.text
        return self.http.post(
            "/console/sign-in",
            data={"csrf_token": match.group(1), "username": username, "password": password},
            headers={"Origin": self.base_url},
        )

    def csrf(self) -> str:
        page = self.http.get("/console/search")
        match = _CSRF.search(page.text)
        assert match, page.text
        return match.group(1)

    def post(
        self, path: str, data: dict[str, str], *, csrf: str | None = None, origin: bool = True
    ) -> httpx.Response:
        fields = {"csrf_token": self.csrf() if csrf is None else csrf, **data}
        headers = {"Origin": self.base_url} if origin else {}
        return self.http.post(path, data=fields, headers=headers)

    def close(self) -> None:
        self.http.close()
