"""Account closure (销户): final bill, credit applied, nothing owed, credit refunded, closed.

One transaction under the account's row lock, once per ``closure_id``:

1. the final bill, if given, is issued with every effect of ``issue_bill`` (its journal entry,
   the account's credit spent on it);
2. the closure is refused while anything is owed — an open bill, due or not, or a late fee —
   and the error lists each bill; nothing is written then, the final bill included;
3. credit that remains is refunded through ``refund_route`` (required then) under the refund
   id ``close-<closure_id>``: one refund order per payment the route refunds against, newest
   first, each up to what that payment has left to refund (the others' ids end ``*2``, ``*3``…,
   :mod:`paygate.refunds.split`); a route whose payments cannot cover the credit refuses the
   closure, naming the shortfall, and nothing is written;
4. supply moves to ``closed`` and the account's supply orders still under way are cancelled
   (:meth:`~paygate.supply.SupplyOrders.close`);
5. ``account_closures`` records the closure and ``account.closed`` goes to the outbox.

From then on a payment for the account is held in suspense with a finding
(:mod:`paygate.refunds.closed`). Exactly-once rests on the unique ``closure_id`` (and the
unique ``account_id``: an account closes once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from paygate.accounts import Accounts
from paygate.errors import (
    BillConflictError,
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidInputError,
    InvalidStateError,
)
from paygate.models import NewBill, SupplyState
from paygate.money import Money
from paygate.payments import Payments
from paygate.records import (
    Account,
    Core,
    Writes,
    event,
    flush,
    load_bills,
    lock_account,
    write_bills,
    write_states,
)
from paygate.refunds.model import AccountClosure, Refund, check_payee, check_refund_id
from paygate.refunds.route import Payee
from paygate.refunds.service import Refunds
from paygate.store.engine import Tx, UniqueViolation
from paygate.supply import SupplyOrders

__all__ = ["Closures"]


@dataclass(frozen=True, slots=True)
class _Ask:
    account_no: str
    closure_id: str
    final_bill: NewBill | None
    refund_route: str | None
    payee: Payee | None
    reason: str


class Closures:
    """Closing accounts, exactly once per closure id."""

    def __init__(
        self,
        core: Core,
        accounts: Accounts,
        payments: Payments,
        supply: SupplyOrders,
        refunds: Refunds,
    ) -> None:
        self._core = core
        self._accounts = accounts
        self._payments = payments
        self._supply = supply
        self._refunds = refunds

    def close_account(
        self,
        account_no: str,
        *,
        closure_id: str,
        final_bill: NewBill | None = None,
        refund_route: str | None = None,
        payee: Payee | None = None,
        reason: str,
    ) -> AccountClosure:
        """Close the account (销户); see the module's docstring for the steps."""
        check_refund_id(closure_id, "closure_id", longest=58, new=True)
        if not isinstance(account_no, str) or not account_no:
            raise InvalidInputError("an account number", field="account_no")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        if len(reason) > 500:
            raise InvalidInputError("at most 500 characters", field="reason")
        if final_bill is not None:
            if not isinstance(final_bill, NewBill):
                raise InvalidInputError("a NewBill", field="final_bill")
            if final_bill.account_no != account_no:
                raise InvalidInputError(
                    f"the final bill is for account {final_bill.account_no}, not {account_no}",
                    field="final_bill.account_no",
                )
        if refund_route is not None:
            self._refunds.route(refund_route)
        ask = _Ask(account_no, closure_id, final_bill, refund_route, check_payee(payee), reason)
        for _attempt in range(3):
            try:
                return self._core.store.run(lambda tx: self._decide(tx, ask))
            except UniqueViolation:
                continue  # a concurrent closure committed first: answer from it
        raise IdempotencyConflictError(
            f"closure {closure_id} keeps colliding with concurrent writers; retry",
            field="closure_id",
        )

    def _decide(self, tx: Tx, ask: _Ask) -> AccountClosure:
        stored = _stored(tx, ask)
        if stored is not None:
            return stored
        acct = lock_account(tx, ask.account_no)
        stored = _stored(tx, ask)
        if stored is not None:
            return stored
        if acct.supply_state is SupplyState.CLOSED:
            other = tx.scalar(
                "SELECT closure_id FROM account_closures WHERE account_id = :a", {"a": acct.id}
            )
            raise InvalidStateError(
                f"account {acct.account_no} was closed before (closure {other})",
                field="account_no",
            )
        return self._close(tx, acct, ask, self._core.clock.now())

    def _close(self, tx: Tx, acct: Account, ask: _Ask, now: datetime) -> AccountClosure:
        cur = acct.currency
        applied = 0
        bill = ask.final_bill
        if bill is not None:
            if bill.amount.currency != cur:
                raise CurrencyMismatchError(
                    f"account {acct.account_no} is in {cur}", field="final_bill.amount"
                )
            owner = tx.scalar(
                "SELECT a.account_no FROM bills b JOIN accounts a ON a.id = b.account_id "
                "WHERE b.bill_no = :no",
                {"no": bill.bill_no},
            )
            if owner is not None and owner != acct.account_no:
                raise BillConflictError(
                    f"bill {bill.bill_no} is account {owner}'s", field="final_bill.bill_no"
                )
            if owner is None:
                applied = self._accounts.issue_within(
                    tx,
                    acct,
                    bill_no=bill.bill_no,
                    amount=bill.amount.minor,
                    period=bill.period,
                    due_date=bill.due_date,
                    now=now,
                )
        load_bills(tx, [acct])
        writes = Writes()
        applied += self._payments.apply_credit(tx, acct, writes, now)
        flush(tx, writes)
        write_bills(tx, [acct])
        _refuse_if_owed(acct)
        credit = int(
            tx.scalar(
                "SELECT COALESCE(SUM(unallocated), 0) FROM payments WHERE account_id = :a "
                "AND status = 'posted'",
                {"a": acct.id},
            )
        )
        refunds: tuple[Refund, ...] = ()
        if credit > 0:
            if ask.refund_route is None:
                raise InvalidInputError(
                    f"account {acct.account_no} holds {Money(credit, cur)} of credit: a refund "
                    "route is required to pay it back",
                    field="refund_route",
                )
            refund_ask = self._refunds.check(
                acct.account_no,
                Money(credit, cur),
                refund_id=f"close-{ask.closure_id}",
                route=ask.refund_route,
                reason=f"account closure {ask.closure_id}",
                payee=ask.payee,
                id_field="closure_id",
            )
            refunds = tuple(
                o.refund() for o in self._refunds.request_within(tx, acct, refund_ask, now)
            )
        writes = Writes()
        self._supply.close(tx, acct, f"account closed: {ask.reason}", "billing", writes, now)
        event(
            tx,
            writes,
            "account.closed",
            acct.account_no,
            now,
            {
                "closure_id": ask.closure_id,
                "reason": ask.reason,
                "final_bill_no": None if bill is None else bill.bill_no,
                "credit_applied": applied,
                "refund_id": refunds[0].refund_id if refunds else None,
                "refund_ids": [r.refund_id for r in refunds],
                "refund_amount": sum(r.amount.minor for r in refunds),
                "currency": cur,
            },
        )
        flush(tx, writes)
        write_states(tx, [acct])
        result = AccountClosure(
            closure_id=ask.closure_id,
            account_no=acct.account_no,
            reason=ask.reason,
            final_bill_no=None if bill is None else bill.bill_no,
            credit_applied=Money(applied, cur),
            refunds=refunds,
            supply_state=acct.supply_state,
            closed_at=now,
        )
        tx.execute(
            "INSERT INTO account_closures (id, closure_id, account_id, final_bill_no, "
            "refund_route, reason, result, closed_at) VALUES (:id, :cid, :a, :bill, :route, "
            ":reason, :result, :now)",
            {
                "id": tx.ids.one(),
                "cid": ask.closure_id,
                "a": acct.id,
                "bill": None if bill is None else bill.bill_no,
                "route": ask.refund_route,
                "reason": ask.reason,
                "result": result.model_dump_json(),
                "now": tx.ts(now),
            },
        )
        return result


