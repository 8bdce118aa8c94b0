"""The kiosk that reaches paygate over HTTP, through paygate's own kiosk client.

In production a kiosk runs :class:`paygate.client.KioskClient`: each payment is written to
the kiosk's own store before it is sent, posted to ``POST /v1/payments`` with its transaction
id as the idempotency key, and kept and forwarded, oldest first, while the gateway cannot be
reached. The simulation's HTTP kiosk is that client, talking to the simulation's HTTP gateway
(:class:`~paygate.simulation.http.HttpGateway`) over a simulated link (:class:`Link`):

* during the kiosks' offline spells the link refuses connections: the payment is stored and
  a receipt marked "pending confirmation" printed;
* with the profile's ``gateway_crash`` chance per request, the HTTP gateway dies with the
  request in flight, before its transaction commits or after it, before answering: the kiosk
  hears no answer and keeps the payment pending; the gateway is started again.

Two things of the client are set for a replayable run. Its background forwarder would pass
every few seconds of the machine's time; it is given an interval longer than any run, and
the simulation plays it instead, a pass each step while the link is known down
(:meth:`HttpKiosk.forward`). And the client makes one attempt per request (its own retries
wait a random, machine-timed while): a retry is the next pass, under the same key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paygate.api.schemas import VoucherRedemption
from paygate.channels.kiosk import KioskCloseResult, KioskMethod, KioskTotals, MethodTotal
from paygate.client import KioskClient, PaygateClient
from paygate.client.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PaygateClientError,
)
from paygate.client.kiosk import PaymentState, StoredPayment
from paygate.clock import Clock
from paygate.demo.peers import RechargeCard
from paygate.devices import ed25519_pem
from paygate.money import Money
from paygate.simulation.group import Crash
from paygate.simulation.http import HttpGateway

__all__ = ["HttpKiosk", "KioskOutcomes", "Link", "refused_for_good"]

DEVICE_ID: Final = "K0002"
"""The HTTP kiosk's device id (the in-process kiosk is K0001)."""
_NEVER: Final = 10.0**6
"""The background forwarder's interval, in the machine's seconds: longer than any run."""
_TIMEOUT: Final = 120.0
_REFUSED: Final = (InvalidRequestError, NotFoundError, ConflictError)
"""The client's errors for a request refused for good (not a gateway that did not answer)."""


def refused_for_good(error: PaygateClientError) -> bool:
    """Whether ``error`` is a refusal of the request itself (sending it again cannot help)."""
    return isinstance(error, _REFUSED)


class Link(httpx.BaseTransport):
    """The kiosk's network to the HTTP gateway: down while ``offline()``; the gateway dying
    with a request when ``crash()`` says so (``died`` is then told, and starts it again)."""

    def __init__(
        self,
        offline: Callable[[], bool],
        crash: Callable[[], Crash | None],
        died: Callable[[Crash], None],
    ) -> None:
        self._offline = offline
        self._crash = crash
        self._died = died
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the link, as its state and the gateway's fate say."""
        if self._offline():
            raise httpx.ConnectError("the kiosk's link is down", request=request)
        crash = self._crash()
        if crash is Crash.BEFORE_COMMIT:
            self._lost(crash)
            raise httpx.RemoteProtocolError("the gateway died before answering", request=request)
        response = self._inner.handle_request(request)
        if crash is Crash.AFTER_COMMIT:
            response.read()
            response.close()
            self._lost(crash)
            raise httpx.RemoteProtocolError("the gateway died before answering", request=request)
        return response

    def _lost(self, crash: Crash) -> None:
        # The dead process's connections are gone with it: a fresh pool for the new one.
        self._inner.close()
        self._died(crash)
        self._inner = httpx.HTTPTransport()

    def close(self) -> None:
        """Close the connections."""
        self._inner.close()


@dataclass(frozen=True)
class KioskOutcomes:
    """What became of the kiosk's payments since it was last asked, oldest first."""

    confirmed: list[StoredPayment]
    refused: list[StoredPayment]


