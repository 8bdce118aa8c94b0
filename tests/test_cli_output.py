"""The ``paygate`` command's output, for scripts and for people.

Every listing and report prints one JSON document with the keys docs/operations.md lists, and
CSV where it is a table; piped, a table is tab-separated lines that never cut a value short;
every command's help has a runnable example; and every refusal is one line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

import paygate.cli._common as common
from paygate.cli import app
from paygate.cli._common import plural
from paygate.console.staff import StaffRegistry
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.service_clients import ServiceClientRegistry
from tests.reconcile.support import kiosk_statement
from tests.refund_fakes import PENDING, ScriptedRoute

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

# Each command that prints a listing or a report, with the arguments it needs on the
# database `populated` makes.
LISTINGS: dict[str, list[str]] = {
    "supply-orders list": ["supply-orders", "list"],
    "orders list": ["orders", "list"],
    "suspense list": ["suspense", "list"],
    "payments findings list": ["payments", "findings", "list"],
    "findings list": ["findings", "list"],
    "exceptions list": ["exceptions", "list"],
    "findings runs": ["findings", "runs"],
    "exceptions runs": ["exceptions", "runs"],
    "vouchers report": ["vouchers", "report"],
    "devices list": ["devices", "list"],
    "dunning candidates": ["dunning", "candidates"],
    "accounts status": ["accounts", "status", "3100000001"],
    "audit verify": ["audit", "verify"],
    "events dead": ["events", "dead"],
    "report service": ["report", "service", "--from", "2026-11-01", "--to", "2026-11-30"],
    "config show": ["config", "show"],
    "clients list": ["clients", "list"],
    "refunds list": ["refunds", "list"],
    "staff list": ["staff", "list"],
}
# Commands whose --json is the summary of what they did (tested with them), not a listing.
SUMMARIES = {
    "accounts import",
    "bills import",
    "db partitions",
    "accounts close",
    "simulate",
    "payments findings assign",
    "payments findings refund",
}
# Retired group names list what their groups list.
SAME_AS = {
    "orders list": "supply-orders list",
    "exceptions list": "findings list",
    "exceptions runs": "findings runs",
}
RETIRED = {"orders": "supply-orders", "exceptions": "findings"}
# Listings that can grow without bound: they page.
PAGED = {
    "supply-orders list",
    "suspense list",
    "findings list",
    "findings runs",
    "devices list",
    "events dead",
    "refunds list",
    "staff list",
}
PAID = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)


def _commands() -> Iterator[tuple[list[str], object]]:
    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield path, command
            return
        for name, sub in subcommands.items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def _options(command: object) -> dict[str, object]:
    return {
        opt: param
        for param in getattr(command, "params", [])
        for opt in getattr(param, "opts", [])
        if opt.startswith("--")
    }


def documented_keys() -> dict[str, tuple[list[str], list[str]]]:
    """docs/operations.md's table: command -> (top-level keys, keys of each item)."""
    text = (REPO / "docs" / "operations.md").read_text()
    keys: dict[str, tuple[list[str], list[str]]] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\| `paygate ([a-z -]+)` \|([^|]*)\|([^|]*)\|", line.strip())
        if match:
            top = re.findall(r"`(\w+)`", match.group(2))
            items = re.findall(r"`(\w+)`", match.group(3))
            keys[match.group(1)] = (top, items)
    return keys


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo's month, then a kiosk statement with a stranger's payment (suspense) that
    leaves the demo's own kiosk payments unmatched (findings), and one dead-lettered event."""
    where = tmp_path_factory.mktemp("populated")
    url = f"sqlite:///{where / 'paygate.db'}"
    made = runner.invoke(app, ["demo", "--accounts", "10", "--database-url", url])
    assert made.exit_code == 0, made.output
    with Gateway.open(url) as gateway:
        ServiceClientRegistry(gateway.store, gateway.clock).add("billing-east", ["payments:read"])
        staff = StaffRegistry(gateway.store, gateway.clock)
        staff.add("li.na", "clerk", "a long enough password", display_name="李娜")
        staff.add("wang.fang", "finance", "another long password")
        # Paid at the kiosk, missing from its statement: open findings.
        for n in (1, 2, 3):
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=f"K0001:cash-100{n}",
                    account_no=f"310000000{n}",
                    amount=Money(1_000 * n, "CNY"),
                    paid_at=PAID,
                )
            )
        # Credit paid back: two refund orders, one of them paid.
        route = ScriptedRoute("kiosk-cash", "kiosk", settle_as=PENDING)
        gateway.use_refund_routes({"kiosk-cash": route})
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id="K0001:cash-2001",
                account_no="3100000009",
                amount=Money(900_000, "CNY"),
                paid_at=PAID,
            )
        )
        for n in (1, 2):
            gateway.refund(
                "3100000009", Money(100 * n, "CNY"), refund_id=f"RF-{n}", route="kiosk-cash"
            )
        gateway.complete_refund("RF-1", "KC-77")
        # Two payments to a closed account: held in suspense, payment findings.
        gateway.open_account("3100000099")
        gateway.close_account("3100000099", closure_id="CL-99", reason="moved away")
        for n in (1, 2):
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=f"K0001:cash-990{n}",
                    account_no="3100000099",
                    amount=Money(500 * n, "CNY"),
                    paid_at=PAID,
                )
            )
    statement = where / "kiosk.csv"
    statement.write_bytes(kiosk_statement([("K0001", "cash-9001", "3100999999", "50.00", PAID)]))
    done = runner.invoke(
        app,
        ["reconcile", "kiosk", "--date", "2026-11-24", "--statement", str(statement),
         "--database-url", url],
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    with Gateway.open(url) as gateway:
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE outbox SET dead_at = :t, delivered_at = NULL, last_error = 'refused' "
                "WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 3)",
                {"t": tx.ts(PAID)},
            )
        )
    return url


