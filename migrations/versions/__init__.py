"""The frozen schema revisions: each imports only SQLAlchemy and Alembic, never paygate."""
