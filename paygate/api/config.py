"""HTTP gateway configuration: which channels ``paygate serve`` answers for, and their secrets.

Invariant: a secret never comes from the file. Any option ``<name>_env = "VAR"`` gives the
option ``<name>`` the value of ``$VAR``; an option the channel's configuration model types as a
secret (``SecretStr``/``SecretBytes``) written in the file itself is refused, naming the
``_env`` form to use instead. Every channel section is validated against its adapter's model
when the file is loaded, so a wrong option stops ``paygate serve`` before it listens, with a
message that names the option and never the value.

The file is TOML, and may be the same file as ``paygate dispatch --config`` (each reads its
own tables)::

    [channels.kiosk]                    # always served; these are the defaults
    timestamp_window = 300              # seconds either way; also the paid_at skew allowed
    max_body_bytes = 65536

    [channels.voucher]                  # serves POST /v1/vouchers/redeem
    pin_key_env = "PAYGATE_VOUCHER_PIN_KEY"

    [channels.wechatpay]                # serves POST /v1/channels/wechatpay/notify
    api_v3_key_env = "PAYGATE_WECHATPAY_API_V3_KEY"
    mchid = "1900000109"
    [channels.wechatpay.platform_keys]
    "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" = '''-----BEGIN CERTIFICATE-----
    ...'''

    [supply_orders]                     # serves POST /v1/supply-orders/{id}/confirm
    callback_secret_env = "PAYGATE_AMI_CALLBACK_SECRET"
    # or: headend = "ami", to use [headends.ami]'s callback_secret_env (else its secret_env)

A channel section is served when it is present: ``kiosk`` at ``/v1/payments`` and
``/v1/kiosks/{id}/close``, ``voucher`` at ``/v1/vouchers/redeem``, ``pos`` at
``/v1/pos/{sale,void,settle}`` (terminals' MAC keys need ``PAYGATE_KEY_ENCRYPTION_KEY``),
and every channel
that offers notifications at ``/v1/channels/{name}/notify``. ``[reconnections]`` and
``[channels.prepaid_card]`` are the retired names of ``[supply_orders]`` and
``[channels.voucher]``: still read, with a FutureWarning. The kiosk paths and the
redemption's source header are fixed by the HTTP API and may not be configured.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import SecretBytes, SecretStr, ValidationError

from paygate.channels.base import ChannelConfig, ChannelRegistry, Operation
from paygate.channels.kiosk import KioskAdapter, KioskConfig
from paygate.channels.pos import PosAdapter
from paygate.channels.voucher import VoucherAdapter, VoucherConfig
from paygate.devices import HEADER_DEVICE
from paygate.errors import ConfigurationError
from paygate.headend.webhook import MIN_SECRET_BYTES
from paygate.renames import RETIRED_CHANNELS, current_channel
from paygate.vouchers import PIN_KEY_ENV, load_pin_key

__all__ = [
    "API_CONFIG_ENV",
    "KIOSK_CLOSE_PATH",
    "KIOSK_PAY_PATH",
    "ApiConfig",
    "load_api_config",
]

API_CONFIG_ENV: Final = "PAYGATE_API_CONFIG"
"""The variable naming the configuration file of each ``paygate serve`` worker."""

KIOSK_PAY_PATH: Final = "/v1/payments"
"""Where kiosks post payments, and so the target they sign."""

KIOSK_CLOSE_PATH: Final = "/v1/kiosks/{device_id}/close"
"""Where a kiosk closes its day; each kiosk signs its own path."""

RETIRED_CALLBACK_TABLE: Final = "reconnections"
"""The retired name of the ``[supply_orders]`` table (the head-end's callback)."""

_FIXED: Final[Mapping[str, frozenset[str]]] = {
    KioskAdapter.name: frozenset({"pay_path", "daily_close_path"}),
    VoucherAdapter.name: frozenset({"source_header"}),
    PosAdapter.name: frozenset(),
}


@dataclass(frozen=True)
class ApiConfig:
    """What the HTTP gateway serves beyond its fixed routes; secrets already resolved.

    ``channels`` maps a channel name to its validated configuration. ``kiosk`` is always
    served (with defaults when not configured); the others only when present.
    """

    channels: Mapping[str, ChannelConfig] = field(default_factory=dict)
    voucher_pin_key: SecretBytes | None = None
    callback_secret: SecretBytes | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        # A retired channel name (paygate.renames) is the channel's name now.
        if any(name in RETIRED_CHANNELS for name in self.channels):
            current = {
                current_channel(name, where="ApiConfig.channels", stacklevel=5): config
                for name, config in self.channels.items()
            }
            object.__setattr__(self, "channels", current)

    def __repr__(self) -> str:
        # Short on purpose: the configuration holds keys, and reprs end up in logs.
        return f"<ApiConfig channels={sorted(self.channels)} source={self.source!r}>"

    @property
    def kiosk(self) -> KioskConfig:
        """The kiosk channel's configuration, with the paths the HTTP API serves it at."""
        found = self.channels.get(KioskAdapter.name)
        base = found if isinstance(found, KioskConfig) else KioskConfig()
        # model_copy skips validation; the path is a constant already in canonical form.
        return base.model_copy(update={"pay_path": KIOSK_PAY_PATH})

    @property
    def voucher(self) -> VoucherConfig | None:
        """The voucher channel's configuration, its attempts' source the signing device."""
        found = self.channels.get(VoucherAdapter.name)
        if not isinstance(found, VoucherConfig):
            return None
        # The authenticated device is the source the throttle counts, never the body's word.
        return found.model_copy(update={"source_header": HEADER_DEVICE})

    @property
    def prepaid_card(self) -> VoucherConfig | None:
        """Deprecated: :attr:`voucher`."""
        warnings.warn(
            "ApiConfig.prepaid_card is deprecated; use ApiConfig.voucher",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.voucher


def _is_secret(annotation: object) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_secret(arg) for arg in typing.get_args(annotation))
    return False


def _env_value(where: str, var: object, environ: Mapping[str, str]) -> str:
    if not isinstance(var, str) or not var:
        raise ConfigurationError(f"{where}: name an environment variable", field=where)
    value = environ.get(var)
    if value is None or not value.strip():
        raise ConfigurationError(f"{where}: environment variable {var} is not set", field=where)
    return value


def _validation_message(exc: ValidationError) -> str:
    # Without the input values: a rejected value may be a key.
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "config"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _channel_config(
    name: str,
    section: Mapping[str, Any],
    registry: ChannelRegistry,
    environ: Mapping[str, str],
) -> ChannelConfig:
    if name not in registry:
        raise ConfigurationError(f"channels.{name}: no such channel", field="channels")
    adapter = registry.get(name)
    if name not in _FIXED and Operation.NOTIFY not in adapter.operations:
        raise ConfigurationError(
            f"channels.{name}: the HTTP API has no route for this channel (it serves kiosk, "
            "voucher, pos and channels that send notifications)",
            field="channels",
        )
    model = adapter.config_model
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key.endswith("_env"):
            option = key.removesuffix("_env")
            values[option] = _env_value(f"channels.{name}.{key}", value, environ)
            continue
        if key in _FIXED.get(name, frozenset()):
            raise ConfigurationError(
                f"channels.{name}.{key} is fixed by the HTTP API", field=f"channels.{name}.{key}"
            )
        spec = model.model_fields.get(key)
        if spec is not None and _is_secret(spec.annotation):
            raise ConfigurationError(
                f"channels.{name}.{key} is a secret: give {key}_env, the environment variable "
                "that holds it, not the value",
                field=f"channels.{name}.{key}",
            )
        values[key] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(
            f"channels.{name}: {_validation_message(exc)}", field=f"channels.{name}"
        ) from None


def _callback_secret(data: Mapping[str, Any], environ: Mapping[str, str]) -> SecretBytes | None:
    table = "supply_orders"
    if RETIRED_CALLBACK_TABLE in data:
        if table in data:
            raise ConfigurationError(
                f"give [{table}] only ([{RETIRED_CALLBACK_TABLE}] is its retired name)",
                field=table,
            )
        warnings.warn(
            f"[{RETIRED_CALLBACK_TABLE}] is deprecated; name the table [{table}]",
            FutureWarning,
            stacklevel=3,
        )
        table = RETIRED_CALLBACK_TABLE
    section = data.get(table)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"{table} must be a table", field=table)
    unknown = set(section) - {"callback_secret_env", "headend"}
    if unknown:
        raise ConfigurationError(f"{table}: unknown option(s) {sorted(unknown)}", field=table)
    if ("callback_secret_env" in section) == ("headend" in section):
        raise ConfigurationError(
            f"{table}: give exactly one of callback_secret_env and headend",
            field=table,
        )
    if "callback_secret_env" in section:
        text = _env_value(f"{table}.callback_secret_env", section["callback_secret_env"], environ)
    else:
        name = section["headend"]
        headend = dict(data.get("headends", {})).get(name)
        if not isinstance(headend, Mapping) or headend.get("type") != "webhook":
            raise ConfigurationError(
                f"{table}.headend: [headends.{name}] is not a webhook head-end",
                field=f"{table}.headend",
            )
        var = headend.get("callback_secret_env", headend.get("secret_env"))
        text = _env_value(f"headends.{name}.callback_secret_env", var, environ)
    secret = text.encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        # Say what is wanted, never what was given.
        raise ConfigurationError(
            f"{table}: the callback secret has at least {MIN_SECRET_BYTES} bytes",
            field=table,
        )
    return SecretBytes(secret)


