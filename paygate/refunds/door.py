"""The Gateway's refund and closure methods: one line each, handing the call to the owners.

:class:`RefundDoor` is a part of :class:`~paygate.gateway.Gateway` (its base class), kept
here so that the door stays one screen per concern; it holds no decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from paygate.models import NewBill
from paygate.money import Money
from paygate.refunds.closure import Closures
from paygate.refunds.dispatch import dispatch_refunds
from paygate.refunds.model import AccountClosure, Refund, RefundOrderState, RefundPass
from paygate.refunds.route import Payee, RefundRoute
from paygate.refunds.service import Refunds

__all__ = ["RefundDoor"]


class RefundDoor:
    """Refunds (退费) and account closure (销户) on the Gateway."""

    refunds: Refunds
    closures: Closures

    def use_refund_routes(self, routes: Mapping[str, RefundRoute]) -> None:
        """The refund routes (:mod:`paygate.refunds.route`) refunds may go through, by name."""
        self.refunds.use_routes(routes)

    def refund(
        self,
        account_no: str,
        amount: Money,
        *,
        refund_id: str,
        route: str,
        reason: str = "",
        payee: Payee | None = None,
    ) -> list[Refund]:
        """Refund ``amount`` of the account's credit through ``route``, once per
        ``refund_id``: the money moves to refunds payable and ``pending`` refund orders are
        raised, one per payment refunded against — the first keeps ``refund_id``, the others
        are ``<refund_id>*2``… (docs/refunds.md; :mod:`paygate.refunds.split`)."""
        return self.refunds.refund(
            account_no, amount, refund_id=refund_id, route=route, reason=reason, payee=payee
        )

    def refund_order(self, refund_id: str) -> Refund:
        """The refund order stored under ``refund_id``, as it stands."""
        return self.refunds.get(refund_id)

    def refund_orders(
        self,
        *,
        state: RefundOrderState | None = None,
        account_no: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[tuple[int, Refund]]:
        """Refund orders in the order they were requested, as (row id, refund); a page is
        the orders after row ``after``, at most ``limit``."""
        return self.refunds.list(state=state, account_no=account_no, after=after, limit=limit)

    def complete_refund(self, refund_id: str, provider_reference: str | None = None) -> Refund:
        """Record that the provider paid the refund (its asynchronous confirmation)."""
        return self.refunds.complete(refund_id, provider_reference)

    def fail_refund(self, refund_id: str, code: str, message: str) -> Refund:
        """Record that the provider refused the refund: the money returns to the customer's
        credit and is spent on open bills."""
        return self.refunds.fail(refund_id, code, message)

    def dispatch_refunds(
        self, routes: Mapping[str, RefundRoute] | None = None, now: datetime | None = None
    ) -> RefundPass:
        """One pass over the due refund orders through ``routes`` (default: those set with
        :meth:`use_refund_routes`); see :mod:`paygate.refunds.dispatch`."""
        return dispatch_refunds(self, self.refunds.routes if routes is None else routes, now)

    def close_account(
        self,
        account_no: str,
        *,
        closure_id: str,
        final_bill: NewBill | None = None,
        refund_route: str | None = None,
        payee: Payee | None = None,
        reason: str,
    ) -> AccountClosure:
        """Close the account (销户), once per ``closure_id``: final bill, credit applied,
        refused while anything is owed, remaining credit refunded through ``refund_route``,
        supply closed; later payments are held in suspense (:mod:`paygate.refunds.closure`)."""
        return self.closures.close_account(
            account_no,
            closure_id=closure_id,
            final_bill=final_bill,
            refund_route=refund_route,
            payee=payee,
            reason=reason,
        )
