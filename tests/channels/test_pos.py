"""POS terminals: MAC-checked sales, same-batch voids, batch settlement, the acquirer's CSV.

Messages are MACed here by an independent signer written from the rule in docs/channels/pos.md
(sorted ``k=v&…`` of every field but ``mac``, HMAC-SHA256, hex), with keys generated per run.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.channels.base import (
    AdapterContext,
    ChannelRegistry,
    NotifyResult,
    PaymentSink,
)
from paygate.channels.pos import (
    POS_STATEMENT_COLUMNS,
    PosAdapter,
    PosConfig,
    PosContext,
    pos_mac,
    pos_mac_string,
    pos_txn_id,
    read_pos_statement,
    verify_pos_message,
)
from paygate.clock import FixedClock
from paygate.errors import (
    AuthenticationError,
    ConfigurationError,
    ParseError,
    UnknownAccountError,
    UnsupportedOperationError,
)
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt, StatementLineKind
from paygate.money import Money
from tests.channels import support
from tests.channels.strategies import bodies, mutated
from tests.channels.support import RecordingSink

BEIJING = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 5, 1, 2, 15, tzinfo=UTC)  # 10:15 Beijing time
TERMINAL = "HALL0001"
OTHER_TERMINAL = "HALL0002"
MERCHANT = "898310048990001"
TERMINAL_KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
ACCOUNT = "0101234567"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ── in-memory collaborators: what the device registry and the core will provide ───────────


class TerminalKeyRing:
    """:class:`~paygate.channels.pos.TerminalKeys` in memory, with revocation."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self._keys = dict(keys)
        self._revoked: set[str] = set()

    def mac_key(self, terminal_id: str) -> bytes | None:
        if terminal_id in self._revoked:
            return None
        return self._keys.get(terminal_id)

    def revoke(self, terminal_id: str) -> None:
        self._revoked.add(terminal_id)


class BatchBook:
    """A PaymentSink in front of another that also keeps the POS channel's batches:
    :class:`~paygate.channels.pos.PosLedger` in memory, as the core will on its tables."""

    def __init__(self, sink: PaymentSink, currency: str = "CNY") -> None:
        self.sink = sink
        self.currency = currency
        self._sales: dict[str, Money] = {}
        self._closed: dict[tuple[str, str], datetime] = {}

    def pay(self, intent: PaymentIntent) -> Receipt:
        receipt = self.sink.pay(intent)
        if intent.channel == "pos":
            self._sales[intent.channel_txn_id] = intent.amount
        return receipt

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> object:
        result = self.sink.reverse_by_channel_txn(channel, channel_txn_id, reason)
        if channel == "pos":
            self._sales.pop(channel_txn_id, None)
        return result

    def batch_totals(self, terminal_id: str, batch_no: str) -> tuple[int, Money]:
        prefix = f"{terminal_id}-{batch_no}-"
        amounts = [amount for txn, amount in self._sales.items() if txn.startswith(prefix)]
        return len(amounts), sum(amounts, Money.zero(self.currency))

    def batch_closed(self, terminal_id: str, batch_no: str) -> bool:
        return (terminal_id, batch_no) in self._closed

    def close_batch(self, terminal_id: str, batch_no: str, *, closed_at: datetime) -> None:
        self._closed.setdefault((terminal_id, batch_no), closed_at)


# ── an independent signer ────────────────────────────────────────────────────────────────


def signed(values: dict[str, str], key: bytes = TERMINAL_KEY) -> bytes:
    """A form body MACed as docs/channels/pos.md describes."""
    text = "&".join(f"{name}={value}" for name, value in sorted(values.items()) if name != "mac")
    mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return support.form_encode({**values, "mac": mac})


def fields(msg_type: str, trace: str, /, *, at: datetime = NOW, **extra: str) -> dict[str, str]:
    values = {
        "msg_type": msg_type,
        "terminal_id": TERMINAL,
        "merchant_id": MERCHANT,
        "batch_no": "000001",
        "trace_no": trace,
        "timestamp": str(int(at.timestamp())),
    }
    values.update(extra)
    return values


