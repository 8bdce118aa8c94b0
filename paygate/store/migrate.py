"""Schema migrations: bring a database to the code's schema, or say that it is not there.

The migrations live in ``migrations/`` (Alembic). SQLite databases are upgraded on open, since
an embedded database has no operator; a PostgreSQL database must be upgraded on purpose with
``paygate db upgrade`` and is refused until it is.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from paygate.errors import SchemaNotReadyError, StoreError
from paygate.store.engine import normalize_url, single_connection_engine

__all__ = [
    "current_revision",
    "downgrade",
    "head_revision",
    "migrations_dir",
    "require_current",
    "upgrade",
]


def migrations_dir() -> Path:
    """Where the Alembic environment is: shipped inside the package or beside it in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("the migrations directory is missing from this installation")


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
    """The revision the database is at, or None for an empty database."""
    engine = single_connection_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        raise StoreError(f"cannot read the schema revision: {exc}") from exc
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    normalized = normalize_url(url)
    engine = single_connection_engine(normalized)
    try:
        with engine.begin() as conn:
            cfg = _config(normalized)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def downgrade(url: str | URL, revision: str) -> None:
    """Undo migrations down to ``revision`` (``"base"``: an empty database)."""
    normalized = normalize_url(url)
    engine = single_connection_engine(normalized)
    try:
        with engine.begin() as conn:
            cfg = _config(normalized)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def require_current(url: str | URL) -> None:
    """Refuse a database whose schema is missing or behind the code."""
    normalized = normalize_url(url)
    current = current_revision(normalized)
    head = head_revision()
    if current != head:
        where = normalized.render_as_string(hide_password=True)
        state = "has no paygate schema" if current is None else f"is at revision {current}"
        raise SchemaNotReadyError(
            f"the database {where} {state}, the code needs {head}: "
            f"run `paygate db upgrade --database-url {where}`"
        )
