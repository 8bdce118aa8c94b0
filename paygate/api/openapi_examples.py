"""The examples of the OpenAPI document: a request and the main answers of every operation,
refusals included, and a value for every path parameter.

Invariant: an example is what the server would send or accept. Answers are built through the
models the routes answer with (``model_validate`` then ``model_dump``), and every problem
through :func:`paygate.api.problems.problem_for` from the exception the route raises, so an
example cannot drift from the code without this module failing to import; the request bodies
are the documented wire forms (``tests/api/test_openapi_examples.py`` checks every example
against its schema, and sends the request examples to a running server).

The examples tell one story: customer ``0101234567`` owes 120.50 CNY on bill ``B-2026-10``,
kiosk ``K0001`` takes the payment in cash, and billing system ``billing-east`` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel

from paygate.api.problems import (
    MalformedFileError,
    RequestValidationProblem,
    RouteNotFoundError,
    UnknownChannelError,
    UnsupportedMediaTypeError,
    problem_for,
)
from paygate.api.routes.headend import RETIRED_SUPPLY_ORDER_CONFIRM, SUPPLY_ORDER_CONFIRM
from paygate.api.schemas import Health, ImportResult, SupplyOrderProgress, VoucherRedemption
from paygate.channels.errors import (
    DeviceRevokedError,
    KioskCloseConflictError,
    PayloadTooLargeError,
    SignatureError,
)
from paygate.channels.kiosk import KioskCloseResult, KioskReceipt
from paygate.errors import (
    AuthenticationError,
    IdempotencyConflictError,
    ParseError,
    PaygateError,
    StoreError,
    UnknownAccountError,
    UnknownOrderError,
)
from paygate.feeds import Cursor, EventPage, FeedName, PaymentPage, SupplyOrder, SupplyOrderPage
from paygate.models import AccountStatus
from paygate.service_clients import InsufficientScopeError, MissingTokenError
from paygate.vouchers.errors import RedemptionThrottledError, VoucherAlreadyRedeemedError

__all__ = ["ACCOUNT", "DEVICE", "PARAMETERS", "add_examples", "request_examples"]

ACCOUNT: Final = "0101234567"
DEVICE: Final = "K0001"
BILL: Final = "B-2026-10"
_TXN: Final = "cash-20261125-000017"
_PAID_AT: Final = "2026-11-25T09:30:00+08:00"
_REQUEST_ID: Final = "0a6f2c9e8d7b4c1fa3e5b7d9c1f3a5b7"


def _money(minor: int) -> dict[str, Any]:
    return {"minor": minor, "currency": "CNY"}


def _dump(model: type[BaseModel], value: Mapping[str, Any]) -> Any:
    return model.model_validate(value).model_dump(mode="json")


def _cursor(feed: FeedName, minor: int) -> str:
    return Cursor(feed, 0, minor).encode()


# ── the answers ──────────────────────────────────────────────────────────────────────────

_ALLOCATION: Final = {"bill_no": BILL, "late_fee": _money(0), "principal": _money(12050)}

_STATUS: Final = _dump(
    AccountStatus,
    {
        "account_no": ACCOUNT,
        "name": "张*",
        "category": "residential",
        "prepaid": False,
        "protected": False,
        "currency": "CNY",
        "as_of": "2026-11-25",
        "balance": _money(12050),
        "outstanding": _money(12050),
        "arrears": _money(0),
        "late_fee": _money(0),
        "credit": _money(0),
        "supply_state": "connected",
        "bills": [
            {
                "bill_no": BILL,
                "period": "2026-10",
                "amount": _money(12050),
                "due_date": "2026-12-15",
                "principal_paid": _money(0),
                "principal_due": _money(12050),
                "late_fee_charged": _money(0),
                "late_fee_paid": _money(0),
                "late_fee_accrued": _money(0),
                "overdue": False,
            }
        ],
    },
)


def _receipt(*, replayed: bool) -> Any:
    return _dump(
        KioskReceipt,
        {
            "payment_id": 4711,
            "terminal_id": DEVICE,
            "txn_id": _TXN,
            "channel_txn_id": f"{DEVICE}:{_TXN}",
            "method": "cash",
            "account_no": ACCOUNT,
            "amount": _money(12050),
            "paid_at": "2026-11-25T01:30:00Z",
            "business_date": "2026-11-25",
            "late_fee": _money(0),
            "allocations": [_ALLOCATION],
            "credit": _money(0),
            "balance_after": _money(0),
            "arrears_after": _money(0),
            "arrears_cleared": False,
            "replayed": replayed,
        },
    )


def _close(*, replayed: bool) -> Any:
    totals = {
        "cash": {"count": 1, "amount": _money(12050)},
        "card": {"count": 0, "amount": _money(0)},
    }
    return _dump(
        KioskCloseResult,
        {
            "terminal_id": DEVICE,
            "business_date": "2026-11-25",
            "counted_cash": _money(12050),
            "reported": totals,
            "ledger": totals,
            "ledger_suspense": {
                "cash": {"count": 0, "amount": _money(0)},
                "card": {"count": 0, "amount": _money(0)},
            },
            "cash_difference": _money(0),
            "outcome": "balanced",
            "reported_matches_ledger": True,
            "closed_at": "2026-11-25T14:00:00Z",
            "replayed": replayed,
        },
    )


def _redemption(result: str) -> Any:
    receipt = {
        "payment_id": 4712,
        "channel": "voucher",
        "channel_txn_id": "100000000123",
        "account_no": ACCOUNT,
        "amount": _money(5000),
        "paid_at": "2026-11-25T02:00:00Z",
        "business_date": "2026-11-25",
        "replayed": result == "replayed",
        "late_fee": _money(0),
        "allocations": [{**_ALLOCATION, "principal": _money(5000)}],
        "credit": _money(0),
        "balance_after": _money(7050),
        "arrears_after": _money(0),
        "arrears_cleared": False,
    }
    return _dump(VoucherRedemption, {"result": result, "receipt": receipt})


_PAYMENT_ITEM: Final = {
    "cursor": _cursor(FeedName.PAYMENTS, 1),
    "kind": "payment",
    "payment_id": 4711,
    "entry_id": 9001,
    "account_no": ACCOUNT,
    "channel": "kiosk",
    "channel_txn_id": f"{DEVICE}:{_TXN}",
    "amount": _money(12050),
    "paid_at": "2026-11-25T01:30:00Z",
    "business_date": "2026-11-25",
    "posted_at": "2026-11-25T01:30:01Z",
    "terminal_id": DEVICE,
    "status": "posted",
}
_PAYMENTS: Final = _dump(
    PaymentPage,
    {"items": [_PAYMENT_ITEM], "next_cursor": _PAYMENT_ITEM["cursor"], "has_more": False},
)
_REFUND_ITEM: Final = {
    "kind": "refund_requested",
    "refund_id": "RF-20261125-0001",
    "entry_id": 9002,
    "account_no": ACCOUNT,
    "amount": _money(2000),
    "route": "alipay",
    "channel": "mobile",
    "payment_id": 4720,
    "original_channel_txn_id": "2026112522001400001",
    "reason": "paid twice",
    "business_date": "2026-11-25",
    "posted_at": "2026-11-25T03:00:00Z",
}
_REFUNDS: Final = _dump(
    PaymentPage,
    {
        "items": [
            {**_REFUND_ITEM, "cursor": _cursor(FeedName.PAYMENTS, 2)},
            {
                **_REFUND_ITEM,
                "cursor": _cursor(FeedName.PAYMENTS, 3),
                "kind": "refund_failed",
                "entry_id": 9003,
                "posted_at": "2026-11-25T03:05:00Z",
                "failure_code": "ACQ.TRADE_HAS_CLOSE",
                "failure_message": "the trade is closed",
            },
            {
                **_PAYMENT_ITEM,
                "cursor": _cursor(FeedName.PAYMENTS, 4),
                "payment_id": 4731,
                "entry_id": 9010,
                "channel_txn_id": f"{DEVICE}:00000123",
                "status": "suspense",
            },
        ],
        "next_cursor": _cursor(FeedName.PAYMENTS, 4),
        "has_more": False,
    },
)
_ORDER: Final = {
    "order_id": 88,
    "account_no": ACCOUNT,
    "kind": "reconnect",
    "status": "completed",
    "action": "reconnect",
    "reason": "arrears_cleared",
    "payment_id": 4711,
    "created_at": "2026-11-25T01:30:01Z",
    "due_at": "2026-11-25T03:30:01Z",
    "dispatched_at": "2026-11-25T01:30:05Z",
    "acknowledged_at": "2026-11-25T01:30:06Z",
    "completed_at": "2026-11-25T01:42:10Z",
    "closed_at": "2026-11-25T01:42:10Z",
    "attempts": 1,
}
_ORDERS: Final = _dump(
    SupplyOrderPage,
    {
        "items": [{**_ORDER, "cursor": _cursor(FeedName.SUPPLY_ORDERS, 1)}],
        "next_cursor": _cursor(FeedName.SUPPLY_ORDERS, 1),
        "has_more": False,
    },
)
_EVENTS: Final = _dump(
    EventPage,
    {
        "items": [
            {
                "cursor": _cursor(FeedName.EVENTS, 1),
                "event_id": 1,
                "event_type": "payment.posted",
                "account_no": ACCOUNT,
                "payload": {"payment_id": 4711, "amount": _money(12050)},
                "created_at": "2026-11-25T01:30:01Z",
            }
        ],
        "next_cursor": _cursor(FeedName.EVENTS, 1),
        "has_more": True,
    },
)


def _imported(**counts: Any) -> Any:
    return _dump(ImportResult, counts)


# ── the refusals ─────────────────────────────────────────────────────────────────────────


def _problem(exc: PaygateError, instance: str) -> Any:
    problem, _headers = problem_for(exc, request_id=_REQUEST_ID, instance=instance, log=False)
    return problem.model_dump(mode="json", exclude_none=True)


_MALFORMED_BILL: Final = ParseError(
    "'ten' is not a decimal amount", source="body", line=3, field="amount"
)

Refusals = Mapping[int, PaygateError]

_DEVICE_REFUSALS: Final[Refusals] = {
    400: ParseError("Input should be greater than 0", field="amount"),
    401: SignatureError("the signature does not verify", field="X-Paygate-Signature"),
    403: DeviceRevokedError(f"device {DEVICE} is revoked", field="X-Paygate-Device"),
    404: UnknownAccountError(f"no account {ACCOUNT}", field="account_no"),
    409: IdempotencyConflictError(f"{_TXN} was posted before with other data", field="txn_id"),
    413: PayloadTooLargeError("body of 70000 bytes exceeds the limit of 65536 bytes", field="body"),
    415: UnsupportedMediaTypeError("the body must be application/json", field="Content-Type"),
    429: RedemptionThrottledError(
        "too many failed attempts; try again later",
        scope=DEVICE,
        retry_at=datetime(2026, 11, 25, 2, 15, tzinfo=UTC),
    ),
    503: StoreError("database unavailable: OperationalError"),
}
_SERVICE_REFUSALS: Final[Refusals] = {
    400: RequestValidationProblem("the cursor is not a token this feed gave out", field="after"),
    401: MissingTokenError("this route needs a bearer token (POST /v1/oauth/token)"),
    403: InsufficientScopeError("payments:read"),
    404: UnknownAccountError(f"no account {ACCOUNT}", field="account_no"),
    503: StoreError("database unavailable: OperationalError"),
}
_IMPORT_REFUSALS: Final[Refusals] = {
    400: MalformedFileError(_MALFORMED_BILL, [_MALFORMED_BILL], 1),
    401: _SERVICE_REFUSALS[401],
    403: InsufficientScopeError("bills:write"),
    413: PayloadTooLargeError("body exceeds the import limit of 268435456 bytes", field="body"),
    415: UnsupportedMediaTypeError(
        "the body must be text/csv (UTF-8), not application/json", field="Content-Type"
    ),
    503: _SERVICE_REFUSALS[503],
}
_HEADEND_REFUSALS: Final[Refusals] = {
    **_DEVICE_REFUSALS,
    400: RequestValidationProblem("order_id is a positive integer", field="order_id"),
    401: AuthenticationError("the callback signature does not verify", field="signature"),
    404: UnknownOrderError("no supply order 88", field="order_id"),
}
_NOTIFY_REFUSALS: Final[Refusals] = {
    400: ParseError("the body is not a form", field="body"),
    404: UnknownChannelError("no notify endpoint for channel 'paypal'", field="channel"),
    503: _DEVICE_REFUSALS[503],
}

_SUPPLY_CONFIRM: Final = SUPPLY_ORDER_CONFIRM
_RETIRED_CONFIRM: Final = RETIRED_SUPPLY_ORDER_CONFIRM

_REFUSALS: Final[dict[tuple[str, str], Refusals]] = {
    ("get", "/v1/accounts/{account_no}"): {
        **_DEVICE_REFUSALS,
        400: RequestValidationProblem(
            "account_no is 1-64 printable ASCII characters", field="account_no"
        ),
    },
    ("post", "/v1/payments"): _DEVICE_REFUSALS,
    ("post", "/v1/kiosks/{device_id}/close"): {
        **_DEVICE_REFUSALS,
        404: RouteNotFoundError(f"no route at /v1/kiosks/{DEVICE}/x/close"),
        409: KioskCloseConflictError(
            "2026-11-25 was closed before with other figures", field="business_date"
        ),
    },
    ("post", "/v1/vouchers/redeem"): {
        **_DEVICE_REFUSALS,
        409: VoucherAlreadyRedeemedError(
            "the card was redeemed for another account", field="serial"
        ),
    },
    ("post", _SUPPLY_CONFIRM): _HEADEND_REFUSALS,
    ("post", _RETIRED_CONFIRM): _HEADEND_REFUSALS,
    ("post", "/v1/channels/{channel}/notify"): _NOTIFY_REFUSALS,
    ("post", "/v1/pos/{operation}"): _NOTIFY_REFUSALS,
    ("get", "/healthz"): _DEVICE_REFUSALS,
    ("post", "/v1/oauth/token"): {
        413: PayloadTooLargeError("body of 5000 bytes exceeds the limit of 4096 bytes")
    },
    ("get", "/v1/payments"): _SERVICE_REFUSALS,
    ("get", "/v1/accounts/{account_no}/payments"): _SERVICE_REFUSALS,
    ("get", "/v1/supply-orders"): {
        **_SERVICE_REFUSALS,
        403: InsufficientScopeError("supply-orders:read"),
    },
    ("get", "/v1/supply-orders/{order_id}"): {
        **_SERVICE_REFUSALS,
        403: InsufficientScopeError("supply-orders:read"),
        404: UnknownOrderError("no supply order 88", field="order_id"),
    },
    ("get", "/v1/events"): {**_SERVICE_REFUSALS, 403: InsufficientScopeError("events:read")},
    ("post", "/v1/accounts/import"): {
        **_IMPORT_REFUSALS,
        403: InsufficientScopeError("accounts:write"),
    },
    ("post", "/v1/bills/import"): _IMPORT_REFUSALS,
}


# ── the requests ─────────────────────────────────────────────────────────────────────────

_SIGNED_HEADERS: Final = {
    "X-Paygate-Device": DEVICE,
    "X-Paygate-Timestamp": "1795577400",
    "X-Paygate-Nonce": "q3Jv0cG8Tn2b7yH1sW5xAa",
    "X-Paygate-Signature": "base64 of the 64-byte Ed25519 signature",
}

PARAMETERS: Final[dict[str, Any]] = {
    "account_no": ACCOUNT,
    "device_id": DEVICE,
    "order_id": 88,
    "channel": "bank_agent",
    "operation": "sale",
    "Idempotency-Key": _TXN,
    "after": _cursor(FeedName.PAYMENTS, 1),
    "limit": 100,
    **_SIGNED_HEADERS,
    "X-Headend-Timestamp": "1795577400",
    "X-Headend-Signature": "9f" * 32,
}
"""A value for each parameter, by name (the same name means the same thing everywhere)."""

_AFTER: Final = {
    "/v1/supply-orders": _cursor(FeedName.SUPPLY_ORDERS, 1),
    "/v1/events": _cursor(FeedName.EVENTS, 1),
}

_ACCOUNTS_FILE: Final = (
    "account_no,category,prepaid,protected,name,currency\n"
    f"{ACCOUNT},residential,false,false,张三,CNY\n"
    "0101234568,non_residential,false,true,Riverside Water Works,CNY\n"
)
_BILLS_FILE: Final = (
    "account_no,bill_no,amount,period,due_date\n"
    f"{ACCOUNT},{BILL},120.50,2026-10,2026-12-15\n"
    "0101234568,B-2026-10-2,8400.00,2026-10,2026-12-15\n"
)

_Example = dict[str, Any]


def _one(summary: str, value: Any) -> dict[str, _Example]:
    return {"example": {"summary": summary, "value": value}}


def _payment_pages(summary: str) -> dict[str, _Example]:
    return {
        "example": {"summary": summary, "value": _PAYMENTS},
        "refunds": {
            "summary": "a refund requested and failed (the money back as credit), then a "
            "payment held in suspense for a closed account",
            "value": _REFUNDS,
        },
    }


def request_examples() -> dict[tuple[str, str], dict[str, dict[str, _Example]]]:
    """The request bodies' examples: (method, path) -> media type -> name -> Example Object."""
    pay = {
        "txn_id": _TXN,
        "account_no": ACCOUNT,
        "amount": 12050,
        "currency": "CNY",
        "method": "cash",
        "paid_at": _PAID_AT,
    }
    close = {
        "business_date": "2026-11-25",
        "currency": "CNY",
        "counted_cash": 12050,
        "count": 1,
        "amount": 12050,
        "by_method": {"cash": {"count": 1, "amount": 12050}, "card": {"count": 0, "amount": 0}},
    }
    report = {
        "order_id": 88,
        "outcome": "completed",
        "at": "2026-11-25T01:42:10Z",
        "reference": "AMI-7781",
        "detail": "relay closed",
    }
    bank_pay = {
        "msg_type": "pay",
        "merchant_id": "CCB-COLLECT-01",
        "serial_no": "5001202611250001",
        "account_no": ACCOUNT,
        "amount": "12050",
        "txn_time": "20261125093000",
        "sign_type": "HMAC-SHA256",
        "sign": "hex HMAC-SHA256 of the sorted fields",
    }
    pos_sale = {
        "msg_type": "sale",
        "terminal_id": "T0000001",
        "merchant_id": "898310048990001",
        "batch_no": "000001",
        "trace_no": "000101",
        "timestamp": "1795577400",
        "account_no": ACCOUNT,
        "amount": "12050",
        "mac": "64 hex digits of the terminal's MAC",
    }
    confirm = {"application/json": _one("a completed reconnection", report)}
    form = "application/x-www-form-urlencoded"
    return {
        ("post", "/v1/payments"): {"application/json": _one("a cash payment", pay)},
        ("post", "/v1/kiosks/{device_id}/close"): {
            "application/json": _one("one cash payment that day", close)
        },
        ("post", "/v1/vouchers/redeem"): {
            "application/json": _one(
                "a card for the account",
                {"account_no": ACCOUNT, "serial": "100000000123", "pin": "0123456789012345"},
            )
        },
        ("post", _SUPPLY_CONFIRM): confirm,
        ("post", _RETIRED_CONFIRM): confirm,
        ("post", "/v1/channels/{channel}/notify"): {
            form: _one("a bank agent's counter payment (bank_agent)", bank_pay),
            "application/json": _one(
                "a JSON channel's notification (its own fields)",
                {"id": "EV-20261125-0001", "event_type": "TRANSACTION.SUCCESS"},
            ),
        },
        ("post", "/v1/pos/{operation}"): {form: _one("a sale", pos_sale)},
        ("post", "/v1/oauth/token"): {
            form: _one(
                "client credentials (the client authenticates with HTTP Basic)",
                {"grant_type": "client_credentials", "scope": "payments:read"},
            )
        },
        ("post", "/v1/accounts/import"): {"text/csv": _one("two accounts", _ACCOUNTS_FILE)},
        ("post", "/v1/bills/import"): {"text/csv": _one("two bills", _BILLS_FILE)},
    }


