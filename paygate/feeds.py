"""Feeds: what was paid, ordered, supply orders and outbox events, read in commit order.

A billing system reads a feed page by page and keeps the page's ``next_cursor``; given it
back, the feed resumes exactly after the last item the consumer saw. Invariants:

* **Nothing skipped, nothing repeated, whatever the concurrency.** Items are ordered by the
  order their transactions *committed*, never by their ids: ids are handed out in blocks per
  process (:class:`paygate.store.engine.Store`), so a transaction holding a lower id may commit
  after one holding a higher id, and "id greater than the last one seen" would skip it. Each
  database records commit order its own way, without the write path naming it (migration
  0010):

  - PostgreSQL: every row of a feed's table carries ``writer_xid``, the id of the transaction
    that wrote it (the column's default). A read takes only rows whose transaction is older
    than its snapshot's horizon, computed in the same statement: the least transaction id
    still running when the snapshot was taken (``pg_current_snapshot()``), transactions of
    other databases on the server left out. Every transaction below the horizon has finished,
    so no row can still appear below the position the page ends at; a transaction still
    running, or yet to start, has an id at or above the horizon and sorts after it. Rows of
    one transaction share its id and are ordered by row id. The price is a **visibility
    lag**: an item appears once every transaction of this database that began writing
    before its own has finished, so the longest write transaction (normally milliseconds; a
    bulk load or an idle-in-transaction session holds it up) bounds how late it is.
  - SQLite: one writer at a time, so a trigger appending to ``feed_log`` (rowid max + 1)
    numbers rows in commit order, and a reader's snapshot holds a prefix of that numbering.

* **A cursor is opaque and names its feed.** It encodes the position (two integers) and the
  feed; one feed's cursor given to another is refused, as is anything not made here.
* **Reads only.** This module writes nothing; every page is one read transaction.

A payment feed item is one money movement on a customer's account, by ``kind``, each at the
position of the transaction that moved it:

* ``payment`` (:class:`PaymentItem`): a payment taken. Its ``status`` is ``posted`` (credited
  to the account) or ``suspense``: the account was closed, the money is held in suspense with
  a finding, and the account is **not** credited;
* ``reversal``: a posted payment taken back, all of it;
* ``refund_requested`` (:class:`RefundItem`): credit taken off the account to be paid back;
* ``refund_succeeded``: that money left through the refund's route (the account's balance
  does not change again);
* ``refund_failed``: the refund failed and the money came back to the account as credit.

A billing system keeps an account's balance from the feed alone: add a posted payment and a
failed refund, subtract a reversal and a requested refund; a suspense payment, a succeeded
refund and every movement of a refund whose ``status`` is ``suspense`` (a payment held for a
closed account, refunded to the payer) change nothing. A consumer must skip kinds it does not
know.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from paygate.errors import InvalidInputError, UnknownAccountError, UnknownOrderError
from paygate.models import Instant
from paygate.money import Money
from paygate.store.engine import Store, Tx

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "Cursor",
    "EventItem",
    "EventPage",
    "FeedName",
    "Feeds",
    "InvalidCursorError",
    "PaymentFeedItem",
    "PaymentItem",
    "PaymentItemKind",
    "PaymentPage",
    "PaymentStatus",
    "RefundItem",
    "SupplyOrder",
    "SupplyOrderItem",
    "SupplyOrderPage",
]

DEFAULT_PAGE: Final = 100
"""Items in a page when the consumer does not say."""
MAX_PAGE: Final = 1000
"""The most items one page holds."""

_MAX_POSITION: Final = 2**63 - 1
# The oldest transaction that may still commit rows here: the least id running when the
# statement's snapshot was taken (or the snapshot's xmax when none is), leaving out the
# transactions pg_stat_activity shows belong to another database on the server, which can
# never write these tables. Where the role may not see other sessions, nothing is left out.
_HORIZON: Final = (
    "(SELECT LEAST(pg_snapshot_xmax(s)::text::bigint, COALESCE("
    "(SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x WHERE NOT EXISTS ("
    "SELECT 1 FROM pg_stat_activity a WHERE a.backend_xid = xid(x) AND a.datid <> "
    "(SELECT oid FROM pg_database WHERE datname = current_database()))), "
    "pg_snapshot_xmax(s)::text::bigint)) FROM pg_current_snapshot() AS s)"
)

T = TypeVar("T")


class InvalidCursorError(InvalidInputError):
    """The cursor is not one this feed gave out."""

    code = "invalid_cursor"


class FeedName(StrEnum):
    """The feeds; a cursor belongs to one of them."""

    PAYMENTS = "payments"
    SUPPLY_ORDERS = "supply-orders"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a feed: after the item at (``major``, ``minor``); (0, 0) is the start.

    On PostgreSQL ``major`` is the writing transaction's id and ``minor`` the row's id; on
    SQLite ``major`` is 0 and ``minor`` the ``feed_log`` sequence number. Consumers never read
    either: they keep the token.
    """

    feed: FeedName
    major: int = 0
    minor: int = 0

    def __post_init__(self) -> None:
        for name in ("major", "minor"):
            value = getattr(self, name)
            if not 0 <= value <= _MAX_POSITION:
                raise InvalidCursorError(f"cursor position {name} out of range", field="after")

    def encode(self) -> str:
        """The opaque token a consumer keeps (URL-safe, no padding)."""
        text = f"1:{self.feed.value}:{self.major}:{self.minor}".encode("ascii")
        return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str | None, feed: FeedName) -> Cursor:
        """The position ``token`` names in ``feed``; None or "" is the start of the feed."""
        if not token:
            return cls(feed)
        if len(token) > 200 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise InvalidCursorError("the cursor is not a token this feed gave out", field="after")
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidCursorError(
                "the cursor is not a token this feed gave out", field="after"
            ) from None
        match = re.fullmatch(r"1:([a-z-]+):(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})", text)
        if match is None:
            raise InvalidCursorError("the cursor is not a token this feed gave out", field="after")
        name, major, minor = match.groups()
        if name != feed.value:
            raise InvalidCursorError(
                f"the cursor belongs to the {name} feed, not {feed.value}", field="after"
            )
        cursor = cls(feed, int(major), int(minor))
        if cursor.encode() != token:
            # One position, one token: a re-encoded variant is not a token we gave out.
            raise InvalidCursorError("the cursor is not a token this feed gave out", field="after")
        return cursor


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PaymentItemKind(StrEnum):
    """What moved the money on the account (see the module's notes for each one's effect)."""

    PAYMENT = "payment"
    REVERSAL = "reversal"
    REFUND_REQUESTED = "refund_requested"
    REFUND_SUCCEEDED = "refund_succeeded"
    REFUND_FAILED = "refund_failed"


