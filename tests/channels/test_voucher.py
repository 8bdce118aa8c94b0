"""The ``voucher`` channel: redemption requests, their answers, and retailer statements.

Redemptions run against the real voucher service on SQLite and PostgreSQL, through the
adapter as the HTTP layer would call it; the sink the adapter is handed is never called.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretBytes

from paygate.channels.base import (
    BUILTIN_CHANNELS,
    ChannelRegistry,
    FeeSchedule,
    NotifyResult,
    Operation,
    SettlementRules,
)
from paygate.channels.voucher import (
    VOUCHER_STATEMENT_COLUMNS,
    VoucherAdapter,
    VoucherConfig,
    VoucherContext,
    parse_redeem_request,
    read_voucher_statement,
)
from paygate.clock import FixedClock
from paygate.errors import ParseError, UnsupportedOperationError
from paygate.gateway import Gateway
from paygate.models import Receipt, StatementLineKind
from paygate.money import Money
from paygate.vouchers import RedemptionPolicy, VoucherService, WrongPinError, make_serial
from tests.channels.support import RecordingSink

BEIJING = ZoneInfo("Asia/Shanghai")
KEY = SecretBytes(bytes(range(40, 72)))
ACCOUNT = "3100000001"


def yuan(text: str) -> Money:
    return Money.parse(text, "CNY")


def request(serial: str, pin: str, account: str = ACCOUNT, **extra: Any) -> bytes:
    return json.dumps(
        {"account_no": account, "serial": serial, "pin": pin, "source": "app:1", **extra}
    ).encode()


def answer(result: NotifyResult) -> dict[str, Any]:
    assert result.content_type == "application/json"
    loaded: dict[str, Any] = json.loads(result.body)
    return loaded


class Shop:
    """A gateway with one customer, a sold batch of five 50.00 cards, and the adapter."""

    def __init__(self, gateway: Gateway, *, policy: RedemptionPolicy | None = None, **config: Any):
        self.gateway = gateway
        gateway.open_account(ACCOUNT)
        self.service = VoucherService(gateway, KEY, policy=policy)
        out = io.BytesIO()
        issued = self.service.issue_batch("B1", 5, yuan("50.00"), date(2027, 1, 31), out)
        self.service.activate("B1", retailer="Shop 1")
        rows = out.getvalue().decode().splitlines()[1:]
        self.pins = {r.split(",")[1]: r.split(",")[2] for r in rows}
        self.serial = issued.first_serial
        self.adapter = VoucherAdapter(
            VoucherConfig.model_validate(config),
            VoucherContext(clock=gateway.clock, vouchers=self.service),
        )
        self.sink = RecordingSink()

    def redeem(self, body: bytes, headers: dict[str, str] | None = None) -> NotifyResult:
        return self.adapter.handle_redeem(
            body, headers or {"Content-Type": "application/json"}, self.sink
        )

    def sources(self) -> list[str]:
        rows = self.gateway.store.run(
            lambda tx: tx.all("SELECT source FROM voucher_attempts ORDER BY id"), write=False
        )
        return [str(r[0]) for r in rows]


@pytest.fixture
def shop(gateway: Gateway) -> Shop:
    return Shop(gateway)


# ── redemption ───────────────────────────────────────────────────────────────────────────


class TestRedeem:
    def test_a_card_redeems_and_a_repeat_is_answered_with_the_same_receipt(
        self, shop: Shop
    ) -> None:
        first = shop.redeem(request(shop.serial, shop.pins[shop.serial]))
        assert first.ok and first.status_code == 200
        assert isinstance(first.receipt, Receipt) and not first.receipt.replayed
        body = answer(first)
        assert body["result"] == "redeemed"
        assert body["receipt"]["channel_txn_id"] == shop.serial
        assert body["receipt"]["amount"] == {"minor": 5000, "currency": "CNY"}
        again = shop.redeem(request(shop.serial, shop.pins[shop.serial]))
        assert again.ok and answer(again)["result"] == "replayed"
        assert again.receipt is not None and again.receipt.payment_id == first.receipt.payment_id
        assert shop.gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-200.00")
        assert shop.sink.calls == 0

    def test_refusals_carry_a_code_and_what_a_program_needs(self, shop: Shop) -> None:
        wrong = shop.redeem(request(shop.serial, "0" * 16))
        assert (wrong.status_code, wrong.error_code) == (401, "wrong_pin")
        assert answer(wrong) == {
            "result": "refused",
            "code": "wrong_pin",
            "message": wrong.error,
            "field": "pin",
            "attempts_left": 4,
        }
        unknown = shop.redeem(request(make_serial(99_999_999_999), "0" * 16))
        assert (unknown.status_code, unknown.error_code) == (404, "unknown_voucher")
        typo = shop.redeem(request(shop.serial[:-1] + "x", "0" * 16))
        assert (typo.status_code, typo.error_code) == (400, "invalid_serial")
        shop.gateway.open_account("3100000002")
        shop.redeem(request(shop.serial, shop.pins[shop.serial]))
        taken = shop.redeem(request(shop.serial, shop.pins[shop.serial], "3100000002"))
        assert (taken.status_code, taken.error_code) == (409, "voucher_already_redeemed")
        assert shop.sink.calls == 0

    def test_throttling_is_answered_429_with_the_retry_time(self, gateway: Gateway) -> None:
        shop = Shop(gateway, policy=RedemptionPolicy(account_failures=1))
        shop.redeem(request(shop.serial, "0" * 16))
        throttled = shop.redeem(request(shop.serial, shop.pins[shop.serial]))
        assert (throttled.status_code, throttled.error_code) == (429, "redemption_throttled")
        retry_at = datetime.fromisoformat(answer(throttled)["retry_at"])
        assert retry_at == gateway.clock.now() + timedelta(hours=1)

    def test_a_trusted_source_header_replaces_the_clients_word(self, gateway: Gateway) -> None:
        shop = Shop(gateway, source_header="X-Paygate-Client")
        result = shop.redeem(
            request(shop.serial, "0" * 16, source="whatever-i-like"),
            {"x-paygate-client": "device:K-0042"},
        )
        assert result.error_code == "wrong_pin"
        missing = shop.redeem(request(shop.serial, "0" * 16))
        assert (missing.status_code, missing.error_code) == (400, "parse_error")
        assert "X-Paygate-Client" in (missing.error or "")
        assert shop.sources() == ["device:K-0042"]

    def test_unreadable_requests_are_refused_before_the_service(self, shop: Shop) -> None:
        number_pin = {"account_no": ACCOUNT, "serial": shop.serial, "pin": 1234, "source": "s"}
        no_source = {"account_no": ACCOUNT, "serial": shop.serial, "pin": "1"}
        twice = b'{"account_no": "A", "serial": "1", "pin": "2", "pin": "3", "source": "s"}'
        for body, field in (
            (b"{not json", "body"),
            (b"[]", "body"),
            (b"\xff", "body"),
            (json.dumps(number_pin).encode(), "pin"),
            (request(shop.serial, "1" * 16, unexpected="x"), "unexpected"),
            (twice, "pin"),
            (json.dumps(no_source).encode(), "source"),
        ):
            result = shop.redeem(body)
            assert (result.status_code, result.error_code) == (400, "parse_error"), body
            assert field in (result.error or ""), (body, result.error)
        assert shop.sources() == []  # nothing reached the service
        big = shop.redeem(b"{" + b" " * 5000 + b"}")
        assert (big.status_code, big.error_code) == (413, "payload_too_large")

    def test_no_voucher_service_is_a_configuration_problem(self) -> None:
        adapter = VoucherAdapter(VoucherConfig())
        result = adapter.handle_redeem(request(make_serial(10**10), "1" * 16), {}, RecordingSink())
        assert (result.status_code, result.error_code) == (503, "configuration_error")

    def test_the_pin_appears_in_no_answer_log_or_repr(
        self, shop: Shop, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        pin = shop.pins[shop.serial]
        seen = []
        for body in (
            request(shop.serial, pin[:-1] + "x"),
            request(pin, shop.serial),  # PIN and serial swapped
            json.dumps({"account_no": ACCOUNT, "serial": shop.serial, "pin": [pin]}).encode(),
            request(shop.serial, pin),
            request(shop.serial, pin),
        ):
            result = shop.redeem(body)
            seen.append(repr(result) + result.body.decode() + str(result.error))
        seen.append(repr(parse_redeem_request(request(shop.serial, pin))))
        seen.append(repr(shop.adapter) + repr(shop.adapter.config) + repr(shop.adapter.context))
        shown = caplog.text + "".join(seen)
        assert "message refused" in caplog.text
        assert pin not in shown and pin[:-1] not in shown


# ── statement ────────────────────────────────────────────────────────────────────────────

FIRST = make_serial(10_000_000_100)
TENTH = make_serial(10_000_000_109)
ELEVENTH = make_serial(10_000_000_110)
TWELFTH = make_serial(10_000_000_111)
HEADER = ",".join(VOUCHER_STATEMENT_COLUMNS)


def statement(*rows: str, bom: bool = False) -> io.BytesIO:
    text = "\n".join((HEADER, *rows)) + "\n"
    stream = io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    stream.name = "shop1_20261125.csv"
    return stream


class TestStatement:
    def test_runs_of_sold_cards_become_payment_lines(self) -> None:
        adapter = VoucherAdapter(VoucherConfig())
        lines = list(
            adapter.read_statement(
                statement(
                    f"B1,{FIRST},{TENTH},50.00,10,10.00,490.00,2026-11-25 18:30:00",
                    "",
                    f"B1,{ELEVENTH},{TWELFTH},50.00,2,2.00,98.00,2026-11-25 23:59:59",
                    bom=True,
                )
            )
        )
        assert [line.line_no for line in lines] == [2, 4]
        first, second = lines
        assert first.kind is StatementLineKind.PAYMENT
        assert (first.gross, first.fee, first.net) == (
            yuan("500.00"),
            yuan("10.00"),
            yuan("490.00"),
        )
        assert first.channel_txn_id == f"B1:{FIRST}-{TENTH}" and first.reference == "B1"
        assert first.account_no is None
        assert first.occurred_at == datetime(2026, 11, 25, 18, 30, tzinfo=BEIJING)
        assert second.gross == yuan("100.00")
        settlement = adapter.settlement
        day = settlement.business_date(second.occurred_at)
        assert day == date(2026, 11, 25) and settlement.settlement_date(day) == date(2026, 11, 26)

    @pytest.mark.parametrize(
        ("row", "field"),
        [
            (f"B1,{FIRST[:-1]}0,{TENTH},50.00,10,10.00,490.00,2026-11-25 18:30:00", "serial_first"),
            (f"B1,{FIRST},{TENTH},50.00,9,10.00,490.00,2026-11-25 18:30:00", "sold_count"),
            (f"B1,{TENTH},{FIRST},50.00,10,10.00,490.00,2026-11-25 18:30:00", "serial_last"),
            (f"B1,{FIRST},{TENTH},50.00,10,10.00,489.00,2026-11-25 18:30:00", "net"),
            (f"B1,{FIRST},{TENTH},50.001,10,10.00,490.00,2026-11-25 18:30:00", "face_value"),
            (f"B1,{FIRST},{TENTH},50.00,10,-1.00,501.00,2026-11-25 18:30:00", "fee"),
            (f"B1,{FIRST},{TENTH},50.00,10,10.00,490.00,25/11/2026", "sold_at"),
            (f",{FIRST},{TENTH},50.00,10,10.00,490.00,2026-11-25 18:30:00", "batch_no"),
        ],
    )
    def test_a_bad_line_is_refused_by_line_and_field(self, row: str, field: str) -> None:
        with pytest.raises(ParseError) as caught:
            list(read_voucher_statement(statement(row), currency="CNY", timezone="Asia/Shanghai"))
        assert (caught.value.source, caught.value.line, caught.value.field) == (
            "shop1_20261125.csv",
            2,
            field,
        )

    def test_a_file_that_is_not_a_card_sales_statement_is_refused(self) -> None:
        adapter = VoucherAdapter(VoucherConfig())
        with pytest.raises(ParseError, match="header"):
            list(adapter.read_statement(io.BytesIO(b"serial,pin\n")))
        with pytest.raises(ParseError, match="empty file"):
            list(adapter.read_statement(io.BytesIO(b"")))
        with pytest.raises(ParseError, match="expected 8 fields"):
            list(adapter.read_statement(statement("B1,1,2")))


# ── what the shared contract suite (contract.py) builds from ─────────────────────────────


class NoCardRedeemer:
    """Stands in for the voucher service: every PIN is wrong, nothing is ever redeemed."""

    def redeem(self, account_no: str, serial: str, pin: str, *, source: str) -> Receipt:
        raise WrongPinError(f"wrong PIN for card {serial}", attempts_left=4)


def contract_adapter() -> VoucherAdapter:
    """The adapter the contract suite checks, with a redeemer that needs no database."""
    return VoucherAdapter(VoucherConfig(), VoucherContext(vouchers=NoCardRedeemer()))


def contract_forged(adapter: Any) -> tuple[bytes, dict[str, str]]:
    """The PIN is the card's credential: a well-formed redemption with a wrong one."""
    return request(FIRST, "0" * 16, "0101234567"), {"Content-Type": "application/json"}


