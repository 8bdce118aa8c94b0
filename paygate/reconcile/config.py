"""Reconciliation configuration: each channel's statement files, settlement rules, bank references.

Invariant: this configuration never holds a key, and reading a statement never needs one. A
statement is read with its channel adapter's own reader, on an adapter built for reading only:
its configuration carries the currency, the settlement rules and whatever reader options the
file layout needs (a bank code, an encoding), and nothing the adapter's messages need (keys,
merchant ids, stores). Finance can run reconciliation without access to any channel secret.

The ``[reconcile]`` section of the configuration file (``paygate reconcile --config FILE``; an
older ``reconcile.toml`` has these tables at its top)::

    [reconcile.policy]            # optional: what may be resolved without a person
    post_late_payments = true
    max_late_payment = 500000     # minor units
    time_window = "PT30M"

    [reconcile.bank]
    statement = "bank/{date:%Y%m%d}.sta"   # the bank statement for --all
    format = "auto"                        # auto, mt940, camt053, bai2, csv
    account = "755912345610001"            # the utility's account, as statements name it
    currency = "CNY"                       # default: the utility's currency
    window_days = 7                        # a statement may start this long after --date
    [reconcile.bank.csv]                   # a CSV export's layout (CsvLayout's fields)
    currency = "CNY"
    date_column = "date"
    amount_column = "amount"

    [reconcile.channels.alipay]
    statement = "alipay/{date:%Y%m%d}_*.csv"       # one file; a glob must match exactly one
    bank_reference = "ALIPAY SETTLE {date:%Y%m%d}"  # a regular expression
    [reconcile.channels.alipay.settlement]          # optional: else the adapter's defaults
    lag_days = 1
    grace_days = 2

    [reconcile.channels.bank_agent]
    statement = "icbc/DZ{date:%Y%m%d}.csv"
    reader = { bank_code = "ICBC", statement_encoding = "gbk" }

Paths are relative to the configuration file. ``{date:FORMAT}`` is the business date and
``{settlement_date:FORMAT}`` the day the channel pays it out (FORMAT as ``strftime``; the
default is ``%Y%m%d``); in ``bank_reference`` they are matched literally.
"""

from __future__ import annotations

import functools
import glob
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from paygate.channels.base import (
    ChannelAdapter,
    ChannelConfig,
    ChannelRegistry,
    SettlementRules,
    StatementSource,
)
from paygate.config import PaygateConfig
from paygate.errors import ConfigurationError, InvalidInputError
from paygate.models import StatementLine
from paygate.money import minor_units_exponent
from paygate.reconcile.bank import BankFormat, CsvLayout
from paygate.reconcile.model import ReconcilePolicy
from paygate.renames import current_channel

__all__ = [
    "BankSetup",
    "ChannelSetup",
    "ReconcileConfig",
    "StatementReader",
    "channel_rules",
    "load_config",
    "reconcile_config",
    "reference_pattern",
    "statement_path",
    "statement_reader",
]

StatementReader = Callable[[StatementSource], Iterator[StatementLine]]
"""A channel's statement reader: a source in, statement lines out, streaming."""