class PaymentStatus(StrEnum):
    """How a payment was taken: credited to the account, or held for a closed one."""

    POSTED = "posted"
    SUSPENSE = "suspense"


class PaymentItem(_Frozen):
    """One money movement of a payment, in commit order: the payment, or its reversal."""

    cursor: str = Field(description="resume after this item by giving it back as `after`")
    kind: Literal[PaymentItemKind.PAYMENT, PaymentItemKind.REVERSAL] = Field(
        description="skip kinds you do not know; more will come"
    )
    status: PaymentStatus = Field(
        description="`posted`: credited to the account; `suspense`: the account is closed, "
        "the money is held in suspense and the account must not be credited"
    )
    payment_id: int
    entry_id: int = Field(description="the journal entry that moved the money")
    account_no: str
    channel: str
    channel_txn_id: str
    amount: Money = Field(description="the payment's amount; a reversal takes all of it back")
    paid_at: Instant = Field(description="when the customer paid")
    business_date: date = Field(description="the channel's business date of the payment")
    posted_at: Instant = Field(description="when this movement was posted")
    terminal_id: str | None = None
    reason: str | None = Field(default=None, description="a reversal's reason")


class RefundItem(_Frozen):
    """One money movement of a refund order, in commit order.

    ``refund_requested`` takes ``amount`` off the account's credit; ``refund_succeeded`` pays
    it out (the account's balance does not change); ``refund_failed`` gives it back as credit.
    """

    cursor: str = Field(description="resume after this item by giving it back as `after`")
    kind: Literal[
        PaymentItemKind.REFUND_REQUESTED,
        PaymentItemKind.REFUND_SUCCEEDED,
        PaymentItemKind.REFUND_FAILED,
    ] = Field(description="skip kinds you do not know; more will come")
    status: PaymentStatus = Field(
        default=PaymentStatus.POSTED,
        description="`posted`: the account's credit is refunded; `suspense`: a payment held in "
        "suspense for a closed account is refunded to the payer, and the account's balance "
        "does not change in any of the refund's movements",
    )
    refund_id: str = Field(description="the refund's id, the same in all its movements")
    entry_id: int = Field(description="the journal entry that moved the money")
    account_no: str
    amount: Money = Field(description="the refund's amount")
    route: str = Field(description="how the money is paid back")
    channel: str | None = Field(description="the channel of the payment refunded against")
    payment_id: int | None = Field(description="the payment refunded against")
    original_channel_txn_id: str | None = Field(
        description="the payment refunded against, by its channel transaction id"
    )
    reason: str
    business_date: date = Field(description="the business date of this movement's entry")
    posted_at: Instant = Field(description="when this movement was posted")
    provider_reference: str | None = Field(
        default=None, description="the provider's reference of a succeeded refund"
    )
    failure_code: str | None = Field(default=None, description="why a failed refund failed")
    failure_message: str | None = None


