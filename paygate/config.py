"""Settings: passed to the constructor and checked there; read from the environment on request.

Nothing is read at import time. ``Settings.from_env()`` reads ``PAYGATE_*`` variables:

=============================  ==========================================  ====================
variable                       meaning                                     default
=============================  ==========================================  ====================
PAYGATE_DATABASE_URL           the ledger database                         sqlite:///paygate.db
PAYGATE_TIMEZONE               the utility's time zone                     Asia/Shanghai
PAYGATE_CURRENCY               the currency accounts open in               CNY
PAYGATE_RECONNECTION_PROMISE   hours from arrears cleared to supply back   24
                               (step budgets scaled, as ServicePromise)
PAYGATE_DEFAULT_HEADEND        head-end for accounts that name none        (none)
PAYGATE_SQLITE_SYNCHRONOUS     SQLite durability (FULL: fsync each commit) FULL
PAYGATE_SEAL_EVERY             seal after this many entries are posted     1000
PAYGATE_BILLING_RUN_CHUNK      items per transaction of a billing run      5000
=============================  ==========================================  ====================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paygate.billing import LateFeePolicy
from paygate.clock import DEFAULT_TIMEZONE
from paygate.errors import ConfigurationError
from paygate.ledger import AccountKind
from paygate.money import minor_units_exponent
from paygate.promise import DunningPolicy, ServicePromise
from paygate.store.engine import DEFAULT_DATABASE_URL

__all__ = ["Settings"]

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# PAYGATE_* variable -> the Settings field it sets.
_ENV_TEXT = {
    "PAYGATE_DATABASE_URL": "database_url",
    "PAYGATE_TIMEZONE": "timezone",
    "PAYGATE_CURRENCY": "currency",
    "PAYGATE_SQLITE_SYNCHRONOUS": "sqlite_synchronous",
    "PAYGATE_DEFAULT_HEADEND": "default_headend",
}
_ENV_INT = {
    "PAYGATE_RECONNECTION_PROMISE": "service_promise",  # hours
    "PAYGATE_SEAL_EVERY": "seal_every",
    "PAYGATE_BILLING_RUN_CHUNK": "billing_run_chunk",
}


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
        default_factory=lambda: {"prepaid_card": AccountKind.VOUCHER_LIABILITY}
    )
    sqlite_synchronous: str = "FULL"
    seal_every: int = Field(default=1000, ge=0)
    pay_many_chunk: int = Field(default=1000, ge=1, le=100_000)
    billing_run_chunk: int = Field(default=5000, ge=1, le=100_000)
    """Items per transaction of a billing run (``Gateway.open_accounts``/``issue_bills``)."""

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
        # A bare duration is the promise, its budgets scaled: the environment's meaning.
        return {"promise": value} if isinstance(value, timedelta) else value

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``PAYGATE_*`` variables, then ``overrides`` (None values ignored).

        Every variable means what the constructor's field means, checked the same way; a bad
        value is a ConfigurationError naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        names: dict[str, str] = {}
        for var, name in _ENV_TEXT.items():
            if var in env:
                values[name], names[name] = env[var], var
        for var, name in _ENV_INT.items():
            if var in env:
                try:
                    number = int(env[var].strip())
                except ValueError:
                    raise ConfigurationError(
                        f"{var} must be a whole number, not {env[var]!r}", field=var
                    ) from None
                values[name], names[name] = number, var
        if "service_promise" in values:
            values["service_promise"] = timedelta(hours=int(str(values["service_promise"])))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            where = names.get(name, name)
            raise ConfigurationError(
                f"invalid settings: {where}: {first['msg']}", field=where or None
            ) from None

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
