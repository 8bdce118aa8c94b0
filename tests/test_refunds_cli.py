"""Refunds from the command line, with the routes that ``[refunds]`` configures: an account
closed with credit left is refunded by bank transfer, ``paygate dispatch`` writes the line to
the bank's batch file, and the bank's return file completes the refund (both databases)."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.refunds.routes import read_transfer_file

runner = CliRunner()
ACCT = "3100000077"


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def refunds(db_url: str) -> list[dict[str, object]]:
    code, out = paygate("refunds", "list", "--database-url", db_url, "--json")
    assert code == 0, out
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


@pytest.fixture
def configured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file naming the database and a bank-transfer route."""
    config = tmp_path / "paygate.toml"
    config.write_text(
        f'database_url = "{db_url}"\n\n'
        "[refunds.bank_transfer]\n"
        f'outbound_dir = "{tmp_path / "to_bank"}"\n'
        f'return_dir = "{tmp_path / "from_bank"}"\n'
        'payer_account = "6222020200112233445"\n\n'
        # the bank's answer is asked for again after 10 ms, not 30 s
        "[dispatch.dispatcher]\nretry_base_seconds = 0.01\nretry_cap_seconds = 0.05\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PAYGATE_CONFIG", str(config))
    with Gateway.open(settings=Settings(database_url=db_url, seal_every=0)) as gateway:
        gateway.open_account(ACCT)
        gateway.issue_bill(
            ACCT,
            bill_no="B-1",
            amount=Money(10000, "CNY"),
            period="2026-10",
            due_date=date(2099, 1, 10),  # not yet due: no late fee
        )
        gateway.pay(
            PaymentIntent(
                channel="bank_agent",
                channel_txn_id="T-1",
                account_no=ACCT,
                amount=Money(30000, "CNY"),
                paid_at=gateway.clock.now(),
            )
        )
    return config


def test_a_closed_accounts_credit_goes_out_by_transfer_and_the_return_file_completes_it(
    db_url: str, configured: Path, tmp_path: Path
) -> None:
    code, out = paygate(
        "accounts", "close", ACCT, "--closure-id", "CL-1", "--reason", "moved away",
        "--refund-route", "bank_transfer", "--payee-name", "张三",
        "--payee-account", "6217000010001234567", "--payee-bank", "105100000017",
        "--database-url", db_url,
    )  # fmt: skip
    assert code == 0, out
    [refund] = refunds(db_url)
    assert (refund["refund_id"], refund["state"]) == ("close-CL-1", "pending")

    code, out = paygate("dispatch", "--once", "--config", str(configured))
    assert code == 0, out
    assert re.search(r"refunds: [1-9]\d* handled", out), out
    [batch] = (tmp_path / "to_bank").glob("*.txt.part")
    batch_no, _, lines = read_transfer_file(batch)
    assert [(line.refund_id, line.amount.minor) for line in lines] == [("close-CL-1", 20000)]
    assert refunds(db_url)[0]["state"] == "submitted"

    # Again before the bank answers: still submitted, and still one line in the file.
    assert paygate("dispatch", "--once", "--config", str(configured))[0] == 0
    assert len(read_transfer_file(batch)[2]) == 1

    returned = tmp_path / "from_bank" / "return-1.txt"
    returned.parent.mkdir(exist_ok=True)
    returned.write_bytes(
        "\r\n".join(
            [
                f"H|{batch_no}|20261206|1|20000",
                "D|close-CL-1|20000|0000|BK2612060001|success",
                "T|1|20000",
                "",
            ]
        ).encode("gbk")
    )
    time.sleep(0.1)
    code, out = paygate("dispatch", "--once", "--config", str(configured))
    assert code == 0, out
    [done] = refunds(db_url)
    assert (done["state"], done["provider_reference"]) == ("succeeded", "BK2612060001")


def test_a_route_that_is_not_configured_is_refused_in_one_line(
    db_url: str, configured: Path
) -> None:
    code, out = paygate(
        "accounts", "close", ACCT, "--closure-id", "CL-2", "--reason", "moved away",
        "--refund-route", "alipay", "--database-url", db_url,
    )  # fmt: skip
    assert code == 2
    assert len(out.strip().splitlines()) == 1 and "alipay" in out
    assert refunds(db_url) == []


def test_a_closure_split_across_payments_lists_every_order(
    db_url: str, configured: Path, tmp_path: Path
) -> None:
    from tests.refunds_routes.conftest import write_keys
    from tests.refunds_routes.fakes import ONLINE_CERT_ID

    files = write_keys(tmp_path / "keys")
    with configured.open("a", encoding="utf-8") as config:
        config.write(
            "\n[refunds.online]\n"
            'base_url = "https://gateway.test.example"\n'
            'merchant_id = "777290058110048"\n'
            f'cert_id = "{ONLINE_CERT_ID}"\n'
            f'signing_key_file = "{files["online_merchant"]}"\n'
            f'gateway_certificate_files = ["{files["online_gateway"]}"]\n'
            'back_url = "https://pay.utility.example/notify/online"\n'
        )
    with Gateway.open(settings=Settings(database_url=db_url, seal_every=0)) as gateway:
        gateway.open_account("3100000078")
        for txn, minor in (("O-1", 12000), ("O-2", 8000)):
            gateway.pay(
                PaymentIntent(
                    channel="online", channel_txn_id=txn, account_no="3100000078",
                    amount=Money(minor, "CNY"), paid_at=gateway.clock.now(),
                )
            )  # fmt: skip
    close = ("accounts", "close", "3100000078", "--closure-id", "CL-9", "--reason", "moved")
    code, out = paygate(*close, "--refund-route", "online")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert "200.00 CNY refunded in 2 refund orders" in lines[0], out
    assert re.search(r"close-CL-9\*2\s+120\.00 CNY\s+online\s+against online payment O-1", out)
    assert lines[1].split()[0] == "close-CL-9" and lines[2].split()[0] == "close-CL-9*2"
    assert "against online payment O-2" in lines[1] and "80.00 CNY" in lines[1]
    code, out = paygate(*close, "--refund-route", "online", "--json")
    assert code == 0, out
    closure = json.loads(out)
    assert closure["replayed"] is True
    assert [(r["refund_id"], r["amount"]["minor"]) for r in closure["refunds"]] == [
        ("close-CL-9", 8000),
        ("close-CL-9*2", 12000),
    ]
