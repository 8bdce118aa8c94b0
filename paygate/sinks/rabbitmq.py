"""Events to a RabbitMQ topic exchange over AMQP 0-9-1, with publisher confirms."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pika
import pika.exceptions
from pydantic import SecretStr

from paygate.errors import ConfigurationError
from paygate.events import CONTENT_TYPE, encode
from paygate.outbox import DeliveryError

__all__ = ["RabbitMQSink"]


class RabbitMQSink:
    """Publishes each event to a durable topic exchange, persistent, with the event type as
    routing key and the event id as ``message_id``; returns once the broker confirmed it.

    The exchange is declared (durable, type topic) on every connection. With ``mandatory``
    (the default) an event no queue is bound for is returned by the broker and is a failed
    delivery: it waits in the outbox until a consumer has bound its queue, never dropped.
    A lost connection (broker restart, network cut) fails the delivery under way and is
    opened anew by the next one. Not for use by several threads at once (a lock serialises).
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str,
        name: str = "rabbitmq",
        password: SecretStr | None = None,
        mandatory: bool = True,
        timeout: float = 10.0,
        heartbeat: int = 30,
    ) -> None:
        if not url.startswith(("amqp://", "amqps://")):
            raise ConfigurationError("an amqp:// or amqps:// URL", field="url")
        if not exchange:
            raise ConfigurationError("name the exchange", field="exchange")
        self.name = name
        self.exchange = exchange
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        self._params = pika.URLParameters(urlunsplit(parts._replace(netloc=host)))
        if parts.username is not None or password is not None:
            secret = password.get_secret_value() if password is not None else parts.password
            self._params.credentials = pika.PlainCredentials(
                unquote(parts.username or "guest"), unquote(secret or "")
            )
        self._params.socket_timeout = timeout
        self._params.stack_timeout = timeout
        self._params.blocked_connection_timeout = timeout
        self._params.heartbeat = heartbeat
        self._params.connection_attempts = 1
        self._mandatory = mandatory
        self._url = _without_password(url)
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None

    def deliver(self, event: Mapping[str, Any]) -> None:
        """Publish and wait for the broker's confirm; DeliveryError if it did not come."""
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=str(event["id"]),
            type=str(event["type"]),
            timestamp=int(time.time()),
            app_id=str(event.get("source", "")),
        )
        body = encode(event)
        with self._lock:
            try:
                channel = self._open()
                channel.basic_publish(
                    self.exchange,
                    str(event["type"]),
                    body,
                    properties,
                    mandatory=self._mandatory,
                )
            except pika.exceptions.UnroutableError as exc:
                raise DeliveryError(
                    f"{self.name}: no queue is bound for {event['type']} on {self.exchange}"
                ) from exc
            except pika.exceptions.NackError as exc:
                raise DeliveryError(f"{self.name}: the broker refused the message") from exc
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._drop()
                raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._drop()
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        except BaseException:
            _quietly_close(connection)
            raise
        self._connection, self._channel = connection, channel
        return channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _quietly_close(connection)

    def close(self) -> None:
        """Close the connection (the next delivery opens another)."""
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"RabbitMQSink({self.name!r}, {self._url!r}, exchange={self.exchange!r})"


def _quietly_close(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # noqa: S110 - a connection already broken has nothing left to close
        pass


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
