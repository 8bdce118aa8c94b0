"""The worked examples in docs/ run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_the_billing_systems_worked_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "FixedClock" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    receipt = namespace["receipt"]
    assert receipt.reconnection_order_id is not None  # type: ignore[attr-defined]
    assert receipt.late_fee.format() == "10.00"  # type: ignore[attr-defined]
    status = namespace["status"]
    assert status.arrears.minor == 101000  # type: ignore[attr-defined]


def events_example(marker: str) -> str:
    [example] = [b for b in python_blocks("events.md") if marker in b]
    return example


def test_the_webhook_receiver_example_runs() -> None:
    import httpx
    from pydantic import SecretStr

    from paygate.outbox import WebhookSink

    namespace: dict[str, object] = {}
    exec(compile(events_example("verify_webhook"), "docs/events.md", "exec"), namespace)
    sent: list[httpx.Request] = []

    def keep(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    sink = WebhookSink(
        "https://billing.example/paygate-events",
        SecretStr(str(namespace["SECRET"])),
        transport=httpx.MockTransport(keep),
    )
    sink.deliver(ENVELOPE)
    sink.close()
    [request] = sent
    receive = namespace["receive"]
    assert receive(request.content, dict(request.headers)) == 200  # type: ignore[operator]
    assert namespace["handled"] == {"7301"}
    # the same signed request again is a replay; a forged one is refused
    assert receive(request.content, dict(request.headers)) == 401  # type: ignore[operator]
    forged = request.content.replace(b"3100000001", b"3100000002")
    assert receive(forged, dict(request.headers)) == 401  # type: ignore[operator]


def test_the_rabbitmq_consumer_example_runs() -> None:
    from paygate.sinks import RabbitMQSink
    from tests.brokers import RABBIT_URL, rabbit_queue, unique

    exchange, queue = unique("paygate-doc-x"), unique("paygate-doc-q")
    example = events_example("import pika")
    example = example.replace('"paygate.events"', f'"{exchange}"')
    example = example.replace('"billing.paygate-events"', f'"{queue}"')
    with rabbit_queue(exchange) as (channel, _):
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, "#")
        try:
            sink = RabbitMQSink(RABBIT_URL, exchange=exchange)
            for event_id in ("1", "2", "1", "3"):  # "1" arrives twice, as after a lost confirm
                sink.deliver(ENVELOPE | {"id": event_id})
            sink.close()
            namespace: dict[str, object] = {}
            exec(compile(example, "docs/events.md", "exec"), namespace)
            assert namespace["handled"] == ["1", "2", "3"]
            assert channel.queue_declare(queue, passive=True).method.message_count == 0
        finally:
            channel.queue_delete(queue)


def test_the_nats_consumer_example_runs() -> None:
    from paygate.sinks import JetStreamSink
    from tests.brokers import NATS_URL, delete_stream, unique

    stream = unique("PAYGATE_DOC").replace("-", "_")
    prefix = unique("paygate-doc")
    example = events_example("import nats")
    example = example.replace('"PAYGATE"', f'"{stream}"')
    example = example.replace('"paygate.>"', f'"{prefix}.>"')
    try:
        sink = JetStreamSink(NATS_URL, stream=stream, subject_prefix=prefix, timeout=5)
        for event_id in ("1", "2", "1", "3"):  # JetStream keeps one "1"
            sink.deliver(ENVELOPE | {"id": event_id})
        sink.close()
        namespace: dict[str, object] = {}
        exec(compile(example, "docs/events.md", "exec"), namespace)
        assert namespace["handled"] == ["1", "2", "3"]
    finally:
        delete_stream(NATS_URL, stream)


ENVELOPE = {
    "specversion": "1.0",
    "id": "7301",
    "source": "urn:paygate",
    "type": "arrears.cleared",
    "subject": "3100000001",
    "time": "2026-11-25T02:00:00+00:00",
    "datacontenttype": "application/json",
    "data": {"payment_id": 7298, "supply_state": "reconnection_pending"},
}


def test_the_billing_systems_feed_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "payments_since(cursor" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    receipt = namespace["receipt"]
    paid = receipt.payment_id  # type: ignore[attr-defined]
    assert namespace["seen"] == [("payment", paid, "50.00"), ("reversal", paid, "50.00")]


def test_the_billing_systems_refund_feed_example_keeps_the_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "refund_failed" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    assert namespace["credit"] == 8000


def test_the_billing_systems_http_example_reads_the_feed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from pydantic import SecretBytes

    from paygate.api import create_app
    from paygate.service_clients import ServiceClientRegistry
    from paygate.tokens import TokenSettings
    from tests.api.support import LiveServer, open_world, settings_for
    from tests.databases import fresh_sqlite_url

    [example] = [b for b in python_blocks("billing-systems.md") if "read_payments" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    read_payments = namespace["read_payments"]
    url = fresh_sqlite_url(tmp_path)
    key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    tokens = TokenSettings(signing_key=SecretBytes(key))
    world = open_world(url)
    try:
        world.customer("3100000001")
        _, secret = ServiceClientRegistry(world.gateway.store, world.gateway.clock).add(
            "billing-east", ["payments:read"]
        )
        with LiveServer(lambda: create_app(settings_for(url), tokens=tokens)) as server:
            items, cursor = read_payments(server.url, "billing-east", secret)  # type: ignore[operator]
            assert items == [] and cursor
            from datetime import UTC, datetime

            from paygate.models import PaymentIntent
            from paygate.money import Money

            world.gateway.pay(
                PaymentIntent(
                    channel="online",
                    channel_txn_id="T-1",
                    account_no="3100000001",
                    amount=Money(5000, "CNY"),
                    paid_at=datetime.now(UTC),
                )
            )
            more, _ = read_payments(server.url, "billing-east", secret, cursor)  # type: ignore[operator]
            assert [(i["kind"], i["channel_txn_id"]) for i in more] == [("payment", "T-1")]
    finally:
        world.gateway.close()


def test_the_billing_run_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "issue_bills" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    assert namespace["again"].replayed_count == 1  # type: ignore[attr-defined]


def test_the_refund_routes_configuration_builds_every_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paygate.refunds.routes import BankTransferRoute
    from tests.refunds_routes.conftest import PASSPHRASE, write_keys

    text = (DOCS / "refund-routes.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    write_keys(tmp_path / "keys")
    block = block.replace("/etc/paygate/keys", str(tmp_path / "keys"))
    block = block.replace("/var/lib/paygate/bank", str(tmp_path / "bank"))
    (tmp_path / "paygate.toml").write_text(block, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAYGATE_CONFIG", raising=False)
    monkeypatch.setenv("PAYGATE_ALIPAY_KEY_PASSPHRASE", PASSPHRASE)
    [example] = [b for b in python_blocks("refund-routes.md") if "build_routes" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/refund-routes.md", "exec"), namespace)
    routes = namespace["routes"]
    assert isinstance(routes, dict)
    assert sorted(routes) == ["alipay", "bank_transfer", "online", "wechatpay"]
    for route in routes.values():
        if not isinstance(route, BankTransferRoute):
            route.close()


def test_the_refunds_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = python_blocks("refunds.md")
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/refunds.md", "exec"), namespace)
    assert namespace["paid"].state == "succeeded"  # type: ignore[attr-defined]
    closure = namespace["closure"]
    assert closure.credit_applied.format() == "40.00"  # type: ignore[attr-defined]
    [refund] = closure.refunds  # type: ignore[attr-defined]
    assert refund.amount.format() == "160.00"
    assert refund.refund_id == "close-CL-20261125-1"


REPO = DOCS.parent


def test_every_page_is_in_the_site_nav_and_every_nav_entry_is_a_page() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    nav = config[config.index("\nnav:") :]
    listed = re.findall(r"([\w./-]+\.md)\s*$", nav, flags=re.M)
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert len(listed) == len(set(listed)), "a page is in the nav twice"
    assert set(listed) == pages


def test_the_api_reference_covers_the_public_api() -> None:
    reference = "".join(p.read_text() for p in sorted((DOCS / "reference").glob("*.md")))
    for name in (
        "paygate",
        "paygate.gateway.Gateway",
        "paygate.models",
        "paygate.money",
        "paygate.errors",
        "paygate.events",
        "paygate.client",
    ):
        assert f"::: {name}\n" in reference, name


def test_the_billing_systems_import_example_imports_and_replays(tmp_path: Path) -> None:
    from datetime import date

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from pydantic import SecretBytes

    from paygate.api import create_app
    from paygate.service_clients import ServiceClientRegistry
    from paygate.tokens import TokenSettings
    from tests.api.support import LiveServer, open_world, settings_for
    from tests.databases import fresh_sqlite_url

    [example] = [b for b in python_blocks("billing-systems.md") if "/v1/bills/import" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    import_bills = namespace["import_bills"]
    url = fresh_sqlite_url(tmp_path)
    key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    world = open_world(url)
    try:
        world.gateway.open_account("3100000001")
        _, secret = ServiceClientRegistry(world.gateway.store, world.gateway.clock).add(
            "billing-east", ["bills:write"]
        )
        bills = tmp_path / "bills.csv"
        bills.write_text(
            "account_no,bill_no,amount,period,due_date\n"
            "3100000001,B-2026-11,86.40,2026-11,2026-12-15\n"
            "3100000009,B-2026-11-9,10.00,2026-11,2026-12-15\n"
        )
        broken = tmp_path / "broken.csv"
        broken.write_text(
            "account_no,bill_no,amount,period,due_date\n3100000001,X,1,2026-11,soon\n"
        )
        settings = settings_for(url)
        tokens = TokenSettings(signing_key=SecretBytes(key))
        with LiveServer(lambda: create_app(settings, tokens=tokens)) as server:
            first = import_bills(server.url, "billing-east", secret, bills)  # type: ignore[operator]
            assert (first["created"], first["refused"]) == (1, 1)
            assert first["issues"][0]["line"] == 3
            again = import_bills(server.url, "billing-east", secret, bills)  # type: ignore[operator]
            assert (again["created"], again["replayed"]) == (0, 1)
            with pytest.raises(ValueError, match=r"broken.csv:2: due_date"):
                import_bills(server.url, "billing-east", secret, broken)  # type: ignore[operator]
        bill = world.gateway.account_status("3100000001", as_of=date(2026, 11, 30)).bills[0]
        assert bill.amount.format() == "86.40"
    finally:
        world.gateway.close()


def test_the_reference_shows_sphinx_roles_as_code() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sphinx_roles", DOCS / "_ext" / "sphinx_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (
        "Each as :meth:`open_account` would; a :class:`~paygate.models.Receipt`, "
        ":mod:`paygate.feeds`, :func:`the check <paygate.devices.verify_request>`."
    )
    assert module._ROLE.sub(module._shown, text) == (
        "Each as `open_account` would; a `Receipt`, `paygate.feeds`, `the check`."
    )
