"""Each table has one owning module, the only one whose SQL writes it.

The owner is declared on the table itself in :mod:`paygate.store.schema`
(``info={"owner": "paygate.module"}``), so that the schema says both what a table holds and
where the code that writes it lives. This test reads every module of the package, finds each
write (``INSERT INTO t``, ``UPDATE t SET``, ``DELETE FROM t``, ``COPY t``, and the engine's
``tx.insert("t", …)``) and fails where a module writes a table it does not own.

``paygate/client`` is the terminal's side: its SQL writes the kiosk's own offline queue, a
database of its own, not this schema. ``paygate/store/schema.py`` holds the triggers' DDL.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate.store.schema import metadata

PACKAGE = Path(__file__).resolve().parents[1] / "paygate"
NOT_THIS_SCHEMA = ("client",)
DDL = ("store/schema.py",)

WRITE = re.compile(
    r"\bINSERT\s+INTO\s+([a-z_][a-z0-9_]*)"
    r"|\bUPDATE\s+([a-z_][a-z0-9_]*)\s+(?:AS\s+\w+\s+)?SET\b"
    r"|\bDELETE\s+FROM\s+([a-z_][a-z0-9_]*)"
    r"|\bCOPY\s+([a-z_][a-z0-9_]*)\s*(?:\(|FROM\b)"
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def writes_in(source: str) -> Iterator[tuple[int, str]]:
    """(line, table) for every write a module's source makes."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in WRITE.finditer(node.value):
                yield node.lineno, next(g for g in match.groups() if g)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "insert"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.split("/")[0] in NOT_THIS_SCHEMA or relative in DDL:
            continue
        yield path


OWNERS = {table.name: table.info.get("owner") for table in metadata.sorted_tables}


def test_every_table_names_its_owner() -> None:
    unowned = sorted(name for name, owner in OWNERS.items() if not owner)
    assert not unowned, f"tables with no owner declared in paygate/store/schema.py: {unowned}"


def test_every_owner_is_a_module_of_the_package() -> None:
    names = {module_name(path) for path in PACKAGE.rglob("*.py")}
    missing = sorted({owner for owner in OWNERS.values() if owner not in names})
    assert not missing


def test_only_the_owner_writes_a_table() -> None:
    strays = []
    written: set[str] = set()
    for path in modules():
        name = module_name(path)
        for line, table in writes_in(path.read_text(encoding="utf-8")):
            if table not in OWNERS:
                continue  # a temporary staging table, a CTE's name
            written.add(table)
            if OWNERS[table] != name:
                strays.append(f"{name}:{line} writes {table} (owner: {OWNERS[table]})")
    assert not strays, "\n".join(strays)
    # The finder found the writes at all: every owned table is written somewhere.
    # feed_log is appended to by SQLite triggers only (migration 0010), never by a module.
    unwritten = {"journal_seals", "feed_log"}
    assert written == set(OWNERS) - unwritten or written >= set(OWNERS) - unwritten


@pytest.mark.parametrize(
    ("source", "tables"),
    [
        ('q = "INSERT INTO payments (id) VALUES (:id)"', ["payments"]),
        ('q = "UPDATE bills SET x = 1 WHERE id = :id"', ["bills"]),
        ('q = "DELETE FROM nonces WHERE at < :t"', ["nonces"]),
        ('q = "COPY staging_bills (a, b) FROM STDIN"', ["staging_bills"]),
        ('tx.insert("outbox", fields, rows)', ["outbox"]),
        ('q = f"UPDATE vouchers SET status = :to WHERE {where}"', ["vouchers"]),
        ('q = "SELECT 1 FROM payments FOR UPDATE"', []),
        ('q = "payments are written by records"', []),
        ('q = "the row waits for UPDATE of another"', []),
    ],
)
def test_the_write_finder(source: str, tables: list[str]) -> None:
    assert [table for _, table in writes_in(source)] == tables
