"""Mobile wallets: Alipay-style and WeChat Pay API v3-style payment notifications and bills.

Invariant: a wallet notification reaches the core only after its signature verified against
the configured wallet key (and, for WeChat Pay, its timestamp is within the window, its nonce
is new and its resource decrypted). The wallet is told "received" only after the core
returned a receipt: a notification the core did not record is retried by the wallet, and a
retry of one it did record is a replay in the core, never a second posting.

Two channels live here, ``alipay`` and ``wechatpay``: each wallet settles separately, sends
its own bill and numbers its transactions in its own namespace.

The customer's account number travels inside the wallet order. The utility puts it in
``passback_params`` (Alipay; URL-encoded as Alipay requires) or ``attach`` (WeChat Pay) when
it creates the order; the wallet returns the field verbatim in the notification, where the
signature covers it. A verified payment without it, or naming an account the core does not
know, is acknowledged all the same (the wallet would retry for a day, and no retry can
supply the account) and held for suspense (:func:`~paygate.channels.base.held_for_suspense`):
it surfaces in reconciliation as a statement line without a ledger payment, which the
policy posts to suspense with a finding.

One module per wallet, each reading top to bottom (wire models, signature check, mapping to
:class:`~paygate.models.PaymentIntent`, statement reader, the adapter):
:mod:`~paygate.channels.mobile.alipay` and :mod:`~paygate.channels.mobile.wechatpay`, on what
they share in :mod:`~paygate.channels.mobile.common` (time zone, wire base, settlement rules).
Every public name is imported from here.
"""

from __future__ import annotations

from paygate.channels.mobile.alipay import (
    ALIPAY_BILL_COLUMNS,
    AlipayAdapter,
    AlipayConfig,
    AlipayNotification,
    alipay_intent,
    alipay_signing_string,
    read_alipay_bill,
    verify_alipay_notify,
)
from paygate.channels.mobile.common import wallet_settlement
from paygate.channels.mobile.wechatpay import (
    WECHAT_BILL_COLUMNS,
    WECHAT_SUMMARY_COLUMNS,
    WechatNotification,
    WechatPayAdapter,
    WechatPayConfig,
    WechatPayer,
    WechatResource,
    WechatTransaction,
    decrypt_wechat_resource,
    read_wechat_trade_bill,
    wechat_intent,
    wechat_signed_message,
)

__all__ = [
    "ALIPAY_BILL_COLUMNS",
    "WECHAT_BILL_COLUMNS",
    "WECHAT_SUMMARY_COLUMNS",
    "AlipayAdapter",
    "AlipayConfig",
    "AlipayNotification",
    "WechatNotification",
    "WechatPayAdapter",
    "WechatPayConfig",
    "WechatPayer",
    "WechatResource",
    "WechatTransaction",
    "alipay_intent",
    "alipay_signing_string",
    "decrypt_wechat_resource",
    "read_alipay_bill",
    "read_wechat_trade_bill",
    "verify_alipay_notify",
    "wallet_settlement",
    "wechat_intent",
    "wechat_signed_message",
]
