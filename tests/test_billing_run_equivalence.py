"""A billing run has exactly the effects of the single calls: the same accounts and bills
opened and issued one by one into one database and by the run into another leave every table
with the same content (ids aside) and the same ledger balances, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate import Gateway, Money, NewAccount, NewBill, PaymentIntent, Settings
from paygate.clock import FixedClock
from paygate.errors import PaygateError
from paygate.models import Category
from paygate.store import migrate
from paygate.store.schema import metadata
from tests.conftest import PG_ADMIN_URL
from tests.databases import empty_postgres, fresh_sqlite_url

# Derived from ids (seal hashes cover entry ids; an entry's balance shard is its account id
# modulo the shard count) or the id counter itself; balances are compared summed by code.
_SKIPPED_TABLES = {
    "id_blocks",
    "seal_queue",
    "seal_blocks",
    "journal_seals",
    "ledger_balances",
    "feed_log",
}
# The writing transaction's id (PostgreSQL's feed order) differs between any two databases.
_WRITER = "writer_xid"

_JOINED = {
    "postings": "SELECT j.reference, j.kind, l.code, p.amount, p.currency FROM postings p "
    "JOIN journal_entries j ON j.id = p.entry_id JOIN ledger_accounts l ON l.id = p.account_id",
    "bills": "SELECT b.bill_no, a.account_no, j.reference FROM bills b "
    "JOIN accounts a ON a.id = b.account_id JOIN journal_entries j ON j.id = b.entry_id",
    "accounts": "SELECT a.account_no, l.code FROM accounts a "
    "JOIN ledger_accounts l ON l.id = a.receivable_account_id",
    "allocations": "SELECT b.bill_no, p.channel_txn_id, x.source, x.late_fee, x.principal "
    "FROM allocations x JOIN bills b ON b.id = x.bill_id JOIN payments p ON p.id = x.payment_id",
    "balances": "SELECT l.code, SUM(b.balance) FROM ledger_balances b "
    "JOIN ledger_accounts l ON l.id = b.account_id GROUP BY l.code",
}


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_ids(v)
            for k, v in value.items()
            if k != "id" and not k.endswith("_id") and k != "event_id"
        }
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(_without_ids(json.loads(value)), sort_keys=True)
        except ValueError:
            return value
    return value


def dump(gateway: Gateway) -> dict[str, list[str]]:
    """Every table's rows without their ids, plus the rows ids used to link, by natural keys."""

    def work(tx: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for table in metadata.sorted_tables:
            if table.name in _SKIPPED_TABLES:
                continue
            cols = [
                c.name
                for c in table.columns
                if c.name != "id" and not c.name.endswith("_id") and c.name != _WRITER
            ]
            if not cols:
                continue
            rows = tx.all(f"SELECT {', '.join(cols)} FROM {table.name}")
            out[table.name] = sorted(repr(tuple(_cell(v) for v in r)) for r in rows)
        for name, sql in _JOINED.items():
            out[f"joined:{name}"] = sorted(repr(tuple(r)) for r in tx.all(sql))
        return out

    return gateway.store.run(work, write=False)


@dataclass(frozen=True)
class Scenario:
    accounts: list[NewAccount]
    credits: list[tuple[str, int]]
    bills: list[NewBill]
    chunk_size: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    account_nos = ["A0", "A1", "A2", "A3"]
    accounts = draw(
        st.lists(
            st.builds(
                NewAccount,
                account_no=st.sampled_from(account_nos),
                category=st.sampled_from(list(Category)),
                prepaid=st.booleans(),
                protected=st.just(False),
                name=st.sampled_from([None, "Zhang San"]),
                currency=st.sampled_from([None, None, None, "USD"]),
            ),
            max_size=8,
        )
    )
    credits = draw(
        st.lists(
            st.tuples(st.sampled_from(account_nos), st.integers(min_value=1, max_value=30000)),
            max_size=3,
        )
    )
    bills = draw(
        st.lists(
            st.builds(
                NewBill,
                account_no=st.sampled_from([*account_nos, "NOPE"]),
                bill_no=st.sampled_from([f"B{i}" for i in range(8)]),
                amount=st.builds(
                    Money,
                    st.integers(min_value=1, max_value=20000),
                    st.sampled_from(["CNY", "CNY", "CNY", "USD"]),
                ),
                period=st.sampled_from(["2026-10", "2026-11"]),
                due_date=st.sampled_from([date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)]),
            ),
            max_size=20,
        )
    )
    return Scenario(accounts, credits, bills, draw(st.integers(min_value=1, max_value=6)))


def _outcome(call: Any) -> str:
    try:
        result = call()
    except PaygateError as exc:
        return exc.code
    return "created" if result.created else "replayed"


