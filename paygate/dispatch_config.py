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

    [sinks.billing]
    type = "webhook"
    url = "https://billing.example/paygate-events"
    secret_env = "PAYGATE_BILLING_WEBHOOK_SECRET"

    [dispatcher]
    lease_seconds = 120
    poll_seconds = 300
    retry_base_seconds = 30
    retry_cap_seconds = 3600
    max_attempts = 12
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from paygate.errors import ConfigurationError
from paygate.headend.base import HeadEnd, HeadEndRegistry
from paygate.outbox import EventSink, WebhookSink

__all__ = ["DispatchConfig", "load_dispatch_config"]


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
    for name, section in dict(data.get("sinks", {})).items():
        if section.get("type") != "webhook":
            raise ConfigurationError(f"sinks.{name}: only type = 'webhook' can be configured")
        url = section.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"sinks.{name}: url must be an http(s) URL")
        config.sinks.append(WebhookSink(url, _secret(f"sinks.{name}", section, env), name=name))
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
        else:
            raise ConfigurationError(f"dispatcher.{key} is not a setting")
    return out


def check_dispatcher_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`dispatcher_options`, refused by the constructor's rules with the TOML key named."""
    from paygate.outbox import Dispatcher

    kwargs = dispatcher_options(options)
    try:
        Dispatcher.check(**kwargs)
    except ConfigurationError as exc:
        keys = {v: k for k, v in _SPANS.items()} | {k: k for k in _COUNTS}
        key = keys.get(exc.field or "", exc.field or "")
        raise ConfigurationError(f"dispatcher.{key}: {exc.message}") from None
    return kwargs
