"""The refund routes: each speaks one provider's refund API (docs/refund-routes.md).

:func:`build_routes` builds the routes configured in ``[refunds]``
(:class:`RefundsSection`); each one keeps the :class:`~paygate.refunds.route.RefundRoute`
contract.
"""

from paygate.refunds.routes.alipay import AlipayRefundRoute
from paygate.refunds.routes.bank_transfer import (
    BankTransferRoute,
    ReturnLine,
    TransferLine,
    read_return_file,
    read_transfer_file,
)
from paygate.refunds.routes.online import OnlineRefundRoute
from paygate.refunds.routes.settings import (
    AlipayRouteSection,
    BankTransferRouteSection,
    OnlineRouteSection,
    RefundsSection,
    WechatPayRouteSection,
    build_routes,
)
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
