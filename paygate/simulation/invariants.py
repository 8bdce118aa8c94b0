"""The invariants the simulation checks as it goes, each a query of paygate's own records.

Each check returns a list of problems (empty: it holds). The runner calls the cheap ones
every simulated hour and the whole set every morning and at the end; the first problem stops
the run with the seed and the step, which ``--replay`` reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from paygate.gateway import Gateway
from paygate.simulation.http_kiosk import HttpKiosk
from paygate.store.engine import Tx

__all__ = [
    "acknowledged_posted_once",
    "cleared_arrears_restored",
    "kiosk_forwarded",
    "ledger_balances",
    "ledger_verifies",
    "no_protected_cut",
]


def ledger_balances(gateway: Gateway, *, per_currency: bool = True) -> list[str]:
    """Double entry: the cached balances of all ledger accounts sum to zero per currency (one
    aggregate over the balance shards, joined with the ledger accounts for their currency).

    Without ``per_currency``, the sum of all currencies together, which reads the balance
    shards alone (an order of magnitude cheaper on a large ledger, cheap enough for every
    simulated hour): it finds any cached balance moved on its own, missing only moves in two
    currencies that cancel out, which the per-currency check finds.
    """
    if not per_currency:
        total = gateway.store.run(
            lambda tx: tx.scalar("SELECT COALESCE(SUM(balance), 0) FROM ledger_balances"),
            write=False,
        )
        return [f"ledger accounts sum to {int(total)} (all currencies), not 0"] if total else []
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT l.currency, COALESCE(SUM(b.balance), 0) FROM ledger_balances b "
            "JOIN ledger_accounts l ON l.id = b.account_id GROUP BY l.currency"
        ),
        write=False,
    )
    return [f"ledger accounts sum to {int(total)} {cur}, not 0" for cur, total in rows if total]


def ledger_verifies(gateway: Gateway) -> list[str]:
    """Cached balances equal the balances recomputed from the journal; entries balance; the
    seals hold (``audit verify``)."""
    report = gateway.verify()
    return [f"audit verify: {finding}" for finding in report.findings]


_ACKNOWLEDGED = (
    "SELECT p.id, p.channel, p.channel_txn_id, "
    "(SELECT COUNT(*) FROM payments q WHERE q.channel = p.channel "
    "AND q.channel_txn_id = p.channel_txn_id), e.id "
    "FROM payments p LEFT JOIN journal_entries e ON e.id = p.entry_id"
)


def acknowledged_posted_once(
    gateway: Gateway, acknowledged: Sequence[tuple[str, str, int]]
) -> list[str]:
    """Every payment acknowledged to its channel is in the ledger exactly once, with its
    journal entry, under the channel transaction id it was acknowledged with."""
    problems: list[str] = []

    def read(tx: Tx) -> None:
        for start in range(0, len(acknowledged), 500):
            chunk = acknowledged[start : start + 500]
            ids = {payment_id: (channel, txn) for channel, txn, payment_id in chunk}
            params = {f"p{n}": payment_id for n, payment_id in enumerate(ids)}
            # Only generated parameter names are joined in; the ids are bound.
            marks = ", ".join(":" + name for name in params)
            rows = tx.all(f"{_ACKNOWLEDGED} WHERE p.id IN ({marks})", params)
            seen = {int(row[0]): row for row in rows}
            for payment_id, (channel, txn) in ids.items():
                row = seen.get(payment_id)
                if row is None:
                    problems.append(f"acknowledged payment {payment_id} ({channel} {txn}) is lost")
                elif (row[1], row[2]) != (channel, txn) or int(row[3]) != 1 or row[4] is None:
                    problems.append(
                        f"payment {payment_id} ({channel} {txn}) is not posted exactly once "
                        f"with its entry: {tuple(row)}"
                    )

    gateway.store.run(read, write=False)
    return problems


def no_protected_cut(gateway: Gateway) -> list[str]:
    """No protected account is cut off but by a negotiated, approved order: its latest
    disconnection order is the order of an approved negotiation (大客户停电协商). (A notice
    may be served to one: its state shows the notice, but the dunning policy never cuts it.)"""
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT a.account_no, a.supply_state FROM accounts a WHERE a.protected = :t "
            "AND a.supply_state = 'disconnected' AND NOT EXISTS ("
            "SELECT 1 FROM console_negotiations n WHERE n.account_id = a.id "
            "AND n.approved_by IS NOT NULL AND n.order_id = (SELECT MAX(o.id) "
            "FROM supply_orders o WHERE o.account_id = a.id AND o.kind = 'disconnect'))",
            {"t": True},
        ),
        write=False,
    )
    return [f"protected account {no} is {state} without a negotiated order" for no, state in rows]


def cleared_arrears_restored(gateway: Gateway, today: date) -> list[str]:
    """Every account whose supply is due back has it: connected. A postpaid account's is due
    back once it owes nothing overdue; a prepaid account's once it also owes nothing at all
    (its balance zero or in credit: consumption billed and not yet due counts against it)."""
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT a.account_no, a.supply_state FROM accounts a "
            "WHERE a.supply_state <> 'connected' AND NOT EXISTS ("
            "SELECT 1 FROM bills b WHERE b.account_id = a.id AND b.due_date < :today AND "
            "(b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged)) AND ("
            "a.prepaid = :f OR (SELECT COALESCE(SUM(l.balance), 0) FROM ledger_balances l "
            "WHERE l.account_id = a.receivable_account_id) <= 0) ORDER BY a.account_no",
            {"f": False, "today": today},
        ),
        write=False,
    )
    return [f"account {no} cleared its arrears and is still {state}" for no, state in rows]


def kiosk_forwarded(kiosk: HttpKiosk, redemptions: int) -> list[str]:
    """Store and forward delivered: the kiosk that reaches paygate over HTTP has nothing left
    pending, none of its payments was refused, every day it closed was answered, and none of
    the ``redemptions`` of cards at it is still unanswered. (That each payment it was told
    was posted is in the ledger once is :func:`acknowledged_posted_once`.)"""
    problems: list[str] = []
    if redemptions:
        problems.append(f"kiosk {kiosk.device_id}: {redemptions} card redemptions unanswered")
    if kiosk.pending:
        problems.append(f"kiosk {kiosk.device_id}: {kiosk.pending} payments still pending")
    problems += [
        f"kiosk {kiosk.device_id}: payment {p.txn_id} refused: {p.refusal_code}"
        for p in kiosk.kiosk.refused()
    ]
    problems += [f"kiosk {kiosk.device_id}: close of {day} unanswered" for day in kiosk.closes_due]
    return problems
