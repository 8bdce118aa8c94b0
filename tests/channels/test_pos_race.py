"""A void racing its batch's settlement: after the race, either the void was refused
(``batch_settled``) and the settlement counted the sale, or the void went through and the
settlement did not count it; never both. Threads race on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest

from paygate.channels.base import NotifyResult
from paygate.channels.pos import PosAdapter
from paygate.channels.stores import SqlPosLedger
from paygate.clock import FixedClock
from paygate.gateway import Gateway
from paygate.models import Reversal
from paygate.money import Money
from tests.channels.test_pos import ACCOUNT, NOW, TERMINAL, answer, pos_adapter, sale, settle
from tests.channels.test_pos import signed as sign
from tests.channels.test_pos import void as void_of

PAUSE = 0.15


class SlowGateway(Gateway):
    """A gateway whose reversals take a while once decided on: wide open to a racing settle."""

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> Reversal:
        time.sleep(PAUSE)
        return super().reverse_by_channel_txn(channel, channel_txn_id, reason)

    def reverse_by_channel_txn_within(
        self, tx: Any, channel: str, channel_txn_id: str, reason: str
    ) -> Reversal:
        time.sleep(PAUSE)
        return super().reverse_by_channel_txn_within(tx, channel, channel_txn_id, reason)


def race(adapter: PosAdapter, gateway: Gateway, batch: str, *, settle_first: bool) -> None:
    trace = f"{int(batch):04d}"
    assert adapter.handle_pay(sign(sale(f"{trace}01", batch_no=batch)), {}, gateway).ok
    results: dict[str, NotifyResult] = {}
    start = threading.Barrier(2)

    def voiding() -> None:
        start.wait()
        if settle_first:
            time.sleep(PAUSE / 3)
        message = void_of(f"{trace}02", f"{trace}01", batch_no=batch)
        results["void"] = adapter.handle_void(sign(message), {}, gateway)

    def settling() -> None:
        start.wait()
        if not settle_first:
            time.sleep(PAUSE / 3)
        message = settle(f"{trace}03", 1, 12050, 0, 0, batch_no=batch)
        results["settle"] = adapter.handle_daily_close(sign(message), {}, gateway)

    threads = [threading.Thread(target=voiding), threading.Thread(target=settling)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    voided = results["void"].ok
    counted = int(answer(results["settle"])["ledger_count"])
    assert results["settle"].ok
    if voided:
        assert counted == 0, "the settlement counted a sale the void reversed"
    else:
        assert results["void"].error_code == "batch_settled"
        assert counted == 1
    reversed_ = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM payments WHERE status = 'reversed' AND channel_txn_id = :t",
            {"t": f"{TERMINAL}-{batch}-{trace}01"},
        ),
        write=False,
    )
    assert reversed_ == (1 if voided else 0)


@pytest.mark.parametrize("settle_first", [False, True])
def test_a_void_racing_the_settlement_is_refused_or_uncounted_never_both(
    db_url: str, settle_first: bool
) -> None:
    clock = FixedClock(NOW)
    with SlowGateway.open(db_url, clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        gateway.issue_bill(
            ACCOUNT,
            bill_no="B1",
            amount=Money(500_000, "CNY"),
            period="2024-04",
            due_date=date(2024, 5, 20),
        )
        adapter = pos_adapter(SqlPosLedger(gateway.store), clock)  # type: ignore[arg-type]
        for batch in range(1, 4):
            race(adapter, gateway, f"{batch:06d}", settle_first=settle_first)
        assert gateway.verify().ok


def test_a_sale_into_a_settled_batch_is_refused_in_its_own_transaction(db_url: str) -> None:
    clock = FixedClock(NOW)
    with Gateway.open(db_url, clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        ledger = SqlPosLedger(gateway.store)
        adapter = pos_adapter(ledger, clock)  # type: ignore[arg-type]
        ledger.settle_batch(TERMINAL, "000009", closed_at=clock.now())
        refused = adapter.handle_pay(sign(sale("090901", batch_no="000009")), {}, gateway)
        assert refused.error_code == "batch_settled"
        assert gateway.store.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM payments")) == 0
        assert ledger.settle_batch(TERMINAL, "000009", closed_at=clock.now()) == (
            0,
            Money(0, "CNY"),
        )


def test_the_sql_ledger_refuses_a_sink_that_cannot_post_in_its_transaction(
    sqlite_url: str,
) -> None:
    class Wrapper:
        def __init__(self, gateway: Gateway) -> None:
            self.gateway = gateway

        def pay(self, intent: Any) -> Any:
            return self.gateway.pay(intent)

        def reverse_by_channel_txn(self, channel: str, txn: str, reason: str) -> object:
            return self.gateway.reverse_by_channel_txn(channel, txn, reason)

    clock = FixedClock(NOW)
    with Gateway.open(sqlite_url, clock=clock) as gateway:
        gateway.open_account(ACCOUNT)
        adapter = pos_adapter(SqlPosLedger(gateway.store), clock)  # type: ignore[arg-type]
        result = adapter.handle_pay(sign(sale("000101")), {}, Wrapper(gateway))
        assert result.error_code == "configuration_error"