def _run(args: list[str], url: str, *more: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, *more, "--database-url", url])
    return result.exit_code, result.stdout, result.stderr


def test_every_listing_and_report_has_json_and_is_documented() -> None:
    with_json = {" ".join(path) for path, command in _commands() if "--json" in _options(command)}
    assert with_json == set(LISTINGS) | SUMMARIES
    assert set(documented_keys()) == set(LISTINGS) - set(SAME_AS)


@pytest.mark.parametrize("name", sorted(LISTINGS))
def test_json_parses_and_has_the_documented_keys(name: str, populated: str) -> None:
    code, stdout, stderr = _run(LISTINGS[name], populated, "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    top, item_keys = documented_keys()[SAME_AS.get(name, name)]
    if isinstance(document, list):  # config show: one object a value
        assert top == [] and document
        items = document
    else:
        assert list(document) == top
        items = document.get("items", [])
    for item in items:
        assert list(item) == item_keys
    _check_values(items)


def _check_values(items: list[dict[str, object]]) -> None:
    for item in items:
        for key, value in item.items():
            if isinstance(value, dict) and "minor" in value:
                # Money: integer minor units, the currency, and the amount for people.
                assert isinstance(value["minor"], int) and list(value) == [
                    "minor",
                    "currency",
                    "display",
                ]
            if (key.endswith("_at") or key == "since") and value is not None:
                # Times: ISO 8601 in the business zone, with its offset.
                assert isinstance(value, str)
                assert datetime.fromisoformat(value).utcoffset() is not None, (key, value)
                assert value.endswith("+08:00"), (key, value)


def test_populated_listings_are_not_empty(populated: str) -> None:
    """The checks above looked at rows, not at empty lists."""
    for name in ("supply-orders list", "suspense list", "findings list", "vouchers report",
                 "devices list", "events dead", "accounts status", "findings runs",
                 "payments findings list"):  # fmt: skip
        code, stdout, _ = _run(LISTINGS[name], populated, "--json")
        assert code == 0, name
        assert json.loads(stdout)["items"], name


@pytest.mark.parametrize(
    "name",
    sorted(n for n in LISTINGS if n not in {"audit verify", "config show", "report service"}),
)
def test_csv_has_a_header_of_the_documented_keys(name: str, populated: str) -> None:
    code, stdout, stderr = _run(LISTINGS[name], populated, "--format", "csv")
    assert code == 0, stderr
    rows = list(csv.reader(io.StringIO(stdout)))
    _, item_keys = documented_keys()[SAME_AS.get(name, name)]
    assert rows[0] == item_keys
    assert all(len(row) == len(item_keys) for row in rows[1:])
    code, stdout_json, _ = _run(LISTINGS[name], populated, "--json")
    assert len(rows) - 1 == len(json.loads(stdout_json)["items"])


@pytest.mark.parametrize("name", sorted(PAGED))
def test_a_listing_pages_with_limit_and_after(name: str, populated: str) -> None:
    code, stdout, _ = _run(LISTINGS[name], populated, "--json")
    everything = json.loads(stdout)["items"]
    assert everything, name
    seen: list[object] = []
    after: list[str] = []
    while True:
        code, stdout, stderr = _run(LISTINGS[name], populated, "--json", "--limit", "1", *after)
        assert code == 0, stderr
        document = json.loads(stdout)
        assert len(document["items"]) <= 1
        seen.extend(document["items"])
        if document["next"] is None:
            break
        # For people, the cursor is printed on stderr, the table alone on stdout.
        code, stdout, stderr = _run(LISTINGS[name], populated, "--limit", "1", *after)
        assert f"next page: --after {document['next']}" in stderr
        assert "next page" not in stdout
        after = ["--after", document["next"]]
    assert seen == everything


def test_a_cursor_that_is_none_is_refused_on_one_line(populated: str) -> None:
    for name in ("suspense list", "supply-orders list", "findings list", "events dead"):
        code, _, stderr = _run(LISTINGS[name], populated, "--after", "x;1")
        assert code == 2
        [line] = stderr.splitlines()
        assert line.startswith("error: --after: ") and "cursor" in line


def _full_values(url: str) -> list[str]:
    """Values people copy whole: money, batch numbers, key fingerprints."""
    values: list[str] = []
    wanted = {
        "devices list": ["key"],
        "vouchers report": ["batch_no", "outstanding"],
        "suspense list": ["amount"],
        "supply-orders list": ["created_at"],
    }
    for name, keys in wanted.items():
        _, stdout, _ = _run(LISTINGS[name], url, "--json")
        for item in json.loads(stdout)["items"]:
            for key in keys:
                value = item[key]
                values.append(value["display"] if isinstance(value, dict) else str(value))
    assert any(v.startswith("SHA256:") for v in values)
    return values


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_nothing_is_cut_short_at_40_columns(
    populated: str, terminal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _full_values(populated)
    monkeypatch.setenv("COLUMNS", "40")
    shown = io.StringIO()
    if terminal:
        monkeypatch.setattr(common, "out", Console(file=shown, force_terminal=True, width=40))
    printed = ""
    for name in ("devices list", "vouchers report", "suspense list", "supply-orders list"):
        code, stdout, stderr = _run(LISTINGS[name], populated)
        assert code == 0, stderr
        printed += stdout
    printed += shown.getvalue()
    assert "…" not in printed
    for value in values:
        assert value in printed, value
    if not terminal:
        # Piped: a header line, then one tab-separated line a row.
        _, stdout, _ = _run(LISTINGS["devices list"], populated)
        header, *rows = stdout.splitlines()
        assert header.split("\t")[:3] == ["device", "channel", "key"]
        assert all(len(row.split("\t")) == 7 for row in rows)


def test_every_command_has_a_runnable_example_and_plain_value_labels() -> None:
    for path, command in _commands():
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, path
        help_text = result.output
        assert not re.search(r"<(bool|str|int|float|path)", help_text), (path, help_text)
        epilog = getattr(command, "epilog", None) or ""
        match = re.fullmatch(r"Example: (paygate .+)", epilog)
        assert match, (path, epilog)
        words = shlex.split(match.group(1))
        current = [RETIRED.get(path[0], path[0]), *path[1:]]
        assert words[1 : 1 + len(path)] == current, (path, words)
        assert "Example: paygate" in help_text
        # The example's flags are the command's own, and its values parse.
        context = command.make_context(" ".join(path), words[1 + len(path) :])  # type: ignore[attr-defined]
        assert context.params is not None


def test_reconcile_help_names_no_subcommands() -> None:
    result = runner.invoke(app, ["reconcile", "--help"], env={"COLUMNS": "80"})
    assert "COMMAND" not in result.output and "[ARGS]" not in result.output
    assert "[reconcile]" in result.output  # the section name, not eaten as markup


def test_no_help_text_loses_a_bracketed_word() -> None:
    """A configuration section named in help ("[refunds]", "[log] level") is printed as
    written, in every command's help: never taken for markup and dropped."""
    checked = 0
    for path, command in _commands():
        written = [getattr(command, "help", None) or ""] + [
            getattr(param, "help", None) or "" for param in getattr(command, "params", [])
        ]
        bracketed = {m for text in written for m in re.findall(r"\[[a-z][a-z_.]*\]", text)}
        if not bracketed:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, path
        for word in bracketed:
            assert word in result.output, (path, word)
        checked += 1
    assert checked >= 5  # dispatch, serve, reconcile, reports, payments findings refund, ...


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("args", [["db", "upgrade"], ["audit", "verify"], ["demo"],
                                  ["suspense", "list", "--json"]])  # fmt: skip
def test_an_unreachable_postgresql_is_one_line_without_the_password(args: list[str]) -> None:
    url = f"postgresql+psycopg://paygate:s3cret-pw@127.0.0.1:{_closed_port()}/paygate"
    result = runner.invoke(app, [*args, "--database-url", url])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: ") and "127.0.0.1" in line
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["db", "upgrade"], ["audit", "verify"], ["demo"],
                                  ["devices", "list"]])  # fmt: skip
