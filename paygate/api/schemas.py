"""The JSON bodies of the HTTP API that are not already records of the core or of a channel.

Invariant: the server answers with these models and the client reads its answers into the
same ones, so the two cannot drift; amounts are :class:`~paygate.money.Money`, which travels
as ``{"minor": <integer minor units>, "currency": "<ISO 4217>"}`` and is never a float.

What a route answers, by route:

* ``GET /v1/accounts/{account_no}`` — :class:`~paygate.models.AccountStatus`;
* ``POST /v1/payments`` — :class:`~paygate.channels.kiosk.KioskReceipt`;
* ``POST /v1/kiosks/{id}/close`` — :class:`~paygate.channels.kiosk.KioskCloseResult`;
* ``POST /v1/vouchers/redeem`` — :class:`VoucherRedemption`;
* ``POST /v1/supply-orders/{id}/confirm`` — :class:`SupplyOrderProgress`;
* ``GET /healthz`` — :class:`Health`;
* any refusal — :class:`~paygate.api.problems.Problem`.

This module imports no web framework, so that a terminal's client does not load one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from paygate.models import Receipt
from paygate.renames import module_aliases
from paygate.supply import OrderStatus

__all__ = ["Health", "SupplyOrderProgress", "VoucherRedemption"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VoucherRedemption(_Frozen):
    """A redeemed card: ``redeemed`` the first time, ``replayed`` when asked again."""

    result: Literal["redeemed", "replayed"]
    receipt: Receipt


class SupplyOrderProgress(_Frozen):
    """Where a supply order stands once the head-end's report is recorded."""

    order_id: int
    status: OrderStatus = Field(description="never moves backwards; a repeat changes nothing")


class Health(_Frozen):
    """The gateway answers and its database is reachable."""

    status: Literal["ok"]
    database: Literal["ok"]


# Retired names: ReconnectionProgress answered for every supply order, not only reconnections.
__getattr__ = module_aliases(__name__, {"ReconnectionProgress": f"{__name__}:SupplyOrderProgress"})
