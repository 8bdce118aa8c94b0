"""``GET /docs``: the API reference, Swagger UI over ``/openapi.json``, served with its assets.

Utility networks are offline, so the page loads nothing from elsewhere: the Swagger UI files
ship in the package (``paygate/api/static/swagger-ui``, Swagger UI 5 under the Apache License
2.0, its LICENSE and NOTICE beside it) and are served from ``/docs/static/``; a
Content-Security-Policy holds the browser to this origin. The page describes whatever this
server serves: the terminals' routes, and the service clients' when token signing is
configured. Neither the page nor its assets are in the OpenAPI document.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from starlette.responses import Response

from paygate.api.problems import RouteNotFoundError

__all__ = ["ASSETS", "DOCS_PATH", "router"]

router = APIRouter()

DOCS_PATH: Final = "/docs"
_STATIC: Final = f"{DOCS_PATH}/static"

ASSETS: Final[dict[str, str]] = {
    "swagger-ui/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui/swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui/favicon-32x32.png": "image/png",
    "swagger-ui/LICENSE": "text/plain; charset=utf-8",
    "swagger-ui/NOTICE": "text/plain; charset=utf-8",
    "reference.js": "text/javascript; charset=utf-8",
    "reference.css": "text/css; charset=utf-8",
}
"""The files under ``/docs/static/`` (relative to ``paygate/api/static``) and their types."""

_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

_PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>paygate HTTP API</title>
<link rel="icon" type="image/png" href="{_STATIC}/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="{_STATIC}/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="{_STATIC}/reference.css">
</head>
<body>
<header class="paygate">
<h1>paygate HTTP API</h1>
<p>Terminals sign each request (<code>deviceSignature</code>); billing systems use OAuth 2.0
client credentials (<code>serviceClient</code>). The document itself:
<a href="/openapi.json">/openapi.json</a>.</p>
</header>
<main id="reference"></main>
<script src="{_STATIC}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{_STATIC}/reference.js"></script>
</body>
</html>
"""


@router.get(DOCS_PATH, include_in_schema=False)
async def reference_page() -> Response:
    """The API reference page."""
    return Response(
        _PAGE.encode("utf-8"),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": _POLICY},
    )


@router.get(_STATIC + "/{name:path}", include_in_schema=False)
async def reference_asset(name: str) -> Response:
    """One of the page's files, from the package; only those :data:`ASSETS` names."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise RouteNotFoundError(f"no route at {_STATIC}/{name}")
    # The same version's files never change: a browser may keep them for a day.
    return Response(
        _read(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )


@cache
def _read(name: str) -> bytes:
    return files("paygate.api").joinpath("static", *name.split("/")).read_bytes()
