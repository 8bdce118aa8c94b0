"""The OpenAPI document served at ``/openapi.json``: every route, body, answer and problem.

Invariant: the document says what the routes do, including what they refuse. FastAPI derives
the path parameters from the route signatures; this module adds what the routes read by hand
(a signed route must hash the exact bytes, so no body is parsed before its signature
verified): the request bodies, the authentication and idempotency headers, every answer with
its status and content type, and the problem answers. Schemas come from the same pydantic
models the routes answer with, so a response that matches the model matches the document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from paygate.api.openapi_examples import add_examples
from paygate.api.problems import PROBLEM_MEDIA_TYPE, Problem
from paygate.api.routes.headend import RETIRED_SUPPLY_ORDER_CONFIRM, SUPPLY_ORDER_CONFIRM
from paygate.api.schemas import Health, SupplyOrderProgress, VoucherRedemption
from paygate.api.service_openapi import SERVICE_OPERATIONS, describe_service_routes
from paygate.channels.kiosk import (
    KioskCloseRequest,
    KioskCloseResult,
    KioskPayRequest,
    KioskReceipt,
)
from paygate.channels.voucher import RedeemRequest
from paygate.devices import HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from paygate.headend.webhook import (
    CALLBACK_SIGNATURE_HEADER,
    CALLBACK_TIMESTAMP_HEADER,
    HeadEndCallback,
)
from paygate.models import AccountStatus

__all__ = ["SECURITY_SCHEMES", "build_openapi"]

_REF: Final = "#/components/schemas/{model}"

DESCRIPTION: Final = """\
The paygate HTTP gateway. Kiosks and POS terminals sign every request with their Ed25519
key (headers `X-Paygate-Device`, `X-Paygate-Timestamp`, `X-Paygate-Nonce`,
`X-Paygate-Signature`; see docs/http-api.md); payment channels post notifications in their
own formats; the AMI head-end reports on supply orders, signed with its callback secret.

Amounts are `{"minor": <integer minor units>, "currency": "<ISO 4217>"}`, never floats.
Refusals are RFC 9457 `application/problem+json` with a stable `code`; every answer carries
`X-Request-Id`.
"""

_MODELS: Final[tuple[tuple[type[BaseModel], Literal["validation", "serialization"]], ...]] = (
    (Problem, "serialization"),
    (AccountStatus, "serialization"),
    (KioskPayRequest, "validation"),
    (KioskReceipt, "serialization"),
    (KioskCloseRequest, "validation"),
    (KioskCloseResult, "serialization"),
    (RedeemRequest, "validation"),
    (VoucherRedemption, "serialization"),
    (HeadEndCallback, "validation"),
    (SupplyOrderProgress, "serialization"),
    (Health, "serialization"),
)

_REQUEST_ID_HEADER: Final = {
    "X-Request-Id": {
        "description": "this request's id, also in any problem; quote it to operators",
        "required": True,
        "schema": {"type": "string"},
    }
}

_PROBLEM_TEXT: Final[dict[int, str]] = {
    400: "unreadable or impossible input (`invalid_input`, `parse_error`, "
    "`idempotency_key_invalid`, `currency_mismatch`, …); nothing was done",
    401: "the request's authentication does not verify (`malformed_request`, "
    "`unknown_device`, `invalid_signature`, `stale_timestamp`, `nonce_reused`, …)",
    403: "authenticated, but not allowed (`device_revoked`, `device_channel_mismatch`, "
    "`device_mismatch`, `wrong_pin`)",
    404: "not found (`unknown_account`, `unknown_order`, `unknown_voucher`, "
    "`unknown_channel`, `not_found`)",
    409: "contradicts what is recorded (`idempotency_conflict`, `close_conflict`, "
    "`voucher_already_redeemed`, …); nothing changed",
    413: "the body is over the route's limit (`payload_too_large`); it was not read",
    415: "the body is not `application/json` (`unsupported_media_type`); nothing was done",
    429: "too many failed attempts (`redemption_throttled`); retry after `retry_at`",
    503: "the database is not available now (`store_error`, `schema_not_ready`); retry later",
}


@dataclass(frozen=True)
class _Operation:
    headers: Sequence[dict[str, Any]] = ()
    body: tuple[type[BaseModel], str] | None = None
    answers: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    problems: tuple[int, ...] = ()
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The path parameters' schemas: the routes check them only after authenticating."""
    security: str | None = None
    """The security scheme the route verifies (:data:`SECURITY_SCHEMES`); None: open."""