def sale(trace: str = "000101", *, amount: str = "12050", **extra: str) -> dict[str, str]:
    return fields(
        "sale",
        trace,
        **{"account_no": ACCOUNT, "amount": amount, "card_type": "debit", **extra},
    )


def void(trace: str, orig_trace: str, /, *, amount: str = "12050", **extra: str) -> dict[str, str]:
    return fields("void", trace, **{"orig_trace_no": orig_trace, "amount": amount, **extra})


def settle(
    trace: str,
    sale_count: int,
    sale_amount: int,
    void_count: int,
    void_amount: int,
    /,
    **extra: str,
) -> dict[str, str]:
    return fields(
        "settle",
        trace,
        **{
            "sale_count": str(sale_count),
            "sale_amount": str(sale_amount),
            "void_count": str(void_count),
            "void_amount": str(void_amount),
            **extra,
        },
    )


ROUTES = {"sale": "pay", "void": "void", "settle": "daily_close"}
"""The operation that takes each message type, as the HTTP layer routes them."""


def answer(result: NotifyResult) -> dict[str, str]:
    return dict(parse_qsl(result.body.decode("ascii"), keep_blank_values=True))


def pos_adapter(book: BatchBook | None = None, clock: FixedClock | None = None) -> PosAdapter:
    """The adapter the contract suite and the tests below use."""
    keys = TerminalKeyRing({TERMINAL: TERMINAL_KEY, OTHER_TERMINAL: OTHER_KEY})
    return PosAdapter(
        PosConfig(merchant_ids=(MERCHANT,)),
        PosContext(
            clock=clock or FixedClock(NOW),
            terminal_keys=keys,
            ledger=book or BatchBook(RecordingSink()),
        ),
    )


class Hall:
    """One service hall: an adapter, its clock and key ring, a recording sink and the book."""

    def __init__(self, sink: RecordingSink | None = None, **config: Any) -> None:
        self.clock = FixedClock(NOW)
        self.keys = TerminalKeyRing({TERMINAL: TERMINAL_KEY, OTHER_TERMINAL: OTHER_KEY})
        self.sink = sink or RecordingSink()
        self.book = BatchBook(self.sink)
        self.adapter = PosAdapter(
            PosConfig.model_validate({"merchant_ids": [MERCHANT], **config}),
            PosContext(clock=self.clock, terminal_keys=self.keys, ledger=self.book),
        )

    def send(self, body: bytes, operation: str = "pay") -> NotifyResult:
        handler = getattr(self.adapter, f"handle_{operation}")
        result: NotifyResult = handler(body, {}, self.book)
        return result


def refused_with(result: NotifyResult, code: str, status: int) -> None:
    assert not result.ok
    assert (result.error_code, result.status_code) == (code, status)
    assert answer(result) == {"result": "refused", "error_code": code}
    assert result.receipt is None


# ── the MAC rule ──────────────────────────────────────────────────────────────────────────


def test_the_mac_covers_every_field_but_mac_sorted_empty_ones_included() -> None:
    params = {"trace_no": "000101", "amount": "12050", "mac": "x", "note": "", "batch_no": "1"}
    assert pos_mac_string(params) == "amount=12050&batch_no=1&note=&trace_no=000101"
    expected = hmac.new(
        b"k" * 16, b"amount=12050&batch_no=1&note=&trace_no=000101", hashlib.sha256
    ).hexdigest()
    assert pos_mac(b"k" * 16, params) == expected


def test_a_mac_in_upper_case_hex_verifies() -> None:
    hall = Hall()
    values = sale()
    text = "&".join(f"{k}={v}" for k, v in sorted(values.items()))
    mac = hmac.new(TERMINAL_KEY, text.encode(), hashlib.sha256).hexdigest().upper()
    assert hall.send(support.form_encode({**values, "mac": mac})).ok


# ── sales ─────────────────────────────────────────────────────────────────────────────────


