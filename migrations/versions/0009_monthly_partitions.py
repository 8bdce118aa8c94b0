"""PostgreSQL: the journal, its postings and the outbox become tables partitioned by month.

``journal_entries`` and ``outbox`` become ``PARTITION BY RANGE (id)``, ``postings``
``PARTITION BY RANGE (entry_id)``: a posting lives in its entry's month.
Every id comes from one sequence, and each calendar month owns a fixed range of it: month M
(counted from January 2000) owns ids ``[M * 2**36, (M + 1) * 2**36)``. The partition key is
the primary key itself (the entry's key for postings, whose primary key becomes (id, entry_id);
nothing refers to a posting), so every foreign key to these tables stays as it was, and no
statement changes: a row goes to the month its id was handed out in. The monthly
maintenance (``paygate db partitions``) creates the partitions of this month and the next and
moves the sequence to this month's range; until it runs, ids keep coming from the range the
sequence is in, whose partition exists, so a payment never waits for it.

The balance check of each INSERT into ``postings`` now sums the inserted rows alone (see
``_CHECK_NEW_ROWS``), so its cost does not grow with the months kept.

The rows already there are kept where they are: the existing table is attached, without a copy,
as the partition ``<table>_initial`` of every id handed out before the upgrade (the ids between
those and this month's range are never handed out, so earlier months can still be given
partitions of their own, e.g. to load history month by month). Its indexes become the
partitions of the new partitioned indexes; its triggers and foreign keys are moved to the
partitioned table (which gives them to every partition). ``payments`` is not partitioned:
its unique key (channel, channel_txn_id) is what makes a payment exactly-once, and a unique key
of a partitioned table must contain the partition key.

Downgrade copies each table back into one plain table. SQLite: nothing changes (it has no
partitioning). Frozen: imports nothing from paygate.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("journal_entries", "postings", "outbox")
# Postings are partitioned by their entry's id, so an entry and its postings share a month:
# the sealer's and verify's reads of an entry's legs (by entry_id) touch one partition, and a
# month's journal and postings archive together. Their primary key gains entry_id (a key of a
# partitioned table must contain the partition key); nothing refers to a posting by its key.
KEYS = {"journal_entries": "id", "postings": "entry_id", "outbox": "id"}
PRIMARY_KEYS = {"journal_entries": "id", "postings": "id, entry_id", "outbox": "id"}
MONTH_BITS = 36  # ids per month: 2**36, about 6.9e10


# The balance check per statement sums only the rows the statement inserted: every earlier
# statement was checked the same way, so an entry's new rows summing to zero is exactly its
# whole sum being zero. Reading the table instead (0001's body) probes the entry_id index of
# every monthly partition, a cost that grows with each month kept.
_CHECK_NEW_ROWS = """
CREATE OR REPLACE FUNCTION paygate_check_postings_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.entry_id, n.currency, sum(n.amount) AS total INTO bad
      FROM new_postings n
     GROUP BY n.entry_id, n.currency
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance in %: postings sum to %',
            bad.entry_id, bad.currency, bad.total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$
