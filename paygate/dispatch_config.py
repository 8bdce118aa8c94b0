"""Dispatcher configuration: which head-ends and event sinks a ``paygate dispatch`` uses.

A TOML file names them; secrets are never in the file, only the names of the environment
variables that hold them: any option ``<name>_env = "VAR"`` gives the adapter ``<name>`` from
``$VAR`` as a secret (``secret_env``, ``password_env``, ``operator_code_env``)::

    default_headend = "ami"

    [headends.ami]
    type = "webhook"                       # a registered head-end: webhook, dlt645, workorder, …
    url = "https://ami.example/commands"
    secret_env = "PAYGATE_AMI_SECRET"

    [headends.field]
    type = "workorder"

    [[sinks]]
    kind = "webhook"                       # webhook | rabbitmq | nats
    name = "billing"
    url = "https://billing.example/paygate-events"
    secret_env = "PAYGATE_BILLING_WEBHOOK_SECRET"

    [[sinks]]
    kind = "rabbitmq"
    url = "amqp://paygate@mq.example:5672/%2F"
    exchange = "paygate.events"
    password_env = "PAYGATE_AMQP_PASSWORD"

    [[sinks]]
    kind = "nats"
    url = "nats://nats.example:4222"
    stream = "PAYGATE"
    subject_prefix = "paygate"

    [dispatcher]
    lease_seconds = 120
    poll_seconds = 300
    retry_base_seconds = 30
    retry_cap_seconds = 3600
    max_attempts = 12
    event_source = "urn:paygate:utility-a"  # CloudEvents source of every event

Each ``[[sinks]]`` entry is checked by the model of its kind (:class:`WebhookSinkSection`,
:class:`RabbitMQSinkSection`, :class:`NatsSinkSection`); the older table form
``[sinks.NAME]`` with ``type = "webhook"`` is read as a webhook entry named NAME.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
)

from paygate.errors import ConfigurationError
from paygate.headend.base import HeadEnd, HeadEndRegistry
from paygate.outbox import EventSink, WebhookSink

__all__ = [
    "DispatchConfig",
    "NatsSinkSection",
    "RabbitMQSinkSection",
    "WebhookSinkSection",
    "load_dispatch_config",
]


def _broker_url(*schemes: str) -> AfterValidator:
    def check(url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"a {' or '.join(s + '://' for s in schemes)} URL with a host")
        if parts.password is not None:
            raise ValueError("no password in the URL: name its environment variable instead")
        return url

    return AfterValidator(check)


_EnvName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _SinkSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="", description="how logs and errors name the sink")

    def _env(self, var: str | None, environ: Mapping[str, str], key: str) -> SecretStr | None:
        if var is None:
            return None
        if var not in environ:
            raise ConfigurationError(f"environment variable {var} is not set", field=key)
        return SecretStr(environ[var])


class WebhookSinkSection(_SinkSection):
    """``kind = "webhook"``: events POSTed, signed with the secret in ``$secret_env``."""

    kind: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: _EnvName
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    def build(self, environ: Mapping[str, str]) -> EventSink:
        """The sink this entry names."""
        secret = self._env(self.secret_env, environ, "secret_env")
        assert secret is not None
        return WebhookSink(
            self.url, secret, name=self.name or "webhook", timeout=self.timeout_seconds
        )


class RabbitMQSinkSection(_SinkSection):
    """``kind = "rabbitmq"``: events to a durable topic exchange, confirmed by the broker.
    The password comes from ``$password_env``, never from the URL."""

    kind: Literal["rabbitmq"]
    url: Annotated[str, _broker_url("amqp", "amqps")]
    exchange: Annotated[str, Field(min_length=1, max_length=255)]
    password_env: _EnvName | None = None
    mandatory: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    def build(self, environ: Mapping[str, str]) -> EventSink:
        """The sink this entry names."""
        from paygate.sinks.rabbitmq import RabbitMQSink

        return RabbitMQSink(
            self.url,
            exchange=self.exchange,
            name=self.name or "rabbitmq",
            password=self._env(self.password_env, environ, "password_env"),
            mandatory=self.mandatory,
            timeout=self.timeout_seconds,
        )


class NatsSinkSection(_SinkSection):
    """``kind = "nats"``: events to a JetStream stream, acknowledged, deduplicated by id.
    A token or password comes from ``$token_env`` / ``$password_env``."""

    kind: Literal["nats"]
    url: Annotated[str, _broker_url("nats", "tls")] = "nats://127.0.0.1:4222"
    stream: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    subject_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = (
        "paygate"
    )
    user: str | None = None
    password_env: _EnvName | None = None
    token_env: _EnvName | None = None
    declare: bool = True
    duplicate_window_seconds: Annotated[float, Field(gt=0)] = 120.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    def build(self, environ: Mapping[str, str]) -> EventSink:
        """The sink this entry names."""
        from paygate.sinks.jetstream import JetStreamSink

        return JetStreamSink(
            self.url,
            stream=self.stream,
            subject_prefix=self.subject_prefix,
            name=self.name or "nats",
            user=self.user,
            password=self._env(self.password_env, environ, "password_env"),
            token=self._env(self.token_env, environ, "token_env"),
            declare=self.declare,
            duplicate_window=self.duplicate_window_seconds,
            timeout=self.timeout_seconds,
        )


SinkSection = Annotated[
    WebhookSinkSection | RabbitMQSinkSection | NatsSinkSection, Field(discriminator="kind")
]
"""One ``[[sinks]]`` entry, checked by the model its ``kind`` names."""
_SINK = TypeAdapter(SinkSection)


_AnySink = WebhookSinkSection | RabbitMQSinkSection | NatsSinkSection


def sink_sections(sinks: object) -> list[_AnySink]:
    """The ``[[sinks]]`` entries (or the older ``[sinks.NAME]`` tables), each checked by the
    model of its kind; ConfigurationError names the entry and the field."""
    if isinstance(sinks, dict):
        entries: list[tuple[str, Any]] = []
        for name, table in sinks.items():
            if not isinstance(table, dict):
                raise ConfigurationError(f"sinks.{name}: a table")
            fields = {k: v for k, v in table.items() if k != "type"}
            entries.append((f"sinks.{name}", {"kind": table.get("type"), "name": name} | fields))
    elif isinstance(sinks, list):
        entries = [(f"sinks[{i}]", entry) for i, entry in enumerate(sinks)]
    else:
        raise ConfigurationError("sinks: a list of [[sinks]] entries")
    out = []
    for where, entry in entries:
        if isinstance(entry, dict) and entry.get("kind") not in ("webhook", "rabbitmq", "nats"):
            raise ConfigurationError(
                f"{where}.kind: webhook, rabbitmq or nats, not {entry.get('kind')!r}"
            )
        try:
            out.append(_SINK.validate_python(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"][1:]) or "entry"
            raise ConfigurationError(f"{where}.{path}: {first['msg']}") from None
    return out


@dataclass
class DispatchConfig:
    """Head-ends, sinks and dispatcher timings read from a configuration file."""

    headends: dict[str, HeadEnd] = field(default_factory=dict)
    sinks: list[EventSink] = field(default_factory=list)
    default_headend: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release the head-ends' and sinks' connections."""
        for headend in self.headends.values():
            headend.close()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()


