"""Recharge voucher cards, told as the stories a utility lives through; on SQLite and PostgreSQL.

The worked story: a batch is issued and sold to a retailer (the ledger takes on the voucher
liability), and a disconnected customer redeems a card that clears the arrears — the receipt
carries the reconnection order and the liability shrinks by the card's face value. Then every
way a redemption is refused, each recorded in the attempts table, and the PIN's absence from
the database, the logs and every repr.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
import sqlite3
import stat
import subprocess
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretBytes, SecretStr
from typer.testing import CliRunner

from paygate.cli.vouchers import vouchers_app
from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.errors import (
    ConfigurationError,
    InvalidAmountError,
    InvalidInputError,
    InvalidStateError,
    PaygateError,
    UnknownAccountError,
)
from paygate.gateway import Gateway
from paygate.models import Receipt, SupplyState
from paygate.money import Money
from paygate.store.engine import normalize_url
from paygate.vouchers import (
    PIN_KEY_ENV,
    PRINTER_COLUMNS,
    SERIAL_LENGTH,
    DuplicateBatchError,
    InvalidSerialError,
    IssuedBatch,
    PinHasher,
    RedemptionPolicy,
    RedemptionThrottledError,
    UnknownBatchError,
    UnknownVoucherError,
    VoucherAlreadyRedeemedError,
    VoucherBatches,
    VoucherExpiredError,
    VoucherFrozenError,
    VoucherLockedError,
    VoucherNotActivatedError,
    VoucherService,
    WrongPinError,
    check_serial,
    load_pin_key,
    luhn_check_digit,
    make_serial,
    serial_is_valid,
)

CNY = "CNY"
KEY = SecretBytes(bytes(range(7, 39)))
OTHER_KEY = SecretBytes(bytes(range(100, 132)))
CUSTOMER = "3100000001"
SOURCE = "app:wx-mini"


def yuan(text: str) -> Money:
    return Money.parse(text, CNY)


def typo(serial: str) -> str:
    """``serial`` with its last digit mistyped."""
    return serial[:-1] + str((int(serial[-1]) + 1) % 10)


def printed(data: bytes) -> dict[str, str]:
    """Serial → PIN, read from a printer file."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert tuple(rows[0]) == PRINTER_COLUMNS
    return {row[1]: row[2] for row in rows[1:]}


def issue(
    service: VoucherService,
    batch_no: str = "B-2026-11",
    *,
    count: int = 5,
    face: str = "200.00",
    expires_on: date = date(2027, 6, 30),
) -> tuple[IssuedBatch, dict[str, str]]:
    out = io.BytesIO()
    issued = service.issue_batch(batch_no, count, yuan(face), expires_on, out)
    return issued, printed(out.getvalue())


def sold(
    service: VoucherService, batch_no: str = "B-2026-11", **kwargs: Any
) -> tuple[IssuedBatch, dict[str, str]]:
    issued, pins = issue(service, batch_no, **kwargs)
    service.activate(batch_no, retailer="Hualian Store 12")
    return issued, pins


def attempts(gateway: Gateway) -> list[tuple[str, str, str, str]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT serial, account_no, source, outcome FROM voucher_attempts ORDER BY id"
        ),
        write=False,
    )
    return [tuple(str(v) for v in row) for row in rows]  # type: ignore[misc]


def card(gateway: Gateway, serial: str) -> tuple[str, int, str | None, int | None]:
    row = gateway.store.run(
        lambda tx: tx.one(
            "SELECT status, failed_attempts, account_no, payment_id FROM vouchers "
            "WHERE serial = :s",
            {"s": serial},
        ),
        write=False,
    )
    assert row is not None
    return str(row[0]), int(row[1]), row[2], row[3]


def counts(gateway: Gateway) -> tuple[int, ...]:
    def read(tx: Any) -> tuple[int, ...]:
        return tuple(
            int(tx.scalar(f"SELECT COUNT(*) FROM {t}"))
            for t in ("journal_entries", "payments", "supply_orders", "outbox")
        )

    return gateway.store.run(read, write=False)


@pytest.fixture
def service(gateway: Gateway) -> VoucherService:
    return VoucherService(gateway, KEY)


@pytest.fixture
def customer(gateway: Gateway) -> str:
    """A residential customer with a 120.00 bill due 2026-11-15, overdue and disconnected."""
    gateway.open_account(CUSTOMER, category="residential", name="Li Si")
    gateway.issue_bill(
        CUSTOMER, bill_no="B-2026-10", amount=yuan("120.00"), period="2026-10",
        due_date=date(2026, 11, 15),
    )  # fmt: skip
    gateway.disconnect(CUSTOMER, "arrears")
    return CUSTOMER