def test_a_sale_posts_once_with_the_terminal_and_a_per_channel_unique_id() -> None:
    hall = Hall()
    result = hall.send(signed(sale()), "pay")
    assert result.ok
    assert result.status_code == 200
    assert result.content_type == "application/x-www-form-urlencoded; charset=utf-8"
    (intent,) = hall.sink.pay_calls
    assert intent.channel == "pos"
    assert (
        intent.channel_txn_id
        == "HALL0001-000001-000101"
        == pos_txn_id(TERMINAL, "000001", "000101")
    )
    assert intent.terminal_id == TERMINAL
    assert intent.account_no == ACCOUNT
    assert intent.amount == Money(12050, "CNY")
    assert intent.paid_at == NOW
    assert result.receipt is not None
    assert answer(result) == {
        "result": "approved",
        "msg_type": "sale",
        "terminal_id": TERMINAL,
        "batch_no": "000001",
        "trace_no": "000101",
        "txn_id": "HALL0001-000001-000101",
        "payment_id": str(result.receipt.payment_id),
        "account_no": ACCOUNT,
        "amount": "12050",
        "replayed": "false",
    }


def test_the_same_trace_on_two_terminals_is_two_payments() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    other = signed(sale(terminal_id=OTHER_TERMINAL), OTHER_KEY)
    assert hall.send(other).ok
    assert len(hall.sink.posted) == 2
    assert {r.channel_txn_id for r in hall.sink.posted} == {
        "HALL0001-000001-000101",
        "HALL0002-000001-000101",
    }


def test_handle_pay_takes_only_sales() -> None:
    hall = Hall()
    assert hall.send(signed(sale()), "pay").ok
    result = hall.send(signed(void("000102", "000101")), "pay")
    refused_with(result, "parse_error", 400)
    assert "msg_type" in (result.error or "")
    assert hall.sink.reversals == []


# ── refusals: nothing is paid ─────────────────────────────────────────────────────────────


def test_a_forged_mac_is_refused() -> None:
    hall = Hall()
    body = signed(sale()).replace(b"amount=12050", b"amount=92050")
    refused_with(hall.send(body), "invalid_signature", 401)
    assert hall.sink.calls == 0


def test_a_mac_made_with_another_key_is_refused() -> None:
    hall = Hall()
    refused_with(hall.send(signed(sale(), secrets.token_bytes(32))), "invalid_signature", 401)
    # Another terminal's key is another key too.
    refused_with(hall.send(signed(sale("000102"), OTHER_KEY)), "invalid_signature", 401)
    assert hall.sink.calls == 0


def test_a_message_without_mac_is_refused() -> None:
    hall = Hall()
    refused_with(hall.send(support.form_encode(sale())), "invalid_signature", 401)
    assert hall.sink.calls == 0


def test_an_unknown_terminal_is_refused() -> None:
    hall = Hall()
    body = signed(sale(terminal_id="HALL0099"))
    refused_with(hall.send(body), "unknown_terminal", 401)
    assert hall.sink.calls == 0


def test_a_revoked_terminal_is_refused() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    hall.keys.revoke(TERMINAL)
    refused_with(hall.send(signed(sale("000102"))), "unknown_terminal", 401)
    assert len(hall.sink.pay_calls) == 1


def test_a_terminal_key_too_short_to_trust_is_a_configuration_fault() -> None:
    hall = Hall()
    hall.keys = TerminalKeyRing({TERMINAL: b"short"})
    adapter = PosAdapter(
        hall.adapter.config,
        PosContext(clock=hall.clock, terminal_keys=hall.keys, ledger=hall.book),
    )
    result = adapter.handle_pay(signed(sale(), b"short"), {}, hall.book)
    assert (result.error_code, result.status_code) == ("configuration_error", 503)
    assert hall.sink.calls == 0


def test_a_replayed_trace_number_is_refused() -> None:
    hall = Hall()
    body = signed(sale())
    assert hall.send(body).ok
    refused_with(hall.send(body), "nonce_reused", 401)
    # A different message that reuses the trace number within the window is refused too.
    refused_with(hall.send(signed(sale(amount="500"))), "nonce_reused", 401)
    assert len(hall.sink.pay_calls) == 1


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_timestamp_outside_the_window_is_refused(offset: timedelta) -> None:
    hall = Hall()
    refused_with(hall.send(signed(sale(at=NOW + offset))), "stale_timestamp", 401)
    assert hall.sink.calls == 0