def _open_one(gateway: Gateway, a: NewAccount) -> str:
    """open_account's outcome: it answers None either way, so look first."""
    known = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM accounts WHERE account_no = :no", {"no": a.account_no}
        ),
        write=False,
    )
    try:
        gateway.open_account(
            a.account_no,
            category=a.category,
            prepaid=a.prepaid,
            protected=a.protected,
            name=a.name,
            currency=a.currency,
        )
    except PaygateError as exc:
        return exc.code
    return "replayed" if known else "created"


def _bulk_outcomes(result: Any, keys: list[str]) -> list[str]:
    """Each item's outcome, from the result's lists (created keys come in input order)."""
    out: list[str] = ["replayed"] * len(keys)
    for issue in (*result.conflicts, *result.refused):
        out[issue.index] = issue.code
    created = iter(result.created)
    want = next(created, None)
    for index, key in enumerate(keys):
        if out[index] == "replayed" and key == want:
            out[index] = "created"
            want = next(created, None)
    assert want is None, "a created key the input does not hold"
    assert out.count("replayed") == result.replayed_count
    return out


def _credit(gateway: Gateway, credits: list[tuple[str, int]]) -> None:
    for i, (account_no, minor) in enumerate(credits):
        # An account never opened, or in another currency, refuses it: the same on both sides.
        with contextlib.suppress(PaygateError):
            gateway.pay(
                PaymentIntent(
                    channel="kiosk",
                    channel_txn_id=f"T{i}",
                    account_no=account_no,
                    amount=Money(minor, "CNY"),
                    paid_at=gateway.clock.now(),
                )
            )


def _compare(one_by_one: Gateway, run: Gateway, scenario: Scenario) -> None:
    single_accounts = [_open_one(one_by_one, a) for a in scenario.accounts]
    bulk_accounts = run.open_accounts(scenario.accounts, chunk_size=scenario.chunk_size)
    assert _bulk_outcomes(bulk_accounts, [a.account_no for a in scenario.accounts]) == (
        single_accounts
    )
    _credit(one_by_one, scenario.credits)
    _credit(run, scenario.credits)
    single_bills = [
        _outcome(
            lambda b=b: one_by_one.issue_bill(
                b.account_no,
                bill_no=b.bill_no,
                amount=b.amount,
                period=b.period,
                due_date=b.due_date,
            )
        )
        for b in scenario.bills
    ]
    bulk_bills = run.issue_bills(scenario.bills, chunk_size=scenario.chunk_size)
    assert _bulk_outcomes(bulk_bills, [b.bill_no for b in scenario.bills]) == single_bills
    assert bulk_bills.created_count == single_bills.count("created")
    assert dump(run) == dump(one_by_one)
    assert run.ledger_balances() == one_by_one.ledger_balances()
    assert run.verify().ok


def _pair(url_a: str, url_b: str, clock: FixedClock) -> Iterator[tuple[Gateway, Gateway]]:
    with (
        Gateway.open(settings=Settings(database_url=url_a, seal_every=0), clock=clock) as a,
        Gateway.open(settings=Settings(database_url=url_b, seal_every=0), clock=clock) as b,
    ):
        yield a, b


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_a_run_on_sqlite_equals_the_single_calls(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, clock: FixedClock
) -> None:
    directory = tmp_path_factory.mktemp("twins")
    url_a = fresh_sqlite_url(directory, "single.db")
    url_b = fresh_sqlite_url(directory, "run.db")
    for one_by_one, run in _pair(url_a, url_b, clock):
        _compare(one_by_one, run, scenario)


@pytest.fixture(scope="module")
def pg_twin() -> Iterator[str]:
    """A second migrated PostgreSQL database, beside the session's."""
    name = f"paygate_twin_{uuid.uuid4().hex[:10]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.upgrade(f"{base}/{name}")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_a_run_on_postgresql_equals_the_single_calls(
    scenario: Scenario, pg_url: str, pg_twin: str, clock: FixedClock
) -> None:
    empty_postgres(pg_url)
    empty_postgres(pg_twin)
    for one_by_one, run in _pair(pg_url, pg_twin, clock):
        _compare(one_by_one, run, scenario)


def test_the_comparison_sees_a_difference(tmp_path: Path, clock: FixedClock) -> None:
    """The dump would tell a bill's credit allocation apart: the comparison can fail."""
    url_a = fresh_sqlite_url(tmp_path, "a.db")
    url_b = fresh_sqlite_url(tmp_path, "b.db")
    for a, b in _pair(url_a, url_b, clock):
        for g in (a, b):
            g.open_account("A1")
        _credit(a, [("A1", 500)])
        bill = NewBill(
            account_no="A1",
            bill_no="B1",
            amount=Money(1000, "CNY"),
            period="2026-11",
            due_date=date(2026, 12, 1),
        )
        a.issue_bills([bill])
        b.issue_bills([bill])
        assert dump(a) != dump(b)
