"""What ``paygate serve`` and ``paygate dispatch`` log at debug level through real traffic: a
line per request with its id, a line per delivery, and never a secret.

Both commands run as real subprocesses on PostgreSQL reached by a URL with a password (the
test server trusts local connections, so any password opens it), with a voucher PIN key, a
signed kiosk payment, a voucher redemption with its PIN, a query string carrying a token, and
a webhook sink with its secret, first refusing and then taking the event.
"""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretBytes

from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.api.processes import REPO, paygate_env, serving
from tests.api.support import ACCOUNT, World, client, open_world
from tests.channels.kiosk_support import signed_headers

DB_PASSWORD = "Db-Pa55word-never-logged"
PIN_KEY = bytes(range(90, 122))
WEBHOOK_SECRET = "whsec-Webhook-S3cret-never-logged"
QUERY_TOKEN = "QueryT0ken-never-logged"


class _Hook(http.server.BaseHTTPRequestHandler):
    answers: list[int]
    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers.items()))
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[int], list[dict[str, str]]]]:
    """A billing system's webhook on loopback: its URL, the statuses it will answer (then 200),
    and the headers of every request it got."""
    answers: list[int] = []
    seen: list[dict[str, str]] = []
    handler = type("Hook", (_Hook,), {"answers": answers, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", answers, seen
    finally:
        server.shutdown()
        server.server_close()


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{DB_PASSWORD}@{host}"


def dispatch(config: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paygate.cli", "dispatch", "--once", "--config", str(config),
         "--database-url", url, "--log-level", "debug", "--log-format", "json"],
        cwd=REPO, env=paygate_env(env), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.postgres
def test_serve_and_dispatch_log_every_request_and_delivery_and_no_secret(
    pg_url: str, tmp_path: Path, webhook: tuple[str, list[int], list[dict[str, str]]]
) -> None:
    hook_url, answers, seen = webhook
    url = with_password(pg_url)
    world: World = open_world(pg_url)
    try:
        world.customer()
        key = world.register("K0001")
        printed = BytesIO()
        service = VoucherService(world.gateway, SecretBytes(PIN_KEY))
        issued = service.issue_batch("B1", 1, Money(5000, "CNY"), world.days_ahead(365), printed)
        service.activate("B1", retailer="Shop 1")
        pins = dict(line.split(",")[1:3] for line in printed.getvalue().decode().splitlines()[1:])
        pin = pins[issued.first_serial]
    finally:
        world.gateway.close()
    config = tmp_path / "paygate.toml"
    config.write_text(
        "[api.channels.voucher]\n"
        'pin_key_env = "PAYGATE_TEST_PIN_KEY"\n'
        "[[dispatch.sinks]]\n"
        f'kind = "webhook"\nname = "billing"\nurl = "{hook_url}"\n'
        'secret_env = "PAYGATE_TEST_WEBHOOK_SECRET"\n'
        "[dispatch.dispatcher]\nretry_base_seconds = 0.2\nretry_cap_seconds = 0.2\n"
    )
    env = {
        "PAYGATE_TEST_PIN_KEY": base64.b64encode(PIN_KEY).decode(),
        "PAYGATE_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    serve_log = tmp_path / "serve.log"
    body = json.dumps(
        {"txn_id": "cash-1", "account_no": ACCOUNT, "amount": 101000, "currency": "CNY",
         "method": "cash", "paid_at": datetime.now(UTC).isoformat()}
    ).encode()  # fmt: skip
    headers = signed_headers(key, "K0001", body, path="/v1/payments", at=datetime.now(UTC))
    args = ["--config", str(config), "--database-url", url, "--log-level", "debug"]
    with serving([*args, "--log-format", "json"], stderr=serve_log, env=env) as (base, _):
        paid = httpx.post(
            f"{base}/v1/payments",
            content=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": "cash-1", **headers},
        )
        assert paid.status_code == 201, paid.text
        with client(_Live(base), "K0001", key) as kiosk:
            assert kiosk.redeem_voucher(ACCOUNT, issued.first_serial, pin).result == "redeemed"
        refused = httpx.get(f"{base}/v1/accounts/{ACCOUNT}?token={QUERY_TOKEN}")
        assert refused.status_code == 401
    # The first delivery fails and is retried later; the account's later events wait behind it
    # (in order per account), and the next pass delivers them all.
    answers.append(503)
    first = dispatch(config, url, env)
    assert first.returncode == 0, first.stderr
    assert seen, "the webhook was called"
    time.sleep(0.5)
    second = dispatch(config, url, env)
    assert second.returncode == 0, second.stderr

    serve_lines = [json.loads(line) for line in serve_log.read_text().splitlines()]
    dispatch_lines = [
        json.loads(line) for run in (first, second) for line in run.stderr.splitlines()
    ]
    # One access line per request, with the id the caller was given, without the query.
    access = [line for line in serve_lines if line["logger"] == "paygate.access"]
    by_id = {line["request_id"]: line for line in access}
    assert by_id[paid.headers["x-request-id"]]["path"] == "/v1/payments"
    assert by_id[paid.headers["x-request-id"]]["status"] == 201
    assert by_id[refused.headers["x-request-id"]]["path"] == f"/v1/accounts/{ACCOUNT}"
    assert by_id[refused.headers["x-request-id"]]["status"] == 401
    assert all(isinstance(line["duration_ms"], float) for line in access)
    assert {line["method"] for line in access} >= {"GET", "POST"}
    assert all(datetime.fromisoformat(line["time"]).utcoffset() is not None for line in access)
    # Every delivery: the failed first attempt (a retry scheduled), then the others delivered.
    events = [line for line in dispatch_lines if line["logger"] == "paygate.outbox"]
    retried = [line for line in events if "retry at" in line["message"]]
    delivered = [line for line in events if line["message"].endswith("delivered")]
    assert len(retried) == 1 and retried[0]["level"] == "warning"
    assert retried[0]["attempt"] == 1 and "HTTP 503" in retried[0]["error"]
    assert retried[0]["retry_at"]
    assert delivered and all(line["event_id"] for line in delivered)

    everything = serve_log.read_text() + first.stdout + first.stderr + second.stdout + second.stderr
    signatures = [h["X-Paygate-Signature"] for h in seen]
    secrets = [
        DB_PASSWORD,
        WEBHOOK_SECRET,
        QUERY_TOKEN,
        pin,
        base64.b64encode(PIN_KEY).decode(),
        PIN_KEY.hex(),
        headers["X-Paygate-Signature"],
        *signatures,
    ]
    for secret in secrets:
        assert secret not in everything, secret


class _Live:
    """What tests.api.support.client needs of a server: its URL."""

    def __init__(self, url: str) -> None:
        self.url = url
