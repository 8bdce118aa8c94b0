"""Alembic environment: migrates the database named by the caller or PAYGATE_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from paygate.store.schema import alembic_include_name, alembic_include_object, metadata

config = context.config
target_metadata = metadata

# Autogenerate compares the partitioned tables, not their monthly partitions.
FILTERS = {"include_name": alembic_include_name, "include_object": alembic_include_object}


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "PAYGATE_DATABASE_URL", "sqlite:///paygate.db"
    )
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        **FILTERS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, **FILTERS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, **FILTERS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
