"""Bill corrections: cancelling (作废) and adjusting (退补) a bill already issued.

A billing system that finds a bill wrong (a meter misread, a bill issued twice) cancels it or
adjusts its amount by a signed difference (a credit, negative, or a debit, positive). Each
correction is one transaction under the account's row lock, like a payment:

* the journal gets a ``correction`` entry through the one posting path
  (:meth:`~paygate.payments.Payments.post`): the change of the bill's amount between the
  customer's receivable and energy revenue, and the late fee given back between the
  receivable and late-fee revenue;
* what the customer had paid on the part of the bill that is gone goes back to the paying
  payments as credit (newest payment first) and is spent again on the account's open bills
  with the allocation policy (:meth:`~paygate.payments.Payments.apply_credit`);
* the bill's late fee follows docs/late-fees.md: a cancelled bill keeps none, a reduction gives
  back the fee charged on the reduced part, days already charged are never charged again;
* supply follows as after a payment (:meth:`~paygate.supply.SupplyOrders.after_payment`): a
  correction that leaves a disconnected account owing nothing raises its reconnection order;
* ``bill.cancelled`` or ``bill.adjusted`` goes to the outbox with the decision.

Exactly-once effect rests on the unique ``bill_corrections.correction_id``, not on the check
before the insert: a concurrent duplicate fails at the insert, its transaction is rolled back,
and it is answered from the stored original (the same content: replayed; other content:
:class:`~paygate.errors.IdempotencyConflictError` naming the field that differs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from paygate import billing
from paygate.billing import OpenBill
from paygate.errors import (
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    UnknownBillError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import SupplyState
from paygate.money import Money
from paygate.payments import Payments
from paygate.records import (
    Account,
    AllocationRow,
    Core,
    Writes,
    event,
    flush,
    load_bills,
    lock_account,
    release_credit,
    write_bills,
    write_corrected_bill,
    write_states,
)
from paygate.store.engine import Tx, UniqueViolation
from paygate.supply import SupplyOrders

__all__ = ["BillCorrection", "Corrections"]

Kind = Literal["cancel", "adjust"]


class BillCorrection(BaseModel):
    """The answer to a bill's cancellation or adjustment; identical every time it is replayed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    correction_id: str
    kind: Kind
    account_no: str
    bill_no: str
    reason: str
    replayed: bool = False
    amount_before: Money = Field(description="the bill's amount before the correction")
    amount_after: Money = Field(description="the bill's amount after it (zero once cancelled)")
    change: Money = Field(description="the signed change of the bill's amount")
    late_fee_reversed: Money = Field(description="late fee charged on the bill and given back")
    credit_released: Money = Field(
        description="what had been paid on the part of the bill that is gone, back as credit"
    )
    credit_applied: Money = Field(
        description="credit spent on the account's open bills in the same transaction"
    )
    entry_id: int = Field(description="the journal entry of the correction")
    balance_after: Money = Field(description="customer balance after it; positive = owes")
    arrears_after: Money
    arrears_cleared: bool = Field(
        description="true when this correction brought the account's arrears from above zero to "
        "zero"
    )
    supply_state: SupplyState
    reconnection_order_id: int | None = Field(
        default=None, description="the reconnection order this correction raised"
    )


@dataclass(frozen=True, slots=True)
class _Request:
    kind: Kind
    account_no: str
    bill_no: str
    amount: Money | None
    reason: str
    correction_id: str


def _validate(account_no: str, bill_no: str, reason: str, correction_id: str) -> None:
    if not isinstance(correction_id, str) or not 0 < len(correction_id) <= 64:
        raise InvalidInputError("1-64 characters", field="correction_id")
    if not correction_id.isprintable() or correction_id != correction_id.strip():
        raise InvalidInputError("printable, without surrounding spaces", field="correction_id")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a reason is required", field="reason")
    if len(reason) > 500:
        raise InvalidInputError("at most 500 characters", field="reason")
    if not isinstance(account_no, str) or not account_no:
        raise InvalidInputError("an account number", field="account_no")
    if not isinstance(bill_no, str) or not bill_no:
        raise InvalidInputError("a bill number", field="bill_no")


