"""What channel adapters keep, kept in the ledger's database and shared by every process.

Invariant: the database has the last word. A nonce is accepted once across every gateway
process because its insert either creates the row or does nothing (a primary key, never a
check-then-insert); a payment order, once stored, never changes; a kiosk's business day is
closed once (a unique constraint on terminal and date). Each method is one transaction.

Adapters know none of this: they see the protocols :class:`~paygate.channels.base.NonceStore`,
:class:`~paygate.channels.orders.OrderStore` and :class:`~paygate.channels.kiosk.KioskLedger`,
which the classes here implement on :class:`~paygate.store.engine.Store`.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import date, datetime
from typing import Any, Final, Protocol, runtime_checkable

from paygate.channels.base import PaymentSink
from paygate.channels.errors import BatchSettledError
from paygate.channels.kiosk import (
    KioskCloseRecord,
    KioskMethod,
    KioskTotals,
    MethodTotal,
    split_channel_txn_id,
)
from paygate.channels.orders import Order
from paygate.clock import require_aware
from paygate.errors import (
    ConfigurationError,
    ConflictError,
    IdempotencyConflictError,
    IntegrityError,
    PaygateError,
)
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.payments import Payments
from paygate.store.engine import Store, Tx, UniqueViolation

__all__ = ["SqlKioskLedger", "SqlNonceStore", "SqlOrderStore"]


@runtime_checkable
class _TransactionalSink(Protocol):
    """The core's posting path inside a caller's transaction (``Gateway`` implements it); what
    it posts is counted toward sealing once the transaction commits."""

    @property
    def payments(self) -> Payments: ...

    def reverse_by_channel_txn_within(
        self, tx: Tx, channel: str, channel_txn_id: str, reason: str
    ) -> object: ...


def _transactional(sink: PaymentSink) -> _TransactionalSink:
    if not isinstance(sink, _TransactionalSink):
        raise ConfigurationError(
            "the SQL POS ledger posts inside its own transaction: its sink must be the Gateway "
            "on the same database",
            field="sink",
        )
    return sink


_NONCE_KEY_MAX: Final = 200
"""The width of ``nonces.nonce_key``; longer keys are stored as their SHA-256."""

_PURGE_SQLITE: Final = (
    "DELETE FROM nonces WHERE nonce_key IN (SELECT nonce_key FROM nonces "
    "WHERE expires_at <= :now ORDER BY expires_at LIMIT :n)"
)
# SKIP LOCKED: two purging processes take different rows instead of waiting on (or
# deadlocking with) each other. SQLite has one writer, so it needs no locking clause.
_PURGE_POSTGRESQL: Final = (
    "DELETE FROM nonces WHERE nonce_key IN (SELECT nonce_key FROM nonces "
    "WHERE expires_at <= :now ORDER BY expires_at LIMIT :n FOR UPDATE SKIP LOCKED)"
)


class SqlNonceStore:
    """A :class:`~paygate.channels.base.NonceStore` on the ``nonces`` table.

    Expired rows are purged opportunistically: a bounded batch after every ``purge_every``
    additions, in its own short transaction, so that a busy gateway never scans the table
    inside a request's own transaction.
    """

    def __init__(self, store: Store, *, purge_every: int = 256, purge_batch: int = 1000) -> None:
        if purge_every < 1 or purge_batch < 1:
            raise ValueError("purge_every and purge_batch must be positive")
        self._store = store
        self._purge_every = purge_every
        self._purge_batch = purge_batch
        self._added = 0
        self._lock = threading.Lock()

    def add(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``key`` until ``expires_at``; False when it is already remembered."""
        added = self._store.run(lambda tx: self.add_within(tx, key, expires_at=expires_at, now=now))
        self.purge_if_due(now)
        return added

    def add_within(self, tx: Tx, key: str, *, expires_at: datetime, now: datetime) -> bool:
        """:meth:`add` inside the caller's transaction ``tx``, as one statement.

        For a caller whose look-ups and nonce belong in one transaction (the HTTP gateway's
        device check). It does not purge, which is a transaction of its own: the caller calls
        :meth:`purge_if_due` once ``tx`` has committed.
        """
        expires_at = require_aware(expires_at, "expires_at")
        now = require_aware(now, "now")
        # Inserted, or an expired row with the same key replaced (an expired key no longer
        # counts); a live row stays as it is, and the count of rows written says "seen".
        cursor = tx.execute(
            "INSERT INTO nonces (nonce_key, expires_at) VALUES (:k, :e) "
            "ON CONFLICT (nonce_key) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE nonces.expires_at <= :now",
            {"k": _nonce_key(key), "e": tx.ts(expires_at), "now": tx.ts(now)},
        )
        with self._lock:
            self._added += 1
        return bool(cursor.rowcount == 1)

    def purge_if_due(self, now: datetime) -> int:
        """Purge one batch when ``purge_every`` nonces were added since the last purge."""
        with self._lock:
            due = self._added >= self._purge_every
            if due:
                self._added = 0
        return self.purge(now) if due else 0

    def purge(self, now: datetime) -> int:
        """Delete up to one batch of expired nonces; how many were deleted."""
        now = require_aware(now, "now")

        def work(tx: Tx) -> int:
            purge = _PURGE_POSTGRESQL if tx.dialect == "postgresql" else _PURGE_SQLITE
            cursor = tx.execute(purge, {"now": tx.ts(now), "n": self._purge_batch})
            return int(cursor.rowcount)

        return self._store.run(work)


