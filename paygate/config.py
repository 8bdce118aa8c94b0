"""Settings: passed to the constructor and checked there; read from the environment on request.

Nothing is read at import time. ``Settings.from_env()`` reads ``PAYGATE_*`` variables:

=============================  ==========================================  ====================
variable                       meaning                                     default
=============================  ==========================================  ====================
PAYGATE_DATABASE_URL           the ledger database                         sqlite:///paygate.db
PAYGATE_TIMEZONE               the utility's time zone                     Asia/Shanghai
PAYGATE_CURRENCY               the currency accounts open in               CNY
PAYGATE_RECONNECTION_PROMISE   hours from arrears cleared to supply back   24
PAYGATE_DEFAULT_HEADEND        head-end for accounts that name none        (none)
PAYGATE_SQLITE_SYNCHRONOUS     SQLite durability (FULL: fsync each commit) FULL
PAYGATE_SEAL_EVERY             seal after this many entries are posted     1000
=============================  ==========================================  ====================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paygate.billing import LateFeePolicy
from paygate.clock import DEFAULT_TIMEZONE
from paygate.errors import ConfigurationError
from paygate.ledger import AccountKind
from paygate.money import minor_units_exponent
from paygate.store.engine import DEFAULT_DATABASE_URL
from paygate.supply import DunningPolicy, ServicePromise

if TYPE_CHECKING:
    from paygate.channels.base import ChannelAdapter

__all__ = ["Settings"]


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``PAYGATE_*`` variables, then ``overrides`` (None values ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if "PAYGATE_DATABASE_URL" in env:
            values["database_url"] = env["PAYGATE_DATABASE_URL"]
        if "PAYGATE_TIMEZONE" in env:
            values["timezone"] = env["PAYGATE_TIMEZONE"]
        if "PAYGATE_CURRENCY" in env:
            values["currency"] = env["PAYGATE_CURRENCY"]
        if "PAYGATE_SQLITE_SYNCHRONOUS" in env:
            values["sqlite_synchronous"] = env["PAYGATE_SQLITE_SYNCHRONOUS"].upper()
        try:
            if "PAYGATE_RECONNECTION_PROMISE" in env:
                hours = int(env["PAYGATE_RECONNECTION_PROMISE"])
                budgets = ServicePromise()
                values["service_promise"] = ServicePromise(
                    promise=timedelta(hours=hours),
                    legal_limit=max(budgets.legal_limit, timedelta(hours=hours)),
                    confirm_budget=timedelta(hours=hours) * 5 / 6,
                    ack_budget=timedelta(hours=hours) * 5 / 32,
                )
            if "PAYGATE_DEFAULT_HEADEND" in env:
                values["default_headend"] = env["PAYGATE_DEFAULT_HEADEND"]
            if "PAYGATE_SEAL_EVERY" in env:
                values["seal_every"] = int(env["PAYGATE_SEAL_EVERY"])
        except ValueError as exc:
            raise ConfigurationError(f"a PAYGATE_* number is not an integer: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise ConfigurationError(f"invalid settings: {exc}") from None

    def with_channels(self, adapters: Iterable[ChannelAdapter[Any]]) -> Settings:
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
