"""The OpenAPI description of the service-client routes: the token endpoint, the feeds and the
imports.

They authenticate differently from the terminal routes (OAuth 2.0 client credentials and
bearer tokens, not device signatures), so they are described here, with the document's
``securitySchemes``: ``serviceClient`` (the client-credentials flow, with its scopes) on every
feed and import route, ``clientBasic`` (HTTP Basic with the client id and secret) on the
token endpoint.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic.json_schema import models_json_schema

from paygate.api.routes.imports import ACCOUNTS_IMPORT_PATH, BILLS_IMPORT_PATH, CSV_MEDIA_TYPE
from paygate.api.schemas import ImportResult
from paygate.billing_file import ACCOUNT_FILE_COLUMNS, BILL_FILE_COLUMNS
from paygate.feeds import EventPage, PaymentPage, SupplyOrder, SupplyOrderPage
from paygate.service_clients import SCOPES

__all__ = ["SERVICE_OPERATIONS", "describe_service_routes", "security_schemes"]

_REF: Final = "#/components/schemas/{model}"
_TOKEN: Final = ("post", "/v1/oauth/token")

_SCOPE_TEXT: Final = {
    "payments:read": "read the payment feed",
    "events:read": "read the event feed",
    "supply-orders:read": "read supply orders",
    "bills:write": "issue bills",
    "accounts:write": "open and change accounts",
}

# (method, path) -> (scope, page model, answer, path parameter schemas, is a feed)
_FEEDS: Final[dict[tuple[str, str], tuple[str, Any, str, dict[str, Any], bool]]] = {
    ("get", "/v1/payments"): (
        "payments:read",
        PaymentPage,
        "payments and reversals after `after`, in commit order",
        {},
        True,
    ),
    ("get", "/v1/accounts/{account_no}/payments"): (
        "payments:read",
        PaymentPage,
        "the account's payments and reversals after `after`, in the payment feed's order",
        {"account_no": {"type": "string", "pattern": "^[!-~]{1,64}$"}},
        True,
    ),
    ("get", "/v1/supply-orders"): (
        "supply-orders:read",
        SupplyOrderPage,
        "supply orders created after `after`, each as it stands now",
        {},
        True,
    ),
    ("get", "/v1/supply-orders/{order_id}"): (
        "supply-orders:read",
        SupplyOrder,
        "the supply order as it stands",
        {"order_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
        False,
    ),
    ("get", "/v1/events"): (
        "events:read",
        EventPage,
        "outbox events after `after`, in commit order",
        {},
        True,
    ),
}

# (method, path) -> (scope, what the body is)
_IMPORTS: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("post", ACCOUNTS_IMPORT_PATH): (
        "accounts:write",
        "the accounts file of `paygate accounts import`: a header line, then one account a line; "
        f"columns {', '.join(ACCOUNT_FILE_COLUMNS)} (only account_no required)",
    ),
    ("post", BILLS_IMPORT_PATH): (
        "bills:write",
        "the bills file of `paygate bills import`: a header line, then one bill a line; "
        f"columns {', '.join(BILL_FILE_COLUMNS)} (currency optional; amount in major units)",
    ),
}

_IMPORT_PROBLEMS: Final = {
    400: "`malformed_file` (lines that are not records, the first at `line` and `field`, up to "
    "100 in `errors`; nothing was written), `invalid_request` (an Authorization header not in "
    "the bearer syntax)",
    401: "no bearer token (`token_required`) or one not valid now (`invalid_token`)",
    403: "a valid token without this route's scope (`insufficient_scope`)",
    413: "the body is over `[api] import_max_bytes` (`payload_too_large`); nothing was written",
    415: "the body is not `text/csv` in UTF-8 (`unsupported_media_type`)",
    503: "the database is not available now; retry later (the file again, whole)",
}

SERVICE_OPERATIONS: Final = frozenset({_TOKEN, *_FEEDS, *_IMPORTS})
"""The (method, path) of every operation this module describes."""

_PAGE_PARAMETERS: Final = (
    {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "the `next_cursor` (or an item's `cursor`) of the last page read; "
        "absent: from the start",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,200}$"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "items in the page",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
)

_PROBLEMS: Final = {
    400: "`invalid_cursor` (a cursor this feed did not give out), `invalid_input`, or "
    "`invalid_request` (an Authorization header not in the bearer syntax)",
    401: "no bearer token (`token_required`) or one not valid now (`invalid_token`: forged, "
    "another key, expired, not yet valid, its client revoked or rotated)",
    403: "a valid token without this route's scope (`insufficient_scope`)",
    404: "`unknown_account`, `unknown_order`",
    503: "the database is not available now; retry later",
}

_OAUTH_ERROR: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [
                "invalid_request",
                "invalid_client",
                "unsupported_grant_type",
                "invalid_scope",
                "temporarily_unavailable",
            ],
        },
        "error_description": {"type": "string"},
    },
}


_REQUEST_ID: Final = {
    "X-Request-Id": {
        "description": "this request's id, also in any problem; quote it to operators",
        "required": True,
        "schema": {"type": "string"},
    }
}
_CHALLENGE: Final = {
    "description": "the RFC 6750 Bearer challenge",
    "schema": {"type": "string"},
}


def security_schemes() -> dict[str, Any]:
    """The service clients' schemes: the client-credentials flow, and HTTP Basic for the token
    endpoint."""
    return {
        "serviceClient": {
            "type": "oauth2",
            "description": "a registered service client (`paygate clients add`): it posts its id "
            "and secret to `POST /v1/oauth/token` (client credentials, RFC 6749 §4.4) and sends "
            "the token it gets as `Authorization: Bearer <token>` (RFC 6750) until it expires "
            "(`expires_in`). Each route needs one scope; a client is registered with some.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": _TOKEN[1],
                    "scopes": {scope: _SCOPE_TEXT[scope] for scope in sorted(SCOPES)},
                }
            },
        },
        "clientBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "the client id and secret (or `client_id` and `client_secret` in the "
            "form, never both)",
        },
    }


def _problems(statuses: dict[int, str], problem: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, text in statuses.items():
        headers: dict[str, Any] = dict(_REQUEST_ID)
        if status in (401, 403):
            headers["WWW-Authenticate"] = _CHALLENGE
        if status == 503:
            headers["Retry-After"] = {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string"},
            }
        responses[str(status)] = {
            "description": text,
            "headers": headers,
            "content": {"application/problem+json": {"schema": problem}},
        }
    return responses


def _token_operation(operation: dict[str, Any], problem: dict[str, Any]) -> None:
    operation["security"] = [{"clientBasic": []}, {}]
    operation["requestBody"] = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string", "description": "space-separated"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
    json_answer = {"application/json": {"schema": _OAUTH_ERROR}}
    operation["responses"] = {
        "200": {
            "description": "the token (RFC 6749 §5.1)",
            "headers": _REQUEST_ID,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string", "enum": ["Bearer"]},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        },
        "400": {
            "description": "refused (RFC 6749 §5.2)",
            "headers": _REQUEST_ID,
            "content": json_answer,
        },
        "401": {"description": "`invalid_client`", "headers": _REQUEST_ID, "content": json_answer},
        "429": {
            "description": "`temporarily_unavailable`: too many failed authentications of the "
            "client id or from the source address within the window; retry after Retry-After",
            "headers": {
                **_REQUEST_ID,
                "Retry-After": {
                    "description": "seconds until enough failures have left the window",
                    "schema": {"type": "string"},
                },
            },
            "content": json_answer,
        },
        "413": {
            "description": "the body is over 4096 bytes",
            "headers": _REQUEST_ID,
            "content": {"application/problem+json": {"schema": problem}},
        },
    }


def describe_service_routes(document: dict[str, Any], problem: dict[str, Any]) -> None:
    """Describe the service-client operations of ``document`` (those it serves) in place."""
    paths: dict[str, Any] = document.get("paths", {})
    served = {(m, p) for p, item in paths.items() for m in item} & SERVICE_OPERATIONS
    if not served:
        return
    components = document.setdefault("components", {})
    refs, definitions = models_json_schema(
        [
            *((model, "serialization") for (_s, model, _a, _p, _f) in _FEEDS.values()),
            (ImportResult, "serialization"),
        ],
        ref_template=_REF,
    )
    components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
    components.setdefault("securitySchemes", {}).update(security_schemes())
    for method, path in sorted(served):
        operation = paths[path][method]
        if (method, path) == _TOKEN:
            _token_operation(operation, problem)
            continue
        if (method, path) in _IMPORTS:
            scope, body = _IMPORTS[(method, path)]
            operation["security"] = [{"serviceClient": [scope]}]
            operation["requestBody"] = {
                "description": body,
                "required": True,
                "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
            }
            operation["responses"] = {
                "200": {
                    "description": "every line decided: created, replayed, a conflict or "
                    "refused (each issue with its line); the same file again is all replayed",
                    "headers": _REQUEST_ID,
                    "content": {
                        "application/json": {"schema": refs[(ImportResult, "serialization")]}
                    },
                },
                **_problems(_IMPORT_PROBLEMS, problem),
            }
            continue
        scope, model, answer, path_schemas, is_feed = _FEEDS[(method, path)]
        operation["security"] = [{"serviceClient": [scope]}]
        parameters = [
            {**p, "schema": path_schemas[p["name"]]}
            if p.get("in") == "path" and p.get("name") in path_schemas
            else p
            for p in operation.get("parameters", [])
        ]
        operation["parameters"] = [*parameters, *(_PAGE_PARAMETERS if is_feed else ())]
        operation["responses"] = {
            "200": {
                "description": answer,
                "headers": _REQUEST_ID,
                "content": {"application/json": {"schema": refs[(model, "serialization")]}},
            },
            **_problems(_PROBLEMS, problem),
        }