def _nonce_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError("a nonce key is a non-empty string")
    if len(key) <= _NONCE_KEY_MAX and key.isascii():
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SqlOrderStore:
    """An :class:`~paygate.channels.orders.OrderStore` on the ``payment_orders`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, order: Order) -> None:
        """Store ``order``; the same id with different content is a ConflictError."""
        if not isinstance(order, Order):
            raise TypeError("put() takes an Order")

        def work(tx: Tx) -> Order | None:
            cursor = tx.execute(
                "INSERT INTO payment_orders (order_id, channel, account_no, amount, currency, "
                "created_at, expires_at) VALUES (:id, :channel, :account, :amount, :currency, "
                ":created, :expires) ON CONFLICT (order_id) DO NOTHING",
                {
                    "id": order.order_id,
                    "channel": order.channel,
                    "account": order.account_no,
                    "amount": order.amount.minor,
                    "currency": order.amount.currency,
                    "created": tx.ts(order.created_at),
                    "expires": tx.ts(order.expires_at),
                },
            )
            if cursor.rowcount == 1:
                return None
            return _read_order(tx, order.order_id)

        existing = self._store.run(work)
        if existing is not None and existing != order:
            raise ConflictError(
                f"order {order.order_id!r} already exists with different content",
                field="order_id",
            )

    def get(self, order_id: str) -> Order | None:
        """The order with ``order_id``, or None."""
        return self._store.run(lambda tx: _read_order(tx, order_id), write=False)


def _read_order(tx: Tx, order_id: str) -> Order | None:
    row = tx.one(
        "SELECT order_id, channel, account_no, amount, currency, created_at, expires_at "
        "FROM payment_orders WHERE order_id = :id",
        {"id": order_id},
    )
    if row is None:
        return None
    return Order(
        order_id=row[0],
        channel=row[1],
        account_no=row[2],
        amount=Money(int(row[3]), row[4]),
        created_at=Tx.read_ts(row[5]),
        expires_at=Tx.read_ts(row[6]),
    )


class _Tally:
    """Counts and amounts of kiosk payments by method."""

    def __init__(self) -> None:
        self.counts = {KioskMethod.CASH: 0, KioskMethod.CARD: 0}
        self.amounts = {KioskMethod.CASH: 0, KioskMethod.CARD: 0}

    def add(self, method: KioskMethod, amount: int) -> None:
        self.counts[method] += 1
        self.amounts[method] += amount

    def totals(self, currency: str) -> KioskTotals:
        def of(method: KioskMethod) -> MethodTotal:
            return MethodTotal(
                count=self.counts[method], amount=Money(self.amounts[method], currency)
            )

        return KioskTotals(cash=of(KioskMethod.CASH), card=of(KioskMethod.CARD))


class SqlKioskLedger:
    """A :class:`~paygate.channels.kiosk.KioskLedger` on ``payments`` and ``kiosk_closes``.

    A terminal's totals are the payments of the kiosk ``channel`` it took on the business date
    the core gave them, split by the method prefix of the transaction id: posted ones and those
    held in suspense (the account was closed, :mod:`paygate.refunds.closed`: the cash is in
    the box all the same), reversed ones excluded; the suspense ones are also counted apart.
    Configure the core's cut-off for the channel (``Settings.channel_cutoffs``) equal to the
    adapter's, or the dates will not agree.
    """

    def __init__(self, store: Store, *, channel: str = "kiosk") -> None:
        self._store = store
        self._channel = channel

    def terminal_totals(
        self, terminal_id: str, business_date: date, currency: str
    ) -> tuple[KioskTotals, KioskTotals]:
        """The payments ``terminal_id`` took on ``business_date``, by method: all of them
        (posted or in suspense), and those in suspense; one reading."""

        def work(tx: Tx) -> list[tuple[Any, ...]]:
            return tx.all(
                "SELECT channel_txn_id, amount, status FROM payments WHERE channel = :channel "
                "AND business_date = :day AND terminal_id = :terminal AND currency = :currency "
                "AND status IN ('posted', 'suspense')",
                {
                    "channel": self._channel,
                    "day": tx.day(business_date),
                    "terminal": terminal_id,
                    "currency": currency,
                },
            )

        taken = _Tally()
        held = _Tally()
        for txn, amount, status in self._store.run(work, write=False):
            parts = split_channel_txn_id(str(txn))
            if parts is None or parts[0] != terminal_id:
                # Only the kiosk adapter writes kiosk payments; anything else was posted past
                # it, and guessing its method would make the close lie.
                raise IntegrityError(
                    f"{self._channel} payment {txn!r} of terminal {terminal_id!r} carries no "
                    "kiosk transaction id",
                )
            method = KioskMethod(parts[1].split("-", 1)[0])
            taken.add(method, int(amount))
            if status == "suspense":
                held.add(method, int(amount))
        return taken.totals(currency), held.totals(currency)

    def record_close(self, record: KioskCloseRecord) -> tuple[KioskCloseRecord, bool]:
        """Store ``record`` unless the day is closed already; the stored close, and if new."""

        def work(tx: Tx) -> tuple[KioskCloseRecord, bool]:
            cursor = tx.execute(
                "INSERT INTO kiosk_closes (id, terminal_id, business_date, counted_cash, "
                "reported_total, reported_count, ledger_total, ledger_count, currency, "
                "created_at) VALUES (:id, :terminal, :day, :counted, :reported_total, "
                ":reported_count, :ledger_total, :ledger_count, :currency, :at) "
                "ON CONFLICT (terminal_id, business_date) DO NOTHING",
                {
                    "id": tx.ids.one(),
                    "terminal": record.terminal_id,
                    "day": tx.day(record.business_date),
                    "counted": record.counted_cash,
                    "reported_total": record.reported_total,
                    "reported_count": record.reported_count,
                    "ledger_total": record.ledger_total,
                    "ledger_count": record.ledger_count,
                    "currency": record.currency,
                    "at": tx.ts(record.closed_at),
                },
            )
            if cursor.rowcount == 1:
                return record, True
            stored = _read_close(tx, record.terminal_id, record.business_date)
            assert stored is not None, "the conflicting close is committed before DO NOTHING"
            return stored, False

        return self._store.run(work)

    def close_of(self, terminal_id: str, business_date: date) -> KioskCloseRecord | None:
        """The recorded close of ``terminal_id`` for ``business_date``, or None."""
        return self._store.run(lambda tx: _read_close(tx, terminal_id, business_date), write=False)

    @staticmethod
    def close_of_within(tx: Tx, terminal_id: str, business_date: date) -> KioskCloseRecord | None:
        """:meth:`close_of` inside the caller's transaction ``tx``."""
        return _read_close(tx, terminal_id, business_date)


