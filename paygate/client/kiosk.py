"""A kiosk that keeps taking cash when the gateway cannot be reached.

Invariants:

* **Written before it is sent.** Every payment is committed to the kiosk's own SQLite file
  (``synchronous=FULL``: fsynced) before the first attempt to post it, so a crash or a power
  cut at any instant after the customer's cash went in leaves the payment on the device.
  A receipt — confirmed, or "pending confirmation" — is returned only after that commit.
* **Delivered exactly once in effect.** A stored payment keeps its transaction id (which is
  its ``Idempotency-Key``) and its ``paid_at`` for ever, across retries and restarts; the
  gateway answers a payment it already posted with the original receipt.
* **In order, and nothing dropped.** Stored payments are forwarded oldest first; a newer one
  is never sent while an older one waits (one forwarding pass at a time). A payment the
  gateway refuses for good (unreadable, unknown account, conflict) moves to the ``refused``
  list with the gateway's code and detail; one it cannot take *now* (no answer, 5xx, 429, the
  device's own authentication failing) stays pending, and forwarding stops there until the
  next attempt.
* **A sale never waits for a link known to be down.** Once a pass could not get a payment
  through, the link is down: a sale is stored and its pending receipt returned at once, and a
  background thread forwards every ``retry_interval`` seconds until a pass gets through. No
  lock that a sale takes is held across the network.
* ``attempts`` is how many times *that* payment was sent to the gateway; a confirmation that
  came after the terminal's close of the payment's business date is marked (``after_close``)
  and listed by :meth:`KioskClient.after_close`, for the close's figures may not include it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from paygate.channels.kiosk import KioskMethod, KioskReceipt, receipt_lines
from paygate.client._client import PaygateClient
from paygate.client._core import new_txn_id
from paygate.client.errors import (
    ConflictError,
    InvalidArgumentError,
    InvalidRequestError,
    NotFoundError,
    PaygateClientError,
)
from paygate.clock import DEFAULT_TIMEZONE, Clock, require_aware
from paygate.errors import PaygateError
from paygate.models import AccountStatus
from paygate.money import Money

__all__ = ["ForwardReport", "KioskClient", "KioskPayment", "PaymentState", "StoredPayment"]

_log = logging.getLogger("paygate.client.kiosk")

_SCHEMA_VERSION: Final = 2
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS payments ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " txn_id TEXT NOT NULL UNIQUE,"
    " account_no TEXT NOT NULL,"
    " amount INTEGER NOT NULL CHECK (amount > 0),"
    " currency TEXT NOT NULL,"
    " method TEXT NOT NULL,"
    " paid_at TEXT NOT NULL,"  # exactly as first sent: the payment's fingerprint includes it
    " state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'refused')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " receipt TEXT,"
    " refusal_status INTEGER,"
    " refusal_code TEXT,"
    " refusal_detail TEXT,"
    " settled_at TEXT,"
    " after_close INTEGER NOT NULL DEFAULT 0 CHECK (after_close IN (0, 1)))",
    "CREATE INDEX IF NOT EXISTS payments_state ON payments (state, seq)",
)
# Version 1 had no after_close column: its confirmations predate the mark.
_UPGRADE_FROM_1: Final = (
    "ALTER TABLE payments ADD COLUMN after_close INTEGER NOT NULL DEFAULT 0 "
    "CHECK (after_close IN (0, 1))"
)
_COLUMNS: Final = (
    "seq, txn_id, account_no, amount, currency, method, paid_at, state, attempts, receipt, "
    "refusal_status, refusal_code, refusal_detail"
)
# Refusals that are about the payment itself and cannot change with time: forwarding the
# same bytes again would be refused again.
_FOR_GOOD: Final = (InvalidRequestError, NotFoundError, ConflictError)


class PaymentState(StrEnum):
    """Where a payment taken at this kiosk stands."""

    PENDING = "pending"
    """Stored on the kiosk; the gateway has not confirmed it yet."""
    CONFIRMED = "confirmed"
    """Posted: the gateway's receipt is stored."""
    REFUSED = "refused"
    """Refused for good by the gateway, with its reason; needs a person."""


