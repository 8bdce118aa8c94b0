"""Builders the reconciliation tests share: payments, statement lines, statement files, runs."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt, StatementLine, StatementLineKind
from paygate.money import Money
from paygate.reconcile import (
    Finding,
    ReconcilePolicy,
    ReconciliationRun,
    findings,
    reconcile,
)
from paygate.store.engine import Tx

CHANNEL = "kiosk"
DAY = date(2026, 11, 24)
# 11:00 in Shanghai on DAY: the kiosk business day of every payment below.
AT = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
PAYMENT = StatementLineKind.PAYMENT


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def digest(text: str) -> str:
    """A file hash for statements given as lines: a different text is a different file."""
    return hashlib.sha256(text.encode()).hexdigest()


def pay(
    gateway: Gateway,
    txn: str,
    account: str,
    minor: int,
    *,
    at: datetime = AT,
    channel: str = CHANNEL,
) -> Receipt:
    return gateway.pay(
        PaymentIntent(
            channel=channel,
            channel_txn_id=txn,
            account_no=account,
            amount=cny(minor),
            paid_at=at,
        )
    )


def line(
    number: int,
    txn: str | None,
    account: str | None,
    minor: int,
    *,
    kind: StatementLineKind = PAYMENT,
    original: str | None = None,
    at: datetime = AT,
    fee: int = 0,
    currency: str = "CNY",
) -> StatementLine:
    gross = Money(minor, currency)
    charge = Money(fee, currency)
    return StatementLine(
        line_no=number,
        channel_txn_id=txn,
        account_no=account,
        gross=gross,
        fee=charge,
        net=gross - charge,
        occurred_at=at,
        kind=kind,
        original_txn_id=original,
    )


def numbered(lines: Iterable[StatementLine]) -> list[StatementLine]:
    """``lines`` renumbered in order from line 2 (line 1 is a file's header)."""
    return [ln.model_copy(update={"line_no": n}) for n, ln in enumerate(lines, start=2)]


def run_lines(
    gateway: Gateway,
    lines: Sequence[StatementLine],
    *,
    name: str | None = None,
    day: date = DAY,
    policy: ReconcilePolicy | None = None,
    channel: str = CHANNEL,
) -> ReconciliationRun:
    """Reconcile ``lines`` as one file; ``name`` (default: the lines themselves) is its hash."""
    text = name if name is not None else repr([ln.model_dump(mode="json") for ln in lines])
    return reconcile(gateway, channel, day, iter(lines), file_sha256=digest(text), policy=policy)


def all_findings(gateway: Gateway, run: ReconciliationRun) -> list[Finding]:
    return list(findings(gateway, run.id, as_of=run.as_of))


def by_class(gateway: Gateway, run: ReconciliationRun) -> Counter[str]:
    return Counter(f.finding_class.value for f in all_findings(gateway, run))


def counts(run: ReconciliationRun) -> dict[str, int]:
    return {k.value: v.count for k, v in run.totals.items()}


def scalar(gateway: Gateway, sql: str, params: dict[str, object] | None = None) -> int:
    def work(tx: Tx) -> int:
        return int(tx.scalar(sql, params or {}) or 0)

    return gateway.store.run(work, write=False)


def journal_entries(gateway: Gateway) -> int:
    return scalar(gateway, "SELECT COUNT(*) FROM journal_entries")


def balance(gateway: Gateway, code: str) -> int:
    return gateway.ledger_balances().get(code, cny(0)).minor


def kiosk_statement(rows: Iterable[tuple[str, str, str, str, datetime]]) -> bytes:
    """A kiosk operator's daily CSV: (terminal, txn id, account, amount, paid at) per row."""
    out = ["terminal_id,txn_id,account_no,amount,method,paid_at"]
    zone = timedelta(hours=8)
    for terminal, txn, account, amount, paid_at in rows:
        local = (paid_at.astimezone(UTC) + zone).strftime("%Y-%m-%d %H:%M:%S")
        method = txn.split("-", 1)[0]
        out.append(f"{terminal},{txn},{account},{amount},{method},{local}")
    return ("\n".join(out) + "\n").encode()
