"""Attackers: impostors who know a channel's format but hold none of its keys, and someone
guessing recharge-voucher PINs. Every one of their messages must be refused and post nothing."""

from __future__ import annotations

from paygate.channels.kiosk import KioskMethod
from paygate.channels.orders import new_order_id
from paygate.demo.peers import (
    AgentBank,
    AlipayServer,
    Kiosk,
    Message,
    OnlineGateway,
    PosTerminal,
    RechargeCard,
    WechatPayServer,
    guessed_pin,
    redeem_request,
)
from paygate.money import Money
from paygate.simulation.traffic import CARD_FACES, Channels
from paygate.simulation.world import CURRENCY

__all__ = ["brute_force", "forge"]


def forge(self: Channels, account_no: str) -> bool:
    """One message from an impostor, on a channel of the day: True if it was refused."""
    now = self.clock.now()
    amount = Money(50_000, CURRENCY)
    kind = self.forge_rng.choice(("alipay", "wechatpay", "online", "kiosk", "pos", "bank_agent"))
    message: Message
    if kind == "alipay":
        message = AlipayServer(self.alipay.app_id, key=self.impostor).trade_paid(
            out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
        )
        send = self._sender("alipay_adapter", "handle_notify")
    elif kind == "wechatpay":
        message = WechatPayServer(
            self.wechatpay.mchid,
            self.wechatpay.appid,
            serial=self.wechatpay.serial,
            key=self.impostor,
        ).transaction_success(
            out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
        )
        send = self._sender("wechatpay_adapter", "handle_notify")
    elif kind == "online":
        order = self.online_adapter.create_order(account_no, amount, now=now)
        message = OnlineGateway(
            self.online_gateway.merchant_id, key=self.impostor
        ).consumption_completed(order, paid_at=now)
        send = self._sender("online_adapter", "handle_notify")
    elif kind == "kiosk":
        message = Kiosk(self.kiosk.device_id, self.clock).pay(
            account_no=account_no, amount=amount, method=KioskMethod.CASH
        )
        send = self._sender("kiosk_adapter", "handle_pay")
    elif kind == "pos":
        message = PosTerminal(
            self.pos_terminal.terminal_id, self.pos_terminal.merchant_id, self.clock
        ).sale(account_no=account_no, amount=amount)
        send = self._sender("pos_adapter", "handle_pay")
    else:
        message = AgentBank(self.bank.bank_code, self.bank.merchant_id).counter_payment(
            account_no=account_no, amount=amount, paid_at=now
        )
        send = self._sender("bank_adapter", "handle_notify")
    result = send(message)
    self.tally.forged += 1
    self.tally.faults["forged"] += 1
    refused = not result.ok
    self.tally.forged_posted += int(not refused)
    self.log(f"forged {kind} {result.status_code}")
    return refused


def brute_force(self: Channels, account_no: str, guesses: int) -> int:
    """An attacker guesses PINs for a card taken off the shelf; how many were accepted."""
    card = self.retailer.sell(Money(CARD_FACES[0], CURRENCY))
    if card is None:
        return 0
    accepted = 0
    for _ in range(guesses):
        guess = RechargeCard(card.serial, guessed_pin(), card.face_value)
        message = redeem_request(guess, account_no, source="app:power-service")
        result = self.voucher_adapter.handle_redeem(message.body, message.headers, self._gw())
        accepted += int(result.ok)
    self.tally.guesses += guesses
    self.tally.guesses_posted += accepted
    self.tally.faults["brute_force"] += guesses
    self.log(f"brute force {guesses} guesses {accepted} accepted")
    return accepted
