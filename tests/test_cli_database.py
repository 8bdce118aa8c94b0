"""Databases never appear by accident: only ``db upgrade`` and ``demo`` make one.

Every other command, pointed at a database that is not there (a mistyped SQLite path), not
migrated, or behind the code, stops before it opens it: one line naming the database and what
to run, exit code 2, and nothing created or changed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
import uvicorn
from typer.testing import CliRunner

from paygate.cli import app
from paygate.errors import SchemaNotReadyError, StoreError
from paygate.store import migrate
from tests.conftest import PG_ADMIN_URL

REPO = Path(__file__).resolve().parents[1]

# Each command with the arguments it needs to get as far as its database: every input that is
# checked first is valid (the files named exist, the dates parse).
COMMANDS: dict[str, list[str]] = {
    "serve": ["serve", "--port", "0"],
    "dispatch": ["dispatch", "--once"],
    "db current": ["db", "current"],
    "db partitions": ["db", "partitions"],
    "audit verify": ["audit", "verify"],
    "audit seal": ["audit", "seal"],
    "accounts status": ["accounts", "status", "3100000001"],
    "accounts import": ["accounts", "import", "{dir}/statement.csv"],
    "bills import": ["bills", "import", "{dir}/statement.csv"],
    "supply-orders list": ["supply-orders", "list"],
    "supply-orders confirm": ["supply-orders", "confirm", "1"],
    "supply-orders retry": ["supply-orders", "retry", "1"],
    "refunds list": ["refunds", "list"],
    "accounts close": ["accounts", "close", "3100000001", "--closure-id", "CL-1", "--reason", "x"],
    # Retired names of the groups: hidden, still working.
    "orders list": ["orders", "list"],
    "orders confirm": ["orders", "confirm", "1"],
    "orders retry": ["orders", "retry", "1"],
    "events dead": ["events", "dead"],
    "events requeue": ["events", "requeue", "--all"],
    "dunning notice": ["dunning", "notice", "3100000001"],
    "dunning candidates": ["dunning", "candidates"],
    "dunning order": ["dunning", "order", "3100000001", "--approved-by", "ops"],
    "report service": ["report", "service", "--from", "2026-11-01", "--to", "2026-11-30"],
    "vouchers issue": [
        "vouchers",
        "issue",
        "VB1",
        "--count",
        "1",
        "--face-value",
        "50.00",
        "--expires-on",
        "2027-12-31",
        "--out",
        "{dir}/cards.csv",
    ],
    "vouchers activate": ["vouchers", "activate", "VB1", "--retailer", "shop-1"],
    "vouchers freeze": ["vouchers", "freeze", "--batch", "VB1", "--reason", "lost"],
    "vouchers report": ["vouchers", "report"],
    "devices add": ["devices", "add", "K1", "--channel", "kiosk", "--public-key", "{dir}/k1.pub"],
    "devices revoke": ["devices", "revoke", "K1"],
    "devices list": ["devices", "list"],
    "clients add": ["clients", "add", "billing-east", "--scope", "payments:read"],
    "clients list": ["clients", "list", "--json"],
    "clients revoke": ["clients", "revoke", "billing-east"],
    "clients rotate": ["clients", "rotate", "billing-east"],
    "staff add": [
        "staff",
        "add",
        "li.na",
        "--role",
        "clerk",
        "--password-stdin",
        "--reason",
        "new",
    ],
    "staff list": ["staff", "list", "--json"],
    "staff disable": ["staff", "disable", "li.na", "--reason", "left"],
    "staff link": ["staff", "link", "li.na", "li.na@grid.example", "--reason", "sso"],
    "reconcile": [
        "reconcile",
        "alipay",
        "--date",
        "2026-11-25",
        "--statement",
        "{dir}/statement.csv",
    ],
    "payments findings list": ["payments", "findings", "list"],
    "payments findings assign": [
        "payments",
        "findings",
        "assign",
        "1",
        "3100000002",
        "--resolution-id",
        "PF-1",
        "--reason",
        "moved",
    ],
    "payments findings refund": [
        "payments",
        "findings",
        "refund",
        "1",
        "--route",
        "bank_transfer",
        "--resolution-id",
        "PF-2",
        "--reason",
        "payer asked",
    ],
    "suspense list": ["suspense", "list"],
    "suspense assign": ["suspense", "assign", "1", "3100000001"],
    "suspense release": ["suspense", "release", "1", "--reason", "returned"],
    "findings list": ["findings", "list"],
    "findings runs": ["findings", "runs"],
    "findings resolve": ["findings", "resolve", "1:1", "--confirm", "--reason", "checked"],
    "exceptions list": ["exceptions", "list"],
    "exceptions runs": ["exceptions", "runs"],
    "exceptions resolve": ["exceptions", "resolve", "1:1", "--confirm", "--reason", "checked"],
}
CREATE_DATABASES = {"db upgrade", "demo", "simulate"}
# Retired command group -> its name now.
RETIRED_GROUPS = {"orders": "supply-orders", "exceptions": "findings"}
# `db current` reports the revision of any database that exists, an empty one included.
READS_ANY_EXISTING = {"db current"}
# Commands that never open a database (tests/test_config_file.py checks that they do not).
NO_DATABASE = {"config show"}


def _command_paths() -> set[str]:
    def walk(command: object, path: list[str]) -> Iterator[str]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield " ".join(path)
            return
        if path and getattr(command, "invoke_without_command", False):
            yield " ".join(path)
        for name, sub in subcommands.items():
            yield from walk(sub, [*path, name])

    return set(walk(typer.main.get_command(app), []))


def test_every_command_is_either_allowed_to_create_a_database_or_checked_here() -> None:
    assert _command_paths() == set(COMMANDS) | CREATE_DATABASES | NO_DATABASE


@pytest.fixture(autouse=True)
def _serve_never_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `serve` that got past its database check would listen until killed."""

    def listen(*args: object, **kwargs: object) -> None:
        pytest.fail("paygate serve opened a database it should have refused")

    monkeypatch.setattr(uvicorn, "run", listen)