def _answers() -> dict[tuple[str, str], dict[str, dict[str, dict[str, _Example]]]]:
    """(method, path) -> status -> media type -> name -> Example Object (problems apart)."""
    js = "application/json"
    confirm = {
        "200": {
            js: _one(
                "recorded", _dump(SupplyOrderProgress, {"order_id": 88, "status": "completed"})
            )
        }
    }
    native = {
        "200": {"text/plain": _one("acknowledged (the channel's own word)", "success")},
    }
    token = {
        "access_token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJiaWxsaW5nLWVhc3QifQ.c2lnbmF0dXJl",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "payments:read",
    }

    def oauth_error(error: str, description: str) -> dict[str, _Example]:
        return _one(error, {"error": error, "error_description": description})

    return {
        ("get", "/v1/accounts/{account_no}"): {"200": {js: _one("owes one bill", _STATUS)}},
        ("post", "/v1/payments"): {
            "201": {js: _one("posted", _receipt(replayed=False))},
            "200": {js: _one("the same payment sent again", _receipt(replayed=True))},
        },
        ("post", "/v1/kiosks/{device_id}/close"): {
            "201": {js: _one("balanced", _close(replayed=False))},
            "200": {js: _one("the same close sent again", _close(replayed=True))},
        },
        ("post", "/v1/vouchers/redeem"): {
            "201": {js: _one("redeemed", _redemption("redeemed"))},
            "200": {js: _one("redeemed before for this account", _redemption("replayed"))},
        },
        ("post", _SUPPLY_CONFIRM): confirm,
        ("post", _RETIRED_CONFIRM): confirm,
        ("post", "/v1/channels/{channel}/notify"): native,
        ("post", "/v1/pos/{operation}"): native,
        ("get", "/healthz"): {
            "200": {js: _one("up", _dump(Health, {"status": "ok", "database": "ok"}))}
        },
        ("get", "/metrics"): {
            "200": {
                "text/plain": _one(
                    "two families",
                    "# HELP paygate_requests_total HTTP requests answered\n"
                    "# TYPE paygate_requests_total counter\n"
                    'paygate_requests_total{method="POST",route="/v1/payments",status="201"} 42\n',
                )
            }
        },
        ("post", "/v1/oauth/token"): {
            "200": {js: _one("a token", token)},
            "400": {js: oauth_error("invalid_scope", "scope 'bills:write' is not granted")},
            "401": {js: oauth_error("invalid_client", "unknown client or wrong secret")},
            "429": {
                js: oauth_error(
                    "temporarily_unavailable",
                    "too many failed authentications for this client id: 5 within 900 s; "
                    "retry after 2026-11-25T02:15:00+00:00",
                )
            },
        },
        ("get", "/v1/payments"): {"200": {js: _payment_pages("one payment")}},
        ("get", "/v1/accounts/{account_no}/payments"): {
            "200": {js: _payment_pages("the account's payment")}
        },
        ("get", "/v1/supply-orders"): {"200": {js: _one("one reconnection", _ORDERS)}},
        ("get", "/v1/supply-orders/{order_id}"): {
            "200": {js: _one("completed", _dump(SupplyOrder, _ORDER))}
        },
        ("get", "/v1/events"): {"200": {js: _one("a payment posted", _EVENTS)}},
        ("post", "/v1/accounts/import"): {
            "200": {
                js: _one(
                    "one created, one open before with other attributes",
                    _imported(
                        read=2,
                        created=1,
                        replayed=0,
                        conflicts=1,
                        refused=0,
                        issues=[
                            {
                                "line": 3,
                                "status": "conflict",
                                "key": "0101234568",
                                "code": "duplicate_account",
                                "field": "account_no",
                                "error": "account_no: 0101234568 is open with other attributes",
                            }
                        ],
                    ),
                )
            }
        },
        ("post", "/v1/bills/import"): {
            "200": {
                js: _one(
                    "the same file sent again: every bill replayed",
                    _imported(read=2, created=0, replayed=2, conflicts=0, refused=0, issues=[]),
                )
            }
        },
    }


