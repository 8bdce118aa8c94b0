"""Dispatcher configuration: the ``[dispatch]`` section built into head-ends and event sinks.

The section's shape is :class:`paygate.config.DispatchSection` (one configuration file, or an
older ``dispatch.toml`` with its tables at the top); secrets are never in the file, only the
names of the environment variables that hold them: any option ``<name>_env = "VAR"`` gives the
head-end ``<name>`` from ``$VAR`` as a secret (``secret_env``, ``password_env``,
``operator_code_env``)::

    [dispatch]
    default_headend = "ami"

    [dispatch.headends.ami]
    type = "webhook"                       # a registered head-end: webhook, dlt645, workorder, …
    url = "https://ami.example/commands"
    secret_env = "PAYGATE_AMI_SECRET"

    [dispatch.headends.field]
    type = "workorder"

    [[dispatch.sinks]]
    kind = "webhook"                       # webhook | rabbitmq | nats: SINK_BUILDERS builds each
    name = "billing"
    url = "https://billing.example/paygate-events"
    secret_env = "PAYGATE_BILLING_WEBHOOK_SECRET"

    [[dispatch.sinks]]
    kind = "rabbitmq"
    url = "amqp://paygate@mq.example:5672/%2F"
    exchange = "paygate.events"
    password_env = "PAYGATE_AMQP_PASSWORD"

    [[dispatch.sinks]]
    kind = "nats"
    url = "nats://nats.example:4222"
    stream = "PAYGATE"
    subject_prefix = "paygate"

    [dispatch.dispatcher]
    lease_seconds = 120
    poll_seconds = 300
    retry_base_seconds = 30
    retry_cap_seconds = 3600
    max_attempts = 12
    event_source = "urn:paygate:utility-a"  # the CloudEvents source of every event

Each ``[[dispatch.sinks]]`` entry is checked by the model of its kind
(:class:`~paygate.config.WebhookSinkSection`, :class:`~paygate.config.RabbitMQSinkSection`,
:class:`~paygate.config.NatsSinkSection`); the older table form ``[sinks.NAME]`` with
``type = "webhook"`` is read as a webhook entry named NAME. A new kind of sink is a model in
:data:`paygate.config.SinkSection`'s union (its ``kind`` a literal) and a builder here in
:data:`SINK_BUILDERS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr, ValidationError

from paygate.config import (
    DispatcherSection,
    HeadEndSection,
    NatsSinkSection,
    PaygateConfig,
    RabbitMQSinkSection,
    WebhookSinkSection,
    secret_from_env,
)
from paygate.errors import ConfigurationError
from paygate.headend.base import HeadEnd, HeadEndRegistry
from paygate.outbox import EventSink, WebhookSink

__all__ = [
    "SINK_BUILDERS",
    "DispatchConfig",
    "check_dispatcher_options",
    "dispatch_config",
    "dispatcher_options",
    "load_dispatch_config",
]


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


def _secret(
    where: str, var: str | None, config: PaygateConfig, environ: Mapping[str, str]
) -> SecretStr | None:
    if var is None:
        return None
    return SecretStr(secret_from_env(config.place(where), var, environ))


def _webhook_sink(
    at: str, section: WebhookSinkSection, config: PaygateConfig, environ: Mapping[str, str]
) -> EventSink:
    secret = _secret(f"{at}.secret_env", section.secret_env, config, environ)
    assert secret is not None
    return WebhookSink(
        section.url, secret, name=section.name or "webhook", timeout=section.timeout_seconds
    )


def _rabbitmq_sink(
    at: str, section: RabbitMQSinkSection, config: PaygateConfig, environ: Mapping[str, str]
) -> EventSink:
    from paygate.sinks.rabbitmq import RabbitMQSink

    return RabbitMQSink(
        section.url,
        exchange=section.exchange,
        name=section.name or "rabbitmq",
        password=_secret(f"{at}.password_env", section.password_env, config, environ),
        mandatory=section.mandatory,
        timeout=section.timeout_seconds,
    )


def _nats_sink(
    at: str, section: NatsSinkSection, config: PaygateConfig, environ: Mapping[str, str]
) -> EventSink:
    from paygate.sinks.jetstream import JetStreamSink

    return JetStreamSink(
        section.url,
        stream=section.stream,
        subject_prefix=section.subject_prefix,
        name=section.name or "nats",
        user=section.user,
        password=_secret(f"{at}.password_env", section.password_env, config, environ),
        token=_secret(f"{at}.token_env", section.token_env, config, environ),
        declare=section.declare,
        duplicate_window=section.duplicate_window_seconds,
        timeout=section.timeout_seconds,
    )


SinkBuilder = Callable[[str, Any, PaygateConfig, Mapping[str, str]], EventSink]
"""Builds the event sink of one ``[[dispatch.sinks]]`` entry of its ``kind`` (the entry's key
for messages, the entry, the configuration, the environment)."""

SINK_BUILDERS: Final[Mapping[str, SinkBuilder]] = {
    "webhook": _webhook_sink,
    "rabbitmq": _rabbitmq_sink,
    "nats": _nats_sink,
}
"""Each kind of sink of :data:`~paygate.config.SinkSection`, and how it is built."""


def _headend(
    name: str,
    section: HeadEndSection,
    registry: HeadEndRegistry,
    config: PaygateConfig,
    environ: Mapping[str, str],
) -> HeadEnd:
    at = f"dispatch.headends.{name}"
    options: dict[str, Any] = {}
    for key, value in section.options.items():
        if key.endswith("_env"):
            # password_env = "VAR" supplies password from the environment, never the file
            where = config.place(f"{at}.{key}")
            options[key.removesuffix("_env")] = SecretStr(secret_from_env(where, value, environ))
        else:
            options[key] = value
    cls = registry.get(section.type)
    factory = getattr(cls, "from_config", None)
    try:
        built: HeadEnd = factory(options) if callable(factory) else cls(**options)
    except (TypeError, ValueError) as exc:
        raise config.problem(at, str(exc)) from exc
    return built


def dispatch_config(
    config: PaygateConfig,
    *,
    registry: HeadEndRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> DispatchConfig:
    """The ``[dispatch]`` section of ``config``, built: its head-ends and sinks, secrets read
    from their environment variables, the dispatcher's options checked by its rules."""
    env = os.environ if environ is None else environ
    section = config.dispatch
    built = DispatchConfig(default_headend=section.default_headend)
    if section.headends:
        registry = registry or HeadEndRegistry.discover()
        for name, headend in section.headends.items():
            built.headends[name] = _headend(name, headend, registry, config, env)
    for index, sink in enumerate(section.sinks):
        at = f"dispatch.sinks.{sink.name}" if sink.name else f"dispatch.sinks[{index}]"
        try:
            built.sinks.append(SINK_BUILDERS[sink.kind](at, sink, config, env))
        except ConfigurationError:
            built.close()
            raise
    built.options = section.dispatcher.model_dump(exclude_none=True)
    _checked(section.dispatcher, config)
    return built