MALFORMED_REDEMPTION = b'{"account_no": "0101234567", "serial": '
CARD_SALES_STATEMENT = (
    f"{HEADER}\nB1,{FIRST},{TENTH},50.00,10,10.00,490.00,2024-05-01 18:30:00\n".encode()
)


def test_the_contract_inputs_are_what_they_claim() -> None:
    adapter = contract_adapter()
    sink = RecordingSink()
    forged = adapter.handle_redeem(*contract_forged(adapter), sink)
    assert (forged.status_code, forged.error_code) == (401, "wrong_pin")
    malformed = adapter.handle_redeem(MALFORMED_REDEMPTION, {}, sink)
    assert (malformed.status_code, malformed.error_code) == (400, "parse_error")
    assert len(list(adapter.read_statement(io.BytesIO(CARD_SALES_STATEMENT)))) == 1
    assert sink.calls == 0


# ── settlement and registration ──────────────────────────────────────────────────────────


def test_retailers_settle_t_plus_1_less_the_contracted_commission() -> None:
    default = VoucherConfig().settlement
    assert (default.lag_days, default.cutoff, default.fee.fee(yuan("500.00"))) == (
        1,
        time(0, 0),
        yuan("0"),
    )
    contracted = VoucherConfig(
        settlement=SettlementRules(lag_days=1, fee=FeeSchedule(rate_ppm=20_000))
    )
    assert contracted.settlement.fee.fee(yuan("500.00")) == yuan("10.00")


def test_the_adapter_offers_redeem_and_statement_only() -> None:
    assert "paygate.channels.voucher:VoucherAdapter" in BUILTIN_CHANNELS
    registry = ChannelRegistry()
    registry.register(VoucherAdapter)
    adapter = registry.create(
        "voucher",
        {"source_header": "X-Client"},
        VoucherContext(clock=FixedClock(datetime(2026, 11, 25, tzinfo=UTC))),
    )
    assert adapter.operations == frozenset({Operation.REDEEM, Operation.STATEMENT})
    with pytest.raises(UnsupportedOperationError, match="voucher"):
        adapter.handle_notify(b"{}", {}, RecordingSink())
    assert "voucher" in repr(adapter)


def test_the_pin_key_in_the_environment_is_what_the_service_uses(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYGATE_VOUCHER_PIN_KEY", base64.b64encode(KEY.get_secret_value()).decode())
    service = VoucherService.from_env(gateway)
    adapter = VoucherAdapter(VoucherConfig(), VoucherContext(vouchers=service))
    result = adapter.handle_redeem(request(make_serial(10**10), "1" * 16), {}, RecordingSink())
    assert result.error_code == "unknown_voucher"
