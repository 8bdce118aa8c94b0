"""Money that arrives for a closed account: held in suspense, with a finding, never allocated.

A closed account (销户) takes no payment, but a channel may still send one (a standing order,
a customer paying from an old bill). The channel has the money, so the payment is recorded —
the same (channel, channel_txn_id) stays exactly-once and its statement line still matches —
but the journal entry credits ``suspense:<CUR>`` instead of the customer, the payment's
status is ``suspense`` (it is never credit, never allocated), and a ``payment_findings`` row
with the reason ``account_closed`` tells finance to return or re-assign the money.

The payment path (:mod:`paygate.payments`) calls :func:`closed_account_payment` inside its
decision, for a locked account whose supply state is ``closed``. This module imports nothing
from the payment path.
"""

from __future__ import annotations

from datetime import datetime

from paygate.clock import business_date
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.records import Account, Core, PaymentRow, Writes, event
from paygate.store.engine import Tx

__all__ = ["ACCOUNT_CLOSED", "closed_account_payment"]

ACCOUNT_CLOSED = "account_closed"
"""The finding's reason for a payment to a closed account."""


def closed_account_payment(
    tx: Tx,
    core: Core,
    clearing: int,
    acct: Account,
    intent: PaymentIntent,
    payment_id: int,
    entry_id: int,
    fingerprint: str,
    writes: Writes,
    now: datetime,
) -> Receipt:
    """Plan the payment ``intent`` to the closed account ``acct`` into ``writes``: debited to
    ``clearing`` (the channel's account), credited to suspense, with its finding written."""
    cur = acct.currency
    settings = core.settings
    settle_day = business_date(intent.paid_at, settings.timezone, settings.cutoff(intent.channel))
    suspense = core.ledger.ensure(tx, f"suspense:{cur}", AccountKind.SUSPENSE, cur)
    amount = intent.amount.minor
    writes.entries.append(
        EntryDraft(
            kind="suspense",
            reference=f"payment:{intent.channel}:{intent.channel_txn_id}",
            memo=f"{intent.channel} payment for closed account {acct.account_no}",
            business_date=settle_day,
            posted_at=now,
            postings=(PostingDraft(clearing, amount, cur), PostingDraft(suspense, -amount, cur)),
            shard_key=acct.id,
            entry_id=entry_id,
        )
    )
    receipt = Receipt(
        payment_id=payment_id,
        channel=intent.channel,
        channel_txn_id=intent.channel_txn_id,
        account_no=acct.account_no,
        amount=intent.amount,
        paid_at=intent.paid_at,
        business_date=settle_day,
        late_fee=Money(0, cur),
        allocations=(),
        credit=Money(0, cur),
        balance_after=Money(acct.balance, cur),
        arrears_after=Money(0, cur),
        arrears_cleared=False,
    )
    writes.payments.append(
        PaymentRow(
            id=payment_id,
            channel=intent.channel,
            channel_txn_id=intent.channel_txn_id,
            account_id=acct.id,
            amount=amount,
            currency=cur,
            paid_at=tx.ts(intent.paid_at),
            business_date=tx.day(settle_day),
            fingerprint=fingerprint,
            terminal_id=intent.terminal_id,
            entry_id=entry_id,
            late_fee=0,
            unallocated=0,
            status="suspense",
            receipt=receipt.model_dump_json(),
            posted_at=tx.ts(now),
        )
    )
    tx.execute(
        "INSERT INTO payment_findings (id, payment_id, account_id, reason, amount, currency, "
        "entry_id, created_at) VALUES (:id, :p, :a, :r, :amt, :cur, :e, :now)",
        {
            "id": tx.ids.one(),
            "p": payment_id,
            "a": acct.id,
            "r": ACCOUNT_CLOSED,
            "amt": amount,
            "cur": cur,
            "e": entry_id,
            "now": tx.ts(now),
        },
    )
    event(
        tx,
        writes,
        "payment.suspense",
        acct.account_no,
        now,
        {
            "payment_id": payment_id,
            "channel": intent.channel,
            "channel_txn_id": intent.channel_txn_id,
            "amount": amount,
            "currency": cur,
            "paid_at": intent.paid_at.isoformat(),
            "reason": ACCOUNT_CLOSED,
        },
    )
    return receipt
