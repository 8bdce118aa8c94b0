"""``GET /v1/accounts/{account_no}``: what an account owes, for a kiosk or POS screen."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from paygate.api.deps import (
    RuntimeDep,
    json_response,
    matching,
    request_headers,
    request_target,
)
from paygate.models import AccountStatus

__all__ = ["router"]

router = APIRouter()

_ACCOUNT_NO: Final = r"^[!-~]{1,64}\Z"


def _masked(name: str | None) -> str | None:
    # A kiosk shows the name so that the customer recognises the account, as Chinese
    # counters do ("张*"): enough to confirm, not enough to harvest names by account number.
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


@router.get("/v1/accounts/{account_no:path}", operation_id="getAccount", tags=["terminals"])
async def account(request: Request, account_no: str, runtime: RuntimeDep) -> Response:
    """What the account owes now: arrears, late fee, bills and supply state."""
    headers, target = request_headers(request), request_target(request)

    def work() -> AccountStatus:
        runtime.authenticate("GET", target, headers, b"")
        # ``:path``: an account number may hold "/" (sent as %2F), which the router decodes.
        matching(account_no, _ACCOUNT_NO, "account_no", "1-64 printable ASCII characters")
        return runtime.gateway.account_status(account_no)

    status = await runtime.run(work)
    return json_response(status.model_copy(update={"name": _masked(status.name)}))
