"""The channels' traffic: customers' payments as each channel's native signed message,
through paygate's adapters, with the faults real channels produce.

The peers are those of :mod:`paygate.demo.peers` (keys generated for the run); the adapters
are paygate's own, rebuilt on the fresh Gateway after a crash. What each channel *really*
took is kept here too, for the statements finance reconciles every morning
(:mod:`paygate.simulation.finance`).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from pydantic import SecretBytes

from paygate.channels.bank_agent import (
    post_batch_file,
)
from paygate.channels.base import ChannelAdapter, NotifyResult, PaymentSink
from paygate.channels.kiosk import KioskMethod
from paygate.channels.orders import new_order_id
from paygate.clock import FixedClock, business_date
from paygate.config import Settings
from paygate.demo.adapters import peer_adapters
from paygate.demo.peers import (
    AGENT_BANK_LAYOUT,
    AgentBank,
    AlipayServer,
    BatchLine,
    CardRetailer,
    Kiosk,
    Message,
    OnlineGateway,
    PosTerminal,
    WechatPayServer,
    new_rsa_key,
    redeem_request,
)
from paygate.devices import DeviceRegistry
from paygate.errors import PaygateError
from paygate.feeds import PaymentItem
from paygate.gateway import Gateway
from paygate.models import AccountStatus, PaymentIntent, PayOutcome, Receipt
from paygate.money import Money
from paygate.simulation.faults import FaultProfile
from paygate.simulation.group import Crash, post_together
from paygate.simulation.http_share import HttpShare
from paygate.simulation.tally import Tally
from paygate.simulation.world import CURRENCY, ZONE, Randoms
from paygate.vouchers import VoucherService

__all__ = ["CHANNELS", "Channels", "Settled", "close_of_day", "kiosk_day"]

CHANNELS: Final = ("alipay", "wechatpay", "online", "kiosk", "pos", "bank_agent", "voucher")
"""Where customers pay: the six channels (the wallets are two adapters of one channel)."""
STATEMENT_CHANNELS: Final = ("alipay", "wechatpay", "online", "bank_agent")
"""Channels that send a settlement statement; the kiosk and POS close their day themselves."""
GROUPED: Final = ("alipay", "wechatpay", "online", "bank_agent")
"""Channels whose notifications are HTTP requests to ``paygate serve``: those arriving in the
same step are group-committed (:mod:`paygate.simulation.group`). The kiosk and the POS
terminal are one device each and send one request at a time; a voucher redemption is a
transaction of its own."""
CARD_FACES: Final = (5_000, 10_000, 20_000, 50_000)

_Send = Callable[[Message], NotifyResult]


@dataclass(frozen=True)
class Settled:
    """One payment a channel took from a customer: what its statement lists."""

    channel: str
    txn_id: str
    account_no: str
    amount: Money
    paid_at: datetime
    business_date: date


@dataclass
class _Pending:
    """A message on its way: delivered at ``due`` (late, stored by an offline kiosk, or a
    retry after the answer was lost)."""

    due: datetime
    seq: int
    channel: str
    account_no: str
    send: _Send
    message: Message
    resend: Callable[[Message], Message] | None
    answered: Callable[[Message, NotifyResult], None] | None
    fault: str
    amount: Money
    paid_at: datetime


class Channels:
    """The peers (created once, keys for the run) and paygate's adapters (per Gateway)."""

    def __init__(
        self,
        clock: FixedClock,
        randoms: Randoms,
        faults: FaultProfile,
        log: Callable[[str], None],
        crash: Callable[[str], None],
    ) -> None:
        self.clock = clock
        self.faults = faults
        self._rng = randoms("payments")
        self._late = randoms("late-notify")
        self._dup = randoms("duplicate-notify")
        self._lost = randoms("lost-notify")
        self._crash = randoms("gateway-crash")
        self.kiosk_rng = randoms("kiosk-offline")
        self._bank_rng = randoms("bank-files")
        self.forge_rng = randoms("forgery")
        self._rev_rng = randoms("reversals")
        self._void_rng = randoms("pos-voids")
        self.log = log
        self._crash_hook = crash
        self.tally = Tally()
        self.alipay = AlipayServer("2021004100000001")
        self.wechatpay = WechatPayServer("1650000001", "wx5f2b1c4370ec43a9")
        self.online_gateway = OnlineGateway("898510148990001")
        self.kiosk = Kiosk("K0001", clock)
        self.pos_terminal = PosTerminal("HALL0001", "898510148990002", clock)
        self.bank = AgentBank("ICBC", "PWR0451000123")
        self.retailer = CardRetailer("Hualian Store 12")
        self.impostor = new_rsa_key()
        self._device_key = SecretBytes(secrets.token_bytes(32))
        self._pin_key = SecretBytes(secrets.token_bytes(32))
        self.pending: list[_Pending] = []
        self._seq = 0
        self.acknowledged: dict[tuple[str, str], int] = {}
        """(channel, channel transaction id) → payment id, for every payment paygate
        acknowledged to its channel."""
        self.new_acknowledged: list[tuple[str, str, int]] = []
        self.settled: list[Settled] = []
        """Every payment a statement channel took, in the order it took them."""
        self.direct_debits: list[BatchLine] = []
        self.kiosk_offline_until: datetime | None = None
        self.gateway: Gateway | None = None
        self.to_reverse: list[tuple[datetime, Receipt | PaymentItem]] = []
        self.over_http: HttpShare | None = None
        """The share of the traffic sent over real HTTP (``use_http``)."""
        self._http_rng = randoms("http")
        self._refused: set[tuple[str, str, datetime, int]] = set()
        self.arriving: list[tuple[_Pending, Message]] = []
        """Notifications arrived in this step, waiting to be handled together
        (:meth:`deliver_arrived`)."""

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, gateway: Gateway, *, first: bool) -> None:
        """Build paygate's adapters on ``gateway`` (a fresh one after a crash)."""
        self.gateway = gateway
        clock = self.clock
        store = gateway.store
        devices = DeviceRegistry(store, clock, self._device_key)
        if first:
            devices.add(self.kiosk.device_id, "kiosk", public_key_pem=self.kiosk.public_key_pem)
            devices.add(self.pos_terminal.terminal_id, "pos", mac_key=self.pos_terminal.mac_key)
        self.vouchers = VoucherService(gateway, self._pin_key)
        adapters = peer_adapters(
            alipay=self.alipay,
            wechatpay=self.wechatpay,
            online_gateway=self.online_gateway,
            pos_terminal=self.pos_terminal,
            bank=self.bank,
            store=store,
            clock=clock,
            devices=devices,
            vouchers=self.vouchers,
            currency=CURRENCY,
        )
        self.alipay_adapter = adapters.alipay
        self.wechatpay_adapter = adapters.wechatpay
        self.online_adapter = adapters.online
        self.kiosk_adapter = adapters.kiosk
        self.pos_adapter = adapters.pos
        self.bank_adapter = adapters.bank
        self.voucher_adapter = adapters.voucher
        gateway.use_channels(self.adapters)

    @property
    def adapters(self) -> tuple[ChannelAdapter[Any], ...]:
        """Every adapter the simulation's payments go through."""
        return (
            self.alipay_adapter,
            self.wechatpay_adapter,
            self.online_adapter,
            self.kiosk_adapter,
            self.pos_adapter,
            self.bank_adapter,
            self.voucher_adapter,
        )

    def _gw(self) -> Gateway:
        assert self.gateway is not None, "attach() first"
        return self.gateway

    def issue_cards(self, per_face_value: int, batch_tag: str) -> None:
        """Print a batch of recharge vouchers per face value and stock the retailer."""
        for face in CARD_FACES:
            batch_no = f"S-{batch_tag}-{face // 100:03d}"
            printer_file = io.BytesIO()
            self.vouchers.issue_batch(
                batch_no, per_face_value, Money(face, CURRENCY), date(2027, 12, 31), printer_file
            )
            self.retailer.stock(printer_file.getvalue())
            self.vouchers.activate(batch_no, retailer=self.retailer.name)

    def use_http(self, settings: Settings, share: float, workdir: Path) -> None:
        """Send ``share`` of the traffic over real HTTP, through an HTTP gateway on
        ``settings``'s database and kiosk K0002 (its store in ``workdir``):
        :mod:`paygate.simulation.http_share`."""
        self.over_http = HttpShare.start(
            self, settings, share, workdir, rng=self._http_rng, crash_rng=self._crash
        )

    def kiosk_offline(self) -> bool:
        """Whether the kiosks' link is down now (an offline spell)."""
        until = self.kiosk_offline_until
        return until is not None and self.clock.now() < until

    # -- payments --------------------------------------------------------------------------

    def pay(
        self, account_no: str, channel: str, *, prepaid: bool, status: AccountStatus | None = None
    ) -> None:
        """The holder of ``account_no`` pays through ``channel``: usually what is owed (as
        ``status`` says, read now if not given), now and then part of it or a round sum
        above it."""
        if status is None:
            status = self._gw().account_status(account_no)
        # A prepaid customer tops up what the meter asks for, the whole balance: supply comes
        # back only once the account owes nothing at all.
        owed = max(status.balance.minor, 0) if prepaid else 0
        owed = owed or status.arrears.minor or status.outstanding.minor
        if owed <= 0:
            if not prepaid:
                return
            owed = 10_000
        roll = self._rng.random()
        amount = owed
        if roll < 0.1:
            amount = max(100, owed // 2)
        elif roll < 0.25:
            amount = (owed // 10_000 + 1) * 10_000
        if channel == "voucher" and not self.retailer.in_stock:
            channel = "kiosk"
        if channel == "bank_agent" and self._rng.random() < 0.5:
            # A direct debit: it comes in the bank's file tomorrow morning.
            self.direct_debits.append(
                BatchLine(
                    account_no=account_no, amount=Money(amount, CURRENCY), paid_at=self.clock.now()
                )
            )
            self.log(f"debit {account_no} {amount}")
            return
        self._send_new(channel, account_no, Money(amount, CURRENCY))

    def _send_new(self, channel: str, account_no: str, amount: Money) -> None:
        now = self.clock.now()
        over_http = self.over_http
        if channel in ("kiosk", "voucher") and over_http is not None and over_http.chosen():
            if channel == "kiosk":
                method = KioskMethod.CASH if self._rng.random() < 0.5 else KioskMethod.CARD
                over_http.pay_at_kiosk(account_no, amount, method)
            else:
                self._seq += 1
                over_http.redeem_at_kiosk(account_no, amount, f"redeem-{self._seq:09d}")
            return
        send, message, resend, answered = self._message(channel, account_no, amount)
        self.log(f"pay {channel} {account_no} {amount.minor}")
        if (
            channel in ("alipay", "wechatpay", "online")
            and self._lost.random() < self.faults.lost_notify
        ):
            # The channel took the money; its notification never reaches paygate.
            self.tally.faults["lost_notify"] += 1
            self._settle_only(channel, account_no, amount, now, "LOST")
            return
        pending = _Pending(
            now, 0, channel, account_no, send, message, resend, answered, "", amount, now
        )
        if (
            channel == "kiosk"
            and self.kiosk_offline_until is not None
            and now < self.kiosk_offline_until
        ):
            self.tally.faults["kiosk_offline"] += 1
            self._hold(replace(pending, due=self.kiosk_offline_until, fault="kiosk_offline"))
            return
        if resend is not None and self._late.random() < self.faults.late_notify:
            self.tally.faults["late_notify"] += 1
            delay = timedelta(minutes=self._late.randrange(20, 6 * 60))
            self._hold(replace(pending, due=now + delay, fault="late_notify"))
            return
        if _grouped(pending):
            self.arriving.append((pending, message))
            return
        result = self._deliver(pending, message)
        if (
            resend is not None
            and result is not None
            and self._dup.random() < self.faults.duplicate_notify
        ):
            self.tally.faults["duplicate_notify"] += 1
            self._deliver(pending, resend(message))
        if (
            channel == "pos"
            and result is not None
            and result.ok
            and self._void_rng.random() < self.faults.pos_void
        ):
            _void_sale(self, pending, message)

    def _hold(self, pending: _Pending) -> None:
        self._seq += 1
        pending.seq = self._seq
        self.pending.append(pending)

    def deliver_due(self) -> None:
        """Deliver held messages that are due: late notifies (some out of order) and what
        an offline kiosk stored, forwarded once its link is back."""
        now = self.clock.now()
        due = [p for p in self.pending if p.due <= now]
        if not due:
            return
        self.pending = [p for p in self.pending if p.due > now]
        due.sort(key=lambda p: (p.due, p.seq))
        if len(due) > 1 and self._late.random() < self.faults.out_of_order:
            self.tally.faults["out_of_order"] += 1
            self._late.shuffle(due)
        for pending in due:
            message = pending.message if pending.resend is None else pending.resend(pending.message)
            if _grouped(pending):
                self.arriving.append((pending, message))
            else:
                self._deliver(pending, message)

    def deliver_arrived(self) -> None:
        """Handle the notifications that arrived in this step together, their payments
        group-committed as ``paygate serve`` commits concurrent requests. A channel that heard
        its answer lost sends the message again; the copies arrive together after the answers.
        With the profile's chance per message, the gateway dies with the group in flight,
        before or after its commit: every message without an answer is sent again a step
        later, to the restarted gateway."""
        while self.arriving:
            group, self.arriving = self.arriving, []
            crash: Crash | None = None
            for _ in group:
                if self._crash.random() < self.faults.gateway_crash and crash is None:
                    before = self._crash.random() < 0.5
                    crash = Crash.BEFORE_COMMIT if before else Crash.AFTER_COMMIT
            results = post_together(self._gw(), [_job(p, m) for p, m in group], crash)
            if crash is not None:
                self.tally.faults["gateway_crash"] += 1
                self.log(f"crash {crash.value}")
                self._crash_hook(crash.value)
            for (pending, message), result in zip(group, results, strict=True):
                if result is None:
                    self._hold(
                        replace(
                            pending,
                            due=self.clock.now() + timedelta(minutes=10),
                            fault="gateway_crash",
                        )
                    )
                    continue
                self._answered(pending, result)
                if pending.resend is not None and self._dup.random() < self.faults.duplicate_notify:
                    self.tally.faults["duplicate_notify"] += 1
                    self.arriving.append((pending, pending.resend(message)))

    def _deliver(self, pending: _Pending, message: Message) -> NotifyResult | None:
        """Hand ``message`` to its adapter. With the profile's chance, the gateway dies while
        handling it, before or after its transaction committed: the channel heard no answer
        and sends the message again a step later, to the restarted gateway."""
        crash = self._crash.random() < self.faults.gateway_crash
        before = crash and self._crash.random() < 0.5
        if before:
            _gateway_crashed(self, pending, "gateway, before posting")
            return None
        result = pending.send(message)
        if pending.answered is not None and not crash:
            pending.answered(message, result)
        if crash:
            _gateway_crashed(self, pending, "gateway, after posting, before answering")
            return None
        self._answered(pending, result)
        return result

    def _answered(self, pending: _Pending, result: NotifyResult) -> None:
        """Paygate answered ``pending``'s channel with ``result``."""
        self._record(pending.channel, result)
        key = (pending.channel, pending.account_no, pending.paid_at, pending.amount.minor)
        if not result.ok and pending.channel in STATEMENT_CHANNELS and key not in self._refused:
            # The channel took the customer's money whatever paygate answered (a notification
            # too late for its order, say): it is on the channel's statement all the same.
            self._refused.add(key)
            self._settle_only(
                pending.channel, pending.account_no, pending.amount, pending.paid_at, "REFUSED"
            )

    def _record(self, channel: str, result: NotifyResult) -> None:
        if not result.ok:
            self.tally.refused_genuine[channel] += 1
            self.log(f"refused {channel} {result.status_code} {result.error_code}")
            return
        receipt = result.receipt
        if receipt is None:
            return
        if receipt.replayed:
            self.tally.replays += 1
            if (receipt.channel, receipt.channel_txn_id) in self.acknowledged:
                return
            # Posted before the gateway died unanswered: this replay is the first answer the
            # channel hears, its acknowledgement (checked posted once, on its statement).
        self._posted(receipt)

    def _acknowledge(
        self, channel: str, channel_txn_id: str, payment_id: int, account_no: str, amount: Money
    ) -> None:
        """Paygate acknowledged payment ``payment_id`` to its channel."""
        self.acknowledged[(channel, channel_txn_id)] = payment_id
        self.new_acknowledged.append((channel, channel_txn_id, payment_id))
        self.tally.payments[channel] += 1
        self.tally.amounts[channel] += amount.minor
        self.log(f"posted {channel} {account_no} {amount.minor}")

    def _posted(self, receipt: Receipt | PaymentItem) -> None:
        self._acknowledge(
            receipt.channel,
            receipt.channel_txn_id,
            receipt.payment_id,
            receipt.account_no,
            receipt.amount,
        )
        if receipt.channel in STATEMENT_CHANNELS:
            self.settled.append(
                Settled(
                    receipt.channel,
                    receipt.channel_txn_id,
                    receipt.account_no,
                    receipt.amount,
                    receipt.paid_at,
                    receipt.business_date,
                )
            )
            if (
                receipt.channel in ("alipay", "wechatpay")
                and self._rev_rng.random() < self.faults.reversal
            ):
                self.to_reverse.append(
                    (self.clock.now() + timedelta(hours=self._rev_rng.randrange(1, 12)), receipt)
                )

    def _settle_only(
        self, channel: str, account_no: str, amount: Money, at: datetime, tag: str
    ) -> None:
        self._seq += 1
        day = business_date(at, str(ZONE), self._gw().settings.cutoff(channel))
        self.settled.append(Settled(channel, f"{tag}{self._seq:09d}", account_no, amount, at, day))

    def _message(
        self, channel: str, account_no: str, amount: Money
    ) -> tuple[
        _Send,
        Message,
        Callable[[Message], Message] | None,
        Callable[[Message, NotifyResult], None] | None,
    ]:
        now = self.clock.now()

        def same(message: Message) -> Message:
            return message

        if channel == "alipay":
            message = self.alipay.trade_paid(
                out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
            )
            send = self._sender("alipay_adapter", "handle_notify")
            return _over_http(self, channel, account_no, send), message, same, None
        if channel == "wechatpay":
            message = self.wechatpay.transaction_success(
                out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
            )
            return (
                _over_http(
                    self, channel, account_no, self._sender("wechatpay_adapter", "handle_notify")
                ),
                message,
                lambda m: self.wechatpay.signed(m.body, now=self.clock.now()),
                None,
            )
        if channel == "online":
            order = self.online_adapter.create_order(account_no, amount, now=now)
            message = self.online_gateway.consumption_completed(order, paid_at=now)
            send = self._sender("online_adapter", "handle_notify")
            return _over_http(self, channel, account_no, send), message, same, None
        if channel == "kiosk":
            method = KioskMethod.CASH if self._rng.random() < 0.5 else KioskMethod.CARD
            message = self.kiosk.pay(account_no=account_no, amount=amount, method=method)
            return (
                self._sender("kiosk_adapter", "handle_pay"),
                message,
                self.kiosk.resend,
                self.kiosk.answered,
            )
        if channel == "pos":
            message = self.pos_terminal.sale(account_no=account_no, amount=amount)
            over_http = self.over_http
            if over_http is not None and over_http.chosen():
                return over_http.pos_sender(), message, None, over_http.pos_answered
            return (
                self._sender("pos_adapter", "handle_pay"),
                message,
                None,
                self.pos_terminal.answered,
            )
        if channel == "bank_agent":
            message = self.bank.counter_payment(account_no=account_no, amount=amount, paid_at=now)
            send = self._sender("bank_adapter", "handle_notify")
            return _over_http(self, channel, account_no, send), message, same, None
        if channel == "voucher":
            card = self.retailer.sell(amount)
            assert card is not None, "the caller checked the retailer's stock"
            message = redeem_request(card, account_no, source="app:power-service")
            return self._sender("voucher_adapter", "handle_redeem"), message, same, None
        raise ValueError(f"no channel {channel!r}")

    def _sender(self, adapter: str, operation: str) -> _ToAdapter:
        """How a message reaches an adapter operation, as the HTTP layer hands it over."""
        return _ToAdapter(self, adapter, operation)

    # -- the channels' own days ------------------------------------------------------------

    def reverse_due(self) -> None:
        """Reverse the wallet payments reported fraudulent by now."""
        now = self.clock.now()
        due = [item for item in self.to_reverse if item[0] <= now]
        self.to_reverse = [item for item in self.to_reverse if item[0] > now]
        for _, receipt in due:
            self._gw().reverse(receipt.payment_id, "wallet reported the payment as fraudulent")
            self.tally.reversals += 1
            self.log(f"reversed {receipt.channel} {receipt.account_no}")

    def bank_file(self, day: date) -> None:
        """The agent bank's file of yesterday's direct debits; now and then with a wrong
        trailer, which paygate must refuse whole, and the bank sends again corrected."""
        lines, self.direct_debits = self.direct_debits, []
        if not lines:
            return
        data = self.bank.batch_file(day, lines)
        if self._bank_rng.random() < self.faults.bad_trailer:
            self.tally.faults["bad_trailer"] += 1
            self.tally.bank_files_refused += self._post_file(
                _bad_trailer(data), expect_refusal=True
            )
        self.tally.bank_files += 1
        self._post_file(data, expect_refusal=False)

    def _post_file(self, data: bytes, *, expect_refusal: bool) -> int:
        sink = _Recorder(self._gw())
        try:
            result = post_batch_file(self.bank_adapter, io.BytesIO(data), sink)
        except PaygateError as exc:
            self.log(f"bank file refused: {exc.code}")
            if not expect_refusal:
                self.tally.refused_genuine["bank_agent"] += 1
            return 1
        if expect_refusal:
            raise AssertionError("a bank file with a wrong trailer was accepted")
        for outcome in sink.outcomes:
            if outcome.receipt is not None and not outcome.receipt.replayed:
                self._posted(outcome.receipt)
        self.tally.refused_genuine["bank_agent"] += len(result.refused)
        return 0


@dataclass(frozen=True)
class _ToAdapter:
    """A message handed to an adapter operation, as the HTTP layer hands it over: the adapter
    is looked up when the message is sent, so that a message held over a crash reaches the
    restarted gateway. ``sink`` is where the adapter posts (the Gateway, or a group)."""

    channels: Channels
    adapter: str
    operation: str

    def __call__(self, message: Message, sink: PaymentSink | None = None) -> NotifyResult:
        handle = getattr(getattr(self.channels, self.adapter), self.operation)
        target = sink if sink is not None else self.channels._gw()
        result: NotifyResult = handle(message.body, message.headers, target)
        return result


def _void_sale(self: Channels, pending: _Pending, sale: Message) -> None:
    """The cashier voids the sale just approved (the customer asks to pay with another
    card) through the same way the sale went, and keys it again."""
    result = _send_void(self, pending, sale)
    self.tally.faults["pos_void"] += 1
    self.tally.pos_voided += self.pos_terminal.voided(result[0], result[1])
    self.log(f"void pos {pending.account_no} {pending.amount.minor} {result[1].status_code}")
    self._send_new("pos", pending.account_no, pending.amount)


def _void_unanswered(self: Channels, pending: _Pending) -> None:
    """A POS sale that got no answer: the terminal voids it with its next trace number
    (docs/channels/pos.md, *A lost answer*), and the customer's card is keyed again. paygate
    reverses the sale if it was posted (the batch then holds the sale and its void) or
    answers ``unknown_payment`` if it never was (the batch holds neither)."""
    void, result = _send_void(self, pending, pending.message)
    if result.ok:
        self.pos_terminal.approved(pending.amount)
        self.pos_terminal.voided(void, result)
        self.tally.pos_unanswered_voided += 1
    self.log(
        f"void pos unanswered {pending.account_no} {pending.amount.minor} {result.status_code}"
    )
    self._send_new("pos", pending.account_no, pending.amount)


def _send_void(self: Channels, pending: _Pending, sale: Message) -> tuple[Message, NotifyResult]:
    """The void of ``sale``, sent the way the sale went: over HTTP or to the adapter."""
    void = self.pos_terminal.void(sale)
    over_http = self.over_http
    if over_http is not None and not isinstance(pending.send, _ToAdapter):
        return void, over_http.gateway.post("/v1/pos/void", void.body, void.headers)
    return void, self.pos_adapter.handle_void(void.body, void.headers, self._gw())


def _over_http(self: Channels, channel: str, account_no: str, in_process: _Send) -> _Send:
    """The HTTP share of a notifying channel's messages goes to the HTTP gateway; the
    rest to the adapter in process."""
    over_http = self.over_http
    if over_http is None or not over_http.chosen():
        return in_process
    return over_http.notify_sender(channel, account_no)


def _gateway_crashed(self: Channels, pending: _Pending, where: str) -> None:
    """The gateway died handling ``pending``: restarted, and the channel sends it again."""
    self.tally.faults["gateway_crash"] += 1
    if self.over_http is not None and not isinstance(pending.send, _ToAdapter):
        # The message went over HTTP: the HTTP gateway is the process that died.
        self.log(f"crash http {where}")
        self.over_http.gateway.restart()
    else:
        self.log(f"crash {where}")
        self._crash_hook(where)
    if pending.resend is not None:
        self._hold(
            replace(pending, due=self.clock.now() + timedelta(minutes=10), fault="gateway_crash")
        )
    elif pending.channel == "pos":
        _void_unanswered(self, pending)


def _grouped(pending: _Pending) -> bool:
    """Whether ``pending`` is a notification to an adapter in process that ``paygate serve``
    would group-commit (not one sent over real HTTP, which the HTTP gateway answers)."""
    return pending.channel in GROUPED and isinstance(pending.send, _ToAdapter)


def _job(pending: _Pending, message: Message) -> Callable[[PaymentSink], NotifyResult]:
    send = pending.send
    assert isinstance(send, _ToAdapter)

    def job(sink: PaymentSink) -> NotifyResult:
        return send(message, sink)

    return job


class _Recorder:
    """The Gateway as a batch sink, keeping every outcome."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.outcomes: list[PayOutcome] = []

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post through the Gateway and keep the outcomes."""
        outcomes = self._gateway.pay_many(intents)
        self.outcomes.extend(outcomes)
        return outcomes


def _bad_trailer(data: bytes) -> bytes:
    """The same file with its trailer's count one too high."""
    layout = AGENT_BANK_LAYOUT
    lines = data.decode(layout.encoding).split("\r\n")
    trailer = lines[-2].split(layout.delimiter)
    column = layout.trailer["count"] - 1
    trailer[column] = str(int(trailer[column]) + 1)
    lines[-2] = layout.delimiter.join(trailer)
    return "\r\n".join(lines).encode(layout.encoding)


# -- the terminals' own days (functions: the Channels class holds the messages) --------------


def kiosk_day(self: Channels) -> None:
    """Once a day, perhaps: the kiosk loses its link for a spell."""
    if self.kiosk_rng.random() < self.faults.kiosk_offline_per_day:
        start = self.clock.now() + timedelta(minutes=self.kiosk_rng.randrange(0, 20 * 60))
        length = timedelta(
            minutes=self.kiosk_rng.randrange(10, self.faults.kiosk_offline_minutes + 1)
        )
        self.kiosk_offline_until = start + length
        self.log(f"kiosk offline until {self.kiosk_offline_until.isoformat()}")


def close_of_day(self: Channels, day: date) -> None:
    """23:00: the POS terminal settles its batch; the kiosk closes ``day``."""
    message = self.pos_terminal.settle()
    result = self.pos_adapter.handle_daily_close(message.body, message.headers, self._gw())
    self.pos_terminal.settled(result)
    if b"settle_result=mismatch" in result.body:
        self.tally.pos_mismatched += 1
    cash = self.kiosk.takings(day, CURRENCY).cash.amount
    close = self.kiosk.close(day, counted_cash=cash)
    answer = self.kiosk_adapter.handle_daily_close(close.body, close.headers, self._gw())
    self.log(f"close {day} pos {result.status_code} kiosk {answer.status_code}")
    if self.over_http is not None:
        self.over_http.close(day)
