"""`paygate reconcile`, `paygate suspense` and `paygate findings` as finance runs them each
morning: real statement files, exit codes a script can act on, reports, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from paygate.cli.reconcile import RECONCILE_SETTINGS, findings_app, reconcile, suspense_app
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store import migrate
from tests.reconcile.support import kiosk_statement, scalar

# Mounted as paygate.cli mounts them.
app = typer.Typer()
app.command("reconcile", context_settings=RECONCILE_SETTINGS)(reconcile)
app.add_typer(suspense_app, name="suspense")
app.add_typer(findings_app, name="findings")
runner = CliRunner()

DAY = "2026-11-24"
PAID = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
WECHAT_BILL = Path(__file__).resolve().parents[1] / "channels" / "data"
WECHAT_BILL = WECHAT_BILL / "wechatpay_tradebill_20240501.csv"


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def ledger(db_url: str) -> str:
    """A migrated database with two customers who paid at kiosk K1 on the day."""
    migrate.upgrade(db_url)
    with Gateway.open(db_url) as gateway:
        for account in ("3100000001", "3100000002"):
            gateway.open_account(account)
        for txn, account, fen in (
            ("cash-0001", "3100000001", 12_050),
            ("card-0002", "3100000002", 8_000),
        ):
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=f"K1:{txn}",
                    account_no=account,
                    amount=Money(fen, "CNY"),
                    paid_at=PAID,
                )
            )
    return db_url


GOOD_ROWS = [
    ("K1", "cash-0001", "3100000001", "120.50", PAID),
    ("K1", "card-0002", "3100000002", "80.00", PAID),
]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def counts(url: str) -> tuple[int, int]:
    with Gateway.open(url) as gateway:
        return (
            scalar(gateway, "SELECT COUNT(*) FROM journal_entries"),
            scalar(gateway, "SELECT COUNT(*) FROM reconciliation_runs"),
        )


def test_a_fully_reconciled_day_exits_0_and_writes_every_report(
    ledger: str, tmp_path: Path
) -> None:
    statement = write(tmp_path / "kiosk-20261124.csv", kiosk_statement(GOOD_ROWS))
    for suffix in ("html", "csv", "json"):
        code, out = paygate(
            "reconcile", "kiosk", "--date", DAY, "--statement", str(statement),
            "--report", str(tmp_path / f"report.{suffix}"), "--lang", "en",
            "--database-url", ledger,
        )  # fmt: skip
        assert code == 0, out
        assert "kiosk 2026-11-24" in out and "report written" in out
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "fully reconciled" in page and "<script" not in page
    data = json.loads((tmp_path / "report.json").read_text())
    [run] = data["runs"]
    assert run["totals"]["matched"]["count"] == 2 and run["fully_reconciled"]
    assert run["findings"] == []
    header = (tmp_path / "report.csv").read_text().splitlines()[0]
    assert header.startswith("run_id,channel,business_date,finding,class,status")
    # The same file again is the same run: nothing new anywhere.
    before = counts(ledger)
    code, out = paygate(
        "reconcile", "kiosk", "--date", DAY, "--statement", str(statement),
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 0 and "(same file)" in out
    assert counts(ledger) == before


def test_open_findings_exit_1_until_people_resolve_them(ledger: str, tmp_path: Path) -> None:
    rows = [
        *GOOD_ROWS,
        ("K1", "cash-0003", "3100009999", "50.00", PAID),  # nobody has this account number
        ("K1", "cash-0001", "3100000001", "120.50", PAID),  # listed twice
    ]
    statement = write(tmp_path / "kiosk.csv", kiosk_statement(rows))
    args = ["reconcile", "kiosk", "--date", DAY, "--statement", str(statement)]
    code, out = paygate(*args, "--database-url", ledger)
    assert code == 1, out
    code, out = paygate("suspense", "list", "--database-url", ledger)
    assert code == 0 and "3100009999" in out and "1 item in suspense" in out
    with Gateway.open(ledger) as gateway:
        item = scalar(
            gateway, "SELECT id FROM reconciliation_resolutions WHERE action = 'suspense'"
        )
    code, out = paygate(
        "suspense", "assign", str(item), "3100000002", "--actor", "li.na", "--database-url",
        ledger,
    )  # fmt: skip
    assert code == 0 and "posted to 3100000002" in out
    code, out = paygate("suspense", "assign", str(item), "3100000001", "--database-url", ledger)
    assert code == 2 and "already assigned to account 3100000002 by li.na" in out
    code, out = paygate("findings", "list", "--database-url", ledger)
    assert code == 0 and "duplicate_in_statement" in out and "1 open finding" in out
    finding = next(w for w in out.split() if ":" in w and w.split(":")[0].isdigit())
    code, out = paygate(
        "findings", "resolve", finding, "--reverse", "--reason", "x", "--database-url", ledger
    )
    assert code == 2 and "no payment to reverse" in out
    code, out = paygate(
        "findings", "resolve", finding, "--confirm", "--reason", "printed twice by K1",
        "--actor", "li.na", "--database-url", ledger,
    )  # fmt: skip
    assert code == 0 and "confirmed by li.na" in out
    code, out = paygate(*args, "--database-url", ledger)
    assert code == 0, out


def _wechat(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


BAD_FILES = {
    "truncated": (lambda: _wechat(WECHAT_BILL.read_text().splitlines()[:4]), 4, "truncated"),
    "broken totals": (
        lambda: _wechat(
            [
                *WECHAT_BILL.read_text().splitlines()[:-1],
                WECHAT_BILL.read_text().splitlines()[-1].replace("`480.30,", "`480.31,", 1),
            ]
        ),
        8,
        "summary states 480.31",
    ),
    "wrong encoding": (
        # A header in UTF-8, then the rows as an export tool re-saved them, in GBK.
        lambda: (
            WECHAT_BILL.read_text().split("\n", 1)[0].encode()
            + b"\n"
            + WECHAT_BILL.read_text().split("\n", 1)[1].encode("gbk")
        ),
        2,
        "not valid UTF-8",
    ),
    "garbage": (lambda: bytes(range(256)) * 4, 1, "not a WeChat Pay trade bill header"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_statement_that_cannot_be_read_exits_2_naming_file_and_line(
    ledger: str, tmp_path: Path, case: str
) -> None:
    build, line_no, message = BAD_FILES[case]
    statement = write(tmp_path / "wechat-20240501.csv", build())
    before = counts(ledger)
    code, out = paygate(
        "reconcile", "wechatpay", "--date", "2024-05-01", "--statement", str(statement),
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 2, out
    assert f"{statement}:{line_no}:" in out and message in out and "nothing was posted" in out
    assert counts(ledger) == before


def test_a_bank_file_that_does_not_add_up_exits_2_and_posts_nothing(
    ledger: str, tmp_path: Path
) -> None:
    statement = write(tmp_path / "kiosk.csv", kiosk_statement(GOOD_ROWS))
    bai2 = (Path(__file__).resolve().parents[3] / "shared" / "data").joinpath(
        "bai2_moov_sample1.bai2"
    )
    broken = write(
        tmp_path / "bank.bai2", bai2.read_bytes().replace(b"49,+00000000000834000", b"49,+1")
    )
    code, out = paygate(
        "reconcile", "kiosk", "--date", DAY, "--statement", str(statement), "--bank",
        str(broken), "--database-url", ledger,
    )  # fmt: skip
    assert code == 2 and f"{broken}:16: account control total 1" in out
    with Gateway.open(ledger) as gateway:
        assert scalar(gateway, "SELECT COUNT(*) FROM reconciliation_runs WHERE kind = 'bank'") == 0


def test_every_configured_channel_and_the_bank_in_one_morning(ledger: str, tmp_path: Path) -> None:
    (tmp_path / "kiosk").mkdir()
    write(tmp_path / "kiosk" / "K20261124.csv", kiosk_statement(GOOD_ROWS))
    # 200.50 collected at the kiosks, settled the next day without fees.
    write(
        tmp_path / "bank.sta",
        b":20:S1\n:25:755912345610001\n:28C:1/1\n:60F:C261124CNY1000,00\n"
        b":61:2611251125C200,50NTRFKIOSK SETTLE 20261124//B7\n:62F:C261125CNY1200,50\n",
    )
    config = write(
        tmp_path / "reconcile.toml",
        b'[bank]\nstatement = "bank.sta"\n\n'
        b'[channels.kiosk]\nstatement = "kiosk/K{date:%Y%m%d}.*"\n'
        b'bank_reference = "KIOSK SETTLE {date}"\n',
    )
    code, out = paygate(
        "reconcile", "--all", "--date", DAY, "--config", str(config), "--report",
        str(tmp_path / "morning.html"), "--database-url", ledger,
    )  # fmt: skip
    assert code == 0, out
    page = (tmp_path / "morning.html").read_text()
    # the default language is the configuration's, [reports] lang = "zh-CN"
    assert '<html lang="zh-CN">' in page and "到账 ¥200.50" in page
    with Gateway.open(ledger) as gateway:
        balances = gateway.ledger_balances()
    assert balances["bank:CNY"].minor == 20_050
    assert balances["clearing:kiosk:CNY"].minor == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reconcile", "kiosk"], "--date YYYY-MM-DD is required"),
        (["reconcile", "kiosk", "--all", "--date", DAY], "name one CHANNEL, or --all"),
        (["reconcile", "--all", "--date", DAY], "needs a configuration"),
        (["reconcile", "kiosk", "--date", "24/11/2026"], "is not a date"),
        (["reconcile", "kiosk", "--date", DAY], "no statement for kiosk"),
        (["reconcile", "nope", "--date", DAY, "--statement", "x.csv"], "no channel named"),
        (["reconcile", "kiosk", "--date", DAY, "--format", "pdf"], "--format must be"),
        (["findings", "resolve", "7", "--confirm", "--reason", "r"], "is not RUN:NUMBER"),
    ],
)
def test_what_cannot_run_exits_2_saying_why(sqlite_url: str, args: list[str], message: str) -> None:
    code, out = paygate(*args, "--database-url", sqlite_url)
    assert code == 2, out
    assert message in out


def test_reports_escape_what_the_statement_says(ledger: str, tmp_path: Path) -> None:
    rows = [
        *GOOD_ROWS,
        ("K1", "cash-0007", "<script>alert(1)</script>", "1.00", PAID),
        ("K1", "cash-0008", "=HYPERLINK(evil)", "2.00", PAID),
    ]
    statement = write(tmp_path / "kiosk.csv", kiosk_statement(rows))
    for suffix in ("html", "csv"):
        code, out = paygate(
            "reconcile", "kiosk", "--date", DAY, "--statement", str(statement), "--report",
            str(tmp_path / f"r.{suffix}"), "--database-url", ledger,
        )  # fmt: skip
        assert code == 1, out  # both lines are in suspense: unknown accounts
    page = (tmp_path / "r.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    table = (tmp_path / "r.csv").read_text()
    assert "'=HYPERLINK(evil)" in table and ",=HYPERLINK" not in table


def test_each_unbalanced_bank_statement_is_shown_with_its_own_difference(
    ledger: str, tmp_path: Path
) -> None:
    bank = write(
        tmp_path / "two.sta",
        b":20:S1\n:25:A\n:28C:1\n:60F:C261124CNY100,00\n:61:2611251125C10,00NTRFX\n"
        b":62F:C261125CNY115,00\n-\n"
        b":20:S2\n:25:B\n:28C:1\n:60F:C261124CNY100,00\n:61:2611251125C10,00NTRFY\n"
        b":62F:C261125CNY105,00\n-\n",
    )
    code, output = paygate(
        "reconcile", "--date", "2026-11-25", "--bank", str(bank), "--database-url", ledger
    )
    assert code == 1, output
    # The table sums their sizes (10.00); each statement is shown with its own sign and size.
    assert "statement S1 of A does not balance by -5.00 CNY" in output
    assert "statement S2 of B does not balance by 5.00 CNY" in output


def test_statement_text_is_listed_on_one_line_and_never_drives_the_terminal(
    ledger: str, tmp_path: Path
) -> None:
    bank = write(
        tmp_path / "esc.sta",
        b":20:S7\n:25:A\n:28C:1\n:60F:C261124CNY1000,00\n"
        b":61:2611251125C1,00NTRFX\x1b[31mRED\tTAB//B9\n:86:DETAIL\x1b]0;title\x07\n"
        b":62F:C261125CNY1001,00\n",
    )
    code, _ = paygate(
        "reconcile", "--date", "2026-11-25", "--bank", str(bank), "--database-url", ledger
    )
    assert code == 1
    code, output = paygate("findings", "list", "--database-url", ledger)
    assert code == 0, output
    assert "\x1b" not in output and "\x07" not in output
    [item] = [row for row in output.splitlines() if "bank_unmatched" in row]
    # The reference's tab and line breaks are shown, and split nothing: one item, one line.
    assert "X\\x1b[31mRED\\tTAB\\nB9\\nDETAIL\\x1b]0;title\\x07" in item
    assert item.rstrip().endswith("statement S7 of A, line 5")
