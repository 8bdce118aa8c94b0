"""What the console shows, read from the database: the account's story, finance, the promise.

Read-only: every function here runs in a read transaction and builds plain values for the
templates. Where the package already has a reader (the account status, the reconciliation
runs and suspense, the ledger balances) it is used; what the console alone needs (search,
an account's payments with their receipts, its orders' step timeline and breaches, the
dashboard's counts) is read here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from paygate.gateway import Gateway
from paygate.models import AccountStatus
from paygate.money import Money
from paygate.promise import Deadlines, Severity, Step, severity
from paygate.reconcile import ReconciliationRun, SuspenseItem, list_runs, suspense_items
from paygate.reconcile.model import Finding
from paygate.reconcile.runs import findings as run_findings
from paygate.refunds.findings import PaymentFinding
from paygate.store.engine import Tx

__all__ = [
    "AccountHit",
    "AccountStory",
    "Dashboard",
    "FinanceView",
    "OrderView",
    "PaymentView",
    "StepView",
    "account_story",
    "dashboard",
    "finance_view",
    "prefix_end",
    "prefix_sql",
    "search_accounts",
]

SEARCH_LIMIT = 20


# The channels that have taken money, read as a skip scan of the unique (channel,
# channel_txn_id) key: one probe per channel, whatever the number of payments.
_PAID_CHANNELS = (
    "WITH RECURSIVE paid(channel) AS ("
    "SELECT MIN(channel) FROM payments "
    "UNION ALL SELECT (SELECT MIN(p.channel) FROM payments p WHERE p.channel > paid.channel) "
    "FROM paid WHERE paid.channel IS NOT NULL) "
    "SELECT channel FROM paid WHERE channel IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class AccountHit:
    """An account a search found, and what matched."""

    account_no: str
    name: str | None
    meter_address: str | None
    supply_state: str
    matched: str  # account_no, meter_address or payment_reference


def prefix_end(prefix: str) -> str | None:
    """The least string after every string that starts with ``prefix``, in code point order
    (None when there is none: ``prefix`` is all U+10FFFF). A string ``s`` starts with
    ``prefix`` exactly when ``prefix <= s < prefix_end(prefix)``, compared code point by code
    point, as PostgreSQL's "C" collation and SQLite's BINARY compare UTF-8 text."""
    kept = prefix.rstrip(chr(0x10FFFF))
    if not kept:
        return None
    last = ord(kept[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # surrogates are not characters: the next one is U+E000
        last = 0xE000
    return kept[:-1] + chr(last)


_HIT_COLUMNS = "a.account_no, a.name, a.meter_address, a.supply_state"


def prefix_sql(dialect: str, *, bounded: bool) -> str:
    """The statement that reads the accounts whose number starts with ``:q``: the range from
    ``:q`` to ``:end`` (``bounded``; else from ``:q`` on), in code point order, the first
    ``:n``. On PostgreSQL it compares under the "C" collation, an ordered range of
    ``ix_accounts_account_no_c`` (migration 0023), whatever the database's own collation."""
    number = 'a.account_no COLLATE "C"' if dialect == "postgresql" else "a.account_no"
    below = f" AND {number} < :end" if bounded else ""
    return (
        f"SELECT {_HIT_COLUMNS} FROM accounts a WHERE {number} >= :q{below} "  # noqa: S608
        f"ORDER BY {number} LIMIT :n"
    )