PaymentFeedItem = Annotated[PaymentItem | RefundItem, Field(discriminator="kind")]
"""An item of the payment feed: a payment's movement or a refund's, told apart by ``kind``."""


class SupplyOrder(_Frozen):
    """A supply order (reconnection or disconnection) as it stands."""

    order_id: int
    account_no: str
    kind: str = Field(description="reconnect or disconnect")
    status: str
    action: str
    reason: str
    payment_id: int | None = Field(description="the payment that raised a reconnection")
    created_at: Instant
    due_at: Instant = Field(description="the service promise's deadline")
    dispatched_at: Instant | None
    acknowledged_at: Instant | None
    completed_at: Instant | None
    closed_at: Instant | None
    attempts: int


class SupplyOrderItem(SupplyOrder):
    """A supply order in the feed: ordered by when it was created; its state as read."""

    cursor: str = Field(description="resume after this item by giving it back as `after`")


class EventItem(_Frozen):
    """An event of the transactional outbox, in commit order."""

    cursor: str = Field(description="resume after this item by giving it back as `after`")
    event_id: int
    event_type: str
    account_no: str | None
    payload: dict[str, Any]
    created_at: Instant


class _Page(_Frozen):
    next_cursor: str = Field(description="give it back as `after` for the next page")
    has_more: bool = Field(description="more items were already there when this page was read")


class PaymentPage(_Page):
    """A page of the payment feed."""

    items: tuple[PaymentFeedItem, ...]


class SupplyOrderPage(_Page):
    """A page of the supply-order feed."""

    items: tuple[SupplyOrderItem, ...]


class EventPage(_Page):
    """A page of the event feed."""

    items: tuple[EventItem, ...]


def _frame(dialect: str, source: str, table: str, alias: str) -> tuple[str, str, str, str]:
    """(position columns, FROM clause, position condition, ORDER BY) of a feed's table.

    The ORDER BY names the indexed columns themselves, so that a page reads the index from
    the cursor and stops at the page's end instead of sorting the rest of the feed.
    """
    if dialect == "postgresql":
        return (
            f"{alias}.writer_xid, {alias}.id",
            f"{table} {alias}",
            f"({alias}.writer_xid, {alias}.id) > (:major, :minor) "
            f"AND {alias}.writer_xid < {_HORIZON}",
            f"ORDER BY {alias}.writer_xid, {alias}.id",
        )
    return (
        "0, f.seq",
        f"feed_log f JOIN {table} {alias} ON {alias}.id = f.row_id",
        f"f.source = '{source}' AND f.seq > :minor",
        "ORDER BY f.seq",
    )


_ORDER_COLUMNS: Final = (
    "o.id, a.account_no, o.kind, o.status, o.action, o.reason, o.payment_id, o.created_at, "
    "o.due_at, o.dispatched_at, o.acknowledged_at, o.completed_at, o.closed_at, o.attempts"
)