def _read_close(tx: Tx, terminal_id: str, business_date: date) -> KioskCloseRecord | None:
    row = tx.one(
        "SELECT counted_cash, reported_total, reported_count, ledger_total, ledger_count, "
        "currency, created_at FROM kiosk_closes WHERE terminal_id = :t AND business_date = :d",
        {"t": terminal_id, "d": tx.day(business_date)},
    )
    if row is None:
        return None
    return KioskCloseRecord(
        terminal_id=terminal_id,
        business_date=business_date,
        counted_cash=int(row[0]),
        reported_total=int(row[1]),
        reported_count=int(row[2]),
        ledger_total=int(row[3]),
        ledger_count=int(row[4]),
        currency=str(row[5]),
        closed_at=Tx.read_ts(row[6]),
    )


class SqlPosLedger:
    """A :class:`~paygate.channels.pos.PosLedger` on ``payments`` and ``pos_batches``.

    A batch's sales are the payments of the POS ``channel`` taken by the terminal whose
    transaction ids carry the ``terminal-batch-`` prefix, posted or held in suspense (the
    account was closed, :mod:`paygate.refunds.closed`: the card was charged all the same, and
    the acquirer settles it with the batch), reversed ones excluded; a settled batch is a
    row of ``pos_batches``, written once (closing it again changes nothing), so a void that
    arrives after settlement is refused by every process alike.
    """

    def __init__(self, store: Store, *, channel: str = "pos", currency: str = "CNY") -> None:
        self._store = store
        self._channel = channel
        self._currency = currency

    def batch_totals(self, terminal_id: str, batch_no: str) -> tuple[int, Money]:
        """Count and sum of the batch's sales, posted or in suspense, not reversed."""
        return self._store.run(lambda tx: self._totals(tx, terminal_id, batch_no), write=False)

    def _totals(self, tx: Tx, terminal_id: str, batch_no: str) -> tuple[int, Money]:
        prefix = f"{terminal_id}-{batch_no}-"
        # substr, not LIKE: terminal ids may hold '_' or '%', which LIKE would read.
        row = tx.one(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM payments "
            "WHERE channel = :channel AND terminal_id = :terminal AND currency = :cur "
            "AND status IN ('posted', 'suspense') AND substr(channel_txn_id, 1, :n) = :prefix",
            {
                "channel": self._channel,
                "terminal": terminal_id,
                "cur": self._currency,
                "n": len(prefix),
                "prefix": prefix,
            },
        )
        count, total = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return count, Money(total, self._currency)

    def batch_closed(self, terminal_id: str, batch_no: str) -> bool:
        """True once the terminal has settled the batch."""
        return self._store.run(lambda tx: self._closed(tx, terminal_id, batch_no), write=False)

    @staticmethod
    def _closed(tx: Tx, terminal_id: str, batch_no: str) -> bool:
        found = tx.scalar(
            "SELECT 1 FROM pos_batches WHERE terminal_id = :t AND batch_no = :b",
            {"t": terminal_id, "b": batch_no},
        )
        return found is not None

    @staticmethod
    def _lock_batch(tx: Tx, terminal_id: str, batch_no: str) -> None:
        """Serialize every decision about one batch until the transaction ends.

        A batch that is still open has no row to lock, so PostgreSQL takes a transaction
        advisory lock on the batch's name; SQLite's single writer (``BEGIN IMMEDIATE``)
        serializes already. Taken before any account lock, and by nothing that holds one.
        """
        if tx.dialect == "postgresql":
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))",
                {"k": f"pos-batch\x1f{terminal_id}\x1f{batch_no}"},
            )

    def _refuse_if_closed(self, tx: Tx, terminal_id: str, batch_no: str, what: str) -> None:
        self._lock_batch(tx, terminal_id, batch_no)
        if self._closed(tx, terminal_id, batch_no):
            raise BatchSettledError(
                f"batch {batch_no} of terminal {terminal_id} is settled: no further {what}",
                field="batch_no",
            )

    def sale_in_open_batch(
        self, terminal_id: str, batch_no: str, intent: PaymentIntent, sink: PaymentSink
    ) -> Receipt:
        """Post the sale in the transaction that finds the batch open, under the batch lock."""
        core = _transactional(sink)

        def work(tx: Tx) -> Receipt | PaygateError:
            self._refuse_if_closed(tx, terminal_id, batch_no, "sale")
            return core.payments.pay_within(tx, [intent])[0]

        for _attempt in range(3):
            try:
                outcome = self._store.run(work)
            except UniqueViolation:
                continue  # a concurrent duplicate committed first: answer from it
            if isinstance(outcome, PaygateError):
                raise outcome
            return outcome
        raise IdempotencyConflictError(
            f"sale {intent.channel_txn_id} keeps colliding with concurrent writers; retry",
            field="channel_txn_id",
        )

    def void_in_open_batch(
        self, terminal_id: str, batch_no: str, channel_txn_id: str, reason: str, sink: PaymentSink
    ) -> None:
        """Reverse the sale in the transaction that finds the batch open, under the batch lock."""
        core = _transactional(sink)

        def work(tx: Tx) -> None:
            self._refuse_if_closed(tx, terminal_id, batch_no, "void")
            core.reverse_by_channel_txn_within(tx, self._channel, channel_txn_id, reason)

        self._store.run(work)

    def settle_batch(
        self, terminal_id: str, batch_no: str, *, closed_at: datetime
    ) -> tuple[int, Money]:
        """Close the batch and count it in one transaction, under the batch lock: a sale or
        void either committed before (and is counted as it stands) or is refused after."""
        at = require_aware(closed_at, "closed_at")

        def work(tx: Tx) -> tuple[int, Money]:
            self._lock_batch(tx, terminal_id, batch_no)
            tx.execute(
                "INSERT INTO pos_batches (terminal_id, batch_no, closed_at) "
                "VALUES (:t, :b, :at) ON CONFLICT (terminal_id, batch_no) DO NOTHING",
                {"t": terminal_id, "b": batch_no, "at": tx.ts(at)},
            )
            return self._totals(tx, terminal_id, batch_no)

        return self._store.run(work)

    def close_batch(self, terminal_id: str, batch_no: str, *, closed_at: datetime) -> None:
        """Record that the terminal settled the batch; closing it again changes nothing."""
        at = require_aware(closed_at, "closed_at")
        self._store.run(
            lambda tx: tx.execute(
                "INSERT INTO pos_batches (terminal_id, batch_no, closed_at) "
                "VALUES (:t, :b, :at) ON CONFLICT (terminal_id, batch_no) DO NOTHING",
                {"t": terminal_id, "b": batch_no, "at": tx.ts(at)},
            )
        )
