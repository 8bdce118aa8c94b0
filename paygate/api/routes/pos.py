"""``POST /v1/pos/{operation}``: a POS terminal's MAC-signed message, in its own format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.responses import Response

from paygate.api.deps import MetricsDep, RuntimeDep, read_body, request_headers

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/pos/{operation}", operation_id="posMessage", tags=["terminals"])
async def pos_message(
    request: Request,
    operation: Annotated[str, PathParam(pattern="^(sale|void|settle)$")],
    runtime: RuntimeDep,
    metrics: MetricsDep,
) -> Response:
    """A POS terminal's MAC-signed sale, same-batch void or batch settlement, answered
    in the terminal's own format (see docs/channels/pos.md)."""
    adapter = runtime.pos
    assert adapter is not None, "served only when configured"
    handle = {
        "sale": adapter.handle_pay,
        "void": adapter.handle_void,
        "settle": adapter.handle_daily_close,
    }[operation]
    headers = request_headers(request)
    body = await read_body(request, adapter.config.max_body_bytes, keep_excess=True)
    result = await runtime.run(lambda: handle(body, headers, runtime.gateway))
    if result.receipt is not None:
        metrics.count_payment(adapter.name, "replayed" if result.receipt.replayed else "posted")
    elif result.error_code is not None and operation == "sale":
        metrics.count_payment(adapter.name, "refused")
    return Response(result.body, status_code=result.status_code, media_type=result.content_type)