SECURITY_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    "deviceSignature": {
        "type": "apiKey",
        "in": "header",
        "name": HEADER_SIGNATURE,
        "description": "A registered terminal (`paygate devices add`) signs every request with "
        f"its Ed25519 key. It sends four headers: `{HEADER_DEVICE}` (its id), "
        f"`{HEADER_TIMESTAMP}` (its clock, Unix seconds, within the server's window), "
        f"`{HEADER_NONCE}` (128 random bits, base64url, never reused) and `{HEADER_SIGNATURE}`: "
        "standard base64 of the Ed25519 signature of the canonical request, five lines each "
        "ending in a line feed: the method in capitals, the request target as sent (path and "
        "query, percent-encoding as sent), the timestamp, the nonce, and the lower-case hex "
        "SHA-256 of the body (of no bytes for a GET). A retry is signed afresh with a new nonce; "
        "`paygate.client.PaygateClient` does all of it. The signature is verified before "
        "anything else of the request is read (413 apart), so a caller that is not a device "
        "learns nothing but 401.",
    },
    "headEndSignature": {
        "type": "apiKey",
        "in": "header",
        "name": CALLBACK_SIGNATURE_HEADER,
        "description": "The AMI head-end signs its report with the callback secret "
        "(`[api.supply_orders]`): `"
        + CALLBACK_SIGNATURE_HEADER
        + '` is the hex HMAC-SHA256 of the timestamp, ".", and the body, and `'
        + CALLBACK_TIMESTAMP_HEADER
        + "` the head-end's clock in Unix seconds.",
    },
}
"""The security schemes of the routes this module describes (the service clients' are
:func:`paygate.api.service_openapi.security_schemes`)."""


def _header(name: str, description: str, schema: dict[str, Any], *, required: bool = True) -> Any:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema,
    }


_SIGNED: Final = (
    _header(
        HEADER_DEVICE,
        "the device id as registered (`paygate devices add`)",
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"},
    ),
    _header(
        HEADER_TIMESTAMP,
        "the device's clock, Unix seconds; within the window of the server's clock",
        {"type": "string", "pattern": "^[0-9]{1,10}$"},
    ),
    _header(
        HEADER_NONCE,
        "at least 128 random bits, base64url without padding; never reused",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{22,64}$"},
    ),
    _header(
        HEADER_SIGNATURE,
        "standard base64 of the Ed25519 signature of the canonical request",
        {"type": "string"},
    ),
)


