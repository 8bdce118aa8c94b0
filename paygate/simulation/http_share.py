"""The share of the channels' traffic that reaches paygate over real HTTP (``--http-share``).

The notifications of the wallets, the online gateway and the agent bank go to the HTTP
gateway's notify routes, the payments they posted read back from the payment feed; the POS
terminal's sales go to ``POST /v1/pos/sale``, the payment read from the terminal's answer; the
kiosk payments and the recharge-voucher redemptions are made at kiosk K0002, paygate's own kiosk
client (:mod:`paygate.simulation.http_kiosk`). Which message goes over HTTP is drawn from the
run's ``http`` random source, message by message, so a seed replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from pydantic import SecretBytes

from paygate.channels.base import ChannelAdapter, NotifyResult
from paygate.channels.kiosk import KioskMethod
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.demo.peers import CardRetailer, Message, PosTerminal, RechargeCard
from paygate.devices import DeviceRegistry
from paygate.errors import PaygateError
from paygate.feeds import PaymentItem, PaymentItemKind
from paygate.gateway import Gateway
from paygate.models import Receipt
from paygate.money import Money
from paygate.simulation.faults import FaultProfile
from paygate.simulation.group import Crash
from paygate.simulation.http import HttpGateway
from paygate.simulation.http_kiosk import HttpKiosk, KioskOutcomes, refused_for_good
from paygate.simulation.tally import Tally
from paygate.simulation.world import CURRENCY, ZONE

__all__ = ["HttpShare"]

Send = Callable[[Message], NotifyResult]

SERVED: Final = ("alipay", "wechatpay", "online", "bank_agent", "pos", "voucher")
"""The channels whose adapters' configurations the HTTP gateway is given (the kiosk routes
are always served, with their defaults)."""


class Traffic(Protocol):
    """What the share uses of :class:`paygate.simulation.traffic.Channels`."""

    clock: FixedClock
    faults: FaultProfile
    tally: Tally
    log: Callable[[str], None]
    acknowledged: dict[tuple[str, str], int]
    retailer: CardRetailer
    pos_terminal: PosTerminal
    _device_key: SecretBytes
    _pin_key: SecretBytes

    @property
    def adapters(self) -> tuple[ChannelAdapter[Any], ...]: ...

    def kiosk_offline(self) -> bool: ...

    def _gw(self) -> Gateway: ...

    def _posted(self, receipt: Receipt | PaymentItem) -> None: ...

    def _acknowledge(
        self, channel: str, channel_txn_id: str, payment_id: int, account_no: str, amount: Money
    ) -> None: ...


class HttpShare:
    """The HTTP gateway, kiosk K0002 (registered here) and what goes through them."""

    @classmethod
    def start(
        cls,
        channels: Traffic,
        settings: Settings,
        share: float,
        workdir: Path,
        *,
        rng: random.Random,
        crash_rng: random.Random,
    ) -> HttpShare:
        """Start the HTTP gateway on ``settings``'s database, with the keys of the adapters
        in process, and kiosk K0002."""
        gateway = HttpGateway(
            settings,
            {a.name: a.config for a in channels.adapters if a.name in SERVED},
            channels.clock,
            voucher_pin_key=channels._pin_key,
            key_encryption_key=channels._device_key,
        ).start()
        try:
            return cls(channels, gateway, share, workdir, rng=rng, crash_rng=crash_rng)
        except BaseException:
            gateway.stop()
            raise

    def __init__(
        self,
        channels: Traffic,
        gateway: HttpGateway,
        share: float,
        workdir: Path,
        *,
        rng: random.Random,
        crash_rng: random.Random,
    ) -> None:
        self._channels = channels
        self.gateway = gateway
        self.share = share
        self._rng = rng
        self._crash_rng = crash_rng
        self._feed_cursor: str | None = None
        self._expected: list[tuple[str, str]] = []
        self.redemptions: list[tuple[str, RechargeCard, str]] = []
        """Cards being redeemed at the kiosk and not yet answered, oldest first:
        (account, card, idempotency key)."""
        self.kiosk = HttpKiosk(
            gateway,
            channels.clock,
            workdir,
            currency=CURRENCY,
            timezone=str(ZONE),
            offline=channels.kiosk_offline,
            crash=self._crash,
            died=self._died,
        )
        devices = DeviceRegistry(channels._gw().store, channels.clock, channels._device_key)
        devices.add(self.kiosk.device_id, "kiosk", public_key_pem=self.kiosk.public_key_pem)

    def chosen(self) -> bool:
        """Whether the message being sent now goes over HTTP (the share's draw)."""
        return self._rng.random() < self.share

    # -- the HTTP gateway's fate ---------------------------------------------------------------

    def _crash(self) -> Crash | None:
        """Whether the HTTP gateway dies with the request it is sent now, and when."""
        if self._crash_rng.random() >= self._channels.faults.gateway_crash:
            return None
        return Crash.BEFORE_COMMIT if self._crash_rng.random() < 0.5 else Crash.AFTER_COMMIT

    def _died(self, crash: Crash) -> None:
        self._channels.tally.faults["gateway_crash"] += 1
        self._channels.log(f"crash http {crash.value}")
        self.gateway.restart()

    # -- notifications and POS sales ----------------------------------------------------------

    def notify_sender(self, channel: str, account_no: str) -> Send:
        """How a notifying channel's message goes to the HTTP gateway; what it posted is read
        from the payment feed."""
        http = self.gateway

        def send(message: Message) -> NotifyResult:
            result = http.notify(channel, message.body, message.headers)
            if result.ok:
                # Only a message answered as posted is looked for in the feed, and only now:
                # one refused, or a replay of one recorded before, must not take a payment
                # posted later for the same account (by reconciliation, say) for its own.
                key = (channel, account_no)
                self._expected.append(key)
                self._collect_feed()
                if key in self._expected:
                    self._expected.remove(key)
            return result

        return send

    def _collect_feed(self) -> None:
        """Record the payments the HTTP gateway posted, read from the payment feed."""
        channels = self._channels
        gateway = channels._gw()
        while True:
            page = gateway.payments_since(self._feed_cursor, limit=1000)
            for item in page.items:
                self._feed_cursor = item.cursor
                if not isinstance(item, PaymentItem) or item.kind is not PaymentItemKind.PAYMENT:
                    continue  # reversals and refunds: the simulation counts them elsewhere
                key = (item.channel, item.account_no)
                known = (item.channel, item.channel_txn_id) in channels.acknowledged
                if key in self._expected and not known:
                    self._expected.remove(key)
                    channels.tally.over_http[item.channel] += 1
                    channels._posted(item)
            if not page.items:
                return

    def pos_sender(self) -> Send:
        """How the POS terminal's sale goes to ``POST /v1/pos/sale``; the payment is read
        from the answer, as the terminal reads it."""
        http = self.gateway
        channels = self._channels

        def send(message: Message) -> NotifyResult:
            result = http.post("/v1/pos/sale", message.body, message.headers)
            answer = _form(result)
            if answer is not None and ("pos", answer["txn_id"]) not in channels.acknowledged:
                channels.tally.over_http["pos"] += 1
                amount = Money(int(answer["amount"]), CURRENCY)
                channels._acknowledge(
                    "pos", answer["txn_id"], int(answer["payment_id"]), answer["account_no"],
                    amount,
                )  # fmt: skip
            return result

        return send

    def pos_answered(self, message: Message, result: NotifyResult) -> None:
        """The terminal counts a sale approved over HTTP into its open batch."""
        answer = _form(result)
        if answer is not None and answer.get("replayed") == "false":
            self._channels.pos_terminal.approved(Money(int(answer["amount"]), CURRENCY))

    # -- kiosk K0002 ----------------------------------------------------------------------------

    def pay_at_kiosk(self, account_no: str, amount: Money, method: KioskMethod) -> None:
        """A payment at kiosk K0002: stored on the kiosk, then sent (or only stored, in an
        offline spell or after the gateway died: forwarded when it can be)."""
        channels, kiosk = self._channels, self.kiosk
        channels.log(f"pay kiosk over http {account_no} {amount.minor}")
        if channels.kiosk_offline():
            channels.tally.faults["kiosk_offline"] += 1
        day = channels.clock.now().astimezone(ZONE).date()
        settled = kiosk.pay(account_no, amount, method, day)
        if kiosk.pending:
            channels.tally.kiosk_stored += 1
            channels.log(f"stored kiosk over http {account_no}, {kiosk.pending} pending")
        self._settled(settled)

    def redeem_at_kiosk(self, account_no: str, amount: Money, key: str) -> None:
        """A recharge voucher redeemed at kiosk K0002 under idempotency ``key``. The kiosk keeps
        no store of redemptions: one it got no answer for, the customer redeems again, under
        the same key, when the kiosk is back (a step later at the soonest)."""
        channels = self._channels
        card = channels.retailer.sell(amount)
        assert card is not None, "the caller checked the retailer's stock"
        channels.log(f"pay voucher over http {account_no} {amount.minor}")
        self.redemptions.append((account_no, card, key))
        channels.tally.redemptions += 1
        self._redeem()

    def _redeem(self) -> None:
        """The redemptions waiting at the kiosk, oldest first, until one gets no answer."""
        channels = self._channels
        while self.redemptions and not channels.kiosk_offline():
            account_no, card, key = self.redemptions[0]
            answer = self.kiosk.redeem(account_no, card, key)
            if isinstance(answer, PaygateError):
                if not refused_for_good(answer):
                    channels.tally.redemptions_unanswered += 1
                    channels.log(f"voucher over http {account_no}: no answer")
                    return
                channels.tally.refused_genuine["voucher"] += 1
                channels.log(f"refused voucher over http {answer.code}")
            else:
                receipt = answer.receipt
                channels.tally.replays += receipt.replayed
                channels.tally.over_http["voucher"] += 1
                channels._posted(receipt)
            self.redemptions.pop(0)

    def forward(self) -> None:
        """Kiosk K0002's forwarder: while its link is up, a pass over what it stored, then
        the day closes it still owes; and the customers whose card it did not redeem try
        again."""
        if self._channels.kiosk_offline():
            return
        self._settled(self.kiosk.forward())
        for day in sorted(self.kiosk.closes_due):
            self.close(day)
        self._redeem()

    def _settled(self, settled: KioskOutcomes) -> None:
        channels = self._channels
        for stored in settled.confirmed:
            receipt = stored.receipt
            assert receipt is not None, "a confirmed payment has its receipt"
            # A replay is the first answer the kiosk heard: the gateway died after posting.
            channels.tally.replays += receipt.replayed
            channels.tally.kiosk_replayed += receipt.replayed
            channels.tally.over_http["kiosk"] += 1
            channels._acknowledge(
                "kiosk", receipt.channel_txn_id, receipt.payment_id, receipt.account_no,
                receipt.amount,
            )  # fmt: skip
        for stored in settled.refused:
            channels.tally.refused_genuine["kiosk"] += 1
            channels.log(f"refused kiosk over http {stored.refusal_status} {stored.refusal_code}")

    def close(self, day: date) -> None:
        """Kiosk K0002 closes local day ``day`` (or tries to: a close without an answer is
        sent again at the next pass)."""
        answer = self.kiosk.close(day)
        if isinstance(answer, PaygateError):
            self._channels.log(f"close {day} kiosk over http: {answer.code}")
        else:
            self._channels.log(
                f"close {day} kiosk over http {answer.outcome} {answer.cash_difference.minor}"
            )

    @property
    def unsent(self) -> bool:
        """Whether the kiosk still holds payments, closes or redemptions not answered."""
        return bool(self.kiosk.pending or self.kiosk.closes_due or self.redemptions)

    def stop(self) -> None:
        """Switch the kiosk off and stop the HTTP gateway."""
        self.kiosk.shut()
        self.gateway.stop()


def _form(result: NotifyResult) -> dict[str, str] | None:
    """A POS terminal's approved answer (``application/x-www-form-urlencoded``), or None."""
    if not result.ok:
        return None
    return dict(parse_qsl(result.body.decode("utf-8"), keep_blank_values=True))