class Corrections:
    """Cancelling and adjusting issued bills, exactly once per correction id."""

    def __init__(self, core: Core, payments: Payments, supply: SupplyOrders) -> None:
        self._core = core
        self._payments = payments
        self._supply = supply

    def cancel_bill(
        self, account_no: str, bill_no: str, *, reason: str, correction_id: str
    ) -> BillCorrection:
        """Cancel (作废) a bill: nothing is owed on it any more, its late fee is given back, and
        what was paid on it becomes credit for the account's other open bills."""
        _validate(account_no, bill_no, reason, correction_id)
        return self._run(_Request("cancel", account_no, bill_no, None, reason, correction_id))

    def adjust_bill(
        self, account_no: str, bill_no: str, amount: Money, *, reason: str, correction_id: str
    ) -> BillCorrection:
        """Adjust (退补) a bill by ``amount``: negative reduces it (a credit), positive raises it
        (a debit). The bill stays above zero (cancel it instead); what was paid beyond its new
        amount becomes credit."""
        if not isinstance(amount, Money):
            raise TypeError("amount must be Money")
        if amount.minor == 0:
            raise InvalidAmountError("an adjustment is not zero", field="amount")
        _validate(account_no, bill_no, reason, correction_id)
        return self._run(_Request("adjust", account_no, bill_no, amount, reason, correction_id))

    def _run(self, request: _Request) -> BillCorrection:
        for _attempt in range(3):
            try:
                return self._core.store.run(lambda tx: self._decide(tx, request))
            except UniqueViolation:
                continue  # a concurrent correction with this id committed first: answer from it
        raise IdempotencyConflictError(
            f"correction {request.correction_id} keeps colliding with concurrent writers; retry",
            field="correction_id",
        )

    # -- the decision -------------------------------------------------------------------

    def _decide(self, tx: Tx, request: _Request) -> BillCorrection:
        stored = _stored(tx, request)
        if stored is not None:
            return stored
        acct = lock_account(tx, request.account_no)
        stored = _stored(tx, request)  # a concurrent one may have committed while we waited
        if stored is not None:
            return stored
        bill = _target_bill(tx, acct, request)
        if request.kind == "cancel":
            new_amount = 0
        else:
            assert request.amount is not None
            if request.amount.currency != acct.currency:
                raise CurrencyMismatchError(
                    f"account {acct.account_no} is in {acct.currency}, "
                    f"not {request.amount.currency}",
                    field="amount",
                )
            new_amount = bill.amount + request.amount.minor
            if new_amount <= 0:
                raise InvalidAmountError(
                    f"bill {bill.bill_no} is {Money(bill.amount, acct.currency)}: an adjustment "
                    "leaves it above zero (cancel the bill instead)",
                    field="amount",
                )
        return self._correct(tx, acct, bill, new_amount, request)

    def _correct(
        self, tx: Tx, acct: Account, bill: OpenBill, new_amount: int, request: _Request
    ) -> BillCorrection:
        core = self._core
        now = core.clock.now()
        today = core.local_date(now)
        policy = core.settings.late_fee
        cur = acct.currency
        load_bills(tx, [acct])
        if bill.bill_id not in acct.original_bills:  # paid in full: not among the open bills
            acct.bills.append(bill)
            acct.original_bills[bill.bill_id] = bill
        arrears_before, _ = billing.arrears(acct.bills, acct.category, today, policy)
        change = new_amount - bill.amount
        if request.kind == "cancel":
            fee_back = bill.late_fee_charged
        elif change < 0 and bill.late_fee_through is not None:
            fee_back = min(
                bill.late_fee_charged,
                billing.late_fee_on(
                    -change, bill.due_date, bill.late_fee_through, acct.category, policy
                ),
            )
        else:
            fee_back = 0
        fee_charged = bill.late_fee_charged - fee_back
        free_principal = max(0, bill.principal_paid - new_amount)
        free_fee = max(0, bill.late_fee_paid - fee_charged)
        writes = Writes()
        released = _release(tx, bill, free_principal, free_fee, writes, now)
        corrected = replace(
            bill,
            amount=new_amount,
            principal_paid=bill.principal_paid - free_principal,
            late_fee_charged=fee_charged,
            late_fee_paid=bill.late_fee_paid - free_fee,
        )
        acct.bills = [corrected if b.bill_id == bill.bill_id else b for b in acct.bills]

        entry_id = tx.ids.one()
        legs = [
            PostingDraft(acct.receivable_id, change - fee_back, cur),
            PostingDraft(
                core.ledger.ensure(tx, f"revenue:energy:{cur}", AccountKind.ENERGY_REVENUE, cur),
                -change,
                cur,
            ),
        ]
        if fee_back:
            revenue = core.ledger.ensure(
                tx, f"revenue:late_fee:{cur}", AccountKind.LATE_FEE_REVENUE, cur
            )
            legs.append(PostingDraft(revenue, fee_back, cur))
        verb = "cancellation" if request.kind == "cancel" else "adjustment"
        self._payments.post(
            tx,
            [
                EntryDraft(
                    kind="correction",
                    reference=f"correction:{request.correction_id}",
                    memo=f"{verb} of bill {bill.bill_no}: {request.reason}"[:2000],
                    business_date=today,
                    posted_at=now,
                    postings=tuple(legs),
                    shard_key=acct.id,
                    entry_id=entry_id,
                )
            ],
        )
        acct.balance += change - fee_back
        release_credit(tx, released)
        applied = self._payments.apply_credit(tx, acct, writes, now)
        arrears_after, _ = billing.arrears(acct.bills, acct.category, today, policy)
        cleared = arrears_before > 0 and arrears_after == 0
        data: dict[str, Any] = {
            "correction_id": request.correction_id,
            "bill_no": bill.bill_no,
            "reason": request.reason,
            "amount_before": bill.amount,
            "amount_after": new_amount,
            "change": change,
            "currency": cur,
            "late_fee_reversed": fee_back,
            "credit_released": free_principal + free_fee,
            "credit_applied": applied,
            "balance_after": acct.balance,
            "arrears_after": arrears_after,
        }
        event_type = "bill.cancelled" if request.kind == "cancel" else "bill.adjusted"
        event(tx, writes, event_type, acct.account_no, now, data)
        if cleared:
            event(
                tx,
                writes,
                "arrears.cleared",
                acct.account_no,
                now,
                {"correction_id": request.correction_id, "supply_state": acct.supply_state.value},
            )
        supply_reason = "arrears cleared" if cleared else "balance settled"
        order_id = self._supply.after_payment(
            tx, acct, None, arrears_after, writes, now, supply_reason
        )
        result = BillCorrection(
            correction_id=request.correction_id,
            kind=request.kind,
            account_no=acct.account_no,
            bill_no=bill.bill_no,
            reason=request.reason,
            amount_before=Money(bill.amount, cur),
            amount_after=Money(new_amount, cur),
            change=Money(change, cur),
            late_fee_reversed=Money(fee_back, cur),
            credit_released=Money(free_principal + free_fee, cur),
            credit_applied=Money(applied, cur),
            entry_id=entry_id,
            balance_after=Money(acct.balance, cur),
            arrears_after=Money(arrears_after, cur),
            arrears_cleared=cleared,
            supply_state=acct.supply_state,
            reconnection_order_id=order_id,
        )
        final = next(b for b in acct.bills if b.bill_id == bill.bill_id)
        write_corrected_bill(tx, acct, final)
        flush(tx, writes)
        write_bills(tx, [acct])
        write_states(tx, [acct])
        tx.execute(
            "INSERT INTO bill_corrections (id, correction_id, kind, account_id, bill_id, amount, "
            "currency, amount_before, late_fee_reversed, reason, entry_id, result, created_at) "
            "VALUES (:id, :cid, :kind, :a, :b, :amount, :cur, :before, :fee, :reason, :entry, "
            ":result, :now)",
            {
                "id": tx.ids.one(),
                "cid": request.correction_id,
                "kind": request.kind,
                "a": acct.id,
                "b": bill.bill_id,
                "amount": change if request.amount is None else request.amount.minor,
                "cur": cur if request.amount is None else request.amount.currency,
                "before": bill.amount,
                "fee": fee_back,
                "reason": request.reason,
                "entry": entry_id,
                "result": result.model_dump_json(),
                "now": tx.ts(now),
            },
        )
        return result


