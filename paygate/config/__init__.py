"""Configuration: one model, read from one TOML file and the environment, a section per concern.

Nothing is read at import time. :meth:`PaygateConfig.load` reads, lowest precedence first:

1. the defaults below;
2. the TOML file (``paygate --config FILE``, else ``$PAYGATE_CONFIG``), and the older
   per-command files (see *Older files*);
3. the environment: every key of the file as ``PAYGATE_`` + its dotted path in capitals with
   ``__`` for each dot (``reconcile.bank.window_days`` is ``PAYGATE_RECONCILE__BANK__WINDOW_DAYS``;
   a table or list as JSON);
4. what the caller gives (a command's flags, ``load(**overrides)``).

The top level holds the core settings (:class:`Settings`, what a Gateway needs); each edge has
its table: ``[api]`` (what ``paygate serve`` answers for), ``[dispatch]`` (head-ends, event
sinks, dispatcher timings), ``[reconcile]`` (statement files, bank leg, policy) and ``[log]``
(the level and format of ``serve``'s and ``dispatch``'s logs), ``[reports]`` (the language
of the HTML reports), ``[refunds]`` (the refund routes, docs/refund-routes.md), ``[console]``
(the console's sign-in through an identity provider, docs/console.md) and ``[tokens]``
(service clients' bearer tokens and the token endpoint's throttle)::

    database_url = "postgresql+psycopg://paygate@db.internal/paygate"
    reconnection_promise = 24

    [api.channels.wechatpay]
    api_v3_key_env = "PAYGATE_WECHATPAY_API_V3_KEY"

    [dispatch.sinks.billing]
    type = "webhook"
    url = "https://billing.example/paygate-events"
    secret_env = "PAYGATE_BILLING_WEBHOOK_SECRET"

    [reconcile.bank]
    window_days = 7

    [log]
    level = "info"       # debug, info, warning, error
    format = "json"      # text, json

    [reports]
    lang = "zh-CN"       # zh-CN, en: the language of the HTML reports

The core keys and their variables (the variables' names are the rule's own, but for
``reconnection_promise``, which sets ``service_promise``):

==============================  ==========================================  ====================
variable                        meaning                                     default
==============================  ==========================================  ====================
PAYGATE_DATABASE_URL            the ledger database                         sqlite:///paygate.db
PAYGATE_TIMEZONE                the utility's time zone                     Asia/Shanghai
PAYGATE_CURRENCY                the currency accounts open in               CNY
PAYGATE_RECONNECTION_PROMISE    hours from arrears cleared to supply back   24
                                (step budgets scaled, as ServicePromise)
PAYGATE_DEFAULT_HEADEND         head-end for accounts that name none        (none)
PAYGATE_SQLITE_SYNCHRONOUS      SQLite durability (FULL: fsync each commit) FULL
PAYGATE_SEAL_EVERY              seal after this many entries are posted     1000
PAYGATE_GROUP_COMMIT_WINDOW_MS  how long a group of concurrent payments     2
                                waits for more before it commits (ms,
                                decimals allowed; 0: no grouping)
PAYGATE_GROUP_COMMIT_MAX        the most payments one group commits         64
PAYGATE_BILLING_RUN_CHUNK       items per transaction of a billing run      5000
==============================  ==========================================  ====================

Secrets are never values of the file: a key ``<name>_env = "VAR"`` names the environment
variable that holds the secret ``<name>``, read when the section is built
(:func:`secret_from_env`) and kept as ``SecretStr``/``SecretBytes``; errors and
:meth:`PaygateConfig.entries` never show a secret.

Tables whose keys belong to a plug-in or an edge (a channel's options, a head-end's options, the
reconciliation tables) are kept here as tables and checked by their owner when it builds the
section (:class:`~paygate.api.config.ApiConfig`, :class:`~paygate.dispatch_config.DispatchConfig`,
:class:`~paygate.reconcile.config.ReconcileConfig`), which names problems through
:meth:`PaygateConfig.problem` and :meth:`PaygateConfig.refusal`: one line, the file or variable,
the dotted key as written there, the problem, never the value.

Older files: ``paygate serve --config api.toml``, ``paygate dispatch --config dispatch.toml``,
``paygate reconcile --config reconcile.toml`` and ``$PAYGATE_API_CONFIG`` keep working; a file in
the older layout (its tables at the top) is read as that command's section, with one
deprecation line.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from paygate.billing import LateFeePolicy
from paygate.clock import DEFAULT_TIMEZONE
from paygate.config.sections import (
    RETIRED_CALLBACK_TABLE,
    ApiSection,
    ConsoleSection,
    DispatcherSection,
    DispatchSection,
    HeadEndSection,
    LogSection,
    NatsSinkSection,
    RabbitMQSinkSection,
    ReportsSection,
    SinkSection,
    SupplyOrdersSection,
    Table,
    TokensSection,
    WebhookSinkSection,
    secret_from_env,
)
from paygate.errors import ConfigurationError
from paygate.ledger import AccountKind
from paygate.money import minor_units_exponent
from paygate.promise import DunningPolicy, ServicePromise
from paygate.refunds.routes.settings import RefundsSection
from paygate.renames import current_channel
from paygate.store.engine import DEFAULT_DATABASE_URL, normalize_url

__all__ = [
    "API_CONFIG_ENV",
    "CONFIG_ENV",
    "RETIRED_CALLBACK_TABLE",
    "ApiSection",
    "ConsoleSection",
    "DispatchSection",
    "DispatcherSection",
    "HeadEndSection",
    "LogSection",
    "NatsSinkSection",
    "Origin",
    "PaygateConfig",
    "RabbitMQSinkSection",
    "ReportsSection",
    "Settings",
    "SinkSection",
    "SupplyOrdersSection",
    "TokensSection",
    "WebhookSinkSection",
    "secret_from_env",
]

CONFIG_ENV: Final = "PAYGATE_CONFIG"
"""The variable naming the configuration file (``paygate --config`` wins over it)."""

ENV_PREFIX: Final = "PAYGATE_"
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_log = logging.getLogger("paygate.config")

# An older variable or key -> the key it sets now.
_PROMISE_ALIAS: Final = "reconnection_promise"
_SECTIONS: Final = (
    "api",
    "dispatch",
    "reconcile",
    "log",
    "reports",
    "refunds",
    "console",
    "tokens",
)
# The older per-command files: their top-level keys -> where they belong in the one file.
_DISPATCH_LAYOUT: Final = {
    "headends": "dispatch.headends",
    "sinks": "dispatch.sinks",
    "dispatcher": "dispatch.dispatcher",
    "default_headend": "dispatch.default_headend",
}
_API_LAYOUT: Final = {
    "channels": "api.channels",
    "supply_orders": "api.supply_orders",
    "reconnections": "api.reconnections",
    **_DISPATCH_LAYOUT,
}
_LEGACY_LAYOUTS: Final[Mapping[str, Mapping[str, str]]] = {
    "api": _API_LAYOUT,
    "dispatch": _API_LAYOUT,  # one file served both commands, each reading its own tables
    "reconcile": {
        "channels": "reconcile.channels",
        "bank": "reconcile.bank",
        "policy": "reconcile.policy",
    },
}
API_CONFIG_ENV: Final = "PAYGATE_API_CONFIG"
"""The older variable naming an ``api.toml`` (deprecated: :data:`CONFIG_ENV`)."""

_LEGACY_ENV: Final = {"api": API_CONFIG_ENV}
# Keys whose values are shown masked, wherever they stand (a secret written where it should not be).
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_v3_key|pin_key|private_key)$")
MASK: Final = "**********"


class SettlementDay(Protocol):
    """When a channel's business day ends, and in which zone."""

    @property
    def timezone(self) -> str: ...

    @property
    def cutoff(self) -> time: ...


