"""Payment orders: the account and amount fixed before the customer is sent to pay.

Invariant: an order, once stored, never changes. A channel that pays "order first" (the
online gateway) accepts a notification only for an order it created, for exactly the
order's amount and currency, and before the order's expiry (plus a late-notify window).

Orders are payment orders, not the supply orders of :mod:`paygate.supply`.
The core stores them durably by implementing :class:`OrderStore` on its database; the
in-memory store here is for tests and single-process demos.
"""

from __future__ import annotations

import secrets
import threading
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from paygate.clock import require_aware
from paygate.errors import ConflictError, InvalidAmountError, InvalidInputError
from paygate.models import Identifier, Instant
from paygate.money import Money

__all__ = ["InMemoryOrderStore", "Order", "OrderStore", "new_order", "new_order_id"]

# Order ids start with the creation time in Beijing time: operators read them in the
# channel's portal, which shows Beijing time, and they sort by creation.
_ORDER_ID_ZONE = ZoneInfo("Asia/Shanghai")


class Order(BaseModel):
    """A payment order: who pays, how much, until when. Immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: Identifier
    channel: Identifier
    account_no: Identifier
    amount: Money
    created_at: Instant
    expires_at: Instant

    @model_validator(mode="after")
    def _check(self) -> Order:
        if self.amount.minor <= 0:
            raise ValueError("an order's amount must be positive")
        if self.expires_at <= self.created_at:
            raise ValueError("an order must expire after it is created")
        return self

    def expired(self, now: datetime, *, grace: timedelta = timedelta(0)) -> bool:
        """True when ``now`` is later than the expiry plus ``grace``."""
        return require_aware(now, "now") > self.expires_at + grace


class OrderStore(Protocol):
    """Where payment orders live; the core implements this on its database."""

    def put(self, order: Order) -> None:
        """Store ``order``; the same id with different content is a ConflictError."""
        ...

    def get(self, order_id: str) -> Order | None:
        """The order with ``order_id``, or None."""
        ...


class InMemoryOrderStore:
    """An :class:`OrderStore` in a dict, safe across threads; lost when the process ends."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._lock = threading.Lock()

    def put(self, order: Order) -> None:
        """Store ``order``; storing the identical order again changes nothing."""
        with self._lock:
            existing = self._orders.get(order.order_id)
            if existing is not None and existing != order:
                raise ConflictError(
                    f"order {order.order_id!r} already exists with different content",
                    field="order_id",
                )
            self._orders[order.order_id] = order

    def get(self, order_id: str) -> Order | None:
        """The order with ``order_id``, or None."""
        with self._lock:
            return self._orders.get(order_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._orders)


def new_order_id(now: datetime) -> str:
    """A fresh order id: 14 digits of Beijing time then 16 random hex digits (30 characters).

    Letters and digits only, because gateways in the UnionPay family accept nothing else
    in an order id (8-40 characters).
    """
    local = require_aware(now, "now").astimezone(_ORDER_ID_ZONE)
    return f"{local:%Y%m%d%H%M%S}{secrets.token_hex(8)}"


def new_order(
    channel: str, account_no: str, amount: Money, *, now: datetime, ttl: timedelta
) -> Order:
    """Build a new order for ``channel`` that expires ``ttl`` after ``now``.

    Refuses a non-positive amount and an account number that is not an identifier.
    """
    if not isinstance(amount, Money):
        raise TypeError("amount must be Money")
    if amount.minor <= 0:
        raise InvalidAmountError("an order's amount must be positive", field="amount")
    now = require_aware(now, "now")
    try:
        return Order(
            order_id=new_order_id(now),
            channel=channel,
            account_no=account_no,
            amount=amount,
            created_at=now,
            expires_at=now + ttl,
        )
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "order"
        raise InvalidInputError(first["msg"], field=where) from None
