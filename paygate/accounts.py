"""Accounts: customer accounts, their bills, and what an account owes on a day.

A bill's charge is a journal entry, posted through :class:`~paygate.payments.Payments` (the one
posting path); any credit the account holds is applied to the new bill in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from paygate import billing
from paygate.billing import OpenBill
from paygate.clock import require_aware
from paygate.errors import (
    AccountClosedError,
    BillConflictError,
    CurrencyMismatchError,
    DuplicateAccountError,
    InvalidAmountError,
    InvalidInputError,
    UnknownAccountError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import AccountStatus, BillIssued, BillStatus, Category, SupplyState
from paygate.money import Money
from paygate.payments import Payments
from paygate.records import (
    ACCOUNT_COLUMNS,
    Account,
    Core,
    Writes,
    account_from_row,
    flush,
    insert_account,
    insert_bill,
    load_bills,
    lock_account,
    marks,
    write_bills,
)
from paygate.store.engine import Tx, UniqueViolation

__all__ = ["Accounts"]

_STATUS_CHUNK = 500
"""Accounts read per query by ``account_statuses`` (bound parameters stay well within every
database's limit)."""


class Accounts:
    """Opening accounts, issuing bills, and account status."""

    def __init__(self, core: Core, payments: Payments) -> None:
        self._core = core
        self._payments = payments

    def open_account(
        self,
        account_no: str,
        *,
        category: str | Category = Category.RESIDENTIAL,
        prepaid: bool = False,
        protected: bool = False,
        name: str | None = None,
        currency: str | None = None,
    ) -> None:
        """Open a customer account; opening it again with the same attributes is a no-op."""
        try:
            cat = Category(category)
        except ValueError:
            raise InvalidInputError(
                f"unknown category {category!r}; use one of {[c.value for c in Category]}",
                field="category",
            ) from None
        if not account_no or len(account_no) > 64 or not account_no.isprintable():
            raise InvalidInputError("1-64 printable characters", field="account_no")
        cur = currency or self._core.settings.currency
        Money.zero(cur)
        now = self._core.clock.now()

        def work(tx: Tx) -> None:
            row = tx.one(
                "SELECT category, prepaid, protected, name, currency FROM accounts "
                "WHERE account_no = :no",
                {"no": account_no},
            )
            if row is not None:
                same = (row[0], bool(row[1]), bool(row[2]), row[3], row[4]) == (
                    cat.value,
                    prepaid,
                    protected,
                    name,
                    cur,
                )
                if not same:
                    raise DuplicateAccountError(
                        f"account {account_no} is already open with other attributes",
                        field="account_no",
                    )
                return
            receivable = self._core.ledger.ensure(
                tx, f"receivable:{account_no}", AccountKind.CUSTOMER_RECEIVABLE, cur
            )
            insert_account(
                tx,
                account_id=tx.ids.one(),
                account_no=account_no,
                name=name,
                category=cat,
                prepaid=prepaid,
                protected=protected,
                currency=cur,
                receivable_id=receivable,
                now=now,
            )

        try:
            self._core.store.run(work)
        except UniqueViolation:
            # Opened concurrently: compare with what won.
            self._core.store.run(work)

    def issue_bill(
        self, account_no: str, *, bill_no: str, amount: Money, period: str, due_date: date
    ) -> BillIssued:
        """Issue a bill: debit the customer, credit energy revenue, and apply any credit."""
        if not isinstance(amount, Money):
            raise TypeError("amount must be Money")
        if amount.minor <= 0:
            raise InvalidAmountError("a bill amount must be positive", field="amount")
        if not bill_no or len(bill_no) > 64:
            raise InvalidInputError("1-64 characters", field="bill_no")
        if not period or len(period) > 16:
            raise InvalidInputError("1-16 characters, such as 2026-10", field="period")
        if not isinstance(due_date, date) or isinstance(due_date, datetime):
            raise InvalidInputError("a date", field="due_date")
        now = self._core.clock.now()

        def existing(tx: Tx) -> BillIssued | None:
            row = tx.one(
                # A corrected bill is compared as it was issued (its first correction's
                # amount before), so that the billing system's retry is still a no-op.
                "SELECT a.account_no, COALESCE((SELECT c.amount_before FROM bill_corrections c "
                "WHERE c.bill_id = b.id ORDER BY c.created_at, c.id LIMIT 1), b.amount), "
                "b.currency, b.period, b.due_date "
                "FROM bills b JOIN accounts a ON a.id = b.account_id WHERE b.bill_no = :no",
                {"no": bill_no},
            )
            if row is None:
                return None
            same = (row[0], int(row[1]), row[2], row[3], tx.read_day(row[4])) == (
                account_no,
                amount.minor,
                amount.currency,
                period,
                due_date,
            )
            if not same:
                raise BillConflictError(
                    f"bill {bill_no} was issued before with other data", field="bill_no"
                )
            return BillIssued(
                bill_no=bill_no,
                account_no=account_no,
                amount=amount,
                period=period,
                due_date=due_date,
                created=False,
                credit_applied=Money.zero(amount.currency),
            )

        def work(tx: Tx) -> BillIssued:
            acct = lock_account(tx, account_no)
            found = existing(tx)
            if found is not None:
                return found
            if acct.supply_state is SupplyState.CLOSED:
                raise AccountClosedError(
                    f"account {account_no} is closed; it takes no new bill", field="account_no"
                )
            if amount.currency != acct.currency:
                raise CurrencyMismatchError(
                    f"account {account_no} is in {acct.currency}", field="amount"
                )
            applied = self.issue_within(
                tx,
                acct,
                bill_no=bill_no,
                amount=amount.minor,
                period=period,
                due_date=due_date,
                now=now,
            )
            return BillIssued(
                bill_no=bill_no,
                account_no=account_no,
                amount=amount,
                period=period,
                due_date=due_date,
                created=True,
                credit_applied=Money(applied, acct.currency),
            )

        try:
            issued = self._core.store.run(work)
        except UniqueViolation:
            result = self._core.store.run(existing, write=False)
            if result is None:
                raise
            return result
        return issued

    def issue_within(
        self,
        tx: Tx,
        acct: Account,
        *,
        bill_no: str,
        amount: int,
        period: str,
        due_date: date,
        now: datetime,
    ) -> int:
        """Write a new bill of the locked account ``acct`` in ``tx``: its journal entry, its
        row, and any credit the account holds applied; return the credit applied.

        The caller has checked that the bill number is new and the currency is the account's.
        """
        load_bills(tx, [acct])
        writes = Writes()
        bill_id, entry_id = tx.ids.take(2)
        energy = self._core.ledger.ensure(
            tx, f"revenue:energy:{acct.currency}", AccountKind.ENERGY_REVENUE, acct.currency
        )
        writes.entries.append(
            EntryDraft(
                kind="bill",
                reference=f"bill:{bill_no}",
                memo=f"bill {bill_no} for {period}",
                business_date=self._core.local_date(now),
                posted_at=now,
                postings=(
                    PostingDraft(acct.receivable_id, amount, acct.currency),
                    PostingDraft(energy, -amount, acct.currency),
                ),
                shard_key=acct.id,
                entry_id=entry_id,
            )
        )
        self._payments.post(tx, writes.entries)
        insert_bill(
            tx,
            bill_id=bill_id,
            account_id=acct.id,
            bill_no=bill_no,
            period=period,
            amount=amount,
            currency=acct.currency,
            due_date=due_date,
            entry_id=entry_id,
            now=now,
        )
        new_bill = OpenBill(bill_id, bill_no, due_date, amount)
        acct.bills.append(new_bill)
        acct.original_bills[bill_id] = new_bill
        acct.periods[bill_id] = period
        acct.balance += amount
        applied = self._payments.apply_credit(tx, acct, writes, now)
        flush(tx, writes)
        write_bills(tx, [acct])
        return applied

    def account_status(self, account_no: str, as_of: date | None = None) -> AccountStatus:
        """What the account owes on ``as_of`` (default: today in the utility's zone); an aware
        datetime means its date in the utility's zone."""
        if isinstance(as_of, datetime):
            as_of = self._core.local_date(require_aware(as_of, "as_of"))
        day = as_of if as_of is not None else self._core.local_date(self._core.clock.now())

        def work(tx: Tx) -> AccountStatus:
            row = tx.one(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.account_no = :no",  # noqa: S608
                {"no": account_no},
            )
            if row is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            acct = account_from_row(row)
            load_bills(tx, [acct])
            credit = int(
                tx.scalar(
                    "SELECT COALESCE(SUM(unallocated), 0) FROM payments WHERE account_id = :a "
                    "AND status = 'posted'",
                    {"a": acct.id},
                )
            )
            return self._status(acct, day, credit)

        return self._core.store.run(work, write=False)

    def account_statuses(
        self, account_nos: Sequence[str], as_of: date | None = None
    ) -> dict[str, AccountStatus]:
        """:meth:`account_status` of each of ``account_nos``, read in one transaction (a
        billing run's or a simulation's many accounts); an unknown one raises
        :class:`UnknownAccountError` naming it."""
        if isinstance(as_of, datetime):
            as_of = self._core.local_date(require_aware(as_of, "as_of"))
        day = as_of if as_of is not None else self._core.local_date(self._core.clock.now())
        wanted = sorted(set(account_nos))

        def work(tx: Tx) -> dict[str, AccountStatus]:
            accts: list[Account] = []
            credits: dict[int, int] = {}
            for start in range(0, len(wanted), _STATUS_CHUNK):
                chunk = wanted[start : start + _STATUS_CHUNK]
                placeholders, params = marks("n", chunk)
                rows = tx.all(
                    f"SELECT {ACCOUNT_COLUMNS} FROM accounts a "  # noqa: S608
                    f"WHERE a.account_no IN ({placeholders})",
                    params,
                )
                found = [account_from_row(row) for row in rows]
                known = {acct.account_no for acct in found}
                for no in chunk:
                    if no not in known:
                        raise UnknownAccountError(f"no account {no}", field="account_no")
                id_marks, ids = marks("a", [acct.id for acct in found])
                credits.update(
                    (int(account_id), int(total))
                    for account_id, total in tx.all(
                        "SELECT account_id, COALESCE(SUM(unallocated), 0) FROM payments "  # noqa: S608
                        f"WHERE account_id IN ({id_marks}) AND status = 'posted' "
                        "GROUP BY account_id",
                        ids,
                    )
                )
                load_bills(tx, found)
                accts += found
            return {
                acct.account_no: self._status(acct, day, credits.get(acct.id, 0)) for acct in accts
            }

        if not wanted:
            return {}
        return self._core.store.run(work, write=False)

    def _status(self, acct: Account, day: date, credit: int) -> AccountStatus:
        policy = self._core.settings.late_fee
        cur = acct.currency
        accrual = billing.accrue_late_fees(acct.bills, acct.category, day, policy)
        total_arrears, uncharged = billing.arrears(acct.bills, acct.category, day, policy)
        bills = tuple(
            BillStatus(
                bill_no=b.bill_no,
                period=acct.periods.get(b.bill_id, ""),
                amount=Money(b.amount, cur),
                due_date=b.due_date,
                principal_paid=Money(b.principal_paid, cur),
                principal_due=Money(b.principal_due, cur),
                late_fee_charged=Money(b.late_fee_charged, cur),
                late_fee_paid=Money(b.late_fee_paid, cur),
                late_fee_accrued=Money(accrual.per_bill.get(b.bill_id, 0), cur),
                overdue=b.overdue_on(day),
            )
            for b in sorted(acct.bills, key=lambda b: (b.due_date, b.bill_no))
        )
        return AccountStatus(
            account_no=acct.account_no,
            name=acct.name,
            category=acct.category,
            prepaid=acct.prepaid,
            protected=acct.protected,
            currency=cur,
            as_of=day,
            balance=Money(acct.balance, cur),
            outstanding=Money(sum(b.principal_due for b in acct.bills), cur),
            arrears=Money(total_arrears, cur),
            late_fee=Money(uncharged, cur),
            credit=Money(credit, cur),
            supply_state=acct.supply_state,
            bills=bills,
        )
