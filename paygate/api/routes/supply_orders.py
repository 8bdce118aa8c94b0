"""``GET /v1/supply-orders`` and ``GET /v1/supply-orders/{order_id}``: reconnection and
disconnection orders, for a billing system holding the ``supply-orders:read`` scope."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from paygate.api.bearer import scoped
from paygate.api.deps import RuntimeDep, json_response, matching
from paygate.api.problems import RequestValidationProblem
from paygate.api.routes.feed_pages import page_request
from paygate.feeds import SupplyOrder, SupplyOrderPage
from paygate.tokens import Principal

__all__ = ["router"]

router = APIRouter()

SCOPE: Final = "supply-orders:read"
_ORDER_ID: Final = r"^[1-9][0-9]{0,18}\Z"

Reader = Annotated[Principal, Depends(scoped(SCOPE))]


@router.get("/v1/supply-orders", operation_id="listSupplyOrders", tags=["feeds"])
async def list_supply_orders(request: Request, runtime: RuntimeDep, _reader: Reader) -> Response:
    """Supply orders created after ``after``, oldest first, each as it stands now."""
    after, limit = page_request(request)

    def work() -> SupplyOrderPage:
        return runtime.gateway.supply_orders_since(after, limit)

    return json_response(await runtime.run(work))


@router.get("/v1/supply-orders/{order_id}", operation_id="getSupplyOrder", tags=["feeds"])
async def get_supply_order(order_id: str, runtime: RuntimeDep, _reader: Reader) -> Response:
    """One supply order as it stands."""
    matching(order_id, _ORDER_ID, "order_id", "a supply order's number")
    if int(order_id) > 2**63 - 1:
        raise RequestValidationProblem("order_id is a supply order's number", field="order_id")

    def work() -> SupplyOrder:
        return runtime.gateway.supply_order(int(order_id))

    return json_response(await runtime.run(work))
