"""A billing run killed between chunks or inside one leaves whole chunks only, and running the
same input again completes it exactly once, on SQLite and PostgreSQL.

A child process runs the billing run and kills itself with SIGKILL at a chosen instant: after
the k-th chunk committed (between chunks), or inside the next chunk's transaction just after
its rows were written and before it commits (inside a chunk).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest

from paygate import Gateway, Money, NewAccount, NewBill

CHUNK = 40
TOTAL = 200
KILLED_AFTER = 2  # chunks committed before the kill

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import date
    from paygate import Gateway, Money, NewAccount, NewBill
    from paygate.store.engine import Tx

    url, what, where, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    table = "accounts" if what == "accounts" else "bills"
    written = 0
    plain = Tx.execute

    def execute(self, sql, params=None):
        global written
        cursor = plain(self, sql, params)
        if sql.startswith(f"INSERT INTO {table} "):
            written += 1
            if where == "inside" and written == k + 1:
                os.kill(os.getpid(), signal.SIGKILL)   # rows written, not committed
        return cursor

    Tx.execute = execute

    def committed(done):
        if where == "between" and done == k * CHUNK:
            os.kill(os.getpid(), signal.SIGKILL)

    with Gateway.open(url) as gateway:
        if what == "accounts":
            gateway.open_accounts(accounts(), chunk_size=CHUNK, progress=committed)
        else:
            gateway.issue_bills(bills(), chunk_size=CHUNK, progress=committed)
    """
)


def accounts() -> list[NewAccount]:
    return [NewAccount(account_no=f"A{i}") for i in range(TOTAL)]


def bills() -> list[NewBill]:
    return [
        NewBill(
            account_no=f"A{i % 50}",
            bill_no=f"B{i}",
            amount=Money(1000 + i, "CNY"),
            period="2026-11",
            due_date=date(2026, 12, 15),
        )
        for i in range(TOTAL)
    ]


SOURCE = (
    f"CHUNK = {CHUNK}\nTOTAL = {TOTAL}\n"
    "from datetime import date\nfrom paygate import Money, NewAccount, NewBill\n"
    + textwrap.dedent(
        """
        def accounts():
            return [NewAccount(account_no=f"A{i}") for i in range(TOTAL)]

        def bills():
            return [NewBill(account_no=f"A{i % 50}", bill_no=f"B{i}",
                            amount=Money(1000 + i, "CNY"), period="2026-11",
                            due_date=date(2026, 12, 15)) for i in range(TOTAL)]
        """
    )
)


def _count(gateway: Gateway, table: str) -> int:
    return int(gateway.store.run(lambda tx: tx.scalar(f"SELECT COUNT(*) FROM {table}")))


@pytest.mark.parametrize("where", ["between", "inside"])
@pytest.mark.parametrize("what", ["accounts", "bills"])
def test_a_killed_run_leaves_whole_chunks_and_a_rerun_completes_it(
    db_url: str, what: str, where: str
) -> None:
    with Gateway.open(db_url) as gateway:
        if what == "bills":
            gateway.open_accounts(NewAccount(account_no=f"A{i}") for i in range(50))
    child = subprocess.run(
        [sys.executable, "-c", SOURCE + CHILD, db_url, what, where, str(KILLED_AFTER)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    table = "accounts" if what == "accounts" else "bills"
    with Gateway.open(db_url) as gateway:
        assert _count(gateway, table) == KILLED_AFTER * CHUNK
        if what == "bills":
            assert _count(gateway, "journal_entries") == KILLED_AFTER * CHUNK
        else:
            assert _count(gateway, "ledger_accounts") == KILLED_AFTER * CHUNK
        assert gateway.verify().ok

        again = (
            gateway.open_accounts(accounts(), chunk_size=CHUNK)
            if what == "accounts"
            else gateway.issue_bills(bills(), chunk_size=CHUNK)
        )
        assert again.replayed_count == KILLED_AFTER * CHUNK
        assert again.created_count == TOTAL - KILLED_AFTER * CHUNK
        assert again.conflict_count == again.refused_count == 0
        assert _count(gateway, table) == TOTAL
        if what == "bills":
            assert _count(gateway, "journal_entries") == TOTAL
            total = sum(1000 + i for i in range(TOTAL))
            assert gateway.ledger_balances()["revenue:energy:CNY"] == Money(-total, "CNY")
        gateway.seal()
        assert gateway.verify().ok
        final = (
            gateway.open_accounts(accounts(), chunk_size=CHUNK)
            if what == "accounts"
            else gateway.issue_bills(bills(), chunk_size=CHUNK)
        )
        assert final.replayed_count == TOTAL and final.created_count == 0