def _stored(tx: Tx, request: _Request) -> BillCorrection | None:
    """The correction already stored under the request's id, replayed; a conflict if its
    content differs, naming the first field that does."""
    row = tx.one(
        "SELECT c.kind, a.account_no, b.bill_no, c.amount, c.currency, c.reason, c.result "
        "FROM bill_corrections c JOIN accounts a ON a.id = c.account_id "
        "JOIN bills b ON b.id = c.bill_id WHERE c.correction_id = :cid",
        {"cid": request.correction_id},
    )
    if row is None:
        return None
    kind, account_no, bill_no, amount, currency, reason, result = row
    differs = None
    if account_no != request.account_no:
        differs = "account_no"
    elif bill_no != request.bill_no:
        differs = "bill_no"
    elif kind != request.kind:
        differs = "kind"
    elif request.amount is not None and (int(amount), str(currency)) != (
        request.amount.minor,
        request.amount.currency,
    ):
        differs = "amount"
    elif reason != request.reason:
        differs = "reason"
    if differs is not None:
        raise IdempotencyConflictError(
            f"correction {request.correction_id} was made before with another {differs}",
            field=differs if differs != "kind" else "correction_id",
        )
    stored = BillCorrection.model_validate_json(str(result))
    return stored.model_copy(update={"replayed": True})


