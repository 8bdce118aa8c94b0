"""Feeds: how fast a billing system pages through what was paid, beside how fast it is paid.

For each database: N payments are posted with ``Gateway.pay_many`` (timed: payments/s), a
tenth of them reversed, then the payment feed is read from the start to the end with pages of
1000 and of 100 items, and the event feed with pages of 1000 (timed: items/s). The ratio
"feed items read per second / payments posted per second" is what matters: a consumer keeps
up with ingest while it is well above 1. Also timed, once: issuing a token (one scrypt of the
client's secret) and verifying one (a signature and a registry read).

    .venv/bin/python bench/feeds.py [--quick] [--n N] [--sqlite-only] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretBytes

from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store import migrate

# bench/http.py would shadow the standard library's http package, which PyJWT imports (in
# run(), once the script's own directory is off the path).
sys.path[:] = [p for p in sys.path if not p.endswith("bench")]


def read_all(read: Any, limit: int) -> int:
    cursor, count = None, 0
    while True:
        page = read(cursor, limit)
        count += len(page.items)
        cursor = page.next_cursor
        if not page.has_more:
            return count


def run(url: str, n: int) -> None:
    from paygate.service_clients import ServiceClientRegistry
    from paygate.tokens import TokenService, TokenSettings

    settings = Settings(database_url=url, seal_every=0, sqlite_synchronous="NORMAL")
    with Gateway.open(settings=settings) as gateway:
        accounts = [f"F{i:05d}" for i in range(max(1, n // 20))]
        for account_no in accounts:
            gateway.open_account(account_no)
        paid_at = datetime.now(UTC)
        intents = [
            PaymentIntent(
                channel="online",
                channel_txn_id=f"T{i}",
                account_no=accounts[i % len(accounts)],
                amount=Money(1000 + i, "CNY"),
                paid_at=paid_at,
            )
            for i in range(n)
        ]
        started = time.perf_counter()
        outcomes = gateway.pay_many(intents)
        ingest = n / (time.perf_counter() - started)
        for outcome in outcomes[::10]:
            assert outcome.receipt is not None
            gateway.reverse(outcome.receipt.payment_id, "bench")
        expected = n + len(outcomes[::10])
        print(f"  pay_many: {ingest:,.0f} payments/s ({n} payments)")
        for limit in (1000, 100):
            started = time.perf_counter()
            count = read_all(gateway.payments_since, limit)
            rate = count / (time.perf_counter() - started)
            assert count == expected, (count, expected)
            print(
                f"  payment feed, pages of {limit}: {rate:,.0f} items/s "
                f"(ratio to ingest {rate / ingest:.1f})"
            )
        started = time.perf_counter()
        count = read_all(gateway.events_since, 1000)
        rate = count / (time.perf_counter() - started)
        print(f"  event feed, pages of 1000: {rate:,.0f} items/s ({count} events)")

        key = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        registry = ServiceClientRegistry(gateway.store, gateway.clock)
        _, secret = registry.add(f"bench-{uuid.uuid4().hex[:8]}", ["payments:read"])
        client_id = registry.list()[-1].client_id
        tokens = TokenService(TokenSettings(signing_key=SecretBytes(key)), registry, gateway.clock)
        started = time.perf_counter()
        issued = tokens.issue(client_id, secret)
        issue_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        for _ in range(200):
            tokens.verify(issued.access_token, "payments:read")
        verify = 200 / (time.perf_counter() - started)
        print(f"  token: issue {issue_ms:.0f} ms (scrypt), verify {verify:,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    n = args.n or (500 if args.quick else 20_000)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'feeds.db'}"
        migrate.upgrade(url)
        print("SQLite")
        run(url, n)
    if args.sqlite_only:
        return
    name = f"paygate_bench_feeds_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = args.pg_url.rsplit("/", 1)[0] + f"/{name}"
        migrate.upgrade(url)
        print("PostgreSQL")
        run(url, n)
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
