"""Finance's acceptance stories: a statement belongs to one business day, a refused input
changes nothing, the bank leg is the utility's own account, and suspense and open findings read
the same everywhere. On SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from paygate.channels.base import SettlementRules
from paygate.cli.reconcile import RECONCILE_SETTINGS, findings_app, suspense_app
from paygate.cli.reconcile import reconcile as reconcile_command
from paygate.errors import ParseError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.reconcile import findings, reconcile
from paygate.reconcile.engine import day_bounds
from paygate.reconcile.model import FindingClass, FindingStatus
from paygate.store import migrate
from paygate.store.engine import Tx
from tests.reconcile.support import digest, kiosk_statement, line, scalar
from tests.strategies import aware_datetimes

app = typer.Typer()
app.command("reconcile", context_settings=RECONCILE_SETTINGS)(reconcile_command)
app.add_typer(suspense_app, name="suspense")
app.add_typer(findings_app, name="findings")
runner = CliRunner()

DAY = "2026-11-24"
PAID = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 10:30 on the 24th in Shanghai
ACCOUNTS = ("3100000001", "3100000002", "3100000003")
KIOSK_DAY = [(f"K1:cash-{n:04d}", ACCOUNTS[n % 3], 1_000 + n) for n in range(1, 41)]
ROWS = [
    ("K1", txn.removeprefix("K1:"), acct, f"{fen / 100:.2f}", PAID) for txn, acct, fen in KIOSK_DAY
]
# The utility's own account, in CNY: 200.50 settled for the 24th on the 25th.
OWN_BANK = (
    b":20:S1\n:25:755912345610001\n:28C:1/1\n:60F:C261124CNY1000,00\n"
    b":61:2611251125C200,50NTRFKIOSK SETTLE 20261124//B7\n:62F:C261125CNY1200,50\n"
)
# Everything about this one is someone else's: a euro account, eleven years ago.
FOREIGN_BANK = (
    b":20:STMT0001\n:25:DE89370400440532013000\n:28C:00001/001\n:60F:C140101EUR1000,00\n"
    b":61:1401020102C500,00NTRFNONREF//B1\n:62F:C140102EUR1500,00\n"
)
# The bank charged 12.00 for account keeping besides the kiosk settlement.
CHARGED_BANK = (
    b":20:S2\n:25:755912345610001\n:28C:2/1\n:60F:C261124CNY1000,00\n"
    b":61:2611251125D12,00NCHGACCOUNT FEE//B8\n:62F:C261125CNY988,00\n"
)

# Every table a reconciliation run or a resolution writes to.
TABLES = (
    "ledger_accounts",
    "ledger_balances",
    "journal_entries",
    "postings",
    "payments",
    "allocations",
    "accounts",
    "bills",
    "supply_orders",
    "seal_queue",
    "reconciliation_runs",
    "reconciliation_lines",
    "reconciliation_findings",
    "reconciliation_resolutions",
    "outbox",
)


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def snapshot(url: str) -> dict[str, list[str]]:
    """Every row of every table reconciliation touches, as text, in a fixed order."""

    def work(tx: Tx) -> dict[str, list[str]]:
        return {
            table: sorted(repr(tuple(row)) for row in tx.all(f"SELECT * FROM {table}"))
            for table in TABLES
        }

    with Gateway.open(url) as gateway:
        return gateway.store.run(work, write=False)


@pytest.fixture
def ledger(db_url: str) -> str:
    """Forty kiosk payments of three customers on the 24th."""
    migrate.upgrade(db_url)
    with Gateway.open(db_url) as gateway:
        for account in ACCOUNTS:
            gateway.open_account(account)
        for txn, account, fen in KIOSK_DAY:
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=txn,
                    account_no=account,
                    amount=Money(fen, "CNY"),
                    paid_at=PAID,
                )
            )
    return db_url


def reconcile_kiosk(url: str, statement: Path, *more: str, day: str = DAY) -> tuple[int, str]:
    return paygate(
        "reconcile", "kiosk", "--date", day, "--statement", str(statement), *more,
        "--database-url", url,
    )  # fmt: skip


# -- 1. a statement belongs to one business day -------------------------------------------


@pytest.mark.parametrize("wrong_day", ["2026-11-23", "2026-11-25"])
def test_the_statement_of_the_24th_is_refused_for_another_day(
    ledger: str, tmp_path: Path, wrong_day: str
) -> None:
    statement = write(tmp_path / "kiosk-20261124.csv", kiosk_statement(ROWS))
    code, out = reconcile_kiosk(ledger, statement)
    assert code == 0, out
    before = snapshot(ledger)
    code, out = reconcile_kiosk(ledger, statement, day=wrong_day)
    assert code == 2, out
    assert f"{statement}:2:" in out and "business date 2026-11-24" in out
    assert wrong_day in out and "nothing was posted" in out
    assert snapshot(ledger) == before


def test_a_line_of_another_day_among_the_days_lines_is_a_finding_not_a_match(
    ledger: str, tmp_path: Path
) -> None:
    with Gateway.open(ledger) as gateway:
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K1:cash-0100",
                account_no=ACCOUNTS[0],
                amount=Money(5_000, "CNY"),
                paid_at=PAID - timedelta(days=1),
            )
        )
    rows = [*ROWS, ("K1", "cash-0100", ACCOUNTS[0], "50.00", PAID - timedelta(days=1))]
    statement = write(tmp_path / "kiosk.csv", kiosk_statement(rows))
    code, out = reconcile_kiosk(ledger, statement)
    assert code == 1, out
    with Gateway.open(ledger) as gateway:
        run_id = scalar(gateway, "SELECT MAX(id) FROM reconciliation_runs")
        [other] = [
            f
            for f in findings(gateway, run_id)
            if f.finding_class is FindingClass.OTHER_BUSINESS_DATE
        ]
        assert other.channel_txn_id == "K1:cash-0100" and other.status is FindingStatus.OPEN
        assert other.open_finding and "2026-11-23" in (other.note or "")
        assert not [
            f for f in findings(gateway, run_id) if f.finding_class is FindingClass.MATCHED
        ]  # the forty of the day are plain matches, without rows


def test_a_line_paired_with_a_payment_of_another_day_is_not_matched(gateway: Gateway) -> None:
    gateway.open_account("3100000001")
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K1:late",
            account_no="3100000001",
            amount=Money(1_000, "CNY"),
            # The ledger took it at 00:10 on the 25th, the kiosk printed 23:59 on the 24th.
            paid_at=datetime(2026, 11, 24, 16, 10, tzinfo=UTC),
        )
    )
    lines = [line(2, "K1:late", "3100000001", 1_000, at=datetime(2026, 11, 24, 15, 59, tzinfo=UTC))]
    run = reconcile(gateway, "kiosk", date(2026, 11, 24), iter(lines), file_sha256=digest("a"))
    assert not run.fully_reconciled
    assert run.total(FindingClass.MATCHED).count == 0
    assert run.total(FindingClass.OTHER_BUSINESS_DATE).count == 1
    [finding] = list(findings(gateway, run.id))
    assert finding.note == "the ledger has it on business date 2026-11-25"
    # Its own day's run does not count it as shown by the 24th's statement.
    run = reconcile(gateway, "kiosk", date(2026, 11, 25), iter([]), file_sha256=digest("b"))
    assert run.total(FindingClass.ONLY_IN_LEDGER).count == 1


def test_a_line_of_another_day_is_never_posted_or_parked(gateway: Gateway) -> None:
    gateway.open_account("3100000001")
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K1:today",
            account_no="3100000001",
            amount=Money(1_000, "CNY"),
            paid_at=PAID,
        )
    )
    yesterday = PAID - timedelta(days=1)
    lines = [
        line(2, "K1:today", "3100000001", 1_000, at=PAID),
        line(3, "K1:unknown", "3100000001", 700, at=yesterday),  # would be a late payment
        line(4, None, "3199999999", 300, at=yesterday),  # would go to suspense
    ]
    entries = scalar(gateway, "SELECT COUNT(*) FROM journal_entries")
    run = reconcile(gateway, "kiosk", date(2026, 11, 24), iter(lines), file_sha256=digest("c"))
    assert run.total(FindingClass.OTHER_BUSINESS_DATE).count == 2
    assert run.in_suspense == 0 and run.open_findings == 2
    assert scalar(gateway, "SELECT COUNT(*) FROM journal_entries") == entries


def test_a_library_run_of_another_days_lines_is_refused(gateway: Gateway) -> None:
    gateway.open_account("3100000001")
    lines = [line(2, "K1:x", "3100000001", 1_000, at=PAID)]
    with pytest.raises(ParseError) as raised:
        reconcile(gateway, "kiosk", date(2026, 11, 25), iter(lines), file_sha256=digest("d"))
    assert raised.value.line == 2 and raised.value.field == "occurred_at"
    assert scalar(gateway, "SELECT COUNT(*) FROM reconciliation_runs") == 0


@given(
    instant=aware_datetimes(),
    cutoff=st.times(),
    zone=st.sampled_from(["Asia/Shanghai", "Asia/Tokyo", "UTC", "Asia/Kolkata"]),
)
def test_day_bounds_hold_exactly_the_instants_of_the_business_day(
    instant: datetime, cutoff: time, zone: str
) -> None:
    rules = SettlementRules(timezone=zone, cutoff=cutoff)
    day = rules.business_date(instant)
    start, end = day_bounds(rules, day)
    assert start <= instant < end
    assert rules.business_date(start) == day
    assert rules.business_date(end) == day + timedelta(days=1)
    assert rules.business_date(start - timedelta(microseconds=1)) == day - timedelta(days=1)


# -- 2. a refused input changes nothing -----------------------------------------------------


def _late_and_unknown(tmp_path: Path) -> Path:
    """The day's forty, a payment the ledger lacks (posted late), an unknown account."""
    rows = [
        *ROWS,
        ("K1", "cash-0500", ACCOUNTS[1], "30.00", PAID),
        ("K1", "cash-0501", "3199999999", "40.00", PAID),
    ]
    return write(tmp_path / "kiosk.csv", kiosk_statement(rows))