def test_a_replay_after_the_window_is_stale() -> None:
    hall = Hall()
    body = signed(sale())
    assert hall.send(body).ok
    hall.clock.advance(timedelta(minutes=6))
    refused_with(hall.send(body), "stale_timestamp", 401)
    assert len(hall.sink.pay_calls) == 1


def test_a_message_for_another_merchant_is_refused() -> None:
    hall = Hall()
    refused_with(hall.send(signed(sale(merchant_id="898310048990999"))), "merchant_mismatch", 401)
    assert hall.sink.calls == 0


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "invalid_amount"),
        ("12.50", "parse_error"),
        ("-100", "parse_error"),
        ("10000000001", "invalid_amount"),  # above the default largest single payment
    ],
)
def test_a_wrong_amount_is_refused(amount: str, code: str) -> None:
    hall = Hall()
    refused_with(hall.send(signed(sale(amount=amount))), code, 400)
    assert hall.sink.calls == 0


def test_an_unknown_account_is_refused_by_the_core() -> None:
    hall = Hall(RecordingSink(fail_with=UnknownAccountError("no account 0101234567")))
    refused_with(hall.send(signed(sale())), "unknown_account", 404)
    assert hall.sink.posted == []
    assert hall.book.batch_totals(TERMINAL, "000001") == (0, Money.zero("CNY"))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"msg_type=sale&mac",
        b"msg_type=sale&terminal_id=HALL0001&mac=%G1",
        b"msg_type=sale&mac=00",
        b"msg_type=sale&terminal_id=HALL%0A0001&mac=00",
    ],
)
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    hall = Hall()
    refused_with(hall.send(body), "parse_error", 400)
    assert hall.sink.calls == 0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        (sale(account_no=""), "account_no"),
        ({k: v for k, v in sale().items() if k != "amount"}, "amount"),
        (sale(msg_type="topup"), "msg_type"),
        (sale(batch_no="1"), "batch_no"),
        (sale(trace_no="00010A"), "trace_no"),
        (void("000102", ""), "orig_trace_no"),
        (settle("000103", 1, 100, 0, 0, void_count=""), "void_count"),
        (sale(account_no="0101 234567"), "account_no"),
    ],
)
def test_verified_messages_missing_or_bad_fields_name_the_field(
    values: dict[str, str], field: str
) -> None:
    hall = Hall()
    result = hall.send(signed(values), ROUTES.get(values["msg_type"], "pay"))
    refused_with(result, "parse_error", 400)
    assert field in (result.error or "")
    assert hall.sink.calls == 0


def test_an_oversized_body_is_refused_unread() -> None:
    hall = Hall(max_body_bytes=1024)
    body = signed(sale(note="x" * 2000))
    refused_with(hall.send(body), "payload_too_large", 413)
    assert hall.sink.calls == 0


def test_refunds_are_not_taken_from_the_terminal() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    body = signed(
        fields(
            "refund", "000201", batch_no="000002", orig_batch_no="000001", orig_trace_no="000101"
        )
    )
    with pytest.raises(UnsupportedOperationError, match="'pos' does not offer the 'refund'"):
        hall.adapter.handle_refund(body, {}, hall.book)
    # Nor can a refund pass as another message: its type is under the MAC.
    for operation in ("pay", "void", "daily_close"):
        result = hall.send(body, operation)
        refused_with(result, "parse_error", 400)
        assert "msg_type" in (result.error or "")
    assert hall.sink.reversals == []
    assert len(hall.sink.pay_calls) == 1


# ── voids ─────────────────────────────────────────────────────────────────────────────────


def test_a_void_in_the_same_batch_reverses_the_sale() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    result = hall.send(signed(void("000102", "000101")), "void")
    assert result.ok
    assert result.receipt is None
    assert answer(result)["result"] == "voided"
    ((channel, txn, reason),) = hall.sink.reversals
    assert (channel, txn) == ("pos", "HALL0001-000001-000101")
    assert "HALL0001-000001-000102" in reason
    assert hall.book.batch_totals(TERMINAL, "000001") == (0, Money.zero("CNY"))


