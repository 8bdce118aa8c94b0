"""The paygate command as an operator uses it: exit codes and messages, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store import migrate

runner = CliRunner()


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_db_upgrade_and_current(db_url: str) -> None:
    code, out = paygate("db", "upgrade", "--database-url", db_url)
    assert code == 0, out
    assert "database at revision" in out
    code, out = paygate("db", "current", "--database-url", db_url)
    head = migrate.head_revision()
    assert code == 0 and f"database: {head}" in out and f"code: {head}" in out


@pytest.mark.postgres
def test_db_upgrade_on_an_empty_postgresql_database_then_verify(empty_pg_url: str) -> None:
    code, out = paygate("audit", "verify", "--database-url", empty_pg_url)
    assert code == 2 and "paygate db upgrade" in out
    assert paygate("db", "upgrade", "--database-url", empty_pg_url)[0] == 0
    code, out = paygate("audit", "verify", "--database-url", empty_pg_url)
    assert code == 0 and "audit clean" in out


def test_database_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("PAYGATE_DATABASE_URL", url)
    assert paygate("db", "upgrade")[0] == 0
    assert (tmp_path / "env.db").exists()


def test_audit_verify_names_the_first_bad_entry_and_exits_non_zero(sqlite_url: str) -> None:
    with Gateway.open(sqlite_url) as gateway:
        gateway.open_account("A1")
        gateway.issue_bill(
            "A1",
            bill_no="B1",
            amount=Money(10_000, "CNY"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K1",
                account_no="A1",
                amount=Money(5_000, "CNY"),
                paid_at=datetime(2026, 11, 10, tzinfo=UTC),
            )
        )
    code, out = paygate("audit", "verify", "--database-url", sqlite_url)
    assert code == 0 and "audit clean" in out and "2 entries" in out

    with Gateway.open(sqlite_url) as gateway:
        entry = gateway.store.run(lambda tx: tx.scalar("SELECT MAX(entry_id) FROM postings"))

        def tamper(tx):  # type: ignore[no-untyped-def]
            tx.execute("DROP TRIGGER postings_no_update")
            tx.execute(
                "UPDATE postings SET amount = amount * 2 WHERE entry_id = :e AND amount > 0",
                {"e": entry},
            )

        gateway.store.run(tamper)
    code, out = paygate("audit", "verify", "--database-url", sqlite_url)
    assert code == 1
    assert f"first problem: unbalanced_entry: entry {entry}" in out


def test_audit_seal_seals_what_is_pending(sqlite_url: str) -> None:
    with Gateway.open(sqlite_url) as gateway:
        gateway.open_account("A1")
        gateway.issue_bill(
            "A1", bill_no="B1", amount=Money(100, "CNY"), period="p", due_date=date(2026, 1, 1)
        )
        assert gateway.verify().unsealed_entries == 1
        gateway.payments._posted_since_seal = 0  # close() would seal it; leave it to the command
    code, out = paygate("audit", "verify", "--database-url", sqlite_url)
    assert "1 awaiting a seal" in out
    code, out = paygate("audit", "seal", "--database-url", sqlite_url)
    assert code == 0 and "sealed 1 entry" in out
    code, out = paygate("audit", "verify", "--database-url", sqlite_url)
    assert "0 awaiting a seal" in out


def test_accounts_status_shows_arrears(sqlite_url: str) -> None:
    with Gateway.open(sqlite_url) as gateway:
        gateway.open_account("A1", name="Li Si")
        gateway.issue_bill(
            "A1",
            bill_no="B1",
            amount=Money(100_000, "CNY"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
    code, out = paygate(
        "accounts", "status", "A1", "--as-of", "2026-11-25", "--database-url", sqlite_url
    )
    assert code == 0, out
    assert "arrears: 1010.00 CNY" in out and "B1" in out
    code, out = paygate("accounts", "status", "nope", "--database-url", sqlite_url)
    assert code == 2 and "no account nope" in out


def test_errors_are_one_line_with_exit_code_two(tmp_path: Path) -> None:
    code, out = paygate("db", "upgrade", "--database-url", "mysql://x/y")
    assert code == 2 and "unsupported database" in out
    assert "Traceback" not in out


def test_the_demo_runs_end_to_end_and_ends_with_a_clean_audit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    code, out = paygate("demo", "--database-url", url, "--accounts", "40")
    assert code == 0, out
    assert "40 accounts, 80 bills" in out
    for channel in ("alipay", "wechatpay", "online", "kiosk", "pos", "bank_agent", "voucher"):
        assert f"│ {channel}" in out, channel
    assert "200 success" in out and "│ 204" in out and "200 redeemed" in out
    assert "Forged messages" in out and "401 invalid_signature" in out and "401 wrong_pin" in out
    assert "the ledger changed!" not in out
    assert "Kiosk K0001 daily closes" in out and "cash shortage 50.00" in out
    assert "reconnection orders:" in out and "audit clean" in out
    # Keys, PINs and signatures stay inside the run.
    assert "BEGIN" not in out and "PRIVATE" not in out
    code, out = paygate("demo", "--database-url", url)
    assert code == 2 and "fresh database" in out
