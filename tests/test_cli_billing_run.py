"""``paygate accounts import`` and ``paygate bills import``: the file checked whole first, then
written; malformed lines named by line and field; a summary, JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate import Gateway, Money
from paygate.billing_file import read_accounts, read_bills
from paygate.cli import app
from paygate.errors import ParseError

runner = CliRunner()

ACCOUNTS = (
    "account_no,category,prepaid,protected,name\n"
    "A1,residential,no,,Zhang San\n"
    "A2,non_residential,yes,true,\n"
)
BILLS = (
    "account_no,bill_no,amount,period,due_date\n"
    "A1,B1,120.50,2026-10,2026-11-15\n"
    "A2,B2,99,2026-10,2026-11-15\n"
)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _count(url: str, table: str) -> int:
    with Gateway.open(url) as gateway:
        return int(gateway.store.run(lambda tx: tx.scalar(f"SELECT COUNT(*) FROM {table}")))


def test_accounts_then_bills_from_files_and_again_all_replayed(db_url: str, tmp_path: Path) -> None:
    accounts = _write(tmp_path / "accounts.csv", ACCOUNTS)
    bills = _write(tmp_path / "bills.csv", BILLS)
    first = runner.invoke(app, ["accounts", "import", accounts, "--database-url", db_url])
    assert first.exit_code == 0, first.output
    assert "2 read, 2 created, 0 replayed, 0 conflicts, 0 refused" in first.output
    result = runner.invoke(app, ["bills", "import", bills, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "bills: 2 read, 2 created" in result.output
    again = runner.invoke(app, ["bills", "import", bills, "--database-url", db_url, "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.output)
    assert (summary["read"], summary["created"], summary["replayed"]) == (2, 0, 2)
    with Gateway.open(db_url) as gateway:
        assert gateway.account_status("A1").balance == Money(12050, "CNY")
        status = gateway.account_status("A2")
        assert status.prepaid and status.protected


def test_conflicts_and_refusals_are_listed_with_their_line_and_exit_1(
    sqlite_url: str, tmp_path: Path
) -> None:
    runner.invoke(
        app,
        ["accounts", "import", _write(tmp_path / "a.csv", ACCOUNTS), "--database-url", sqlite_url],
    )
    text = BILLS + "A9,B3,1.00,2026-10,2026-11-15\nA1,B1,1.00,2026-10,2026-11-15\n"
    result = runner.invoke(
        app, ["bills", "import", _write(tmp_path / "b.csv", text), "--database-url", sqlite_url]
    )
    assert result.exit_code == 1
    assert "b.csv:4: refused: account_no: no account A9" in result.output
    assert "b.csv:5: conflict: bill_no: bill B1 was issued before with other data" in result.output
    assert "4 read, 2 created, 0 replayed, 1 conflicts, 1 refused" in result.output


def test_a_malformed_line_refuses_the_whole_file_before_any_write(
    sqlite_url: str, tmp_path: Path
) -> None:
    runner.invoke(
        app,
        ["accounts", "import", _write(tmp_path / "a.csv", ACCOUNTS), "--database-url", sqlite_url],
    )
    # The bad line is the last: nothing before it may have been written either.
    text = BILLS + "A1,B9,12.345,2026-10,2026-11-15\nA1,B8,1,2026-10,15/11/2026\n"
    result = runner.invoke(
        app, ["bills", "import", _write(tmp_path / "b.csv", text), "--database-url", sqlite_url]
    )
    assert result.exit_code == 2
    assert "b.csv:4: amount: '12.345' has more than 2 decimal places" in result.output
    assert "b.csv:5: due_date: '15/11/2026' is not a date" in result.output
    assert "2 malformed line(s); nothing was written" in result.output
    assert _count(sqlite_url, "bills") == 0


def test_stdin_is_read_with_a_dash(sqlite_url: str) -> None:
    result = runner.invoke(
        app, ["accounts", "import", "-", "--database-url", sqlite_url, "--json"], input=ACCOUNTS
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["created"] == 2
    bad = runner.invoke(
        app,
        ["accounts", "import", "-", "--database-url", sqlite_url],
        input="account_no,prepaid\nA3,maybe\n",
    )
    assert bad.exit_code == 2
    assert "<stdin>:2: prepaid: 'maybe' is not true or false" in bad.output
    assert _count(sqlite_url, "accounts") == 2


def test_an_unreadable_file_is_one_line_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["bills", "import", str(tmp_path / "none.csv"), "--database-url", sqlite_url]
    )
    assert result.exit_code == 2
    assert "none.csv: cannot be read" in result.output


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("", 1, None, "header line is required"),
        ("account_no,colour\n", 1, "header", "unknown column 'colour'"),
        ("bill_no,amount,period,due_date\n", 1, "header", "missing column 'account_no'"),
        ("account_no,bill_no,amount,period,due_date\nA1,B1,1,2026-10\n", 2, None, "4 fields"),
        (
            'account_no,bill_no,amount,period,due_date\nA1,"B\n1",1,p,2026-11-15\n',
            3,
            "bill_no",
            "line break",
        ),
        (
            "account_no,bill_no,amount,period,due_date\nA1,B1,0,p,2026-11-15\n",
            2,
            "amount",
            "positive",
        ),
        ("account_no,bill_no,amount,period,due_date\nA1,,1,p,2026-11-15\n", 2, "bill_no", "1-64"),
        (
            "account_no,bill_no,amount,period,due_date,currency\nA1,B1,1,p,2026-11-15,XYZ\n",
            2,
            "currency",
            "unknown currency",
        ),
    ],
)
def test_a_bill_line_problem_names_line_and_field(
    text: str, line: int, field: str | None, message: str
) -> None:
    errors = [
        e
        for e in read_bills(text.splitlines(keepends=True), currency="CNY")
        if isinstance(e, ParseError)
    ]
    assert len(errors) == 1
    assert (errors[0].line, errors[0].field) == (line, field)
    assert message in str(errors[0])


def test_an_account_file_with_a_bom_and_blank_lines_reads() -> None:
    text = "\ufeffaccount_no,currency\nA1,\n\nA2,USD\n"
    read = list(read_accounts(text.splitlines(keepends=True)))
    assert [(n, a.account_no, a.currency) for n, a in read] == [(2, "A1", None), (4, "A2", "USD")]  # type: ignore[misc]


def test_a_progress_bar_is_drawn_on_a_terminal_only(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from paygate.cli import _import

    path = _write(tmp_path / "a.csv", ACCOUNTS)
    for terminal in (False, True):
        screen = io.StringIO()
        monkeypatch.setattr(_import, "err", Console(file=screen, force_terminal=terminal))
        result = runner.invoke(app, ["accounts", "import", path, "--database-url", sqlite_url])
        assert result.exit_code == 0, result.output
        assert ("accounts" in screen.getvalue()) is terminal
