"""The console's account-number prefix search by code point, whatever the database's collation.

The console finds the accounts whose number starts with what the clerk typed as a range,
``prefix <= account_no < prefix_end(prefix)`` (``paygate.console.views``), which is exact only
when text is compared code point by code point. PostgreSQL compares ``account_no`` under the
database's collation, and under a linguistic one (``zh_CN.UTF-8``, an ICU locale) punctuation
weighs less than digits and letters: '3190000001' sorts after '31:', so a search for '319'
found nothing. A ``LIKE 'prefix%'`` is exact under any collation but cannot use a plain btree
index under any collation other than "C": on a million accounts it reads the whole table.

``ix_accounts_account_no_c`` orders the account numbers under the "C" collation (bytes of UTF-8,
that is code points); the search compares ``account_no COLLATE "C"`` and reads an ordered
range of it, stopping at the page's twenty rows. SQLite compares text with BINARY (code
points of UTF-8) unless told otherwise, and the unique index serves the same range there: it
gets no index. Frozen: imports nothing from paygate.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE INDEX ix_accounts_account_no_c ON accounts (account_no COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_accounts_account_no_c")
