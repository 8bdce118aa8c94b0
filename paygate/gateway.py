"""The Gateway: the one door every channel's money comes through.

It holds no decisions of its own: each public method is one line handing the call to the
service that owns the concept (:mod:`paygate.accounts`, :mod:`paygate.payments`,
:mod:`paygate.supply`, :mod:`paygate.dunning`), all sharing one :class:`~paygate.records.Core`
(store, settings, clock, allocation policy, ledger-account directory). Each decision is one
transaction (DESIGN.md invariant 4); see :mod:`paygate.payments` for exactly-once payments and
the one posting path. docs/architecture.md draws the modules and the rules between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from paygate import ledger
from paygate.accounts import Accounts
from paygate.billing import AllocationPolicy, OldestFirst
from paygate.billing_run import BillingRun, Progress
from paygate.clock import Clock, SystemClock
from paygate.config import Settings
from paygate.corrections import BillCorrection, Corrections
from paygate.dunning import Dunning
from paygate.errors import PaygateError
from paygate.feeds import DEFAULT_PAGE, EventPage, Feeds, PaymentPage, SupplyOrder, SupplyOrderPage
from paygate.group_commit import PaymentGroup
from paygate.headend.base import HeadEndOutcome
from paygate.ledger import LedgerAccounts
from paygate.models import (
    AccountStatus,
    BillIssued,
    BulkResult,
    Category,
    DisconnectionCandidate,
    NewAccount,
    NewBill,
    PaymentIntent,
    PayOutcome,
    Receipt,
    Reversal,
    StatementLine,
    SupplyState,
)
from paygate.money import Money
from paygate.payments import Payments
from paygate.records import Core
from paygate.refunds.closure import Closures
from paygate.refunds.door import RefundDoor
from paygate.refunds.findings import PaymentFindings
from paygate.refunds.service import Refunds
from paygate.store import migrate
from paygate.store.engine import Store, Tx
from paygate.supply import OrderStatus, Severity, Step, SupplyOrders

if TYPE_CHECKING:
    from paygate.channels.base import ChannelAdapter
    from paygate.headend.base import HeadEnd
    from paygate.outbox import DispatchReport, EventSink
    from paygate.reconcile import ReconciliationRun

__all__ = ["Gateway"]


class Gateway(RefundDoor):
    """The one door: accounts, bills, payments, reversals, supply state, status and audit;
    refunds and account closure (:class:`~paygate.refunds.door.RefundDoor`).

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
        self._core = Core(
            store=store,
            settings=settings,
            clock=clock or SystemClock(),
            allocation=allocation or OldestFirst(),
        )
        self.supply = SupplyOrders(self._core)
        self.payments = Payments(self._core, self.supply)
        self.payment_group = PaymentGroup(self._core, self.payments)
        self.accounts = Accounts(self._core, self.payments)
        self.dunning = Dunning(self._core, self.supply)
        self.feeds = Feeds(self._core.store)
        self.billing_run = BillingRun(self._core, self.accounts, self.payments)
        self.corrections = Corrections(self._core, self.payments, self.supply)
        self.refunds = Refunds(self._core, self.payments, self.supply)
        self.closures = Closures(
            self._core, self.accounts, self.payments, self.supply, self.refunds
        )
        self.payment_findings = PaymentFindings(
            self._core, self.payments, self.supply, self.refunds
        )

    @property
    def store(self) -> Store:
        """The database."""
        return self._core.store

    @property
    def settings(self) -> Settings:
        """The settings every service decides by."""
        return self._core.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._core.settings = value

    @property
    def clock(self) -> Clock:
        """The clock every decision is dated by."""
        return self._core.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self._core.clock = value

    @property
    def allocation(self) -> AllocationPolicy:
        """How a payment is spread over open bills."""
        return self._core.allocation

    @allocation.setter
    def allocation(self, value: AllocationPolicy) -> None:
        self._core.allocation = value

    @property
    def ledger_accounts(self) -> LedgerAccounts:
        """The ledger-account directory."""
        return self._core.ledger

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
            if self.payments.pending_seal:
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

    # -- accounts and bills ----------------------------------------------------------------

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
        return self.accounts.open_account(
            account_no,
            category=category,
            prepaid=prepaid,
            protected=protected,
            name=name,
            currency=currency,
        )

    def issue_bill(
        self, account_no: str, *, bill_no: str, amount: Money, period: str, due_date: date
    ) -> BillIssued:
        """Issue a bill: debit the customer, credit energy revenue, and apply any credit.

        The same bill again with the same data is a no-op (``created=False``); with other data
        it is a :class:`~paygate.errors.BillConflictError`.
        """
        return self.accounts.issue_bill(
            account_no, bill_no=bill_no, amount=amount, period=period, due_date=due_date
        )

    def open_accounts(
        self,
        accounts: Iterable[NewAccount],
        *,
        chunk_size: int | None = None,
        keep_keys: bool = True,
        progress: Progress | None = None,
    ) -> BulkResult:
        """Open many accounts (a billing system's file), a chunk per transaction.

        Each item is decided as :meth:`open_account` would: created, replayed (same
        attributes) or a conflict (other attributes: listed, not written). The input is read a
        chunk at a time (``chunk_size``, default ``Settings.billing_run_chunk``);
        ``keep_keys=False`` keeps counts and issues only, for runs of millions; ``progress`` is
        called after each committed chunk with the number of items decided.
        """
        return self.billing_run.open_accounts(
            accounts, chunk_size=chunk_size, keep_keys=keep_keys, progress=progress
        )

    def issue_bills(
        self,
        bills: Iterable[NewBill],
        *,
        chunk_size: int | None = None,
        keep_keys: bool = True,
        progress: Progress | None = None,
    ) -> BulkResult:
        """Issue many bills (the monthly billing run), a chunk per transaction.

        Each bill has every effect :meth:`issue_bill` would give it, decided in input order:
        created, replayed (same data), a conflict (same bill number, other data: listed, not
        written) or refused (unknown account, closed account, other currency). A crash loses
        at most the chunk under way; running the same input again completes it exactly once.
        Options as for :meth:`open_accounts`.
        """
        return self.billing_run.issue_bills(
            bills, chunk_size=chunk_size, keep_keys=keep_keys, progress=progress
        )

    def cancel_bill(
        self, account_no: str, bill_no: str, *, reason: str, correction_id: str
    ) -> BillCorrection:
        """Cancel (作废) a bill, once per ``correction_id``; see :mod:`paygate.corrections`."""
        return self.corrections.cancel_bill(
            account_no, bill_no, reason=reason, correction_id=correction_id
        )

    def adjust_bill(
        self, account_no: str, bill_no: str, amount: Money, *, reason: str, correction_id: str
    ) -> BillCorrection:
        """Adjust (退补) a bill by a signed ``amount``, once per ``correction_id``; see
        :mod:`paygate.corrections`."""
        return self.corrections.adjust_bill(
            account_no, bill_no, amount, reason=reason, correction_id=correction_id
        )

    # -- payments --------------------------------------------------------------------------

    def pay(self, intent: PaymentIntent) -> Receipt:
        """Post one payment; the same payment again returns the original receipt, replayed.

        Payments from concurrent callers share one transaction and one commit (group commit,
        :mod:`paygate.group_commit`, while ``Settings.group_commit_window_ms`` is above 0);
        each caller still gets its own receipt or error, as if it had paid alone.
        """
        return self.payment_group.pay(intent)

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post a batch (a bank's daily file): chunked transactions, one outcome per item. A
        refused item is reported and never costs the others their posting; each chunk commits
        on its own, so a failure later in the batch loses nothing already posted."""
        return self.payments.pay_many(intents)

    def post_within(self, tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        """Decide and write payments inside the caller's transaction ``tx``.

        For components whose own rows must commit with the payment (a voucher marked redeemed
        with the payment it made). Returns a receipt (possibly replayed) or a refusal for each
        intent, in order; a :class:`~paygate.store.engine.UniqueViolation` means a concurrent
        duplicate committed first: roll back and call again. Call :meth:`pay` otherwise.
        """
        return self.payments.post_within(tx, intents)

    def debit_account(self, tx: Tx, channel: str, currency: str) -> int:
        """The account a channel's payments are debited to (its clearing account by default);
        reconciliation and settlement use the same rule for suspense and bank postings."""
        return self.payments.debit_account(tx, channel, currency)

    def reverse(self, payment_id: int, reason: str) -> Reversal:
        """Post the compensating entry of a payment and re-open what it had paid.

        The late fee the payment's arrival charged stays charged (the days were late); it is
        simply unpaid again. Any other credit the account holds is applied to what re-opens.
        """
        return self.payments.reverse(payment_id, reason)

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> Reversal:
        """Reverse the payment a channel knows by its own transaction id."""
        return self.payments.reverse_by_channel_txn(channel, channel_txn_id, reason)

    def reverse_by_channel_txn_within(
        self, tx: Tx, channel: str, channel_txn_id: str, reason: str
    ) -> Reversal:
        """:meth:`reverse_by_channel_txn` inside the caller's transaction ``tx`` (for components
        whose own check must commit with the reversal: a POS void and its batch); the entry
        counts toward sealing once ``tx`` commits."""
        return self.payments.reverse_by_channel_txn_within(tx, channel, channel_txn_id, reason)

    # -- supply ----------------------------------------------------------------------------

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
        return self.supply.disconnect(account_no, reason, actor=actor, negotiated=negotiated)

    def complete_reconnection(
        self, order_id: int, *, actor: str = "headend", at: datetime | None = None
    ) -> SupplyState:
        """Record that supply is back for a reconnection order; the account is connected."""
        return self.supply.complete_reconnection(order_id, actor=actor, at=at)

    def set_meter(self, account_no: str, *, headend: str | None, meter_address: str | None) -> None:
        """Name the head-end and meter address that supply orders for the account go to.

        A meter address is the meter's 12-digit BCD communication address (DL/T 645 通信地址,
        most significant digit first, as on the nameplate); a wildcard or the broadcast address
        would reach more than this customer's meter and is refused.
        """
        return self.supply.set_meter(account_no, headend=headend, meter_address=meter_address)

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
        state in the same transaction; a step reached after its deadline is recorded as a breach,
        and a breach recorded earlier for a step now reported done by its deadline is withdrawn.
        """
        return self.supply.record_order_progress(
            order_id,
            outcome,
            at=at,
            actor=actor,
            reference=reference,
            claim_token=claim_token,
            next_attempt_at=next_attempt_at,
        )

    def check_deadlines(self, now: datetime | None = None) -> list[tuple[int, Step, Severity]]:
        """Record a breach for every step of an open order whose deadline has passed."""
        return self.supply.check_deadlines(now)

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
        return self.supply.record_order_failure(
            order_id, error, claim_token=claim_token, retry_at=retry_at, alert_after=alert_after
        )

    def retry_order(self, order_id: int) -> None:
        """Put a failed order back in the queue, to be attempted at once.

        A failed disconnection order of an account that has since paid is not sent again.
        """
        return self.supply.retry_order(order_id)

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

    # -- dunning ---------------------------------------------------------------------------

    def serve_notice(
        self, account_no: str, kind: str = "notice", *, served_by: str = "billing"
    ) -> None:
        """Record a written notice (``notice``) or the final reminder (``final_reminder``).

        The notice puts a connected account on the disconnection path
        (``disconnection_pending``); paying the arrears takes it off again.
        """
        return self.dunning.serve_notice(account_no, kind, served_by=served_by)

    def disconnection_candidates(
        self, as_of: datetime | None = None
    ) -> list[DisconnectionCandidate]:
        """Accounts the dunning policy allows to be disconnected now.

        Overdue beyond the policy's days, the written notice served at least ``notice_days``
        earlier and (if the policy asks) the final reminder at least ``final_reminder_days``
        earlier; never a protected account (those are cut only by a negotiated order).
        """
        return self.dunning.disconnection_candidates(as_of)

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
        return self.dunning.order_disconnection(
            account_no, approved_by=approved_by, negotiated=negotiated, reason=reason
        )

    # -- status ----------------------------------------------------------------------------

    def account_status(self, account_no: str, as_of: date | None = None) -> AccountStatus:
        """What the account owes on ``as_of`` (default: today in the utility's zone); an aware
        datetime means its date in the utility's zone."""
        return self.accounts.account_status(account_no, as_of)

    def account_statuses(
        self, account_nos: Sequence[str], as_of: date | None = None
    ) -> dict[str, AccountStatus]:
        """:meth:`account_status` of many accounts at once, read in one transaction; keyed by
        account number. An unknown number raises ``UnknownAccountError`` naming it."""
        return self.accounts.account_statuses(account_nos, as_of)

    def ledger_balances(self) -> dict[str, Money]:
        """Every ledger account's cached balance, by account code."""
        return self.payments.ledger_balances()

    # -- feeds (paygate.feeds: commit order, opaque cursors) ------------------------------

    def payments_since(self, cursor: str | None, limit: int = DEFAULT_PAGE) -> PaymentPage:
        """Payments and reversals committed after ``cursor`` (None: from the start)."""
        return self.feeds.payments_since(cursor, limit)

    def account_payments_since(
        self, account_no: str, cursor: str | None, limit: int = DEFAULT_PAGE
    ) -> PaymentPage:
        """One account's payments and reversals after ``cursor``, in the payment feed's order."""
        return self.feeds.payments_since(cursor, limit, account_no=account_no)

    def supply_orders_since(self, cursor: str | None, limit: int = DEFAULT_PAGE) -> SupplyOrderPage:
        """Supply orders created after ``cursor``, each as it stands now."""
        return self.feeds.supply_orders_since(cursor, limit)

    def supply_order(self, order_id: int) -> SupplyOrder:
        """One supply order as it stands."""
        return self.feeds.supply_order(order_id)

    def events_since(self, cursor: str | None, limit: int = DEFAULT_PAGE) -> EventPage:
        """Outbox events committed after ``cursor``."""
        return self.feeds.events_since(cursor, limit)

    # -- audit -----------------------------------------------------------------------------

    def seal(self) -> int:
        """Seal every committed entry not yet sealed; return how many were sealed."""
        return self.payments.seal()

    def verify(self) -> ledger.VerifyReport:
        """Recompute balances, entry sums and seals; the report lists what disagrees."""
        return self.store.run(ledger.verify, write=False)

    def note_posted(self, posted: int) -> None:
        """Count ``posted`` committed journal entries toward the next seal, sealing when due.

        Components that post through :meth:`post_within` call this after their transaction
        commits; the package's own components post through :class:`~paygate.payments.Payments`,
        which counts for them.
        """
        return self.payments.note_posted(posted)