def search_accounts(gateway: Gateway, query: str) -> list[AccountHit]:
    """Accounts whose number starts with ``query`` (every character literal, ``%``, ``_`` and
    ``\\`` too), whose meter address is ``query``, or that paid with ``query`` as the channel's
    transaction id (the payment reference)."""
    text = query.strip()
    if (
        not text
        or len(text) > 64
        or any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    ):
        return []
    end = prefix_end(text)

    def work(tx: Tx) -> list[AccountHit]:
        hits: dict[str, AccountHit] = {}
        # Each lookup is an index range or probe, whatever the number of accounts: the
        # account number's prefix as a range in code point order, the meter address by its
        # index, and the payment reference through the (channel, channel_txn_id) index, one
        # probe per channel that has taken money. (Under a database's linguistic collation,
        # zh_CN or ICU, '3190000001' sorts after '31:': a range of the unique index missed
        # accounts the prefix names, and a LIKE reads the whole table.)
        # The channels that have taken money come from the payments themselves (a skip scan),
        # not from the installed adapters: discovering those scans every installed package's
        # entry points, which made a worker's first search cost more than a hundred
        # milliseconds, and a channel no longer installed still has its payments.
        channels = sorted(str(row[0]) for row in tx.all(_PAID_CHANNELS))
        names = {f"c{i}": channel for i, channel in enumerate(channels)}
        queries = (
            ("account_no", prefix_sql(tx.dialect, bounded=end is not None)),
            (
                "meter_address",
                f"SELECT {_HIT_COLUMNS} FROM accounts a WHERE a.meter_address = :q "  # noqa: S608
                "ORDER BY a.account_no LIMIT :n",
            ),
            (
                "payment_reference",
                f"SELECT {_HIT_COLUMNS} FROM payments p "  # noqa: S608
                "JOIN accounts a ON a.id = p.account_id WHERE p.channel IN ("
                + ", ".join(f":{name}" for name in names)
                + ") AND p.channel_txn_id = :q ORDER BY a.account_no LIMIT :n",
            ),
        )
        params = {"q": text, "end": end, "n": SEARCH_LIMIT, **names}
        for matched, sql in queries if names else queries[:2]:  # no payment taken: no reference
            for row in tx.all(sql, params):
                hits.setdefault(
                    str(row[0]),
                    AccountHit(str(row[0]), row[1], row[2], str(row[3]), matched),
                )
        return list(hits.values())[:SEARCH_LIMIT]

    return gateway.store.run(work, write=False)


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as the clerk reads it: channel, reference, amount, receipt number, status."""

    payment_id: int
    channel: str
    channel_txn_id: str
    amount: Money
    paid_at: datetime
    business_date: date
    status: str
    late_fee: Money
    receipt: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepView:
    """One step of an order against its deadline."""

    step: Step
    deadline: datetime
    done_at: datetime | None
    breach: Severity | None

    @property
    def late(self) -> bool:
        """Done after the deadline, or not done and the deadline passed (see ``breach``)."""
        return self.breach is not None


@dataclass(frozen=True, slots=True)
class OrderView:
    """A supply order with its step timeline and breaches."""

    id: int
    account_no: str
    kind: str
    status: str
    reason: str
    created_at: datetime
    due_at: datetime
    attempts: int
    last_error: str | None
    steps: tuple[StepView, ...]
    worst: Severity | None

    @property
    def next_deadline(self) -> datetime:
        """The deadline of the first step not yet done (the promise once all are)."""
        return next((s.deadline for s in self.steps if s.done_at is None), self.due_at)

    @property
    def open(self) -> bool:
        """Still under way (or failed: a person acts)."""
        return self.status in ("open", "dispatched", "acknowledged", "failed")


@dataclass(frozen=True, slots=True)
class Notice:
    """A dunning notice served."""

    kind: str
    served_at: datetime
    served_by: str
    arrears: Money


@dataclass(frozen=True, slots=True)
class AccountStory:
    """Everything the clerk needs to answer the customer."""

    status: AccountStatus
    meter_address: str | None
    payments: tuple[PaymentView, ...]
    orders: tuple[OrderView, ...]
    notices: tuple[Notice, ...]
    now: datetime

    @property
    def current_reconnection(self) -> OrderView | None:
        """The newest reconnection order, if any."""
        return next((o for o in self.orders if o.kind == "reconnect"), None)


_SEVERITY_RANK = {Severity.MINOR: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}


def _worst(severities: list[Severity]) -> Severity | None:
    return max(severities, key=_SEVERITY_RANK.__getitem__) if severities else None


def _orders(tx: Tx, account_id: int, account_no: str, now: datetime) -> tuple[OrderView, ...]:
    rows = tx.all(
        "SELECT id, kind, status, reason, created_at, dispatch_due_at, ack_due_at, due_at, "
        "legal_due_at, dispatched_at, acknowledged_at, completed_at, attempts, last_error "
        "FROM supply_orders WHERE account_id = :a ORDER BY id DESC LIMIT 20",
        {"a": account_id},
    )
    if not rows:
        return ()
    ids = [int(r[0]) for r in rows]
    recorded: dict[tuple[int, str], Severity] = {}
    for order_id, step, sev in tx.all(
        "SELECT b.order_id, b.step, b.severity FROM breaches b JOIN supply_orders o "
        "ON o.id = b.order_id WHERE o.account_id = :a AND o.id >= :low "
        "AND b.withdrawn_at IS NULL",
        {"a": account_id, "low": min(ids)},
    ):
        recorded[(int(order_id), str(step))] = Severity(sev)
    views = []
    for r in rows:

        def ts(value: Any) -> datetime | None:
            return None if value is None else tx.read_ts(value)

        created = tx.read_ts(r[4])
        due = tx.read_ts(r[7])
        deadlines = Deadlines(
            dispatch=ts(r[5]) or due,
            acknowledge=ts(r[6]) or due,
            confirm=due,
            legal=ts(r[8]) or due,
        )
        dispatched, acknowledged, completed = ts(r[9]), ts(r[10]), ts(r[11])
        done = {
            Step.DISPATCH: dispatched or acknowledged or completed,
            Step.ACKNOWLEDGE: acknowledged or completed,
            Step.CONFIRM: completed,
        }
        status = str(r[2])
        steps = []
        for step in (Step.DISPATCH, Step.ACKNOWLEDGE, Step.CONFIRM):
            breach = recorded.get((int(r[0]), step.value))
            if breach is None and status not in ("completed", "cancelled"):
                # Not yet recorded by the dispatcher's deadline check, but already so.
                deadline = deadlines.of(step)
                if done[step] is None and now > deadline:
                    breach = severity(step, deadlines, now)
            steps.append(StepView(step, deadlines.of(step), done[step], breach))
        legal = recorded.get((int(r[0]), Step.LEGAL.value))
        severities = [s.breach for s in steps if s.breach is not None]
        if legal is not None:
            severities.append(legal)
        views.append(
            OrderView(
                id=int(r[0]),
                account_no=account_no,
                kind=str(r[1]),
                status=status,
                reason=str(r[3]),
                created_at=created,
                due_at=due,
                attempts=int(r[12]),
                last_error=None if r[13] is None else str(r[13]),
                steps=tuple(steps),
                worst=_worst(severities),
            )
        )
    return tuple(views)


def account_story(gateway: Gateway, account_no: str) -> AccountStory:
    """The account's status today, its payments with receipts, orders and notices."""
    status = gateway.account_status(account_no)
    now = gateway.clock.now()

    def work(tx: Tx) -> AccountStory:
        row = tx.one(
            "SELECT id, meter_address FROM accounts WHERE account_no = :a", {"a": account_no}
        )
        assert row is not None  # account_status found it
        account_id = int(row[0])
        payments = tuple(
            PaymentView(
                payment_id=int(p[0]),
                channel=str(p[1]),
                channel_txn_id=str(p[2]),
                amount=Money(int(p[3]), str(p[4])),
                paid_at=tx.read_ts(p[5]),
                business_date=tx.read_day(p[6]),
                status=str(p[7]),
                late_fee=Money(int(p[8]), str(p[4])),
                receipt=json.loads(str(p[9])),
            )
            for p in tx.all(
                "SELECT id, channel, channel_txn_id, amount, currency, paid_at, business_date, "
                "status, late_fee, receipt FROM payments WHERE account_id = :a "
                "ORDER BY paid_at DESC, id DESC LIMIT 50",
                {"a": account_id},
            )
        )
        notices = tuple(
            Notice(str(n[0]), tx.read_ts(n[1]), str(n[2]), Money(int(n[3]), status.currency))
            for n in tx.all(
                "SELECT kind, served_at, served_by, arrears FROM dunning_notices "
                "WHERE account_id = :a ORDER BY served_at DESC LIMIT 20",
                {"a": account_id},
            )
        )
        return AccountStory(
            status=status,
            meter_address=None if row[1] is None else str(row[1]),
            payments=payments,
            orders=_orders(tx, account_id, account_no, now),
            notices=notices,
            now=now,
        )

    return gateway.store.run(work, write=False)


