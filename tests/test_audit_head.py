"""``paygate audit verify`` prints the head block hash operators record, and checks it back
with ``--expect-head``. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from typer.testing import CliRunner

from paygate.cli import app
from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from paygate.money import Money

runner = CliRunner()


def paygate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def pay_and_seal(url: str, txn: str) -> None:
    with Gateway.open(url) as gateway:
        gateway.open_account("A1")
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id=txn,
                account_no="A1",
                amount=Money(100, "CNY"),
                paid_at=datetime.now(UTC),
            )
        )
        gateway.seal()


def head(output: str) -> tuple[int, str]:
    found = re.search(r"head block (\d+): ([0-9a-f]{64})", output)
    assert found, output
    return int(found[1]), found[2]


def test_the_head_hash_is_printed_and_checked(db_url: str) -> None:
    code, out = paygate("audit", "verify", "--database-url", db_url)
    assert code == 0 and "head block: none" in out
    code, out = paygate("audit", "verify", "--expect-head", "ab" * 32, "--database-url", db_url)
    assert code == 1 and "head mismatch" in out

    pay_and_seal(db_url, "K1")
    code, out = paygate("audit", "verify", "--database-url", db_url)
    assert code == 0 and "audit clean" in out
    block, recorded = head(out)
    with Gateway.open(db_url) as gateway:
        assert gateway.verify().head_hash == recorded
    code, out = paygate(
        "audit", "verify", "--expect-head", recorded.upper(), "--database-url", db_url
    )
    assert code == 0 and "audit clean" in out

    code, out = paygate("audit", "verify", "--expect-head", "0" * 64, "--database-url", db_url)
    assert code == 1 and "not the hash of any block" in out

    # More sealing after the hash was recorded: the chain links the recorded block to the new
    # head, so the check passes and names the head to record next.
    pay_and_seal(db_url, "K2")
    code, out = paygate("audit", "verify", "--expect-head", recorded, "--database-url", db_url)
    assert code == 0 and "audit clean" in out, out
    assert f"recorded hash is block {block}'s: the chain links it to head block {block + 1}" in out
    assert head(out)[0] == block + 1

    # A rewritten block: its hash no longer holds, and the recorded hash is no block's.
    with Gateway.open(db_url) as gateway:
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE seal_blocks SET hash = :h WHERE block_no = :b", {"h": "1" * 64, "b": block}
            )
        )
    code, out = paygate("audit", "verify", "--expect-head", recorded, "--database-url", db_url)
    assert code == 1 and "not the hash of any block" in out and "audit failed" in out