# ── the worked story ─────────────────────────────────────────────────────────────────────


class TestAWorkedStory:
    def test_a_disconnected_customer_redeems_a_card_and_supply_is_ordered_back(
        self, gateway: Gateway, service: VoucherService, customer: str, clock: FixedClock
    ) -> None:
        issued, pins = issue(service, count=5, face="200.00")
        assert issued.cards == 5 and len(pins) == 5
        assert (
            gateway.ledger_balances().get("voucher_liability:CNY") is None
        )  # issuing owes nothing

        activated = service.activate("B-2026-11", retailer="Hualian Store 12")
        assert activated.created and activated.cards == 5 and activated.amount == yuan("1000.00")
        balances = gateway.ledger_balances()
        assert balances["clearing:voucher_sales:CNY"] == yuan("1000.00")
        assert balances["voucher_liability:CNY"] == yuan("-1000.00")

        serial = issued.first_serial
        receipt = service.redeem(customer, serial, pins[serial], source=SOURCE)

        assert receipt.channel == "voucher" and receipt.channel_txn_id == serial
        assert receipt.amount == yuan("200.00") and not receipt.replayed
        assert receipt.late_fee > yuan("0")  # ten days overdue: the late fee is charged first
        paid = sum((a.late_fee + a.principal for a in receipt.allocations), yuan("0"))
        assert paid == yuan("120.00") + receipt.late_fee
        assert receipt.credit == yuan("200.00") - paid
        assert receipt.arrears_after == yuan("0") and receipt.arrears_cleared
        assert receipt.reconnection_order_id is not None
        status = gateway.account_status(customer)
        assert status.supply_state is SupplyState.RECONNECTION_PENDING
        assert status.credit == receipt.credit

        balances = gateway.ledger_balances()
        assert balances["voucher_liability:CNY"] == yuan("-800.00")
        assert balances["clearing:voucher_sales:CNY"] == yuan("1000.00")
        assert balances[f"receivable:{customer}"] == -receipt.credit
        assert card(gateway, serial) == ("redeemed", 0, customer, receipt.payment_id)
        assert attempts(gateway) == [(serial, customer, SOURCE, "redeemed")]

        report = service.report()
        [batch] = report.batches
        assert (batch.activated, batch.redeemed, batch.issued) == (4, 1, 0)
        assert batch.outstanding == yuan("800.00")
        assert report.liability(CNY) == -balances["voucher_liability:CNY"]

        assert gateway.complete_reconnection(receipt.reconnection_order_id) is SupplyState.CONNECTED
        gateway.seal()
        verified = gateway.verify()
        assert verified.ok, verified.findings

    def test_the_same_customer_asking_again_gets_the_original_receipt(
        self, gateway: Gateway, service: VoucherService, customer: str, clock: FixedClock
    ) -> None:
        issued, pins = sold(service)
        serial = issued.first_serial
        first = service.redeem(customer, serial, pins[serial], source=SOURCE)
        clock.advance(timedelta(minutes=3))
        before = (counts(gateway), gateway.ledger_balances())
        again = service.redeem(customer, serial, pins[serial], source="app:retry")
        assert again.replayed and again == first.model_copy(update={"replayed": True})
        assert (counts(gateway), gateway.ledger_balances()) == before
        gateway.open_account("3100000002")
        with pytest.raises(VoucherAlreadyRedeemedError, match=serial):
            service.redeem("3100000002", serial, pins[serial], source=SOURCE)
        with pytest.raises(WrongPinError):
            service.redeem(customer, serial, "0" * 16, source=SOURCE)
        assert [a[3] for a in attempts(gateway)] == [
            "redeemed",
            "replayed",
            "already_redeemed",
            "wrong_pin",
        ]

    def test_a_pin_typed_in_groups_redeems(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, pins = sold(service)
        serial = issued.last_serial
        pin = pins[serial]
        grouped = " ".join(pin[i : i + 4] for i in range(0, len(pin), 4))
        spaced_serial = f"{serial[:4]}-{serial[4:8]}-{serial[8:]}"
        receipt = service.redeem(customer, spaced_serial, SecretStr(grouped), source=SOURCE)
        assert receipt.channel_txn_id == serial


# ── issuing and activating ───────────────────────────────────────────────────────────────


class TestIssuing:
    def test_the_printer_file_has_every_card_and_the_database_only_keyed_hashes(
        self, gateway: Gateway, service: VoucherService
    ) -> None:
        # 100 cards: enough for PostgreSQL's COPY path.
        issued, pins = issue(service, count=100)
        serials = list(pins)
        assert serials[0] == issued.first_serial and serials[-1] == issued.last_serial
        numbers = [int(s[:-1]) for s in serials]
        assert numbers == list(range(numbers[0], numbers[0] + 100))
        assert all(serial_is_valid(s) and len(s) == SERIAL_LENGTH for s in serials)
        assert all(len(p) == 16 and p.isdigit() for p in pins.values())
        assert len(set(pins.values())) == 100
        stored = dict(gateway.store.run(lambda tx: tx.all("SELECT serial, pin_hash FROM vouchers")))
        hasher = PinHasher(KEY)
        for serial, pin in pins.items():
            assert stored[serial] == hasher.hash(serial, pin)
            assert pin not in stored[serial]
        # The next batch continues the serials.
        following, _ = issue(service, "B-2026-12", count=2)
        assert int(following.first_serial[:-1]) == numbers[-1] + 1

    def test_longer_pins_on_request_and_bad_batches_refused(self, service: VoucherService) -> None:
        out = io.BytesIO()
        service.issue_batch("B-LONG", 2, yuan("50.00"), date(2027, 1, 1), out, pin_length=20)
        assert all(len(p) == 20 for p in printed(out.getvalue()).values())
        with pytest.raises(DuplicateBatchError):
            issue(service, "B-LONG")
        with pytest.raises(InvalidInputError, match="pin_length"):
            service.issue_batch("B-X", 1, yuan("1"), date(2027, 1, 1), io.BytesIO(), pin_length=8)
        with pytest.raises(InvalidAmountError):
            issue(service, "B-X", face="0")
        with pytest.raises(InvalidInputError, match="expires_on"):
            issue(service, "B-X", expires_on=date(2026, 1, 1))
        with pytest.raises(InvalidInputError, match="count"):
            issue(service, "B-X", count=0)

    def test_a_failed_issue_leaves_nothing_behind(
        self, gateway: Gateway, service: VoucherService
    ) -> None:
        class Broken(io.BytesIO):
            def write(self, data: Any) -> int:
                raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            service.issue_batch("B-1", 3, yuan("50.00"), date(2027, 1, 1), Broken())
        assert service.report().batches == ()
        assert gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM vouchers")) == 0

    def test_activation_once_per_retailer(self, gateway: Gateway, service: VoucherService) -> None:
        issue(service)
        first = service.activate("B-2026-11", retailer="Shop A")
        again = service.activate("B-2026-11", retailer="Shop A")
        assert not again.created and again.amount == first.amount == yuan("1000.00")
        with pytest.raises(InvalidStateError, match="another retailer"):
            service.activate("B-2026-11", retailer="Shop B")
        with pytest.raises(UnknownBatchError):
            service.activate("B-NONE", retailer="Shop A")
        entries = gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM journal_entries WHERE kind = 'voucher_sale'")
        )
        assert entries == 1

    def test_an_expired_batch_is_not_sold(self, service: VoucherService, clock: FixedClock) -> None:
        issue(service, expires_on=date(2026, 11, 30))
        clock.advance(timedelta(days=10))
        with pytest.raises(VoucherExpiredError):
            service.activate("B-2026-11", retailer="Shop A")

    def test_activation_needs_no_pin_key(self, gateway: Gateway, service: VoucherService) -> None:
        issue(service)
        batches = VoucherBatches(gateway)
        assert batches.activate("B-2026-11", retailer="Shop A").cards == 5
        assert batches.report().batches[0].activated == 5


