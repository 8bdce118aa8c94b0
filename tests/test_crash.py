"""A crash at any instant loses no acknowledged payment and leaves no half state.

A child process pays in a loop and prints each payment id only after ``pay`` returned; it is
killed with SIGKILL at an arbitrary moment. Every printed payment must be in the ledger, and
the ledger must verify clean, with no payment without its entry or entry without its payment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date

import pytest

from paygate.gateway import Gateway
from paygate.money import Money

CHILD = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from paygate.config import Settings
    from paygate.gateway import Gateway
    from paygate.models import PaymentIntent
    from paygate.money import Money

    url = sys.argv[1]
    with Gateway.open(settings=Settings(database_url=url, seal_every=25)) as gateway:
        n = 0
        while True:
            n += 1
            if n % 10 == 0:
                outcomes = gateway.pay_many(
                    PaymentIntent(channel="bank_agent", channel_txn_id=f"B{n}-{k}",
                                  account_no=f"A{k % 5}", amount=Money(100 + k, "CNY"),
                                  paid_at=datetime.now(UTC))
                    for k in range(200))
                ids = [o.receipt.payment_id for o in outcomes if o.receipt]
            else:
                receipt = gateway.pay(PaymentIntent(
                    channel="kiosk", channel_txn_id=f"K{n}", account_no=f"A{n % 5}",
                    amount=Money(1000 + n, "CNY"), paid_at=datetime.now(UTC)))
                ids = [receipt.payment_id]
            sys.stdout.write("".join(f"{i}\\n" for i in ids))
            sys.stdout.flush()
    """
)


@pytest.mark.parametrize("delay", [0.4, 1.1])
def test_sigkill_mid_payment_loses_nothing_acknowledged(db_url: str, delay: float) -> None:
    with Gateway.open(db_url) as gateway:
        for k in range(5):
            gateway.open_account(f"A{k}")
            gateway.issue_bill(
                f"A{k}",
                bill_no=f"B{k}",
                amount=Money(10**7, "CNY"),
                period="2026-10",
                due_date=date(2026, 11, 15),
            )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    acknowledged: list[int] = []
    assert child.stdout is not None
    # wait until the child is paying, then let it run a little and kill it without warning
    first = child.stdout.readline()
    assert first.strip().isdigit(), child.stderr.read() if child.stderr else first
    acknowledged.append(int(first))
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
    acknowledged += [int(line) for line in rest.split()]
    assert child.returncode == -signal.SIGKILL

    with Gateway.open(db_url) as gateway:
        stored = set(
            gateway.store.run(
                lambda tx: [int(r[0]) for r in tx.all("SELECT id FROM payments")], write=False
            )
        )
        assert set(acknowledged) <= stored
        orphans = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT COUNT(*) FROM payments p LEFT JOIN journal_entries e ON e.id = p.entry_id "
                "WHERE e.id IS NULL"
            ),
            write=False,
        )
        unpaid_entries = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT COUNT(*) FROM journal_entries e WHERE e.kind = 'payment' AND NOT EXISTS "
                "(SELECT 1 FROM payments p WHERE p.entry_id = e.id)"
            ),
            write=False,
        )
        assert orphans == 0 and unpaid_entries == 0
        gateway.seal()
        report = gateway.verify()
        assert report.ok, report.findings
        assert report.entries == 5 + len(stored)
