"""Dunning: written notices, disconnection candidates, and disconnection orders.

A notice puts a connected account on the disconnection path (``disconnection_pending``); the
dunning policy (:class:`~paygate.promise.DunningPolicy`) decides when it becomes a candidate,
and an approved candidate (or a negotiated case) gets a disconnection order from
:class:`~paygate.supply.SupplyOrders`. Paying the arrears takes the account off the path again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from paygate import billing
from paygate.clock import require_aware
from paygate.errors import InvalidInputError, InvalidStateError
from paygate.headend.base import SupplyAction
from paygate.models import DisconnectionCandidate, SupplyState
from paygate.money import Money
from paygate.records import (
    ACCOUNT_COLUMNS,
    Account,
    Core,
    Writes,
    account_from_row,
    event,
    flush,
    load_bills,
    lock_account,
    transition,
    write_states,
)
from paygate.store.engine import Tx
from paygate.supply import SupplyOrders

__all__ = ["Dunning"]


class Dunning:
    """Notices, disconnection candidates and disconnection orders."""

    def __init__(self, core: Core, supply: SupplyOrders) -> None:
        self._core = core
        self._supply = supply

    def serve_notice(
        self, account_no: str, kind: str = "notice", *, served_by: str = "billing"
    ) -> None:
        """Record a written notice (``notice``) or the final reminder (``final_reminder``)."""
        if kind not in ("notice", "final_reminder"):
            raise InvalidInputError("notice or final_reminder", field="kind")
        now = self._core.clock.now()

        def work(tx: Tx) -> None:
            acct = lock_account(tx, account_no)
            load_bills(tx, [acct])
            owed, _ = billing.arrears(
                acct.bills, acct.category, self._core.local_date(now), self._core.settings.late_fee
            )
            if owed <= 0:
                raise InvalidStateError(f"account {account_no} has no arrears", field="account_no")
            if kind == "final_reminder" and not tx.scalar(
                "SELECT COUNT(*) FROM dunning_notices WHERE account_id = :a AND kind = 'notice'",
                {"a": acct.id},
            ):
                raise InvalidStateError("a final reminder follows a notice", field="kind")
            tx.execute(
                "INSERT INTO dunning_notices (id, account_id, kind, served_at, served_by, arrears) "
                "VALUES (:id, :a, :k, :at, :by, :owed)",
                {
                    "id": tx.ids.one(),
                    "a": acct.id,
                    "k": kind,
                    "at": tx.ts(now),
                    "by": served_by,
                    "owed": owed,
                },
            )
            writes = Writes()
            if kind == "notice" and acct.supply_state is SupplyState.CONNECTED:
                transition(
                    tx,
                    acct,
                    SupplyState.DISCONNECTION_PENDING,
                    "notice served",
                    served_by,
                    None,
                    writes,
                    now,
                )
            event(tx, writes, f"dunning.{kind}", account_no, now, {"arrears": owed})
            flush(tx, writes)
            write_states(tx, [acct])

        self._core.store.run(work)

    def disconnection_candidates(
        self, as_of: datetime | None = None
    ) -> list[DisconnectionCandidate]:
        """Accounts the dunning policy allows to be disconnected now."""
        now = self._core.clock.now() if as_of is None else require_aware(as_of, "as_of")

        def work(tx: Tx) -> list[DisconnectionCandidate]:
            rows = tx.all(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.supply_state = "  # noqa: S608
                "'disconnection_pending' AND a.protected = :f ORDER BY a.account_no",
                {"f": False},
            )
            accts = [account_from_row(r) for r in rows]
            load_bills(tx, accts)
            found = (self._candidacy(tx, acct, now) for acct in accts)
            return [c for c in found if c is not None]

        return self._core.store.run(work, write=False)

    def _candidacy(self, tx: Tx, acct: Account, now: datetime) -> DisconnectionCandidate | None:
        """The account as a disconnection candidate at ``now``, or None; bills loaded."""
        policy = self._core.settings.dunning
        today = self._core.local_date(now)
        if acct.protected or acct.supply_state is not SupplyState.DISCONNECTION_PENDING:
            return None
        overdue = [b for b in acct.bills if b.principal_due > 0 and b.overdue_on(today)]
        if not overdue:
            return None
        oldest = min(b.due_date for b in overdue)
        if (today - oldest).days < policy.overdue_threshold(acct.category.value):
            return None
        notices = {
            str(k): tx.read_ts(t)
            for k, t in tx.all(
                "SELECT kind, MAX(served_at) FROM dunning_notices WHERE account_id = :a "
                "GROUP BY kind",
                {"a": acct.id},
            )
        }
        notice = notices.get("notice")
        if notice is None or now - notice < timedelta(days=policy.notice_days):
            return None
        reminder = notices.get("final_reminder")
        if policy.final_reminder and (
            reminder is None
            or reminder < notice
            or now - reminder < timedelta(days=policy.final_reminder_days)
        ):
            return None
        owed, _ = billing.arrears(acct.bills, acct.category, today, self._core.settings.late_fee)
        return DisconnectionCandidate(
            account_no=acct.account_no,
            arrears=Money(owed, acct.currency),
            oldest_due_date=oldest,
            notice_served_at=notice,
            final_reminder_at=reminder,
        )

    def order_disconnection(
        self,
        account_no: str,
        *,
        approved_by: str,
        negotiated: bool = False,
        reason: str = "arrears",
    ) -> int:
        """Create a disconnection order a billing system or an operator has confirmed."""
        if not approved_by:
            raise InvalidInputError("who approved the disconnection", field="approved_by")
        now = self._core.clock.now()

        def work(tx: Tx) -> int:
            # Every check is made under the account's lock, in the transaction that writes the
            # order: a payment landing in between cannot leave a paid account with a cut order.
            acct = lock_account(tx, account_no)
            load_bills(tx, [acct])
            if not negotiated and self._candidacy(tx, acct, now) is None:
                raise InvalidStateError(
                    f"account {account_no} is not a disconnection candidate "
                    "(arrears, notices, protection)",
                    field="account_no",
                )
            if acct.supply_state not in (SupplyState.CONNECTED, SupplyState.DISCONNECTION_PENDING):
                raise InvalidStateError(
                    f"account {account_no} is {acct.supply_state.value}", field="account_no"
                )
            self._supply.refuse_if_owes_nothing(acct, now)
            if tx.scalar(
                "SELECT COUNT(*) FROM supply_orders WHERE account_id = :a AND status IN "
                "('open', 'dispatched', 'acknowledged')",
                {"a": acct.id},
            ):
                raise InvalidStateError(f"account {account_no} has an order under way")
            writes = Writes()
            order_id = self._supply.new_order(
                tx, acct, "disconnect", SupplyAction.TRIP, reason, None, approved_by, writes, now
            )
            event(
                tx,
                writes,
                "disconnection.ordered",
                account_no,
                now,
                {"order_id": order_id, "approved_by": approved_by, "negotiated": negotiated},
            )
            flush(tx, writes)
            return order_id

        return self._core.store.run(work)
