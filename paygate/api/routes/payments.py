"""``POST /v1/payments``: a kiosk's signed payment, verified by the kiosk adapter, posted once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api import auth
from paygate.api.config import KIOSK_PAY_PATH
from paygate.api.deps import MetricsDep, RuntimeDep, json_response, read_body, request_headers
from paygate.channels.kiosk import KioskReceipt, kiosk_receipt
from paygate.errors import PaygateError

__all__ = ["router"]

router = APIRouter()


@router.post(KIOSK_PAY_PATH, operation_id="pay", tags=["terminals"])
async def pay(request: Request, runtime: RuntimeDep, metrics: MetricsDep) -> Response:
    """A kiosk's payment: verified and mapped by the kiosk adapter, posted once."""
    headers = request_headers(request)
    body = await read_body(request, runtime.kiosk.config.max_body_bytes)

    def work() -> KioskReceipt:
        try:
            receipt, intent, sent, closed = auth.post_kiosk_payment(
                runtime.gateway, runtime.nonces, runtime.kiosk, body, headers
            )
        except PaygateError:
            metrics.count_payment(runtime.kiosk.name, "refused")
            raise
        metrics.count_payment(runtime.kiosk.name, "replayed" if receipt.replayed else "posted")
        terminal = intent.terminal_id
        assert terminal is not None
        # A payment taken offline may arrive after its day was closed: the kiosk is told,
        # for that close's figures may not include it.
        return kiosk_receipt(receipt, terminal, sent.txn_id, after_close=closed)

    printable = await runtime.run(work)
    return json_response(printable, 200 if printable.replayed else 201)