def _refuse_if_owed(acct: Account) -> None:
    owed = [b for b in acct.bills if b.is_open]
    if not owed:
        return
    cur = acct.currency
    listed = "; ".join(
        f"{b.bill_no} owes "
        f"{Money(b.amount - b.principal_paid + b.late_fee_charged - b.late_fee_paid, cur)} "
        f"(due {b.due_date.isoformat()})"
        for b in owed
    )
    raise InvalidStateError(
        f"account {acct.account_no} still owes: {listed}; nothing was written",
        field="account_no",
    )


def _stored(tx: Tx, ask: _Ask) -> AccountClosure | None:
    row = tx.one(
        "SELECT a.account_no, c.final_bill_no, c.refund_route, c.reason, c.result "
        "FROM account_closures c JOIN accounts a ON a.id = c.account_id "
        "WHERE c.closure_id = :cid",
        {"cid": ask.closure_id},
    )
    if row is None:
        return None
    account_no, bill_no, route, reason, result = row
    differs = None
    if account_no != ask.account_no:
        differs = "account_no"
    elif bill_no != (None if ask.final_bill is None else ask.final_bill.bill_no):
        differs = "final_bill"
    elif reason != ask.reason:
        differs = "reason"
    elif route != ask.refund_route:
        differs = "refund_route"
    if differs is not None:
        raise IdempotencyConflictError(
            f"closure {ask.closure_id} was made before with another {differs}", field=differs
        )
    stored = AccountClosure.model_validate_json(str(result))
    return stored.model_copy(update={"replayed": True})
