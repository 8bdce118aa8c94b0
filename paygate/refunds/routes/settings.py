"""The ``[refunds]`` section of the configuration, and the routes built from it.

Each route has its own table (``[refunds.alipay]``, ``[refunds.wechatpay]``,
``[refunds.online]``, ``[refunds.bank_transfer]``); a route that is not configured is not
built. Keys are files (PEM) named by path; a private key's passphrase, the one secret here,
is named by the environment variable that holds it (``…_passphrase_env``), as
:func:`~paygate.config.sections.secret_from_env` reads secrets everywhere else.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from paygate.config.sections import secret_from_env
from paygate.errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from paygate.channels.signing import VerifyingKey
    from paygate.clock import Clock
    from paygate.refunds.route import RefundRoute

__all__ = [
    "AlipayRouteSection",
    "BankTransferRouteSection",
    "OnlineRouteSection",
    "RefundsSection",
    "WechatPayRouteSection",
    "build_routes",
]


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    return value


Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=300)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlipayRouteSection(_Section):
    """``[refunds.alipay]``: ``alipay.trade.refund`` through the OpenAPI gateway."""

    base_url: str = Field(default="https://openapi.alipay.com/gateway.do", min_length=1)
    app_id: str = Field(min_length=1)
    app_private_key_file: Path = Field(description="the app's RSA private key, PEM")
    app_private_key_passphrase_env: str | None = None
    alipay_public_key_file: Path = Field(description="Alipay's public key: PEM or bare base64")
    timeout: Seconds = 10.0
    channel: str | None = "alipay"


class WechatPayRouteSection(_Section):
    """``[refunds.wechatpay]``: WeChat Pay API v3 ``/v3/refund/domestic/refunds``."""

    base_url: str = Field(default="https://api.mch.weixin.qq.com", min_length=1)
    mchid: str = Field(min_length=1)
    merchant_serial_no: str = Field(min_length=1, description="the merchant certificate's serial")
    merchant_private_key_file: Path = Field(description="apiclient_key.pem")
    merchant_private_key_passphrase_env: str | None = None
    platform_certificate_files: dict[str, Path] = Field(
        min_length=1, description="serial → platform certificate or WeChat Pay public key (PEM)"
    )
    timestamp_window: Seconds = 300.0
    notify_url: str | None = None
    timeout: Seconds = 10.0
    channel: str | None = "wechatpay"


class OnlineRouteSection(_Section):
    """``[refunds.online]``: the online gateway's back-end refund and query."""

    base_url: str = Field(min_length=1, description="the gateway's address, without the path")
    merchant_id: str = Field(min_length=1)
    cert_id: str = Field(min_length=1, description="the merchant signing certificate's certId")
    signing_key_file: Path = Field(description="the merchant's RSA private key, PEM")
    signing_key_passphrase_env: str | None = None
    gateway_certificate_files: tuple[Path, ...] = Field(min_length=1, max_length=4)
    back_url: str = Field(min_length=1, description="where the gateway notifies the outcome")
    timeout: Seconds = 10.0
    channel: str | None = "online"


class BankTransferRouteSection(_Section):
    """``[refunds.bank_transfer]``: transfer lines in the file sent to the bank agent."""

    outbound_dir: Path
    return_dir: Path
    payer_account: str = Field(
        min_length=1, description="the utility's account the transfers debit"
    )
    batch_prefix: str = Field(default="RF", pattern=r"^[A-Za-z0-9]{1,12}$")
    encoding: str = "gbk"
    amount_unit: Literal["fen", "yuan"] = "fen"
    success_codes: tuple[str, ...] = Field(default=("0000",), min_length=1)
    currency: str = "CNY"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        if "|0123456789HDT\r\n".encode(value) != b"|0123456789HDT\r\n":
            raise ValueError(f"encoding {value!r} is not ASCII-compatible")
        return value


