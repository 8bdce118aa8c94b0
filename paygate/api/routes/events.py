"""``GET /v1/events``: the transactional outbox's events in commit order, for a billing system
holding the ``events:read`` scope (whether or not a sink has delivered them)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from paygate.api.bearer import scoped
from paygate.api.deps import RuntimeDep, json_response
from paygate.api.routes.feed_pages import page_request
from paygate.feeds import EventPage
from paygate.tokens import Principal

__all__ = ["router"]

router = APIRouter()

SCOPE: Final = "events:read"

Reader = Annotated[Principal, Depends(scoped(SCOPE))]


@router.get("/v1/events", operation_id="listEvents", tags=["feeds"])
async def list_events(request: Request, runtime: RuntimeDep, _reader: Reader) -> Response:
    """Events committed after ``after``, oldest first."""
    after, limit = page_request(request)

    def work() -> EventPage:
        return runtime.gateway.events_since(after, limit)

    return json_response(await runtime.run(work))
