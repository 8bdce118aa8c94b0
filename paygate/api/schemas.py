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
* ``POST /v1/accounts/import`` and ``POST /v1/bills/import`` — :class:`ImportResult`;
* any refusal — :class:`~paygate.api.problems.Problem`.

This module imports no web framework, so that a terminal's client does not load one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from paygate.models import Receipt
from paygate.renames import module_aliases
from paygate.supply import OrderStatus

__all__ = ["Health", "ImportIssue", "ImportResult", "SupplyOrderProgress", "VoucherRedemption"]


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


class ImportIssue(_Frozen):
    """A line of an imported file that was not written: a conflict or a refusal, with why."""

    line: int = Field(ge=2, description="the line of the file, from 1 (line 1 is the header)")
    status: Literal["conflict", "refused"] = Field(
        description="conflict: the key is stored with other data; refused: it cannot be written"
    )
    key: str = Field(description="the line's account_no (accounts) or bill_no (bills)")
    code: str = Field(description="the error code, as the single call would raise it")
    field: str | None = Field(description="the column at fault, where one is")
    error: str


class ImportResult(_Frozen):
    """What an import did with every line of the file: created, replayed (stored before with
    the same data, so nothing changed), a conflict, or refused; the issues in file order."""

    read: int = Field(ge=0, description="records read (the header and blank lines not counted)")
    created: int = Field(ge=0)
    replayed: int = Field(ge=0)
    conflicts: int = Field(ge=0)
    refused: int = Field(ge=0)
    issues: list[ImportIssue] = Field(description="every conflict and refusal, by line")


# Retired names: ReconnectionProgress answered for every supply order, not only reconnections.
__getattr__ = module_aliases(__name__, {"ReconnectionProgress": f"{__name__}:SupplyOrderProgress"})