def _instance(path: str) -> str:
    """The request path of an example: its parameters filled in (the retired path's
    examples are its successor's, as the operation is the same)."""
    if path == _RETIRED_CONFIRM:
        path = _SUPPLY_CONFIRM
    for name, value in PARAMETERS.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def add_examples(document: dict[str, Any], problem_media_type: str) -> None:
    """Give every operation of ``document`` its examples, in place."""
    requests = request_examples()
    answers = _answers()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            key = (method, path)
            # Copies: the routes' descriptions share their parameter objects.
            operation["parameters"] = [dict(p) for p in operation.get("parameters", [])]
            if not operation["parameters"]:
                del operation["parameters"]
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                if name == "after":  # a cursor is of one feed
                    parameter["example"] = _AFTER.get(path, PARAMETERS[name])
                elif name in PARAMETERS:
                    parameter["example"] = PARAMETERS[name]
            body = operation.get("requestBody", {}).get("content", {})
            for media, examples in requests.get(key, {}).items():
                if media in body:
                    body[media]["examples"] = examples
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                for media, examples in answers.get(key, {}).get(status, {}).items():
                    if media in content:
                        content[media]["examples"] = examples
                refusal = _REFUSALS.get(key, {}).get(int(status))
                if problem_media_type in content and refusal is not None:
                    value = _problem(refusal, _instance(path))
                    content[problem_media_type]["examples"] = {
                        refusal.code: {"summary": refusal.code, "value": value}
                    }
