"""Event sinks: a signed webhook a billing system can verify, and Gateway.dispatch_once."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from paygate.events import verify_webhook
from paygate.gateway import Gateway
from paygate.money import Money
from paygate.outbox import CallbackSink, DeliveryError, WebhookSink
from tests.headend.simulator import CallbackReceiver

ENVELOPE = {
    "specversion": "1.0",
    "id": "42",
    "source": "urn:paygate",
    "type": "payment.posted",
    "subject": "A1",
    "time": "2026-11-25T02:00:00+00:00",
    "datacontenttype": "application/json",
    "data": {"dunning": 1},
}


def test_webhook_sink_signs_each_event_and_names_its_id() -> None:
    with CallbackReceiver() as receiver:
        sink = WebhookSink(
            f"{receiver.url}/events", SecretStr("s3cret"), clock=lambda: 1_700_000_000
        )
        try:
            sink.deliver(ENVELOPE)
        finally:
            sink.close()
        [delivery] = receiver.deliveries
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["x-paygate-event-id"] == "42"
    assert headers["x-paygate-timestamp"] == "1700000000"
    assert headers["content-type"] == "application/cloudevents+json"
    # The signature scheme receivers already check: HMAC-SHA256 of "timestamp.body".
    expected = hmac.new(b"s3cret", b"1700000000." + delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-paygate-signature"], expected)
    assert json.loads(delivery.body) == ENVELOPE
    event = verify_webhook(delivery.body, delivery.headers, "s3cret", now=1_700_000_001)
    assert (event.id, event.subject, event.data) == ("42", "A1", {"dunning": 1})
    assert "s3cret" not in repr(sink)


@pytest.mark.parametrize("status", [500, 404, 301])
def test_webhook_sink_failures_are_delivery_errors(status: int) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status))
    sink = WebhookSink("https://billing.example/events", SecretStr("k"), transport=transport)
    with pytest.raises(DeliveryError, match=f"HTTP {status}"):
        sink.deliver(ENVELOPE)
    sink.close()


def test_webhook_sink_unreachable_is_a_delivery_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sink = WebhookSink(
        "https://billing.example/events", SecretStr("k"), transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(DeliveryError, match="ConnectError"):
        sink.deliver(ENVELOPE)
    sink.close()


def test_gateway_dispatch_once_delivers_events_to_an_in_process_callback(
    gateway: Gateway,
) -> None:
    seen: list[Mapping[str, Any]] = []
    gateway.open_account("A1")
    gateway.issue_bill(
        "A1",
        bill_no="B-A1",
        amount=Money(100, "CNY"),
        period="2026-10",
        due_date=date(2026, 11, 1),
    )
    gateway.disconnect("A1", "arrears")
    report = gateway.dispatch_once(sinks=[CallbackSink(seen.append)])
    assert report.events_delivered == 1
    assert [(e["type"], e["subject"], e["specversion"]) for e in seen] == [
        ("supply.disconnected", "A1", "1.0")
    ]
    assert gateway.dispatch_once(sinks=[CallbackSink(seen.append)]).events_delivered == 0


def test_the_loop_host_runs_background_tasks_while_callers_are_quiet() -> None:
    import asyncio
    import threading
    import time

    from paygate.sinks.jetstream import LoopHost

    host = LoopHost("test-host", idle=0.05)
    ticks: list[str] = []

    async def start() -> None:
        async def tick() -> None:
            while True:
                ticks.append(threading.current_thread().name)
                await asyncio.sleep(0.01)

        host.loop.create_task(tick())

    async def answer() -> int:
        return 42

    try:
        host.run(start(), 5)
        time.sleep(0.5)  # nobody calls: the host's own thread keeps the loop going
        assert ticks.count("test-host") >= 5
        assert host.run(answer(), 5) == 42  # a caller takes the loop back at once
        with pytest.raises(TimeoutError):
            host.run(asyncio.sleep(10), 0.05)
    finally:
        host.close()
    assert host.loop.is_closed()
