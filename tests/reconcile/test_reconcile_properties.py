"""Property: whatever discrepancies a day has, the run finds exactly those, and nothing else.

Hypothesis draws a ledger day and its statement with known injected discrepancies (payments
missing from the statement, lines the ledger lacks for known and unknown accounts, changed
amounts, lines listed twice, payments refunded or voided with and without their lines), in any
order of lines; the run's findings must be exactly the injected ones, each in the state the
policy leaves it, the counts per class must agree, the ledger must verify, and the same file
again must change nothing. On SQLite each example gets a fresh database; PostgreSQL runs
fewer examples, emptying the session's database for each.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import StatementLine, StatementLineKind
from paygate.reconcile import FindingClass, FindingStatus
from tests.conftest import PG_ADMIN_URL
from tests.databases import empty_postgres, fresh_sqlite_url
from tests.reconcile.support import (
    AT,
    all_findings,
    balance,
    counts,
    journal_entries,
    line,
    numbered,
    pay,
    run_lines,
)

ACCOUNTS = ("A1", "A2", "A3")


class Fate(StrEnum):
    """What happens to one ledger payment on the statement."""

    PRESENT = "present"
    MISSING = "missing"
    CHANGED = "changed"
    TWICE = "twice"
    REFUNDED = "refunded"  # reversed in the ledger; the statement has the sale and the refund
    VOIDED_AWAY = "voided_away"  # reversed in the ledger; the statement has neither


@dataclass(frozen=True)
class Day:
    payments: tuple[tuple[str, int, Fate], ...]  # account, amount, fate
    extras: tuple[tuple[bool, int], ...]  # known account?, amount
    order: tuple[int, ...]  # a permutation of the statement's lines


@st.composite
def days(draw: st.DrawFn) -> Day:
    payments = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ACCOUNTS), st.integers(100, 500_000), st.sampled_from(list(Fate))
            ),
            max_size=9,
        )
    )
    extras = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 90_000)), max_size=3))
    size = sum(_lines_of(fate) for _, _, fate in payments) + len(extras)
    order = draw(st.permutations(range(size)))
    return Day(tuple(payments), tuple(extras), tuple(order))


def _lines_of(fate: Fate) -> int:
    return {
        Fate.MISSING: 0,
        Fate.VOIDED_AWAY: 0,
        Fate.TWICE: 2,
        Fate.REFUNDED: 2,
    }.get(fate, 1)


def check(gateway: Gateway, day: Day) -> None:
    for account in ACCOUNTS:
        gateway.open_account(account)
    lines: list[StatementLine] = []
    expected: set[tuple[FindingClass, str, FindingStatus]] = set()
    matched = 0
    for n, (account, amount, fate) in enumerate(day.payments):
        txn = f"T{n}"
        at = AT + timedelta(minutes=n)
        receipt = pay(gateway, txn, account, amount, at=at)
        if fate in (Fate.REFUNDED, Fate.VOIDED_AWAY):
            gateway.reverse(receipt.payment_id, "refunded to the customer")
        if fate is Fate.PRESENT:
            lines.append(line(0, txn, account, amount, at=at))
            matched += 1
        elif fate is Fate.MISSING:
            key = f"payment:{receipt.payment_id}"
            expected.add((FindingClass.ONLY_IN_LEDGER, key, FindingStatus.OPEN))
        elif fate is Fate.CHANGED:
            lines.append(line(0, txn, account, amount + 1, at=at))
            expected.add((FindingClass.AMOUNT_MISMATCH, f"txn:{txn}", FindingStatus.OPEN))
        elif fate is Fate.TWICE:
            lines += [line(0, txn, account, amount, at=at)] * 2
            expected.add((FindingClass.DUPLICATE_IN_STATEMENT, f"txn:{txn}#2", FindingStatus.OPEN))
            matched += 1
        elif fate is Fate.REFUNDED:
            refund = StatementLineKind.REFUND
            lines += [
                line(0, txn, account, amount, at=at),
                line(0, f"R{n}", account, amount, at=at, kind=refund, original=txn),
            ]
            expected.add((FindingClass.REVERSAL_MATCHED, f"rev:{txn}#1", FindingStatus.OK))
            matched += 1
        else:
            key = f"payment:{receipt.payment_id}"
            expected.add((FindingClass.ONLY_IN_LEDGER, key, FindingStatus.RESOLVED))
    unknown_total = 0
    for n, (known, amount) in enumerate(day.extras):
        account = ACCOUNTS[n % len(ACCOUNTS)] if known else f"X{n}"
        lines.append(line(0, f"E{n}", account, amount))
        state = FindingStatus.RESOLVED if known else FindingStatus.SUSPENSE
        expected.add((FindingClass.ONLY_IN_STATEMENT, f"txn:E{n}", state))
        unknown_total += 0 if known else amount
    statement = numbered(lines[i] for i in day.order)

    run = run_lines(gateway, statement)
    found = {(f.finding_class, f.line_key, f.status) for f in all_findings(gateway, run)}
    assert found == expected
    want = Counter(klass.value for klass, _, _ in expected)
    if matched:
        want["matched"] = matched
    assert counts(run) == dict(want)
    assert run.line_count == len(statement)
    assert balance(gateway, "suspense:CNY") == -unknown_total
    assert gateway.verify().ok
    entries = journal_entries(gateway)
    again = run_lines(gateway, statement)
    assert again.id == run.id and again.replayed
    assert journal_entries(gateway) == entries


def _gateway(url: str) -> Gateway:
    clock = FixedClock(AT + timedelta(days=1))
    return Gateway.open(
        settings=Settings(database_url=url, seal_every=0, sqlite_synchronous="OFF"), clock=clock
    )


@settings(max_examples=30)
@given(day=days())
def test_sqlite_run_finds_exactly_the_injected_discrepancies(day: Day) -> None:
    with tempfile.TemporaryDirectory() as where, _gateway(fresh_sqlite_url(Path(where))) as gw:
        check(gw, day)


@pytest.mark.postgres
@settings(max_examples=8)
@given(day=days())
def test_postgresql_run_finds_exactly_the_injected_discrepancies(
    pg_template: str, day: Day
) -> None:
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{pg_template}"
    empty_postgres(url)  # the session's database, emptied for each example
    with _gateway(url) as gateway:
        check(gateway, day)
