"""Database access: engines, one transaction per decision, retries, and id allocation.

SQLite (WAL, foreign keys, busy timeout, ``BEGIN IMMEDIATE`` for writes so that writers queue
instead of failing at commit) is the embedded default; PostgreSQL (psycopg 3, READ COMMITTED
with row locks, bounded retry on serialization failures and deadlocks) is the production store.

The hot paths speak SQL to the driver connection directly through :class:`Tx`: statements are
written once with ``:name`` parameters and translated per driver, so a payment costs its
statements and nothing more. The schema itself lives in :mod:`paygate.store.schema`.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from paygate.errors import ConfigurationError, StoreError
from paygate.store.schema import SQLITE_TIMESTAMP_FORMAT

__all__ = [
    "DEFAULT_DATABASE_URL",
    "RowSet",
    "Store",
    "Tx",
    "UniqueViolation",
    "normalize_url",
]

DEFAULT_DATABASE_URL = "sqlite:///paygate.db"

T = TypeVar("T")

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# Ids come from one counter in blocks: PostgreSQL's sequence hands out block starts
# without locking, SQLite's counter row is updated inside the writer's own transaction.
PG_ID_BLOCK = 1000
SQLITE_ID_BLOCK = 64

# A write of up to this many rows sends them as scalar parameters of a VALUES list (cheap to
# adapt, a statement shape per row count); more go as one array per column (one shape).
WRITE_VALUES_MAX = 40
# A pooled PostgreSQL connection idle longer than this is checked with a round trip before it
# is handed out (a server restart or an idle timeout may have closed it meanwhile).
PG_PING_AFTER_IDLE = 1.0
# Statement texts of Tx.write kept per store (one per shape of decision; a few dozen in use).
WRITE_SHAPES_KEPT = 512


class UniqueViolation(Exception):
    """A unique constraint refused a row; ``constraint`` names it when the driver says."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