def test_a_repeated_void_is_acknowledged_without_reversing_twice() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    assert hall.send(signed(void("000102", "000101")), "void").ok
    again = hall.send(signed(void("000103", "000101")), "void")
    assert again.ok
    assert answer(again)["result"] == "already_voided"


def test_a_void_of_a_sale_paygate_never_posted_is_refused_as_unknown() -> None:
    hall = Hall()
    refused_with(hall.send(signed(void("000102", "000101")), "void"), "unknown_payment", 404)


def test_a_void_after_the_batch_settled_is_refused() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    assert hall.send(signed(settle("000102", 1, 12050, 0, 0)), "daily_close").ok
    # The same batch number, after the terminal settled it …
    refused_with(hall.send(signed(void("000103", "000101")), "void"), "batch_settled", 409)
    # … and the terminal's next batch naming the sale's batch.
    later = void("000104", "000101", batch_no="000002", orig_batch_no="000001")
    refused_with(hall.send(signed(later), "void"), "batch_settled", 409)
    assert hall.sink.reversals == []


def test_a_sale_into_a_settled_batch_is_refused() -> None:
    hall = Hall()
    assert hall.send(signed(settle("000100", 0, 0, 0, 0)), "daily_close").ok
    refused_with(hall.send(signed(sale())), "batch_settled", 409)
    assert hall.sink.calls == 0


# ── batch settlement ──────────────────────────────────────────────────────────────────────


def test_batch_totals_that_match_are_answered_match() -> None:
    hall = Hall()
    assert hall.send(signed(sale("000101"))).ok
    assert hall.send(signed(sale("000102", amount="3000"))).ok
    assert hall.send(signed(void("000103", "000102", amount="3000")), "void").ok
    result = hall.send(signed(settle("000104", 2, 15050, 1, 3000)), "daily_close")
    assert result.ok
    assert answer(result) == {
        "result": "settled",
        "msg_type": "settle",
        "terminal_id": TERMINAL,
        "batch_no": "000001",
        "trace_no": "000104",
        "settle_result": "match",
        "reported_count": "1",
        "reported_amount": "12050",
        "ledger_count": "1",
        "ledger_amount": "12050",
    }
    assert hall.book.batch_closed(TERMINAL, "000001")


def test_batch_totals_that_differ_are_answered_mismatch_and_the_batch_closes() -> None:
    hall = Hall()
    assert hall.send(signed(sale("000101"))).ok
    # The terminal believes it took a second sale that paygate never received.
    result = hall.send(signed(settle("000103", 2, 15050, 0, 0)), "daily_close")
    assert result.ok
    reply = answer(result)
    assert reply["settle_result"] == "mismatch"
    assert (reply["reported_count"], reply["reported_amount"]) == ("2", "15050")
    assert (reply["ledger_count"], reply["ledger_amount"]) == ("1", "12050")
    assert hall.book.batch_closed(TERMINAL, "000001")


def test_a_repeated_settlement_gets_the_same_answer() -> None:
    hall = Hall()
    assert hall.send(signed(sale())).ok
    first = hall.send(signed(settle("000102", 1, 12050, 0, 0)), "daily_close")
    second = hall.send(signed(settle("000103", 1, 12050, 0, 0)), "daily_close")
    assert answer(first) | {"trace_no": "x"} == answer(second) | {"trace_no": "x"}


def test_impossible_batch_totals_are_refused() -> None:
    hall = Hall()
    refused_with(
        hall.send(signed(settle("000102", 1, 100, 2, 100)), "daily_close"), "parse_error", 400
    )
    refused_with(
        hall.send(signed(settle("000103", 1, 100, 1, 200)), "daily_close"), "parse_error", 400
    )
    assert not hall.book.batch_closed(TERMINAL, "000001")


# ── construction ──────────────────────────────────────────────────────────────────────────


