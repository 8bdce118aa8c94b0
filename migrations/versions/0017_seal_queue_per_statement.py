"""The seal queue filled once per statement: one trigger call for a whole write.

Every new journal entry is queued for sealing by a trigger on ``journal_entries``. Until now
the trigger ran once per row: a PL/pgSQL call and a one-row ``INSERT`` for every entry, so a
chunk of ``pay_many`` (a thousand entries in one statement) ran a thousand calls. On
PostgreSQL the trigger now runs once per statement and queues every entry the statement
inserted from its transition table, in one ``INSERT … SELECT``, as the postings' balance check
already does. SQLite keeps its row trigger (no statement triggers there; a row trigger costs
no round trip). What is queued is unchanged: one ``seal_queue`` row per inserted entry.
Frozen: imports nothing from paygate.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE_NEW_ENTRIES = """
CREATE FUNCTION paygate_queue_seal_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seal_queue (entry_id) SELECT n.id FROM new_entries n ORDER BY n.id;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_QUEUE_NEW_ENTRIES)
    op.execute("DROP TRIGGER journal_entries_seal_queue ON journal_entries")
    op.execute(
        "CREATE TRIGGER journal_entries_seal_queue AFTER INSERT ON journal_entries "
        "REFERENCING NEW TABLE AS new_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION paygate_queue_seal_entries()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER journal_entries_seal_queue ON journal_entries")
    op.execute(
        "CREATE TRIGGER journal_entries_seal_queue AFTER INSERT ON journal_entries "
        "FOR EACH ROW EXECUTE FUNCTION paygate_queue_seal()"
    )
    op.execute("DROP FUNCTION paygate_queue_seal_entries()")