def load_api_config(
    path: Path | None,
    *,
    registry: ChannelRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> ApiConfig:
    """Read ``path`` (None: the kiosk channel with its defaults, nothing else) and check it."""
    env = os.environ if environ is None else environ
    if path is None:
        return ApiConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    registry = registry or ChannelRegistry.discover()
    sections = data.get("channels", {})
    if not isinstance(sections, Mapping):
        raise ConfigurationError("channels must be a table", field="channels")
    channels: dict[str, ChannelConfig] = {}
    pin_key: SecretBytes | None = None
    for given, section in sections.items():
        name = current_channel(given, where=f"{path}: [channels.{given}]", category=FutureWarning)
        if not isinstance(section, Mapping):
            raise ConfigurationError(f"channels.{name} must be a table", field="channels")
        options = dict(section)
        if name == VoucherAdapter.name:
            var = options.pop("pin_key_env", PIN_KEY_ENV)
            text = _env_value(f"channels.{name}.pin_key_env", var, env)
            pin_key = load_pin_key({PIN_KEY_ENV: text})
        channels[name] = _channel_config(name, options, registry, env)
    return ApiConfig(
        channels=channels,
        voucher_pin_key=pin_key,
        callback_secret=_callback_secret(data, env),
        source=str(path),
    )