# ── refusals ─────────────────────────────────────────────────────────────────────────────


class TestRefusals:
    def test_five_wrong_pins_lock_the_card_and_the_right_one_is_then_refused(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, pins = sold(service)
        serial = issued.first_serial
        before = (counts(gateway), gateway.ledger_balances())
        left = []
        for n in range(5):
            with pytest.raises(WrongPinError) as caught:
                service.redeem(customer, serial, f"{n:016d}", source=SOURCE)
            left.append(caught.value.attempts_left)
        assert left == [4, 3, 2, 1, 0]
        assert "now locked" in str(caught.value)
        with pytest.raises(VoucherLockedError):
            service.redeem(customer, serial, pins[serial], source=SOURCE)
        assert card(gateway, serial)[:2] == ("activated", 5)
        assert [a[3] for a in attempts(gateway)] == ["wrong_pin"] * 5 + ["locked"]
        assert (counts(gateway), gateway.ledger_balances()) == before
        report = service.report()
        assert report.batches[0].locked == 1

    def test_the_lock_threshold_is_configurable(self, gateway: Gateway, customer: str) -> None:
        strict = VoucherService(gateway, KEY, policy=RedemptionPolicy(max_wrong_pins=2))
        issued, pins = sold(strict)
        serial = issued.first_serial
        for _ in range(2):
            with pytest.raises(WrongPinError):
                strict.redeem(customer, serial, "1" * 16, source=SOURCE)
        with pytest.raises(VoucherLockedError):
            strict.redeem(customer, serial, pins[serial], source=SOURCE)

    def test_failures_are_throttled_per_account_in_a_sliding_window(
        self, gateway: Gateway, customer: str, clock: FixedClock
    ) -> None:
        policy = RedemptionPolicy(
            account_failures=3, source_failures=100, window=timedelta(hours=1)
        )
        service = VoucherService(gateway, KEY, policy=policy)
        _, pins = sold(service)
        serials = list(pins)
        start = clock.now()
        with pytest.raises(WrongPinError):
            service.redeem(customer, serials[0], "1" * 16, source="s1")
        clock.advance(timedelta(minutes=10))
        with pytest.raises(UnknownVoucherError):
            service.redeem(customer, make_serial(99_999_999_999), "1" * 16, source="s2")
        clock.advance(timedelta(minutes=10))
        with pytest.raises(WrongPinError):
            service.redeem(customer, serials[1], "1" * 16, source="s3")
        clock.advance(timedelta(minutes=10))
        with pytest.raises(RedemptionThrottledError) as caught:
            service.redeem(customer, serials[2], pins[serials[2]], source="s4")
        assert caught.value.scope == "account_no"
        assert caught.value.retry_at == start + timedelta(hours=1)
        assert caught.value.retry_at.isoformat() in str(caught.value)
        # Throttled attempts are recorded but do not count: the retry time does not move.
        clock.advance(timedelta(minutes=29))
        with pytest.raises(RedemptionThrottledError) as again:
            service.redeem(customer, serials[2], pins[serials[2]], source="s4")
        assert again.value.retry_at == start + timedelta(hours=1)
        # Other accounts are not affected.
        gateway.open_account("3100000002")
        service.redeem("3100000002", serials[3], pins[serials[3]], source="s4")
        clock.set(start + timedelta(hours=1))
        receipt = service.redeem(customer, serials[2], pins[serials[2]], source="s4")
        assert receipt.amount == yuan("200.00")
        assert [a[3] for a in attempts(gateway)] == [
            "wrong_pin",
            "unknown_serial",
            "wrong_pin",
            "throttled_account",
            "throttled_account",
            "redeemed",
            "redeemed",
        ]
        # The wrong PINs still count on their cards.
        assert card(gateway, serials[0])[1] == 1

    def test_failures_are_throttled_per_source(self, gateway: Gateway, clock: FixedClock) -> None:
        policy = RedemptionPolicy(
            account_failures=100, source_failures=2, window=timedelta(minutes=15)
        )
        service = VoucherService(gateway, KEY, policy=policy)
        issued, pins = sold(service)
        for n in range(4):
            gateway.open_account(f"A{n}")
        for n in range(2):
            with pytest.raises(WrongPinError):
                service.redeem(f"A{n}", issued.first_serial, "9" * 16, source="10.0.0.9")
        with pytest.raises(RedemptionThrottledError) as caught:
            service.redeem("A2", issued.last_serial, pins[issued.last_serial], source="10.0.0.9")
        assert caught.value.scope == "source"
        assert caught.value.retry_at == clock.now() + timedelta(minutes=15)
        # Another source is not throttled.
        service.redeem("A3", issued.last_serial, pins[issued.last_serial], source="10.0.0.10")
        assert attempts(gateway)[-2][3] == "throttled_source"

    def test_an_expired_card_is_refused(
        self, gateway: Gateway, service: VoucherService, customer: str, clock: FixedClock
    ) -> None:
        issued, pins = sold(service, expires_on=date(2026, 11, 30))
        serial = issued.first_serial
        clock.set(datetime(2026, 11, 30, 15, 59, tzinfo=UTC))  # 23:59 in Shanghai: still valid
        service.redeem(customer, serial, pins[serial], source=SOURCE)
        clock.set(datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # midnight in Shanghai
        with pytest.raises(VoucherExpiredError, match="2026-11-30"):
            service.redeem(customer, issued.last_serial, pins[issued.last_serial], source=SOURCE)
        assert attempts(gateway)[-1][3] == "expired"
        [batch] = service.report().batches
        assert batch.expired == 4 and batch.expired_unredeemed == yuan("800.00")
        assert batch.outstanding == yuan("0")

    def test_a_frozen_card_never_redeems(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        _, pins = sold(service)
        serials = list(pins)
        result = service.freeze_serials(serials[1], serials[2], reason="box 7 lost in transit")
        assert (result.frozen, result.frozen_unsold) == (2, 0)
        assert result.frozen_value == yuan("400.00")
        with pytest.raises(VoucherFrozenError):
            service.redeem(customer, serials[1], pins[serials[1]], source=SOURCE)
        service.redeem(customer, serials[0], pins[serials[0]], source=SOURCE)
        batch = service.freeze_batch("B-2026-11", reason="retailer reported the batch stolen")
        assert (batch.frozen, batch.frozen_unsold) == (2, 0)  # the redeemed card stays redeemed
        with pytest.raises(VoucherFrozenError):
            service.redeem(customer, serials[4], pins[serials[4]], source=SOURCE)
        assert card(gateway, serials[0])[0] == "redeemed"
        [report] = service.report().batches
        assert (report.frozen, report.redeemed, report.activated) == (4, 1, 0)
        assert report.frozen_liability == yuan("800.00")
        assert gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-800.00")

    def test_cards_frozen_before_sale_are_never_sold(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        _, pins = issue(service)
        serials = list(pins)
        result = service.freeze_serials(serials[3], serials[4], reason="misprinted")
        assert (result.frozen, result.frozen_unsold, result.frozen_value) == (0, 2, yuan("0"))
        activated = service.activate("B-2026-11", retailer="Shop A")
        assert activated.cards == 3 and activated.amount == yuan("600.00")
        with pytest.raises(VoucherFrozenError):
            service.redeem(customer, serials[4], pins[serials[4]], source=SOURCE)
        [report] = service.report().batches
        assert (report.activated, report.frozen, report.frozen_liability) == (3, 2, yuan("0"))
        assert service.report().liability(CNY) == yuan("600.00")
        assert gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-600.00")

    def test_a_range_must_name_cards_of_one_batch(self, service: VoucherService) -> None:
        first, _ = issue(service, "B1", count=2)
        second, _ = issue(service, "B2", count=2)
        with pytest.raises(InvalidInputError, match="different batches"):
            service.freeze_serials(first.first_serial, second.last_serial, reason="lost")
        with pytest.raises(UnknownVoucherError):
            service.freeze_serials(first.first_serial, make_serial(99_999_999_999), reason="x")
        with pytest.raises(InvalidInputError, match="after its last"):
            service.freeze_serials(first.last_serial, first.first_serial, reason="lost")

    def test_a_card_not_yet_sold_is_refused_without_a_pin_check(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, _ = issue(service)
        with pytest.raises(VoucherNotActivatedError):
            service.redeem(customer, issued.first_serial, "0" * 16, source=SOURCE)
        assert card(gateway, issued.first_serial)[1] == 0
        assert attempts(gateway)[-1][3] == "not_activated"

    def test_an_unknown_serial_is_refused_and_counted_as_a_guess(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        sold(service)
        unknown = make_serial(55_555_555_555)
        with pytest.raises(UnknownVoucherError, match=unknown):
            service.redeem(customer, unknown, "1" * 16, source=SOURCE)
        assert attempts(gateway) == [(unknown, customer, SOURCE, "unknown_serial")]

    def test_a_bad_check_digit_is_a_typo_not_a_pin_attempt(
        self, gateway: Gateway, customer: str
    ) -> None:
        policy = RedemptionPolicy(account_failures=2, source_failures=2)
        service = VoucherService(gateway, KEY, policy=policy)
        issued, pins = sold(service)
        serial = issued.first_serial
        for _ in range(6):
            with pytest.raises(InvalidSerialError, match="check digit"):
                service.redeem(customer, typo(serial), pins[serial], source=SOURCE)
        with pytest.raises(InvalidSerialError, match="12 digits"):
            service.redeem(customer, "12345", pins[serial], source=SOURCE)
        assert card(gateway, serial)[1] == 0
        # Neither the card's lock nor the throttle counted them.
        assert service.redeem(customer, serial, pins[serial], source=SOURCE).amount == yuan("200")
        outcomes = [a[3] for a in attempts(gateway)]
        assert outcomes == ["bad_serial"] * 7 + ["redeemed"]
        assert attempts(gateway)[6][0] == "?"  # not a serial's shape: never recorded as typed

    def test_the_core_refusing_after_a_right_pin_leaves_the_card_unredeemed(
        self, gateway: Gateway, service: VoucherService
    ) -> None:
        issued, pins = sold(service)
        serial = issued.first_serial
        with pytest.raises(UnknownAccountError):
            service.redeem("9999999999", serial, pins[serial], source=SOURCE)
        assert card(gateway, serial) == ("activated", 0, None, None)
        assert attempts(gateway) == [(serial, "9999999999", SOURCE, "unknown_account")]

    def test_input_that_cannot_be_an_attempt_is_refused_unrecorded(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, _ = sold(service)
        with pytest.raises(InvalidInputError, match="pin"):
            service.redeem(customer, issued.first_serial, " ", source=SOURCE)
        with pytest.raises(InvalidInputError, match="account_no"):
            service.redeem("has space", issued.first_serial, "1" * 16, source=SOURCE)
        with pytest.raises(InvalidInputError, match="source"):
            service.redeem(customer, issued.first_serial, "1" * 16, source="a\nb")
        assert attempts(gateway) == []


# ── concurrency ──────────────────────────────────────────────────────────────────────────

THREADS = 8


def race(work: list[Any]) -> list[Receipt | Exception]:
    results: list[Receipt | Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(len(work))

    def run(call: Any) -> None:
        start.wait()
        try:
            outcome: Receipt | Exception = call()
        except Exception as exc:
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(call,)) for call in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


class TestConcurrency:
    def test_eight_accounts_racing_for_one_card_one_wins(
        self, gateway: Gateway, service: VoucherService
    ) -> None:
        issued, pins = sold(service)
        serial = issued.first_serial
        for n in range(THREADS):
            gateway.open_account(f"R{n}")
        results = race(
            [
                lambda n=n: service.redeem(f"R{n}", serial, pins[serial], source=f"src{n}")
                for n in range(THREADS)
            ]
        )
        receipts = [r for r in results if isinstance(r, Receipt)]
        refused = [r for r in results if not isinstance(r, Receipt)]
        assert len(receipts) == 1 and not receipts[0].replayed
        assert all(isinstance(r, VoucherAlreadyRedeemedError) for r in refused), refused
        assert len(refused) == THREADS - 1
        payments = gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM payments"))
        assert payments == 1
        assert gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-800.00")
        outcomes = Counter(a[3] for a in attempts(gateway))
        assert outcomes == {"redeemed": 1, "already_redeemed": THREADS - 1}
        assert gateway.verify().ok

    def test_one_customer_retrying_concurrently_is_paid_once(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, pins = sold(service)
        serial = issued.first_serial
        results = race(
            [lambda: service.redeem(customer, serial, pins[serial], source=SOURCE)] * THREADS
        )
        assert all(isinstance(r, Receipt) for r in results), results
        receipts = [r for r in results if isinstance(r, Receipt)]
        assert len({r.payment_id for r in receipts}) == 1
        assert sum(not r.replayed for r in receipts) == 1
        assert gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-800.00")

    def test_the_card_lock_holds_under_concurrent_guessing(
        self, gateway: Gateway, service: VoucherService
    ) -> None:
        issued, _ = sold(service)
        for n in range(THREADS):
            gateway.open_account(f"G{n}")
        # Other accounts and sources each time: only the card's row lock keeps the count.
        results = race(
            [
                lambda n=n: service.redeem(f"G{n}", issued.first_serial, "1" * 16, source=f"s{n}")
                for n in range(THREADS)
            ]
        )
        kinds = Counter(type(r).__name__ for r in results)
        assert kinds == {"WrongPinError": 5, "VoucherLockedError": THREADS - 5}
        assert card(gateway, issued.first_serial)[1] == 5

    def test_the_throttle_holds_under_concurrent_guessing(
        self, gateway: Gateway, customer: str
    ) -> None:
        policy = RedemptionPolicy(account_failures=3, source_failures=100, max_wrong_pins=100)
        service = VoucherService(gateway, KEY, policy=policy)
        _, pins = sold(service, count=THREADS)
        # A different card each: only the throttle's own serialization can keep the count.
        results = race(
            [
                lambda serial=serial: service.redeem(customer, serial, "1" * 16, source="x")
                for serial in pins
            ]
        )
        kinds = Counter(type(r).__name__ for r in results)
        assert kinds == {"WrongPinError": 3, "RedemptionThrottledError": THREADS - 3}


# ── the PIN stays secret ─────────────────────────────────────────────────────────────────


def database_dump(url: str) -> bytes:
    """Every byte the database holds that could contain a PIN."""
    parsed = normalize_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = Path(str(parsed.database))
        raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        with sqlite3.connect(path) as conn:
            text = "\n".join(conn.iterdump())
        return raw + text.encode()
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", plain], check=True, capture_output=True
    ).stdout


class TestPinSecrecy:
    def exercise(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> tuple[dict[str, str], list[object]]:
        """Issue, sell, fail in every way, redeem, replay: return the PINs and what was seen."""
        issued, pins = sold(service, count=6)
        serials = list(pins)
        seen: list[object] = [issued, service, service.policy, PinHasher(KEY)]
        calls = [
            (customer, serials[0], "0" * 16),  # wrong PIN
            (customer, pins[serials[1]], serials[1]),  # serial and PIN swapped
            (customer, typo(serials[1]), pins[serials[1]]),  # a typing error
            ("9999999999", serials[2], pins[serials[2]]),  # unknown account
            (customer, serials[3], pins[serials[3]]),  # redeemed
            (customer, serials[3], pins[serials[3]]),  # replayed
        ]
        for account, serial, pin in calls:
            try:
                seen.append(service.redeem(account, serial, pin, source=SOURCE))
            except PaygateError as exc:
                seen += [exc, str(exc), repr(exc), exc.args]
        service.freeze_serials(serials[4], serials[5], reason="lost")
        with pytest.raises(VoucherFrozenError) as caught:
            service.redeem(customer, serials[4], pins[serials[4]], source=SOURCE)
        seen += [caught.value, service.report()]
        return pins, seen

    def test_no_pin_in_the_database_but_its_keyed_hash(
        self, db_url: str, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        pins, _ = self.exercise(gateway, service, customer)
        gateway.seal()
        dump = database_dump(db_url)
        hasher = PinHasher(KEY)
        for serial, pin in pins.items():
            assert pin.encode() not in dump, serial
            assert hasher.hash(serial, pin).encode() in dump
        bad = [a[0] for a in attempts(gateway) if a[3] == "bad_serial"]
        assert bad == ["?", typo(sorted(pins)[1])]  # the swapped PIN was never recorded

    def test_no_pin_in_logs_or_reprs(
        self,
        gateway: Gateway,
        service: VoucherService,
        customer: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        pins, seen = self.exercise(gateway, service, customer)
        assert "redeemed for account" in caplog.text  # the redemptions were logged …
        shown = caplog.text + "".join(repr(o) + str(o) for o in seen)
        for pin in pins.values():
            assert pin not in shown  # … without a PIN
        assert repr(KEY.get_secret_value()) not in shown


# ── the PIN key ──────────────────────────────────────────────────────────────────────────


class TestPinKey:
    def test_the_key_comes_from_the_environment_and_bad_keys_are_refused_unquoted(
        self, gateway: Gateway
    ) -> None:
        good = base64.b64encode(KEY.get_secret_value()).decode()
        assert load_pin_key({PIN_KEY_ENV: good}) == KEY
        service = VoucherService.from_env(gateway, environ={PIN_KEY_ENV: good})
        assert "VoucherService" in repr(service) and good not in repr(service)
        short = base64.b64encode(b"k" * 31).decode()
        for env, message in (
            ({}, "is not set"),
            ({PIN_KEY_ENV: "not base64!"}, "not valid base64"),
            ({PIN_KEY_ENV: short}, "31 bytes"),
        ):
            with pytest.raises(ConfigurationError, match=message) as caught:
                load_pin_key(env)
            assert short not in str(caught.value) and "not base64!" not in str(caught.value)
        with pytest.raises(ConfigurationError):
            VoucherService(gateway, SecretBytes(b"short"))
        with pytest.raises(ConfigurationError):
            VoucherService(gateway, b"x" * 40)  # type: ignore[arg-type]

    def test_a_service_with_another_key_verifies_no_pin(
        self, gateway: Gateway, service: VoucherService, customer: str
    ) -> None:
        issued, pins = sold(service)
        other = VoucherService(gateway, OTHER_KEY)
        with pytest.raises(WrongPinError):
            other.redeem(customer, issued.first_serial, pins[issued.first_serial], source=SOURCE)


# ── properties ───────────────────────────────────────────────────────────────────────────

card_numbers = st.integers(min_value=10**10, max_value=10**11 - 1)
pins_st = st.text(alphabet="0123456789", min_size=16, max_size=32)


@given(card_numbers)
def test_a_serial_round_trips_through_its_check_digit(number: int) -> None:
    serial = make_serial(number)
    assert len(serial) == SERIAL_LENGTH and serial_is_valid(serial)
    assert check_serial(serial) == serial and int(serial[:-1]) == number


@given(card_numbers, st.integers(min_value=0, max_value=SERIAL_LENGTH - 1), st.integers(1, 9))
def test_every_single_digit_typo_is_caught(number: int, position: int, shift: int) -> None:
    serial = make_serial(number)
    digits = list(serial)
    digits[position] = str((int(digits[position]) + shift) % 10)
    typo = "".join(digits)
    assert not serial_is_valid(typo)
    with pytest.raises(InvalidSerialError):
        check_serial(typo)


@given(card_numbers, st.integers(min_value=0, max_value=SERIAL_LENGTH - 2))
def test_adjacent_transpositions_are_caught_except_09(number: int, position: int) -> None:
    serial = make_serial(number)
    a, b = serial[position], serial[position + 1]
    swapped = serial[:position] + b + a + serial[position + 2 :]
    if a == b or {a, b} == {"0", "9"}:
        return  # the one swap Luhn cannot see, and no swap at all
    assert not serial_is_valid(swapped)


def test_luhn_matches_the_published_example() -> None:
    # ISO/IEC 7812-1 worked example: 7992739871 has check digit 3.
    assert luhn_check_digit("7992739871") == "3"


@given(card_numbers, pins_st, pins_st)
def test_a_pin_verifies_against_its_own_hash_only(number: int, pin: str, other: str) -> None:
    serial = make_serial(number)
    hasher = PinHasher(KEY)
    stored = hasher.hash(serial, pin)
    assert hasher.verify(serial, pin, stored)
    assert pin not in stored
    if other != pin:
        assert not hasher.verify(serial, other, stored)
    assert not PinHasher(OTHER_KEY).verify(serial, pin, stored)
    neighbour = make_serial(number + 1 if number < 10**11 - 1 else number - 1)
    assert not hasher.verify(neighbour, pin, stored)  # a hash is bound to its card


# ── the command line ─────────────────────────────────────────────────────────────────────

runner = CliRunner()


@pytest.fixture
def pin_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PIN_KEY_ENV, base64.b64encode(KEY.get_secret_value()).decode())


def vouchers(*args: str) -> tuple[int, str]:
    result = runner.invoke(vouchers_app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


class TestCommandLine:
    def test_issue_activate_freeze_report(
        self, db_url: str, tmp_path: Path, pin_key_env: None
    ) -> None:
        printer = tmp_path / "batch.csv"
        code, output = vouchers(
            "issue", "B-CLI", "--count", "3", "--face-value", "50.00",
            "--expires-on", "2099-12-31", "--out", str(printer), "--database-url", db_url,
        )  # fmt: skip
        assert code == 0, output
        assert "3 cards of 50.00 CNY" in output
        assert stat.S_IMODE(os.stat(printer).st_mode) == 0o600
        pins = printed(printer.read_bytes())
        assert len(pins) == 3 and not any(pin in output for pin in pins.values())

        code, output = vouchers(
            "issue", "B-CLI2", "--count", "1", "--face-value", "50.00",
            "--expires-on", "2099-12-31", "--out", str(printer), "--database-url", db_url,
        )  # fmt: skip
        assert code == 2 and "never overwritten" in output
        assert printed(printer.read_bytes()) == pins

        again = tmp_path / "again.csv"
        code, output = vouchers(
            "issue", "B-CLI", "--count", "1", "--face-value", "50.00",
            "--expires-on", "2099-12-31", "--out", str(again), "--database-url", db_url,
        )  # fmt: skip
        assert code == 2 and "already issued" in output
        assert not again.exists()  # PINs of a batch that was never issued do not survive

        code, output = vouchers(
            "activate", "B-CLI", "--retailer", "Shop 9", "--database-url", db_url
        )
        assert code == 0 and "voucher liability 150.00 CNY" in output, output
        serials = sorted(pins)
        code, output = vouchers(
            "freeze", "--from", serials[0], "--to", serials[1], "--reason", "lost",
            "--database-url", db_url,
        )  # fmt: skip
        assert code == 0 and "2 sold and 0 unsold" in output, output
        code, output = vouchers("freeze", "--reason", "lost", "--database-url", db_url)
        assert code == 2 and "either --batch" in output
        code, output = vouchers("report", "--database-url", db_url)
        assert code == 0 and "B-CLI" in output and "100.00" in output, output

        settings = Settings(database_url=db_url)
        with Gateway.open(settings=settings) as gateway:
            assert gateway.ledger_balances()["voucher_liability:CNY"] == yuan("-150.00")

    def test_issue_refuses_to_run_without_the_pin_key(
        self, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(PIN_KEY_ENV, raising=False)
        printer = tmp_path / "batch.csv"
        code, output = vouchers(
            "issue", "B-1", "--count", "1", "--face-value", "50.00",
            "--expires-on", "2099-12-31", "--out", str(printer), "--database-url", sqlite_url,
        )  # fmt: skip
        assert code == 2 and PIN_KEY_ENV in output
        assert not printer.exists()
