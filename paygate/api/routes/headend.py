"""``POST /v1/supply-orders/{order_id}/confirm``: the head-end's signed report on a supply order.

The same route answers at its retired path, ``/v1/reconnections/{order_id}/confirm``
(deprecated in the OpenAPI document): it always took reports on disconnection orders too.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api import auth
from paygate.api.deps import RuntimeDep, json_response, matching, read_body, request_headers
from paygate.api.problems import UnsupportedMediaTypeError
from paygate.api.schemas import SupplyOrderProgress
from paygate.channels.wire import parse_json_object
from paygate.errors import InvalidInputError, ParseError
from paygate.headend.webhook import MAX_CALLBACK_BYTES, verify_callback

__all__ = ["RETIRED_SUPPLY_ORDER_CONFIRM", "SUPPLY_ORDER_CONFIRM", "router"]

router = APIRouter()

_ORDER_ID: Final = r"^[1-9][0-9]{0,18}\Z"

SUPPLY_ORDER_CONFIRM: Final = "/v1/supply-orders/{order_id}/confirm"
"""Where a head-end reports on a supply order."""
RETIRED_SUPPLY_ORDER_CONFIRM: Final = "/v1/reconnections/{order_id}/confirm"
"""The retired path of :data:`SUPPLY_ORDER_CONFIRM`, served and marked deprecated."""


@router.post(
    RETIRED_SUPPLY_ORDER_CONFIRM,
    operation_id="confirmReconnection",
    tags=["head-ends"],
    deprecated=True,
)
@router.post(SUPPLY_ORDER_CONFIRM, operation_id="confirmSupplyOrder", tags=["head-ends"])
async def confirm_supply_order(request: Request, order_id: str, runtime: RuntimeDep) -> Response:
    """The head-end's signed report on a supply order, recorded once."""
    secret = runtime.callback_secret
    assert secret is not None, "served only when configured"
    headers = request_headers(request)
    body = await read_body(request, MAX_CALLBACK_BYTES)

    def work() -> SupplyOrderProgress:
        now = runtime.gateway.clock.now()
        try:
            auth.require_json(headers)
        except UnsupportedMediaTypeError as refusal:
            # The signature first: a caller without the secret is told 401, not
            # what the route reads. A signed body not in JSON cannot be a report.
            with suppress(ParseError):
                verify_callback(body, headers, secret=secret, now=now)
            raise refusal from None
        report = verify_callback(body, headers, secret=secret, now=now)
        # A signed report read strictly too: a key given twice is refused, not settled.
        parse_json_object(body, source="headend")
        matching(order_id, _ORDER_ID, "order_id", "a supply order's number")
        if report.order_id != int(order_id):
            raise InvalidInputError(
                f"the signed report is about order {report.order_id}", field="order_id"
            )
        status = runtime.gateway.record_order_progress(
            report.order_id,
            report.outcome,
            at=report.at,
            actor="headend",
            reference=report.reference,
        )
        return SupplyOrderProgress(order_id=report.order_id, status=status)

    return json_response(await runtime.run(work))