REFUSALS: dict[str, tuple[Any, str]] = {
    "unreadable bank file": (
        lambda d: ["--bank", str(write(d / "bad.sta", b":20:S1\n:25:X\n:60F:garbage\n"))],
        "bad.sta",
    ),
    "missing bank file": (lambda d: ["--bank", str(d / "none.sta")], "none.sta"),
    "report of an unknown kind": (lambda d: ["--report", str(d / "out.pdf")], "out.pdf"),
    "report in a missing folder": (
        lambda d: ["--report", str(d / "no" / "such" / "out.html")],
        "out.html",
    ),
    "foreign bank statement": (
        lambda d: ["--bank", str(write(d / "eur.sta", FOREIGN_BANK))],
        "EUR",
    ),
    "bank format unknown": (
        lambda d: ["--bank", str(write(d / "b.sta", OWN_BANK)), "--format", "pdf"],
        "--format",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_input_leaves_the_ledger_byte_for_byte_unchanged(
    ledger: str, tmp_path: Path, case: str
) -> None:
    build, named = REFUSALS[case]
    statement = _late_and_unknown(tmp_path)
    before = snapshot(ledger)
    code, out = reconcile_kiosk(ledger, statement, *build(tmp_path))
    assert code == 2, out
    assert named in out
    assert snapshot(ledger) == before
    # The same command with good inputs then does post: the refusal was not an accident.
    code, out = reconcile_kiosk(ledger, statement)
    assert code == 1, out
    assert snapshot(ledger) != before


def test_all_channels_refused_when_a_later_channels_statement_cannot_be_read(
    ledger: str, tmp_path: Path
) -> None:
    (tmp_path / "kiosk").mkdir()
    _late_and_unknown(tmp_path / "kiosk")
    write(tmp_path / "wechat.csv", b"not a trade bill\n")
    config = write(
        tmp_path / "reconcile.toml",
        b'[channels.kiosk]\nstatement = "kiosk/kiosk.csv"\n'
        b'[channels.wechatpay]\nstatement = "wechat.csv"\n',
    )
    before = snapshot(ledger)
    code, out = paygate(
        "reconcile", "--all", "--date", DAY, "--config", str(config), "--database-url", ledger
    )
    assert code == 2, out
    assert "wechat.csv:1:" in out and "nothing was posted" in out
    assert snapshot(ledger) == before


# -- 4. the bank leg is the utility's own account --------------------------------------------


def test_a_foreign_bank_statement_is_refused_by_name(ledger: str, tmp_path: Path) -> None:
    bank = write(tmp_path / "eur.sta", FOREIGN_BANK)
    before = snapshot(ledger)
    code, out = paygate("reconcile", "--date", DAY, "--bank", str(bank), "--database-url", ledger)
    assert code == 2, out
    assert "in EUR" in out and "CNY" in out
    assert snapshot(ledger) == before


def test_a_bank_statement_of_another_period_is_refused(ledger: str, tmp_path: Path) -> None:
    old = OWN_BANK.replace(b"2611", b"1411").replace(b":60F:C261124", b":60F:C141124")
    old = old.replace(b":62F:C261125", b":62F:C141125")
    bank = write(tmp_path / "old.sta", old)
    code, out = paygate("reconcile", "--date", DAY, "--bank", str(bank), "--database-url", ledger)
    assert code == 2, out
    assert "2014-11-24" in out and DAY in out


def test_a_bank_statement_of_another_account_is_refused(ledger: str, tmp_path: Path) -> None:
    bank = write(tmp_path / "bank.sta", OWN_BANK)
    config = write(tmp_path / "r.toml", b'[bank]\naccount = "755900000000001"\n')
    before = snapshot(ledger)
    code, out = paygate(
        "reconcile", "--date", DAY, "--bank", str(bank), "--config", str(config),
        "--database-url", ledger,
    )  # fmt: skip
    assert code == 2, out
    assert "755912345610001" in out and "755900000000001" in out
    assert snapshot(ledger) == before


def test_the_bank_leg_runs_alone_and_settles_a_day_reconciled_before(
    db_url: str, tmp_path: Path
) -> None:
    migrate.upgrade(db_url)
    with Gateway.open(db_url) as gateway:
        gateway.open_account(ACCOUNTS[0])
        for txn, fen in (("K1:cash-a", 12_050), ("K1:card-b", 8_000)):
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=txn,
                    account_no=ACCOUNTS[0],
                    amount=Money(fen, "CNY"),
                    paid_at=PAID,
                )
            )
    rows = [
        ("K1", "cash-a", ACCOUNTS[0], "120.50", PAID),
        ("K1", "card-b", ACCOUNTS[0], "80.00", PAID),
    ]
    statement = write(tmp_path / "kiosk.csv", kiosk_statement(rows))
    assert reconcile_kiosk(db_url, statement)[0] == 0
    config = write(
        tmp_path / "r.toml", b'[channels.kiosk]\nbank_reference = "KIOSK SETTLE {date}"\n'
    )
    bank = write(tmp_path / "bank.sta", OWN_BANK)
    code, out = paygate(
        "reconcile", "--date", DAY, "--bank", str(bank), "--config", str(config),
        "--actor", "li.na", "--database-url", db_url,
    )  # fmt: skip
    assert code == 0, out
    with Gateway.open(db_url) as gateway:
        balances = gateway.ledger_balances()
    assert balances["bank:CNY"].minor == 20_050 and balances["clearing:kiosk:CNY"].minor == 0