def test_the_adapter_needs_a_pos_context() -> None:
    config = PosConfig(merchant_ids=(MERCHANT,))
    with pytest.raises(ConfigurationError, match="PosContext"):
        PosAdapter(config)
    with pytest.raises(ConfigurationError, match="PosContext"):
        PosAdapter(config, AdapterContext())
    with pytest.raises(ConfigurationError, match="PosContext"):
        PosAdapter(config, PosContext(terminal_keys=TerminalKeyRing({})))


@pytest.mark.parametrize(
    "values",
    [
        {"merchant_ids": []},
        {"merchant_ids": ["12345"]},
        {"merchant_ids": [MERCHANT], "timestamp_window": "PT20M"},
        {"merchant_ids": [MERCHANT], "timestamp_window": "PT0S"},
    ],
)
def test_bad_configuration_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ChannelRegistry.with_builtins().create(
            "pos",
            values,
            PosContext(terminal_keys=TerminalKeyRing({}), ledger=BatchBook(RecordingSink())),
        )


def test_the_registry_creates_a_working_adapter() -> None:
    hall = Hall()
    adapter = ChannelRegistry.with_builtins().create(
        "pos",
        {"merchant_ids": [MERCHANT]},
        PosContext(clock=hall.clock, terminal_keys=hall.keys, ledger=hall.book),
    )
    assert adapter.handle_pay(signed(sale()), {}, hall.book).ok
    assert TERMINAL_KEY.hex() not in repr(adapter) + repr(adapter.config)


# ── settlement rules ──────────────────────────────────────────────────────────────────────


def test_settlement_is_t_plus_one_with_a_23_00_cutoff_and_a_capped_rate() -> None:
    rules = Hall().adapter.settlement
    assert rules.business_date(datetime(2024, 5, 1, 22, 59, 59, tzinfo=BEIJING)) == date(2024, 5, 1)
    assert rules.business_date(datetime(2024, 5, 1, 23, 0, tzinfo=BEIJING)) == date(2024, 5, 2)
    assert rules.settlement_date(date(2024, 5, 1)) == date(2024, 5, 2)
    assert rules.fee.fee(Money(12050, "CNY")) == Money(60, "CNY")  # 0.5 % of 120.50, rounded
    assert rules.fee.fee(Money(50, "CNY")) == Money(1, "CNY")  # the minimum
    assert rules.fee.fee(Money(1_000_000, "CNY")) == Money(2000, "CNY")  # the cap


# ── statement ─────────────────────────────────────────────────────────────────────────────

POS_STATEMENT = (
    "\ufeff" + ",".join(POS_STATEMENT_COLUMNS) + "\n"
    "898310048990001,HALL0001,000001,000101,debit,sale,120.50,0.60,119.90,"
    "2024-05-01 10:15:00,,\n"
    "898310048990001,HALL0001,000001,000102,credit,sale,30.00,0.15,29.85,"
    "2024-05-01 10:20:00,,\n"
    "898310048990001,HALL0001,000001,000103,credit,void,30.00,0.15,29.85,"
    "2024-05-01 10:21:00,,000102\n"
    "898310048990001,HALL0002,000007,000011,debit,refund,50.00,0.25,49.75,"
    "2024-05-01 16:40:00,000006,000005\n"
).encode("utf-8")
"""A sample of the acquirer's settlement detail: two sales, a void, a refund."""


def test_statement_rows_become_lines() -> None:
    lines = list(read_pos_statement(io.BytesIO(POS_STATEMENT), currency="CNY"))
    assert [line.line_no for line in lines] == [2, 3, 4, 5]
    assert [line.kind for line in lines] == [
        StatementLineKind.PAYMENT,
        StatementLineKind.PAYMENT,
        StatementLineKind.VOID,
        StatementLineKind.REFUND,
    ]
    first, _, voided, refund = lines
    assert first.channel_txn_id == "HALL0001-000001-000101"
    assert (first.gross, first.fee, first.net) == (
        Money(12050, "CNY"),
        Money(60, "CNY"),
        Money(11990, "CNY"),
    )
    assert first.occurred_at == datetime(2024, 5, 1, 10, 15, tzinfo=BEIJING)
    assert voided.original_txn_id == "HALL0001-000001-000102"
    assert refund.channel_txn_id == "HALL0002-000007-000011"
    assert refund.original_txn_id == "HALL0002-000006-000005"