# The columns of a payment feed row after its position, the same for every kind:
# kind, payment_id, entry_id, account_no, channel, channel_txn_id, amount, currency, paid_at,
# payment's business_date, posted_at, terminal_id, reason, status, refund_id, route,
# failure_code, failure_message, provider_reference, entry's business_date.
_PAYMENT_KIND: Final = "CASE WHEN e.id = p.entry_id THEN 'payment' ELSE 'reversal' END"
_PAYMENT_STATUS: Final = "CASE WHEN p.status = 'suspense' THEN 'suspense' ELSE 'posted' END"
_PAYMENT_REST: Final = (
    "p.id, e.id, a.account_no, p.channel, p.channel_txn_id, p.amount, p.currency, p.paid_at, "
    "p.business_date, e.posted_at, p.terminal_id, "
    "CASE WHEN e.id = p.entry_id THEN NULL ELSE p.reversal_reason END, "
    f"{_PAYMENT_STATUS}, NULL, NULL, NULL, NULL, NULL, e.business_date"
)
# A refund order's entries: the request's (entry_id), then the settling one (final_entry_id),
# whose kind is the order's final state (a final state never changes).
_REFUND_KIND: Final = (
    "CASE WHEN e.id = r.entry_id THEN 'refund_requested' ELSE 'refund_' || r.state END"
)
_REFUND_FINAL: Final = "CASE WHEN e.id = r.entry_id THEN NULL ELSE {} END"
# A refund of a payment held in suspense (a closed account's) is money out of suspense: its
# movements have the payment's status, ``suspense``, and never touch the account's balance.
_REFUND_STATUS: Final = "CASE WHEN rp.status = 'suspense' THEN 'suspense' ELSE 'posted' END"
_REFUND_REST: Final = (
    "r.payment_id, e.id, a.account_no, r.channel, rp.channel_txn_id, r.amount, r.currency, "
    f"NULL, NULL, e.posted_at, NULL, r.reason, {_REFUND_STATUS}, r.refund_id, r.route, "
    f"{_REFUND_FINAL.format('r.failure_code')}, {_REFUND_FINAL.format('r.failure_message')}, "
    f"{_REFUND_FINAL.format('r.provider_reference')}, e.business_date"
)

# The whole feed's entries each belong to a payment (p) or to a refund order (r), never both.
_FEED_COLUMNS: Final = (
    f"CASE WHEN p.id IS NOT NULL THEN {_PAYMENT_KIND} ELSE {_REFUND_KIND} END, "
    "COALESCE(p.id, r.payment_id), e.id, a.account_no, COALESCE(p.channel, r.channel), "
    "COALESCE(p.channel_txn_id, rp.channel_txn_id), COALESCE(p.amount, r.amount), "
    "COALESCE(p.currency, r.currency), p.paid_at, p.business_date, e.posted_at, "
    "p.terminal_id, CASE WHEN p.id IS NULL THEN r.reason "
    "WHEN e.id = p.entry_id THEN NULL ELSE p.reversal_reason END, "
    f"CASE WHEN p.id IS NULL THEN {_REFUND_STATUS} ELSE {_PAYMENT_STATUS} END, r.refund_id, "
    "r.route, "
    f"{_REFUND_FINAL.format('r.failure_code')}, {_REFUND_FINAL.format('r.failure_message')}, "
    f"{_REFUND_FINAL.format('r.provider_reference')}, e.business_date"
)


def _payments_sql(dialect: str, *, by_account: bool) -> str:
    """The page query of the payment feed: journal entries in position order, each the entry
    of a payment, of its reversal, or of a refund order's request or settlement.

    The whole feed walks the journal from the cursor and stops at the page's end; one
    account's part starts from that account's payments and refund orders (few), and sorts
    them.
    """
    position, source, where, order = _frame(dialect, "journal", "journal_entries", "e")
    if by_account:
        logged = (
            " JOIN feed_log f ON f.source = 'journal' AND f.row_id = e.id"
            if dialect == "sqlite"
            else ""
        )
        return (
            f"SELECT * FROM (SELECT {position}, {_PAYMENT_KIND}, {_PAYMENT_REST} "  # noqa: S608
            "FROM payments p JOIN accounts a ON a.id = p.account_id "
            f"JOIN journal_entries e ON e.id IN (p.entry_id, p.reversal_entry_id){logged} "
            f"WHERE p.account_id = :account_id AND {where} "
            f"UNION ALL SELECT {position}, {_REFUND_KIND}, {_REFUND_REST} "
            "FROM refund_orders r JOIN accounts a ON a.id = r.account_id "
            "LEFT JOIN payments rp ON rp.id = r.payment_id "
            f"JOIN journal_entries e ON e.id IN (r.entry_id, r.final_entry_id){logged} "
            f"WHERE r.account_id = :account_id AND {where}) u ORDER BY 1, 2 LIMIT :n"
        )
    return (
        f"SELECT {position}, {_FEED_COLUMNS} FROM {source} "  # noqa: S608
        "LEFT JOIN payments pp ON pp.entry_id = e.id "
        "LEFT JOIN payments pr ON pr.reversal_entry_id = e.id "
        "LEFT JOIN refund_orders ro ON ro.entry_id = e.id "
        "LEFT JOIN refund_orders rf ON rf.final_entry_id = e.id "
        "LEFT JOIN payments p ON p.id = COALESCE(pp.id, pr.id) "
        "LEFT JOIN refund_orders r ON r.id = COALESCE(ro.id, rf.id) "
        "LEFT JOIN payments rp ON rp.id = r.payment_id "
        "JOIN accounts a ON a.id = COALESCE(p.account_id, r.account_id) "
        f"WHERE {where} {order} LIMIT :n"
    )


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be 1 to {MAX_PAGE}", field="limit")
    return limit


