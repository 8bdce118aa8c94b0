"""Event sinks on a message broker: RabbitMQ (AMQP 0-9-1) and NATS JetStream.

Both carry each event as a CloudEvents envelope (:mod:`paygate.events`), return only once the
broker has acknowledged it (a publisher confirm, a JetStream ack), and reconnect on the next
delivery after the connection was lost: an event whose acknowledgement did not arrive is a
failed delivery, offered again by the dispatcher with the same id, which the broker
(JetStream's ``Nats-Msg-Id``) or the consumer (AMQP ``message_id``) deduplicates by.
The webhook and in-process sinks are in :mod:`paygate.outbox`.
"""

from __future__ import annotations

from paygate.sinks.jetstream import JetStreamSink
from paygate.sinks.rabbitmq import RabbitMQSink

__all__ = ["JetStreamSink", "RabbitMQSink"]
