"""The events paygate emits: every one is in the catalogue and validates against the JSON
Schema of its data; the CloudEvents envelope; a webhook receiver's check."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import AuthenticationError, InvalidInputError, ReplayError
from paygate.events import (
    EVENT_DATA,
    CloudEvent,
    ReplayGuard,
    cloudevent,
    data_schema,
    encode,
    validate,
    verify_webhook,
)
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.outbox import CallbackSink, Dispatcher
from paygate.refunds.dispatch import dispatch_refunds
from tests.refund_fakes import UNAVAILABLE, ScriptedRoute, failed, succeeded
from tests.test_dispatch import FakeHeadEnd

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events.md"


@pytest.fixture
def sqlite_gateway(sqlite_url: str, clock: FixedClock) -> Iterator[Gateway]:
    settings = Settings(database_url=sqlite_url, seal_every=0, sqlite_synchronous="NORMAL")
    with Gateway.open(settings=settings, clock=clock) as gw:
        yield gw


def overdue(gateway: Gateway, account_no: str, minor: int = 10_000) -> None:
    gateway.open_account(account_no)
    gateway.set_meter(account_no, headend="fake", meter_address=f"2019052410{account_no[-2:]}")
    gateway.issue_bill(
        account_no,
        bill_no=f"B-{account_no}",
        amount=Money(minor, "CNY"),
        period="2026-09",
        due_date=date(2026, 10, 10),
    )


def pay(gateway: Gateway, clock: FixedClock, account_no: str, txn: str) -> int:
    receipt = gateway.pay(
        PaymentIntent(
            channel="pos",
            channel_txn_id=txn,
            account_no=account_no,
            amount=Money(50_000, "CNY"),
            paid_at=clock.now(),
        )
    )
    return receipt.payment_id


def every_kind_of_event(gateway: Gateway, clock: FixedClock) -> list[dict[str, Any]]:
    """A story in which paygate emits each of its event types; the outbox payloads."""
    headend = FakeHeadEnd(clock, outcome=HeadEndOutcome.DISPATCHED)
    # cut off, paid, reconnected step by step, the payment then reversed
    overdue(gateway, "A01")
    gateway.disconnect("A01", "arrears")
    payment = pay(gateway, clock, "A01", "P1")
    Dispatcher(gateway, headends={"fake": headend}).dispatch_once()
    [order] = gateway.store.run(
        lambda tx: [r[0] for r in tx.all("SELECT id FROM supply_orders WHERE kind = 'reconnect'")]
    )
    gateway.record_order_progress(order, HeadEndOutcome.ACKNOWLEDGED, reference="R1")
    gateway.record_order_progress(order, HeadEndOutcome.COMPLETED)
    gateway.reverse(payment, "direct debit returned")
    # the dunning path to a negotiated disconnection
    overdue(gateway, "A02")
    gateway.serve_notice("A02")
    gateway.serve_notice("A02", "final_reminder")
    cut = gateway.order_disconnection("A02", approved_by="ops", negotiated=True)
    for outcome in HeadEndOutcome:
        gateway.record_order_progress(cut, outcome)
    # a pending disconnection cancelled by a payment
    overdue(gateway, "A03")
    gateway.serve_notice("A03")
    pay(gateway, clock, "A03", "P3")
    # a reconnection order nobody sends: a breach, then an alert
    overdue(gateway, "A04")
    gateway.disconnect("A04", "arrears")
    pay(gateway, clock, "A04", "P4")
    clock.advance(timedelta(hours=1))
    Dispatcher(gateway, headends={}).dispatch_once()  # its head-end is not configured
    # ... which a crew had in fact carried out at once: the breach is withdrawn
    reconnection, raised = gateway.store.run(
        lambda tx: tx.one(
            "SELECT o.id, o.created_at FROM supply_orders o JOIN accounts a "
            "ON a.id = o.account_id WHERE a.account_no = 'A04' AND o.kind = 'reconnect'"
        ),
        write=False,
    )
    gateway.record_order_progress(
        int(reconnection),
        HeadEndOutcome.COMPLETED,
        at=gateway.store.run(lambda tx: tx.read_ts(raised), write=False),
        actor="crew-7",
    )
    # bills corrected: one adjusted, one cancelled (its account's last arrears, so cleared)
    overdue(gateway, "A05")
    gateway.adjust_bill(
        "A05", "B-A05", Money(-1_000, "CNY"), reason="meter re-read", correction_id="C1"
    )
    gateway.cancel_bill("A05", "B-A05", reason="issued twice", correction_id="C2")
    # refunds: one paid, one refused, one whose provider never answers; then the account
    # closes and a payment that still arrives is held in suspense
    route = ScriptedRoute("alipay", "pos")
    gateway.use_refund_routes({"alipay": route})
    gateway.open_account("A06")
    pay(gateway, clock, "A06", "P6")
    gateway.refund("A06", Money(1_000, "CNY"), refund_id="R1", route="alipay")
    gateway.dispatch_refunds()
    route.settle_as = failed()
    gateway.refund("A06", Money(1_000, "CNY"), refund_id="R2", route="alipay")
    gateway.dispatch_refunds()
    route.script(submits=[UNAVAILABLE])
    gateway.refund("A06", Money(1_000, "CNY"), refund_id="R3", route="alipay")
    dispatch_refunds(gateway, {"alipay": route}, alert_after=1)
    gateway.fail_refund("R3", "GIVEN_UP", "checked with the provider: never received")
    route.settle_as = succeeded()
    gateway.close_account("A06", closure_id="CL1", refund_route="alipay", reason="moved")
    pay(gateway, clock, "A06", "P7")
    # an event no sink takes: dead-lettered with an alert
    Dispatcher(
        gateway, headends={}, sinks=[CallbackSink(lambda e: 1 / 0)], max_attempts=1
    ).dispatch_once()
    return [
        json.loads(r[0])
        for r in gateway.store.run(
            lambda tx: tx.all("SELECT payload FROM outbox ORDER BY id"), write=False
        )
    ]


def test_every_emitted_event_is_catalogued_and_validates_against_its_schema(
    sqlite_gateway: Gateway, clock: FixedClock
) -> None:
    emitted = every_kind_of_event(sqlite_gateway, clock)
    assert {e["type"] for e in emitted} == set(EVENT_DATA)  # none missing, none unknown
    for event in emitted:
        envelope = json.loads(encode(cloudevent(event)))
        jsonschema.validate(envelope["data"], data_schema(envelope["type"]))
        jsonschema.validate(envelope, CloudEvent.model_json_schema())
        validate(envelope)


def test_the_schemas_refuse_what_does_not_fit() -> None:
    schema = data_schema("payment.posted")
    good = {
        "payment_id": 1,
        "channel": "pos",
        "channel_txn_id": "P1",
        "amount": 12050,
        "currency": "CNY",
        "paid_at": "2026-11-25T02:00:00+00:00",
        "late_fee": 0,
        "balance_after": 0,
        "arrears_after": 0,
    }
    jsonschema.validate(good, schema)
    for bad in (good | {"amount": "120.50"}, good | {"extra": 1}, {"payment_id": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    envelope = cloudevent(
        {
            "event_id": 9,
            "type": "payment.posted",
            "account_no": "A1",
            "occurred_at": "2026-11-25T02:00:00+00:00",
            "data": good | {"amount": 1.5},
        }
    )
    with pytest.raises(InvalidInputError, match="amount"):
        validate(envelope)
    with pytest.raises(InvalidInputError, match="type"):
        data_schema("payment.lost")


def test_the_catalogue_in_the_docs_is_the_generated_one() -> None:
    page = DOCS.read_text(encoding="utf-8")
    for event_type in EVENT_DATA:
        assert f"### `{event_type}`" in page, event_type
    for model in {m for m in EVENT_DATA.values()}:
        block = json.dumps(model.model_json_schema(), indent=2)
        assert f"```json\n{block}\n```" in page, model.__name__


def test_the_envelope_is_cloudevents_1_0() -> None:
    event = {
        "event_id": 7301,
        "type": "payment.posted",
        "account_no": "0100001",
        "occurred_at": "2026-11-25T02:00:00+00:00",
        "data": {"amount": 1},
    }
    envelope = cloudevent(event, source="urn:paygate:utility-a")
    assert envelope == {
        "specversion": "1.0",
        "id": "7301",
        "source": "urn:paygate:utility-a",
        "type": "payment.posted",
        "subject": "0100001",
        "time": "2026-11-25T02:00:00+00:00",
        "datacontenttype": "application/json",
        "data": {"amount": 1},
    }
    alert = cloudevent(event | {"account_no": None, "type": "outbox.dead_lettered"})
    assert "subject" not in alert and alert["source"] == "urn:paygate"
    assert datetime.fromisoformat(envelope["time"]).utcoffset() == timedelta(0)


def test_sinks_receive_envelopes_with_the_source_the_dispatcher_names(
    sqlite_gateway: Gateway,
) -> None:
    seen: list[Mapping[str, Any]] = []
    overdue(sqlite_gateway, "A01")
    sqlite_gateway.disconnect("A01", "arrears")
    Dispatcher(
        sqlite_gateway, headends={}, sinks=[CallbackSink(seen.append)], source="urn:utility-a"
    ).dispatch_once()
    [event] = seen
    assert validate(event).source == "urn:utility-a" and event["subject"] == "A01"


SECRET = "whsec-test"
NOW = 1_795_572_000


def signed(body: bytes, stamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), str(stamp).encode() + b"." + body, hashlib.sha256)
    return {
        "X-Paygate-Timestamp": str(stamp),
        "X-Paygate-Signature": mac.hexdigest(),
        "X-Paygate-Event-Id": "7301",
        "Content-Type": "application/cloudevents+json",
    }


BODY = encode(
    cloudevent(
        {
            "event_id": 7301,
            "type": "arrears.cleared",
            "account_no": "0100001",
            "occurred_at": "2026-11-25T02:00:00+00:00",
            "data": {"payment_id": 1, "supply_state": "reconnection_pending"},
        }
    )
)


def test_verify_webhook_accepts_a_delivery_and_returns_its_event() -> None:
    event = verify_webhook(BODY, signed(BODY), SECRET, now=NOW + 10)
    assert (event.id, event.type, event.subject) == ("7301", "arrears.cleared", "0100001")
    lower = {k.lower(): v for k, v in signed(BODY).items()}
    assert verify_webhook(BODY, lower, SECRET.encode(), now=NOW).id == "7301"


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        (lambda h, b: (h | {"X-Paygate-Signature": "0" * 64}, b), AuthenticationError, "Sig"),
        (lambda h, b: ({k: v for k, v in h.items() if "Signature" not in k}, b), None, "Sig"),
        (lambda h, b: ({k: v for k, v in h.items() if "Timestamp" not in k}, b), None, "Time"),
        (lambda h, b: (h | {"X-Paygate-Timestamp": "12x"}, b), None, "Timestamp"),
        (lambda h, b: (h, b.replace(b"0100001", b"0100002")), AuthenticationError, "Sig"),
        (lambda h, b: (h | {"X-Paygate-Event-Id": "1"}, b), AuthenticationError, "Event-Id"),
    ],
)
def test_verify_webhook_refuses_what_was_not_signed_by_paygate(
    change: Any, error: type[Exception] | None, field: str
) -> None:
    headers, body = change(signed(BODY), BODY)
    with pytest.raises(error or AuthenticationError, match=field):
        verify_webhook(body, headers, SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_verify_webhook_refuses_a_stale_or_future_timestamp(skew: int) -> None:
    with pytest.raises(ReplayError, match="tolerance"):
        verify_webhook(BODY, signed(BODY), SECRET, now=NOW + skew)
    verify_webhook(BODY, signed(BODY), SECRET, now=NOW + skew, tolerance=abs(skew))


def test_the_replay_guard_refuses_the_same_delivery_twice_within_the_window() -> None:
    guard = ReplayGuard()
    verify_webhook(BODY, signed(BODY), SECRET, now=NOW, replay_guard=guard)
    with pytest.raises(ReplayError, match="already received"):
        verify_webhook(BODY, signed(BODY), SECRET, now=NOW + 5, replay_guard=guard)
    # a redelivery by the dispatcher is signed anew: the same event, not a replay
    again = verify_webhook(BODY, signed(BODY, NOW + 30), SECRET, now=NOW + 30, replay_guard=guard)
    assert again.id == "7301"
    # past the window the stale timestamp refuses it before the guard needs to remember it
    with pytest.raises(ReplayError, match="tolerance"):
        verify_webhook(BODY, signed(BODY), SECRET, now=NOW + 301, replay_guard=guard)


def test_verify_webhook_refuses_a_signed_body_that_is_not_an_event() -> None:
    for body in (b"not json", b"[1]", json.dumps({"id": "1"}).encode()):
        headers = signed(body)
        headers.pop("X-Paygate-Event-Id")
        with pytest.raises(InvalidInputError):
            verify_webhook(body, headers, SECRET, now=NOW)


@given(st.integers(min_value=0, max_value=len(BODY) - 1), st.integers(1, 255))
def test_any_changed_byte_fails_verification(index: int, flip: int) -> None:
    body = bytearray(BODY)
    body[index] ^= flip
    with pytest.raises(AuthenticationError):
        verify_webhook(bytes(body), signed(BODY), SECRET, now=NOW)
