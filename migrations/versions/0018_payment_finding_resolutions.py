"""Payment findings resolved by finance; reconciliation runs' class totals signed.

``payment_finding_resolutions`` records what finance did about money a payment finding holds
in suspense (a payment to a closed account): assigned to another account, or refunded to the
payer. ``settles_finding_id`` is unique, so the database refuses a second resolution of a
finding while the first holds.

Every run's stored class totals (``reconciliation_runs.summary``) are computed again, signed
as the statement's gross counts them: a refund, void or reversal line (and a reversal only the
ledger has) negative, the difference of a bank statement that does not balance by its size.
They were stored with a refund's size, and so did not add up to the gross. Frozen: imports
nothing from paygate.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNED = (
    "CASE WHEN f.finding_class = 'bank_unbalanced' THEN ABS(f.amount) "
    "WHEN l.kind IS NOT NULL AND l.kind <> 'payment' THEN -f.amount "
    "WHEN f.line_seq IS NULL AND f.line_key LIKE 'reversal:%' THEN -f.amount "
    "ELSE f.amount END"
)


def _resummarise(sign_refunds: bool) -> None:
    bind = op.get_bind()
    amount = (
        _SIGNED
        if sign_refunds
        else ("CASE WHEN f.finding_class = 'bank_unbalanced' THEN ABS(f.amount) ELSE f.amount END")
    )
    runs = bind.execute(
        sa.text("SELECT id, kind FROM reconciliation_runs WHERE status <> 'staging' ORDER BY id")
    ).all()
    for run_id, kind in runs:
        totals: dict[str, list[int]] = {}
        for klass, count, total in bind.execute(
            sa.text(
                f"SELECT f.finding_class, COUNT(*), COALESCE(SUM({amount}), 0) "  # noqa: S608
                "FROM reconciliation_findings f LEFT JOIN reconciliation_lines l "
                "ON l.run_id = f.run_id AND l.seq = f.line_seq "
                "WHERE f.run_id = :run GROUP BY f.finding_class"
            ),
            {"run": run_id},
        ):
            totals[str(klass)] = [int(count), int(total)]
        if kind == "channel":
            # The plain matches: payment lines with a transaction id and no finding.
            count, total = bind.execute(
                sa.text(
                    "SELECT COUNT(*), COALESCE(SUM(l.gross), 0) FROM reconciliation_lines l "
                    "WHERE l.run_id = :run AND l.kind = 'payment' "
                    "AND l.channel_txn_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                    "reconciliation_findings f WHERE f.run_id = l.run_id AND f.line_seq = l.seq)"
                ),
                {"run": run_id},
            ).one()
            if count:
                matched = totals.setdefault("matched", [0, 0])
                matched[0] += int(count)
                matched[1] += int(total)
        bind.execute(
            sa.text("UPDATE reconciliation_runs SET summary = :s WHERE id = :id"),
            {"s": json.dumps(totals, separators=(",", ":")), "id": run_id},
        )


def upgrade() -> None:
    op.create_table(
        "payment_finding_resolutions",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("resolution_id", sa.String(length=64), nullable=False),
        sa.Column("finding_id", sa.BigInteger(), nullable=False),
        sa.Column("settles_finding_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("refund_id", sa.String(length=64), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "action IN ('assigned', 'refunded')",
            name=op.f("ck_payment_finding_resolutions_action"),
        ),
        sa.CheckConstraint(
            "amount > 0", name=op.f("ck_payment_finding_resolutions_amount_positive")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_payment_finding_resolutions_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["payment_findings.id"],
            name=op.f("fk_payment_finding_resolutions_finding_id_payment_findings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_finding_resolutions")),
        sa.UniqueConstraint(
            "resolution_id", name=op.f("uq_payment_finding_resolutions_resolution_id")
        ),
        sa.UniqueConstraint(
            "settles_finding_id", name=op.f("uq_payment_finding_resolutions_settles_finding_id")
        ),
    )
    op.create_index(
        op.f("ix_payment_finding_resolutions_finding_id"),
        "payment_finding_resolutions",
        ["finding_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payment_finding_resolutions_refund_id"),
        "payment_finding_resolutions",
        ["refund_id"],
        unique=False,
    )
    _resummarise(sign_refunds=True)


def downgrade() -> None:
    _resummarise(sign_refunds=False)
    op.drop_index(
        op.f("ix_payment_finding_resolutions_refund_id"), table_name="payment_finding_resolutions"
    )
    op.drop_index(
        op.f("ix_payment_finding_resolutions_finding_id"),
        table_name="payment_finding_resolutions",
    )
    op.drop_table("payment_finding_resolutions")