_PLACEHOLDER = re.compile(r"\{(date|settlement_date)(?::([^{}]*))?\}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelSetup(_Frozen):
    """How one channel is reconciled."""

    statement: str | None = Field(
        default=None, description="the statement file for a business date (pattern)"
    )
    bank_reference: str | None = Field(
        default=None, description="regular expression the bank entry of its settlement matches"
    )
    currency: str | None = Field(default=None, description="default: the adapter's (CNY)")
    settlement: SettlementRules | None = Field(
        default=None, description="cut-off, lag, grace days and fees; default: the adapter's"
    )
    reader: dict[str, str | int | bool] = Field(
        default_factory=dict, description="options of the statement reader (a bank code …)"
    )


class BankSetup(_Frozen):
    """Where the utility's bank statement is, how to read it, and which account it must be.

    A statement of another account than ``account`` (when set), in another currency than
    ``currency`` (default: the utility's), or of a period that cannot hold the business
    date's settlements (ending before it, or starting more than ``window_days`` after it) is
    refused.
    """

    statement: str | None = None
    format: str = "auto"
    csv: CsvLayout | None = None
    account: str | None = Field(
        default=None, min_length=1, description="the utility's bank account, as statements name it"
    )
    currency: str | None = Field(
        default=None, description="the account's currency (default: the utility's)"
    )
    window_days: int = Field(
        default=7, ge=0, le=62, description="how long after the business date a statement may start"
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != "auto" and value not in {f.value for f in BankFormat}:
            raise ValueError(
                f"auto or one of {', '.join(f.value for f in BankFormat)}, not {value!r}"
            )
        return value


class ReconcileConfig(_Frozen):
    """The whole reconciliation configuration; ``base_dir`` anchors relative paths."""

    channels: dict[str, ChannelSetup] = Field(default_factory=dict)
    bank: BankSetup = Field(default_factory=BankSetup)
    policy: ReconcilePolicy = Field(default_factory=ReconcilePolicy)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_names(cls, value: object) -> object:
        # A retired channel name is read as the channel's name now (paygate.renames).
        if not isinstance(value, dict):
            return value
        return {
            current_channel(str(k), where=f"[channels.{k}]", category=FutureWarning): v
            for k, v in value.items()
        }

    def channel(self, name: str) -> ChannelSetup:
        """The setup of ``name`` (an empty one when the file does not name it)."""
        return self.channels.get(current_channel(name, where="channel"), ChannelSetup())


def reconcile_config(config: PaygateConfig) -> ReconcileConfig:
    """The ``[reconcile]`` section of ``config``, checked; relative paths from its file."""
    try:
        return ReconcileConfig.model_validate(
            {**config.reconcile, "base_dir": config.base_dir("reconcile")}
        )
    except ValidationError as exc:
        raise config.refusal(exc, "reconcile") from None


def load_config(path: str | Path) -> ReconcileConfig:
    """The ``[reconcile]`` section of ``path`` (one configuration file, or an older
    ``reconcile.toml``), under the ``PAYGATE_*`` variables; every problem names the file."""
    return reconcile_config(PaygateConfig.load(files={"reconcile": Path(path)}))


def channel_rules(
    channel: str,
    setup: ChannelSetup | None = None,
    registry: ChannelRegistry | None = None,
) -> SettlementRules:
    """The settlement rules of ``channel``: configured, else its adapter's, else the defaults."""
    if setup is not None and setup.settlement is not None:
        return setup.settlement
    if registry is None:
        return _registered_rules(channel)
    return _adapter_rules(registry, channel)


@functools.cache
def _registered_rules(channel: str) -> SettlementRules:
    # Discovering the installed adapters reads every entry point: once per process is enough.
    return _adapter_rules(ChannelRegistry.discover(), channel)


def _adapter_rules(registry: ChannelRegistry, channel: str) -> SettlementRules:
    if channel not in registry:
        return SettlementRules()
    field = registry.get(channel).config_model.model_fields.get("settlement")
    default = None if field is None else field.get_default(call_default_factory=True)
    return default if isinstance(default, SettlementRules) else SettlementRules()


def statement_reader(
    channel: str,
    setup: ChannelSetup | None = None,
    registry: ChannelRegistry | None = None,
) -> StatementReader:
    """The statement reader of ``channel``'s adapter, built for reading only (no keys)."""
    found = registry if registry is not None else ChannelRegistry.discover()
    adapter_class = found.get(channel)
    given = setup if setup is not None else ChannelSetup()
    model = adapter_class.config_model
    values: dict[str, Any] = {"settlement": channel_rules(channel, given, found)}
    if given.currency is not None:
        minor_units_exponent(given.currency)
        values["currency"] = given.currency
    for name, value in given.reader.items():
        info = model.model_fields.get(name)
        if info is None or info.annotation is None or name in ("settlement", "currency"):
            raise ConfigurationError(
                f"channel {channel!r}: {name!r} is not a reader option of {model.__name__}",
                field="reader",
            )
        try:
            values[name] = TypeAdapter(info.annotation).validate_python(value)
        except ValidationError:
            raise ConfigurationError(
                f"channel {channel!r}: reader option {name!r} has the wrong type",
                field="reader",
            ) from None
    # model_construct: the fields only messages need (keys, merchant ids) stay unset, and an
    # adapter's own __init__ (which loads keys, wants stores) is not run; the base initializer
    # still checks the configuration's type.
    config: ChannelConfig = model.model_construct(**values)
    adapter: ChannelAdapter[Any] = adapter_class.__new__(adapter_class)
    ChannelAdapter.__init__(adapter, config)

    def read(source: StatementSource) -> Iterator[StatementLine]:
        try:
            lines = adapter.read_statement(source)
        except AttributeError as exc:
            raise ConfigurationError(
                f"channel {channel!r}: its statement reader needs the reader option "
                f"{exc.name!r}; set it under [reconcile.channels.{channel}.reader]",
                field="reader",
            ) from None
        return lines

    return read


def _fill(pattern: str, business_date: date, settlement_date: date, *, regex: bool) -> str:
    def one(match: re.Match[str]) -> str:
        day = business_date if match.group(1) == "date" else settlement_date
        text = day.strftime(match.group(2) or "%Y%m%d")
        return re.escape(text) if regex else text

    return _PLACEHOLDER.sub(one, pattern)


def statement_path(
    pattern: str, business_date: date, settlement_date: date, base_dir: Path
) -> Path:
    """The one file ``pattern`` names for a business date (a glob must match exactly one)."""
    filled = _fill(pattern, business_date, settlement_date, regex=False)
    candidate = Path(filled)
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if not glob.has_magic(str(candidate)):
        return candidate
    matches = sorted(glob.glob(str(candidate)))
    if len(matches) != 1:
        raise InvalidInputError(
            f"{candidate} matches {len(matches)} files, not one"
            + (f": {', '.join(matches[:5])}" if matches else ""),
            field="statement",
        )
    return Path(matches[0])


def reference_pattern(pattern: str, business_date: date, settlement_date: date) -> re.Pattern[str]:
    """The bank-reference regular expression for one business date.

    It is searched in the entry's customer reference, bank reference and details, one line
    each (``^`` and ``$`` match at every line).
    """
    try:
        return re.compile(_fill(pattern, business_date, settlement_date, regex=True), re.M)
    except re.error as exc:
        raise ConfigurationError(
            f"bank_reference {pattern!r} is not a regular expression: {exc}",
            field="bank_reference",
        ) from None
