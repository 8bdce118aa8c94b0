"""The RabbitMQ and NATS JetStream sinks against the real brokers: round trips through the
dispatcher, a connection cut after the broker took a publish but before its acknowledgement
came back (nothing lost, duplicates carry the same id), a closed connection, a broker restart.

The brokers must be running (RabbitMQ 127.0.0.1:5672 guest/guest, NATS with JetStream
127.0.0.1:4222); without them these tests fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.events import CONTENT_TYPE, validate
from paygate.gateway import Gateway
from paygate.outbox import DeliveryError, Dispatcher, EventSink
from paygate.sinks import JetStreamSink, RabbitMQSink
from tests.brokers import (
    NATS_URL,
    RABBIT_URL,
    PrivateNats,
    Proxy,
    delete_stream,
    drain_queue,
    rabbit_queue,
    rabbitmqctl,
    stream_messages,
    unique,
    wait_for_rabbit,
)
from tests.test_dispatch_order import first_deliveries, outbox_ids, three_events

ENVELOPE = {
    "specversion": "1.0",
    "source": "urn:paygate",
    "type": "supply.disconnected",
    "subject": "A1",
    "time": "2026-11-25T02:00:00+00:00",
    "datacontenttype": "application/json",
    "data": {"reason": "arrears"},
}


def envelope(event_id: int) -> dict[str, Any]:
    return ENVELOPE | {"id": str(event_id)}


@pytest.fixture
def story(sqlite_url: str, clock: FixedClock) -> Iterator[Gateway]:
    """Three accounts with three events each, waiting in the outbox."""
    with Gateway.open(
        settings=Settings(database_url=sqlite_url, seal_every=0), clock=clock
    ) as gateway:
        for n in range(3):
            three_events(gateway, f"A{n}")
        yield gateway


class Cutting:
    """Passes events to a sink; before the ``at``-th it tells the proxy to drop the reply."""

    def __init__(self, sink: EventSink, proxy: Proxy, at: int) -> None:
        self.name = sink.name
        self._sink, self._proxy, self._at, self.calls = sink, proxy, at, 0

    def deliver(self, event: Mapping[str, Any]) -> None:
        self.calls += 1
        if self.calls == self._at:
            self._proxy.drop_next_reply()
        self._sink.deliver(event)


def deliver_everything(gateway: Gateway, clock: FixedClock, sink: EventSink) -> list[int]:
    """Dispatch passes until the outbox is empty; the number of failed deliveries per pass."""
    dispatcher = Dispatcher(
        gateway,
        headends={},
        sinks=[sink],
        retry_base=timedelta(seconds=1),
        retry_cap=timedelta(seconds=2),
    )
    failures = []
    for _ in range(10):
        report = dispatcher.drain(1000)
        failures.append(report.events_retrying)
        if not gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"),
            write=False,
        ):
            return failures
        clock.advance(timedelta(seconds=5))
    raise AssertionError(f"the outbox did not empty: {failures}")


# -- RabbitMQ ---------------------------------------------------------------------------------


def test_rabbitmq_round_trip(story: Gateway, clock: FixedClock) -> None:
    exchange = unique("paygate-test-x")
    with rabbit_queue(exchange) as (channel, queue):
        sink = RabbitMQSink(RABBIT_URL, exchange=exchange, timeout=5)
        try:
            assert deliver_everything(story, clock, sink) == [0]
        finally:
            sink.close()
        messages = drain_queue(channel, queue)
    received = []
    for method, properties, body in messages:
        event = validate(json.loads(body))
        assert method.exchange == exchange and method.routing_key == event.type
        assert properties.message_id == event.id and properties.delivery_mode == 2
        assert properties.content_type == CONTENT_TYPE
        received.append((event.subject, int(event.id)))
    assert first_deliveries(received) == outbox_ids(story)
    assert len(received) == 9  # each once: nothing failed


def test_rabbitmq_without_a_bound_queue_the_event_waits(story: Gateway, clock: FixedClock) -> None:
    exchange = unique("paygate-test-x")
    sink = RabbitMQSink(RABBIT_URL, exchange=exchange, timeout=5)
    try:
        with pytest.raises(DeliveryError, match="no queue is bound"):
            sink.deliver(envelope(1))
        report = Dispatcher(story, headends={}, sinks=[sink]).dispatch_once()
        assert report.events_delivered == 0 and report.events_retrying == 3
    finally:
        sink.close()
        with rabbit_queue(exchange):
            pass  # deletes the exchange the sink declared


def test_rabbitmq_a_cut_before_the_confirm_loses_nothing(story: Gateway, clock: FixedClock) -> None:
    exchange = unique("paygate-test-x")
    proxy = Proxy(5672)
    url = f"amqp://guest@127.0.0.1:{proxy.port}/%2F"
    with rabbit_queue(exchange) as (channel, queue):
        sink = RabbitMQSink(url, exchange=exchange, password=SecretStr("guest"), timeout=5)
        try:
            failures = deliver_everything(story, clock, Cutting(sink, proxy, at=4))
        finally:
            sink.close()
            proxy.close()
        messages = drain_queue(channel, queue)
    assert failures[0] == 1 and proxy.cuts >= 1
    received = [(json.loads(body)["subject"], int(p.message_id)) for _, p, body in messages]
    ids = [event_id for _, event_id in received]
    # the broker had taken the cut publish: it arrives twice, with one id and one body
    [(twice, count)] = [(i, ids.count(i)) for i in set(ids) if ids.count(i) > 1]
    assert count == 2
    bodies = {body for _, p, body in messages if int(p.message_id) == twice}
    assert len(bodies) == 1
    assert first_deliveries(received) == outbox_ids(story)


def test_rabbitmq_broker_restart(tmp_path: Path) -> None:
    exchange = unique("paygate-test-x")
    with rabbit_queue(exchange) as (channel, queue):
        channel.connection.close()
        sink = RabbitMQSink(RABBIT_URL, exchange=exchange, timeout=5)
        try:
            sink.deliver(envelope(1))
            try:
                rabbitmqctl("stop_app")
                with pytest.raises(DeliveryError):
                    sink.deliver(envelope(2))
            finally:
                rabbitmqctl("start_app")
                wait_for_rabbit()
            sink.deliver(envelope(2))  # the dispatcher's retry: a new connection
            sink.deliver(envelope(3))
        finally:
            sink.close()
        with rabbit_queue(exchange) as (reader, _):
            messages = drain_queue(reader, queue)
            reader.queue_delete(queue)
    assert [p.message_id for _, p, _ in messages] == ["1", "2", "3"]  # durable, persistent


def test_rabbitmq_sink_refuses_a_bad_url_and_hides_the_password() -> None:
    with pytest.raises(Exception, match="amqp"):
        RabbitMQSink("http://127.0.0.1", exchange="x")
    sink = RabbitMQSink("amqp://guest:sekrit@127.0.0.1:5672/%2F", exchange="x")
    assert "sekrit" not in repr(sink)
    sink.close()


# -- NATS JetStream ---------------------------------------------------------------------------


@pytest.fixture
def stream() -> Iterator[str]:
    name = unique("PAYGATE_TEST").replace("-", "_")
    try:
        yield name
    finally:
        delete_stream(NATS_URL, name)


def test_nats_round_trip(story: Gateway, clock: FixedClock, stream: str) -> None:
    prefix = unique("paygate-test")
    sink = JetStreamSink(NATS_URL, stream=stream, subject_prefix=prefix, timeout=5)
    try:
        assert deliver_everything(story, clock, sink) == [0]
    finally:
        sink.close()
    received = []
    for headers, body, subject in stream_messages(NATS_URL, stream):
        event = validate(json.loads(body))
        assert headers["Nats-Msg-Id"] == event.id and subject == f"{prefix}.{event.type}"
        assert headers["Content-Type"] == CONTENT_TYPE
        received.append((event.subject, int(event.id)))
    assert first_deliveries(received) == outbox_ids(story)
    assert len(received) == 9


def test_nats_a_cut_before_the_ack_loses_nothing_and_is_stored_once(
    story: Gateway, clock: FixedClock, stream: str
) -> None:
    proxy = Proxy(4222)
    sink = JetStreamSink(
        f"nats://127.0.0.1:{proxy.port}", stream=stream, subject_prefix=stream, timeout=2
    )
    try:
        failures = deliver_everything(story, clock, Cutting(sink, proxy, at=4))
    finally:
        sink.close()
        proxy.close()
    assert failures[0] == 1 and proxy.cuts >= 1
    received = [
        (json.loads(body)["subject"], int(headers["Nats-Msg-Id"]))
        for headers, body, _ in stream_messages(NATS_URL, stream)
    ]
    # JetStream took the cut publish; the retry with the same Nats-Msg-Id was a duplicate
    assert len(received) == len(set(received)) == 9
    assert first_deliveries(received) == outbox_ids(story)


def test_nats_a_closed_connection_is_opened_again(stream: str) -> None:
    sink = JetStreamSink(NATS_URL, stream=stream, subject_prefix=stream, timeout=5)
    try:
        sink.deliver(envelope(1))
        connection = sink._nc
        assert connection is not None
        sink._host.run(connection.close(), 10)
        sink.deliver(envelope(2))
        sink.deliver(envelope(2))  # a redelivery: stored once
    finally:
        sink.close()
    assert [h["Nats-Msg-Id"] for h, _, _ in stream_messages(NATS_URL, stream)] == ["1", "2"]


def test_nats_broker_restart(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    sink = JetStreamSink(server.url, stream="PAYGATE", subject_prefix="paygate", timeout=1)
    try:
        sink.deliver(envelope(1))
        server.stop()
        with pytest.raises(DeliveryError):
            sink.deliver(envelope(2))
        server.start()
        for _ in range(20):  # the dispatcher's retries, until the client is back
            try:
                sink.deliver(envelope(2))
                break
            except DeliveryError:
                continue
        sink.deliver(envelope(3))
        ids = [h["Nats-Msg-Id"] for h, _, _ in stream_messages(server.url, "PAYGATE")]
    finally:
        sink.close()
        server.stop()
    assert ids == ["1", "2", "3"]


def test_nats_stream_is_checked(stream: str) -> None:
    missing = JetStreamSink(NATS_URL, stream=stream, declare=False, timeout=5)
    try:
        with pytest.raises(DeliveryError, match="does not exist"):
            missing.deliver(envelope(1))
    finally:
        missing.close()
    first = JetStreamSink(NATS_URL, stream=stream, subject_prefix=f"{stream}-a", timeout=5)
    other = JetStreamSink(NATS_URL, stream=stream, subject_prefix=f"{stream}-b", timeout=5)
    try:
        first.deliver(envelope(1))
        with pytest.raises(DeliveryError, match="does not capture"):
            other.deliver(envelope(2))
    finally:
        first.close()
        other.close()
