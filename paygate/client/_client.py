"""``PaygateClient`` and ``AsyncPaygateClient``: twins that differ only in how they wait and send.

Invariant: everything but I/O — the signed request, the idempotency key, the retry decision,
the error — comes from one :class:`~paygate.client._core.ClientCore`, so the two clients cannot
disagree about what is safe to send twice. Each owns its ``httpx`` client (unless given a
transport), closes it in ``close()`` / ``aclose()``, and never follows a redirect (a signed
request re-sent elsewhere is not what the device signed).
"""

from __future__ import annotations

import ssl
import time
from datetime import date, datetime
from types import TracebackType
from typing import Self, TypeVar

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from paygate.api.schemas import Health, VoucherRedemption
from paygate.channels.kiosk import KioskCloseResult, KioskMethod, KioskReceipt, KioskTotals
from paygate.client._core import Call, ClientCore
from paygate.clock import Clock
from paygate.models import AccountStatus
from paygate.money import Money

__all__ = ["AsyncPaygateClient", "PaygateClient"]

T = TypeVar("T")

_USER_AGENT = "paygate-client/1"


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


class _Client:
    """What both clients share besides the core: construction and repr."""

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        private_key: Ed25519PrivateKey,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        clock: Clock | None = None,
    ) -> None:
        self._core = ClientCore(
            base_url,
            device_id=device_id,
            private_key=private_key,
            clock=clock,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self._timeout = _timeout(timeout)

    @property
    def device_id(self) -> str:
        """The device this client signs as."""
        return self._core.device_id

    @property
    def clock(self) -> Clock:
        """The clock requests are signed (and payments dated) with."""
        return self._core.clock

    def __repr__(self) -> str:
        # Never the key: reprs end up in logs.
        return f"<{type(self).__name__} {self._core.base_url} device={self.device_id}>"


class PaygateClient(_Client):
    """A terminal's synchronous client of the paygate HTTP gateway.

    ``private_key`` is the device's Ed25519 key, whose public half is registered with
    ``paygate devices add``. ``timeout`` (seconds, or an ``httpx.Timeout``) bounds each attempt;
    ``max_retries`` how many times a safe request is tried again. ``transport`` replaces the
    network (tests pass ``httpx.MockTransport``); ``verify`` is the TLS verification (a CA
    bundle path, an ``ssl.SSLContext``, or True).
    """

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        private_key: Ed25519PrivateKey,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            base_url,
            device_id=device_id,
            private_key=private_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            clock=clock,
        )
        self._http = httpx.Client(
            timeout=self._timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._core.build(call)
            try:
                response = self._http.send(request)
            except httpx.RequestError as exc:
                wait = self._core.wait_after_error(call, exc, attempt)
                if wait is None:
                    raise self._core.unreachable(exc) from exc
            else:
                wait = self._core.wait_after_answer(call, response, attempt)
                if wait is None:
                    return self._core.finish(call, response)
            attempt += 1
            time.sleep(wait)

    def account(self, account_no: str) -> AccountStatus:
        """What the account owes now (arrears, late fee, bills, supply state); name masked."""
        return self._call(self._core.account(account_no))

    def pay(
        self,
        account_no: str,
        amount: Money,
        *,
        method: KioskMethod | str = KioskMethod.CASH,
        paid_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> KioskReceipt:
        """Post a payment taken at this terminal; the receipt to print.

        ``idempotency_key`` is also the payment's transaction id (``cash-…`` / ``card-…``); a
        fresh one is made when None. Retrying with the same key (and the same ``paid_at``)
        returns the original receipt, ``replayed=True``.
        """
        return self._call(
            self._core.pay(
                account_no, amount, method=method, paid_at=paid_at, idempotency_key=idempotency_key
            )
        )

    def redeem_voucher(
        self,
        account_no: str,
        serial: str,
        pin: str | SecretStr,
        *,
        idempotency_key: str | None = None,
    ) -> VoucherRedemption:
        """Redeem a voucher for the account; the card's payment receipt."""
        return self._call(
            self._core.redeem_voucher(account_no, serial, pin, idempotency_key=idempotency_key)
        )

    def close_kiosk_day(
        self,
        business_date: date,
        *,
        counted_cash: Money,
        reported: KioskTotals,
        idempotency_key: str | None = None,
    ) -> KioskCloseResult:
        """Close this kiosk's business day: counted cash and its totals against the ledger."""
        return self._call(
            self._core.close_kiosk_day(
                business_date,
                counted_cash=counted_cash,
                reported=reported,
                idempotency_key=idempotency_key,
            )
        )

    def health(self) -> Health:
        """Whether the gateway and its database answer."""
        return self._call(self._core.health())


class AsyncPaygateClient(_Client):
    """The asynchronous twin of :class:`PaygateClient` (same arguments, ``await`` each call)."""

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        private_key: Ed25519PrivateKey,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.25,
        backoff_cap: float = 8.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            base_url,
            device_id=device_id,
            private_key=private_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            clock=clock,
        )
        self._http = httpx.AsyncClient(
            timeout=self._timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._core.build(call)
            try:
                response = await self._http.send(request)
            except httpx.RequestError as exc:
                wait = self._core.wait_after_error(call, exc, attempt)
                if wait is None:
                    raise self._core.unreachable(exc) from exc
            else:
                wait = self._core.wait_after_answer(call, response, attempt)
                if wait is None:
                    return self._core.finish(call, response)
            attempt += 1
            await anyio.sleep(wait)

    async def account(self, account_no: str) -> AccountStatus:
        """What the account owes now (arrears, late fee, bills, supply state); name masked."""
        return await self._call(self._core.account(account_no))

    async def pay(
        self,
        account_no: str,
        amount: Money,
        *,
        method: KioskMethod | str = KioskMethod.CASH,
        paid_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> KioskReceipt:
        """Post a payment taken at this terminal; see :meth:`PaygateClient.pay`."""
        return await self._call(
            self._core.pay(
                account_no, amount, method=method, paid_at=paid_at, idempotency_key=idempotency_key
            )
        )

    async def redeem_voucher(
        self,
        account_no: str,
        serial: str,
        pin: str | SecretStr,
        *,
        idempotency_key: str | None = None,
    ) -> VoucherRedemption:
        """Redeem a voucher for the account; the card's payment receipt."""
        return await self._call(
            self._core.redeem_voucher(account_no, serial, pin, idempotency_key=idempotency_key)
        )

    async def close_kiosk_day(
        self,
        business_date: date,
        *,
        counted_cash: Money,
        reported: KioskTotals,
        idempotency_key: str | None = None,
    ) -> KioskCloseResult:
        """Close this kiosk's business day: counted cash and its totals against the ledger."""
        return await self._call(
            self._core.close_kiosk_day(
                business_date,
                counted_cash=counted_cash,
                reported=reported,
                idempotency_key=idempotency_key,
            )
        )

    async def health(self) -> Health:
        """Whether the gateway and its database answer."""
        return await self._call(self._core.health())