# -- finance ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgeBand:
    """Suspense items of one age band."""

    label: str
    count: int
    amount: Money


@dataclass(frozen=True, slots=True)
class FinanceView:
    """Runs by channel and day, open findings, suspense ageing, voucher liability, and the
    payment findings (money held in suspense for closed accounts)."""

    runs: tuple[ReconciliationRun, ...]
    open_findings: tuple[Finding, ...]
    suspense: tuple[SuspenseItem, ...]
    ageing: tuple[AgeBand, ...]
    voucher_liability: dict[str, Money]
    """What the cards sold and not yet redeemed are owed, by currency (positive: owed)."""
    today: date
    payment_findings: tuple[PaymentFinding, ...] = ()
    """Open payment findings: payments held in suspense for closed accounts."""
    refund_routes: tuple[str, ...] = ()
    """The refund routes a payment finding can be refunded through."""


AGE_BANDS = ((0, 1, "0-1"), (2, 7, "2-7"), (8, 30, "8-30"), (31, None, "31+"))
"""Suspense ageing bands, in days since the money was parked."""


def finance_view(gateway: Gateway, *, runs: int = 60, findings: int = 200) -> FinanceView:
    """Finance's page: the newest ``runs`` runs and up to ``findings`` open findings."""
    zone = ZoneInfo(gateway.settings.timezone)
    today = gateway.clock.now().astimezone(zone).date()
    recent = list_runs(gateway, limit=runs)
    open_found: list[Finding] = []
    for run in recent:
        if run.open_findings == 0:
            continue
        for finding in run_findings(gateway, run.id, open_findings_only=True, as_of=today):
            open_found.append(finding)
            if len(open_found) >= findings:
                break
        if len(open_found) >= findings:
            break
    parked = suspense_items(gateway, limit=500)
    bands: list[AgeBand] = []
    currency = gateway.settings.currency
    for low, high, label in AGE_BANDS:
        chosen = [
            s
            for s in parked
            if (today - s.since.astimezone(zone).date()).days >= low
            and (high is None or (today - s.since.astimezone(zone).date()).days <= high)
        ]
        total = sum(s.amount.minor for s in chosen)
        cur = chosen[0].amount.currency if chosen else currency
        bands.append(AgeBand(label, len(chosen), Money(total, cur)))
    # The liability account holds a credit balance (negative): shown as the amount owed.
    liability = {
        code.split(":", 1)[1]: Money(-balance.minor, balance.currency)
        for code, balance in sorted(gateway.ledger_balances().items())
        if code.startswith("voucher_liability:")
    }
    return FinanceView(
        runs=tuple(recent),
        open_findings=tuple(open_found),
        suspense=tuple(parked),
        ageing=tuple(bands),
        voucher_liability=liability,
        today=today,
        payment_findings=tuple(gateway.payment_findings.list(limit=findings)),
        refund_routes=tuple(sorted(gateway.refunds.routes)),
    )


