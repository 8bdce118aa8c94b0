"""Payments: the one path money takes into the journal.

With :mod:`paygate.ledger`, this is the only module that posts journal entries: payments and
their reversals, a bill's charge, and the entries other components decide on (a voucher's
activation, a reconciliation's resolution, a bank leg) all go through :meth:`Payments.post`,
which alone computes the clearing accounts (:meth:`Payments.debit_account`) and counts each
entry toward the next seal once its transaction commits. Nothing that posts has to remember to
count.

Exactly-once effect (DESIGN.md invariant 3) rests on the unique constraint on (channel,
channel_txn_id), not on a check before the insert: a concurrent duplicate that slips past the
check fails at the insert, its transaction is rolled back, and it is answered from the stored
original. Payments of one account are serialized by a row lock on the account (``FOR UPDATE``
on PostgreSQL, the single writer of ``BEGIN IMMEDIATE`` on SQLite); every read that decides
something happens after that lock is held.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from paygate import billing, ledger
from paygate.billing import AllocationPart
from paygate.clock import require_aware
from paygate.errors import (
    CurrencyMismatchError,
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
    UnknownAccountError,
    UnknownPaymentError,
)
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import Allocation, PaymentIntent, PayOutcome, Receipt, Reversal, SupplyState
from paygate.money import Money
from paygate.records import (
    Account,
    AllocationRow,
    Core,
    PaymentRow,
    Writes,
    decision_sets,
    event,
    flush,
    load_bills,
    lock_accounts,
    mark_reversed,
    read_decision,
    write_bills,
)
from paygate.refunds.closed import closed_account_payment
from paygate.refunds.orders import credit_held
from paygate.renames import current_channel
from paygate.store.engine import Tx, UniqueViolation
from paygate.supply import SupplyOrders

__all__ = ["Payments"]


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


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise InvalidInputError("a reason is required", field="reason")


class Payments:
    """Payments, reversals, credit, clearing accounts, and the posting path with its seal count."""

    def __init__(self, core: Core, supply: SupplyOrders) -> None:
        self._core = core
        self._supply = supply
        self._posted_since_seal = 0
        self._reversal = _Reversal(core, self)

    # -- the posting path ---------------------------------------------------------------

    def post(self, tx: Tx, entries: Sequence[EntryDraft]) -> list[int]:
        """Post journal entries in ``tx``; they count toward the next seal once it commits."""
        ids = ledger.post(tx, entries, self._core.ledger)
        self._count(tx, entries)
        return ids

    def _count(self, tx: Tx, entries: Sequence[EntryDraft]) -> None:
        if entries:
            count = len(entries)
            tx.after_commit(lambda: self.note_posted(count))

    def debit_account(self, tx: Tx, channel: str, currency: str) -> int:
        """The account a channel's payments are debited to (its clearing account by default)."""
        kind = self.debit_kind(channel)
        if kind is AccountKind.CHANNEL_CLEARING:
            return self._core.ledger.ensure(tx, f"clearing:{channel}:{currency}", kind, currency)
        return self._core.ledger.ensure(tx, f"{kind.value}:{currency}", kind, currency)

    def debit_kind(self, channel: str) -> AccountKind:
        """The kind of account a channel's payments are debited to: its clearing account
        unless the settings route it elsewhere (recharge vouchers: the voucher liability)."""
        return self._core.settings.channel_debit_accounts.get(channel, AccountKind.CHANNEL_CLEARING)

    def ledger_account(self, tx: Tx, code: str, kind: AccountKind, currency: str) -> int:
        """The id of the ledger account ``code``, created on first use."""
        return self._core.ledger.ensure(tx, code, kind, currency)

    def note_posted(self, posted: int) -> None:
        """Count ``posted`` committed journal entries toward the next seal, sealing when due."""
        self._posted_since_seal += posted
        every = self._core.settings.seal_every
        if every and self._posted_since_seal >= every:
            self._posted_since_seal = 0
            # Another process sealing right now is fine: its block takes these entries.
            self._core.store.run(lambda tx: ledger.seal(tx, self._core.clock.now(), wait=False))

    @property
    def pending_seal(self) -> int:
        """Entries committed since the last seal."""
        return self._posted_since_seal

    def seal(self) -> int:
        """Seal every committed entry not yet sealed; return how many were sealed."""
        total = 0
        while True:
            count = self._core.store.run(lambda tx: ledger.seal(tx, self._core.clock.now()))
            total += count
            if count == 0:
                break
        self._posted_since_seal = 0
        return total

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

        return self._core.store.run(work, write=False)

    # -- payments -----------------------------------------------------------------------

    def pay(self, intent: PaymentIntent) -> Receipt:
        """Post one payment; the same payment again returns the original receipt, replayed."""
        if not isinstance(intent, PaymentIntent):
            raise TypeError("pay() takes a PaymentIntent")
        self.validate(intent)
        for _attempt in range(3):
            try:
                outcome = self._core.store.run(lambda tx: self.pay_within(tx, [intent])[0])
            except UniqueViolation:
                continue  # a concurrent duplicate committed first: answer from it
            if isinstance(outcome, PaygateError):
                raise outcome
            assert isinstance(outcome, Receipt)
            return outcome
        raise IdempotencyConflictError(
            f"payment {intent.channel}/{intent.channel_txn_id} keeps colliding with concurrent "
            "writers; retry",
            field="channel_txn_id",
        )

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post a batch (a bank's daily file): chunked transactions, one outcome per item."""
        items = list(intents)
        outcomes: list[PayOutcome | None] = [None] * len(items)
        valid: list[tuple[int, PaymentIntent]] = []
        for index, intent in enumerate(items):
            try:
                if not isinstance(intent, PaymentIntent):
                    raise InvalidInputError("not a PaymentIntent", field="intent")
                self.validate(intent)
            except PaygateError as exc:
                outcomes[index] = PayOutcome(
                    index=index, status="refused", error_code=exc.code, error=str(exc)
                )
                continue
            valid.append((index, intent))
        size = self._core.settings.pay_many_chunk
        for start in range(0, len(valid), size):
            chunk = valid[start : start + size]
            for _attempt in range(5):
                try:
                    results = self._core.store.run(
                        lambda tx, chunk=chunk: self.pay_within(tx, [i for _, i in chunk])  # type: ignore[misc]
                    )
                    break
                except UniqueViolation:
                    continue
            else:
                raise IdempotencyConflictError(
                    "a batch keeps colliding with concurrent writers; retry", field="intents"
                )
            for (index, _), result in zip(chunk, results, strict=True):
                if isinstance(result, PaygateError):
                    outcomes[index] = PayOutcome(
                        index=index, status="refused", error_code=result.code, error=str(result)
                    )
                else:
                    outcomes[index] = PayOutcome(
                        index=index,
                        status="replayed" if result.replayed else "posted",
                        receipt=result,
                    )
        return [o for o in outcomes if o is not None]

    def validate(self, intent: PaymentIntent) -> None:
        """Refuse an intent no account could take (a non-positive amount, a naive time)."""
        if intent.amount.minor <= 0:
            raise InvalidAmountError("a payment amount must be positive", field="amount")
        if intent.paid_at.utcoffset() is None:
            require_aware(intent.paid_at, "paid_at")  # raises, naming the field

    def pay_within(self, tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        """:meth:`post_within`, the entries counted toward sealing once ``tx`` commits."""
        return self._decide(tx, intents, count=True)

    def post_within(self, tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        """Decide and write payments inside the caller's transaction ``tx``; the caller counts
        them toward sealing (see :meth:`pay_within` for the path that counts itself)."""
        return self._decide(tx, intents, count=False)

    def _decide(
        self, tx: Tx, intents: Sequence[PaymentIntent], *, count: bool
    ) -> list[Receipt | PaygateError]:
        for intent in intents:
            self.validate(intent)
        now = self._core.clock.now()
        accounts, stored = read_decision(
            tx,
            [i.account_no for i in intents],
            sorted({(i.channel, i.channel_txn_id) for i in intents}),
        )
        existing = {
            (channel, txn): (fingerprint, Receipt.model_validate_json(receipt))
            for channel, txn, fingerprint, receipt in stored
        }
        writes = Writes()
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
            if acct.supply_state is SupplyState.CLOSED:  # held in suspense, with a finding
                clearing = self.debit_account(tx, intent.channel, acct.currency)
                receipt = closed_account_payment(
                    tx, self._core, clearing, acct, intent, next(ids), next(ids), fingerprint,
                    writes, now,
                )  # fmt: skip
            else:
                receipt = self._plan_payment(
                    tx, acct, intent, next(ids), next(ids), fingerprint, writes, now
                )
            seen[key] = (fingerprint, receipt)
            results.append(receipt)
        if writes.entries:
            # Every row of the decision in one statement on PostgreSQL (one round trip), one
            # executemany per table on SQLite.
            _, entry_sets = ledger.post_sets(tx, writes.entries, self._core.ledger)
            tx.write([*entry_sets, *decision_sets(tx, writes, accounts.values())])
            if count:
                self._count(tx, writes.entries)
        return results

    def _plan_payment(
        self,
        tx: Tx,
        acct: Account,
        intent: PaymentIntent,
        payment_id: int,
        entry_id: int,
        fingerprint: str,
        writes: Writes,
        now: datetime,
    ) -> Receipt:
        settings = self._core.settings
        policy = settings.late_fee
        cur = acct.currency
        local = intent.paid_at.astimezone(ZoneInfo(settings.timezone))
        pay_day = local.date()
        cutoff = settings.cutoff(intent.channel)
        settle_day = pay_day
        if cutoff != time(0, 0) and local.time() >= cutoff:
            settle_day += timedelta(days=1)  # after the channel's cut-off: its next day
        accrual = billing.accrue_late_fees(acct.bills, acct.category, pay_day, policy)
        arrears_before = billing.overdue_owed(acct.bills, pay_day) + accrual.total
        acct.bills = billing.charge_late_fees(acct.bills, accrual)
        parts = self._core.allocation.allocate(intent.amount.minor, acct.bills)
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
            revenue = self._core.ledger.ensure(
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
                AllocationRow(
                    alloc_id,
                    payment_id,
                    part.bill_id,
                    "payment",
                    part.late_fee,
                    part.principal,
                    tx.ts(now),
                )
            )

        event(
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
        cleared = arrears_before > 0 and arrears_after == 0
        if cleared:
            event(
                tx,
                writes,
                "arrears.cleared",
                acct.account_no,
                now,
                {"payment_id": payment_id, "supply_state": acct.supply_state.value},
            )
        reason = "arrears cleared" if cleared else "balance settled"
        order_id = self._supply.after_payment(
            tx, acct, payment_id, arrears_after, writes, now, reason
        )
        # Every value is one this module computed from a validated intent and the stored
        # rows: built without validating it again (once per payment, in every batch).
        receipt = Receipt.model_construct(
            payment_id=payment_id,
            channel=intent.channel,
            channel_txn_id=intent.channel_txn_id,
            account_no=acct.account_no,
            amount=intent.amount,
            paid_at=intent.paid_at,
            business_date=settle_day,
            late_fee=Money(accrual.total, cur),
            allocations=tuple(
                Allocation.model_construct(
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
            PaymentRow(
                id=payment_id,
                channel=intent.channel,
                channel_txn_id=intent.channel_txn_id,
                account_id=acct.id,
                amount=intent.amount.minor,
                currency=cur,
                paid_at=tx.ts(intent.paid_at),
                business_date=tx.day(settle_day),
                fingerprint=fingerprint,
                terminal_id=intent.terminal_id,
                entry_id=entry_id,
                late_fee=accrual.total,
                unallocated=credit,
                status="posted",
                receipt=receipt.model_dump_json(),
                posted_at=tx.ts(now),
            )
        )
        return receipt

    # -- reversal -----------------------------------------------------------------------

    def reverse(self, payment_id: int, reason: str) -> Reversal:
        """Post the compensating entry of a payment and re-open what it had paid."""
        _require_reason(reason)
        return self._core.store.run(lambda tx: self._reversal.reverse(tx, payment_id, reason))

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> Reversal:
        """Reverse the payment a channel knows by its own transaction id."""
        _require_reason(reason)
        return self._core.store.run(
            lambda tx: self._reversal.reverse(tx, _payment_id(tx, channel, channel_txn_id), reason)
        )

    def reverse_by_channel_txn_within(
        self, tx: Tx, channel: str, channel_txn_id: str, reason: str
    ) -> Reversal:
        """:meth:`reverse_by_channel_txn` inside the caller's transaction ``tx``; the entry
        counts toward sealing once ``tx`` commits."""
        return self._reversal.reverse(tx, _payment_id(tx, channel, channel_txn_id), reason)

    # -- credit -------------------------------------------------------------------------

    def apply_credit(self, tx: Tx, acct: Account, writes: Writes, now: datetime) -> int:
        """Spend the account's unallocated payments on its open bills, oldest payment first.

        The credit meets the bills today: the late fees its overdue bills have accrued through
        today are charged first (:meth:`charge_accrued`), as a payment arriving today charges
        them, and the allocation policy spends the credit on them as on principal.
        """
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
        if not credits:
            return 0
        self.charge_accrued(tx, acct, now)
        applied = 0
        for payment_id, left in credits:
            parts = self._core.allocation.allocate(left, [b for b in acct.bills if b.is_open])
            if not parts:
                break
            acct.bills = billing.apply_parts(acct.bills, parts)
            used = sum(p.late_fee + p.principal for p in parts)
            applied += used
            writes.payment_credit[payment_id] = left - used
            for alloc_id, part in zip(tx.ids.take(len(parts)), parts, strict=True):
                writes.allocations.append(
                    AllocationRow(
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

    def charge_accrued(self, tx: Tx, acct: Account, now: datetime) -> int:
        """Charge the late fees ``acct``'s overdue bills have accrued through ``now``'s local
        date: one journal entry (kind ``late_fee``: receivable debited, late-fee revenue
        credited) and the bills charged through that day; the amount charged (0: nothing)."""
        cur = acct.currency
        today = self._core.local_date(now)
        accrual = billing.accrue_late_fees(
            acct.bills, acct.category, today, self._core.settings.late_fee
        )
        if not accrual.total:
            return 0
        acct.bills = billing.charge_late_fees(acct.bills, accrual)
        revenue = self._core.ledger.ensure(
            tx, f"revenue:late_fee:{cur}", AccountKind.LATE_FEE_REVENUE, cur
        )
        self.post(
            tx,
            [
                EntryDraft(
                    kind="late_fee",
                    reference=f"late_fee:{acct.account_no}:{today.isoformat()}",
                    memo=f"late fees through {today.isoformat()} on {acct.account_no}, charged "
                    "as its credit meets its overdue bills",
                    business_date=today,
                    posted_at=now,
                    postings=(
                        PostingDraft(acct.receivable_id, accrual.total, cur),
                        PostingDraft(revenue, -accrual.total, cur),
                    ),
                    shard_key=acct.id,
                )
            ],
        )
        acct.balance += accrual.total
        return accrual.total


class _Reversal:
    """The compensating entry of a payment, and the bills it re-opens.

    The late fee the payment's arrival charged stays charged (the days were late); it is
    simply unpaid again. Any other credit the account holds is applied to what re-opens.
    """

    def __init__(self, core: Core, payments: Payments) -> None:
        self._core = core
        self._payments = payments

    def reverse(self, tx: Tx, payment_id: int, reason: str) -> Reversal:
        """Reverse the payment in ``tx``; the entry counts toward sealing once it commits."""
        _require_reason(reason)
        core = self._core
        now = core.clock.now()
        row = tx.one(
            "SELECT p.channel, p.channel_txn_id, p.amount, p.currency, p.status, "
            "a.account_no FROM payments p JOIN accounts a "
            "ON a.id = p.account_id WHERE p.id = :id",
            {"id": payment_id},
        )
        if row is None:
            raise UnknownPaymentError(f"no payment {payment_id}", field="payment_id")
        channel, txn_id, amount, cur, status, account_no = row
        acct = lock_accounts(tx, [account_no])[account_no]
        # Read again under the lock: a concurrent reversal may have won.
        status = tx.scalar("SELECT status FROM payments WHERE id = :id", {"id": payment_id})
        if status != "posted":
            raise InvalidStateError(f"payment {payment_id} is already {status}", field="payment_id")
        if held := credit_held(tx, acct.id, payment_id):  # refunded: reversing would pay twice
            raise InvalidStateError(
                f"payment {payment_id} is being refunded ({', '.join(held)})", field="payment_id"
            )
        load_bills(tx, [acct], include_bills_of_payment=payment_id)
        writes = Writes()
        entry_id = tx.ids.one()
        clearing = self._payments.debit_account(tx, channel, cur)
        writes.entries.append(
            EntryDraft(
                kind="reversal",
                reference=f"reversal:{channel}:{txn_id}",
                memo=f"reversal of payment {payment_id}: {reason}"[:2000],
                business_date=core.local_date(now),
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
        net = _net_allocations(tx, payment_id)
        reopen = [
            AllocationPart(bill_id, -fee, -principal)
            for bill_id, (fee, principal) in sorted(net.items())
            if fee or principal
        ]
        acct.bills = billing.apply_parts(acct.bills, reopen)
        alloc_ids = tx.ids.take(len(reopen)) if reopen else []
        for alloc_id, part in zip(alloc_ids, reopen, strict=True):
            writes.allocations.append(
                AllocationRow(
                    alloc_id,
                    payment_id,
                    part.bill_id,
                    "reversal",
                    part.late_fee,
                    part.principal,
                    tx.ts(now),
                )
            )
        self._payments.post(tx, writes.entries)
        mark_reversed(tx, payment_id, entry_id=entry_id, reason=reason)
        self._payments.apply_credit(tx, acct, writes, now)
        arrears_after, _ = billing.arrears(
            acct.bills, acct.category, core.local_date(now), core.settings.late_fee
        )
        event(
            tx,
            writes,
            "payment.reversed",
            acct.account_no,
            now,
            {"payment_id": payment_id, "reason": reason, "arrears_after": arrears_after},
        )
        flush(tx, writes)
        write_bills(tx, [acct])
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


def _net_allocations(tx: Tx, payment_id: int) -> dict[int, tuple[int, int]]:
    net: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for bill_id, fee, principal in tx.all(
        "SELECT bill_id, late_fee, principal FROM allocations WHERE payment_id = :p",
        {"p": payment_id},
    ):
        net[int(bill_id)][0] += int(fee)
        net[int(bill_id)][1] += int(principal)
    return {k: (v[0], v[1]) for k, v in net.items()}


def _payment_id(tx: Tx, channel: str, channel_txn_id: str) -> int:
    channel = current_channel(channel, where="channel")
    value = tx.scalar(
        "SELECT id FROM payments WHERE channel = :c AND channel_txn_id = :t",
        {"c": channel, "t": channel_txn_id},
    )
    if value is None:
        raise UnknownPaymentError(f"no {channel} payment {channel_txn_id}", field="channel_txn_id")
    return int(value)