def normalize_url(url: str | URL) -> URL:
    """Return a SQLAlchemy URL, choosing psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"not a database URL: {url!s}", field="database_url") from exc
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigurationError(
            f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://",
            field="database_url",
        )
    return parsed


@dataclass(frozen=True, slots=True)
class RowSet:
    """Rows of one table written set-based: one part of one statement on PostgreSQL, one
    ``executemany`` on SQLite.

    ``pg`` is a statement over ``{rows}`` (a row source to alias), which becomes ``unnest`` of
    one array parameter per column, or a ``VALUES`` list for a few rows (typed by ``types``,
    PostgreSQL type names); ``sqlite`` is the same statement for one row with ``?`` marks.
    ``rows`` are tuples in column order.
    """

    pg: str
    sqlite: str
    types: tuple[str, ...]
    rows: Sequence[Sequence[Any]]

    @classmethod
    def insert(
        cls, table: str, columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> RowSet:
        """Plain inserts of ``rows`` into ``table``."""
        pg, sqlite, typed = _insert_texts(table, tuple(columns), tuple(types))
        return cls(pg, sqlite, typed, rows)


@functools.lru_cache(maxsize=256)
def _insert_texts(
    table: str, columns: tuple[str, ...], types: tuple[str, ...]
) -> tuple[str, str, tuple[str, ...]]:
    """The two statements of :meth:`RowSet.insert`, built once per table and columns (every
    decision writes through them: joining the column names each time cost more than the
    rest of building the write)."""
    cols = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {table} ({cols}) SELECT * FROM {{rows}} AS v",  # noqa: S608 - ours
        f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608
        types,
    )


class Tx:
    """One open transaction on a driver connection, with per-dialect value conversion."""

    __slots__ = ("_committed", "_conn", "_pipelined", "_store", "dialect", "ids", "memo")

    def __init__(self, store: Store, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self._pipelined = False
        self._committed: list[Callable[[], None]] = []
        self.dialect = store.dialect
        self.ids = _TxIds(store, self)
        self.memo: dict[str, Any] = {}  # what components remember for this transaction only

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this transaction has committed (never if it rolls back)."""
        self._committed.append(callback)

    # -- statements ---------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement and return the driver cursor."""
        try:
            return self._conn.execute(self._store.sql(sql), params or {})
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            _raise_unique(exc)
            raise

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""
        row: tuple[Any, ...] | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return every row."""
        rows: list[tuple[Any, ...]] = self.execute(sql, params).fetchall()
        return rows

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run a query and return the first column of its first row, or None."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each parameter set (pipelined by psycopg)."""
        if not rows:
            return
        try:
            if self.dialect == "sqlite":
                self._conn.executemany(self._store.sql(sql), rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(self._store.sql(sql), rows)
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            _raise_unique(exc)
            raise

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        types: Sequence[str] | None = None,
    ) -> None:
        """Insert rows given as tuples in ``columns`` order, as one statement.

        One statement matters: PostgreSQL checks that postings balance per statement. Large
        sets go by COPY (still one statement) unless a pipeline is open, where COPY cannot run;
        SQLite takes them row by row in one call. ``types`` (PostgreSQL type names, one per
        column) makes that COPY binary, which converts values in C instead of Python: for bulk
        loads of many rows.
        """
        if not rows:
            return
        cols = ", ".join(columns)
        try:
            if self.dialect == "sqlite":
                marks = ", ".join("?" for _ in columns)
                self._conn.executemany(
                    f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608 - names are ours
                    rows,
                )
            elif len(rows) >= 64 and not self._pipelined:
                binary = " (FORMAT BINARY)" if types is not None else ""
                with (
                    self._conn.cursor() as cur,
                    cur.copy(f"COPY {table} ({cols}) FROM STDIN{binary}") as copy,
                ):
                    if types is not None:
                        copy.set_types(list(types))
                    for row in rows:
                        copy.write_row(row)
            else:
                one = "(" + ", ".join("%s" for _ in columns) + ")"
                values = ", ".join(one for _ in rows)
                flat = [value for row in rows for value in row]
                self._conn.execute(
                    f"INSERT INTO {table} ({cols}) VALUES {values}",  # noqa: S608 - names are ours
                    flat,
                )
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            _raise_unique(exc)
            raise

    def write(self, sets: Sequence[RowSet]) -> None:
        """Write every row of ``sets`` together.

        PostgreSQL: ONE statement whatever the number of rows and tables (each set a
        data-modifying part of a ``WITH``, its rows sent as one array per column), so a
        decision's writes cost one round trip and its constraints are checked once, at the
        end of that statement. SQLite: one ``executemany`` per set, in order.
        """
        sets = [s for s in sets if s.rows]
        if not sets:
            return
        try:
            if self.dialect == "sqlite":
                for rows in sets:
                    self._conn.executemany(rows.sqlite, rows.rows)
                return
            few = sum(len(rows.rows) for rows in sets) <= WRITE_VALUES_MAX
            # The statement's text depends on its shape alone (its sets, and for a VALUES
            # list their row counts): built once per shape, only the parameters each call.
            shape = tuple(
                (rows.pg, rows.types, len(rows.rows[0]), len(rows.rows) if few else 0)
                for rows in sets
            )
            params: list[Any]
            if few:
                params = [value for rows in sets for row in rows.rows for value in row]
            else:
                params = [_json_rows(rows.rows) for rows in sets]
            statement = self._store.write_statement(shape, sets, few=few)
            # Native $n placeholders: psycopg parses a %-style query of this length on every
            # call (it caches only short ones); this text is the statement as sent.
            # Arrays go in binary: the text format escapes every quote of every element in
            # Python (receipts and event payloads are JSON), which cost more than the write.
            with psycopg.RawCursor(self._conn) as cur:
                cur.execute(statement, params)
        except (sqlite3.IntegrityError, psycopg.errors.UniqueViolation) as exc:
            _raise_unique(exc)
            raise

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Send the statements of the block without waiting for each reply (PostgreSQL).

        Errors surface when the block ends; on SQLite, which has no network, it does nothing.
        """
        if self.dialect != "postgresql":
            yield
            return
        self._pipelined = True
        try:
            with self._conn.pipeline():
                yield
        except psycopg.errors.UniqueViolation as exc:
            _raise_unique(exc)
            raise
        finally:
            self._pipelined = False

    # -- values -------------------------------------------------------------------------

    def ts(self, value: datetime) -> Any:
        """A datetime as this database stores it (UTC)."""
        value = value.astimezone(UTC)
        if self.dialect == "sqlite":
            # the same text as SQLITE_TIMESTAMP_FORMAT, microseconds always written
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def day(self, value: date) -> Any:
        """A date as this database stores it."""
        if self.dialect == "sqlite":
            return value.isoformat()
        return value

    @staticmethod
    def read_ts(value: Any) -> datetime:
        """A stored timestamp back as an aware UTC datetime."""
        if isinstance(value, str):
            # The stored form ("YYYY-MM-DD HH:MM:SS.ffffff", 26 characters, no offset) parses
            # with fromisoformat, about 80 times faster than strptime: a supply order's row
            # alone holds eight timestamps. Any other text goes to strptime, which refuses it.
            if len(value) == 26 and value[10] == " " and value[19] == ".":
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
            return datetime.strptime(value, SQLITE_TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    @staticmethod
    def read_day(value: Any) -> date:
        """A stored date back as a date."""
        if isinstance(value, str):
            return date.fromisoformat(value)
        assert isinstance(value, date)
        return value


def _values(rows: RowSet, params: list[Any]) -> str:
    """A few rows as a ``VALUES`` list of typed scalar parameters."""
    out = []
    for row in rows.rows:
        marks = []
        for value, typ in zip(row, rows.types, strict=True):
            params.append(value)
            marks.append(f"${len(params)}::{typ}")
        out.append(f"({', '.join(marks)})")
    return f"(VALUES {', '.join(out)})"


def _arrays(rows: RowSet, params: list[Any]) -> str:
    """Many rows as one JSON parameter (an array of rows, each an array of its values in
    column order), expanded by ``jsonb_array_elements`` and typed column by column.

    Encoding a chunk's rows is one call of the json module's C encoder; the alternative, one
    binary array per column, dumped every element in Python and was a third of ``pay_many``'s
    time in the client.
    """
    params.append(None)
    columns = ", ".join(f"(e->>{i})::{typ}" for i, typ in enumerate(rows.types))
    return f"(SELECT {columns} FROM jsonb_array_elements(${len(params)}::jsonb) AS e)"  # noqa: S608 - ours


def _json_value(value: Any) -> str:
    """A value the json module cannot encode, as text PostgreSQL reads back exactly."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as a row value")


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` as the JSON parameter :func:`_arrays` expands."""
    return json.dumps(rows, default=_json_value, ensure_ascii=False, separators=(",", ":"))


class _TxIds:
    """Ids for the rows of one transaction."""

    __slots__ = ("_next", "_stop", "_store", "_tx")

    def __init__(self, store: Store, tx: Tx) -> None:
        self._store = store
        self._tx = tx
        self._next = 0
        self._stop = 0

    def take(self, n: int = 1) -> list[int]:
        """Return ``n`` fresh ids."""
        if self._store.dialect == "postgresql":
            return self._store._pg_ids(self._tx, n)
        out: list[int] = []
        while len(out) < n:
            if self._next >= self._stop:
                want = max(SQLITE_ID_BLOCK, n - len(out))
                stop = self._tx.scalar(
                    "UPDATE id_blocks SET next_id = next_id + :n WHERE name = 'ids' "
                    "RETURNING next_id",
                    {"n": want},
                )
                if stop is None:
                    raise StoreError("the id counter is missing; run `paygate db upgrade`")
                self._next, self._stop = int(stop) - want, int(stop)
            take = min(n - len(out), self._stop - self._next)
            out.extend(range(self._next, self._next + take))
            self._next += take
        return out

    def one(self) -> int:
        """Return one fresh id."""
        return self.take(1)[0]


def _raise_unique(exc: Exception) -> None:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        name = exc.diag.constraint_name or "unique"
        raise UniqueViolation(name) from exc
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        raise UniqueViolation(str(exc).split(":", 1)[-1].strip()) from exc


_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def _retryable(exc: BaseException) -> bool:
    # SQLite writers queue on BEGIN IMMEDIATE for the whole busy timeout; past that, waiting
    # again would only hide a stuck writer, so only PostgreSQL's conflicts are retried.
    return isinstance(exc, psycopg.Error) and exc.sqlstate in _RETRYABLE_SQLSTATES


class Store:
    """A database: its engine, its dialect and how to run a transaction on it."""

    def __init__(self, url: str | URL, *, pool_size: int = 8, sqlite_synchronous: str = "FULL"):
        self.url = normalize_url(url)
        self.dialect = "sqlite" if self.url.drivername.startswith("sqlite") else "postgresql"
        self._sql_cache: dict[str, str] = {}
        self._write_cache: dict[tuple[tuple[Any, ...], ...], str] = {}
        self._local = threading.local()
        self._id_lock = threading.Lock()
        self._id_next = 0
        self._id_stop = 0
        if self.dialect == "sqlite":
            if sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
                raise ConfigurationError("sqlite_synchronous must be NORMAL, FULL or EXTRA")
            memory = self.url.database in (None, "", ":memory:")
            if memory:
                raise ConfigurationError(
                    "an in-memory SQLite database cannot be shared; use a file",
                    field="database_url",
                )
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 60},
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            synchronous = sqlite_synchronous

            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA foreign_keys=ON")
                dbapi_conn.execute("PRAGMA busy_timeout=60000")
                dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")

        else:
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"connect_timeout": 10},
            )
            _ping_when_idle(self.engine)

    def write_statement(
        self, shape: tuple[tuple[Any, ...], ...], sets: Sequence[RowSet], *, few: bool
    ) -> str:
        """The text of :meth:`Tx.write`'s one statement for ``sets``, built once per
        ``shape`` (each set's statement, types, width and, for a ``VALUES`` list, rows)."""
        statement = self._write_cache.get(shape)
        if statement is None:
            unused: list[Any] = []
            parts = [
                rows.pg.replace("{rows}", _values(rows, unused) if few else _arrays(rows, unused))
                for rows in sets
            ]
            head = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts[:-1]))
            statement = f"WITH {head} {parts[-1]}" if head else parts[-1]
            if len(self._write_cache) >= WRITE_SHAPES_KEPT:
                self._write_cache.clear()
            self._write_cache[shape] = statement
        return statement

    def sql(self, text: str) -> str:
        """``text`` with ``:name`` parameters in the driver's own style."""
        if self.dialect == "sqlite":
            return text
        out = self._sql_cache.get(text)
        if out is None:
            out = _PARAM.sub(r"%(\1)s", text.replace("%", "%%"))
            self._sql_cache[text] = out
        return out

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Open one transaction; commit when the block ends, roll back if it raises.

        One decision is one transaction: opening a second one on the same thread while the
        first is open is a programming error (on SQLite it would wait for itself). What the
        block registered with :meth:`Tx.after_commit` runs once it has committed.
        """
        with self._open(write=write) as tx:
            yield tx
        _committed(tx)

    @contextmanager
    def _open(self, *, write: bool) -> Iterator[Tx]:
        if getattr(self._local, "open", False):
            raise StoreError("a transaction is already open on this thread")
        self._local.open = True
        try:
            with self._transaction(write=write) as tx:
                yield tx
        finally:
            self._local.open = False

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Tx]:
        try:
            raw = self.engine.raw_connection()
        except Exception as exc:
            raise StoreError(f"cannot connect to {self.safe_url()}: {exc}") from exc
        try:
            conn = raw.driver_connection
            assert conn is not None
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            tx = Tx(self, conn)
            try:
                yield tx
            except BaseException:
                conn.rollback() if self.dialect == "postgresql" else conn.execute("ROLLBACK")
                raise
            if self.dialect == "sqlite":
                conn.execute("COMMIT")
            else:
                conn.commit()
        finally:
            raw.close()

    def run(self, work: Callable[[Tx], T], *, write: bool = True, attempts: int = 8) -> T:
        """Run ``work`` in a transaction, retrying serialization failures and deadlocks."""
        for attempt in range(1, attempts + 1):
            try:
                with self._open(write=write) as tx:
                    result = work(tx)
            except psycopg.Error as exc:
                if not _retryable(exc) or attempt == attempts:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - jitter only
                continue
            # Committed: what follows the commit is outside the retry, which would decide the
            # committed work a second time.
            _committed(tx)
            return result
        raise AssertionError("unreachable")

    def _pg_ids(self, tx: Tx, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            with self._id_lock:
                if self._id_next < self._id_stop:
                    take = min(n - len(out), self._id_stop - self._id_next)
                    out.extend(range(self._id_next, self._id_next + take))
                    self._id_next += take
                    continue
            # nextval is outside transactions: a rolled-back block is a gap, never a reuse.
            start = int(tx.scalar("SELECT nextval('paygate_id_seq')"))
            with self._id_lock:
                if self._id_next >= self._id_stop:
                    self._id_next, self._id_stop = start, start + PG_ID_BLOCK
                else:
                    # another thread refilled meanwhile; keep ours for later use
                    out.extend(range(start, start + min(PG_ID_BLOCK, n - len(out))))
        return out

    def ping(self) -> None:
        """Reach the database once, in a read-only transaction; raise what the driver raises."""
        self.run(lambda tx: tx.scalar("SELECT 1"), write=False, attempts=1)

    def safe_url(self) -> str:
        """The database URL with any password hidden."""
        return self.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _committed(tx: Tx) -> None:
    # After the thread's transaction is closed: a callback may open the next one.
    for callback in tx._committed:
        callback()


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for PG_PING_AFTER_IDLE.

    ``pool_pre_ping`` costs a round trip on every checkout: a tenth of a payment's time. A
    connection handed back less than a second ago was talking to the server then; one idle
    longer (or broken) is pinged, and one that fails the ping is replaced by a new one.
    """

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        recent = since is not None and time.monotonic() - since < PG_PING_AFTER_IDLE
        if recent and not dbapi_conn.broken:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except psycopg.Error as exc:
            raise DisconnectionError(f"pooled connection lost: {exc}") from exc


def single_connection_engine(url: str | URL) -> Engine:
    """An engine without a pool, for migrations and one-off administration."""
    return create_engine(normalize_url(url), poolclass=NullPool)


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """Split ``items`` into consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
