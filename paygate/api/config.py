"""HTTP gateway configuration: the ``[api]`` section built — which channels ``paygate serve``
answers for, and their secrets.

Invariant: a secret never comes from the file. Any option ``<name>_env = "VAR"`` gives the
option ``<name>`` the value of ``$VAR``; an option the channel's configuration model types as a
secret (``SecretStr``/``SecretBytes``) written in the file itself is refused, naming the
``_env`` form to use instead. Every channel table is validated against its adapter's model
when the section is built, so a wrong option stops ``paygate serve`` before it listens, with a
message that names the file, the option and never the value.

The section's shape is :class:`paygate.config.ApiSection`, in the one configuration file (an
older ``api.toml`` has these tables at its top, without ``api.``)::

    [api.channels.kiosk]                # always served; these are the defaults
    timestamp_window = 300              # seconds either way; also the paid_at skew allowed
    max_body_bytes = 65536

    [api.channels.voucher]              # serves POST /v1/vouchers/redeem
    pin_key_env = "PAYGATE_VOUCHER_PIN_KEY"

    [api.channels.wechatpay]            # serves POST /v1/channels/wechatpay/notify
    api_v3_key_env = "PAYGATE_WECHATPAY_API_V3_KEY"
    mchid = "1900000109"
    [api.channels.wechatpay.platform_keys]
    "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" = '''-----BEGIN CERTIFICATE-----
    ...'''

    [api]
    import_max_bytes = 268435456        # POST /v1/accounts/import and /v1/bills/import

    [api.supply_orders]                 # serves POST /v1/supply-orders/{id}/confirm
    callback_secret_env = "PAYGATE_AMI_CALLBACK_SECRET"
    # or: headend = "ami", to use [dispatch.headends.ami]'s callback_secret_env (else secret_env)

A channel section is served when it is present: ``kiosk`` at ``/v1/payments`` and
``/v1/kiosks/{id}/close``, ``voucher`` at ``/v1/vouchers/redeem``, ``pos`` at
``/v1/pos/{sale,void,settle}`` (terminals' MAC keys need ``PAYGATE_KEY_ENCRYPTION_KEY``),
and every channel
that offers notifications at ``/v1/channels/{name}/notify``. ``[api.reconnections]`` and
``[api.channels.prepaid_card]`` are the retired names of ``[api.supply_orders]`` and
``[api.channels.voucher]``: still read, with a FutureWarning. The kiosk paths and the
redemption's source header are fixed by the HTTP API and may not be configured.
"""

from __future__ import annotations

import os
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
from paygate.config import API_CONFIG_ENV, PaygateConfig, secret_from_env
from paygate.config.sections import DEFAULT_IMPORT_MAX_BYTES
from paygate.devices import HEADER_DEVICE
from paygate.headend.webhook import MIN_SECRET_BYTES
from paygate.refunds.route import RefundRoute
from paygate.renames import RETIRED_CHANNELS, current_channel
from paygate.vouchers import PIN_KEY_ENV, load_pin_key

__all__ = [
    "API_CONFIG_ENV",
    "KIOSK_CLOSE_PATH",
    "KIOSK_PAY_PATH",
    "ApiConfig",
    "api_config",
    "load_api_config",
]


KIOSK_PAY_PATH: Final = "/v1/payments"
"""Where kiosks post payments, and so the target they sign."""

KIOSK_CLOSE_PATH: Final = "/v1/kiosks/{device_id}/close"
"""Where a kiosk closes its day; each kiosk signs its own path."""

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
    import_max_bytes: int = DEFAULT_IMPORT_MAX_BYTES
    """The largest CSV body the import routes read; a larger one is refused (413)."""
    refund_routes: Mapping[str, RefundRoute] = field(default_factory=dict)
    """The refund routes (``[refunds]``) the console's finance pages may refund through."""
    key_encryption_key: SecretBytes | None = None
    """The POS terminals' key-encryption key (32 bytes), for an app built in a process that
    holds it; when None, the POS route reads it from ``PAYGATE_KEY_ENCRYPTION_KEY``, as
    ``paygate serve`` does."""

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