class RefundsSection(_Section):
    """``[refunds]``: the refund routes, one table each; absent tables are not built."""

    alipay: AlipayRouteSection | None = None
    wechatpay: WechatPayRouteSection | None = None
    online: OnlineRouteSection | None = None
    bank_transfer: BankTransferRouteSection | None = None


def _read(where: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _private_key(
    where: str, path: Path, passphrase_env: str | None, environ: Mapping[str, str]
) -> RSAPrivateKey:
    from paygate.channels.signing import load_signing_key

    password = None
    if passphrase_env is not None:
        password = secret_from_env(f"{where}_passphrase_env", passphrase_env, environ).encode()
    try:
        return load_signing_key(_read(f"{where}_file", path), password)
    except ValueError as exc:
        raise ConfigurationError(f"{where}_file: {path}: {exc}") from None


def _public_key(where: str, path: Path) -> VerifyingKey:
    from paygate.channels.signing import load_verifying_key

    try:
        return load_verifying_key(_read(where, path).decode("ascii", "replace"))
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {path}: {exc}") from None


def build_routes(
    section: RefundsSection,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> dict[str, RefundRoute]:
    """The configured routes by name, keys read and checked now; every problem is a
    ConfigurationError naming the key (``refunds.alipay.app_private_key_file``), never a key."""
    from paygate.refunds.routes.alipay import AlipayRefundRoute
    from paygate.refunds.routes.bank_transfer import BankTransferRoute
    from paygate.refunds.routes.online import OnlineRefundRoute
    from paygate.refunds.routes.wechatpay import WechatPayRefundRoute

    env = os.environ if environ is None else environ
    built: list[RefundRoute] = []
    if (a := section.alipay) is not None:
        built.append(
            AlipayRefundRoute(
                app_id=a.app_id,
                private_key=_private_key(
                    "refunds.alipay.app_private_key",
                    a.app_private_key_file,
                    a.app_private_key_passphrase_env,
                    env,
                ),
                alipay_key=_public_key(
                    "refunds.alipay.alipay_public_key_file", a.alipay_public_key_file
                ),
                base_url=a.base_url,
                timeout=a.timeout,
                channel=a.channel,
                clock=clock,
            )
        )
    if (x := section.wechatpay) is not None:
        built.append(
            WechatPayRefundRoute(
                mchid=x.mchid,
                merchant_serial_no=x.merchant_serial_no,
                private_key=_private_key(
                    "refunds.wechatpay.merchant_private_key",
                    x.merchant_private_key_file,
                    x.merchant_private_key_passphrase_env,
                    env,
                ),
                platform_keys={
                    serial: _public_key(
                        f"refunds.wechatpay.platform_certificate_files.{serial}", path
                    )
                    for serial, path in x.platform_certificate_files.items()
                },
                base_url=x.base_url,
                timeout=x.timeout,
                timestamp_window=timedelta(seconds=x.timestamp_window),
                notify_url=x.notify_url,
                channel=x.channel,
                clock=clock,
            )
        )
    if (o := section.online) is not None:
        built.append(
            OnlineRefundRoute(
                merchant_id=o.merchant_id,
                cert_id=o.cert_id,
                private_key=_private_key(
                    "refunds.online.signing_key",
                    o.signing_key_file,
                    o.signing_key_passphrase_env,
                    env,
                ),
                gateway_keys=[
                    _public_key("refunds.online.gateway_certificate_files", path)
                    for path in o.gateway_certificate_files
                ],
                back_url=o.back_url,
                base_url=o.base_url,
                timeout=o.timeout,
                channel=o.channel,
            )
        )
    if (b := section.bank_transfer) is not None:
        built.append(
            BankTransferRoute(
                outbound_dir=b.outbound_dir,
                return_dir=b.return_dir,
                payer_account=b.payer_account,
                batch_prefix=b.batch_prefix,
                encoding=b.encoding,
                amount_unit=b.amount_unit,
                success_codes=b.success_codes,
                currency=b.currency,
                clock=clock,
            )
        )
    return {route.name: route for route in built}
