"""The refund routes: each speaks one provider's refund API (docs/refund-routes.md).

:func:`build_routes` builds the routes configured in ``[refunds]``
(:class:`RefundsSection`); each one keeps the :class:`~paygate.refunds.route.RefundRoute`
contract.

The configuration (:class:`~paygate.config.PaygateConfig`) reads ``[refunds]`` through this
package, so only the sections are imported here at once; a route's module, which speaks a
provider's protocol (and brings httpx and the channels' signature code), is imported when one
of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from paygate.refunds.routes.settings import (
    AlipayRouteSection,
    BankTransferRouteSection,
    OnlineRouteSection,
    RefundsSection,
    WechatPayRouteSection,
    build_routes,
)

if TYPE_CHECKING:
    from paygate.refunds.routes.alipay import AlipayRefundRoute
    from paygate.refunds.routes.bank_transfer import (
        BankTransferRoute,
        ReturnLine,
        TransferLine,
        read_return_file,
        read_transfer_file,
    )
    from paygate.refunds.routes.online import OnlineRefundRoute
    from paygate.refunds.routes.wechatpay import WechatPayRefundRoute

__all__ = [
    "AlipayRefundRoute",
    "AlipayRouteSection",
    "BankTransferRoute",
    "BankTransferRouteSection",
    "OnlineRefundRoute",
    "OnlineRouteSection",
    "RefundsSection",
    "ReturnLine",
    "TransferLine",
    "WechatPayRefundRoute",
    "WechatPayRouteSection",
    "build_routes",
    "read_return_file",
    "read_transfer_file",
]

_ROUTE_MODULES: Final = {
    "AlipayRefundRoute": "alipay",
    "BankTransferRoute": "bank_transfer",
    "ReturnLine": "bank_transfer",
    "TransferLine": "bank_transfer",
    "read_return_file": "bank_transfer",
    "read_transfer_file": "bank_transfer",
    "OnlineRefundRoute": "online",
    "WechatPayRefundRoute": "wechatpay",
}


def __getattr__(name: str) -> Any:
    module = _ROUTE_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
