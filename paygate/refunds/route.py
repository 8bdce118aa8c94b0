"""What a refund route is: the provider side of a refund order.

A route speaks one provider's refund API (Alipay ``alipay.trade.refund``, WeChat Pay v3
``/v3/refund/domestic/refunds``, the online gateway's refund, a transfer line in the bank
agent's file). The refund order's owner calls :meth:`RefundRoute.submit` once and
:meth:`RefundRoute.query` until the outcome is final; both are safe to repeat, because the
provider de-duplicates on :attr:`RefundRequest.refund_id` (its ``out_request_no`` /
``out_refund_no``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from paygate.money import Money

__all__ = [
    "Payee",
    "RefundOutcome",
    "RefundRequest",
    "RefundRoute",
    "RefundRouteUnavailable",
    "RefundState",
]


@dataclass(frozen=True, slots=True)
class Payee:
    """The bank account a transfer refund is paid to (the bank-transfer route needs one)."""

    name: str
    account_number: str
    bank_code: str
    """The receiving bank's identifier (for example its CNAPS 联行号)."""


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """One refund order as its route sees it."""

    refund_id: str
    """The caller's idempotency key, sent to the provider as its refund request number."""
    account_no: str
    amount: Money
    reason: str
    requested_at: datetime
    original_channel_txn_id: str | None = None
    """The payment refunded against, by its ``channel_txn_id`` (the provider's
    ``out_trade_no`` / order id); ``None`` for a bank transfer."""
    original_amount: Money | None = None
    """That payment's amount (WeChat Pay asks for it beside the refund)."""
    payee: Payee | None = None
    """Where a bank transfer goes; ``None`` for the provider routes."""


class RefundState(StrEnum):
    """Where a refund stands at the provider."""

    PENDING = "pending"
    """Accepted, not yet final: ask again later with :meth:`RefundRoute.query`."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Final: the provider refused or gave up; the money goes back to the customer's credit."""


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """What the provider answered."""

    state: RefundState
    provider_reference: str | None = None
    """The provider's own refund id, where it gives one."""
    failure_code: str | None = None
    failure_message: str | None = None


class RefundRouteUnavailable(Exception):
    """The provider could not be asked (network error, timeout, 5xx, "system busy").

    Nothing is known about the refund; the order stays where it is and is tried again.
    """


class RefundRoute(Protocol):
    """A provider's refund API."""

    name: str
    """The route's name, as ``Gateway.refund(..., route=…)`` takes it."""
    channel: str | None
    """The channel whose payments this route refunds against; ``None`` when it needs none."""

    def submit(self, request: RefundRequest) -> RefundOutcome:
        """Ask the provider to refund; repeating it with the same request is harmless.

        Raises :class:`RefundRouteUnavailable` when the provider could not be asked.
        """
        ...

    def query(self, request: RefundRequest) -> RefundOutcome:
        """Ask the provider where an earlier :meth:`submit` stands."""
        ...
