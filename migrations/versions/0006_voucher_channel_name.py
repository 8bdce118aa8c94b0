"""The recharge voucher channel is named ``voucher``; it was ``prepaid_card``.

Rewritten: the channel name where it is a stored key that later rows are matched against —
``payments.channel`` (a replay is found by (channel, channel transaction id)) and the channel
in the payment's stored receipt (what a replay answers), the clearing
account code ``clearing:prepaid_card:<CUR>`` (when a deployment routed the channel to one),
``devices.channel``, ``payment_orders.channel``, ``reconciliation_runs.channel`` and
``reconciliation_resolutions.channel``. None of these is covered by the sealed hash chain
(an entry's hash covers its kind, reference, memo, dates and postings by account id, never
an account's code or a payment row), so a database sealed before the upgrade still verifies.

Not rewritten: ``journal_entries.reference`` and ``memo`` (``payment:prepaid_card:…``) are
sealed history, and outbox payloads are events as they were written; both keep the old name,
which paygate reads as an alias of ``voucher`` (docs/architecture.md, Glossary).

A database that already holds rows under ``voucher`` (a third-party channel of that name)
is refused: the two channels' payments would merge. Downgrade renames them back.
Frozen: imports nothing from paygate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "prepaid_card"
NEW = "voucher"

# Tables whose ``channel`` column names the channel.
CHANNEL_COLUMNS = (
    "payments",
    "devices",
    "payment_orders",
    "reconciliation_runs",
    "reconciliation_resolutions",
)


def _rename(old: str, new: str) -> None:
    conn = op.get_bind()
    for table in CHANNEL_COLUMNS:
        taken = conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {table} WHERE channel = :new"),  # noqa: S608
            {"new": new},
        ).scalar_one()
        if taken:
            raise RuntimeError(
                f"{table} already holds {taken} row(s) of a channel named {new!r}: "
                f"renaming channel {old!r} to {new!r} would merge two channels"
            )
    prefix_old, prefix_new = f"clearing:{old}:", f"clearing:{new}:"
    # LIKE's '_' matches any character: the prefix is checked exactly here.
    clearing = [
        (int(account_id), str(code))
        for account_id, code in conn.execute(
            sa.text("SELECT id, code FROM ledger_accounts WHERE code LIKE 'clearing:%'")
        ).all()
    ]
    if any(code.startswith(prefix_new) for _, code in clearing):
        raise RuntimeError(f"a ledger account {prefix_new}… exists already")
    # A replay answers with the stored receipt: it names the channel as it is called now.
    conn.execute(
        sa.text(
            "UPDATE payments SET receipt = REPLACE(receipt, :old_key, :new_key) "
            "WHERE channel = :old"
        ),
        {"old_key": f'"channel":"{old}"', "new_key": f'"channel":"{new}"', "old": old},
    )
    for table in CHANNEL_COLUMNS:
        conn.execute(
            sa.text(f"UPDATE {table} SET channel = :new WHERE channel = :old"),  # noqa: S608
            {"new": new, "old": old},
        )
    for account_id, code in clearing:
        if code.startswith(prefix_old):
            conn.execute(
                sa.text("UPDATE ledger_accounts SET code = :code WHERE id = :id"),
                {"code": prefix_new + code[len(prefix_old) :], "id": account_id},
            )


def upgrade() -> None:
    _rename(OLD, NEW)


def downgrade() -> None:
    _rename(NEW, OLD)