def _secret(section: str, config: Mapping[str, Any], environ: Mapping[str, str]) -> SecretStr:
    var = config.get("secret_env")
    if not isinstance(var, str) or not var:
        raise ConfigurationError(f"{section}: name the environment variable with secret_env")
    if var not in environ:
        raise ConfigurationError(f"{section}: environment variable {var} is not set")
    return SecretStr(environ[var])


def load_dispatch_config(
    path: Path | None,
    *,
    registry: HeadEndRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> DispatchConfig:
    """Read ``path`` (None: no head-ends, no sinks) and build what it names."""
    env = os.environ if environ is None else environ
    if path is None:
        return DispatchConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    registry = registry or HeadEndRegistry.discover()
    config = DispatchConfig(default_headend=data.get("default_headend"))
    for name, section in dict(data.get("headends", {})).items():
        kind = section.get("type")
        if not isinstance(kind, str):
            raise ConfigurationError(f"headends.{name}: type is required")
        options: dict[str, Any] = {}
        for key, value in section.items():
            if key == "type":
                continue
            if key.endswith("_env"):
                # password_env = "VAR" supplies password from the environment, never the file
                options[key.removesuffix("_env")] = _secret(
                    f"headends.{name}.{key}", {"secret_env": value}, env
                )
            else:
                options[key] = value
        cls = registry.get(kind)
        factory = getattr(cls, "from_config", None)
        try:
            config.headends[name] = factory(options) if callable(factory) else cls(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"headends.{name}: {exc}") from exc
    sections = sink_sections(data.get("sinks", []))
    for index, section in enumerate(sections):
        try:
            config.sinks.append(section.build(env))
        except ConfigurationError as exc:
            config.close()
            where = f"sinks.{section.name}" if section.name else f"sinks[{index}]"
            raise ConfigurationError(f"{where}.{exc.field or 'entry'}: {exc.message}") from None
    config.options = dict(data.get("dispatcher", {}))
    check_dispatcher_options(config.options)
    if config.default_headend and config.default_headend not in config.headends:
        raise ConfigurationError(f"default_headend {config.default_headend!r} is not configured")
    return config


_SPANS = {
    "lease_seconds": "lease",
    "poll_seconds": "poll_interval",
    "retry_base_seconds": "retry_base",
    "retry_cap_seconds": "retry_cap",
    "event_budget_seconds": "event_budget",
}
_COUNTS = ("max_attempts", "batch", "alert_after")
_TEXTS = {"event_source": "source"}


def dispatcher_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :class:`~paygate.outbox.Dispatcher` from the [dispatcher] table.

    Each key means what the constructor's argument means and is checked by the same rules
    (the constructor's); a value of the wrong type is named here.
    """
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in _SPANS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"dispatcher.{key} must be a number of seconds")
            out[_SPANS[key]] = timedelta(seconds=value)
        elif key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"dispatcher.{key} must be a whole number")
            out[key] = value
        elif key in _TEXTS:
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"dispatcher.{key} must be a non-empty string")
            out[_TEXTS[key]] = value
        else:
            raise ConfigurationError(f"dispatcher.{key} is not a setting")
    return out


def check_dispatcher_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`dispatcher_options`, refused by the constructor's rules with the TOML key named."""
    from paygate.outbox import Dispatcher

    kwargs = dispatcher_options(options)
    try:
        Dispatcher.check(**{k: v for k, v in kwargs.items() if k not in _TEXTS.values()})
    except ConfigurationError as exc:
        keys = {v: k for k, v in _SPANS.items()} | {k: k for k in _COUNTS}
        key = keys.get(exc.field or "", exc.field or "")
        raise ConfigurationError(f"dispatcher.{key}: {exc.message}") from None
    return kwargs
