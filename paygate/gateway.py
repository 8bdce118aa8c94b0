"""The Gateway: the one door every channel's money comes through.

Each decision is one transaction (DESIGN.md invariant 4): a payment's idempotency record, its
late-fee charge, its journal entry, its allocation to bills, any supply-state change with its
reconnection order, and the events announcing them commit together or not at all.

Exactly-once effect (invariant 3) rests on the unique constraint on (channel, channel_txn_id),
not on a check before the insert: a concurrent duplicate that slips past the check fails at the
insert, its transaction is rolled back, and it is answered from the stored original. Payments
of one account are serialized by a row lock on the account (``FOR UPDATE`` on PostgreSQL, the
single writer of ``BEGIN IMMEDIATE`` on SQLite); every read that decides something happens
after that lock is held.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from paygate import billing, ledger, supply
from paygate.billing import AllocationPart, AllocationPolicy, OldestFirst, OpenBill
from paygate.clock import Clock, SystemClock, require_aware
from paygate.config import Settings
from paygate.errors import (
    BillConflictError,
    CurrencyMismatchError,
    DuplicateAccountError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
    UnknownAccountError,
    UnknownOrderError,
    UnknownPaymentError,
)
from paygate.headend.base import HeadEndOutcome, SupplyAction
from paygate.ledger import AccountKind, EntryDraft, LedgerAccounts, PostingDraft
from paygate.models import (
    AccountStatus,
    Allocation,
    BillIssued,
    BillStatus,
    Category,
    DisconnectionCandidate,
    PaymentIntent,
    PayOutcome,
    Receipt,
    Reversal,
    StatementLine,
    SupplyState,
)
from paygate.money import Money
from paygate.store import migrate
from paygate.store.engine import Store, Tx, UniqueViolation
from paygate.supply import OrderStatus, Severity, Step

if TYPE_CHECKING:
    from paygate.channels.base import ChannelAdapter
    from paygate.headend.base import HeadEnd
    from paygate.outbox import DispatchReport, EventSink
    from paygate.reconcile import ReconciliationRun

__all__ = ["Gateway"]

_ACCOUNT_COLUMNS = (
    "a.id, a.account_no, a.name, a.category, a.prepaid, a.protected, a.currency, "
    "a.supply_state, a.receivable_account_id"
)
_BILL_COLUMNS = (
    "b.id, b.account_id, b.bill_no, b.due_date, b.amount, b.principal_paid, "
    "b.late_fee_charged, b.late_fee_paid, b.late_fee_through"
)
_OPEN = "(b.principal_paid < b.amount OR b.late_fee_paid < b.late_fee_charged)"
_METER_ADDRESS = re.compile(r"[0-9]{12}")
_BROADCAST_ADDRESS = "999999999999"


@dataclass(slots=True)
class _Account:
    id: int
    account_no: str
    name: str | None
    category: Category
    prepaid: bool
    protected: bool
    currency: str
    supply_state: SupplyState
    receivable_id: int
    balance: int = 0
    bills: list[OpenBill] = field(default_factory=list)
    original_bills: dict[int, OpenBill] = field(default_factory=dict)
    periods: dict[int, str] = field(default_factory=dict)
    state_changed: bool = False


@dataclass(slots=True)
class _Writes:
    """Rows one transaction will write, gathered while deciding, written together."""

    entries: list[EntryDraft] = field(default_factory=list)
    payments: list[tuple[Any, ...]] = field(default_factory=list)
    allocations: list[tuple[Any, ...]] = field(default_factory=list)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    payment_credit: dict[int, int] = field(default_factory=dict)
    cancel_disconnects: list[tuple[int, Any]] = field(default_factory=list)


def _fingerprint(intent: PaymentIntent) -> str:
    canonical = "|".join(
        (
            intent.account_no,
            str(intent.amount.minor),
            intent.amount.currency,
            intent.paid_at.astimezone(ZoneInfo("UTC")).isoformat(timespec="microseconds"),
            intent.terminal_id or "",
        )
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _marks(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{prefix}{i}" for i in range(len(values))), params


class Gateway:
    """The one door: accounts, bills, payments, reversals, supply state, status and audit.

    Open one with :meth:`Gateway.open`; it is a context manager, and thread-safe (each call is
    its own transaction on a pooled connection).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        clock: Clock | None = None,
        allocation: AllocationPolicy | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.allocation: AllocationPolicy = allocation or OldestFirst()
        self._zone = ZoneInfo(settings.timezone)
        self._ledger = LedgerAccounts()
        self._posted_since_seal = 0

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        allocation: AllocationPolicy | None = None,
    ) -> Gateway:
        """A ready gateway on ``database_url`` (default: ``PAYGATE_DATABASE_URL``, then
        ``sqlite:///paygate.db``).

        A SQLite database is created or upgraded on the spot; a PostgreSQL database must have
        been migrated with ``paygate db upgrade`` and is refused otherwise.
        """
        if settings is None:
            settings = Settings.from_env(database_url=database_url)
        elif database_url is not None:
            settings = settings.model_copy(update={"database_url": database_url})
        store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            if store.dialect == "sqlite":
                migrate.upgrade(store.url)
            else:
                migrate.require_current(store.url)
        except BaseException:
            store.dispose()
            raise
        return cls(store, settings, clock=clock, allocation=allocation)

    def use_channels(self, adapters: Iterable[ChannelAdapter[Any]]) -> None:
        """Date payments by these adapters' cut-offs (see :meth:`Settings.with_channels`).

        For adapters built after the Gateway (their contexts need its store); call it before
        the first payment.
        """
        self.settings = self.settings.with_channels(adapters)

    def close(self) -> None:
        """Seal what is pending and release every database connection."""
        try:
            if self._posted_since_seal:
                self.seal()
        finally:
            self.store.dispose()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- accounts and bills -------------------------------------------------------------

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
        cur = currency or self.settings.currency
        Money.zero(cur)
        now = self.clock.now()

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
            receivable = self._ledger.ensure(
                tx, f"receivable:{account_no}", AccountKind.CUSTOMER_RECEIVABLE, cur
            )
            tx.execute(
                "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, "
                "currency, supply_state, receivable_account_id, created_at) VALUES (:id, :no, "
                ":name, :cat, :prepaid, :protected, :cur, :state, :recv, :now)",
                {
                    "id": tx.ids.one(),
                    "no": account_no,
                    "name": name,
                    "cat": cat.value,
                    "prepaid": prepaid,
                    "protected": protected,
                    "cur": cur,
                    "state": SupplyState.CONNECTED.value,
                    "recv": receivable,
                    "now": tx.ts(now),
                },
            )

        try:
            self.store.run(work)
        except UniqueViolation:
            # Opened concurrently: compare with what won.
            self.store.run(work)

    def issue_bill(
        self, account_no: str, *, bill_no: str, amount: Money, period: str, due_date: date
    ) -> BillIssued:
        """Issue a bill: debit the customer, credit energy revenue, and apply any credit.

        The same bill again with the same data is a no-op (``created=False``); with other data
        it is a :class:`~paygate.errors.BillConflictError`.
        """
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
        now = self.clock.now()

        def existing(tx: Tx) -> BillIssued | None:
            row = tx.one(
                "SELECT a.account_no, b.amount, b.currency, b.period, b.due_date "
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
            acct = self._lock_accounts(tx, [account_no]).get(account_no)
            if acct is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            found = existing(tx)
            if found is not None:
                return found
            if amount.currency != acct.currency:
                raise CurrencyMismatchError(
                    f"account {account_no} is in {acct.currency}", field="amount"
                )
            self._load_bills(tx, [acct])
            writes = _Writes()
            bill_id, entry_id = tx.ids.take(2)
            energy = self._ledger.ensure(
                tx, f"revenue:energy:{acct.currency}", AccountKind.ENERGY_REVENUE, acct.currency
            )
            writes.entries.append(
                EntryDraft(
                    kind="bill",
                    reference=f"bill:{bill_no}",
                    memo=f"bill {bill_no} for {period}",
                    business_date=self._local_date(now),
                    posted_at=now,
                    postings=(
                        PostingDraft(acct.receivable_id, amount.minor, acct.currency),
                        PostingDraft(energy, -amount.minor, acct.currency),
                    ),
                    shard_key=acct.id,
                    entry_id=entry_id,
                )
            )
            ledger.post(tx, writes.entries, self._ledger)
            tx.execute(
                "INSERT INTO bills (id, account_id, bill_no, period, amount, currency, due_date, "
                "principal_paid, late_fee_charged, late_fee_paid, late_fee_through, entry_id, "
                "issued_at) VALUES (:id, :acct, :no, :period, :amount, :cur, :due, 0, 0, 0, "
                "NULL, :entry, :now)",
                {
                    "id": bill_id,
                    "acct": acct.id,
                    "no": bill_no,
                    "period": period,
                    "amount": amount.minor,
                    "cur": acct.currency,
                    "due": tx.day(due_date),
                    "entry": entry_id,
                    "now": tx.ts(now),
                },
            )
            new_bill = OpenBill(bill_id, bill_no, due_date, amount.minor)
            acct.bills.append(new_bill)
            acct.original_bills[bill_id] = new_bill
            acct.periods[bill_id] = period
            acct.balance += amount.minor
            applied = self._apply_credit(tx, acct, writes, now)
            self._flush_rows(tx, writes)
            self._write_bills(tx, [acct])
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
            issued = self.store.run(work)
        except UniqueViolation:
            result = self.store.run(existing, write=False)
            if result is None:
                raise
            return result
        if issued.created:
            self.note_posted(1)
        return issued

    # -- payments -----------------------------------------------------------------------

    def pay(self, intent: PaymentIntent) -> Receipt:
        """Post one payment; the same payment again returns the original receipt, replayed."""
        if not isinstance(intent, PaymentIntent):
            raise TypeError("pay() takes a PaymentIntent")
        self._validate(intent)
        for _attempt in range(3):
            try:
                outcome = self.store.run(lambda tx: self.post_within(tx, [intent])[0])
            except UniqueViolation:
                continue  # a concurrent duplicate committed first: answer from it
            if isinstance(outcome, PaygateError):
                raise outcome
            assert isinstance(outcome, Receipt)
            if not outcome.replayed:
                self.note_posted(1)
            return outcome
        raise IdempotencyConflictError(
            f"payment {intent.channel}/{intent.channel_txn_id} keeps colliding with concurrent "
            "writers; retry",
            field="channel_txn_id",
        )

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post a batch (a bank's daily file): chunked transactions, one outcome per item.

        A refused item is reported and never costs the others their posting; each chunk
        commits on its own, so a failure later in the batch loses nothing already posted.
        """
        items = list(intents)
        outcomes: list[PayOutcome | None] = [None] * len(items)
        valid: list[tuple[int, PaymentIntent]] = []
        for index, intent in enumerate(items):
            try:
                if not isinstance(intent, PaymentIntent):
                    raise InvalidInputError("not a PaymentIntent", field="intent")
                self._validate(intent)
            except PaygateError as exc:
                outcomes[index] = PayOutcome(
                    index=index, status="refused", error_code=exc.code, error=str(exc)
                )
                continue
            valid.append((index, intent))
        size = self.settings.pay_many_chunk
        for start in range(0, len(valid), size):
            chunk = valid[start : start + size]
            for _attempt in range(5):
                try:
                    results = self.store.run(
                        lambda tx, chunk=chunk: self.post_within(tx, [i for _, i in chunk])  # type: ignore[misc]
                    )
                    break
                except UniqueViolation:
                    continue
            else:
                raise IdempotencyConflictError(
                    "a batch keeps colliding with concurrent writers; retry", field="intents"
                )
            posted = 0
            for (index, _), result in zip(chunk, results, strict=True):
                if isinstance(result, PaygateError):
                    outcomes[index] = PayOutcome(
                        index=index, status="refused", error_code=result.code, error=str(result)
                    )
                else:
                    posted += not result.replayed
                    outcomes[index] = PayOutcome(
                        index=index,
                        status="replayed" if result.replayed else "posted",
                        receipt=result,
                    )
            self.note_posted(posted)
        return [o for o in outcomes if o is not None]

    def _validate(self, intent: PaymentIntent) -> None:
        if intent.amount.minor <= 0:
            raise InvalidAmountError("a payment amount must be positive", field="amount")
        if intent.paid_at.utcoffset() is None:
            require_aware(intent.paid_at, "paid_at")  # raises, naming the field

    @property
    def ledger_accounts(self) -> LedgerAccounts:
        """The ledger-account directory, for components that post their own entries."""
        return self._ledger

    def post_within(self, tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        """Decide and write payments inside the caller's transaction ``tx``.

        For components whose own rows must commit with the payment (a voucher marked redeemed
        with the payment it made). Returns a receipt (possibly replayed) or a refusal for each
        intent, in order; a :class:`~paygate.store.engine.UniqueViolation` means a concurrent
        duplicate committed first: roll back and call again. Call :meth:`pay` otherwise.
        """
        for intent in intents:
            self._validate(intent)
        now = self.clock.now()
        accounts = self._lock_accounts(tx, sorted({i.account_no for i in intents}))
        existing = self._existing_payments(tx, intents)
        self._load_bills(tx, list(accounts.values()))
        writes = _Writes()
        seen: dict[tuple[str, str], tuple[str, Receipt]] = {}
        results: list[Receipt | PaygateError] = []
        ids = iter(tx.ids.take(2 * len(intents)))
        for intent in intents:
            key = (intent.channel, intent.channel_txn_id)
            fingerprint = _fingerprint(intent)
            prior = existing.get(key) or seen.get(key)
            if prior is not None:
                if prior[0] != fingerprint:
                    results.append(
                        IdempotencyConflictError(
                            f"{intent.channel} transaction {intent.channel_txn_id} was posted "
                            "before with a different account, amount, currency or time",
                            field="channel_txn_id",
                        )
                    )
                else:
                    results.append(prior[1].model_copy(update={"replayed": True}))
                continue
            acct = accounts.get(intent.account_no)
            if acct is None:
                results.append(
                    UnknownAccountError(f"no account {intent.account_no}", field="account_no")
                )
                continue
            if intent.amount.currency != acct.currency:
                results.append(
                    CurrencyMismatchError(
                        f"account {acct.account_no} is in {acct.currency}, "
                        f"not {intent.amount.currency}",
                        field="amount",
                    )
                )
                continue
            receipt = self._plan_payment(
                tx, acct, intent, next(ids), next(ids), fingerprint, writes, now
            )
            seen[key] = (fingerprint, receipt)
            results.append(receipt)
        if writes.entries:
            # A few payments: send the writes without waiting on each reply. A batch: COPY,
            # which cannot run in a pipeline and does not need one.
            with tx.pipeline() if len(intents) <= 16 else nullcontext():
                ledger.post(tx, writes.entries, self._ledger)
                self._flush_rows(tx, writes)
                self._write_bills(tx, accounts.values())
                self._write_states(tx, accounts.values())
        return results

    def _plan_payment(
        self,
        tx: Tx,
        acct: _Account,
        intent: PaymentIntent,
        payment_id: int,
        entry_id: int,
        fingerprint: str,
        writes: _Writes,
        now: datetime,
    ) -> Receipt:
        policy = self.settings.late_fee
        cur = acct.currency
        local = intent.paid_at.astimezone(self._zone)
        pay_day = local.date()
        cutoff = self.settings.cutoff(intent.channel)
        settle_day = pay_day
        if cutoff != time(0, 0) and local.time() >= cutoff:
            settle_day += timedelta(days=1)  # after the channel's cut-off: its next day
        accrual = billing.accrue_late_fees(acct.bills, acct.category, pay_day, policy)
        arrears_before = billing.overdue_owed(acct.bills, pay_day) + accrual.total
        acct.bills = billing.charge_late_fees(acct.bills, accrual)
        parts = self.allocation.allocate(intent.amount.minor, acct.bills)
        allocated = sum(p.late_fee + p.principal for p in parts)
        if allocated > intent.amount.minor or any(p.late_fee < 0 or p.principal < 0 for p in parts):
            raise InvalidStateError("the allocation policy allocated more than was paid")
        acct.bills = billing.apply_parts(acct.bills, parts)
        credit = intent.amount.minor - allocated
        acct.balance += accrual.total - intent.amount.minor
        # Every overdue bill is now charged through the payment day: nothing more accrues.
        arrears_after = billing.overdue_owed(acct.bills, pay_day)

        clearing = self.debit_account(tx, intent.channel, cur)
        legs = [
            PostingDraft(clearing, intent.amount.minor, cur),
            PostingDraft(acct.receivable_id, -intent.amount.minor, cur),
        ]
        if accrual.total:
            revenue = self._ledger.ensure(
                tx, f"revenue:late_fee:{cur}", AccountKind.LATE_FEE_REVENUE, cur
            )
            legs += [
                PostingDraft(acct.receivable_id, accrual.total, cur),
                PostingDraft(revenue, -accrual.total, cur),
            ]
        writes.entries.append(
            EntryDraft(
                kind="payment",
                reference=f"payment:{intent.channel}:{intent.channel_txn_id}",
                memo=f"{intent.channel} payment for {acct.account_no}",
                business_date=settle_day,
                posted_at=now,
                postings=tuple(legs),
                shard_key=acct.id,
                entry_id=entry_id,
            )
        )
        by_id = {b.bill_id: b for b in acct.bills}
        allocation_ids = tx.ids.take(len(parts)) if parts else []
        for alloc_id, part in zip(allocation_ids, parts, strict=True):
            writes.allocations.append(
                (
                    alloc_id,
                    payment_id,
                    part.bill_id,
                    "payment",
                    part.late_fee,
                    part.principal,
                    tx.ts(now),
                )
            )

        self._event(
            tx,
            writes,
            "payment.posted",
            acct.account_no,
            now,
            {
                "payment_id": payment_id,
                "channel": intent.channel,
                "channel_txn_id": intent.channel_txn_id,
                "amount": intent.amount.minor,
                "currency": cur,
                "paid_at": intent.paid_at.isoformat(),
                "late_fee": accrual.total,
                "balance_after": acct.balance,
                "arrears_after": arrears_after,
            },
        )
        if arrears_before > 0 and arrears_after == 0:
            self._event(
                tx,
                writes,
                "arrears.cleared",
                acct.account_no,
                now,
                {"payment_id": payment_id, "supply_state": acct.supply_state.value},
            )
        cleared = arrears_before > 0 and arrears_after == 0
        reason = "arrears cleared" if cleared else "balance settled"
        order_id = self._supply_after_payment(
            tx, acct, payment_id, arrears_after, writes, now, reason
        )
        receipt = Receipt(
            payment_id=payment_id,
            channel=intent.channel,
            channel_txn_id=intent.channel_txn_id,
            account_no=acct.account_no,
            amount=intent.amount,
            paid_at=intent.paid_at,
            business_date=settle_day,
            late_fee=Money(accrual.total, cur),
            allocations=tuple(
                Allocation(
                    bill_no=by_id[p.bill_id].bill_no,
                    late_fee=Money(p.late_fee, cur),
                    principal=Money(p.principal, cur),
                )
                for p in parts
            ),
            credit=Money(credit, cur),
            balance_after=Money(acct.balance, cur),
            arrears_after=Money(arrears_after, cur),
            arrears_cleared=cleared,
            reconnection_order_id=order_id,
            reconnection_reason=None if order_id is None else reason,
        )
        writes.payments.append(
            (
                payment_id,
                intent.channel,
                intent.channel_txn_id,
                acct.id,
                intent.amount.minor,
                cur,
                tx.ts(intent.paid_at),
                tx.day(settle_day),
                fingerprint,
                intent.terminal_id,
                entry_id,
                accrual.total,
                credit,
                "posted",
                receipt.model_dump_json(),
                tx.ts(now),
            )
        )
        return receipt

    def debit_account(self, tx: Tx, channel: str, currency: str) -> int:
        """The account a channel's payments are debited to (its clearing account by default).

        Reconciliation and settlement use the same rule for suspense and bank postings.
        """
        kind = self.settings.channel_debit_accounts.get(channel, AccountKind.CHANNEL_CLEARING)
        if kind is AccountKind.CHANNEL_CLEARING:
            return self._ledger.ensure(tx, f"clearing:{channel}:{currency}", kind, currency)
        return self._ledger.ensure(tx, f"{kind.value}:{currency}", kind, currency)

    def _supply_after_payment(
        self,
        tx: Tx,
        acct: _Account,
        payment_id: int,
        arrears_after: int,
        writes: _Writes,
        now: datetime,
        reason: str,
    ) -> int | None:
        if not self._owes_nothing(acct, arrears_after):
            return None
        if acct.supply_state is SupplyState.DISCONNECTION_PENDING:
            self._transition(
                tx, acct, SupplyState.CONNECTED, "arrears cleared", "payment", None, writes, now
            )
            writes.cancel_disconnects.append((acct.id, tx.ts(now)))
            self._event(
                tx,
                writes,
                "disconnection.cancelled",
                acct.account_no,
                now,
                {"payment_id": payment_id},
            )
            return None
        if acct.supply_state is not SupplyState.DISCONNECTED:
            return None
        return self._reconnection_order(tx, acct, reason, payment_id, writes, now)

    def _owes_nothing(self, acct: _Account, arrears: int) -> bool:
        """Whether supply is due back: no arrears and, on a prepaid account, a balance of zero
        or in credit (consumption charged but not yet due still counts against prepaid)."""
        return arrears <= 0 and not (acct.prepaid and acct.balance > 0)

    def _refuse_if_owes_nothing(self, acct: _Account, now: datetime) -> None:
        """Refuse to cut an account that owes nothing: nothing would ever bring supply back
        (reconnection follows a payment that clears arrears). Bills must be loaded."""
        owed, _ = billing.arrears(
            acct.bills, acct.category, self._local_date(now), self.settings.late_fee
        )
        if self._owes_nothing(acct, owed):
            raise InvalidStateError(
                f"account {acct.account_no} owes nothing: there is nothing to disconnect for",
                field="account_no",
            )

    def _reconnection_order(
        self,
        tx: Tx,
        acct: _Account,
        reason: str,
        payment_id: int | None,
        writes: _Writes,
        now: datetime,
    ) -> int:
        order_id = self._new_order(
            tx, acct, "reconnect", SupplyAction.DIRECT_CLOSE, reason, payment_id, None, writes, now
        )
        deadlines = self.settings.service_promise.deadlines(now)
        self._transition(
            tx, acct, SupplyState.RECONNECTION_PENDING, reason, "payment", order_id, writes, now
        )
        self._event(
            tx,
            writes,
            "reconnection.requested",
            acct.account_no,
            now,
            {
                "order_id": order_id,
                "payment_id": payment_id,
                "reason": reason,
                "due_at": deadlines.confirm.isoformat(),
            },
        )
        return order_id

    def _new_order(
        self,
        tx: Tx,
        acct: _Account,
        kind: str,
        action: SupplyAction,
        reason: str,
        payment_id: int | None,
        approved_by: str | None,
        writes: _Writes,
        now: datetime,
    ) -> int:
        order_id = tx.ids.one()
        deadlines = self.settings.service_promise.deadlines(now)
        writes.orders.append(
            (
                order_id,
                acct.id,
                kind,
                OrderStatus.OPEN.value,
                reason,
                payment_id,
                tx.ts(now),
                tx.ts(deadlines.confirm),
                action.value,
                approved_by,
                tx.ts(deadlines.dispatch),
                tx.ts(deadlines.acknowledge),
                tx.ts(deadlines.legal),
                0,
                tx.ts(now),
            )
        )
        return order_id

    # -- reversal -----------------------------------------------------------------------

    def reverse(self, payment_id: int, reason: str) -> Reversal:
        """Post the compensating entry of a payment and re-open what it had paid.

        The late fee the payment's arrival charged stays charged (the days were late); it is
        simply unpaid again. Any other credit the account holds is applied to what re-opens.
        """
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        result = self.store.run(lambda tx: self.reverse_within(tx, payment_id, reason))
        self.note_posted(1)
        return result

    def reverse_within(self, tx: Tx, payment_id: int, reason: str) -> Reversal:
        """:meth:`reverse` inside the caller's transaction ``tx`` (for components whose own
        check must commit with the reversal: a POS void and its batch); the caller counts the
        entry toward sealing with :meth:`note_posted` after commit."""
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        now = self.clock.now()
        row = tx.one(
            "SELECT p.channel, p.channel_txn_id, p.amount, p.currency, p.status, "
            "a.account_no FROM payments p JOIN accounts a "
            "ON a.id = p.account_id WHERE p.id = :id",
            {"id": payment_id},
        )
        if row is None:
            raise UnknownPaymentError(f"no payment {payment_id}", field="payment_id")
        channel, txn_id, amount, cur, status, account_no = row
        acct = self._lock_accounts(tx, [account_no])[account_no]
        # Read again under the lock: a concurrent reversal may have won.
        status = tx.scalar("SELECT status FROM payments WHERE id = :id", {"id": payment_id})
        if status != "posted":
            raise InvalidStateError(f"payment {payment_id} is already {status}", field="payment_id")
        self._load_bills(tx, [acct], include_bills_of_payment=payment_id)
        writes = _Writes()
        entry_id = tx.ids.one()
        clearing = self.debit_account(tx, channel, cur)
        writes.entries.append(
            EntryDraft(
                kind="reversal",
                reference=f"reversal:{channel}:{txn_id}",
                memo=f"reversal of payment {payment_id}: {reason}"[:2000],
                business_date=self._local_date(now),
                posted_at=now,
                postings=(
                    PostingDraft(acct.receivable_id, int(amount), cur),
                    PostingDraft(clearing, -int(amount), cur),
                ),
                shard_key=acct.id,
                entry_id=entry_id,
            )
        )
        acct.balance += int(amount)
        net = self._net_allocations(tx, payment_id)
        reopen = [
            AllocationPart(bill_id, -fee, -principal)
            for bill_id, (fee, principal) in sorted(net.items())
            if fee or principal
        ]
        acct.bills = billing.apply_parts(acct.bills, reopen)
        alloc_ids = tx.ids.take(len(reopen)) if reopen else []
        for alloc_id, part in zip(alloc_ids, reopen, strict=True):
            writes.allocations.append(
                (
                    alloc_id,
                    payment_id,
                    part.bill_id,
                    "reversal",
                    part.late_fee,
                    part.principal,
                    tx.ts(now),
                )
            )
        ledger.post(tx, writes.entries, self._ledger)
        tx.execute(
            "UPDATE payments SET status = 'reversed', reversal_entry_id = :e, "
            "reversal_reason = :r, unallocated = 0 WHERE id = :id",
            {"e": entry_id, "r": reason, "id": payment_id},
        )
        self._apply_credit(tx, acct, writes, now)
        pay_day = self._local_date(now)
        arrears_after, _ = billing.arrears(
            acct.bills, acct.category, pay_day, self.settings.late_fee
        )
        self._event(
            tx,
            writes,
            "payment.reversed",
            acct.account_no,
            now,
            {"payment_id": payment_id, "reason": reason, "arrears_after": arrears_after},
        )
        self._flush_rows(tx, writes)
        self._write_bills(tx, [acct])
        bill_nos = {b.bill_id: b.bill_no for b in acct.bills}
        return Reversal(
            payment_id=payment_id,
            reversal_entry_id=entry_id,
            reason=reason,
            reopened=tuple(
                Allocation(
                    bill_no=bill_nos[p.bill_id],
                    late_fee=Money(-p.late_fee, cur),
                    principal=Money(-p.principal, cur),
                )
                for p in reopen
            ),
            balance_after=Money(acct.balance, cur),
            arrears_after=Money(arrears_after, cur),
            supply_state=acct.supply_state,
        )

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> Reversal:
        """Reverse the payment a channel knows by its own transaction id."""
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        result = self.store.run(
            lambda tx: self.reverse_by_channel_txn_within(tx, channel, channel_txn_id, reason)
        )
        self.note_posted(1)
        return result

    def reverse_by_channel_txn_within(
        self, tx: Tx, channel: str, channel_txn_id: str, reason: str
    ) -> Reversal:
        """:meth:`reverse_by_channel_txn` inside the caller's transaction ``tx``."""
        value = tx.scalar(
            "SELECT id FROM payments WHERE channel = :c AND channel_txn_id = :t",
            {"c": channel, "t": channel_txn_id},
        )
        if value is None:
            raise UnknownPaymentError(
                f"no {channel} payment {channel_txn_id}", field="channel_txn_id"
            )
        return self.reverse_within(tx, int(value), reason)

    def _net_allocations(self, tx: Tx, payment_id: int) -> dict[int, tuple[int, int]]:
        net: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for bill_id, fee, principal in tx.all(
            "SELECT bill_id, late_fee, principal FROM allocations WHERE payment_id = :p",
            {"p": payment_id},
        ):
            net[int(bill_id)][0] += int(fee)
            net[int(bill_id)][1] += int(principal)
        return {k: (v[0], v[1]) for k, v in net.items()}

    def _apply_credit(self, tx: Tx, acct: _Account, writes: _Writes, now: datetime) -> int:
        """Spend the account's unallocated payments on its open bills, oldest payment first."""
        if not any(b.is_open for b in acct.bills):
            return 0
        credits = [
            (int(pid), int(left))
            for pid, left in tx.all(
                "SELECT id, unallocated FROM payments WHERE account_id = :a AND unallocated > 0 "
                "AND status = 'posted' ORDER BY paid_at, id",
                {"a": acct.id},
            )
        ]
        applied = 0
        for payment_id, left in credits:
            parts = self.allocation.allocate(left, [b for b in acct.bills if b.is_open])
            if not parts:
                break
            acct.bills = billing.apply_parts(acct.bills, parts)
            used = sum(p.late_fee + p.principal for p in parts)
            applied += used
            writes.payment_credit[payment_id] = left - used
            for alloc_id, part in zip(tx.ids.take(len(parts)), parts, strict=True):
                writes.allocations.append(
                    (
                        alloc_id,
                        payment_id,
                        part.bill_id,
                        "credit",
                        part.late_fee,
                        part.principal,
                        tx.ts(now),
                    )
                )
        return applied

    # -- supply -------------------------------------------------------------------------

    def disconnect(
        self,
        account_no: str,
        reason: str,
        *,
        actor: str = "operator",
        negotiated: bool = False,
    ) -> SupplyState:
        """Record an account as disconnected (the cut itself is the head-end's business).

        A protected account (a hospital, say) is disconnected only by a negotiated, explicitly
        approved order: ``negotiated=True``.
        """
        if not reason or not reason.strip():
            raise InvalidInputError("a reason is required", field="reason")
        now = self.clock.now()

        def work(tx: Tx) -> SupplyState:
            acct = self._lock_accounts(tx, [account_no]).get(account_no)
            if acct is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            if acct.protected and not negotiated:
                raise InvalidStateError(
                    f"account {account_no} is protected: disconnection needs a negotiated, "
                    "approved order",
                    field="account_no",
                )
            if acct.supply_state not in (
                SupplyState.CONNECTED,
                SupplyState.DISCONNECTION_PENDING,
            ):
                raise InvalidStateError(
                    f"account {account_no} is {acct.supply_state.value}", field="account_no"
                )
            self._load_bills(tx, [acct])
            self._refuse_if_owes_nothing(acct, now)
            writes = _Writes()
            self._transition(tx, acct, SupplyState.DISCONNECTED, reason, actor, None, writes, now)
            self._event(tx, writes, "supply.disconnected", account_no, now, {"reason": reason})
            self._flush_rows(tx, writes)
            self._write_states(tx, [acct])
            return acct.supply_state

        return self.store.run(work)

    def complete_reconnection(
        self, order_id: int, *, actor: str = "headend", at: datetime | None = None
    ) -> SupplyState:
        """Record that supply is back for a reconnection order; the account is connected."""
        kind = self.store.run(
            lambda tx: tx.scalar("SELECT kind FROM supply_orders WHERE id = :id", {"id": order_id}),
            write=False,
        )
        if kind is None:
            raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
        if kind != "reconnect":
            raise InvalidStateError(
                f"order {order_id} is a {kind} order, not a reconnection", field="order_id"
            )
        self.record_order_progress(order_id, HeadEndOutcome.COMPLETED, at=at, actor=actor)
        return self.store.run(
            lambda tx: SupplyState(
                tx.scalar(
                    "SELECT a.supply_state FROM accounts a JOIN supply_orders o "
                    "ON o.account_id = a.id WHERE o.id = :id",
                    {"id": order_id},
                )
            ),
            write=False,
        )

    def set_meter(self, account_no: str, *, headend: str | None, meter_address: str | None) -> None:
        """Name the head-end and meter address that supply orders for the account go to.

        A meter address is the meter's 12-digit BCD communication address (DL/T 645 通信地址,
        most significant digit first, as on the nameplate); a wildcard or the broadcast address
        would reach more than this customer's meter and is refused.
        """
        if meter_address is not None:
            if not isinstance(meter_address, str) or not _METER_ADDRESS.fullmatch(meter_address):
                raise InvalidInputError(
                    "a meter address is 12 decimal digits (BCD), most significant first",
                    field="meter_address",
                )
            if meter_address == _BROADCAST_ADDRESS:
                raise InvalidInputError(
                    "999999999999 is the broadcast address, not one meter", field="meter_address"
                )
        if headend is not None and (not isinstance(headend, str) or not headend.strip()):
            raise InvalidInputError("a head-end name cannot be blank", field="headend")

        def work(tx: Tx) -> None:
            if not self._lock_accounts(tx, [account_no]):
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            tx.execute(
                "UPDATE accounts SET headend = :h, meter_address = :m WHERE account_no = :n",
                {"h": headend, "m": meter_address, "n": account_no},
            )

        self.store.run(work)

    def record_order_progress(
        self,
        order_id: int,
        outcome: HeadEndOutcome,
        *,
        at: datetime | None = None,
        actor: str = "headend",
        reference: str | None = None,
        claim_token: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> OrderStatus:
        """Record how far an order got (a head-end's answer or callback, an operator's word).

        Idempotent: an order never moves backwards, and a completed or cancelled order stays as
        it is, so duplicate callbacks change nothing. Completion changes the account's supply
        state in the same transaction; a step reached after its deadline is recorded as a breach.
        """
        now = self.clock.now()
        when = require_aware(at, "at") if at is not None else now
        if next_attempt_at is not None:
            require_aware(next_attempt_at, "next_attempt_at")

        def work(tx: Tx) -> OrderStatus:
            found = supply.load_order(tx, order_id)
            if found is None:
                raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
            acct = self._lock_accounts(tx, [found.account_no])[found.account_no]
            order = supply.load_order(tx, order_id, lock=True)
            assert order is not None
            if claim_token is not None and not supply.holds_claim(tx, order_id, claim_token):
                return order.status  # another dispatcher took over after our lease ran out
            if order.status in (OrderStatus.COMPLETED, OrderStatus.CANCELLED):
                return order.status
            previous = order.status
            target = supply.outcome_status(outcome)
            rank = list(OrderStatus).index
            status = target if rank(target) > rank(order.status) else order.status
            if order.status is OrderStatus.FAILED:
                status = target
            order.dispatched_at = order.dispatched_at or when
            if target in (OrderStatus.ACKNOWLEDGED, OrderStatus.COMPLETED):
                order.acknowledged_at = order.acknowledged_at or when
            if target is OrderStatus.COMPLETED:
                order.completed_at = when
            order.status = status
            tx.execute(
                "UPDATE supply_orders SET status = :s, dispatched_at = :d, acknowledged_at = :a, "
                "completed_at = :c, closed_at = :closed, next_attempt_at = :next, "
                "claimed_until = NULL, claim_token = NULL, last_error = NULL WHERE id = :id",
                {
                    "s": status.value,
                    "d": tx.ts(order.dispatched_at),
                    "a": None if order.acknowledged_at is None else tx.ts(order.acknowledged_at),
                    "c": None if order.completed_at is None else tx.ts(order.completed_at),
                    "closed": None if order.completed_at is None else tx.ts(order.completed_at),
                    "next": None
                    if status is OrderStatus.COMPLETED or next_attempt_at is None
                    else tx.ts(next_attempt_at),
                    "id": order_id,
                },
            )
            writes = _Writes()
            if status is previous:
                self._flush_rows(tx, writes)
                return status  # a poll that found nothing new: only the next poll time moved
            elapsed = (when - order.created_at).total_seconds()
            self._event(
                tx,
                writes,
                f"{order.kind}ion.{status.value}"
                if order.kind == "reconnect"
                else f"disconnection.{status.value}",
                acct.account_no,
                now,
                {
                    "order_id": order_id,
                    "actor": actor,
                    "reference": reference,
                    "at": when.isoformat(),
                    "elapsed_seconds": elapsed,
                    "on_time": when <= order.deadlines.confirm,
                },
            )
            if status is OrderStatus.COMPLETED:
                self._order_completed(tx, acct, order, actor, writes, when)
            self._breaches(tx, order, when, writes, now)
            self._flush_rows(tx, writes)
            self._write_states(tx, [acct])
            return status

        return self.store.run(work)

    def _order_completed(
        self,
        tx: Tx,
        acct: _Account,
        order: supply.OrderRow,
        actor: str,
        writes: _Writes,
        when: datetime,
    ) -> None:
        if order.kind == "reconnect":
            if acct.supply_state is SupplyState.RECONNECTION_PENDING:
                self._transition(
                    tx,
                    acct,
                    SupplyState.CONNECTED,
                    "supply restored",
                    actor,
                    order.id,
                    writes,
                    when,
                )
            return
        if acct.supply_state is SupplyState.RECONNECTION_PENDING:
            # Paid after the cut was recorded by hand: the reconnection order under way brings
            # supply back, and a second one would break "exactly one".
            return
        self._transition(
            tx, acct, SupplyState.DISCONNECTED, "supply cut", actor, order.id, writes, when
        )
        # The customer may have paid while the cut was on its way: supply goes straight back.
        self._load_bills(tx, [acct])
        owed, _ = billing.arrears(
            acct.bills, acct.category, self._local_date(when), self.settings.late_fee
        )
        if self._owes_nothing(acct, owed):
            self._reconnection_order(tx, acct, "arrears cleared before the cut", None, writes, when)

    def _breaches(
        self, tx: Tx, order: supply.OrderRow, at: datetime, writes: _Writes, now: datetime
    ) -> list[tuple[int, Step, Severity]]:
        missed = list(supply.missed_steps(order, at))
        if not missed:
            return []
        known = {
            str(r[0])
            for r in tx.all("SELECT step FROM breaches WHERE order_id = :o", {"o": order.id})
        }
        new = [(step, sev) for step, sev in missed if step.value not in known]
        for step, sev in new:
            tx.execute(
                "INSERT INTO breaches (id, order_id, step, severity, deadline, detected_at) "
                "VALUES (:id, :o, :step, :sev, :deadline, :at) ON CONFLICT (order_id, step) "
                "DO NOTHING",
                {
                    "id": tx.ids.one(),
                    "o": order.id,
                    "step": step.value,
                    "sev": sev.value,
                    "deadline": tx.ts(order.deadlines.of(step)),
                    "at": tx.ts(now),
                },
            )
            self._event(
                tx,
                writes,
                "service.breach",
                order.account_no,
                now,
                {
                    "order_id": order.id,
                    "kind": order.kind,
                    "step": step.value,
                    "severity": sev.value,
                    "deadline": order.deadlines.of(step).isoformat(),
                },
            )
        return [(order.id, step, sev) for step, sev in new]

    def check_deadlines(self, now: datetime | None = None) -> list[tuple[int, Step, Severity]]:
        """Record a breach for every step of an open order whose deadline has passed."""
        at = self.clock.now() if now is None else require_aware(now, "now")

        def work(tx: Tx) -> list[tuple[int, Step, Severity]]:
            rows = tx.all(
                f"SELECT {supply.ORDER_COLUMNS} FROM supply_orders o "  # noqa: S608
                "JOIN accounts a ON a.id = o.account_id WHERE o.status IN "
                "('open', 'dispatched', 'acknowledged', 'failed') AND o.dispatch_due_at < :now "
                "ORDER BY o.id",
                {"now": tx.ts(at)},
            )
            writes = _Writes()
            found: list[tuple[int, Step, Severity]] = []
            for row in rows:
                found += self._breaches(tx, supply.order_row(tx, row), at, writes, at)
            self._flush_rows(tx, writes)
            return found

        return self.store.run(work)

    def record_order_failure(
        self,
        order_id: int,
        error: str,
        *,
        claim_token: str | None,
        retry_at: datetime | None,
        alert_after: int = 10,
    ) -> None:
        """Record a failed delivery: retried at ``retry_at``, or, with None, refused for good.

        An order refused for good becomes ``failed`` and raises an alert event; it still counts
        against the promise until a person retries or cancels it.
        """
        if retry_at is not None:
            require_aware(retry_at, "retry_at")
        now = self.clock.now()

        def work(tx: Tx) -> None:
            order = supply.load_order(tx, order_id, lock=True)
            if order is None:
                raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
            if claim_token is not None and not supply.holds_claim(tx, order_id, claim_token):
                return
            if order.status not in supply.ACTIVE:
                return
            attempts = order.attempts + 1
            status = order.status if retry_at is not None else OrderStatus.FAILED
            tx.execute(
                "UPDATE supply_orders SET attempts = :n, last_error = :e, status = :s, "
                "next_attempt_at = :next, claimed_until = NULL, claim_token = NULL WHERE id = :id",
                {
                    "n": attempts,
                    "e": error[:2000],
                    "s": status.value,
                    "next": None if retry_at is None else tx.ts(retry_at),
                    "id": order_id,
                },
            )
            writes = _Writes()
            if retry_at is None or attempts == alert_after:
                self._event(
                    tx,
                    writes,
                    "order.alert",
                    order.account_no,
                    now,
                    {
                        "order_id": order_id,
                        "kind": order.kind,
                        "attempts": attempts,
                        "error": error[:500],
                        "final": retry_at is None,
                    },
                )
            self._flush_rows(tx, writes)

        self.store.run(work)

    def retry_order(self, order_id: int) -> None:
        """Put a failed order back in the queue, to be attempted at once.

        A failed disconnection order of an account that has since paid is not sent again.
        """

        def work(tx: Tx) -> None:
            found = supply.load_order(tx, order_id)
            if found is None:
                raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
            # The account first, then the order: the lock order every order update uses.
            acct = self._lock_accounts(tx, [found.account_no])[found.account_no]
            order = supply.load_order(tx, order_id, lock=True)
            assert order is not None
            if order.status is not OrderStatus.FAILED:
                raise InvalidStateError(f"order {order_id} is {order.status.value}")
            if order.kind == "disconnect":
                self._load_bills(tx, [acct])
                self._refuse_if_owes_nothing(acct, self.clock.now())
            back = OrderStatus.DISPATCHED if order.dispatched_at else OrderStatus.OPEN
            tx.execute(
                "UPDATE supply_orders SET status = :s, next_attempt_at = :now WHERE id = :id",
                {"s": back.value, "now": tx.ts(self.clock.now()), "id": order_id},
            )

        self.store.run(work)

    def dispatch_once(
        self,
        *,
        headends: Mapping[str, HeadEnd] | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> DispatchReport:
        """One dispatcher pass: deadlines checked, due orders to head-ends, events to sinks.

        For programs that drive delivery themselves; ``paygate dispatch`` runs it in a loop.
        """
        from paygate.outbox import Dispatcher

        return Dispatcher(self, headends=headends or {}, sinks=sinks).dispatch_once()

    def reconcile(
        self,
        channel: str,
        business_date: date,
        statement: Iterable[StatementLine],
        *,
        file_sha256: str,
        **options: Any,
    ) -> ReconciliationRun:
        """Reconcile a channel's statement lines for a business date with this ledger.

        See :func:`paygate.reconcile.reconcile` (policy, settlement rules, progress) and
        :func:`paygate.reconcile.reconcile_file` for a file read and hashed as it streams.
        """
        from paygate.reconcile import reconcile

        return reconcile(
            self, channel, business_date, statement, file_sha256=file_sha256, **options
        )

    # -- dunning ------------------------------------------------------------------------

    def serve_notice(
        self, account_no: str, kind: str = "notice", *, served_by: str = "billing"
    ) -> None:
        """Record a written notice (``notice``) or the final reminder (``final_reminder``).

        The notice puts a connected account on the disconnection path
        (``disconnection_pending``); paying the arrears takes it off again.
        """
        if kind not in ("notice", "final_reminder"):
            raise InvalidInputError("notice or final_reminder", field="kind")
        now = self.clock.now()

        def work(tx: Tx) -> None:
            acct = self._lock_accounts(tx, [account_no]).get(account_no)
            if acct is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            self._load_bills(tx, [acct])
            owed, _ = billing.arrears(
                acct.bills, acct.category, self._local_date(now), self.settings.late_fee
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
            writes = _Writes()
            if kind == "notice" and acct.supply_state is SupplyState.CONNECTED:
                self._transition(
                    tx,
                    acct,
                    SupplyState.DISCONNECTION_PENDING,
                    "notice served",
                    served_by,
                    None,
                    writes,
                    now,
                )
            self._event(tx, writes, f"dunning.{kind}", account_no, now, {"arrears": owed})
            self._flush_rows(tx, writes)
            self._write_states(tx, [acct])

        self.store.run(work)

    def disconnection_candidates(
        self, as_of: datetime | None = None
    ) -> list[DisconnectionCandidate]:
        """Accounts the dunning policy allows to be disconnected now.

        Overdue beyond the policy's days, the written notice served at least ``notice_days``
        earlier and (if the policy asks) the final reminder at least ``final_reminder_days``
        earlier; never a protected account (those are cut only by a negotiated order).
        """
        now = self.clock.now() if as_of is None else require_aware(as_of, "as_of")

        def work(tx: Tx) -> list[DisconnectionCandidate]:
            rows = tx.all(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.supply_state = "  # noqa: S608
                "'disconnection_pending' AND a.protected = :f ORDER BY a.account_no",
                {"f": False},
            )
            accts = [self._account(r) for r in rows]
            self._load_bills(tx, accts)
            found = (self._candidacy(tx, acct, now) for acct in accts)
            return [c for c in found if c is not None]

        return self.store.run(work, write=False)

    def _candidacy(self, tx: Tx, acct: _Account, now: datetime) -> DisconnectionCandidate | None:
        """The account as a disconnection candidate at ``now``, or None; bills loaded."""
        policy = self.settings.dunning
        today = self._local_date(now)
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
        owed, _ = billing.arrears(acct.bills, acct.category, today, self.settings.late_fee)
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
        """Create a disconnection order a billing system or an operator has confirmed.

        Outside a negotiated order, only a candidate of the dunning policy can be ordered; a
        protected account never is.
        """
        if not approved_by:
            raise InvalidInputError("who approved the disconnection", field="approved_by")
        now = self.clock.now()

        def work(tx: Tx) -> int:
            # Every check is made under the account's lock, in the transaction that writes the
            # order: a payment landing in between cannot leave a paid account with a cut order.
            acct = self._lock_accounts(tx, [account_no]).get(account_no)
            if acct is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            self._load_bills(tx, [acct])
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
            self._refuse_if_owes_nothing(acct, now)
            if tx.scalar(
                "SELECT COUNT(*) FROM supply_orders WHERE account_id = :a AND status IN "
                "('open', 'dispatched', 'acknowledged')",
                {"a": acct.id},
            ):
                raise InvalidStateError(f"account {account_no} has an order under way")
            writes = _Writes()
            order_id = self._new_order(
                tx, acct, "disconnect", SupplyAction.TRIP, reason, None, approved_by, writes, now
            )
            self._event(
                tx,
                writes,
                "disconnection.ordered",
                account_no,
                now,
                {"order_id": order_id, "approved_by": approved_by, "negotiated": negotiated},
            )
            self._flush_rows(tx, writes)
            return order_id

        return self.store.run(work)

    def _transition(
        self,
        tx: Tx,
        acct: _Account,
        to: SupplyState,
        reason: str,
        actor: str,
        order_id: int | None,
        writes: _Writes,
        now: datetime,
    ) -> None:
        writes.transitions.append(
            (
                tx.ids.one(),
                acct.id,
                acct.supply_state.value,
                to.value,
                reason,
                actor,
                order_id,
                tx.ts(now),
            )
        )
        acct.supply_state = to
        acct.state_changed = True

    def _event(
        self,
        tx: Tx,
        writes: _Writes,
        event_type: str,
        account_no: str,
        now: datetime,
        data: dict[str, Any],
    ) -> None:
        event_id = tx.ids.one()
        payload = {
            "event_id": event_id,
            "type": event_type,
            "account_no": account_no,
            "occurred_at": now.isoformat(),
            "data": data,
        }
        writes.events.append(
            (
                event_id,
                event_type,
                account_no,
                json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                tx.ts(now),
                tx.ts(now),
                0,
            )
        )

    # -- status -------------------------------------------------------------------------

    def account_status(self, account_no: str, as_of: date | None = None) -> AccountStatus:
        """What the account owes on ``as_of`` (default: today in the utility's zone); an aware
        datetime means its date in the utility's zone."""
        if isinstance(as_of, datetime):
            as_of = self._local_date(require_aware(as_of, "as_of"))
        day = as_of if as_of is not None else self._local_date(self.clock.now())

        def work(tx: Tx) -> AccountStatus:
            row = tx.one(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.account_no = :no",  # noqa: S608
                {"no": account_no},
            )
            if row is None:
                raise UnknownAccountError(f"no account {account_no}", field="account_no")
            acct = self._account(row)
            self._load_bills(tx, [acct])
            credit = int(
                tx.scalar(
                    "SELECT COALESCE(SUM(unallocated), 0) FROM payments WHERE account_id = :a "
                    "AND status = 'posted'",
                    {"a": acct.id},
                )
            )
            return self._status(acct, day, credit)

        return self.store.run(work, write=False)

    def _status(self, acct: _Account, day: date, credit: int) -> AccountStatus:
        policy = self.settings.late_fee
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

    def ledger_balances(self) -> dict[str, Money]:
        """Every ledger account's cached balance, by account code."""

        def work(tx: Tx) -> dict[str, Money]:
            return {
                str(code): Money(int(total), str(cur))
                for code, cur, total in tx.all(
                    "SELECT l.code, l.currency, COALESCE(SUM(b.balance), 0) FROM ledger_accounts l "
                    "LEFT JOIN ledger_balances b ON b.account_id = l.id "
                    "GROUP BY l.code, l.currency ORDER BY l.code"
                )
            }

        return self.store.run(work, write=False)

    # -- audit --------------------------------------------------------------------------

    def seal(self) -> int:
        """Seal every committed entry not yet sealed; return how many were sealed."""
        total = 0
        while True:
            count = self.store.run(lambda tx: ledger.seal(tx, self.clock.now()))
            total += count
            if count == 0:
                break
        self._posted_since_seal = 0
        return total

    def verify(self) -> ledger.VerifyReport:
        """Recompute balances, entry sums and seals; the report lists what disagrees."""
        return self.store.run(ledger.verify, write=False)

    def note_posted(self, posted: int) -> None:
        """Count ``posted`` committed journal entries toward the next seal, sealing when due.

        Components that post through :meth:`post_within` or :func:`paygate.ledger.post` call
        this after their transaction commits, so their entries are sealed on schedule too.
        """
        self._posted_since_seal += posted
        every = self.settings.seal_every
        if every and self._posted_since_seal >= every:
            self._posted_since_seal = 0
            # Another process sealing right now is fine: its block takes these entries.
            self.store.run(lambda tx: ledger.seal(tx, self.clock.now(), wait=False))

    # -- loading and writing ------------------------------------------------------------

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    @staticmethod
    def _account(row: Sequence[Any]) -> _Account:
        return _Account(
            id=int(row[0]),
            account_no=str(row[1]),
            name=row[2],
            category=Category(row[3]),
            prepaid=bool(row[4]),
            protected=bool(row[5]),
            currency=str(row[6]),
            supply_state=SupplyState(row[7]),
            receivable_id=int(row[8]),
        )

    def _lock_accounts(self, tx: Tx, account_nos: Sequence[str]) -> dict[str, _Account]:
        """Lock the named accounts in id order (no deadlock between batches)."""
        if not account_nos:
            return {}
        marks, params = _marks("n", account_nos)
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        rows = tx.all(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a "  # noqa: S608 - marks are ours
            f"WHERE a.account_no IN ({marks}) ORDER BY a.id{lock}",
            params,
        )
        return {str(r[1]): self._account(r) for r in rows}

    def _existing_payments(
        self, tx: Tx, intents: Sequence[PaymentIntent]
    ) -> dict[tuple[str, str], tuple[str, Receipt]]:
        # One query per channel on (channel, channel_txn_id), the unique index: row-value IN
        # lists are planned as a table scan by SQLite and cost PostgreSQL more to plan than run.
        by_channel: dict[str, set[str]] = defaultdict(set)
        for intent in intents:
            by_channel[intent.channel].add(intent.channel_txn_id)
        found: dict[tuple[str, str], tuple[str, Receipt]] = {}
        for channel, txn_ids in sorted(by_channel.items()):
            ordered = sorted(txn_ids)
            for start in range(0, len(ordered), 500):
                part = ordered[start : start + 500]
                if tx.dialect == "postgresql":
                    rows = tx.all(
                        "SELECT channel_txn_id, fingerprint, receipt FROM payments "
                        "WHERE channel = :c AND channel_txn_id = ANY(:ids)",
                        {"c": channel, "ids": part},
                    )
                else:
                    marks, params = _marks("t", part)
                    params["c"] = channel
                    rows = tx.all(
                        "SELECT channel_txn_id, fingerprint, receipt FROM payments "  # noqa: S608
                        f"WHERE channel = :c AND channel_txn_id IN ({marks})",
                        params,
                    )
                for txn, fingerprint, receipt in rows:
                    found[(channel, str(txn))] = (
                        str(fingerprint),
                        Receipt.model_validate_json(receipt),
                    )
        return found

    def _load_bills(
        self,
        tx: Tx,
        accts: Sequence[_Account],
        *,
        include_bills_of_payment: int | None = None,
    ) -> None:
        """Load balances and open bills (plus a payment's bills, for a reversal)."""
        if not accts:
            return
        by_id = {a.id: a for a in accts}
        by_recv = {a.receivable_id: a for a in accts}
        marks, params = _marks("r", list(by_recv))
        for recv, balance in tx.all(
            "SELECT account_id, SUM(balance) FROM ledger_balances "  # noqa: S608
            f"WHERE account_id IN ({marks}) GROUP BY account_id",
            params,
        ):
            by_recv[int(recv)].balance = int(balance)
        marks, params = _marks("a", list(by_id))
        extra = ""
        if include_bills_of_payment is not None:
            extra = " OR b.id IN (SELECT bill_id FROM allocations WHERE payment_id = :pid)"
            params["pid"] = include_bills_of_payment
        rows = tx.all(
            f"SELECT {_BILL_COLUMNS}, b.period FROM bills b "  # noqa: S608
            f"WHERE b.account_id IN ({marks}) AND ({_OPEN}{extra}) ORDER BY b.due_date, b.bill_no",
            params,
        )
        for acct in accts:
            acct.bills = []
            acct.original_bills = {}
            acct.periods = {}
        for r in rows:
            bill = OpenBill(
                bill_id=int(r[0]),
                bill_no=str(r[2]),
                due_date=tx.read_day(r[3]),
                amount=int(r[4]),
                principal_paid=int(r[5]),
                late_fee_charged=int(r[6]),
                late_fee_paid=int(r[7]),
                late_fee_through=None if r[8] is None else tx.read_day(r[8]),
            )
            acct = by_id[int(r[1])]
            acct.periods[bill.bill_id] = str(r[9])
            acct.bills.append(bill)
            acct.original_bills[bill.bill_id] = bill

    def _flush_rows(self, tx: Tx, writes: _Writes) -> None:
        tx.insert(
            "payments",
            (
                "id",
                "channel",
                "channel_txn_id",
                "account_id",
                "amount",
                "currency",
                "paid_at",
                "business_date",
                "fingerprint",
                "terminal_id",
                "entry_id",
                "late_fee",
                "unallocated",
                "status",
                "receipt",
                "posted_at",
            ),
            writes.payments,
        )
        tx.insert(
            "allocations",
            ("id", "payment_id", "bill_id", "source", "late_fee", "principal", "created_at"),
            writes.allocations,
        )
        tx.many(
            "UPDATE payments SET unallocated = :u WHERE id = :id",
            [{"u": u, "id": pid} for pid, u in sorted(writes.payment_credit.items())],
        )
        tx.insert(
            "supply_orders",
            (
                "id",
                "account_id",
                "kind",
                "status",
                "reason",
                "payment_id",
                "created_at",
                "due_at",
                "action",
                "approved_by",
                "dispatch_due_at",
                "ack_due_at",
                "legal_due_at",
                "attempts",
                "next_attempt_at",
            ),
            writes.orders,
        )
        if writes.cancel_disconnects:
            tx.many(
                "UPDATE supply_orders SET status = 'cancelled', closed_at = :now "
                "WHERE account_id = :a AND kind = 'disconnect' AND status IN ('open', 'failed')",
                [{"a": a, "now": at} for a, at in writes.cancel_disconnects],
            )
        tx.insert(
            "supply_transitions",
            ("id", "account_id", "from_state", "to_state", "reason", "actor", "order_id", "at"),
            writes.transitions,
        )
        tx.insert(
            "outbox",
            (
                "id",
                "event_type",
                "account_no",
                "payload",
                "created_at",
                "available_at",
                "attempts",
            ),
            writes.events,
        )

    def _write_bills(self, tx: Tx, accts: Iterable[_Account]) -> None:
        rows: list[dict[str, Any]] = []
        for acct in accts:
            for bill in acct.bills:
                before = acct.original_bills.get(bill.bill_id)
                if before == bill:
                    continue
                rows.append(
                    {
                        "id": bill.bill_id,
                        "pp": bill.principal_paid,
                        "fc": bill.late_fee_charged,
                        "fp": bill.late_fee_paid,
                        "ft": None
                        if bill.late_fee_through is None
                        else tx.day(bill.late_fee_through),
                    }
                )
                acct.original_bills[bill.bill_id] = bill
        rows.sort(key=lambda r: r["id"])
        tx.many(
            "UPDATE bills SET principal_paid = :pp, late_fee_charged = :fc, late_fee_paid = :fp, "
            "late_fee_through = :ft WHERE id = :id",
            rows,
        )

    def _write_states(self, tx: Tx, accts: Iterable[_Account]) -> None:
        rows = [{"s": a.supply_state.value, "id": a.id} for a in accts if a.state_changed]
        tx.many("UPDATE accounts SET supply_state = :s WHERE id = :id", rows)
        for acct in accts:
            acct.state_changed = False