def _row(**changes: str) -> bytes:
    first_sale = POS_STATEMENT.decode("utf-8-sig").splitlines()[1]
    row = dict(zip(POS_STATEMENT_COLUMNS, first_sale.split(","), strict=True))
    row.update(changes)
    header = ",".join(POS_STATEMENT_COLUMNS)
    return f"{header}\n{','.join(row.values())}\n".encode()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"net": "120.50"}, "net"),
        ({"amount": "12O.50"}, "amount"),
        ({"amount": "120.505"}, "amount"),
        # Amounts a lenient reader took as something else.
        ({"amount": "1_20.50", "net": "119.78"}, "amount"),
        ({"amount": "+120.50"}, "amount"),
        ({"amount": "1.205e2", "net": "119.78"}, "amount"),
        ({"amount": "１２０.５０"}, "amount"),
        ({"fee": "0.720"}, "fee"),  # three decimals, however zero
        ({"txn_type": "topup"}, "txn_type"),
        ({"card_type": "gold"}, "card_type"),
        ({"terminal_id": "HALL01"}, "terminal_id"),
        ({"trace_no": "101"}, "trace_no"),
        ({"txn_type": "void"}, "orig_trace_no"),
        ({"txn_type": "refund", "orig_trace_no": "000005"}, "orig_batch_no"),
        ({"txn_time": "2024-05-01"}, "txn_time"),
    ],
)
def test_bad_statement_rows_are_refused_with_line_and_field(
    changes: dict[str, str], field: str
) -> None:
    stream = io.BytesIO(_row(**changes))
    stream.name = "pos_20240501.csv"
    with pytest.raises(ParseError) as caught:
        list(read_pos_statement(stream, currency="CNY"))
    assert (caught.value.source, caught.value.line, caught.value.field) == (
        "pos_20240501.csv",
        2,
        field,
    )


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"", 1),
        (b"merchant_id,terminal_id\n", 1),
        (b",".join(c.encode() for c in POS_STATEMENT_COLUMNS) + b"\n1,2,3\n", 2),
        (POS_STATEMENT + b"\xff\xfe\n", 6),
    ],
)
def test_unreadable_statements_name_the_line(data: bytes, line: int) -> None:
    with pytest.raises(ParseError) as caught:
        list(read_pos_statement(io.BytesIO(data), currency="CNY"))
    assert caught.value.line == line


# ── properties ────────────────────────────────────────────────────────────────────────────

REFUSALS = {
    "parse_error",
    "payload_too_large",
    "invalid_signature",
    "unknown_terminal",
    "merchant_mismatch",
    "stale_timestamp",
    "nonce_reused",
}


@FUZZ
@given(body=bodies)
def test_no_body_reaches_the_sink(body: bytes) -> None:
    hall = Hall()
    result = hall.send(body)
    assert not result.ok
    assert result.error_code in REFUSALS
    assert hall.sink.calls == 0


_field_names = st.sampled_from(
    [
        "msg_type",
        "terminal_id",
        "merchant_id",
        "batch_no",
        "trace_no",
        "timestamp",
        "account_no",
        "amount",
        "orig_trace_no",
        "orig_batch_no",
        "sale_count",
        "sale_amount",
        "void_count",
        "void_amount",
        "charset",
    ]
)
_field_values = st.sampled_from(
    ["sale", "void", "settle", "refund", "000001", "000101", "12050", "0", "", "utf-8", "gbk"]
) | st.text(max_size=20)