def _invoke(name: str, database_url: str, directory: Path) -> tuple[int, str]:
    (directory / "statement.csv").write_text("")
    (directory / "k1.pub").write_text("read only once the database is open\n")
    args = [a.replace("{dir}", str(directory)) for a in COMMANDS[name]]
    result = CliRunner().invoke(app, [*args, "--database-url", database_url])
    output = result.output
    if args[0] in RETIRED_GROUPS:
        # A retired group says its new name first, on a line of its own, and then is itself.
        notice = f"paygate {args[0]} is deprecated; use paygate {RETIRED_GROUPS[args[0]]}\n"
        assert output.startswith(notice), output
        output = output[len(notice) :]
    return result.exit_code, output


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_command_creates_a_missing_sqlite_database(name: str, tmp_path: Path) -> None:
    db = tmp_path / "typo" / "paygate.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    code, output = _invoke(name, url, tmp_path)
    assert code == 2, output
    assert _one_line(output) == (
        f"error: no database at {url} (run `paygate db upgrade --database-url {url}`)"
    )
    assert list(db.parent.iterdir()) == []  # nor its -wal and -shm
    assert _files(tmp_path) == {"typo", "statement.csv", "k1.pub"}  # no printer file either


def test_a_relative_sqlite_path_is_refused_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAYGATE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["audit", "verify"])  # the default, sqlite:///paygate.db
    assert result.exit_code == 2
    assert "no database at sqlite:///paygate.db" in _one_line(result.output)
    assert not (tmp_path / "paygate.db").exists()


