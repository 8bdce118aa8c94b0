"""paygate's side of the demo's peers: one channel adapter each, configured with the keys the
peer made for the run (the demo and the simulation wire them the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paygate.channels.bank_agent import BankAgentAdapter, BankAgentConfig, SignMethod
from paygate.channels.base import AdapterContext, ChannelAdapter
from paygate.channels.kiosk import KioskAdapter, KioskConfig, KioskContext
from paygate.channels.mobile import AlipayAdapter, AlipayConfig, WechatPayAdapter, WechatPayConfig
from paygate.channels.online import OnlineAdapter, OnlineConfig
from paygate.channels.pos import PosAdapter, PosConfig, PosContext
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore, SqlOrderStore, SqlPosLedger
from paygate.channels.voucher import VoucherAdapter, VoucherConfig, VoucherContext
from paygate.clock import Clock
from paygate.demo.peers import (
    AGENT_BANK_LAYOUT,
    AgentBank,
    AlipayServer,
    OnlineGateway,
    PosTerminal,
    WechatPayServer,
)
from paygate.devices import DeviceRegistry
from paygate.store import Store
from paygate.vouchers import VoucherService

__all__ = ["PeerAdapters", "peer_adapters"]


@dataclass(frozen=True, slots=True)
class PeerAdapters:
    """The seven adapters the peers' payments go through."""

    alipay: AlipayAdapter
    wechatpay: WechatPayAdapter
    online: OnlineAdapter
    kiosk: KioskAdapter
    pos: PosAdapter
    bank: BankAgentAdapter
    voucher: VoucherAdapter

    def all(self) -> tuple[ChannelAdapter[Any], ...]:
        """Every adapter, as ``Gateway.use_channels`` takes them."""
        return (
            self.alipay,
            self.wechatpay,
            self.online,
            self.kiosk,
            self.pos,
            self.bank,
            self.voucher,
        )


def peer_adapters(
    *,
    alipay: AlipayServer,
    wechatpay: WechatPayServer,
    online_gateway: OnlineGateway,
    pos_terminal: PosTerminal,
    bank: AgentBank,
    store: Store,
    clock: Clock,
    devices: DeviceRegistry,
    vouchers: VoucherService,
    currency: str,
) -> PeerAdapters:
    """The adapters for these peers, on the database's nonce, order, kiosk and POS stores; the
    kiosk and the POS terminal must be registered in ``devices``."""
    nonces = SqlNonceStore(store)
    plain = AdapterContext(clock=clock, nonces=nonces)
    return PeerAdapters(
        alipay=AlipayAdapter(
            AlipayConfig(alipay_public_key=alipay.public_key_pem, app_id=alipay.app_id), plain
        ),
        wechatpay=WechatPayAdapter(
            WechatPayConfig(
                api_v3_key=wechatpay.api_v3_key,
                platform_keys=wechatpay.platform_keys,
                mchid=wechatpay.mchid,
            ),
            plain,
        ),
        online=OnlineAdapter(
            OnlineConfig(
                merchant_id=online_gateway.merchant_id,
                gateway_public_keys=(online_gateway.public_key_pem,),
            ),
            AdapterContext(clock=clock, nonces=nonces, orders=SqlOrderStore(store)),
        ),
        kiosk=KioskAdapter(
            KioskConfig(),
            KioskContext(clock=clock, nonces=nonces, devices=devices, ledger=SqlKioskLedger(store)),
        ),
        pos=PosAdapter(
            PosConfig(merchant_ids=(pos_terminal.merchant_id,)),
            PosContext(
                clock=clock,
                nonces=nonces,
                terminal_keys=devices,
                ledger=SqlPosLedger(store, currency=currency),
            ),
        ),
        bank=BankAgentAdapter(
            BankAgentConfig(
                merchant_id=bank.merchant_id,
                bank_code=bank.bank_code,
                sign_method=SignMethod.HMAC,
                shared_key=bank.shared_key,
                batch_layout=AGENT_BANK_LAYOUT,
            ),
            plain,
        ),
        voucher=VoucherAdapter(
            VoucherConfig(), VoucherContext(clock=clock, nonces=nonces, vouchers=vouchers)
        ),
    )