def _channel_config(
    name: str,
    section: Mapping[str, Any],
    registry: ChannelRegistry,
    environ: Mapping[str, str],
    config: PaygateConfig,
) -> ChannelConfig:
    at = f"api.channels.{name}"
    if name not in registry:
        raise config.problem(at, "no such channel")
    adapter = registry.get(name)
    if name not in _FIXED and Operation.NOTIFY not in adapter.operations:
        raise config.problem(
            at,
            "the HTTP API has no route for this channel (it serves kiosk, voucher, pos "
            "and channels that send notifications)",
        )
    model = adapter.config_model
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key.endswith("_env"):
            values[key.removesuffix("_env")] = secret_from_env(
                config.place(f"{at}.{key}"), value, environ
            )
            continue
        if key in _FIXED.get(name, frozenset()):
            raise config.problem(f"{at}.{key}", "fixed by the HTTP API")
        spec = model.model_fields.get(key)
        if spec is not None and _is_secret(spec.annotation):
            raise config.problem(
                f"{at}.{key}",
                f"a secret: give {key}_env, the environment variable that holds it, not the value",
            )
        values[key] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise config.refusal(exc, at) from None


def _callback_secret(config: PaygateConfig, environ: Mapping[str, str]) -> SecretBytes | None:
    section = config.api.supply_orders
    if section is None:
        return None
    if section.callback_secret_env is not None:
        where = config.place("api.supply_orders.callback_secret_env")
        text = secret_from_env(where, section.callback_secret_env, environ)
    else:
        name = section.headend
        headend = config.dispatch.headends.get(name or "")
        if headend is None or headend.type != "webhook":
            raise config.problem(
                "api.supply_orders.headend", f"[headends.{name}] is not a webhook head-end"
            )
        options = headend.options
        key = "callback_secret_env" if "callback_secret_env" in options else "secret_env"
        text = secret_from_env(
            config.place(f"dispatch.headends.{name}.{key}"), options.get(key), environ
        )
    secret = text.encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        # Say what is wanted, never what was given.
        raise config.problem(
            "api.supply_orders", f"the callback secret has at least {MIN_SECRET_BYTES} bytes"
        )
    return SecretBytes(secret)


def _source(config: PaygateConfig) -> str | None:
    path = config.file("api")
    return None if path is None else str(path)


def api_config(
    config: PaygateConfig,
    *,
    registry: ChannelRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> ApiConfig:
    """The ``[api]`` section of ``config``, built: each channel's table checked against its
    adapter's model, every secret read from its environment variable."""
    env = os.environ if environ is None else environ
    sections = config.api.channels
    if not sections and config.api.supply_orders is None:
        return ApiConfig(source=_source(config), import_max_bytes=config.api.import_max_bytes)
    registry = registry or ChannelRegistry.discover()
    channels: dict[str, ChannelConfig] = {}
    pin_key: SecretBytes | None = None
    for given, section in sections.items():
        name = current_channel(
            given, where=config.place(f"api.channels.{given}"), category=FutureWarning
        )
        options = dict(section)
        if name == VoucherAdapter.name:
            var = options.pop("pin_key_env", PIN_KEY_ENV)
            where = config.place(f"api.channels.{name}.pin_key_env")
            pin_key = load_pin_key({PIN_KEY_ENV: secret_from_env(where, var, env)})
        channels[name] = _channel_config(name, options, registry, env, config)
    return ApiConfig(
        channels=channels,
        voucher_pin_key=pin_key,
        callback_secret=_callback_secret(config, env),
        source=_source(config),
        import_max_bytes=config.api.import_max_bytes,
    )


def load_api_config(
    path: Path | None,
    *,
    registry: ChannelRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> ApiConfig:
    """The ``[api]`` section of ``path`` (one configuration file, or an older ``api.toml``),
    under the ``PAYGATE_*`` variables; None: the kiosk channel with its defaults, nothing else.
    """
    if path is None:
        return ApiConfig()
    config = PaygateConfig.load(environ=environ, files={"api": path})
    return api_config(config, registry=registry, environ=environ)
