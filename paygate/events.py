"""The events paygate emits, as its consumers receive them.

Every sink carries an event as a `CloudEvents 1.0 <https://cloudevents.io>`_ JSON envelope::

    {"specversion": "1.0", "id": "7301", "source": "urn:paygate", "type": "payment.posted",
     "subject": "0100001", "time": "2026-11-02T02:00:00+00:00",
     "datacontenttype": "application/json", "data": {...}}

``id`` is the outbox event id (the same on every redelivery: deduplicate by it), ``subject``
the account number (absent for events of no one account), ``time`` when the deciding
transaction happened, with its offset. ``data`` has one shape per ``type``, a pydantic model
listed in :data:`EVENT_DATA` (its JSON Schema is :func:`data_schema`).

A webhook receiver checks what it was sent with :func:`verify_webhook`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from paygate.errors import AuthenticationError, InvalidInputError, ReplayError

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_SOURCE",
    "EVENT_DATA",
    "CloudEvent",
    "ReplayGuard",
    "cloudevent",
    "data_schema",
    "encode",
    "validate",
    "verify_webhook",
]

CONTENT_TYPE = "application/cloudevents+json"
"""The media type of one event in the CloudEvents structured JSON mode."""

DEFAULT_SOURCE = "urn:paygate"
"""The ``source`` of every event unless the dispatcher is told another."""


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 envelope every sink carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"]
    id: StrictStr
    source: StrictStr
    type: StrictStr
    subject: StrictStr | None = None
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    data: dict[str, Any]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PaymentPosted(_Data):
    """A payment was posted to the account and allocated (amounts in minor units)."""

    payment_id: StrictInt
    channel: StrictStr
    channel_txn_id: StrictStr
    amount: StrictInt
    currency: StrictStr
    paid_at: AwareDatetime
    late_fee: StrictInt
    balance_after: StrictInt
    arrears_after: StrictInt


class ArrearsCleared(_Data):
    """A payment (``payment_id``) or a bill correction (``correction_id``) brought the
    account's arrears to zero."""

    payment_id: StrictInt | None = None
    correction_id: StrictStr | None = None
    supply_state: Literal[
        "connected", "disconnection_pending", "disconnected", "reconnection_pending"
    ]


class PaymentReversed(_Data):
    """A posted payment was reversed; its allocation reopened the bills it had paid."""

    payment_id: StrictInt
    reason: StrictStr
    arrears_after: StrictInt


class DisconnectionCancelled(_Data):
    """A payment cleared the arrears of an account whose disconnection was pending."""

    payment_id: StrictInt


class ReconnectionRequested(_Data):
    """A reconnection order was created; ``due_at`` is the service promise's deadline."""

    order_id: StrictInt
    payment_id: StrictInt | None
    reason: StrictStr
    due_at: AwareDatetime


class BillCorrected(_Data):
    """A bill was cancelled (作废) or adjusted (退补); amounts in minor units, ``change`` signed.
    Money paid on what the correction took away became credit (``credit_released``), and
    credit was spent on open bills (``credit_applied``)."""

    correction_id: StrictStr
    bill_no: StrictStr
    reason: StrictStr
    amount_before: StrictInt
    amount_after: StrictInt
    change: StrictInt
    currency: StrictStr
    late_fee_reversed: StrictInt
    credit_released: StrictInt
    credit_applied: StrictInt
    balance_after: StrictInt
    arrears_after: StrictInt


class RefundRequested(_Data):
    """Credit moved to refunds payable and a refund order was raised (minor units);
    ``original_channel_txn_id`` is the payment refunded against (none for a bank transfer)."""

    refund_id: StrictStr
    amount: StrictInt
    currency: StrictStr
    route: StrictStr
    channel: StrictStr | None
    original_channel_txn_id: StrictStr | None
    reason: StrictStr
    balance_after: StrictInt


class RefundSucceeded(_Data):
    """The provider paid the refund: the money left through the route's channel."""

    refund_id: StrictStr
    amount: StrictInt
    currency: StrictStr
    route: StrictStr
    provider_reference: StrictStr | None


class RefundFailed(_Data):
    """The provider refused the refund: the money is the customer's credit again, and
    ``credit_applied`` of it was spent on open bills."""

    refund_id: StrictStr
    amount: StrictInt
    currency: StrictStr
    route: StrictStr
    failure_code: StrictStr
    failure_message: StrictStr
    credit_applied: StrictInt
    balance_after: StrictInt
    arrears_after: StrictInt