class StoredPayment(BaseModel):
    """A payment as the kiosk keeps it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    txn_id: str
    account_no: str
    amount: Money
    method: KioskMethod
    paid_at: datetime
    state: PaymentState
    attempts: int
    """How many times this payment was sent to the gateway."""
    receipt: KioskReceipt | None = None
    refusal_status: int | None = None
    refusal_code: str | None = None
    refusal_detail: str | None = None


@dataclass(frozen=True)
class KioskPayment:
    """What :meth:`KioskClient.pay` hands the firmware to print."""

    payment: StoredPayment
    device_id: str
    timezone: str = DEFAULT_TIMEZONE
    problem: PaygateClientError | None = None
    """Why a pending payment could not be confirmed now (no answer, 503 …)."""

    @property
    def confirmed(self) -> bool:
        """True when the gateway posted the payment."""
        return self.payment.state is PaymentState.CONFIRMED

    @property
    def receipt(self) -> KioskReceipt | None:
        """The gateway's receipt, once confirmed."""
        return self.payment.receipt

    @property
    def after_close(self) -> bool:
        """True when the gateway posted it after this terminal had closed its business day."""
        return self.payment.receipt is not None and self.payment.receipt.after_close

    def lines(self) -> list[str]:
        """The receipt to print: the gateway's, or one marked "pending confirmation"."""
        if self.payment.receipt is not None:
            return receipt_lines(self.payment.receipt, timezone=self.timezone)
        return pending_receipt_lines(self.payment, self.device_id, timezone=self.timezone)


@dataclass
class ForwardReport:
    """What one pass of forwarding did."""

    confirmed: list[StoredPayment] = field(default_factory=list)
    refused: list[StoredPayment] = field(default_factory=list)
    remaining: int = 0
    """Payments still pending after the pass."""
    stopped_by: PaygateClientError | None = None
    """Why the pass stopped before the end (None when it went through)."""
    errors: dict[str, PaygateClientError] = field(default_factory=dict)
    """The gateway's refusal of each refused payment, by transaction id."""
    after_close: list[StoredPayment] = field(default_factory=list)
    """Confirmed payments the gateway posted after the terminal had closed their day."""


_METHOD_LABELS: Final = {KioskMethod.CASH: "现金 Cash", KioskMethod.CARD: "银行卡 Bank card"}


def pending_receipt_lines(
    payment: StoredPayment, device_id: str, *, timezone: str = DEFAULT_TIMEZONE
) -> list[str]:
    """A receipt for a payment stored on the kiosk but not yet confirmed by the utility."""
    local = payment.paid_at.astimezone(ZoneInfo(timezone))
    return [
        "电费缴费凭证 / ELECTRICITY PAYMENT RECEIPT",
        "待确认 / PENDING CONFIRMATION",
        f"终端 Terminal: {device_id}",
        f"终端流水 Transaction: {payment.txn_id}",
        f"支付方式 Method: {_METHOD_LABELS[payment.method]}",
        f"户号 Account: {payment.account_no}",
        f"缴费时间 Paid at: {local:%Y-%m-%d %H:%M:%S}",
        f"缴费金额 Amount paid: {payment.amount.format()} {payment.amount.currency}",
        "本笔缴费已保存在终端，网络恢复后自动上送；请保留本凭证。",
        "Stored on this kiosk; it is sent to the utility as soon as the connection returns. "
        "Keep this receipt.",
    ]


