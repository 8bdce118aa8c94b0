"""The sections of the configuration an edge builds: ``[api]``, ``[dispatch]`` (head-ends,
event sinks, the dispatcher's timings), and how a secret is read from the environment.

The models only check shapes; each section's owner builds it (:mod:`paygate.api.config`,
:mod:`paygate.dispatch_config`), so the core never imports an edge. Re-exported by
:mod:`paygate.config`, where the whole model and its loader are.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from paygate.errors import ConfigurationError
from paygate.logs import LogFormat, LogLevel

__all__ = [
    "DEFAULT_IMPORT_MAX_BYTES",
    "OIDC_ALGORITHMS",
    "RETIRED_CALLBACK_TABLE",
    "ApiSection",
    "ConsoleSection",
    "Count",
    "DispatchSection",
    "DispatcherSection",
    "HeadEndSection",
    "LogSection",
    "NatsSinkSection",
    "OidcSection",
    "RabbitMQSinkSection",
    "ReportLang",
    "ReportsSection",
    "Seconds",
    "SinkSection",
    "SupplyOrdersSection",
    "Table",
    "TokensSection",
    "WebhookSinkSection",
    "secret_from_env",
]


def _not_bool(what: str) -> Any:
    def check(value: object) -> object:
        # TOML's true is not a count, nor a number of seconds.
        if isinstance(value, bool):
            raise ValueError(f"must be {what}")
        return value

    return BeforeValidator(check)


Seconds = Annotated[float, _not_bool("a number of seconds")]
Count = Annotated[int, _not_bool("a whole number")]
Table = dict[str, Any]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupplyOrdersSection(_Section):
    """``[api.supply_orders]``: the secret head-ends sign their confirmations of supply orders
    with (``POST /v1/supply-orders/{id}/confirm``).

    Give exactly one: ``callback_secret_env`` (the variable holding it) or ``headend`` (a
    webhook head-end of ``[dispatch.headends]``, whose ``callback_secret_env``, else
    ``secret_env``, is used).
    """

    callback_secret_env: str | None = Field(default=None, min_length=1)
    headend: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> SupplyOrdersSection:
        if (self.callback_secret_env is None) == (self.headend is None):
            raise ValueError("give exactly one of callback_secret_env and headend")
        return self


RETIRED_CALLBACK_TABLE: Final = "reconnections"
"""The retired name of ``[api.supply_orders]``: still read, with a FutureWarning."""


DEFAULT_IMPORT_MAX_BYTES: Final = 256 * 1024 * 1024
"""The largest file ``POST /v1/accounts/import`` and ``/v1/bills/import`` take by default."""


class ApiSection(_Section):
    """``[api]``: the channels ``paygate serve`` answers for (each table checked against its
    adapter's configuration model when the app is built), the head-end callback secret, and
    ``import_max_bytes``, the largest CSV file the import routes read (bytes)."""

    channels: dict[str, Table] = Field(default_factory=dict)
    import_max_bytes: Count = Field(default=DEFAULT_IMPORT_MAX_BYTES, ge=1)
    supply_orders: SupplyOrdersSection | None = None
    reconnections: SupplyOrdersSection | None = Field(
        default=None, description="the retired name of supply_orders", exclude=True
    )

    @model_validator(mode="after")
    def _retired_table(self) -> ApiSection:
        if self.reconnections is None:
            return self
        if self.supply_orders is not None:
            raise ValueError(
                f"give [api.supply_orders] only ([api.{RETIRED_CALLBACK_TABLE}] is its retired "
                "name)"
            )
        warnings.warn(
            f"[api.{RETIRED_CALLBACK_TABLE}] is deprecated; name the table [api.supply_orders]",
            FutureWarning,
            stacklevel=2,
        )
        object.__setattr__(self, "supply_orders", self.reconnections)
        object.__setattr__(self, "reconnections", None)
        return self


class HeadEndSection(BaseModel):
    """``[dispatch.headends.NAME]``: a registered head-end's ``type`` and its own options
    (``<option>_env = "VAR"`` for a secret one), checked by the head-end when it is built."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str = Field(min_length=1)

    @property
    def options(self) -> dict[str, Any]:
        """The head-end's options, as written."""
        return dict(self.model_extra or {})


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value


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


class _SinkSection(_Section):
    name: str = Field(default="", description="how logs and errors name the sink")


class WebhookSinkSection(_SinkSection):
    """``kind = "webhook"``: events POSTed to ``url``, signed with the secret in ``$secret_env``."""

    kind: Literal["webhook"]
    url: str
    secret_env: _EnvName
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    _url = field_validator("url")(_http_url)


class RabbitMQSinkSection(_SinkSection):
    """``kind = "rabbitmq"``: events to a durable topic exchange, confirmed by the broker; the
    password from ``$password_env``, never from the URL."""

    kind: Literal["rabbitmq"]
    url: Annotated[str, _broker_url("amqp", "amqps")]
    exchange: Annotated[str, Field(min_length=1, max_length=255)]
    password_env: _EnvName | None = None
    mandatory: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0


class NatsSinkSection(_SinkSection):
    """``kind = "nats"``: events to a JetStream stream, acknowledged, de-duplicated by id; a
    token or password from ``$token_env`` / ``$password_env``."""

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


SinkSection = Annotated[
    WebhookSinkSection | RabbitMQSinkSection | NatsSinkSection, Field(discriminator="kind")
]
"""One ``[[dispatch.sinks]]`` entry, checked by the model its ``kind`` names (a tagged union:
each kind of sink adds its model here, and :mod:`paygate.dispatch_config` a builder for it)."""


def _sink_entries(value: object) -> object:
    """``[[dispatch.sinks]]`` entries as given, or the older ``[dispatch.sinks.NAME]`` tables
    (``type = "webhook"``), each read as the entry named NAME."""
    if isinstance(value, Mapping):
        entries = []
        for name, table in value.items():
            if not isinstance(table, Mapping):
                raise ValueError(f"{name}: a table")
            fields = {k: v for k, v in table.items() if k != "type"}
            entries.append({"kind": table.get("type"), "name": name, **fields})
        return entries
    return value


class DispatcherSection(_Section):
    """``[dispatch.dispatcher]``: the Dispatcher's timings and counts (its constructor's rules;
    checked when ``paygate dispatch`` builds it)."""

    lease_seconds: Seconds | None = None
    poll_seconds: Seconds | None = None
    retry_base_seconds: Seconds | None = None
    retry_cap_seconds: Seconds | None = None
    event_budget_seconds: Seconds | None = None
    max_attempts: Count | None = None
    batch: Count | None = None
    alert_after: Count | None = None
    event_source: str | None = Field(
        default=None, min_length=1, description="the CloudEvents source of every event"
    )


class DispatchSection(_Section):
    """``[dispatch]``: the head-ends and event sinks ``paygate dispatch`` delivers to."""

    default_headend: str | None = Field(
        default=None, description="for orders that name none; default: the core default_headend"
    )
    headends: dict[str, HeadEndSection] = Field(default_factory=dict)
    sinks: Annotated[list[SinkSection], BeforeValidator(_sink_entries)] = Field(
        default_factory=list
    )
    dispatcher: DispatcherSection = Field(default_factory=DispatcherSection)

    @model_validator(mode="after")
    def _known_default(self) -> DispatchSection:
        if self.default_headend and self.default_headend not in self.headends:
            raise ValueError(f"default_headend {self.default_headend!r} is not configured")
        return self


def secret_from_env(where: str, var: object, environ: Mapping[str, str] | None = None) -> str:
    """The secret held by the environment variable ``var`` (named at ``where``, a dotted key).

    A missing or blank variable is a ConfigurationError naming the key and the variable, never
    a value.
    """
    env = os.environ if environ is None else environ
    if not isinstance(var, str) or not var:
        raise ConfigurationError(f"{where}: name an environment variable")
    value = env.get(var)
    if value is None or not value.strip():
        raise ConfigurationError(f"{where}: environment variable {var} is not set")
    return value


class LogSection(_Section):
    """``[log]``: what ``paygate serve`` and ``paygate dispatch`` log (their ``--log-level``
    and ``--log-format`` win over it); docs/operations.md lists the JSON lines' fields."""

    level: LogLevel = "info"
    format: LogFormat = "text"


ReportLang = Literal["zh-CN", "en"]
"""The language of a report page, as an IETF tag."""


class ReportsSection(_Section):
    """``[reports]``: the language of the HTML reports (``paygate report service --format
    html``, ``paygate reconcile --report PATH.html``); their ``--lang`` wins over it."""

    lang: ReportLang = "zh-CN"


OIDC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The id_token signing algorithms the console may accept: asymmetric only (never ``none``,
never an HMAC keyed with the client secret)."""

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


def _provider_url(value: str) -> str:
    # TLS to the identity provider, but on the loopback (a provider on this host).
    parts = urlsplit(value)
    if not parts.hostname or parts.query or parts.fragment:
        raise ValueError("an https URL with a host, without query or fragment")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError("must be https (http only on the loopback)")
    return value


class OidcSection(_Section):
    """``[console.oidc]``: sign-in through the utility's identity provider (OpenID Connect,
    authorization code flow with PKCE); docs/console.md, *OIDC sign-in*.

    The client secret is never a value here: ``client_secret_env`` names the variable that
    holds it (none: a public client, PKCE alone).
    """

    provider_name: str = Field(min_length=1, max_length=64)
    issuer: Annotated[str, AfterValidator(_provider_url)]
    client_id: str = Field(min_length=1, max_length=255)
    client_secret_env: _EnvName | None = None
    redirect_url: Annotated[str, AfterValidator(_provider_url)]
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    staff_claim: str = Field(default="email", min_length=1, max_length=64)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    timeout_seconds: Annotated[Seconds, Field(gt=0, le=60)] = 10.0
    leeway_seconds: Annotated[Seconds, Field(ge=0, le=300)] = 60.0

    @field_validator("redirect_url")
    @classmethod
    def _callback(cls, value: str) -> str:
        if urlsplit(value).path != "/console/oidc/callback":
            raise ValueError("must end in /console/oidc/callback (the console's callback)")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include openid")
        if any(not s or any(ch.isspace() for ch in s) for s in value):
            raise ValueError("each scope is one word")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - OIDC_ALGORITHMS)
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not allowed (one of {', '.join(sorted(OIDC_ALGORITHMS))})"
            )
        return value


def _console_origin(value: str) -> str:
    # An origin a browser sends: scheme and host (and port), nothing after.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: an origin is http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r}: an origin has no path, query or fragment")
    return value.rstrip("/")


class ConsoleSection(_Section):
    """``[console]``: the service centre's console: cookies, lockout and session lengths, the
    origins a proxy serves it at besides its own; an identity provider (``[console.oidc]``),
    and who may still sign in with a local password when there is one (``password_sign_in``:
    ``everyone``, or ``admin`` alone, the way in when the provider is down)."""

    secure_cookies: Literal["auto", "true", "false"] = Field(
        default="auto",
        description="auto: cookies marked Secure when the request came over TLS; true: always; "
        "false: never (plain HTTP on localhost only)",
    )
    max_failures: Count = Field(
        default=5, ge=1, le=100, description="wrong passwords in a row before a lockout"
    )
    lockout_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = Field(
        default=15, description="how long a lockout lasts"
    )
    idle_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = Field(
        default=30, description="a session ends after this long without a request"
    )
    absolute_hours: Annotated[float, Field(gt=0, le=7 * 24)] = Field(
        default=10, description="a session ends this long after its sign-in"
    )
    origins: list[Annotated[str, AfterValidator(_console_origin)]] = Field(
        default_factory=list,
        description="origins a proxy serves the console at, besides its own "
        "(https://host[:port]); a POST from any other origin is refused",
    )
    oidc: OidcSection | None = None
    password_sign_in: Literal["everyone", "admin"] = "everyone"  # noqa: S105 - who, not a secret

    @model_validator(mode="after")
    def _provider_first(self) -> ConsoleSection:
        if self.password_sign_in == "admin" and self.oidc is None:  # noqa: S105 - a role
            raise ValueError("password_sign_in = admin needs [console.oidc]")
        return self


class TokensSection(_Section):
    """``[tokens]``: the service clients' bearer tokens (signed when ``key_file`` is set, and
    only then is the token endpoint served) and the token endpoint's throttle
    (:mod:`paygate.tokens`, :mod:`paygate.token_attempts`; docs/http-api.md)."""

    key_file: Path | None = Field(
        default=None,
        description="the Ed25519 private key (PEM, PKCS#8) that signs tokens, the same on "
        "every worker; relative to the configuration file",
    )
    issuer: str = Field(default="paygate", min_length=1, max_length=200)
    audience: str = Field(default="paygate-api", min_length=1, max_length=200)
    ttl: Count = Field(default=300, ge=10, le=3600, description="seconds a token lives")
    leeway: Count = Field(
        default=30, ge=0, le=300, description="seconds of clock skew allowed on exp, nbf, iat"
    )
    client_failures: Count = Field(
        default=5,
        ge=1,
        le=10_000,
        description="failed authentications of one client id within failure_window before "
        "its attempts are refused (429)",
    )
    source_failures: Count = Field(
        default=20,
        ge=1,
        le=100_000,
        description="failed authentications from one source address within failure_window "
        "before its attempts are refused (429)",
    )
    failure_window: Count = Field(
        default=900,
        ge=1,
        le=86_400,
        description="seconds over which failures are counted; an attempt refused for them "
        "may be made again once enough of them have left the window",
    )