class RefundAlert(_Data):
    """A refund order's provider has not answered for ``attempts`` attempts: a person looks."""

    refund_id: StrictStr
    route: StrictStr
    attempts: StrictInt


class AccountClosed(_Data):
    """The account was closed (销户): final bill issued, credit refunded, supply closed."""

    closure_id: StrictStr
    reason: StrictStr
    final_bill_no: StrictStr | None
    credit_applied: StrictInt
    refund_id: StrictStr | None  # the first of refund_ids, for consumers before splits
    refund_ids: list[StrictStr]  # one refund order per payment refunded against
    refund_amount: StrictInt  # what the refund orders pay back, together
    currency: StrictStr


class PaymentSuspense(_Data):
    """A payment for a closed account was taken into suspense, not allocated (``reason``:
    ``account_closed``); finance returns or re-assigns it."""

    payment_id: StrictInt
    channel: StrictStr
    channel_txn_id: StrictStr
    amount: StrictInt
    currency: StrictStr
    paid_at: AwareDatetime
    reason: StrictStr


class SupplyDisconnected(_Data):
    """Supply was recorded as disconnected."""

    reason: StrictStr


class DunningServed(_Data):
    """A dunning notice or final reminder was served for ``arrears`` (minor units)."""

    arrears: StrictInt


class DisconnectionOrdered(_Data):
    """A disconnection order was created."""

    order_id: StrictInt
    approved_by: StrictStr
    negotiated: StrictBool


class OrderProgress(_Data):
    """A supply order reached a step at a head-end (dispatched, acknowledged, completed)."""

    order_id: StrictInt
    actor: StrictStr
    reference: StrictStr | None
    at: AwareDatetime
    elapsed_seconds: float
    on_time: StrictBool


class ServiceBreach(_Data):
    """A supply order missed a step's deadline."""

    order_id: StrictInt
    kind: Literal["reconnect", "disconnect"]
    step: Literal["dispatch", "acknowledge", "confirm", "legal"]
    severity: Literal["minor", "major", "critical"]
    deadline: AwareDatetime


class ServiceBreachWithdrawn(_Data):
    """A recorded breach was disproved: the head-end reported the step done by its deadline."""

    order_id: StrictInt
    kind: Literal["reconnect", "disconnect"]
    step: Literal["dispatch", "acknowledge", "confirm", "legal"]
    severity: Literal["minor", "major", "critical"]
    deadline: AwareDatetime
    done_at: AwareDatetime


class OrderAlert(_Data):
    """A supply order keeps failing (``final``: refused for good, a person acts)."""

    order_id: StrictInt
    kind: Literal["reconnect", "disconnect"]
    attempts: StrictInt
    error: StrictStr
    final: StrictBool


class OutboxDeadLettered(_Data):
    """An event no sink took within the dispatcher's attempts was set aside."""

    dead_event_id: StrictInt
    attempts: StrictInt
    error: StrictStr


EVENT_DATA: Mapping[str, type[BaseModel]] = {
    "payment.posted": PaymentPosted,
    "payment.reversed": PaymentReversed,
    "arrears.cleared": ArrearsCleared,
    "bill.cancelled": BillCorrected,
    "bill.adjusted": BillCorrected,
    "refund.requested": RefundRequested,
    "refund.succeeded": RefundSucceeded,
    "refund.failed": RefundFailed,
    "refund.alert": RefundAlert,
    "account.closed": AccountClosed,
    "payment.suspense": PaymentSuspense,
    "dunning.notice": DunningServed,
    "dunning.final_reminder": DunningServed,
    "disconnection.ordered": DisconnectionOrdered,
    "disconnection.cancelled": DisconnectionCancelled,
    "disconnection.dispatched": OrderProgress,
    "disconnection.acknowledged": OrderProgress,
    "disconnection.completed": OrderProgress,
    "supply.disconnected": SupplyDisconnected,
    "reconnection.requested": ReconnectionRequested,
    "reconnection.dispatched": OrderProgress,
    "reconnection.acknowledged": OrderProgress,
    "reconnection.completed": OrderProgress,
    "service.breach": ServiceBreach,
    "service.breach_withdrawn": ServiceBreachWithdrawn,
    "order.alert": OrderAlert,
    "outbox.dead_lettered": OutboxDeadLettered,
}
"""Every event type paygate emits, with the model of its ``data``."""