def test_an_in_memory_sqlite_database_is_refused(tmp_path: Path) -> None:
    code, output = _invoke("audit verify", "sqlite://", tmp_path)
    assert code == 2
    assert "no database at sqlite://: an in-memory SQLite database" in _one_line(output)


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - READS_ANY_EXISTING))
def test_an_empty_sqlite_file_is_refused_and_left_empty(name: str, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    url = f"sqlite:///{db}"
    code, output = _invoke(name, url, tmp_path)
    assert code == 2, output
    assert _one_line(output).startswith(f"error: the database at {url} is not migrated")
    assert "(run `paygate db upgrade" in output
    assert db.stat().st_size == 0


def test_a_sqlite_database_behind_the_code_is_refused_not_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0004")
    code, output = _invoke("audit verify", url, tmp_path)
    assert code == 2
    head = migrate.head_revision()
    assert _one_line(output) == (
        f"error: the database at {url} is at revision 0004, the code needs revision {head} "
        f"(run `paygate db upgrade --database-url {url}`)"
    )
    assert migrate.current_revision(url) == "0004"


def test_db_current_reads_an_existing_database_and_refuses_a_missing_one(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = CliRunner().invoke(app, ["db", "current", "--database-url", f"sqlite:///{empty}"])
    assert result.exit_code == 0
    assert f"database: empty  code: {migrate.head_revision()}" in result.output
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(app, ["db", "current", "--database-url", missing])
    assert result.exit_code == 2 and "no database at" in result.output
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(set(COMMANDS) - READS_ANY_EXISTING))
def test_no_command_migrates_an_empty_postgresql_database(
    name: str, empty_pg_url: str, tmp_path: Path
) -> None:
    code, output = _invoke(name, empty_pg_url, tmp_path)
    assert code == 2, output
    line = _one_line(output)
    assert re.fullmatch(
        r"error: the database at postgresql\+psycopg://\S+ is not migrated, the code needs "
        r"revision \w+ \(run `paygate db upgrade --database-url postgresql\+psycopg://\S+`\)",
        line,
    ), line
    assert migrate.current_revision(empty_pg_url) is None


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_named(tmp_path: Path) -> None:
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/paygate_missing_{uuid.uuid4().hex[:12]}"
    code, output = _invoke("audit verify", url, tmp_path)
    assert code == 2
    line = _one_line(output)
    assert line.startswith("error: cannot read the database at postgresql+psycopg://")
    assert "does not exist" in line


@pytest.mark.postgres
def test_db_current_reports_an_empty_postgresql_database(empty_pg_url: str) -> None:
    result = CliRunner().invoke(app, ["db", "current", "--database-url", empty_pg_url])
    assert result.exit_code == 0
    assert "database: empty" in result.output


def test_reading_a_missing_sqlite_databases_revision_does_not_create_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert migrate.current_revision(url) is None
    with pytest.raises(SchemaNotReadyError, match="no database at"):
        migrate.require_current(url)
    with pytest.raises(SchemaNotReadyError, match="no database at"):
        migrate.downgrade(url, "base")
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_names_a_missing_directory_and_an_unknown_revision(tmp_path: Path) -> None:
    nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    with pytest.raises(StoreError, match=r"there is no directory .*/no/such"):
        migrate.upgrade(nowhere)
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", nowhere])
    assert result.exit_code == 2 and "there is no directory" in _one_line(result.output)
    bogus = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(
        app, ["db", "upgrade", "--database-url", bogus, "--revision", "bogus"]
    )
    assert result.exit_code == 2
    assert "Can't locate revision identified by 'bogus'" in _one_line(result.output)


def test_the_readme_follows_make_demo_to_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's next commands after `make demo` read the database `make demo` wrote."""
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    [demo_url] = re.findall(r"paygate demo --database-url (\S+)", makefile)
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    [block] = [b for b in blocks if "export PAYGATE_DATABASE_URL=" in b]
    assert f"export PAYGATE_DATABASE_URL={demo_url} " in block
    commands = [
        line.split("#")[0].split()[1:] for line in block.splitlines() if line.startswith("paygate ")
    ]
    assert commands

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAYGATE_DATABASE_URL", demo_url)
    runner = CliRunner()
    made = runner.invoke(app, ["demo", "--accounts", "10"])
    assert made.exit_code == 0, made.output
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
