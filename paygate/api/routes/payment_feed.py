"""``GET /v1/payments`` and ``GET /v1/accounts/{account_no}/payments``: what was paid (and
refunded), in commit order, for a billing system holding the ``payments:read`` scope
(paygate.feeds)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from paygate.api.bearer import scoped
from paygate.api.deps import RuntimeDep, json_response, matching
from paygate.api.routes.feed_pages import page_request
from paygate.feeds import PaymentPage
from paygate.tokens import Principal

__all__ = ["router"]

router = APIRouter()

SCOPE: Final = "payments:read"
_ACCOUNT_NO: Final = r"^[!-~]{1,64}\Z"

Reader = Annotated[Principal, Depends(scoped(SCOPE))]


@router.get("/v1/payments", operation_id="listPayments", tags=["feeds"])
async def list_payments(request: Request, runtime: RuntimeDep, _reader: Reader) -> Response:
    """Payments, reversals and refund movements committed after ``after``, oldest first;
    ``kind`` tells them apart, a consumer skips kinds it does not know."""
    after, limit = page_request(request)

    def work() -> PaymentPage:
        return runtime.gateway.payments_since(after, limit)

    return json_response(await runtime.run(work))


@router.get(
    "/v1/accounts/{account_no:path}/payments",
    operation_id="listAccountPayments",
    tags=["feeds"],
)
async def list_account_payments(
    request: Request, account_no: str, runtime: RuntimeDep, _reader: Reader
) -> Response:
    """One account's payments, reversals and refund movements after ``after``, in the
    payment feed's order."""
    after, limit = page_request(request)
    matching(account_no, _ACCOUNT_NO, "account_no", "1-64 printable ASCII characters")

    def work() -> PaymentPage:
        return runtime.gateway.account_payments_since(account_no, after, limit)

    return json_response(await runtime.run(work))
