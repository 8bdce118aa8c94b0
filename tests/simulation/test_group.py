"""Notifications arriving together are group-committed deterministically: one transaction,
answers in arrival order, and a gateway dying with the group in flight answers none of the
waiting messages, while posting each exactly once when they are sent again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest

from paygate.channels.base import NotifyResult, PaymentSink, acknowledged, refused
from paygate.errors import InvalidInputError, PaygateError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt
from paygate.money import Money
from paygate.simulation.group import Crash, Job, post_together
from paygate.store.engine import Tx

ACCOUNTS = ("3100000001", "3100000002", "3100000003")


@pytest.fixture
def billed(gateway: Gateway) -> Gateway:
    for n, number in enumerate(ACCOUNTS):
        gateway.open_account(number, category="residential", name=f"Customer {n}")
        gateway.issue_bill(
            number,
            bill_no=f"B-{number}",
            amount=Money(10_000, "CNY"),
            period="2026-11",
            due_date=date(2026, 12, 15),
        )
    return gateway


def _notify(txn: str, account: str, amount: int = 10_000) -> Job:
    """A channel's notification as an adapter handles it: posted, or refused by name."""

    def job(sink: PaymentSink) -> NotifyResult:
        intent = PaymentIntent(
            channel="alipay",
            channel_txn_id=txn,
            account_no=account,
            amount=Money(amount, "CNY"),
            paid_at=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        )
        try:
            receipt = sink.pay(intent)
        except PaygateError as exc:
            return refused("alipay", exc, body=b"fail", content_type=None)
        return acknowledged(receipt, body=b"success", content_type=None)

    return job


def _refused_before_paying(sink: PaymentSink) -> NotifyResult:
    """A message the adapter refuses itself (a bad signature, say): it never reaches pay."""
    exc = InvalidInputError("sign: signature does not verify", field="sign")
    return refused("alipay", exc, body=b"fail", content_type=None)


def _payments(gateway: Gateway) -> list[tuple[str, str]]:
    rows = gateway.store.run(
        lambda tx: tx.all(
            "SELECT p.channel_txn_id, a.account_no FROM payments p "
            "JOIN accounts a ON a.id = p.account_id ORDER BY p.id"
        ),
        write=False,
    )
    return [(str(txn), str(no)) for txn, no in rows]


def _receipt(result: NotifyResult | None) -> Receipt:
    assert result is not None and result.receipt is not None, result
    return result.receipt


def test_the_group_posts_in_one_transaction_and_answers_each_in_arrival_order(
    billed: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    pay_within = billed.payments.pay_within

    def counted(tx: Tx, intents: Sequence[PaymentIntent]) -> list[Receipt | PaygateError]:
        calls.append(len(intents))
        return pay_within(tx, intents)

    monkeypatch.setattr(billed.payments, "pay_within", counted)
    jobs = [
        _notify("T-1", ACCOUNTS[1]),
        _refused_before_paying,
        _notify("T-2", "4199999999"),  # no such account: the core refuses this one alone
        _notify("T-3", ACCOUNTS[0], 4_000),
        _notify("T-1", ACCOUNTS[1]),  # the same notification again: its first receipt
        _notify("T-4", ACCOUNTS[0], 6_000),
    ]
    results = post_together(billed, jobs)
    assert calls == [5]
    assert [r.error_code if r is not None else None for r in results] == [
        None, "invalid_input", "unknown_account", None, None, None
    ]  # fmt: skip
    first, again = _receipt(results[0]), _receipt(results[4])
    assert not first.replayed and again.replayed and again.payment_id == first.payment_id
    # Two payments of one account in one group are allocated one after the other.
    assert _receipt(results[3]).balance_after == Money(6_000, "CNY")
    assert _receipt(results[5]).balance_after == Money(0, "CNY")
    assert _payments(billed) == [("T-1", ACCOUNTS[1]), ("T-3", ACCOUNTS[0]), ("T-4", ACCOUNTS[0])]


@pytest.mark.parametrize("crash", list(Crash))
def test_a_gateway_dying_with_the_group_answers_no_waiting_member_and_a_resend_posts_once(
    billed: Gateway, crash: Crash
) -> None:
    jobs = [_notify("T-1", ACCOUNTS[0]), _refused_before_paying, _notify("T-2", ACCOUNTS[1])]
    results = post_together(billed, jobs, crash)
    # The message refused before it reached pay was answered before the gateway died.
    assert results[0] is None and results[2] is None
    assert results[1] is not None and results[1].error_code == "invalid_input"
    posted = _payments(billed)
    if crash is Crash.BEFORE_COMMIT:
        assert posted == []
    else:
        assert posted == [("T-1", ACCOUNTS[0]), ("T-2", ACCOUNTS[1])]
    # The channels heard nothing and send again: each payment is posted exactly once.
    again = post_together(billed, [jobs[0], jobs[2]])
    assert [_receipt(r).replayed for r in again] == [crash is Crash.AFTER_COMMIT] * 2
    assert _payments(billed) == [("T-1", ACCOUNTS[0]), ("T-2", ACCOUNTS[1])]


def test_an_error_in_a_member_is_raised_and_nothing_is_posted(billed: Gateway) -> None:
    def broken(sink: PaymentSink) -> NotifyResult:
        raise RuntimeError("adapter bug")

    with pytest.raises(RuntimeError, match="adapter bug"):
        post_together(billed, [broken, _notify("T-1", ACCOUNTS[0])])
    assert _payments(billed) == []
