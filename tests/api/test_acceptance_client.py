"""Whatever a client method refuses or fails with is a PaygateClientError.

An argument the client cannot send is refused before any I/O as an InvalidArgumentError
(status None, the argument named), which is also paygate's InvalidInputError; an answer that
cannot be decoded is "no usable answer", like a lost one. Nothing of paygate's, nor a bare
ValueError, escapes the client's documented tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from paygate.client import (
    AsyncPaygateClient,
    GatewayUnreachableError,
    InvalidArgumentError,
    PaygateClient,
    PaygateClientError,
    load_private_key,
)
from paygate.clock import FixedClock
from paygate.errors import InvalidInputError
from paygate.money import Money
from tests.api.test_client import BASE, KEY, NOW, RECEIPT, Gateway


def sync_client(gateway: Gateway, **options: Any) -> PaygateClient:
    options.setdefault("clock", FixedClock(NOW))
    return PaygateClient(
        BASE,
        device_id="K0001",
        private_key=KEY,
        max_retries=0,
        transport=httpx.MockTransport(gateway),
        **options,
    )


CALLS: dict[str, tuple[Callable[[PaygateClient], object], str | None]] = {
    "a '..' account number": (lambda c: c.account(".."), "account_no"),
    "a '.' account number": (lambda c: c.account("."), "account_no"),
    "an empty account number": (lambda c: c.account(""), "account_no"),
    "an unknown method": (lambda c: c.pay("3100000001", Money(1, "CNY"), method="bitcoin"), None),
    "a naive paid_at": (
        lambda c: c.pay("3100000001", Money(1, "CNY"), paid_at=datetime(2026, 11, 25, 10)),
        "paid_at",
    ),
    "a key of another method": (
        lambda c: c.pay("3100000001", Money(1, "CNY"), idempotency_key="card-1"),
        "idempotency_key",
    ),
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_an_argument_the_client_cannot_send_is_refused_in_its_tree_before_any_io(
    case: str,
) -> None:
    call, field = CALLS[case]
    gateway = Gateway(httpx.Response(200, json=RECEIPT))
    with sync_client(gateway) as client, pytest.raises(PaygateClientError) as refused:
        call(client)
    assert isinstance(refused.value, InvalidArgumentError)
    assert isinstance(refused.value, InvalidInputError)
    assert (refused.value.status, refused.value.code) == (None, "invalid_argument")
    assert refused.value.field == field
    assert gateway.requests == []


def test_a_device_clock_before_1970_is_refused_in_the_tree() -> None:
    gateway = Gateway(httpx.Response(200, json={"status": "ok", "database": "ok"}))
    past = FixedClock(datetime(1969, 12, 31, tzinfo=UTC))
    with sync_client(gateway, clock=past) as client, pytest.raises(InvalidArgumentError):
        client.health()
    assert gateway.requests == []


def garbled(request: httpx.Request) -> httpx.Response:
    # A stream, so that the body is decoded where the client reads it, not here.
    return httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip at all")
    )


def test_an_undecodable_answer_is_no_usable_answer_in_both_clients() -> None:
    with sync_client(Gateway(garbled)) as client, pytest.raises(GatewayUnreachableError):
        client.health()

    async def from_async() -> None:
        async def answer(request: httpx.Request) -> httpx.Response:
            return garbled(request)

        async with AsyncPaygateClient(
            BASE,
            device_id="K0001",
            private_key=KEY,
            clock=FixedClock(NOW),
            max_retries=0,
            transport=httpx.MockTransport(answer),
        ) as client:
            await client.health()

    with pytest.raises(GatewayUnreachableError):
        asyncio.run(from_async())


def test_construction_and_keys_are_refused_in_the_tree() -> None:
    for url in ("http://gateway:notaport", "ftp://gateway", f"{BASE}/?q=1"):
        with pytest.raises(InvalidArgumentError) as refused:
            PaygateClient(url, device_id="K0001", private_key=KEY)
        assert refused.value.field == "base_url"
    with pytest.raises(InvalidArgumentError) as bad_key:
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    assert bad_key.value.field == "private_key"
