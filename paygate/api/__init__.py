"""The HTTP gateway: ``create_app(settings)`` and the ``paygate serve`` factory.

Invariant: importing this package opens nothing and loads no web framework; the app and its
database exist only once :func:`create_app` is called and the app is started. The framework is
imported on first use of :func:`create_app` or :func:`app_from_env`, so that a terminal using
:mod:`paygate.client` (which reads :mod:`paygate.api.schemas`) never loads it.

Routes, configuration, signing and metrics: docs/http-api.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paygate.api.config import API_CONFIG_ENV, ApiConfig, api_config, load_api_config

if TYPE_CHECKING:
    from paygate.api.app import app_from_env, create_app

__all__ = [
    "API_CONFIG_ENV",
    "ApiConfig",
    "api_config",
    "app_from_env",
    "create_app",
    "load_api_config",
]


def __getattr__(name: str) -> Any:
    # PEP 562: ``paygate.api:app_from_env`` (uvicorn's import string) and
    # ``from paygate.api import create_app`` both land here on first use.
    if name in ("app_from_env", "create_app"):
        from paygate.api import app

        return getattr(app, name)
    raise AttributeError(f"module 'paygate.api' has no attribute {name!r}")