def _ts(value: Any) -> datetime:
    # SQLite's text (SQLITE_TIMESTAMP_FORMAT, always with microseconds) read by fromisoformat,
    # a tenth of strptime's cost: a page of a thousand items reads two thousand of them.
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return Tx.read_ts(value)


def _maybe_ts(value: Any) -> datetime | None:
    return None if value is None else _ts(value)


class Feeds:
    """Reads of the feeds; one read transaction a page."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- payments -----------------------------------------------------------------------

    def payments_since(
        self, cursor: str | None, limit: int = DEFAULT_PAGE, *, account_no: str | None = None
    ) -> PaymentPage:
        """Payments, reversals and refunds after ``cursor`` (None: from the start), oldest
        commit first.

        With ``account_no``, only that account's; the positions (and so the cursors) are the
        same as the whole feed's.
        """
        after = Cursor.decode(cursor, FeedName.PAYMENTS)
        limit = _check_limit(limit)
        sql = _payments_sql(self._store.dialect, by_account=account_no is not None)

        def work(tx: Tx) -> PaymentPage:
            params: dict[str, Any] = {"major": after.major, "minor": after.minor, "n": limit + 1}
            if account_no is not None:
                account_id = tx.scalar(
                    "SELECT id FROM accounts WHERE account_no = :no", {"no": account_no}
                )
                if account_id is None:
                    raise UnknownAccountError(f"no account {account_no}", field="account_no")
                params["account_id"] = account_id
            rows = tx.all(sql, params)
            return _page(PaymentPage, FeedName.PAYMENTS, after, rows, limit, _payment_item)

        return self._store.run(work, write=False)

    # -- supply orders ------------------------------------------------------------------

    def supply_orders_since(self, cursor: str | None, limit: int = DEFAULT_PAGE) -> SupplyOrderPage:
        """Supply orders created after ``cursor``, oldest commit first, each as it stands now
        (its later progress is in the event feed)."""
        after = Cursor.decode(cursor, FeedName.SUPPLY_ORDERS)
        limit = _check_limit(limit)
        position, source, where, order = _frame(self._store.dialect, "supply", "supply_orders", "o")
        sql = (
            f"SELECT {position}, {_ORDER_COLUMNS} FROM {source} "  # noqa: S608
            f"JOIN accounts a ON a.id = o.account_id WHERE {where} {order} LIMIT :n"
        )

        def work(tx: Tx) -> SupplyOrderPage:
            rows = tx.all(sql, {"major": after.major, "minor": after.minor, "n": limit + 1})
            return _page(SupplyOrderPage, FeedName.SUPPLY_ORDERS, after, rows, limit, _order_item)

        return self._store.run(work, write=False)

    def supply_order(self, order_id: int) -> SupplyOrder:
        """One supply order as it stands; :class:`UnknownOrderError` if there is none."""

        def work(tx: Tx) -> SupplyOrder:
            row = tx.one(
                f"SELECT {_ORDER_COLUMNS} FROM supply_orders o "  # noqa: S608
                "JOIN accounts a ON a.id = o.account_id WHERE o.id = :id",
                {"id": order_id},
            )
            if row is None:
                raise UnknownOrderError(f"no supply order {order_id}", field="order_id")
            return SupplyOrder(**_order_fields(row))

        return self._store.run(work, write=False)

    # -- events -------------------------------------------------------------------------

    def events_since(self, cursor: str | None, limit: int = DEFAULT_PAGE) -> EventPage:
        """Outbox events after ``cursor``, oldest commit first, delivered to sinks or not."""
        after = Cursor.decode(cursor, FeedName.EVENTS)
        limit = _check_limit(limit)
        position, source, where, order = _frame(self._store.dialect, "outbox", "outbox", "x")
        sql = (
            f"SELECT {position}, x.id, x.event_type, x.account_no, x.payload, x.created_at "  # noqa: S608
            f"FROM {source} WHERE {where} {order} LIMIT :n"
        )

        def work(tx: Tx) -> EventPage:
            rows = tx.all(sql, {"major": after.major, "minor": after.minor, "n": limit + 1})
            return _page(EventPage, FeedName.EVENTS, after, rows, limit, _event_item)

        return self._store.run(work, write=False)


P = TypeVar("P", PaymentPage, SupplyOrderPage, EventPage)


def _page(
    page: type[P],
    feed: FeedName,
    after: Cursor,
    rows: Sequence[tuple[Any, ...]],
    limit: int,
    item: Callable[[str, tuple[Any, ...]], BaseModel],
) -> P:
    items = []
    last = after
    for row in rows[:limit]:
        last = Cursor(feed, int(row[0]), int(row[1]))
        items.append(item(last.encode(), row[2:]))
    return page.model_validate(
        {"items": tuple(items), "next_cursor": last.encode(), "has_more": len(rows) > limit}
    )


def _payment_item(cursor: str, row: tuple[Any, ...]) -> PaymentItem | RefundItem:
    (kind, payment_id, entry_id, account_no, channel, txn_id, amount, currency, paid_at, day) = row[
        :10
    ]
    posted_at, terminal_id, reason, status, refund_id, route, code, message, ref, entry_day = row[
        10:20
    ]
    if kind not in (PaymentItemKind.PAYMENT, PaymentItemKind.REVERSAL):
        return RefundItem(
            cursor=cursor,
            kind=PaymentItemKind(kind),
            status=PaymentStatus(status),
            refund_id=refund_id,
            entry_id=int(entry_id),
            account_no=account_no,
            amount=Money(int(amount), currency),
            route=route,
            channel=channel,
            payment_id=None if payment_id is None else int(payment_id),
            original_channel_txn_id=txn_id,
            reason=reason,
            business_date=Tx.read_day(entry_day),
            posted_at=_ts(posted_at),
            provider_reference=ref,
            failure_code=code,
            failure_message=message,
        )
    return PaymentItem(
        cursor=cursor,
        kind=PaymentItemKind(kind),
        status=PaymentStatus(status),
        payment_id=int(payment_id),
        entry_id=int(entry_id),
        account_no=account_no,
        channel=channel,
        channel_txn_id=txn_id,
        amount=Money(int(amount), currency),
        paid_at=_ts(paid_at),
        business_date=Tx.read_day(day),
        posted_at=_ts(posted_at),
        terminal_id=terminal_id,
        reason=reason,
    )


def _order_fields(row: Sequence[Any]) -> dict[str, Any]:
    (order_id, account_no, kind, status, action, reason, payment_id, created, due) = row[:9]
    dispatched, acknowledged, completed, closed, attempts = row[9:14]
    return {
        "order_id": int(order_id),
        "account_no": account_no,
        "kind": kind,
        "status": status,
        "action": action,
        "reason": reason,
        "payment_id": None if payment_id is None else int(payment_id),
        "created_at": _ts(created),
        "due_at": _ts(due),
        "dispatched_at": _maybe_ts(dispatched),
        "acknowledged_at": _maybe_ts(acknowledged),
        "completed_at": _maybe_ts(completed),
        "closed_at": _maybe_ts(closed),
        "attempts": int(attempts),
    }


def _order_item(cursor: str, row: tuple[Any, ...]) -> SupplyOrderItem:
    return SupplyOrderItem(cursor=cursor, **_order_fields(row))


def _event_item(cursor: str, row: tuple[Any, ...]) -> EventItem:
    event_id, event_type, account_no, payload, created_at = row
    body: Mapping[str, Any] = json.loads(payload)
    return EventItem(
        cursor=cursor,
        event_id=int(event_id),
        event_type=event_type,
        account_no=account_no,
        payload=dict(body),
        created_at=_ts(created_at),
    )