@FUZZ
@given(overrides=st.dictionaries(_field_names, _field_values, max_size=6))
def test_correctly_maced_nonsense_is_refused_cleanly_or_pays_what_it_says(
    overrides: dict[str, str],
) -> None:
    hall = Hall()
    values = {**sale(), **overrides}
    # A terminal id the key ring knows, so that the MAC verifies and the rest is exercised.
    values["terminal_id"] = TERMINAL
    with contextlib.suppress(UnicodeEncodeError):
        result = hall.send(signed(values), ROUTES.get(values["msg_type"], "pay"))
        if result.ok:
            for intent in hall.sink.pay_calls:
                assert intent.amount.minor > 0
                assert intent.terminal_id == TERMINAL
        else:
            assert result.error_code is not None
            assert result.status_code in {400, 401, 404, 409, 501}


@FUZZ
@given(data=st.binary(max_size=600))
def test_the_statement_reader_raises_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        for line in read_pos_statement(io.BytesIO(data), currency="CNY"):
            assert line.net == line.gross - line.fee


@FUZZ
@given(data=st.data())
def test_damaged_statements_raise_only_parse_errors(data: st.DataObject) -> None:
    damaged = data.draw(mutated(POS_STATEMENT))
    with contextlib.suppress(ParseError):
        list(read_pos_statement(io.BytesIO(damaged), currency="CNY"))


SIGNED_SALE = signed(sale())


@FUZZ
@given(data=st.data())
def test_tampered_sales_never_pay_something_else(data: st.DataObject) -> None:
    original = Hall()
    original.send(SIGNED_SALE)
    hall = Hall()
    result = hall.send(data.draw(mutated(SIGNED_SALE)))
    if result.ok:
        assert hall.sink.pay_calls == original.sink.pay_calls
    else:
        assert hall.sink.calls == 0
        assert result.error_code in REFUSALS | {"unknown_terminal"}


@FUZZ
@given(body=bodies, key=st.sampled_from([TERMINAL_KEY, b"short"]))
def test_the_verifier_raises_only_parse_or_authentication_errors(body: bytes, key: bytes) -> None:
    keys = TerminalKeyRing({TERMINAL: key})
    with contextlib.suppress(ParseError, AuthenticationError, ConfigurationError):
        verify_pos_message(body, keys, source="pos")
    # A usable key never turns input into a configuration fault.
    if key == TERMINAL_KEY:
        with contextlib.suppress(ParseError, AuthenticationError):
            verify_pos_message(body, keys, source="pos")


# ── against the real core ─────────────────────────────────────────────────────────────────


def test_a_customer_pays_a_bill_at_the_service_hall_then_the_cashier_voids_it(
    tmp_path: Any,
) -> None:
    clock = FixedClock(NOW)
    with Gateway.open(f"sqlite:///{tmp_path}/g.db", clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        gateway.issue_bill(
            ACCOUNT,
            bill_no="B2024040001",
            amount=Money(12050, "CNY"),
            period="2024-04",
            due_date=date(2024, 5, 20),
        )
        book = BatchBook(gateway)
        adapter = pos_adapter(book, clock)

        paid = adapter.handle_pay(signed(sale()), {}, book)
        assert paid.ok
        receipt = paid.receipt
        assert receipt is not None
        assert not receipt.replayed
        assert (receipt.channel, receipt.channel_txn_id) == ("pos", "HALL0001-000001-000101")
        assert [(a.bill_no, a.principal) for a in receipt.allocations] == [
            ("B2024040001", Money(12050, "CNY"))
        ]
        assert receipt.balance_after == Money.zero("CNY")
        assert receipt.arrears_after == Money.zero("CNY")
        balances = gateway.ledger_balances()
        assert balances[f"receivable:{ACCOUNT}"] == Money.zero("CNY")
        assert balances["clearing:pos:CNY"] == Money(12050, "CNY")

        voided = adapter.handle_void(signed(void("000102", "000101")), {}, book)
        assert voided.ok
        balances = gateway.ledger_balances()
        assert balances[f"receivable:{ACCOUNT}"] == Money(12050, "CNY")
        assert balances["clearing:pos:CNY"] == Money.zero("CNY")

        closed = adapter.handle_daily_close(signed(settle("000103", 1, 12050, 1, 12050)), {}, book)
        assert answer(closed)["settle_result"] == "match"
        assert gateway.verify().ok