def load_dispatch_config(
    path: Path | None,
    *,
    registry: HeadEndRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> DispatchConfig:
    """The ``[dispatch]`` section of ``path`` (one configuration file, or an older
    ``dispatch.toml``), under the ``PAYGATE_*`` variables; None: no head-ends, no sinks."""
    if path is None:
        return DispatchConfig()
    config = PaygateConfig.load(environ=environ, files={"dispatch": path})
    return dispatch_config(config, registry=registry, environ=environ)


_SPANS = {
    "lease_seconds": "lease",
    "poll_seconds": "poll_interval",
    "retry_base_seconds": "retry_base",
    "retry_cap_seconds": "retry_cap",
    "event_budget_seconds": "event_budget",
}
_COUNTS = ("max_attempts", "batch", "alert_after")
_TEXTS = {"event_source": "source"}


def dispatcher_options(options: Mapping[str, Any] | DispatcherSection) -> dict[str, Any]:
    """Keyword arguments for :class:`~paygate.outbox.Dispatcher` from the [dispatcher] table.

    Each key means what the constructor's argument means (its rules are checked by
    :func:`check_dispatcher_options`); a value of the wrong type is refused naming the key.
    """
    section = _section(options)
    out: dict[str, Any] = {}
    for key, value in section.model_dump(exclude_none=True).items():
        if key in _SPANS:
            out[_SPANS[key]] = timedelta(seconds=value)
        elif key in _TEXTS:
            out[_TEXTS[key]] = value
        else:
            out[key] = value
    return out


def _section(options: Mapping[str, Any] | DispatcherSection) -> DispatcherSection:
    if isinstance(options, DispatcherSection):
        return options
    try:
        return DispatcherSection.model_validate(dict(options))
    except ValidationError as exc:
        raise PaygateConfig.model_construct().refusal(exc, "dispatcher") from None


def _checked(section: DispatcherSection, config: PaygateConfig) -> dict[str, Any]:
    from paygate.outbox import Dispatcher

    kwargs = dispatcher_options(section)
    try:
        Dispatcher.check(**{k: v for k, v in kwargs.items() if k not in _TEXTS.values()})
    except ConfigurationError as exc:
        keys = {v: k for k, v in _SPANS.items()} | {k: k for k in _COUNTS}
        key = keys.get(exc.field or "", exc.field or "")
        raise config.problem(f"dispatch.dispatcher.{key}", exc.message) from None
    return kwargs


def check_dispatcher_options(options: Mapping[str, Any] | DispatcherSection) -> dict[str, Any]:
    """:func:`dispatcher_options`, refused by the constructor's rules with the key named."""
    return _checked(_section(options), PaygateConfig.model_construct())
