"""The operator's supply commands: dispatch, orders, dunning — on both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money

runner = CliRunner()


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def with_order(db_url: str) -> tuple[str, int]:
    with Gateway.open(db_url) as gateway:
        gateway.open_account("A1")
        gateway.issue_bill(
            "A1",
            bill_no="B-A1",
            amount=Money(100, "CNY"),
            period="2026-10",
            due_date=datetime.now(UTC).date() - timedelta(days=20),
        )
        gateway.disconnect("A1", "arrears")
        receipt = gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K1",
                account_no="A1",
                amount=Money(10_000, "CNY"),
                paid_at=datetime.now(UTC),
            )
        )
    assert receipt.reconnection_order_id is not None
    return db_url, receipt.reconnection_order_id


def test_dispatch_once_without_a_head_end_fails_the_order_visibly(
    with_order: tuple[str, int],
) -> None:
    url, order_id = with_order
    code, out = paygate("dispatch", "--once", "--database-url", url)
    assert code == 0, out
    assert "1 failed" in out and "events: 0 delivered" in out
    code, out = paygate("supply-orders", "list", "--status", "failed", "--database-url", url)
    assert code == 0 and str(order_id) in out and "no head-end" in out
    code, out = paygate("supply-orders", "list", "--database-url", url)
    assert str(order_id) in out
    code, out = paygate("supply-orders", "retry", str(order_id), "--database-url", url)
    assert code == 0 and "queued again" in out
    code, out = paygate(
        "supply-orders", "confirm", str(order_id), "--actor", "crew-7", "--database-url", url
    )
    assert code == 0 and "completed" in out
    code, out = paygate("supply-orders", "confirm", "999999999", "--database-url", url)
    assert code == 2 and "no supply order" in out


def test_dispatch_config_errors_name_the_problem(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "dispatch.toml"
    config.write_text(
        '[sinks.billing]\ntype = "webhook"\nurl = "https://b.example/x"\n'
        'secret_env = "PAYGATE_TEST_NOT_SET"\n'
    )
    code, out = paygate("dispatch", "--once", "--config", str(config), "--database-url", sqlite_url)
    assert code == 2 and "PAYGATE_TEST_NOT_SET is not set" in out
    config.write_text("not toml [")
    code, out = paygate("dispatch", "--once", "--config", str(config), "--database-url", sqlite_url)
    assert code == 2 and "dispatch.toml" in out
    config.write_text('[headends.x]\ntype = "nonesuch"\n')
    code, out = paygate("dispatch", "--once", "--config", str(config), "--database-url", sqlite_url)
    assert code == 2 and "no head-end named 'nonesuch'" in out


def test_dunning_commands(db_url: str) -> None:
    with Gateway.open(db_url) as gateway:
        gateway.open_account("A1")
        gateway.issue_bill(
            "A1",
            bill_no="B1",
            amount=Money(10_000, "CNY"),
            period="2026-01",
            due_date=datetime.now(UTC).date() - timedelta(days=60),
        )
    code, out = paygate("dunning", "notice", "A1", "--database-url", db_url)
    assert code == 0 and "notice recorded" in out
    code, out = paygate("dunning", "notice", "A1", "--final", "--database-url", db_url)
    assert code == 0 and "final reminder recorded" in out
    code, out = paygate("dunning", "candidates", "--database-url", db_url)
    assert code == 0 and "A1" not in out  # the notice is not 7 days old yet
    code, out = paygate("dunning", "order", "A1", "--approved-by", "ops", "--database-url", db_url)
    assert code == 2 and "not a disconnection candidate" in out
    code, out = paygate(
        "dunning", "order", "A1", "--approved-by", "ops", "--negotiated", "--database-url", db_url
    )
    assert code == 0 and "disconnection order" in out


def test_a_head_ends_error_text_is_listed_as_text(with_order: tuple[str, int]) -> None:
    """The last error quotes what a head-end answered: rich markup in it must not be read
    (``[/]`` made `orders list` fail) and its escape sequences must not reach the terminal."""
    url, order_id = with_order
    answered = "502 Bad Gateway: [/] [red]down[/red] \x1b[2J\x1b]0;t\x07"
    with Gateway.open(url) as gateway:
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE supply_orders SET last_error = :e WHERE id = :o",
                {"e": answered, "o": order_id},
            )
        )
    code, out = paygate("supply-orders", "list", "--database-url", url)
    assert code == 0, out
    assert "502 Bad Gateway: [/] [red]down[/red] \\x1b[2J\\x1b]0;t\\x07" in out
    assert "\x1b" not in out


def test_orders_list_refuses_a_status_that_does_not_exist(with_order: tuple[str, int]) -> None:
    url, order_id = with_order
    code, out = paygate("supply-orders", "list", "--status", "opne", "--database-url", url)
    assert code == 2
    [line] = out.strip().splitlines()
    assert "--status" in line and "'opne'" in line and "open" in line
    code, out = paygate("supply-orders", "list", "--status", "open", "--database-url", url)
    assert code == 0 and out.splitlines()[1].split("\t")[0] == str(order_id)


@pytest.mark.parametrize(
    ("old", "new", "args"),
    [
        ("orders", "supply-orders", ["list"]),
        ("exceptions", "findings", ["list"]),
    ],
)
def test_a_retired_command_group_still_works_and_says_its_new_name_once(
    with_order: tuple[str, int], old: str, new: str, args: list[str]
) -> None:
    url, _ = with_order
    runner = CliRunner()
    current = runner.invoke(app, [new, *args, "--database-url", url])
    retired = runner.invoke(app, [old, *args, "--database-url", url])
    assert current.exit_code == retired.exit_code == 0, retired.output
    assert retired.stdout == current.stdout
    # Only the notice differs (a summary such as "0 open findings" goes to stderr for both).
    assert "deprecated" not in current.stderr
    assert retired.stderr == f"paygate {old} is deprecated; use paygate {new}\n" + current.stderr
    listed = re.findall(r"^│ (\S+)\s", runner.invoke(app, ["--help"]).stdout, re.MULTILINE)
    assert new in listed and old not in listed
