"""Group commit under the HTTP gateway: concurrent requests share transactions, each answered
as if it had been alone, on SQLite and PostgreSQL, through a real uvicorn server and httpx.

``POST /v1/payments`` posts a kiosk's payment with its nonce through
:meth:`~paygate.group_commit.PaymentGroup.pay_prepared`; the notify routes reach
:meth:`Gateway.pay`, which groups too. The server's own pay_within is wrapped to see that
requests did share transactions.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest

from paygate.api import ApiConfig, create_app
from paygate.config import Settings
from paygate.errors import PaygateError
from paygate.models import PaymentIntent, Receipt
from paygate.store.engine import Tx
from tests.api.support import LiveServer, World
from tests.api.test_notify import CUSTOMER, channel_configs
from tests.channels import support
from tests.channels.kiosk_support import ed25519_key, signed_headers

ACCOUNTS = [f"31000000{n:02d}" for n in range(6)]
KIOSKS = [f"K{n:04d}" for n in range(4)]
CALLERS = 12


def grouping_server(db_url: str, config: ApiConfig | None = None) -> LiveServer:
    settings = Settings(
        database_url=db_url,
        seal_every=0,
        sqlite_synchronous="NORMAL",
        group_commit_window_ms=20.0,
    )
    return LiveServer(lambda: create_app(settings, config=config))


def record_sizes(server: LiveServer) -> list[int]:
    """Wrap the running server's pay_within: the size of every transaction's batch."""
    assert server.app is not None
    payments = server.app.state.runtime.gateway.payments
    real = payments.pay_within
    sizes: list[int] = []

    def recording(tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        sizes.append(len(intents))
        return real(tx, intents)

    payments.pay_within = recording
    return sizes


def all_at_once(jobs: Sequence[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``jobs`` on CALLERS threads that start together; the answers in job order."""
    answers: list[httpx.Response | BaseException | None] = [None] * len(jobs)
    barrier = threading.Barrier(CALLERS)

    def caller(n: int) -> None:
        barrier.wait()
        for index in range(n, len(jobs), CALLERS):
            try:
                answers[index] = jobs[index]()
            except BaseException as exc:
                answers[index] = exc

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    done = [a for a in answers if isinstance(a, httpx.Response)]
    assert len(done) == len(jobs), [a for a in answers if not isinstance(a, httpx.Response)]
    return done


@pytest.fixture
def kiosk_server(db_url: str, world: World) -> Iterator[LiveServer]:
    for account in ACCOUNTS:
        world.customer(account)
    for kiosk in KIOSKS:
        world.register(kiosk)
    with grouping_server(db_url) as server:
        yield server


def test_concurrent_kiosk_payments_are_grouped_and_each_answered_once(
    world: World, kiosk_server: LiveServer
) -> None:
    server = kiosk_server
    sizes = record_sizes(server)
    paid_at = datetime.now(UTC).isoformat()
    jobs: list[Callable[[], httpx.Response]] = []
    expected: list[tuple[str, str, str]] = []  # (kiosk, txn, account); "" account: a bad one
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def pay(kiosk: str, txn: str, account: str) -> Callable[[], httpx.Response]:
            body = json.dumps(
                {
                    "txn_id": txn,
                    "account_no": account,
                    "amount": 1000,
                    "currency": "CNY",
                    "method": "cash",
                    "paid_at": paid_at,
                }
            ).encode()

            def send() -> httpx.Response:
                # Signed when sent: a fresh nonce each time, so a duplicate is a retry.
                headers = signed_headers(
                    ed25519_key(kiosk), kiosk, body, path="/v1/payments", at=datetime.now(UTC)
                )
                headers.update({"Content-Type": "application/json", "Idempotency-Key": txn})
                return http.post("/v1/payments", content=body, headers=headers)

            return send

        for n in range(24):
            kiosk, account = KIOSKS[n % len(KIOSKS)], ACCOUNTS[n % len(ACCOUNTS)]
            for _copy in range(2):  # every payment sent twice, by two callers
                jobs.append(pay(kiosk, f"cash-{n:06d}", account))
                expected.append((kiosk, f"cash-{n:06d}", account))
        jobs.append(pay(KIOSKS[0], "cash-999999", "3199999999"))
        expected.append((KIOSKS[0], "cash-999999", ""))
        answers = all_at_once(jobs)

    statuses: dict[tuple[str, str], list[int]] = defaultdict(list)
    payment_ids: dict[tuple[str, str], set[int]] = defaultdict(set)
    for (kiosk, txn, account), answer in zip(expected, answers, strict=True):
        if not account:
            assert answer.status_code == 404, answer.text
            assert answer.json()["code"] == "unknown_account"
            continue
        assert answer.status_code in (200, 201), answer.text
        body = answer.json()
        assert (body["txn_id"], body["terminal_id"], body["account_no"]) == (txn, kiosk, account)
        statuses[(kiosk, txn)].append(answer.status_code)
        payment_ids[(kiosk, txn)].add(body["payment_id"])
    for key, got in statuses.items():
        assert sorted(got) == [200, 201], key  # posted once, the other a replay
        assert len(payment_ids[key]) == 1
    assert world.payments("kiosk") == 24
    assert max(sizes) > 1  # requests did share a transaction
    paid = Counter(account for _, _, account in expected if account)
    for account in ACCOUNTS:
        assert world.balance(account) == 101000 - paid[account] // 2 * 1000
    assert world.gateway.verify().ok


def test_concurrent_channel_notifications_are_grouped_and_each_acknowledged(
    db_url: str, world: World
) -> None:
    world.gateway.open_account(CUSTOMER)
    with grouping_server(db_url, ApiConfig(channels=channel_configs())) as server:
        sizes = record_sizes(server)
        key = support.rsa_key("alipay")
        bodies = [
            support.alipay_body(
                support.alipay_trade(
                    out_trade_no=f"2024050109123{n:04d}",
                    trade_no=f"20240501220014684{n:010d}",
                    notify_id=f"notify-{n}",
                ),
                key,
            )
            for n in range(16)
        ]
        with httpx.Client(base_url=server.url, timeout=30) as http:

            def notify(body: bytes) -> Callable[[], httpx.Response]:
                return lambda: http.post(
                    "/v1/channels/alipay/notify",
                    content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )

            answers = all_at_once([notify(b) for b in bodies for _copy in range(2)])
    for answer in answers:
        assert (answer.status_code, answer.content) == (200, b"success"), answer.text
    assert world.payments("alipay") == 16
    assert max(sizes) > 1
    assert world.gateway.verify().ok
