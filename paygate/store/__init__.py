"""Persistence: the schema, engines and transactions, migrations."""

from paygate.store.engine import DEFAULT_DATABASE_URL, Store, Tx, UniqueViolation

__all__ = ["DEFAULT_DATABASE_URL", "Store", "Tx", "UniqueViolation"]
