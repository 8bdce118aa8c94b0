"""Monthly partitions of the journal, its postings and the outbox (PostgreSQL).

On PostgreSQL ``journal_entries`` and ``outbox`` are partitioned by range of ``id``, and
``postings`` by range of ``entry_id``, so that an entry's postings share its month (migration
0009). Every id comes from one sequence, and each calendar month (UTC) owns a
fixed range of it: month *M*, counted from January 2000, owns ``[M * 2**36, (M + 1) * 2**36)``.
A row therefore lands in the partition of the month its id (a posting: its entry's id) was
handed out in, with no date column, no change to any statement, and every foreign key kept as
it was; the primary key of ``postings`` becomes (id, entry_id), as a partitioned table's key
must contain its partition key (nothing refers to a posting).

:func:`maintain` is the monthly maintenance (``paygate db partitions``; run it daily, it does
nothing when there is nothing to do): it creates the partitions of this month and of the months
ahead, then moves the id sequence into this month's range. It never has to run for a payment
to succeed: until it runs, ids keep coming from the range the sequence is in, and that range's
partition exists (the sequence is only ever moved into a range whose partitions were made in
the same transaction). A month's range holds 2**36 ids, about 6.9e10; a payment takes about
ten. Ids stay below 2**53 until the year 12000, so they survive JSON readers that hold numbers
as doubles.

SQLite has no partitioning: there :func:`maintain` does nothing and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from paygate.store.engine import Tx
from paygate.store.schema import PARTITIONED_TABLES, is_partition

__all__ = [
    "MONTH_BITS",
    "PARTITIONED_TABLES",
    "MaintenanceReport",
    "Partition",
    "is_partition",
    "maintain",
    "month_base",
    "month_index",
    "month_of_id",
    "partition_name",
    "partitions",
]

MONTH_BITS = 36
# The statement-level guard a partition needs of its own (a parent's is not inherited).
_TRUNCATE_GUARDED = {"journal_entries", "postings"}
_LOCK = 7303312  # advisory lock: one maintenance at a time
_BOUND = re.compile(r"FROM \((MINVALUE|'?-?\d+'?)\) TO \((MAXVALUE|'?-?\d+'?)\)")


def month_index(day: date) -> int:
    """The month of ``day``, counted from January 2000 (0)."""
    return (day.year - 2000) * 12 + day.month - 1


def month_base(index: int) -> int:
    """The first id of month ``index``'s range."""
    return index << MONTH_BITS


def month_of_id(entry_id: int) -> date:
    """The first day of the month whose range holds ``entry_id`` (ids of the initial
    partition, below January 2000's range end, read as January 2000)."""
    index = max(entry_id, 0) >> MONTH_BITS
    return date(2000 + index // 12, index % 12 + 1, 1)


def partition_name(table: str, index: int) -> str:
    """``postings_p2026_12`` for table ``postings`` and December 2026's index."""
    return f"{table}_p{2000 + index // 12:04d}_{index % 12 + 1:02d}"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its table, its name and its id range (None for an open end)."""

    table: str
    name: str
    low: int | None
    high: int | None
    rows_estimate: int


@dataclass(slots=True)
class MaintenanceReport:
    """What :func:`maintain` did."""

    supported: bool = True
    created: list[str] = field(default_factory=list)
    sequence_moved_to: int | None = None


def _bound(text: str) -> int | None:
    return None if text in ("MINVALUE", "MAXVALUE") else int(text.strip("'"))


def partitions(tx: Tx) -> list[Partition]:
    """Every partition of the partitioned tables, in table and id order (PostgreSQL only)."""
    if tx.dialect != "postgresql":
        return []
    out: list[Partition] = []
    for table, name, bound, rows in tx.all(
        "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid), "
        "GREATEST(c.reltuples, 0)::bigint FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname IN ('journal_entries', 'postings', 'outbox') AND p.relkind = 'p'"
    ):
        match = _BOUND.search(str(bound))
        if match is None:
            continue
        out.append(Partition(str(table), str(name), _bound(match[1]), _bound(match[2]), int(rows)))
    out.sort(key=lambda p: (p.table, -1 if p.low is None else p.low))
    return out


def _create(tx: Tx, table: str, index: int) -> str:
    name = partition_name(table, index)
    tx.execute(
        f"CREATE TABLE {name} PARTITION OF {table} "
        f"FOR VALUES FROM ({month_base(index)}) TO ({month_base(index + 1)})"
    )
    if table in _TRUNCATE_GUARDED:
        tx.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {name} "
            "FOR EACH STATEMENT EXECUTE FUNCTION paygate_refuse_change()"
        )
    return name


def ensure_month(tx: Tx, day: date) -> list[str]:
    """Create the partitions of ``day``'s month where they are missing; return their names.

    A month whose range overlaps an existing partition (the ids of the initial partition) is
    left alone: its ids are already somewhere.
    """
    index = month_index(day)
    low, high = month_base(index), month_base(index + 1)
    existing = partitions(tx)
    created = []
    for table in PARTITIONED_TABLES:
        mine = [p for p in existing if p.table == table]
        if any(p.name == partition_name(table, index) for p in mine):
            continue
        overlaps = any(
            (p.low is None or p.low < high) and (p.high is None or p.high > low) for p in mine
        )
        if not overlaps:
            created.append(_create(tx, table, index))
    return created


def maintain(tx: Tx, today: date, *, months_ahead: int = 1) -> MaintenanceReport:
    """Create the partitions of ``today``'s month and ``months_ahead`` months after it, and
    move the id sequence into this month's range if it is still in an earlier one."""
    report = MaintenanceReport()
    if tx.dialect != "postgresql":
        report.supported = False
        return report
    tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
    first = month_index(today)
    for ahead in range(months_ahead + 1):
        index = first + ahead
        report.created += ensure_month(tx, date(2000 + index // 12, index % 12 + 1, 1))
    have = {p.name for p in partitions(tx)}
    base = month_base(first)
    if all(partition_name(t, first) in have for t in PARTITIONED_TABLES):
        last = int(tx.scalar("SELECT last_value FROM paygate_id_seq"))
        if last < base:
            tx.execute("SELECT setval('paygate_id_seq', :b)", {"b": base})
            report.sequence_moved_to = base
    return report
