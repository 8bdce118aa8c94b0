"""The adapter protocol's parts: settlement rules, fees, registry, nonces, wire helpers, orders."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta, timezone
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from paygate.channels import BUILTIN_CHANNELS, ENTRY_POINT_GROUP
from paygate.channels.base import (
    ChannelRegistry,
    FeeSchedule,
    InMemoryNonceStore,
    NotifyResult,
    Operation,
    SettlementRules,
    refusal_status,
    unsupported,
)
from paygate.channels.errors import (
    AmountMismatchError,
    NonceReusedError,
    OrderExpiredError,
    PayloadTooLargeError,
    SignatureError,
    UnknownPaymentOrderError,
)
from paygate.channels.mobile import AlipayAdapter
from paygate.channels.orders import InMemoryOrderStore, Order, new_order
from paygate.channels.signing import canonical_string, load_verifying_key
from paygate.channels.wire import Headers, iter_source_lines, parse_form
from paygate.errors import (
    ConfigurationError,
    ConflictError,
    InvalidAmountError,
    NaiveDatetimeError,
    ParseError,
    StoreError,
    UnsupportedOperationError,
)
from paygate.money import Money
from tests.channels import fake, support

# ── fees and settlement ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("schedule", "gross", "fee"),
    [
        (FeeSchedule(rate_ppm=6000), 12050, 72),  # 72.3 fen
        (FeeSchedule(rate_ppm=6000), 250, 2),  # 1.5 fen rounds half up
        (FeeSchedule(rate_ppm=6000), 249, 1),  # 1.494
        (FeeSchedule(rate_ppm=3800, fixed=10), 10000, 48),
        (FeeSchedule(rate_ppm=6000, minimum=100), 1000, 100),
        (FeeSchedule(rate_ppm=6000, maximum=2000), 1_000_000, 2000),
        (FeeSchedule(rate_ppm=6000, minimum=100), 0, 0),
        (FeeSchedule(), 123456, 0),
    ],
)
def test_fee_is_exact_and_rounded_half_up_once(schedule: FeeSchedule, gross: int, fee: int) -> None:
    assert schedule.fee(Money(gross, "CNY")) == Money(fee, "CNY")


def test_fee_keeps_the_currency_and_refuses_negative_amounts() -> None:
    assert FeeSchedule(rate_ppm=1000).fee(Money(1000, "JPY")) == Money(1, "JPY")
    with pytest.raises(InvalidAmountError):
        FeeSchedule(rate_ppm=1000).fee(Money(-1, "CNY"))


@pytest.mark.parametrize(
    "values",
    [{"rate_ppm": -1}, {"rate_ppm": 1_000_001}, {"minimum": 10, "maximum": 5}, {"fixed": 1.5}],
)
def test_impossible_fee_schedules_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FeeSchedule.model_validate(values)


def test_business_date_uses_the_cutoff_in_the_rules_zone() -> None:
    rules = SettlementRules(cutoff=time(23, 0), lag_days=1)
    at = datetime(2024, 5, 1, 14, 59, 59, tzinfo=UTC)  # 22:59:59 Beijing
    assert rules.business_date(at) == date(2024, 5, 1)
    assert rules.business_date(at + timedelta(seconds=1)) == date(2024, 5, 2)
    assert rules.settlement_date(date(2024, 5, 31)) == date(2024, 6, 1)
    assert SettlementRules(lag_days=0).settlement_date(date(2024, 5, 4)) == date(2024, 5, 4)


def test_business_date_in_another_zone() -> None:
    rules = SettlementRules(timezone="Europe/London")
    assert rules.business_date(datetime(2024, 5, 1, 23, 30, tzinfo=UTC)) == date(2024, 5, 2)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(NaiveDatetimeError):
        SettlementRules().business_date(datetime(2024, 5, 1, 12, 0))


@pytest.mark.parametrize(
    "values",
    [
        {"timezone": "Mars/Olympus"},
        {"cutoff": time(23, 0, tzinfo=timezone.utc)},  # noqa: UP017
        {"lag_days": -1},
        {"grace_days": 99},
    ],
)
def test_impossible_settlement_rules_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SettlementRules.model_validate(values)


# ── operations and results ────────────────────────────────────────────────────────────────


def test_unsupported_names_channel_and_operation() -> None:
    adapter = fake.FakeAdapter(fake.FakeConfig(secret="s"))
    with pytest.raises(UnsupportedOperationError) as caught:
        unsupported(adapter, Operation.DAILY_CLOSE)
    assert "'fake'" in str(caught.value)
    assert "daily_close" in str(caught.value)
    assert caught.value.code == "unsupported_operation"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PayloadTooLargeError("big"), 413),
        (ParseError("bad"), 400),
        (SignatureError("forged"), 401),
        (NonceReusedError("again"), 401),
        (UnknownPaymentOrderError("who"), 404),
        (AmountMismatchError("how much"), 409),
        (OrderExpiredError("late"), 409),
        (UnsupportedOperationError("no"), 501),
        (StoreError("down"), 503),
    ],
)
def test_refusal_status(error: Any, status: int) -> None:
    assert refusal_status(error) == status


def test_notify_result_is_frozen() -> None:
    result = NotifyResult(status_code=200, body=b"ok", content_type="text/plain")
    assert result.ok
    with pytest.raises(ValidationError):
        result.status_code = 500  # type: ignore[misc]


# ── the registry ──────────────────────────────────────────────────────────────────────────


def test_builtins_are_listed_explicitly_and_registered() -> None:
    registry = ChannelRegistry.with_builtins()
    assert registry.names() == (
        "alipay",
        "bank_agent",
        "kiosk",
        "online",
        "pos",
        "voucher",
        "wechatpay",
    )
    assert len(BUILTIN_CHANNELS) == len(registry)
    assert "alipay" in registry
    assert list(registry) == list(registry.names())
    assert registry.get("alipay") is AlipayAdapter


def test_unknown_channel_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="'nope'"):
        ChannelRegistry().get("nope")


def test_duplicate_name_is_refused() -> None:
    registry = ChannelRegistry.with_builtins()
    with pytest.raises(ConfigurationError, match="'alipay' is already registered"):
        registry.register(AlipayAdapter)


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (fake.NotAnAdapter, "is not a ChannelAdapter"),
        (object(), "is not a ChannelAdapter"),
        (fake.NoStatementAdapter, "'nostatement': missing method"),
        (
            fake.SilentRefundAdapter,
            "'silent' implements handle_refund but does not declare 'refund'",
        ),
        (fake.UndeclaredNotifyAdapter, "'undeclared' declares 'order' but does not implement"),
        (fake.NamelessAdapter, "'name' must be"),
    ],
)
def test_broken_adapters_are_refused_by_name(candidate: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ChannelRegistry().register(candidate)


def test_missing_class_attributes_are_refused() -> None:
    class NoOperations(fake.FakeAdapter):
        name = "nooperations"
        operations = frozenset()

    class NoConfig(fake.FakeAdapter):
        name = "noconfig"
        config_model = dict  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=r"'nooperations'.*operations"):
        ChannelRegistry().register(NoOperations)
    with pytest.raises(ConfigurationError, match=r"'noconfig'.*config_model"):
        ChannelRegistry().register(NoConfig)


def _point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_third_party_channel_arrives_by_entry_point() -> None:
    registry = ChannelRegistry.with_builtins()
    registry.load_entry_points([_point("fake", "tests.channels.fake:FakeAdapter")])
    assert "fake" in registry
    adapter = registry.create("fake", {"secret": "entry-point-secret"})
    assert isinstance(adapter, fake.FakeAdapter)
    assert "entry-point-secret" not in repr(adapter)


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (_point("fake", "tests.channels.no_such_module:FakeAdapter"), "'fake': entry point"),
        (_point("fake", "tests.channels.fake:Missing"), "'fake': entry point"),
        (_point("other", "tests.channels.fake:FakeAdapter"), "'other'.*must equal"),
        (
            _point("impostor", "tests.channels.fake:NotAnAdapter"),
            "'impostor'.*not a ChannelAdapter",
        ),
        (
            _point("alipay", "paygate.channels.mobile:AlipayAdapter"),
            "'alipay' is already registered",
        ),
    ],
)
def test_bad_entry_points_are_configuration_errors(point: EntryPoint, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ChannelRegistry.with_builtins().load_entry_points([point])


def test_discover_reads_the_installed_entry_points() -> None:
    # This environment installs no third-party channel, so discovery finds the built-ins.
    assert ChannelRegistry.discover().names() == ChannelRegistry.with_builtins().names()


def test_create_validates_config_without_echoing_secrets() -> None:
    registry = ChannelRegistry.with_builtins()
    with pytest.raises(ConfigurationError) as caught:
        registry.create(
            "wechatpay",
            {"api_v3_key": "leaky-secret", "platform_keys": {"1": "not a key"}},
        )
    message = str(caught.value)
    assert "'wechatpay'" in message
    assert "api_v3_key" in message
    assert "platform_keys" in message
    assert "leaky-secret" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_create_refuses_another_channels_config() -> None:
    registry = ChannelRegistry.with_builtins()
    registry.register(fake.FakeAdapter)
    with pytest.raises(ConfigurationError, match="takes a AlipayConfig"):
        registry.create("alipay", fake.FakeConfig(secret="s"))
    with pytest.raises(ConfigurationError, match="takes a FakeConfig"):
        fake.FakeAdapter(registry.get("alipay").config_model.model_construct())  # type: ignore[arg-type]


def test_create_with_a_typed_config() -> None:
    registry = ChannelRegistry.with_builtins()
    config = registry.get("alipay").config_model.model_validate(
        {"alipay_public_key": support.public_pem(support.rsa_key("alipay"))}
    )
    adapter = registry.create("alipay", config)
    assert adapter.settlement.lag_days == 1
    assert adapter.settlement.fee.rate_ppm == 6000


# ── replay protection ─────────────────────────────────────────────────────────────────────


def test_nonce_store_remembers_until_expiry() -> None:
    store = InMemoryNonceStore()
    now = datetime(2024, 5, 1, tzinfo=UTC)
    later = now + timedelta(minutes=5)
    assert store.add("n1", expires_at=later, now=now)
    assert not store.add("n1", expires_at=later, now=now + timedelta(minutes=4))
    assert store.add("n2", expires_at=later, now=now)
    assert len(store) == 2
    assert store.add("n1", expires_at=later + timedelta(minutes=5), now=later)
    assert len(store) == 1
    with pytest.raises(NaiveDatetimeError):
        store.add("n3", expires_at=datetime(2024, 5, 1), now=now)


# ── wire helpers ──────────────────────────────────────────────────────────────────────────


def test_headers_are_case_insensitive_and_unambiguous() -> None:
    headers = Headers({"Wechatpay-Nonce": "abc", "CONTENT-TYPE": "x"}, source="t")
    assert headers.get("wechatpay-nonce") == "abc"
    assert headers.get("Content-Type") == "x"
    assert headers.get("missing") is None
    Headers({"A": "1", "a": "1"}, source="t")
    with pytest.raises(ParseError):
        Headers({"A": "1", "a": "2"}, source="t")


def test_parse_form_reads_the_declared_charset() -> None:
    body = "subject=电费+缴纳&charset=GBK&empty=".encode("gbk")
    fields, charset = parse_form(body, source="t", charset_field="charset")
    assert charset == "gbk"
    assert fields == {"subject": "电费 缴纳", "charset": "GBK", "empty": ""}
    fields, charset = parse_form(b"a=%2B1", source="t", charset_field="charset")
    assert (fields, charset) == ({"a": "+1"}, "utf-8")


def test_canonical_string_sorts_and_filters() -> None:
    params = {"b": "2", "a": "1", "sign": "x", "c": "", "sign_type": "RSA2"}
    assert canonical_string(params, exclude={"sign"}, drop_empty=True) == "a=1&b=2&sign_type=RSA2"
    assert canonical_string(params, exclude={"sign", "sign_type"}, drop_empty=False) == "a=1&b=2&c="


def test_source_lines_close_what_they_open_and_leave_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"a\r\nb\n\nc")
    assert list(iter_source_lines(path)) == [(1, b"a"), (2, b"b"), (3, b""), (4, b"c")]
    assert next(iter_source_lines(str(path))) == (1, b"a")
    stream = io.BytesIO(b"x\n")
    assert list(iter_source_lines(stream)) == [(1, b"x")]
    assert not stream.closed
    with pytest.raises(TypeError, match="binary"):
        list(iter_source_lines(io.StringIO("x\n")))  # type: ignore[arg-type]


def test_abandoned_statement_iteration_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"a\nb\n")
    lines = iter_source_lines(path)
    next(lines)
    lines.close()  # filterwarnings=error would turn a leaked file into a failure


# ── keys ──────────────────────────────────────────────────────────────────────────────────


def test_keys_load_in_each_published_form() -> None:
    key = support.rsa_key("alipay")
    for text in (
        support.public_pem(key),
        support.public_base64(key),
        support.certificate_pem(key, 99),
    ):
        loaded = load_verifying_key(text)
        assert loaded.public_key.public_numbers() == key.public_key().public_numbers()
    assert load_verifying_key(support.certificate_pem(key, 0xABC)).serial_hex == "ABC"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a key",
        "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----",
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
)
def test_unusable_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"key|certificate"):
        load_verifying_key(text)


# ── orders ────────────────────────────────────────────────────────────────────────────────


def test_order_store_refuses_a_different_order_under_the_same_id() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    order = new_order("online", "0101234567", Money(100, "CNY"), now=now, ttl=timedelta(minutes=5))
    store = InMemoryOrderStore()
    store.put(order)
    store.put(order)
    assert len(store) == 1
    with pytest.raises(ConflictError):
        store.put(order.model_copy(update={"amount": Money(200, "CNY")}))
    assert store.get("missing") is None
    assert not order.expired(now + timedelta(minutes=5))
    assert order.expired(now + timedelta(minutes=5, seconds=1))
    assert not order.expired(now + timedelta(minutes=6), grace=timedelta(minutes=1))


def test_orders_must_be_positive_and_expire_after_creation() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    base: dict[str, Any] = {
        "order_id": "O1",
        "channel": "online",
        "account_no": "0101234567",
        "amount": Money(100, "CNY"),
        "created_at": now,
        "expires_at": now + timedelta(minutes=1),
    }
    Order.model_validate(base)
    with pytest.raises(ValidationError):
        Order.model_validate({**base, "amount": Money(0, "CNY")})
    with pytest.raises(ValidationError):
        Order.model_validate({**base, "expires_at": now})
