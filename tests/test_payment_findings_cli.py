"""``paygate payments findings``: the payments held for closed accounts, listed (``--json``
for scripts) and resolved from the command line, on both databases: refunded by bank transfer
through the route ``[refunds]`` configures, or assigned to an open account; a finding resolved
once is refused by name and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money

runner = CliRunner()
CLOSED, OPEN = "3100000077", "3100000078"


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def listing(db_url: str, *extra: str) -> list[dict[str, Any]]:
    code, out = paygate("payments", "findings", "list", "--database-url", db_url, "--json", *extra)
    assert code == 0, out
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


@pytest.fixture
def configured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration with a bank-transfer route; two payments held for a closed account."""
    config = tmp_path / "paygate.toml"
    config.write_text(
        f'database_url = "{db_url}"\n\n'
        "[refunds.bank_transfer]\n"
        f'outbound_dir = "{tmp_path / "to_bank"}"\n'
        f'return_dir = "{tmp_path / "from_bank"}"\n'
        'payer_account = "6222020200112233445"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("PAYGATE_CONFIG", str(config))
    with Gateway.open(settings=Settings(database_url=db_url, seal_every=0)) as gateway:
        gateway.open_account(CLOSED)
        gateway.open_account(OPEN)
        gateway.close_account(CLOSED, closure_id="CL-1", reason="moved away")
        for txn, minor in (("T-1", 12_050), ("T-2", 3_000)):
            gateway.pay(
                PaymentIntent(
                    channel="bank_agent",
                    channel_txn_id=txn,
                    account_no=CLOSED,
                    amount=Money(minor, "CNY"),
                    paid_at=gateway.clock.now(),
                )
            )
    return config


def test_payment_findings_are_listed_refunded_and_assigned(db_url: str, configured: Path) -> None:
    items = listing(db_url)
    assert [(i["account_no"], i["amount"]["minor"], i["state"]) for i in items] == [
        (CLOSED, 12_050, "open"),
        (CLOSED, 3_000, "open"),
    ]
    first, second = (int(i["finding"]) for i in items)
    assert items[0]["channel_txn_id"] == "T-1" and items[0]["reason"] == "account_closed"
    code, out = paygate(
        "payments", "findings", "refund", str(first), "--route", "bank_transfer",
        "--resolution-id", "PF-1", "--reason", "payer asked", "--payee-name", "王五",
        "--payee-account", "6217000010001234567", "--payee-bank", "105100000017",
        "--actor", "li.na", "--database-url", db_url, "--json",
    )  # fmt: skip
    assert code == 0, out
    done = json.loads(out)
    assert (done["action"], done["refund_id"], done["actor"]) == ("refunded", "PF-1", "li.na")
    assert done["amount"] == {"minor": 12_050, "currency": "CNY"}
    code, out = paygate(
        "payments", "findings", "assign", str(first), OPEN, "--resolution-id", "PF-2",
        "--reason", "found the customer", "--database-url", db_url,
    )  # fmt: skip
    assert code == 2 and "refunded already" in out
    code, out = paygate(
        "payments", "findings", "assign", str(second), OPEN, "--resolution-id", "PF-3",
        "--reason", "found the customer", "--actor", "li.na", "--database-url", db_url,
    )  # fmt: skip
    assert code == 0 and f"payment finding {second}: assigned to {OPEN}, 30.00 CNY" in out
    assert listing(db_url) == []
    states = [(i["state"], i["resolution_id"], i["to"]) for i in listing(db_url, "--all")]
    assert states == [("refunded", "PF-1", "PF-1"), ("assigned", "PF-3", OPEN)]
    with Gateway.open(settings=Settings(database_url=db_url, seal_every=0)) as gateway:
        assert gateway.account_status(OPEN).credit == Money(3_000, "CNY")
        assert gateway.ledger_balances()["suspense:CNY"].minor == 0


def test_a_route_that_is_not_configured_refuses_and_changes_nothing(
    db_url: str, configured: Path
) -> None:
    [first, _] = (int(i["finding"]) for i in listing(db_url))
    code, out = paygate(
        "payments", "findings", "refund", str(first), "--route", "alipay",
        "--resolution-id", "PF-1", "--reason", "payer asked", "--database-url", db_url,
    )  # fmt: skip
    assert code == 2 and "no refund route 'alipay'" in out
    assert [i["state"] for i in listing(db_url)] == ["open", "open"]