def _idempotency(required: bool, description: str) -> Any:
    return _header(
        "Idempotency-Key",
        description,
        {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
        required=required,
    )


_OPERATIONS: Final[dict[tuple[str, str], _Operation]] = {
    ("get", "/v1/accounts/{account_no}"): _Operation(
        security="deviceSignature",
        headers=_SIGNED,
        answers={200: ("what the account owes now (the name masked)", AccountStatus)},
        problems=(400, 401, 403, 404, 503),
        path_schemas={
            "account_no": {
                "type": "string",
                "pattern": "^[!-~]{1,64}$",
                "description": "percent-encoded as a path segment (a `/` is sent as `%2F`)",
            }
        },
    ),
    ("post", "/v1/payments"): _Operation(
        security="deviceSignature",
        headers=(
            *_SIGNED,
            _idempotency(True, "the payment's `txn_id`: the same on every retry"),
        ),
        body=(KioskPayRequest, "the payment, amounts in integer minor units"),
        answers={
            201: ("posted: the receipt to print", KioskReceipt),
            200: ("posted before: the original receipt, `replayed: true`", KioskReceipt),
        },
        problems=(400, 401, 403, 404, 409, 413, 415, 503),
    ),
    ("post", "/v1/kiosks/{device_id}/close"): _Operation(
        security="deviceSignature",
        headers=(*_SIGNED, _idempotency(False, "optional: a close is idempotent by its date")),
        body=(KioskCloseRequest, "the counted cash and the kiosk's totals for one day"),
        answers={
            201: ("closed: the comparison with the ledger", KioskCloseResult),
            200: ("closed before with the same figures, `replayed: true`", KioskCloseResult),
        },
        problems=(400, 401, 403, 404, 409, 413, 415, 503),
        path_schemas={
            "device_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"}
        },
    ),
    ("post", "/v1/vouchers/redeem"): _Operation(
        security="deviceSignature",
        headers=(
            *_SIGNED,
            _idempotency(False, "optional: a redemption is idempotent by card and account"),
        ),
        body=(RedeemRequest, "the account, the card's serial and PIN (`source` is ignored)"),
        answers={
            201: ("redeemed: the payment's receipt", VoucherRedemption),
            200: ("redeemed before for this account: the original receipt", VoucherRedemption),
        },
        problems=(400, 401, 403, 404, 409, 413, 415, 429, 503),
    ),
    ("post", SUPPLY_ORDER_CONFIRM): _Operation(
        security="headEndSignature",
        headers=(
            _header(
                CALLBACK_TIMESTAMP_HEADER,
                "the head-end's clock, Unix seconds",
                {"type": "string", "pattern": "^[0-9]{1,11}$"},
            ),
            _header(
                CALLBACK_SIGNATURE_HEADER,
                'hex HMAC-SHA256 of timestamp + "." + body under the callback secret',
                {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"},
            ),
        ),
        body=(HeadEndCallback, "the head-end's report on the order"),
        answers={200: ("recorded (a repeat changes nothing)", SupplyOrderProgress)},
        problems=(400, 401, 404, 413, 415, 503),
        path_schemas={
            "order_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        },
    ),
    ("get", "/healthz"): _Operation(
        answers={200: ("the gateway and its database answer", Health)}, problems=(503,)
    ),
}

# The retired path of the head-end callback: the same operation, documented as deprecated.
_OPERATIONS[("post", RETIRED_SUPPLY_ORDER_CONFIRM)] = _OPERATIONS[("post", SUPPLY_ORDER_CONFIRM)]

_NOTIFY: Final = ("post", "/v1/channels/{channel}/notify")
_POS: Final = ("post", "/v1/pos/{operation}")
_METRICS: Final = ("get", "/metrics")

# The native acknowledgement formats of the built-in channels (docs/channels/): text
# ("success"/"ok"/"fail"), JSON (WeChat Pay's refusal) and form fields (bank agent).
_NATIVE: Final = {
    "text/plain": {"schema": {"type": "string"}},
    "application/json": {"schema": {}},
    "application/x-www-form-urlencoded": {"schema": {}},
}


def _notify_responses(problem: dict[str, Any]) -> dict[str, Any]:
    def native(description: str, *, with_problem: bool = False) -> dict[str, Any]:
        content: dict[str, Any] = dict(_NATIVE)
        if with_problem:
            content[PROBLEM_MEDIA_TYPE] = {"schema": problem}
        return {"description": description, "headers": _REQUEST_ID_HEADER, "content": content}

    return {
        "200": native("acknowledged in the channel's format"),
        "204": {
            "description": "acknowledged without a body (WeChat Pay)",
            "headers": _REQUEST_ID_HEADER,
        },
        "400": native("refused in the channel's format, or a problem", with_problem=True),
        "401": native("the channel's signature did not verify (channel format)"),
        "404": native("unknown channel (problem) or unknown payment order", with_problem=True),
        "409": native("amount or state conflict (channel format)"),
        "413": native("over the channel's size limit (channel format)"),
        "503": native("retry later (channel format, or a problem)", with_problem=True),
    }


def build_openapi(app: FastAPI, *, notify_channels: Sequence[str]) -> dict[str, Any]:
    """The document for ``app``, whose notify route serves ``notify_channels``."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=DESCRIPTION,
        routes=app.routes,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    # Parameter validation errors are answered as problems (400), not FastAPI's 422.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    refs, definitions = models_json_schema(_MODELS, ref_template=_REF)
    schemas.update(definitions.get("$defs", {}))
    problem = refs[(Problem, "serialization")]

    def answer(description: str, model: type[BaseModel] | None) -> dict[str, Any]:
        found: dict[str, Any] = {"description": description, "headers": _REQUEST_ID_HEADER}
        if model is not None:
            found["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        return found

    def problems(statuses: Sequence[int]) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for status in statuses:
            headers = dict(_REQUEST_ID_HEADER)
            if status in (429, 503):
                headers["Retry-After"] = {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "string"},
                }
            answers[str(status)] = {
                "description": _PROBLEM_TEXT[status],
                "headers": headers,
                "content": {PROBLEM_MEDIA_TYPE: {"schema": problem}},
            }
        return answers

    used: set[str] = set()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            key = (method, path)
            if key == _NOTIFY:
                for parameter in operation.get("parameters", []):
                    if parameter.get("name") == "channel":
                        parameter["schema"] = {"type": "string", "enum": list(notify_channels)}
                operation["requestBody"] = {
                    "description": "the notification exactly as the channel sends it, signed "
                    "in the channel's own scheme (a form field or the provider's headers; "
                    "docs/channels/), which its adapter verifies before anything is read",
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                        },
                        "application/json": {"schema": {"type": "object"}},
                    },
                }
                operation["responses"] = _notify_responses(problem)
                continue
            if key == _POS:
                operation["requestBody"] = {
                    "description": "the terminal's MAC-signed message (docs/channels/pos.md)",
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                        }
                    },
                }
                operation["responses"] = _notify_responses(problem)
                continue
            if key == _METRICS:
                operation["responses"] = {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "headers": _REQUEST_ID_HEADER,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                }
                continue
            if key in SERVICE_OPERATIONS:
                continue  # described with their security schemes below
            spec = _OPERATIONS[key]
            if spec.security is not None:
                operation["security"] = [{spec.security: []}]
                used.add(spec.security)
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in spec.path_schemas:
                    parameter["schema"] = spec.path_schemas[parameter["name"]]
            operation["parameters"] = [*operation.get("parameters", []), *spec.headers]
            if spec.body is not None:
                model, description = spec.body
                operation["requestBody"] = {
                    "description": description,
                    "required": True,
                    "content": {"application/json": {"schema": refs[(model, "validation")]}},
                }
            responses = {
                str(status): answer(text, model) for status, (text, model) in spec.answers.items()
            }
            responses.update(problems(spec.problems))
            operation["responses"] = responses
    if used:
        document["components"].setdefault("securitySchemes", {}).update(
            {name: SECURITY_SCHEMES[name] for name in sorted(used)}
        )
    describe_service_routes(document, problem)
    add_examples(document, PROBLEM_MEDIA_TYPE)
    return document
