"""The demo: a small utility's month, end to end, on a fresh database, through every channel.

A few hundred accounts get two months of bills; some fall behind and are disconnected; their
customers pay through every channel (on time, late, partly, more than they owe, twice when an
answer was lost); payments that clear a disconnected account's arrears raise reconnection
orders, which a dispatcher sends to a simulated AMI head-end every ten minutes — through a
28-hour outage of that head-end, whose missed deadlines are recorded as breaches; one wallet
payment bounces and is reversed. The demo ends by sealing the journal and verifying it.

Every payment arrives as its channel sends it. The peers of :mod:`paygate.demo.peers` —
Alipay's and WeChat Pay's servers, the online gateway (after the utility created the payment
order), a kiosk registered in the device registry, a POS terminal whose MAC key is stored
encrypted under a key-encryption key, an agent bank (counter payments and its daily batch
file), customers redeeming recharge vouchers that were issued, printed and sold — sign native
messages with keys generated for this run, and paygate's channel adapters verify them and
post through the Gateway, whose business dates follow each channel's cut-off. On every day
of the story the POS terminal settles its batch at 23:00 and the kiosk closes at midnight,
its cash count once a 50-yuan note short; one message per channel comes from an impostor and
is refused without posting anything.

Deterministic: the same seed tells the same story and prints the same figures; only the keys,
and the nonces, order ids and PINs generated with them, differ between runs.
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from pydantic import SecretBytes

from paygate.channels.bank_agent import (
    BatchResult,
    post_batch_file,
)
from paygate.channels.base import ChannelAdapter, NotifyResult
from paygate.channels.kiosk import (
    KioskCloseResult,
    KioskMethod,
)
from paygate.channels.orders import new_order_id
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.demo.adapters import peer_adapters
from paygate.demo.peers import (
    AgentBank,
    AlipayServer,
    BatchLine,
    CardRetailer,
    Kiosk,
    Message,
    OnlineGateway,
    PosTerminal,
    RechargeCard,
    WechatPayServer,
    guessed_pin,
    new_rsa_key,
    redeem_request,
)
from paygate.devices import DeviceRegistry
from paygate.gateway import Gateway
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.ledger import VerifyReport, entry_count
from paygate.models import PaymentIntent, PayOutcome, Receipt
from paygate.money import Money
from paygate.outbox import CallbackSink, Dispatcher
from paygate.store.engine import Tx
from paygate.supply import OrderListing, OrderStatus, Severity, breach_counts, list_orders
from paygate.vouchers import VoucherService

__all__ = ["CHANNELS", "DemoSummary", "ForgedMessage", "run_demo"]

CHANNELS: Final = ("alipay", "wechatpay", "online", "kiosk", "pos", "bank_agent", "voucher")
"""The channels customers pay through in the demo, one adapter each."""

OUTAGE: Final = (
    datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
    datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
)
FORGERY_AT: Final = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
"""When the impostors send their messages: noon in Shanghai, mid-week."""
KIOSK_SHORTFALL: Final = Money(5_000, "CNY")
"""The cash missing at one kiosk count: a 50-yuan note."""
CARD_FACE_VALUES: Final = (5_000, 10_000, 20_000, 50_000)
"""Voucher face values in fen: 50, 100, 200 and 500 yuan."""

_ZONE: Final = ZoneInfo("Asia/Shanghai")
_CURRENCY: Final = "CNY"
_KIOSK_ID: Final = "K0001"
_POS_ID: Final = "HALL0001"
_APP: Final = "app:power-service"
"""Where customers redeem recharge vouchers: the utility's app (the attempt's source)."""

_Handler = Callable[[bytes, Mapping[str, str], Gateway], NotifyResult]
"""An adapter operation: ``handle_notify``, ``handle_pay``, ``handle_redeem`` …"""


def _same(message: Message) -> Message:
    """A message repeated unchanged."""
    return message


class SimulatedHeadEnd(HeadEnd):
    """An AMI head-end in the demo: accepts commands, confirms supply about 20 minutes later,
    and is unreachable during ``OUTAGE``."""

    name = "demo-ami"

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.sent: dict[int, datetime] = {}
        self.refused = 0

    def _up(self) -> None:
        if OUTAGE[0] <= self.clock.now() < OUTAGE[1]:
            self.refused += 1
            raise HeadEndUnavailable("connection refused (head-end outage)")

    def send(self, command: SupplyCommand) -> HeadEndResult:
        self._up()
        self.sent.setdefault(command.order_id, self.clock.now())
        return HeadEndResult(outcome=HeadEndOutcome.DISPATCHED, at=self.clock.now())

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        self._up()
        age = self.clock.now() - self.sent.get(command.order_id, self.clock.now())
        if age >= timedelta(minutes=20):
            return HeadEndResult(outcome=HeadEndOutcome.COMPLETED, at=self.clock.now())
        if age >= timedelta(minutes=5):
            return HeadEndResult(outcome=HeadEndOutcome.ACKNOWLEDGED, at=self.clock.now())
        return None


@dataclass(frozen=True)
class ForgedMessage:
    """A message from an impostor (right format, wrong key or PIN) and what paygate did."""

    channel: str
    operation: str
    status_code: int
    error_code: str | None
    posted: bool
    """Whether the ledger changed: a payment or an entry appeared (it must not)."""


@dataclass
class DemoSummary:
    """What the demo did, for printing."""

    accounts: int = 0
    bills: int = 0
    disconnected: int = 0
    payments: Counter[str] = field(default_factory=Counter)
    """Payments posted, by channel (replays not counted)."""
    amounts: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    """Messages (and batch file lines) each channel had refused."""
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    """How each channel was answered when paygate took its message: ``200 success`` …"""
    replays: int = 0
    late_fees: int = 0
    reconnection_orders: int = 0
    reconnected: int = 0
    reversals: int = 0
    batch: BatchResult | None = None
    forged: list[ForgedMessage] = field(default_factory=list)
    kiosk_closes: list[KioskCloseResult] = field(default_factory=list)
    pos_batches: int = 0
    pos_batches_matched: int = 0
    cards_sold: int = 0
    cards_sold_value: int = 0
    cards_redeemed: int = 0
    cards_redeemed_value: int = 0
    voucher_liability: Money = field(default_factory=lambda: Money.zero(_CURRENCY))
    verify: VerifyReport | None = None
    sealed: int = 0
    ledger: dict[str, Money] = field(default_factory=dict)
    step_minutes: dict[str, tuple[float, float]] = field(default_factory=dict)
    breaches: Counter[str] = field(default_factory=Counter)
    headend_refusals: int = 0
    events_delivered: int = 0


def run_demo(database_url: str, *, accounts: int = 300, seed: int = 2026) -> DemoSummary:
    """Run the demo against ``database_url`` (a fresh database) and return its summary."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible story, not a secret
    clock = FixedClock(datetime(2026, 10, 1, 1, 0, tzinfo=UTC))
    # The demo's database is a scratch file: with WAL, NORMAL keeps every commit atomic but
    # leaves the fsync to checkpoints, which makes the run several times faster on a busy disk.
    # PAYGATE_SQLITE_SYNCHRONOUS still decides when it is set.
    synchronous = None if "PAYGATE_SQLITE_SYNCHRONOUS" in os.environ else "NORMAL"
    settings = Settings.from_env(
        database_url=database_url, seal_every=500, sqlite_synchronous=synchronous
    )
    summary = DemoSummary()
    with Gateway.open(settings=settings, clock=clock) as gateway:
        channels = _Channels(gateway, clock, rng, summary)
        # The adapters' contexts live on the gateway's store and the voucher service on the
        # gateway itself, so the channels exist only once the gateway does; their cut-offs
        # join its settings here, before the first payment is dated.
        gateway.use_channels(channels.adapters)

        numbers = [f"31{n:08d}" for n in range(1, accounts + 1)]
        for n, account_no in enumerate(numbers):
            gateway.open_account(
                account_no,
                category="non_residential" if n % 10 == 0 else "residential",
                protected=n % 97 == 0,
                name=f"Customer {n + 1}",
            )
        summary.accounts = len(numbers)
        # The utility prints recharge vouchers and sells them to a retailer before the month.
        channels.issue_cards(per_face_value=accounts // 2 + 10)

        for period, due in (("2026-09", date(2026, 10, 15)), ("2026-10", date(2026, 11, 15))):
            for account_no in numbers:
                minor = rng.randrange(3_000, 60_000) * (10 if account_no.endswith("0") else 1)
                gateway.issue_bill(
                    account_no,
                    bill_no=f"{account_no}-{period}",
                    amount=Money(minor, _CURRENCY),
                    period=period,
                    due_date=due,
                )
                summary.bills += 1
            clock.set(datetime.combine(due, datetime.min.time(), UTC) - timedelta(days=2))
            if period == "2026-09":
                # Most customers pay the September bill; some do not.
                for account_no in numbers:
                    if rng.random() < 0.8:
                        channels.pay_what_is_owed(account_no)
                channels.end_of_day()

        # November 20: those still owing September are disconnected (protected ones are not).
        clock.set(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
        disconnected: list[str] = []
        for account_no in numbers:
            status = gateway.account_status(account_no)
            if any(b.period == "2026-09" and b.overdue for b in status.bills):
                if status.protected:
                    continue
                gateway.disconnect(account_no, "arrears over 30 days", actor="demo")
                disconnected.append(account_no)
        summary.disconnected = len(disconnected)

        # November 21-27: customers pay through every channel, at every hour; a dispatcher runs
        # every ten minutes and sends reconnection orders to the head-end. The POS terminal
        # settles its batch at the acquirer's 23:00 cut-off, the kiosk closes at midnight.
        headend = SimulatedHeadEnd(clock)
        delivered: list[object] = []
        dispatcher = Dispatcher(
            gateway,
            headends={headend.name: headend},
            sinks=[CallbackSink(delivered.append, name="billing")],
            default_headend=headend.name,
            poll_interval=timedelta(minutes=5),
            retry_base=timedelta(minutes=2),
            # No longer than one ten-minute round: the backoff's jitter (drawn from the system's
            # random source) then never decides which round retries an order, and the outage
            # plays out the same way on every run.
            retry_cap=timedelta(minutes=10),
            batch=200,
        )
        clock.set(datetime(2026, 11, 21, 0, 0, tzinfo=UTC))
        end = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
        while clock.now() < end:
            for account_no in numbers:
                if rng.random() < 0.12 / 144:
                    channels.pay_what_is_owed(account_no)
            if clock.now() == FORGERY_AT and disconnected:
                channels.forge(disconnected[0])
            channels.close_of_business()
            dispatcher.dispatch_once()
            clock.advance(timedelta(minutes=10))

        # The agent bank's daily file for November 27: its direct debits, one the customer's
        # account could not cover, and one line for an account that does not exist.
        channels.post_bank_file(date(2026, 11, 27), rng.sample(numbers, min(40, len(numbers))))

        # One wallet payment bounces and is reversed.
        bounced = next((r for r in channels.receipts if r.channel in ("alipay", "wechatpay")), None)
        if bounced is not None:
            gateway.reverse(bounced.payment_id, "wallet reported the payment as fraudulent")
            summary.reversals += 1

        # The rest of the morning: the dispatcher finishes what is under way; then the demo
        # stops, the kiosk closing the day so far and the POS terminal settling its batch.
        for _ in range(18):
            clock.advance(timedelta(minutes=10))
            dispatcher.dispatch_once()
        channels.settle_pos()
        channels.close_kiosk(clock.now().astimezone(_ZONE).date())

        summary.reconnection_orders = len(channels.orders)
        summary.headend_refusals = headend.refused
        summary.events_delivered = len(delivered)
        _order_figures(gateway, summary)
        channels.voucher_figures()

        summary.sealed = gateway.seal()
        summary.verify = gateway.verify()
        summary.ledger = gateway.ledger_balances()
    return summary


# ── the utility's side of the channels ───────────────────────────────────────────────────


@dataclass(frozen=True)
class _Delivery:
    """One message on its way to an adapter, and how its channel repeats it."""

    send: Callable[[Message], NotifyResult]
    message: Message
    resend: Callable[[Message], Message] | None
    """How the channel sends the message again when the answer is lost (None: it does not)."""
    answered: Callable[[Message, NotifyResult], None] | None = None
    """The peer reading paygate's answer (a device books what was approved)."""


class _Channels:
    """The seven adapters as paygate would run them, the peers that talk to them, and the
    bookkeeping of what each channel was answered."""

    def __init__(
        self, gateway: Gateway, clock: FixedClock, rng: random.Random, summary: DemoSummary
    ) -> None:
        self.gateway = gateway
        self.clock = clock
        self.rng = rng
        self.summary = summary
        self.receipts: list[Receipt] = []
        self.orders: list[int] = []
        self._short_counted = False
        store = gateway.store

        # The peers, each with keys generated for this run.
        self.alipay = AlipayServer("2021004100000001")
        self.wechatpay = WechatPayServer("1650000001", "wx5f2b1c4370ec43a9")
        self.online_gateway = OnlineGateway("898510148990001")
        self.kiosk = Kiosk(_KIOSK_ID, clock)
        self.pos_terminal = PosTerminal(_POS_ID, "898510148990002", clock)
        self.bank = AgentBank("ICBC", "PWR0451000123")
        self.retailer = CardRetailer("Hualian Store 12")

        # paygate's side: the database's nonce and order stores, the device registry (the POS
        # terminal's MAC key sealed under a key-encryption key made for this run), the voucher
        # service (with its own PIN key), and the kiosk and POS ledgers.
        devices = DeviceRegistry(store, clock, SecretBytes(secrets.token_bytes(32)))
        devices.add(
            self.kiosk.device_id,
            "kiosk",
            public_key_pem=self.kiosk.public_key_pem,
            label="service hall kiosk",
        )
        devices.add(
            self.pos_terminal.terminal_id,
            "pos",
            mac_key=self.pos_terminal.mac_key,
            label="service hall POS",
        )
        self.vouchers = VoucherService(gateway, SecretBytes(secrets.token_bytes(32)))
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
            currency=_CURRENCY,
        )
        self.alipay_adapter = adapters.alipay
        self.wechatpay_adapter = adapters.wechatpay
        self.online_adapter = adapters.online
        self.kiosk_adapter = adapters.kiosk
        self.pos_adapter = adapters.pos
        self.bank_adapter = adapters.bank
        self.prepaid_adapter = adapters.voucher

    @property
    def adapters(self) -> tuple[ChannelAdapter[Any], ...]:
        """Every adapter the demo's payments go through."""
        return (
            self.alipay_adapter,
            self.wechatpay_adapter,
            self.online_adapter,
            self.kiosk_adapter,
            self.pos_adapter,
            self.bank_adapter,
            self.prepaid_adapter,
        )

    # recharge vouchers

    def issue_cards(self, *, per_face_value: int) -> None:
        """Issue a batch per face value, print it (to memory), stock the retailer, activate."""
        for face in CARD_FACE_VALUES:
            batch_no = f"B-2026-10-{face // 100:03d}"
            printer_file = io.BytesIO()
            self.vouchers.issue_batch(
                batch_no, per_face_value, Money(face, _CURRENCY), date(2027, 12, 31), printer_file
            )
            self.retailer.stock(printer_file.getvalue())
            self.vouchers.activate(batch_no, retailer=self.retailer.name)

    def voucher_figures(self) -> None:
        """Cards sold and redeemed, and the liability the ledger holds for the rest."""
        report = self.vouchers.report()
        for batch in report.batches:
            sold = batch.activated + batch.redeemed
            self.summary.cards_sold += sold
            self.summary.cards_sold_value += sold * batch.face_value.minor
            self.summary.cards_redeemed += batch.redeemed
            self.summary.cards_redeemed_value += batch.redeemed * batch.face_value.minor
        balance = self.gateway.ledger_balances().get(f"voucher_liability:{_CURRENCY}")
        # A liability is a credit balance: what the utility owes shows as a negative sum.
        self.summary.voucher_liability = -balance if balance is not None else Money.zero(_CURRENCY)

    # payments

    def pay_what_is_owed(self, account_no: str) -> None:
        """A customer pays: most what they owe, some part of it, some a round sum above it."""
        status = self.gateway.account_status(account_no)
        owed = status.arrears.minor or status.outstanding.minor
        if owed <= 0:
            return
        roll = self.rng.random()
        if roll < 0.15:
            amount = max(100, owed // 2)
        elif roll < 0.3:
            amount = (owed // 10_000 + 1) * 10_000
        else:
            amount = owed
        channel = self.rng.choice(CHANNELS)
        # Drawn for every payment, so that the story does not depend on which channels retry.
        lost_answer = self.rng.random() < 0.05
        if channel == "voucher" and not self.retailer.in_stock:
            channel = "kiosk"
        delivery = self._delivery(channel, account_no, Money(amount, _CURRENCY))
        result = self._deliver(channel, delivery)
        if lost_answer and result.ok and delivery.resend is not None:
            # The channel never saw the answer and sends the payment again.
            again = self._deliver(channel, delivery, delivery.resend(delivery.message))
            self.summary.replays += int(again.receipt is not None and again.receipt.replayed)

    def _delivery(self, channel: str, account_no: str, amount: Money) -> _Delivery:
        now = self.clock.now()
        if channel == "alipay":
            message = self.alipay.trade_paid(
                out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
            )
            # Alipay posts the identical notification again until it reads "success".
            return _Delivery(self._sender(self.alipay_adapter.handle_notify), message, _same)
        if channel == "wechatpay":
            message = self.wechatpay.transaction_success(
                out_trade_no=new_order_id(now), account_no=account_no, amount=amount, paid_at=now
            )
            # WeChat Pay retries with the same body under a new timestamp and nonce.
            return _Delivery(
                self._sender(self.wechatpay_adapter.handle_notify),
                message,
                lambda m: self.wechatpay.signed(m.body, now=self.clock.now()),
            )
        if channel == "online":
            # Order first: the utility fixes account and amount before sending the customer on.
            order = self.online_adapter.create_order(account_no, amount, now=now)
            message = self.online_gateway.consumption_completed(order, paid_at=now)
            # The gateway repeats a notification it got no HTTP 200 for, unchanged.
            return _Delivery(self._sender(self.online_adapter.handle_notify), message, _same)
        if channel == "kiosk":
            method = self.rng.choice((KioskMethod.CASH, KioskMethod.CARD))
            message = self.kiosk.pay(account_no=account_no, amount=amount, method=method)
            return _Delivery(
                self._sender(self.kiosk_adapter.handle_pay),
                message,
                self.kiosk.resend,
                self.kiosk.answered,
            )
        if channel == "pos":
            message = self.pos_terminal.sale(account_no=account_no, amount=amount)
            # A terminal never re-sends a sale: its trace number is spent (docs/channels/pos.md).
            return _Delivery(
                self._sender(self.pos_adapter.handle_pay),
                message,
                None,
                self.pos_terminal.answered,
            )
        if channel == "bank_agent":
            message = self.bank.counter_payment(account_no=account_no, amount=amount, paid_at=now)
            # A bank repeats a message it heard no answer to, byte for byte.
            return _Delivery(self._sender(self.bank_adapter.handle_notify), message, _same)
        if channel == "voucher":
            card = self.retailer.sell(amount)
            assert card is not None, "the caller checked the retailer's stock"
            message = redeem_request(card, account_no, source=_APP)
            # The app sends the same request again; the same card and account replay.
            return _Delivery(self._sender(self.prepaid_adapter.handle_redeem), message, _same)
        raise ValueError(f"no channel {channel!r} in the demo")

    def _ledger_entries(self) -> int:
        """How many journal entries the ledger holds: a message that posted moved it."""
        return self.gateway.store.run(entry_count, write=False)

    def _sender(self, handle: _Handler) -> Callable[[Message], NotifyResult]:
        """How a message reaches an adapter operation: as the HTTP layer hands it over."""
        return lambda message: handle(message.body, message.headers, self.gateway)

    def _deliver(
        self, channel: str, delivery: _Delivery, message: Message | None = None
    ) -> NotifyResult:
        """Send one message and record what paygate answered and posted."""
        sent = message if message is not None else delivery.message
        result = delivery.send(sent)
        if delivery.answered is not None:
            delivery.answered(sent, result)
        if not result.ok:
            self.summary.refusals[channel] += 1
            return result
        self.summary.answers.setdefault(channel, Counter())[_answer_label(result)] += 1
        if result.receipt is not None and not result.receipt.replayed:
            self._posted(result.receipt)
        return result

    def _posted(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self.summary.payments[receipt.channel] += 1
        self.summary.amounts[receipt.channel] += receipt.amount.minor
        self.summary.late_fees += receipt.late_fee.minor
        if receipt.reconnection_order_id is not None:
            self.orders.append(receipt.reconnection_order_id)

    # the bank's daily file

    def post_bank_file(self, day: date, accounts: Iterable[str]) -> None:
        """The agent bank's batch file for ``day``, verified whole, then posted in chunks."""
        morning = datetime.combine(day, time(9, 0), _ZONE)
        lines = [
            BatchLine(
                account_no=account_no,
                amount=Money(self.rng.randrange(1_000, 20_000), _CURRENCY),
                paid_at=morning + timedelta(minutes=7 * n),
            )
            for n, account_no in enumerate(accounts)
        ]
        if lines:
            middle = len(lines) // 2
            lines[middle] = replace(lines[middle], result_code="3001", result_msg="余额不足")
        lines.append(
            BatchLine(account_no="3199999999", amount=Money(5_000, _CURRENCY), paid_at=morning)
        )
        data = self.bank.batch_file(day, lines)
        sink = _BatchRecorder(self.gateway)
        result = post_batch_file(self.bank_adapter, io.BytesIO(data), sink)
        self.summary.batch = result
        self.summary.refusals["bank_agent"] += len(result.refused)
        for outcome in sink.outcomes:
            if outcome.status == "posted" and outcome.receipt is not None:
                self._posted(outcome.receipt)

    # the end of a day

    def close_of_business(self) -> None:
        """At 23:00 in Shanghai the POS terminal settles its batch; at midnight the kiosk
        closes the day just ended; at any other time nothing happens."""
        local = self.clock.now().astimezone(_ZONE)
        if local.time() == time(23, 0):
            self.settle_pos()
        elif local.time() == time(0, 0):
            self.close_kiosk(local.date() - timedelta(days=1))

    def end_of_day(self) -> None:
        """Move to 23:00 and midnight in Shanghai: the POS batch settles, the kiosk closes."""
        local = self.clock.now().astimezone(_ZONE)
        evening = datetime.combine(local.date(), time(23, 0), _ZONE)
        self.clock.set(evening)
        self.close_of_business()
        self.clock.set(evening + timedelta(hours=1))
        self.close_of_business()

    def settle_pos(self) -> None:
        """The terminal's batch settlement: its totals against the ledger's."""
        message = self.pos_terminal.settle()
        result = self.pos_adapter.handle_daily_close(message.body, message.headers, self.gateway)
        self.pos_terminal.settled(result)
        if not result.ok:
            self.summary.refusals["pos"] += 1
            return
        answer = dict(parse_qsl(result.body.decode("ascii")))
        self.summary.pos_batches += 1
        self.summary.pos_batches_matched += answer.get("settle_result") == "match"

    def close_kiosk(self, day: date) -> None:
        """The kiosk's daily close of ``day``: cash counted against the ledger's cash.

        On the first day with at least 100 yuan in cash, the count comes up a 50-yuan note
        short, and the close says so.
        """
        cash = self.kiosk.takings(day, _CURRENCY).cash.amount
        counted = cash
        if not self._short_counted and cash.minor >= 2 * KIOSK_SHORTFALL.minor:
            counted = cash - KIOSK_SHORTFALL
            self._short_counted = True
        message = self.kiosk.close(day, counted_cash=counted)
        result = self.kiosk_adapter.handle_daily_close(message.body, message.headers, self.gateway)
        if not result.ok:
            self.summary.refusals["kiosk"] += 1
            return
        close = json.loads(result.body)["close"]
        self.summary.kiosk_closes.append(KioskCloseResult.model_validate(close))

    # impostors

    def forge(self, account_no: str) -> None:
        """One message per channel from an impostor who knows the channel's format and the
        identities paygate expects, but holds none of its keys (and guesses a card's PIN),
        each paying a disconnected account's arrears: every one must be refused and leave
        the ledger as it was."""
        now = self.clock.now()
        owed = self.gateway.account_status(account_no).arrears
        amount = owed if owed.minor > 0 else Money(100_000, _CURRENCY)
        impostor_rsa = new_rsa_key()
        wallet_order = new_order_id(now)
        forged: list[tuple[str, str, Callable[[Message], NotifyResult], Message]] = [
            (
                "alipay",
                "notify",
                self._sender(self.alipay_adapter.handle_notify),
                AlipayServer(self.alipay.app_id, key=impostor_rsa).trade_paid(
                    out_trade_no=wallet_order, account_no=account_no, amount=amount, paid_at=now
                ),
            ),
            (
                "wechatpay",
                "notify",
                self._sender(self.wechatpay_adapter.handle_notify),
                WechatPayServer(
                    self.wechatpay.mchid,
                    self.wechatpay.appid,
                    serial=self.wechatpay.serial,
                    key=impostor_rsa,
                ).transaction_success(
                    out_trade_no=wallet_order, account_no=account_no, amount=amount, paid_at=now
                ),
            ),
            (
                "online",
                "notify",
                self._sender(self.online_adapter.handle_notify),
                OnlineGateway(
                    self.online_gateway.merchant_id, key=impostor_rsa
                ).consumption_completed(
                    self.online_adapter.create_order(account_no, amount, now=now), paid_at=now
                ),
            ),
            (
                "kiosk",
                "pay",
                self._sender(self.kiosk_adapter.handle_pay),
                Kiosk(_KIOSK_ID, self.clock).pay(
                    account_no=account_no, amount=amount, method=KioskMethod.CASH
                ),
            ),
            (
                "pos",
                "sale",
                self._sender(self.pos_adapter.handle_pay),
                PosTerminal(_POS_ID, self.pos_terminal.merchant_id, self.clock).sale(
                    account_no=account_no, amount=amount
                ),
            ),
            (
                "bank_agent",
                "notify",
                self._sender(self.bank_adapter.handle_notify),
                AgentBank(self.bank.bank_code, self.bank.merchant_id).counter_payment(
                    account_no=account_no, amount=amount, paid_at=now
                ),
            ),
        ]
        # A card taken off the retailer's shelf, its scratch panel intact: the PIN is a guess.
        stolen = self.retailer.sell(amount)
        if stolen is not None:
            guess = RechargeCard(stolen.serial, guessed_pin(), stolen.face_value)
            forged.append(
                (
                    "voucher",
                    "redeem",
                    self._sender(self.prepaid_adapter.handle_redeem),
                    redeem_request(guess, account_no, source=_APP),
                )
            )
        for channel, operation, send, message in forged:
            before = self._ledger_entries()
            result = send(message)
            self.summary.forged.append(
                ForgedMessage(
                    channel=channel,
                    operation=operation,
                    status_code=result.status_code,
                    error_code=result.error_code,
                    posted=self._ledger_entries() != before,
                )
            )
            if not result.ok:
                self.summary.refusals[channel] += 1


def _answer_label(result: NotifyResult) -> str:
    """An answer as its channel reads it: the status, and the word the channel checks
    (``success`` in Alipay's text, ``result`` in a POS form, ``status`` in a kiosk's JSON)."""
    if not result.body:
        return str(result.status_code)
    content_type = result.content_type or ""
    if content_type.startswith("application/json"):
        answer = json.loads(result.body)
        word = answer["result"] if "result" in answer else answer["status"]
    elif content_type.startswith("application/x-www-form-urlencoded"):
        word = dict(parse_qsl(result.body.decode("ascii"))).get("result", "")
    else:
        word = result.body.decode("utf-8")
    return f"{result.status_code} {word}"


class _BatchRecorder:
    """The Gateway as a batch sink, keeping every outcome (the receipts carry late fees and
    reconnection orders, which the batch result does not)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.outcomes: list[PayOutcome] = []

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        outcomes = self._gateway.pay_many(intents)
        self.outcomes.extend(outcomes)
        return outcomes


def _order_figures(gateway: Gateway, summary: DemoSummary) -> None:
    """Median and worst minutes per step of the reconnection orders, and breaches by severity."""

    def read(tx: Tx) -> tuple[list[OrderListing], dict[Severity, int]]:
        return list_orders(tx, kind="reconnect"), breach_counts(tx)

    orders, breaches = gateway.store.run(read, write=False)
    steps: dict[str, list[float]] = {"dispatched": [], "acknowledged": [], "restored": []}
    for order in orders:
        for label, reached in (
            ("dispatched", order.dispatched_at),
            ("acknowledged", order.acknowledged_at),
            ("restored", order.completed_at),
        ):
            if reached is not None:
                steps[label].append((reached - order.created_at).total_seconds() / 60)
        summary.reconnected += order.status is OrderStatus.COMPLETED
    for label, minutes in steps.items():
        if minutes:
            minutes.sort()
            summary.step_minutes[label] = (minutes[len(minutes) // 2], minutes[-1])
    for severity, count in breaches.items():
        summary.breaches[severity.value] += count