"""

_CHECK_TABLE = """
CREATE OR REPLACE FUNCTION paygate_check_postings_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT p.entry_id, p.currency, sum(p.amount) AS total INTO bad
      FROM postings p
     WHERE p.entry_id IN (SELECT DISTINCT entry_id FROM new_postings)
     GROUP BY p.entry_id, p.currency
    HAVING sum(p.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance in %: postings sum to %',
            bad.entry_id, bad.currency, bad.total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$
"""


def _month_index(year: int, month: int) -> int:
    return (year - 2000) * 12 + month - 1


def _base(index: int) -> int:
    return index << MONTH_BITS


def _name(table: str, index: int) -> str:
    return f"{table}_p{2000 + index // 12:04d}_{index % 12 + 1:02d}"


def _all(conn: sa.Connection, sql: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    return list(conn.execute(sa.text(sql), params))


def _outgoing_fks(conn: sa.Connection, table: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in _all(
            conn,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(:t) AND contype = 'f' ORDER BY conname",
            t=table,
        )
    ]


def _incoming_fks(conn: sa.Connection, table: str) -> list[tuple[str, str, str]]:
    return [
        (str(r[0]), str(r[1]), str(r[2]))
        for r in _all(
            conn,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE confrelid = to_regclass(:t) AND contype = 'f' "
            "AND conrelid <> confrelid AND conparentid = 0 ORDER BY 1, 2",
            t=table,
        )
    ]


def _indexes(conn: sa.Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of every index but the primary key's."""
    return [
        (str(r[0]), str(r[1]))
        for r in _all(
            conn,
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary ORDER BY c.relname",
            t=table,
        )
    ]


def _triggers(conn: sa.Connection, table: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in _all(
            conn,
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = to_regclass(:t) AND NOT tgisinternal AND tgparentid = 0 "
            "ORDER BY tgname",
            t=table,
        )
    ]


def _is_truncate_guard(definition: str) -> bool:
    return "BEFORE TRUNCATE" in definition


def _partition_table(conn: sa.Connection, table: str, bound: int, first: int) -> None:
    """Make ``table`` partitioned: its rows kept as the partition of ids below ``bound``, and
    the partitions of months ``first`` and ``first + 1``."""
    indexes = _indexes(conn, table)
    triggers = _triggers(conn, table)
    fks = _outgoing_fks(conn, table)
    initial = f"{table}_initial"
    for name, _ in triggers:
        op.execute(f'DROP TRIGGER "{name}" ON {table}')
    for name, _ in fks:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    op.execute(f"ALTER TABLE {table} RENAME TO {initial}")
    op.execute(f"ALTER TABLE {initial} RENAME CONSTRAINT pk_{table} TO pk_{initial}")
    for name, _ in indexes:
        op.execute(f'ALTER INDEX "{name}" RENAME TO "{name}_initial"')
    op.execute(
        f"CREATE TABLE {table} (LIKE {initial} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        f"PARTITION BY RANGE ({KEYS[table]})"
    )
    high = conn.execute(sa.text(f"SELECT max({KEYS[table]}) FROM {initial}")).scalar()  # noqa: S608
    if high is not None and int(high) >= bound:
        raise RuntimeError(f"{table} holds ids the sequence never handed out; cannot partition")
    if PRIMARY_KEYS[table] != "id":
        # A table has one primary key: the partitioned table's, built next, replaces it.
        op.execute(f"ALTER TABLE {initial} DROP CONSTRAINT pk_{initial}")
    op.execute(
        f"ALTER TABLE {table} ATTACH PARTITION {initial} FOR VALUES FROM (MINVALUE) TO ({bound})"
    )
    # Built on the partitioned table, each attaches the partition's equivalent index as is.
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({PRIMARY_KEYS[table]})")
    for _, definition in indexes:
        op.execute(definition)
    months = [index for index in (first, first + 1) if _base(index) >= bound]
    for index in months:
        op.execute(
            f"CREATE TABLE {_name(table, index)} PARTITION OF {table} "
            f"FOR VALUES FROM ({_base(index)}) TO ({_base(index + 1)})"
        )
    for name, definition in fks:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for _, definition in triggers:
        op.execute(definition)
        if _is_truncate_guard(definition):
            # Statement triggers stay on the table named: every partition gets the guard too.
            for part in [initial, *(_name(table, index) for index in months)]:
                op.execute(definition.replace(f" ON public.{table} ", f" ON public.{part} "))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    now = datetime.now(UTC)
    first = _month_index(now.year, now.month)
    # Every id handed out so far is below the end of the sequence's latest block (1000 ids).
    # A sequence already in a month's range (partitioned before, then downgraded) keeps that
    # whole range in the initial partition, so its next blocks have a place.
    last, called = conn.execute(sa.text("SELECT last_value, is_called FROM paygate_id_seq")).one()
    bound = int(last) + (1000 if called else 0)
    if bound > _base(first):
        bound = _base((int(last) >> MONTH_BITS) + 1)
    incoming = [fk for table in TABLES for fk in _incoming_fks(conn, table)]
    for source, name, _ in incoming:
        op.execute(f'ALTER TABLE {source} DROP CONSTRAINT "{name}"')
    for table in TABLES:
        _partition_table(conn, table, bound, first)
    for source, name, definition in incoming:
        op.execute(f'ALTER TABLE {source} ADD CONSTRAINT "{name}" {definition}')
    op.execute(_CHECK_NEW_ROWS)
    # Ids from here on come from this month's range.
    op.execute(
        sa.text(
            "SELECT setval('paygate_id_seq', GREATEST(:b, last_value)) FROM paygate_id_seq"
        ).bindparams(b=_base(first))
    )


def _unpartition_table(conn: sa.Connection, table: str) -> None:
    indexes = _indexes(conn, table)
    triggers = _triggers(conn, table)
    fks = _outgoing_fks(conn, table)
    plain = f"{table}_plain"
    op.execute(f"CREATE TABLE {plain} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute(f"INSERT INTO {plain} SELECT * FROM {table}")  # noqa: S608
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {plain} RENAME TO {table}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id)")
    for _, definition in indexes:
        op.execute(definition.replace(" ON ONLY ", " ON "))
    for name, definition in fks:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for _, definition in triggers:
        op.execute(definition)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    incoming = [fk for table in TABLES for fk in _incoming_fks(conn, table)]
    for source, name, _ in incoming:
        op.execute(f'ALTER TABLE {source} DROP CONSTRAINT "{name}"')
    for table in reversed(TABLES):
        _unpartition_table(conn, table)
    for source, name, definition in incoming:
        op.execute(f'ALTER TABLE {source} ADD CONSTRAINT "{name}" {definition}')
    op.execute(_CHECK_TABLE)