def test_a_missing_directory_is_one_line_naming_it(args: list[str], tmp_path: Path) -> None:
    where = tmp_path / "no" / "such" / "dir" / "with-a-long-name-that-passes-80-columns"
    url = f"sqlite:///{where / 'paygate.db'}"
    result = runner.invoke(app, [*args, "--database-url", url], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert str(where) in line  # unwrapped: the path can be copied back
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["suspense", "list", "--limit", "0"], "'--limit'"),
        (["suspense", "list", "--format", "xml"], "'--format'"),
        (["accounts", "status", "3100000001", "--as-of", "30/11/2026"], "--as-of:"),
        (["vouchers", "report", "--as-of", "yesterday"], "--as-of:"),
        (["accounts", "status", "3199999999"], "ACCOUNT_NO:"),
        (["reconcile", "kiosk"], "--date:"),
        (["devices", "list", "--no-such-flag"], "--no-such-flag"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_the_flag(
    args: list[str], flag: str, populated: str
) -> None:
    result = runner.invoke(app, [*args, "--database-url", populated], env={"COLUMNS": "40"})
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("error: ") and flag in line, line
    assert "as_of" not in line and "account_no" not in line


def test_counts_read_as_english() -> None:
    assert plural(1, "exception") == "1 exception"
    assert plural(0, "finding") == "0 findings"
    assert plural(2, "entry", "entries") == "2 entries"


def test_the_reconcile_summary_is_not_cut_short_at_40_columns(populated: str) -> None:
    statement = Path(populated.removeprefix("sqlite:///")).parent / "kiosk.csv"
    args = ["reconcile", "kiosk", "--date", "2026-11-24", "--statement", str(statement)]
    result = runner.invoke(app, [*args, "--database-url", populated], env={"COLUMNS": "40"})
    assert result.exit_code == 1, result.output  # the same file again: the same open findings
    assert "(same file)" in result.output
    assert "…" not in result.output
    assert "Only in the statement" in result.output and "50.00" in result.output
    assert "open findings remain" in result.output


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(
        st.lists(
            st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=5,
    ),
    width=st.integers(min_value=20, max_value=200),
)
def test_a_terminal_table_never_shortens_a_cell(cells: list[list[str]], width: int) -> None:
    shown = io.StringIO()
    console = Console(file=shown, force_terminal=True, width=width, color_system=None)
    original = common.out
    common.out = console
    try:
        common._table(["a", "b", "c"], cells)
    finally:
        common.out = original
    lines = shown.getvalue().splitlines()
    assert not any("…" in line for line in lines)
    for row in cells:
        for cell in row:
            assert any(cell in line for line in lines), cell


def test_csv_never_hands_a_spreadsheet_a_formula(capsys: pytest.CaptureFixture[str]) -> None:
    listing = common.Listing(
        [common.Column("subject", "subject"), common.Column("amount", "amount")],
        [{"subject": '=HYPERLINK("http://x")', "amount": Money(-1234, "CNY")}],
        "Asia/Shanghai",
    )
    common.emit(listing, common.OutputFormat.CSV)
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["subject", "amount"], ['\'=HYPERLINK("http://x")', "-12.34 CNY"]]
