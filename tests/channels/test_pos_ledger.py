"""The POS channel on the database: batch totals read from the ledger, settled batches that
every process sees, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

from paygate.channels.stores import SqlPosLedger
from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money
from tests.channels.test_pos import (
    ACCOUNT,
    NOW,
    answer,
    pos_adapter,
    sale,
    settle,
    signed,
    void,
)


def test_a_batch_settles_against_the_ledger_and_stays_settled_for_every_process(
    db_url: str,
) -> None:
    clock = FixedClock(NOW)
    with Gateway.open(db_url, clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        gateway.issue_bill(
            ACCOUNT,
            bill_no="B1",
            amount=Money(50_000, "CNY"),
            period="2024-04",
            due_date=date(2024, 5, 20),
        )
        ledger = SqlPosLedger(gateway.store)
        adapter = pos_adapter(ledger, clock)  # type: ignore[arg-type]
        sink = gateway  # the SQL ledger posts inside its own transaction, through the Gateway
        assert adapter.handle_pay(signed(sale("000101")), {}, sink).ok
        assert adapter.handle_pay(signed(sale("000102", amount="5000")), {}, sink).ok
        assert adapter.handle_void(signed(void("000103", "000102", amount="5000")), {}, sink).ok
        count, total = ledger.batch_totals("HALL0001", "000001")
        assert (count, total) == (1, Money(12050, "CNY"))  # the voided sale does not count
        assert ledger.batch_totals("HALL0001", "000002") == (0, Money(0, "CNY"))
        settled = adapter.handle_daily_close(signed(settle("000104", 2, 17050, 1, 5000)), {}, sink)
        assert answer(settled)["settle_result"] == "match"
        # another process, another ledger object: the batch is settled for it too
        assert SqlPosLedger(gateway.store).batch_closed("HALL0001", "000001")
        late_void = adapter.handle_void(signed(void("000105", "000101")), {}, sink)
        assert not late_void.ok and late_void.error_code == "batch_settled"
        ledger.close_batch("HALL0001", "000001", closed_at=clock.now())  # again: no change
        assert gateway.verify().ok


def test_terminal_ids_with_like_wildcards_are_read_literally(db_url: str) -> None:
    clock = FixedClock(NOW)
    with Gateway.open(db_url, clock=clock) as gateway:
        gateway.open_account("A1")
        for txn, terminal in (("T_1-7-1", "T_1"), ("TX1-7-1", "TX1"), ("T%1-7-1", "T%1")):
            gateway.pay(
                PaymentIntent(
                    channel="pos",
                    channel_txn_id=txn,
                    account_no="A1",
                    amount=Money(100, "CNY"),
                    paid_at=clock.now(),
                    terminal_id=terminal,
                )
            )
        ledger = SqlPosLedger(gateway.store)
        assert ledger.batch_totals("T_1", "7") == (1, Money(100, "CNY"))
        assert ledger.batch_totals("T%1", "7") == (1, Money(100, "CNY"))


def test_a_sale_and_its_void_each_count_once_toward_the_next_seal(db_url: str) -> None:
    clock = FixedClock(NOW)
    with Gateway.open(db_url, clock=clock) as gateway:
        gateway.settings = gateway.settings.model_copy(update={"seal_every": 1000})
        gateway.open_account(ACCOUNT)
        ledger = SqlPosLedger(gateway.store)
        adapter = pos_adapter(ledger, clock)  # type: ignore[arg-type]
        assert adapter.handle_pay(signed(sale("000101")), {}, gateway).ok
        assert gateway.payments.pending_seal == 1
        assert adapter.handle_void(signed(void("000102", "000101")), {}, gateway).ok
        assert gateway.payments.pending_seal == 2
        assert gateway.seal() == 2


def test_a_sale_held_in_suspense_for_a_closed_account_counts_in_its_batch(db_url: str) -> None:
    """The card was charged all the same: the acquirer settles it with the batch, so the
    batch's totals (and the settlement the terminal reports) include it."""
    clock = FixedClock(NOW)
    with Gateway.open(db_url, clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        gateway.open_account("0109999999")
        gateway.close_account("0109999999", closure_id="CL-1", reason="moved away")
        ledger = SqlPosLedger(gateway.store)
        adapter = pos_adapter(ledger, clock)  # type: ignore[arg-type]
        assert adapter.handle_pay(signed(sale("000101")), {}, gateway).ok
        held = adapter.handle_pay(
            signed(sale("000102", amount="3000", account_no="0109999999")), {}, gateway
        )
        assert held.ok
        statuses = gateway.store.run(
            lambda tx: sorted(str(s) for (s,) in tx.all("SELECT status FROM payments")),
            write=False,
        )
        assert statuses == ["posted", "suspense"]
        assert ledger.batch_totals("HALL0001", "000001") == (2, Money(15050, "CNY"))
        settled = adapter.handle_daily_close(signed(settle("000103", 2, 15050, 0, 0)), {}, gateway)
        assert answer(settled)["settle_result"] == "match"
        assert gateway.verify().ok
