"""``POST /v1/kiosks/{device_id}/close``: a kiosk's end-of-day close against the ledger."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api import auth
from paygate.api.deps import (
    RuntimeDep,
    json_response,
    matching,
    read_body,
    request_headers,
    request_target,
)
from paygate.api.problems import DeviceMismatchError
from paygate.channels.kiosk import KioskCloseResult
from paygate.channels.wire import parse_json_object
from paygate.devices import HEADER_DEVICE
from paygate.errors import PaygateError

__all__ = ["router"]

router = APIRouter()

_DEVICE_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"


@router.post("/v1/kiosks/{device_id}/close", operation_id="closeKioskDay", tags=["terminals"])
async def close_kiosk_day(request: Request, device_id: str, runtime: RuntimeDep) -> Response:
    """A kiosk's end-of-day close: its counted cash and totals against the ledger."""
    headers, target = request_headers(request), request_target(request)
    body = await read_body(request, runtime.kiosk.config.max_body_bytes)

    def refusal() -> PaygateError | None:
        try:
            matching(device_id, _DEVICE_ID, "device_id", "a registered device id")
            auth.idempotency_key(headers)
            auth.require_json(headers)
            # Strictly, before the adapter's reading: a key twice is refused, not settled.
            parse_json_object(body, source=runtime.kiosk.name)
        except PaygateError as exc:
            return exc
        if headers.get(HEADER_DEVICE.lower()) != device_id:
            # A verified request is from the device its header names, so path, header
            # and signer are one when header and path agree.
            return DeviceMismatchError(
                f"the request is signed for another device than {device_id}",
                field=HEADER_DEVICE,
            )
        return None

    def work() -> KioskCloseResult:
        refused = refusal()
        if refused is None:
            return runtime.kiosk.close_day(body, headers, path=target)
        # Who is asking is settled first (recording the nonce), then what they asked:
        # an unauthenticated request is answered 401 whatever else is wrong with it.
        runtime.kiosk.authenticate(target, body, headers)
        raise refused

    result = await runtime.run(work)
    return json_response(result, 200 if result.replayed else 201)
