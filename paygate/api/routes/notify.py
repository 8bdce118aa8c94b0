"""``POST /v1/channels/{channel}/notify``: a channel's notification in its native format.

One route serves every configured channel that notifies (mobile wallets, online payment, the
agent bank, a third-party channel), whichever they are: the path names the channel, and its
adapter verifies, maps and answers in the channel's own acknowledgement format.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.responses import Response

from paygate.api.deps import MetricsDep, RuntimeDep, read_body, request_headers
from paygate.api.problems import UnknownChannelError

__all__ = ["router"]

router = APIRouter()

_CHANNEL: Final = r"^[a-z][a-z0-9_]{1,31}$"


@router.post("/v1/channels/{channel}/notify", operation_id="notify", tags=["channels"])
async def notify(
    request: Request,
    channel: Annotated[str, PathParam(pattern=_CHANNEL)],
    runtime: RuntimeDep,
    metrics: MetricsDep,
) -> Response:
    """A channel's notification in its native format, answered in its own format."""
    adapter = runtime.notify.get(channel)
    if adapter is None:
        raise UnknownChannelError(f"no notify endpoint for channel {channel!r}", field="channel")
    headers = request_headers(request)
    # The adapter refuses an oversized message itself, in its own format: it gets the
    # first limit + 1 bytes, never more.
    body = await read_body(request, adapter.config.max_body_bytes, keep_excess=True)
    result = await runtime.run(lambda: adapter.handle_notify(body, headers, runtime.gateway))
    if result.receipt is not None:
        metrics.count_payment(channel, "replayed" if result.receipt.replayed else "posted")
    elif result.error_code is not None:
        metrics.count_payment(channel, "refused")
    return Response(result.body, status_code=result.status_code, media_type=result.content_type)
