"""``GET /healthz`` and ``GET /metrics``: what operations watch."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.responses import Response

from paygate.api.deps import MetricsDep, RuntimeDep, json_response
from paygate.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from paygate.api.problems import database_unavailable
from paygate.api.schemas import Health
from paygate.errors import StoreError
from paygate.reports import DatabaseFigures, database_figures

__all__ = ["router"]

router = APIRouter()

_log = logging.getLogger("paygate.api")


@router.get("/healthz", operation_id="health", tags=["operations"])
async def healthz(runtime: RuntimeDep) -> Response:
    """The gateway answers and its database is reachable."""
    await runtime.run(runtime.gateway.store.ping)
    return json_response(Health(status="ok", database="ok"))


@router.get("/metrics", operation_id="metrics", tags=["operations"])
async def prometheus(runtime: RuntimeDep, metrics: MetricsDep) -> Response:
    """Prometheus text exposition; see docs/http-api.md for each family."""

    def figures() -> DatabaseFigures | None:
        try:
            return runtime.gateway.store.run(database_figures, write=False, attempts=1)
        except Exception as exc:  # a scrape reports the database down, it does not fail
            if database_unavailable(exc) is None and not isinstance(exc, StoreError):
                raise
            _log.warning("metrics: the database could not be read: %r", exc)
            return None

    database = await runtime.run(figures)
    metrics.sample(runtime.gateway.store.engine.pool)
    return Response(metrics.render(database), media_type=METRICS_CONTENT_TYPE)
