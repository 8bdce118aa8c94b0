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

    [dispatch.sinks.billing]
    type = "webhook"                       # a kind of sink: SINK_BUILDERS builds each
    url = "https://billing.example/paygate-events"
    secret_env = "PAYGATE_BILLING_WEBHOOK_SECRET"

    [dispatch.dispatcher]
    lease_seconds = 120
    poll_seconds = 300
    retry_base_seconds = 30
    retry_cap_seconds = 3600
    max_attempts = 12

A new kind of sink is a model in :data:`paygate.config.SinkSection`'s union (its ``type`` a
literal) and a builder here in :data:`SINK_BUILDERS`.
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
    PaygateConfig,
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


def _webhook_sink(
    name: str, section: WebhookSinkSection, config: PaygateConfig, environ: Mapping[str, str]
) -> EventSink:
    where = config.place(f"dispatch.sinks.{name}.secret_env")
    return WebhookSink(
        section.url, SecretStr(secret_from_env(where, section.secret_env, environ)), name=name
    )


SinkBuilder = Callable[[str, Any, PaygateConfig, Mapping[str, str]], EventSink]
"""Builds the event sink of one ``[dispatch.sinks.NAME]`` table of its ``type``."""

SINK_BUILDERS: Final[Mapping[str, SinkBuilder]] = {"webhook": _webhook_sink}
"""Each sink type of :data:`~paygate.config.SinkSection`, and how it is built."""


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
    for name, sink in section.sinks.items():
        built.sinks.append(SINK_BUILDERS[sink.type](name, sink, config, env))
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
        Dispatcher.check(**kwargs)
    except ConfigurationError as exc:
        keys = {v: k for k, v in _SPANS.items()} | {k: k for k in _COUNTS}
        key = keys.get(exc.field or "", exc.field or "")
        raise config.problem(f"dispatch.dispatcher.{key}", exc.message) from None
    return kwargs


def check_dispatcher_options(options: Mapping[str, Any] | DispatcherSection) -> dict[str, Any]:
    """:func:`dispatcher_options`, refused by the constructor's rules with the key named."""
    return _checked(_section(options), PaygateConfig.model_construct())