def _target_bill(tx: Tx, acct: Account, request: _Request) -> OpenBill:
    """The bill to correct, read under the account's lock; refused when it is not the
    account's or is cancelled already."""
    row = tx.one(
        "SELECT id, account_id, bill_no, due_date, amount, principal_paid, late_fee_charged, "
        "late_fee_paid, late_fee_through FROM bills WHERE bill_no = :no",
        {"no": request.bill_no},
    )
    if row is None or int(row[1]) != acct.id:
        raise UnknownBillError(
            f"account {acct.account_no} has no bill {request.bill_no}", field="bill_no"
        )
    if tx.scalar(
        "SELECT COUNT(*) FROM bill_corrections WHERE bill_id = :b AND kind = 'cancel'",
        {"b": int(row[0])},
    ):
        raise InvalidStateError(f"bill {request.bill_no} is cancelled", field="bill_no")
    return OpenBill(
        bill_id=int(row[0]),
        bill_no=str(row[2]),
        due_date=tx.read_day(row[3]),
        amount=int(row[4]),
        principal_paid=int(row[5]),
        late_fee_charged=int(row[6]),
        late_fee_paid=int(row[7]),
        late_fee_through=None if row[8] is None else tx.read_day(row[8]),
    )


def _release(
    tx: Tx, bill: OpenBill, principal: int, fee: int, writes: Writes, now: datetime
) -> dict[int, int]:
    """Take ``principal`` and ``fee`` off what payments had paid on ``bill``, newest payment
    first: negative allocations (``correction``); returns what each payment gets back."""
    released: dict[int, int] = {}
    if principal == 0 and fee == 0:
        return released
    rows = tx.all(
        "SELECT p.id, SUM(x.late_fee), SUM(x.principal) FROM allocations x "
        "JOIN payments p ON p.id = x.payment_id WHERE x.bill_id = :b AND p.status = 'posted' "
        "GROUP BY p.id, p.paid_at ORDER BY p.paid_at DESC, p.id DESC",
        {"b": bill.bill_id},
    )
    for payment_id, paid_fee, paid_principal in rows:
        take_fee = min(fee, int(paid_fee))
        take_principal = min(principal, int(paid_principal))
        if take_fee <= 0 and take_principal <= 0:
            continue
        take_fee, take_principal = max(take_fee, 0), max(take_principal, 0)
        fee -= take_fee
        principal -= take_principal
        released[int(payment_id)] = take_fee + take_principal
        writes.allocations.append(
            AllocationRow(
                tx.ids.one(),
                int(payment_id),
                bill.bill_id,
                "correction",
                -take_fee,
                -take_principal,
                tx.ts(now),
            )
        )
        if fee == 0 and principal == 0:
            break
    if fee or principal:
        raise InvalidStateError(
            f"bill {bill.bill_no}: its allocations do not account for what it records as paid"
        )
    return released