class KioskClient:
    """A kiosk's payments: posted at once when the gateway answers, kept and forwarded when not.

    ``client`` signs and sends (its lifetime is the caller's); ``store`` is the kiosk's own
    SQLite file, created on first use and kept across restarts. A new ``KioskClient`` on the
    same file after a restart carries on with whatever was pending. While the link is known
    down, a background thread tries a forwarding pass every ``retry_interval`` seconds; it
    stops with :meth:`close`.
    """

    def __init__(
        self,
        client: PaygateClient,
        store: str | Path,
        *,
        currency: str = "CNY",
        timezone: str = DEFAULT_TIMEZONE,
        retry_interval: float = 15.0,
    ) -> None:
        try:
            Money.zero(currency)
            ZoneInfo(timezone)
        except (PaygateError, ValueError) as exc:
            raise InvalidArgumentError.of(str(exc), "currency/timezone") from exc
        if not retry_interval > 0:
            raise InvalidArgumentError.of("seconds, more than 0", "retry_interval")
        self._client = client
        self._currency = currency
        self._timezone = timezone
        self._retry_interval = retry_interval
        self._lock = threading.Lock()  # the store: held for its reads and writes only
        self._sending = threading.Lock()  # one forwarding pass at a time: oldest first
        self._down: PaygateClientError | None = None  # why the last pass stopped, if it did
        self._closed = threading.Event()
        self._forwarder: threading.Thread | None = None
        self._db = sqlite3.connect(str(store), isolation_level=None, check_same_thread=False)
        try:
            # FULL: each commit is on the medium before the call returns (with WAL, the log is
            # fsynced at every commit), so a receipt never promises what a power cut could undo.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            with self._transaction() as db:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version not in (0, 1, _SCHEMA_VERSION):
                    raise sqlite3.DatabaseError(
                        f"kiosk store schema {version} is not {_SCHEMA_VERSION}"
                    )
                if version == 1:
                    db.execute(_UPGRADE_FROM_1)
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"<KioskClient device={self._client.device_id}>"

    @property
    def clock(self) -> Clock:
        """The clock payments are dated with: the client's."""
        return self._client.clock

    @property
    def link_down(self) -> PaygateClientError | None:
        """Why the link is known down (the error that stopped the last pass), or None."""
        return self._down

    def close(self) -> None:
        """Stop forwarding in the background and close the kiosk's store (not the client).

        A pass still waiting for the gateway is not waited for: what it would have recorded
        stays pending in the store, and is forwarded again (the gateway replays it) later.
        """
        self._closed.set()
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _store(self) -> Iterator[sqlite3.Connection]:
        """The store, under its lock; refused once closed."""
        with self._lock:
            if self._closed.is_set():
                raise sqlite3.ProgrammingError("the kiosk store is closed")
            yield self._db

    # -- taking payments ----------------------------------------------------------------------

    def account(self, account_no: str) -> AccountStatus:
        """What the account owes now (needs the gateway: there is no offline copy)."""
        return self._client.account(account_no)

    def pay(
        self, account_no: str, amount: Money, *, method: KioskMethod | str = KioskMethod.CASH
    ) -> KioskPayment:
        """Take a payment: stored first, then forwarded with everything older still pending.

        Returns the confirmed receipt, or — when the gateway cannot take it now — the stored
        payment to print as "pending confirmation". While the link is known down the payment
        is only stored (the background forwarder sends it), so the call returns at once. Raises
        the gateway's error only when the gateway refused this very payment for good (it is
        then in :meth:`refused`).
        """
        if not isinstance(amount, Money):
            raise TypeError("amount must be Money")
        if amount.minor <= 0 or amount.currency != self._currency:
            raise InvalidArgumentError.of(f"a positive amount in {self._currency}", "amount")
        try:
            kind = KioskMethod(method)
        except ValueError:
            raise InvalidArgumentError.of("cash or card", "method") from None
        txn_id = new_txn_id(kind)
        paid_at = require_aware(self.clock.now(), "clock.now()").astimezone(UTC)
        with self._store(), self._transaction() as db:
            db.execute(
                "INSERT INTO payments (txn_id, account_no, amount, currency, method, paid_at, "
                "state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                (
                    txn_id,
                    account_no,
                    amount.minor,
                    amount.currency,
                    kind.value,
                    paid_at.isoformat(),
                ),
            )
        down = self._down
        if down is not None:
            self._start_forwarder()
            return self._printable(self._by_txn(txn_id), down)
        report = self.forward()
        stored = self._by_txn(txn_id)
        if stored.state is PaymentState.REFUSED:
            raise report.errors[txn_id]
        problem = report.stopped_by if stored.state is PaymentState.PENDING else None
        return self._printable(stored, problem)

    def _printable(self, stored: StoredPayment, problem: PaygateClientError | None) -> KioskPayment:
        return KioskPayment(
            payment=stored,
            device_id=self._client.device_id,
            timezone=self._timezone,
            problem=problem,
        )

    def forward(self) -> ForwardReport:
        """Send the pending payments, oldest first, until done or the gateway cannot take one.

        A pass that stops marks the link down (and starts the background forwarder); one that
        gets through marks it up.
        """
        with self._sending:
            report = self._pass()
            # Set while passes are still one at a time, so that the link's state is the last
            # pass's: a background pass that got through cannot undo a later sale's outage.
            self._down = report.stopped_by
        if report.stopped_by is not None:
            self._start_forwarder()
        return report

    def _pass(self) -> ForwardReport:
        report = ForwardReport()
        with self._store():
            pending = self._select("WHERE state = 'pending' ORDER BY seq")
        for payment in pending:
            try:
                receipt = self._client.pay(
                    payment.account_no,
                    payment.amount,
                    method=payment.method,
                    paid_at=payment.paid_at,
                    idempotency_key=payment.txn_id,
                )
            except _FOR_GOOD as exc:
                report.refused.append(self._settle_refused(payment, exc))
                report.errors[payment.txn_id] = exc
                continue
            except PaygateClientError as exc:
                with self._store() as db:
                    db.execute(
                        "UPDATE payments SET attempts = attempts + 1 WHERE seq = ?",
                        (payment.seq,),
                    )
                report.stopped_by = exc
                break
            confirmed = self._settle_confirmed(payment, receipt)
            report.confirmed.append(confirmed)
            if receipt.after_close:
                _log.warning(
                    "payment %s was posted after terminal %s closed %s",
                    payment.txn_id,
                    receipt.terminal_id,
                    receipt.business_date.isoformat(),
                )
                report.after_close.append(confirmed)
        with self._store() as db:
            report.remaining = int(
                db.execute("SELECT COUNT(*) FROM payments WHERE state = 'pending'").fetchone()[0]
            )
        return report

    def _start_forwarder(self) -> None:
        # ``_forwarder`` is the thread still committed to forwarding, or None: the thread gives
        # up its place under this lock (see _forward_in_background), so a sale never leaves
        # the job to a thread that has already decided to stop.
        with self._lock:
            if self._closed.is_set() or self._forwarder is not None:
                return
            self._forwarder = threading.Thread(
                target=self._forward_in_background,
                name=f"kiosk-forwarder-{self._client.device_id}",
                daemon=True,
            )
            self._forwarder.start()

    def _forward_in_background(self) -> None:
        # Until the link is back (a pass gets through) or the kiosk closes. A sale taken
        # meanwhile waits for nothing: it finds the link down and only stores its payment.
        try:
            while not self._closed.wait(self._retry_interval):
                try:
                    self.forward()
                except sqlite3.ProgrammingError:
                    return  # the store closed under the pass
                except Exception:
                    # Not the gateway's answer (the client closed under it, say): this thread
                    # stops; the payments stay stored, and the next sale or forward() goes on.
                    _log.exception("forwarding in the background stopped")
                    return
                # Whether the link is up is read under the lock _start_forwarder takes: a sale
                # that marks it down again either finds this thread still going, or none.
                with self._lock:
                    if self._down is None:
                        self._forwarder = None
                        return
        finally:
            with self._lock:
                if self._forwarder is threading.current_thread():
                    self._forwarder = None

    def _settle_confirmed(self, payment: StoredPayment, receipt: KioskReceipt) -> StoredPayment:
        with self._store(), self._transaction() as db:
            db.execute(
                "UPDATE payments SET state = 'confirmed', receipt = ?, settled_at = ?, "
                "after_close = ?, attempts = attempts + 1 WHERE seq = ?",
                (
                    receipt.model_dump_json(),
                    datetime.now(UTC).isoformat(),
                    int(receipt.after_close),
                    payment.seq,
                ),
            )
        return payment.model_copy(
            update={
                "state": PaymentState.CONFIRMED,
                "receipt": receipt,
                "attempts": payment.attempts + 1,
            }
        )

    def _settle_refused(self, payment: StoredPayment, exc: PaygateClientError) -> StoredPayment:
        # Refused by the client itself, the payment was never sent: not an attempt.
        sent = 0 if isinstance(exc, InvalidArgumentError) else 1
        with self._store(), self._transaction() as db:
            db.execute(
                "UPDATE payments SET state = 'refused', refusal_status = ?, refusal_code = ?, "
                "refusal_detail = ?, settled_at = ?, attempts = attempts + ? WHERE seq = ?",
                (
                    exc.status,
                    exc.code,
                    exc.detail,
                    datetime.now(UTC).isoformat(),
                    sent,
                    payment.seq,
                ),
            )
        return payment.model_copy(
            update={
                "state": PaymentState.REFUSED,
                "refusal_status": exc.status,
                "refusal_code": exc.code,
                "refusal_detail": exc.detail,
                "attempts": payment.attempts + sent,
            }
        )

    # -- what the firmware sees ---------------------------------------------------------------

    def pending(self) -> list[StoredPayment]:
        """Payments stored here and not yet confirmed, oldest first."""
        with self._store():
            return self._select("WHERE state = 'pending' ORDER BY seq")

    def refused(self) -> list[StoredPayment]:
        """Payments the gateway refused for good, with its code and detail, oldest first."""
        with self._store():
            return self._select("WHERE state = 'refused' ORDER BY seq")

    def after_close(self) -> list[StoredPayment]:
        """Confirmed payments the gateway posted after this terminal had closed their business
        day (forwarded late): that close's figures may not include them. Oldest first."""
        with self._store():
            return self._select("WHERE after_close = 1 ORDER BY seq")

    def payment(self, txn_id: str) -> StoredPayment | None:
        """The payment with this transaction id, whatever its state."""
        with self._store():
            found = self._select("WHERE txn_id = ?", (txn_id,))
        return found[0] if found else None

    def _by_txn(self, txn_id: str) -> StoredPayment:
        found = self.payment(txn_id)
        assert found is not None, "a payment once stored is never deleted"
        return found

    def _select(self, where: str, params: tuple[object, ...] = ()) -> list[StoredPayment]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM payments {where}", params).fetchall()  # noqa: S608 - where is ours
        return [_stored(row) for row in rows]


def _stored(row: tuple[object, ...]) -> StoredPayment:
    (
        seq,
        txn_id,
        account_no,
        amount,
        currency,
        method,
        paid_at,
        state,
        attempts,
        receipt,
        refusal_status,
        refusal_code,
        refusal_detail,
    ) = row
    return StoredPayment(
        seq=int(str(seq)),
        txn_id=str(txn_id),
        account_no=str(account_no),
        amount=Money(int(str(amount)), str(currency)),
        method=KioskMethod(str(method)),
        paid_at=datetime.fromisoformat(str(paid_at)),
        state=PaymentState(str(state)),
        attempts=int(str(attempts)),
        receipt=None if receipt is None else KioskReceipt.model_validate_json(str(receipt)),
        refusal_status=None if refusal_status is None else int(str(refusal_status)),
        refusal_code=None if refusal_code is None else str(refusal_code),
        refusal_detail=None if refusal_detail is None else str(refusal_detail),
    )