def test_bank_charges_are_reported_not_dropped(ledger: str, tmp_path: Path) -> None:
    bank = write(tmp_path / "bank.sta", CHARGED_BANK)
    code, out = paygate("reconcile", "--date", DAY, "--bank", str(bank), "--database-url", ledger)
    assert code == 1, out
    with Gateway.open(ledger) as gateway:
        run_id = scalar(gateway, "SELECT id FROM reconciliation_runs WHERE kind = 'bank'")
        [debit] = list(findings(gateway, run_id))
    assert debit.finding_class is FindingClass.BANK_DEBIT and debit.open_finding
    assert debit.amount == Money(-1_200, "CNY") and "ACCOUNT FEE" in (debit.reference or "")


# -- 5. suspense and open findings------------------------------------------------------------


def _one_in_suspense(url: str, tmp_path: Path) -> int:
    code, out = reconcile_kiosk(url, _late_and_unknown(tmp_path))
    assert code == 1, out
    with Gateway.open(url) as gateway:
        return scalar(
            gateway, "SELECT id FROM reconciliation_resolutions WHERE action = 'suspense'"
        )


def test_releasing_a_suspense_item_closes_its_finding(ledger: str, tmp_path: Path) -> None:
    item = _one_in_suspense(ledger, tmp_path)
    # The kiosk operator sends a corrected file without the unknown line: the money parked
    # from it is now a finding that waits for someone to release it.
    corrected = [*ROWS, ("K1", "cash-0500", ACCOUNTS[1], "30.00", PAID)]
    statement = write(tmp_path / "corrected.csv", kiosk_statement(corrected))
    code, out = reconcile_kiosk(ledger, statement)
    assert code == 1, out
    code, out = paygate("findings", "list", "--database-url", ledger)
    assert f"suspense:{item}" in out and "1 open finding" in out
    code, out = paygate(
        "suspense", "release", str(item), "--reason", "withdrawn", "--database-url", ledger
    )
    assert code == 0, out
    code, out = paygate("findings", "list", "--database-url", ledger)
    assert code == 0 and "0 open findings" in out, out
    with Gateway.open(ledger) as gateway:
        assert not scalar(
            gateway,
            "SELECT COUNT(*) FROM reconciliation_findings f JOIN reconciliation_runs r "
            "ON r.id = f.run_id WHERE r.superseded_by IS NULL "
            "AND f.status IN ('open', 'suspense')",
        )


