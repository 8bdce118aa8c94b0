"""Schema migrations: bring a database to the code's schema, or say that it is not there.

The migrations are Alembic's: the top-level ``migrations/`` directory of the source tree,
installed as the subpackage ``paygate._migrations`` (see docs/architecture.md), so that they
need no checkout and no ``alembic.ini``. Reading a database's state never creates it: a SQLite
file that is not there is reported missing, not made.

A Gateway upgrades a SQLite database as it opens it, since a program's embedded database has
no operator; a PostgreSQL database is upgraded on purpose and refused until it is. The
``paygate`` command upgrades nothing by itself: only ``paygate db upgrade`` does (and
``paygate demo``, on the fresh database it makes).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from paygate.errors import SchemaNotReadyError, StoreError
from paygate.store.engine import normalize_url, single_connection_engine

__all__ = [
    "current_revision",
    "downgrade",
    "head_revision",
    "migrations_dir",
    "require_current",
    "require_database",
    "upgrade",
]

_UPGRADE = "run `paygate db upgrade --database-url {where}`"


def migrations_dir() -> Path:
    """Where the Alembic environment is: the installed ``paygate._migrations``, else the
    ``migrations/`` directory of the source tree this module was loaded from."""
    spec = importlib.util.find_spec("paygate._migrations")
    candidates = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    # Run from a source tree that was never installed (PYTHONPATH=.): no package mapping, but
    # the directory beside the package. Only a tree that is paygate's (its pyproject.toml) counts.
    tree = Path(__file__).resolve().parents[2]
    if (tree / "pyproject.toml").is_file():
        candidates.append(tree / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise StoreError("the migrations directory is missing from this installation")


def _where(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL; None for an in-memory database."""
    name = url.database or ""
    if url.query.get("uri") in ("true", "1") and name.startswith("file:"):
        name = name.removeprefix("file:").split("?", 1)[0]
    if name in ("", ":memory:"):
        return None
    return Path(name)


def require_database(url: str | URL) -> None:
    """Refuse a database that is not there, naming what creates it."""
    normalized = normalize_url(url)
    where = _where(normalized)
    if normalized.get_backend_name() == "sqlite":
        path = _sqlite_file(normalized)
        if path is None:
            raise SchemaNotReadyError(
                f"no database at {where}: an in-memory SQLite database is new and empty in "
                "every command; name a file, e.g. sqlite:///paygate.db"
            )
        if not path.is_file():
            raise SchemaNotReadyError(f"no database at {where} ({_UPGRADE.format(where=where)})")
        return
    # Connecting is the test; the driver's reason (no such database, refused, authentication)
    # is the message.
    current_revision(normalized)


def _config(url: URL) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(_config(normalize_url("sqlite://"))).get_current_head()
    if head is None:
        raise StoreError("no migrations found")
    return head


def current_revision(url: str | URL) -> str | None:
    """The revision the database is at, or None for an empty (or, for SQLite, absent) database.

    Never creates the database: a SQLite file that is not there is not opened.
    """
    normalized = normalize_url(url)
    if normalized.get_backend_name() == "sqlite":
        path = _sqlite_file(normalized)
        if path is not None and not path.is_file():
            return None
    engine = single_connection_engine(normalized)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        # The driver's own words, on one line: SQLAlchemy's wrapper adds the URL and a link.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise StoreError(
            f"cannot read the database at {_where(normalized)}: "
            + (reason[0] if reason else type(exc).__name__)
        ) from exc
    finally:
        engine.dispose()


def _run(step: Callable[[Config, str], None], url: URL, revision: str) -> None:
    # The environment is found before the database is touched: an installation without its
    # migrations must not leave an empty database behind.
    cfg = _config(url)
    engine = single_connection_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)
    except CommandError as exc:
        raise StoreError(f"cannot migrate the database at {_where(url)}: {exc}") from exc
    except DBAPIError as exc:
        # Unreachable, refused, no such database: the driver's first line, as current_revision.
        reason = str(exc.orig or exc).strip().splitlines()
        raise StoreError(
            f"cannot migrate the database at {_where(url)}: "
            + (reason[0] if reason else type(exc).__name__)
        ) from exc
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Apply every migration up to ``revision``, creating a SQLite file that is not there."""
    normalized = normalize_url(url)
    if normalized.get_backend_name() == "sqlite":
        path = _sqlite_file(normalized)
        if path is not None and not path.parent.is_dir():
            raise StoreError(
                f"cannot create the database at {_where(normalized)}: "
                f"there is no directory {path.parent}"
            )
    _run(command.upgrade, normalized, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Undo migrations down to ``revision`` (``"base"``: an empty database)."""
    normalized = normalize_url(url)
    require_database(normalized)
    _run(command.downgrade, normalized, revision)


def require_current(url: str | URL) -> None:
    """Refuse a database that is not there, has no paygate schema, or is behind the code."""
    normalized = normalize_url(url)
    require_database(normalized)
    current = current_revision(normalized)
    head = head_revision()
    if current == head:
        return
    where = _where(normalized)
    state = "is not migrated" if current is None else f"is at revision {current}"
    raise SchemaNotReadyError(
        f"the database at {where} {state}, the code needs revision {head} "
        f"({_UPGRADE.format(where=where)})"
    )
