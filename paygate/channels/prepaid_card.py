"""Deprecated: the voucher channel is :mod:`paygate.channels.voucher` (channel ``voucher``).

Importing this module warns (:class:`DeprecationWarning`); its names are aliases of the
voucher module's: ``PrepaidCardAdapter`` is :class:`~paygate.channels.voucher.VoucherAdapter`,
and so on. The channel's name is ``voucher``; ``prepaid_card`` is read as an alias of it
wherever a channel is named (:mod:`paygate.renames`).
"""

from __future__ import annotations

import warnings

from paygate.renames import module_aliases

warnings.warn(
    "paygate.channels.prepaid_card is deprecated; use paygate.channels.voucher",
    DeprecationWarning,
    stacklevel=2,
)

_NEW = "paygate.channels.voucher"

__getattr__ = module_aliases(
    __name__,
    {
        "PREPAID_CARD_STATEMENT_COLUMNS": f"{_NEW}:VOUCHER_STATEMENT_COLUMNS",
        "PrepaidCardAdapter": f"{_NEW}:VoucherAdapter",
        "PrepaidCardConfig": f"{_NEW}:VoucherConfig",
        "PrepaidCardContext": f"{_NEW}:VoucherContext",
        "RedeemRequest": f"{_NEW}:RedeemRequest",
        "VoucherRedeemer": f"{_NEW}:VoucherRedeemer",
        "parse_redeem_request": f"{_NEW}:parse_redeem_request",
        "prepaid_card_settlement": f"{_NEW}:voucher_settlement",
        "read_prepaid_card_statement": f"{_NEW}:read_voucher_statement",
    },
)