def test_one_suspense_item_has_one_id_in_cli_html_and_json(ledger: str, tmp_path: Path) -> None:
    item = _one_in_suspense(ledger, tmp_path)
    code, listed = paygate("suspense", "list", "--database-url", ledger)
    assert code == 0 and listed.splitlines()[0].split()[0] == "ITEM"
    assert listed.splitlines()[1].split()[0] == str(item)
    for suffix in ("html", "json"):
        code, out = reconcile_kiosk(
            ledger, tmp_path / "kiosk.csv", "--report", str(tmp_path / f"r.{suffix}")
        )
        assert code == 1, out
    page = (tmp_path / "r.html").read_text()
    assert f"挂账项 {item}" in page  # zh-CN, the configured default
    data = json.loads((tmp_path / "r.json").read_text())
    parked = [f for run in data["runs"] for f in run["findings"] if f["status"] == "suspense"]
    assert [f["suspense_item"] for f in parked] == [item]


def test_findings_list_shows_ledger_statement_and_difference(ledger: str, tmp_path: Path) -> None:
    rows = [*ROWS[:-1], ("K1", ROWS[-1][1], ROWS[-1][2], "99.99", PAID)]
    code, out = reconcile_kiosk(ledger, write(tmp_path / "k.csv", kiosk_statement(rows)))
    assert code == 1, out
    code, out = paygate("findings", "list", "--database-url", ledger)
    assert code == 0, out
    header, row = out.splitlines()[:2]
    assert header.split()[-4:] == ["ledger", "statement", "difference", "note"]
    fen = KIOSK_DAY[-1][2]
    ledger_side, statement_side = f"{fen / 100:.2f} CNY", "99.99 CNY"
    difference = f"{(9_999 - fen) / 100:.2f} CNY"
    assert row.index(ledger_side) < row.index(statement_side) < row.index(difference)


def test_the_actor_defaults_to_the_operating_system_user(ledger: str, tmp_path: Path) -> None:
    code, out = reconcile_kiosk(ledger, _late_and_unknown(tmp_path))
    assert code == 1, out
    with Gateway.open(ledger) as gateway:
        actors = gateway.store.run(
            lambda tx: {str(a) for (a,) in tx.all("SELECT actor FROM reconciliation_resolutions")},
            write=False,
        )
        runs = gateway.store.run(
            lambda tx: {str(a) for (a,) in tx.all("SELECT actor FROM reconciliation_runs")},
            write=False,
        )
    assert actors == {getpass.getuser()} and runs == {getpass.getuser()}


def test_every_command_that_records_who_acted_defaults_to_the_operating_system_user() -> None:
    from paygate.cli import app as paygate_app
    from paygate.cli._common import actor_name

    assert actor_name(None) == getpass.getuser()[:64] and actor_name(" li.na ") == "li.na"
    for command in (
        ["supply-orders", "confirm"],
        ["suspense", "assign"],
        ["suspense", "release"],
        ["findings", "resolve"],
        ["reconcile"],
    ):
        result = runner.invoke(paygate_app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "--actor" in result.output and "operating-system user" in result.output, command