class SettlingChannel(Protocol):
    """A channel adapter as the settings see it: its name and its settlement day (a
    :class:`~paygate.channels.base.ChannelAdapter` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def settlement(self) -> SettlementDay: ...


class Settings(BaseModel):
    """Everything a Gateway needs to know that is not in the database."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    database_url: str = DEFAULT_DATABASE_URL
    timezone: str = DEFAULT_TIMEZONE
    currency: str = "CNY"
    late_fee: LateFeePolicy = Field(default_factory=LateFeePolicy)
    service_promise: ServicePromise = Field(default_factory=ServicePromise)
    dunning: DunningPolicy = Field(default_factory=DunningPolicy)
    default_headend: str | None = None
    channel_cutoffs: Mapping[str, time] = Field(default_factory=dict)
    # Where a channel's money sits before it is settled: a clearing account, except for
    # recharge vouchers, whose money was taken when the card was sold (voucher liability).
    channel_debit_accounts: Mapping[str, AccountKind] = Field(
        default_factory=lambda: {"voucher": AccountKind.VOUCHER_LIABILITY}
    )
    sqlite_synchronous: str = "FULL"
    seal_every: int = Field(default=1000, ge=0)
    pay_many_chunk: int = Field(default=1000, ge=1, le=100_000)
    billing_run_chunk: int = Field(default=5000, ge=1, le=100_000)
    """Items per transaction of a billing run (``Gateway.open_accounts``/``issue_bills``)."""
    # Group commit (paygate.group_commit): concurrent pay() calls share one transaction.
    group_commit_window_ms: float = Field(default=2.0, ge=0, le=1000, allow_inf_nan=False)
    group_commit_max: int = Field(default=64, ge=1, le=10_000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        minor_units_exponent(value)
        return value

    @field_validator("service_promise", mode="before")
    @classmethod
    def _promise(cls, value: object) -> object:
        # A bare duration is the promise, its budgets scaled; a whole number is hours of it
        # (reconnection_promise, PAYGATE_RECONNECTION_PROMISE).
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError("must be a whole number of hours") from None
        if isinstance(value, float | bool):
            raise ValueError("must be a whole number of hours")
        if isinstance(value, int):
            value = timedelta(hours=value)
        return {"promise": value} if isinstance(value, timedelta) else value

    @field_validator("channel_cutoffs", "channel_debit_accounts", mode="before")
    @classmethod
    def _channel_names(cls, value: object) -> object:
        # A retired channel name is read as the channel's name now (paygate.renames).
        if not isinstance(value, Mapping):
            return value
        return {
            current_channel(k, where="Settings") if isinstance(k, str) else k: v
            for k, v in value.items()
        }

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _synchronous(cls, value: object) -> object:
        if not isinstance(value, str) or value.upper() not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        return value.upper()

    @field_validator("default_headend", mode="before")
    @classmethod
    def _headend(cls, value: object) -> object:
        # An empty name (PAYGATE_DEFAULT_HEADEND=) means none, wherever it comes from.
        return None if isinstance(value, str) and not value.strip() else value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A database URL may carry a password: reprs end up in logs.
        for name, value in super().__repr_args__():
            yield name, _masked_url(value) if name == "database_url" else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from the configuration file ``$PAYGATE_CONFIG`` (if set) and the
        ``PAYGATE_*`` variables, then ``overrides`` (None values ignored): the core of
        :meth:`PaygateConfig.load`, checked the same way; a bad value is a ConfigurationError
        naming the variable (or the file and key).
        """
        return PaygateConfig.load(None, environ=environ, files=None, **overrides).settings

    def with_channels(self, adapters: Iterable[SettlingChannel]) -> Settings:
        """These settings with each adapter's business-day cut-off, so that the dates the
        Gateway gives payments are the dates the channel settles them on.

        An adapter whose settlement time zone differs from the utility's is refused: its
        business dates and the Gateway's would not be the same days.
        """
        cutoffs = dict(self.channel_cutoffs)
        for adapter in adapters:
            rules = adapter.settlement
            if rules.timezone != self.timezone:
                raise ConfigurationError(
                    f"channel {adapter.name} settles in {rules.timezone}, the utility in "
                    f"{self.timezone}: configure one time zone"
                )
            cutoffs[adapter.name] = rules.cutoff
        return self.model_copy(update={"channel_cutoffs": cutoffs})

    def cutoff(self, channel: str) -> time:
        """The business-day cut-off of ``channel`` (midnight unless configured)."""
        return self.channel_cutoffs.get(channel, time(0, 0))


def _masked_url(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return normalize_url(value).render_as_string(hide_password=True)
    except ConfigurationError:
        return MASK


@dataclass(frozen=True)
class Origin:
    """Where one value of the configuration came from.

    ``source`` is ``default``, ``file``, ``env`` or ``given`` (a flag, a constructor's
    argument); ``where`` the file or the variable. A key of an older file stood at ``written``
    where the one file has ``prefix``.
    """

    source: Literal["default", "file", "env", "given"]
    where: str = ""
    prefix: str = ""
    written: str = ""

    def key(self, dotted: str) -> str:
        """``dotted`` (a key of the one file) as it is written where it came from."""
        if self.prefix and (dotted == self.prefix or dotted.startswith(self.prefix + ".")):
            return (self.written + dotted[len(self.prefix) :]).lstrip(".")
        return dotted

    def place(self, dotted: str) -> str:
        """``file: key``, ``$VARIABLE: key`` or the bare key: where to look for ``dotted``."""
        return f"{self.where}: {self.key(dotted)}" if self.where else self.key(dotted)


_DEFAULT = Origin("default")

# Set while load() validates the layers it has read (the environment's values among them):
# PaygateConfig's own sources then read nothing more.
_SOURCE_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar(
    "paygate_source_environ", default=None
)


class _Environment(EnvSettingsSource):
    """``PAYGATE_*`` variables of a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self._environ)
        return {name.lower(): value for name, value in self._environ.items()}