def data_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``data`` for ``event_type``."""
    try:
        model = EVENT_DATA[event_type]
    except KeyError:
        raise InvalidInputError(f"no event type {event_type!r}", field="type") from None
    return model.model_json_schema()


def cloudevent(event: Mapping[str, Any], *, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The CloudEvents envelope of an outbox event (``event_id``, ``type``, ``account_no``,
    ``occurred_at``, ``data``, as the outbox stores it)."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event["event_id"]),
        "source": source,
        "type": event["type"],
    }
    if event.get("account_no"):
        envelope["subject"] = event["account_no"]
    envelope["time"] = event["occurred_at"]
    envelope["datacontenttype"] = "application/json"
    envelope["data"] = event["data"]
    return envelope


def encode(envelope: Mapping[str, Any]) -> bytes:
    """The envelope as compact UTF-8 JSON, the body every sink sends."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def validate(envelope: Mapping[str, Any], *, data: bool = True) -> CloudEvent:
    """Check an envelope and (with ``data``) its ``data`` against the model of its type;
    InvalidInputError names the first field that does not fit."""
    try:
        event = CloudEvent.model_validate(envelope)
        if data:
            model = EVENT_DATA.get(event.type)
            if model is None:
                raise InvalidInputError(f"no event type {event.type!r}", field="type")
            model.model_validate(event.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(first["msg"], field=where or None) from None
    return event


class ReplayGuard:
    """Remembers the webhook deliveries already accepted, for as long as their timestamp is
    inside the tolerance: the same signed request twice is refused as a replay.

    One guard per receiver process (thread-safe). A redelivery by the dispatcher is signed
    anew and is not a replay; it has the same event ``id``, by which receivers deduplicate.
    """

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, signature: str, stamp: int, *, now: float, tolerance: float) -> None:
        """Record ``signature``; raise ReplayError if it was seen and not yet expired."""
        with self._lock:
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if signature in self._seen:
                raise ReplayError("this delivery was already received", field="signature")
            self._seen[signature] = stamp + tolerance


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes | SecretStr,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
    replay_guard: ReplayGuard | None = None,
) -> CloudEvent:
    """Check a webhook delivery from paygate's dispatcher and return its event.

    The signature (``X-Paygate-Signature``: hex HMAC-SHA256 of ``timestamp + "." + body`` with
    the shared secret) is compared in constant time; the timestamp (``X-Paygate-Timestamp``,
    Unix seconds) must be within ``tolerance`` seconds of ``now``; with a ``replay_guard`` the
    same delivery is refused a second time within that window. Raises AuthenticationError
    (``ReplayError`` for a stale or repeated delivery) naming the header, or InvalidInputError
    for a body that is not a paygate event.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    stamp_text = lower.get("x-paygate-timestamp", "")
    signature = lower.get("x-paygate-signature", "")
    if not (stamp_text.isascii() and stamp_text.isdigit() and len(stamp_text) <= 12):
        raise AuthenticationError("missing or malformed", field="X-Paygate-Timestamp")
    if not signature:
        raise AuthenticationError("missing", field="X-Paygate-Signature")
    if isinstance(secret, SecretStr):
        key = secret.get_secret_value().encode()
    else:
        key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, stamp_text.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise AuthenticationError("does not verify", field="X-Paygate-Signature")
    stamp = int(stamp_text)
    clock = time.time() if now is None else now
    if abs(clock - stamp) > tolerance:
        raise ReplayError(
            f"outside the {tolerance:g} s tolerance of this receiver's clock",
            field="X-Paygate-Timestamp",
        )
    if replay_guard is not None:
        replay_guard.check(expected, stamp, now=clock, tolerance=tolerance)
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"not JSON: {exc}", field="body") from None
    if not isinstance(envelope, dict):
        raise InvalidInputError("not a JSON object", field="body")
    event = validate(envelope, data=False)  # a type added later still reaches the receiver
    named = lower.get("x-paygate-event-id")
    if named is not None and named != event.id:
        raise AuthenticationError("does not match the body's id", field="X-Paygate-Event-Id")
    return event
