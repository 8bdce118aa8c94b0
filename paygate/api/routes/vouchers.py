"""``POST /v1/vouchers/redeem``: a voucher redeemed for an account from a terminal."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api import auth
from paygate.api.deps import (
    RuntimeDep,
    json_response,
    read_body,
    request_headers,
    request_target,
)
from paygate.api.schemas import VoucherRedemption
from paygate.devices import HEADER_DEVICE

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/vouchers/redeem", operation_id="redeemVoucher", tags=["terminals"])
async def redeem_voucher(request: Request, runtime: RuntimeDep) -> Response:
    """Redeem a voucher for an account, from a registered terminal."""
    adapter = runtime.vouchers
    assert adapter is not None, "served only when configured"
    headers, target = request_headers(request), request_target(request)
    body = await read_body(request, adapter.config.max_body_bytes)

    def work() -> VoucherRedemption:
        device = runtime.authenticate("POST", target, headers, body)
        auth.idempotency_key(headers)
        auth.require_json(headers)
        trusted = {k: v for k, v in headers.items() if k != HEADER_DEVICE.lower()}
        trusted[HEADER_DEVICE] = device.device_id
        receipt = adapter.redeem(body, trusted)
        return VoucherRedemption(
            result="replayed" if receipt.replayed else "redeemed", receipt=receipt
        )

    redemption = await runtime.run(work)
    return json_response(redemption, 200 if redemption.result == "replayed" else 201)