class HttpKiosk:
    """Kiosk K0002: paygate's :class:`~paygate.client.KioskClient` over a :class:`Link`, its
    store a SQLite file in ``workdir``."""

    def __init__(
        self,
        gateway: HttpGateway,
        clock: Clock,
        workdir: Path,
        *,
        currency: str,
        timezone: str,
        offline: Callable[[], bool],
        crash: Callable[[], Crash | None],
        died: Callable[[Crash], None],
    ) -> None:
        self.device_id = DEVICE_ID
        self._key = Ed25519PrivateKey.generate()
        self._currency = currency
        self.link = Link(offline, crash, died)
        self._client = PaygateClient(
            gateway.base_url,
            device_id=DEVICE_ID,
            private_key=self._key,
            clock=clock,
            max_retries=0,
            timeout=_TIMEOUT,
            transport=self.link,
        )
        self.kiosk = KioskClient(
            self._client,
            workdir / f"{DEVICE_ID}.sqlite",
            currency=currency,
            timezone=timezone,
            retry_interval=_NEVER,
        )
        self._waiting: list[str] = []
        """Transaction ids taken and not yet confirmed or refused, oldest first."""
        self._known: set[str] = set()
        self._taken: defaultdict[date, list[str]] = defaultdict(list)
        """The kiosk's local day → the transaction ids taken that day (its cash box)."""
        self.closes_due: dict[date, tuple[Money, KioskTotals]] = {}
        """Days whose close has not been answered yet (the link was down, the gateway died),
        with the figures first sent: a retry sends the same, under the same key."""

    @property
    def public_key_pem(self) -> str:
        """The key to register for this kiosk in paygate's device registry."""
        return ed25519_pem(self._key.public_key())

    def pay(self, account_no: str, amount: Money, method: KioskMethod, day: date) -> KioskOutcomes:
        """A customer pays at the kiosk on its local day ``day``: stored, then sent with
        everything older still pending (or only stored, while the link is known down)."""
        refused: list[StoredPayment] = []
        try:
            taken = self.kiosk.pay(account_no, amount, method=method)
        except _REFUSED:
            # Refused for good, this very payment: it is in the kiosk's refused list.
            refused = [p for p in self.kiosk.refused() if p.txn_id not in self._known]
            for payment in refused:
                self._known.add(payment.txn_id)
                self._taken[day].append(payment.txn_id)
        else:
            txn_id = taken.payment.txn_id
            self._known.add(txn_id)
            self._waiting.append(txn_id)
            self._taken[day].append(txn_id)
        settled = self.settled()
        return KioskOutcomes(settled.confirmed, refused + settled.refused)

    def forward(self) -> KioskOutcomes:
        """The forwarder's pass, when the link is known down or payments wait: oldest first,
        until done or the gateway cannot take one. Then the closes still due."""
        if self.kiosk.link_down is not None or self._waiting:
            self.kiosk.forward()
        return self.settled()

    def settled(self) -> KioskOutcomes:
        """The payments confirmed or refused since the last call, oldest first."""
        confirmed: list[StoredPayment] = []
        refused: list[StoredPayment] = []
        waiting: list[str] = []
        for txn_id in self._waiting:
            stored = self.kiosk.payment(txn_id)
            assert stored is not None, "a payment once stored is never deleted"
            if stored.state is PaymentState.CONFIRMED:
                confirmed.append(stored)
            elif stored.state is PaymentState.REFUSED:
                refused.append(stored)
            else:
                waiting.append(txn_id)
        self._waiting = waiting
        return KioskOutcomes(confirmed, refused)

    @property
    def pending(self) -> int:
        """Payments stored on the kiosk and not yet confirmed."""
        return len(self._waiting)

    def close(self, day: date) -> KioskCloseResult | PaygateClientError:
        """Close local day ``day``: the cash in the box (every payment taken that day and not
        refused) and the kiosk's totals of those confirmed for that business day, counted at
        the first attempt. The gateway's answer, or its refusal; when it did not answer, the
        error, and the day stays in :attr:`closes_due` to be sent again."""
        if day not in self.closes_due:
            self.closes_due[day] = self._count(day)
        counted, reported = self.closes_due[day]
        try:
            result = self._client.close_kiosk_day(day, counted_cash=counted, reported=reported)
        except _REFUSED as exc:
            del self.closes_due[day]
            return exc
        except PaygateClientError as exc:
            return exc
        del self.closes_due[day]
        return result

    def _count(self, day: date) -> tuple[Money, KioskTotals]:
        cash = [0, 0]
        card = [0, 0]
        counted = 0
        for txn_id in self._taken.get(day, []):
            stored = self.kiosk.payment(txn_id)
            assert stored is not None, "a payment once stored is never deleted"
            if stored.state is PaymentState.REFUSED:
                continue
            is_cash = stored.method is KioskMethod.CASH
            if is_cash:
                counted += stored.amount.minor
            receipt = stored.receipt
            if receipt is not None and receipt.business_date == day:
                totals = cash if is_cash else card
                totals[0] += 1
                totals[1] += stored.amount.minor
        currency = self._currency
        reported = KioskTotals(
            cash=MethodTotal(count=cash[0], amount=Money(cash[1], currency)),
            card=MethodTotal(count=card[0], amount=Money(card[1], currency)),
        )
        return Money(counted, currency), reported

    def redeem(
        self, account_no: str, card: RechargeCard, key: str
    ) -> VoucherRedemption | PaygateClientError:
        """Redeem a recharge voucher for ``account_no`` at the kiosk (``POST /v1/vouchers/redeem``,
        under idempotency key ``key``): the redemption, or the client's error (no answer, or
        a refusal)."""
        try:
            return self._client.redeem_voucher(
                account_no, card.serial, card.pin, idempotency_key=key
            )
        except PaygateClientError as exc:
            return exc

    def shut(self) -> None:
        """Switch the kiosk off: its store and its connections closed."""
        self.kiosk.close()
        self._client.close()
        self.link.close()
