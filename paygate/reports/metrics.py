"""The database figures every HTTP worker reports alike at ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from paygate.store.engine import Tx


@dataclass(frozen=True)
class DatabaseFigures:
    """What every HTTP worker reports alike at ``/metrics``, read in one snapshot."""

    payments: tuple[tuple[str, str, int], ...]
    """(channel, status, count) of the ledger's payments: status ``posted`` or ``reversed``."""
    outbox_pending: int
    outbox_dead: int
    open_breaches: tuple[tuple[str, int], ...]
    """(severity, count) of recorded breaches whose order is still open."""


def database_figures(tx: Tx) -> DatabaseFigures:
    """The payments by channel and status, the outbox's depth and dead letters, and the
    breaches of orders still open: figures no worker may count on its own."""
    payments = tuple(
        (str(channel), str(status), int(count))
        for channel, status, count in tx.all(
            "SELECT channel, status, COUNT(*) FROM payments GROUP BY channel, status "
            "ORDER BY channel, status"
        )
    )
    pending, dead = tx.one(
        "SELECT COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL "
        "THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN dead_at IS NOT NULL "
        "THEN 1 ELSE 0 END), 0) FROM outbox"
    ) or (0, 0)
    breaches = tuple(
        (str(severity), int(count))
        for severity, count in tx.all(
            "SELECT b.severity, COUNT(*) FROM breaches b JOIN supply_orders o "
            "ON o.id = b.order_id WHERE o.status NOT IN ('completed', 'cancelled') "
            "AND b.withdrawn_at IS NULL "
            "GROUP BY b.severity ORDER BY b.severity"
        )
    )
    return DatabaseFigures(payments, int(pending), int(dead), breaches)