# -- the service promise ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromiseCount:
    """Reconnections of a period against the promise."""

    completed: int
    on_time: int
    late: int
    open: int


@dataclass
class Dashboard:
    """Today's and the month's reconnections, breaches by severity and step, orders at risk."""

    today: PromiseCount
    month: PromiseCount
    breaches: dict[str, dict[str, int]] = field(default_factory=dict)
    at_risk: list[OrderView] = field(default_factory=list)
    failed: list[tuple[int, str, str | None]] = field(default_factory=list)
    now: datetime | None = None


def _count(tx: Tx, since: datetime) -> PromiseCount:
    row = tx.one(
        "SELECT "
        "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'completed' AND completed_at <= due_at THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status = 'completed' AND completed_at > due_at THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN status IN ('open', 'dispatched', 'acknowledged', 'failed') "
        "THEN 1 ELSE 0 END) "
        "FROM supply_orders WHERE kind = 'reconnect' AND created_at >= :since",
        {"since": tx.ts(since)},
    )
    values = [int(v or 0) for v in (row or (0, 0, 0, 0))]
    return PromiseCount(*values)


def dashboard(gateway: Gateway, *, within: timedelta = timedelta(hours=1)) -> Dashboard:
    """The service-promise dashboard at the clock's now; orders whose next deadline falls
    within ``within`` are at risk."""
    now = gateway.clock.now()
    zone = ZoneInfo(gateway.settings.timezone)
    local = now.astimezone(zone)
    day_start = datetime.combine(local.date(), time(0), zone)
    month_start = datetime.combine(local.date().replace(day=1), time(0), zone)

    def work(tx: Tx) -> Dashboard:
        board = Dashboard(_count(tx, day_start), _count(tx, month_start), now=now)
        for step, sev, count in tx.all(
            "SELECT b.step, b.severity, COUNT(*) FROM breaches b "
            "JOIN supply_orders o ON o.id = b.order_id WHERE o.created_at >= :since "
            "AND b.withdrawn_at IS NULL GROUP BY b.step, b.severity",
            {"since": tx.ts(month_start)},
        ):
            board.breaches.setdefault(str(sev), {})[str(step)] = int(count)
        risky = tx.all(
            "SELECT DISTINCT o.account_id, a.account_no FROM supply_orders o "
            "JOIN accounts a ON a.id = o.account_id WHERE o.kind = 'reconnect' AND "
            "o.status IN ('open', 'dispatched', 'acknowledged') AND ("
            "(o.dispatched_at IS NULL AND o.dispatch_due_at <= :soon) OR "
            "(o.acknowledged_at IS NULL AND o.ack_due_at <= :soon) OR o.due_at <= :soon) "
            "LIMIT 100",
            {"soon": tx.ts(now + within)},
        )
        for account_id, account_no in risky:
            for order in _orders(tx, int(account_id), str(account_no), now):
                if order.kind == "reconnect" and order.status in (
                    "open",
                    "dispatched",
                    "acknowledged",
                ):
                    board.at_risk.append(order)
        board.at_risk = [o for o in board.at_risk if o.next_deadline <= now + within]
        board.at_risk.sort(key=lambda o: o.next_deadline)
        board.failed = [
            (int(r[0]), str(r[1]), None if r[2] is None else str(r[2]))
            for r in tx.all(
                "SELECT o.id, a.account_no, o.last_error FROM supply_orders o "
                "JOIN accounts a ON a.id = o.account_id WHERE o.status = 'failed' "
                "ORDER BY o.id LIMIT 100"
            )
        ]
        return board

    return gateway.store.run(work, write=False)
