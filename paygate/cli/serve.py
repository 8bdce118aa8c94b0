"""``paygate serve``: the HTTP gateway under uvicorn, one worker or several.

Invariant: the configuration is read and checked — every channel section, every secret's
environment variable, the database schema, and that the address can be listened on (a port
in use, an address not on this machine) — before the port is opened, and a problem is one
line naming it, exit code 2, like every refusal of the ``paygate`` command (exit code 3 is
uvicorn's own, for a worker that fails after these checks passed).

Workers share nothing but the database, so ``--workers N`` (or N ``paygate serve`` processes
on N machines) serve as one; with more than one worker uvicorn starts each from the import
string ``paygate.api:app_from_env``, which loads the configuration from the environment this
command leaves them (:meth:`~paygate.config.PaygateConfig.environment`: ``PAYGATE_CONFIG``,
an older api file's ``PAYGATE_API_CONFIG``, and each flag given as its ``PAYGATE_*`` variable),
so that every worker has the configuration this command checked.

Logs: ``--log-level`` and ``--log-format`` (else the configuration's ``[log]``) configure this
process and, through uvicorn's ``log_config``, every worker: uvicorn's loggers and paygate's
alike (:mod:`paygate.logs`). Metrics: with more than one worker, the workers share a private
``PROMETHEUS_MULTIPROC_DIR`` made here and removed when this command ends
(:mod:`paygate.api.metrics`).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from paygate.api.config import api_config
from paygate.cli._common import DatabaseUrl, config_for, guard, out
from paygate.errors import ConfigurationError
from paygate.logs import configure_logging, log_options, logging_config
from paygate.store.engine import normalize_url

__all__ = ["check_address", "serve"]


def check_address(host: str, port: int) -> None:
    """Refuse (ConfigurationError) an address this process cannot listen on, before uvicorn.

    Bound and released at once, with the options uvicorn binds with (``SO_REUSEADDR``), so
    that a port uvicorn could take is never refused here; one taken between this check and
    uvicorn's bind is still refused by uvicorn.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"--host {host}: not an address to listen on ({exc})", field="host"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="port"
            ) from None


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes sharing the port.")
    ] = 1,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The configuration file whose \\[api] names the channels served and their "
            "secrets' variables (docs/http-api.md); default: paygate --config, else "
            "$PAYGATE_CONFIG, else the kiosk channel only.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="debug, info (a line per request), warning or error; default: \\[log] level.",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text or json (one JSON object per line); default: \\[log] format.",
            show_default=False,
        ),
    ] = None,
    proxy_headers: Annotated[
        bool,
        typer.Option(help="Trust X-Forwarded-* from --forwarded-allow-ips (behind a proxy)."),
    ] = False,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies whose X-Forwarded-* headers are believed.")
    ] = "127.0.0.1",
) -> None:
    """Serve the HTTP gateway: terminals, channel notifications, head-end callbacks."""
    import uvicorn

    from paygate.api.metrics import MULTIPROC_ENV

    config_in_effect = config_for(database_url, files={"api": config})
    settings = config_in_effect.settings
    level, fmt = guard(lambda: log_options(log_level, log_format, config_in_effect.log))
    configure_logging(level, fmt)

    def check() -> None:
        # What every worker will open, opened once now: an un-migrated database, a channel
        # that cannot be built, a secret not set are one line here rather than a failing
        # lifespan in each worker.
        from paygate.api.app import check_startup
        from paygate.console import ConsoleSettings
        from paygate.tokens import TokenSettings

        check_startup(
            settings,
            api_config(config_in_effect),
            tokens=TokenSettings.from_config(config_in_effect),
        )
        # The console's identity provider: the oidc extra installed, its secret's variable set.
        ConsoleSettings.from_config(config_in_effect)
        check_address(host, port)

    guard(check)
    # The workers read these: the same configuration as this process, whichever way it got it.
    variables = config_in_effect.environment()
    variables.update({"PAYGATE_LOG__LEVEL": level, "PAYGATE_LOG__FORMAT": fmt})
    for variable, value in variables.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    # Several workers write their figures into one private directory, which every worker's
    # scrape reads whole; it is made before uvicorn starts them (prometheus_client decides at
    # import) and removed when they are all gone.
    shared = tempfile.TemporaryDirectory(prefix="paygate-metrics-") if workers > 1 else None
    if shared is not None:
        os.environ[MULTIPROC_ENV] = shared.name
    out.print(
        f"paygate serving on http://{host}:{port} with {workers} worker(s); "
        f"database {normalize_url(settings.database_url).render_as_string(hide_password=True)}",
        highlight=False,
        soft_wrap=True,
    )
    try:
        uvicorn.run(
            "paygate.api:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=level,
            # uvicorn's loggers, and paygate's in every worker, through paygate's formatter;
            # the gateway writes the access line itself (paygate.access: with the request id,
            # without the query string), so uvicorn's own is off.
            log_config=logging_config(level, fmt),
            access_log=False,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            # The gateway's own X-Request-Id and problems are the answer's identity; uvicorn's
            # Server and Date headers add nothing a caller needs.
            server_header=False,
        )
    finally:
        if shared is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shared.cleanup()