def _problem(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return (
            "must be a number of seconds" if "seconds" in str(error["loc"]) else "must be a number"
        )
    if kind == "extra_forbidden":
        return "not a setting here"
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        return f"{', '.join(tags[:-1])} or {tags[-1]}, not {ctx.get('tag')!r}"
    if kind == "union_tag_not_found":
        return "is required"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").replace("\n", " ")


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted


def _merge(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not UTF-8 text") from None


def _is_legacy(section: str, data: Mapping[str, Any]) -> bool:
    """Whether a command's ``--config`` file has the older layout (its section at the top)."""
    return not set(data) & set(_SECTIONS) and bool(set(data) & set(_LEGACY_LAYOUTS[section]))


@functools.cache
def _deprecated(message: str) -> None:
    # Once per process: the line is for the operator, who needs it once.
    _log.warning("deprecated: %s", message)


@dataclass
class _Layers:
    """The configuration's sources, lowest precedence first, merged, each leaf's origin kept."""

    data: dict[str, Any]
    origins: dict[str, Origin]
    files: dict[str, Path]

    def add(self, data: Mapping[str, Any], origin_of: Callable[[str], Origin]) -> None:
        _merge(self.data, data)
        for dotted in _leaves(data):
            # A table replacing a value, or a value replacing a table: the old origins go.
            parts = dotted.split(".")
            for end in range(1, len(parts)):
                self.origins.pop(".".join(parts[:end]), None)
            if _value_in(data, dotted) != {}:
                for stale in [key for key in self.origins if key.startswith(dotted + ".")]:
                    del self.origins[stale]
            self.origins[dotted] = origin_of(dotted)

    def add_file(self, path: Path, data: Mapping[str, Any], legacy: str | None) -> None:
        where = str(path)
        layout = _LEGACY_LAYOUTS[legacy] if legacy else {}
        moved: dict[str, Any] = {}
        renamed: dict[str, tuple[str, str]] = {}
        for key, value in data.items():
            if legacy and key not in layout:
                continue  # an older file's tables for other commands
            target = layout.get(key, key)
            if not legacy and key == _PROMISE_ALIAS:
                if "service_promise" in data:
                    raise ConfigurationError(
                        f"{where}: {key}: give reconnection_promise or [service_promise], not both"
                    )
                target = "service_promise"
            head, _, rest = target.partition(".")
            if rest:
                moved.setdefault(head, {})[rest] = value
            else:
                moved[head] = value
            if target != key:
                renamed[target] = (target, key)

        def origin_of(dotted: str) -> Origin:
            for target, (prefix, written) in renamed.items():
                if dotted == target or dotted.startswith(target + "."):
                    return Origin("file", where, prefix, written)
            return Origin("file", where)

        self.add(moved, origin_of)
        self.files[legacy or ""] = path


def _env_origin(environ: Mapping[str, str]) -> Callable[[str], Origin]:
    names = {name.upper(): name for name in environ}

    def origin_of(dotted: str) -> Origin:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            var = ENV_PREFIX + "__".join(parts[:end]).upper()
            if var in names:
                return Origin("env", "$" + names[var])
        return Origin("env", "$" + ENV_PREFIX + "__".join(parts).upper())

    return origin_of


class PaygateConfig(BaseSettings, Settings):
    """The whole configuration: the core :class:`Settings` at the top, a section per edge.

    Build it with :meth:`load` (file, environment, arguments, each value's origin kept);
    ``PaygateConfig(**values)`` reads the given values over the ``PAYGATE_*`` variables over
    the defaults, without a file. It is a :class:`Settings`, and :attr:`settings` is its core
    alone.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
    )

    api: ApiSection = Field(default_factory=ApiSection)
    dispatch: DispatchSection = Field(default_factory=DispatchSection)
    reconcile: Table = Field(
        default_factory=dict,
        description="channels, bank, policy: checked by paygate.reconcile.config.ReconcileConfig",
    )
    log: LogSection = Field(default_factory=LogSection)
    reports: ReportsSection = Field(default_factory=ReportsSection)
    refunds: RefundsSection = Field(
        default_factory=RefundsSection,
        description="the refund routes (paygate.refunds.routes.build_routes builds them)",
    )
    console: ConsoleSection = Field(
        default_factory=ConsoleSection,
        description="the console's sign-in (paygate.console.auth.ConsoleSettings builds it)",
    )
    tokens: TokensSection = Field(
        default_factory=TokensSection,
        description="service clients' bearer tokens and the token endpoint's throttle "
        "(paygate.tokens.TokenSettings.from_config builds them)",
    )

    _origins: dict[str, Origin] = PrivateAttr(default_factory=dict)
    _files: dict[str, Path] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """What is given, over the environment (over the defaults); :meth:`load` adds the file."""
        if _SOURCE_ENVIRON.get() is not None:
            return (init_settings,)  # load() validating the layers it has read
        return init_settings, env_settings

    @classmethod
    def load(
        cls,
        file: Path | str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        files: Mapping[str, Path | None] | None = None,
        **overrides: object,
    ) -> PaygateConfig:
        """The configuration: ``overrides`` (None values ignored) over the ``PAYGATE_*``
        variables of ``environ`` (default ``os.environ``) over the file over the defaults.

        ``file`` is the TOML file (default ``$PAYGATE_CONFIG``; none: no file). ``files`` maps
        a section (``api``, ``dispatch``, ``reconcile``) to the file a command was given: in the
        one file's layout it replaces ``file``; in the section's older layout it is read as that
        section, under ``file``. Every problem is one ConfigurationError naming the file or
        variable, the dotted key and the problem, never the value.
        """
        env = os.environ if environ is None else environ
        chosen = Path(file) if file is not None else None
        if chosen is None and env.get(CONFIG_ENV, "").strip():
            chosen = Path(env[CONFIG_ENV])
        given = {section: path for section, path in (files or {}).items() if path is not None}
        for section, var in _LEGACY_ENV.items():
            if section not in given and env.get(var, "").strip():
                _deprecated(f"{var} names an older {section} file: use {CONFIG_ENV}")
                given[section] = Path(env[var])
        layers = _Layers({}, {}, {})
        legacy: list[tuple[str, Path, dict[str, Any]]] = []
        for section, path in given.items():
            data = _read_toml(path)
            if _is_legacy(section, data):
                _deprecated(
                    f"{path} has the older layout: move its tables under [{section}] "
                    "of one configuration file (docs/operations.md)"
                )
                legacy.append((section, path, data))
            else:
                chosen = path
        for section, path, data in legacy:
            layers.add_file(path, data, section)
        if chosen is not None:
            layers.add_file(chosen, _read_toml(chosen), None)
        try:
            from_env = _Environment(cls, env)()
        except ValueError as exc:  # pydantic-settings' SettingsError: a table that is not JSON
            found = re.search(r'field "(\w+)"', str(exc))
            key = found.group(1) if found else "?"
            raise ConfigurationError(
                f"${ENV_PREFIX}{key.upper()}: {key}: a table or list is given as JSON"
            ) from None
        promise = env.get(ENV_PREFIX + _PROMISE_ALIAS.upper())
        if promise is not None:
            from_env["service_promise"] = promise
        env_origin = _env_origin(env)
        layers.add(
            from_env,
            lambda dotted: (
                Origin(
                    "env",
                    f"${ENV_PREFIX}{_PROMISE_ALIAS.upper()}",
                    "service_promise",
                    _PROMISE_ALIAS,
                )
                if promise is not None and dotted.startswith("service_promise")
                else env_origin(dotted)
            ),
        )
        layers.add({k: v for k, v in overrides.items() if v is not None}, lambda _: Origin("given"))
        token = _SOURCE_ENVIRON.set({})
        try:
            config = cls.model_validate(layers.data)
        except ValidationError as exc:
            raise _refusal(exc, layers.origins, "") from None
        finally:
            _SOURCE_ENVIRON.reset(token)
        config._origins = layers.origins
        config._files = layers.files
        return config

    @property
    def settings(self) -> Settings:
        """The core settings alone (what a Gateway needs)."""
        names = set(Settings.model_fields)
        return Settings.model_construct(
            self.model_fields_set & names, **{name: getattr(self, name) for name in names}
        )

    def origin(self, dotted: str) -> Origin:
        """Where the value at ``dotted`` (or the table around it, or a key in it) came from."""
        return _origin(self._origins, dotted)

    def place(self, dotted: str) -> str:
        """``file: key`` (or ``$VARIABLE: key``, or the key) for messages about ``dotted``."""
        return self.origin(dotted).place(dotted)

    def problem(self, dotted: str, message: str) -> ConfigurationError:
        """A refusal of the value at ``dotted``: where it came from, the key, ``message``."""
        return ConfigurationError(f"{self.place(dotted)}: {message}")

    def refusal(self, exc: ValidationError, prefix: str) -> ConfigurationError:
        """A section owner's validation error on the table at ``prefix``, as one line."""
        return _refusal(exc, self._origins, prefix)

    def file(self, section: str = "") -> Path | None:
        """The file ``section`` was read from: its older file, else the one file (None: none)."""
        return self._files.get(section) or self._files.get("")

    def base_dir(self, section: str) -> Path:
        """The directory relative paths of ``section`` start from: its file's, else the
        working directory."""
        path = self.file(section)
        return path.parent if path is not None else Path.cwd()

    def environment(self) -> dict[str, str | None]:
        """The variables with which another process's :meth:`load` gets this configuration
        (None: unset it): the files, and what was given, by the naming rule."""
        variables: dict[str, str | None] = {CONFIG_ENV: None}
        variables.update(dict.fromkeys(_LEGACY_ENV.values()))
        if "" in self._files:
            variables[CONFIG_ENV] = str(self._files[""].resolve())
        for section, var in _LEGACY_ENV.items():
            if section in self._files:
                variables[var] = str(self._files[section].resolve())
        for dotted, origin in self._origins.items():
            if origin.source == "given":
                value = _value_in(self.model_dump(), dotted)
                variables[ENV_PREFIX + dotted.replace(".", "__").upper()] = str(value)
        return variables

    def entries(self) -> list[tuple[str, object, Origin]]:
        """Every value of the configuration (defaults included), by dotted key, with its
        origin; secrets and database passwords masked."""
        found: list[tuple[str, object, Origin]] = []
        dumped = self.model_dump(mode="json")
        for dotted in _leaves(dumped):
            value = _masked(dotted, _value_in(dumped, dotted))
            found.append((dotted, value, _origin(self._origins, dotted, children=False)))
        return found


def _value_in(data: Mapping[str, Any], dotted: str) -> object:
    value: object = data
    for part in dotted.split("."):
        value = value[part] if isinstance(value, Mapping) else None
    return value


def _masked(dotted: str, value: object) -> object:
    name = dotted.rsplit(".", 1)[-1].lower()
    if name == "database_url":
        return _masked_url(value)
    if _SECRET_KEY.search(name) and value not in (None, "", MASK):
        return MASK
    return value


def _origin(origins: Mapping[str, Origin], dotted: str, *, children: bool = True) -> Origin:
    # An entry of a list (dispatch.sinks[0].url) came from where the list came from.
    listed, _, _ = dotted.partition("[")
    parts = re.sub(r"\[\d+\]", "", dotted).split(".")
    for end in range(len(parts), 0, -1):
        found = origins.get(".".join(parts[:end]))
        if found is not None:
            return found
    if children:
        for prefix in dict.fromkeys((".".join(parts), listed)):
            for key, found in origins.items():
                if key.startswith(prefix + ".") or not prefix:
                    return found
    return _DEFAULT


@functools.cache
def _sink_kinds() -> frozenset[str]:
    member = typing.get_args(SinkSection)[0]
    members = typing.get_args(member) or (member,)
    return frozenset(typing.get_args(m.model_fields["kind"].annotation)[0] for m in members)


def _refusal(
    exc: ValidationError, origins: Mapping[str, Origin], prefix: str
) -> ConfigurationError:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = [f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]]
        sink = where[:2] == ["dispatch", "sinks"]
        if sink and len(where) > 3 and where[3] in _sink_kinds():
            del where[3]  # a tagged union's member, named by its tag: the file says kind = …
        if sink and error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where.append("kind")
        loc = ".".join(where).replace(".[", "[")
        dotted = ".".join(p for p in (prefix, loc) if p)
        place = _origin(origins, dotted).place(dotted) or "configuration"
        parts.append(f"{place}: {_problem(error)}")
    return ConfigurationError("; ".join(parts))
