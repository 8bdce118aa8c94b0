"""The console's account-number prefix search: exactly the accounts whose number starts with
what was typed, every character literal, in code point order, on SQLite, on PostgreSQL, and on
a PostgreSQL database whose collation is Chinese (ICU ``zh``), where '3190000001' sorts after
'31:'; and on PostgreSQL an ordered range of ``ix_accounts_account_no_c``, never a scan."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL, Literal

from paygate.console.views import SEARCH_LIMIT, prefix_end, prefix_sql, search_accounts
from paygate.gateway import Gateway
from paygate.store import migrate
from tests.api.support import settings_for
from tests.conftest import _admin, _pg_url

# Account numbers around every boundary a prefix range has: a last digit that becomes ':',
# punctuation a linguistic collation weighs less than digits, LIKE's wildcards and escape,
# letters of both cases, accents, CJK, a character beyond the BMP.
TRICKY = [
    "319", "3190000001", "3190000002", "3189999999", "31:", "31:0", "31-9", "31.0", "31/1",
    "3200000000", "32", "31%x", "31_x", "31\\x", "31%", "31_", "31\\", "3_1", "3%1", "3\\1",
    "31a", "31A", "31é", "31中", "31中文", "A-01", "a-01", "中1", "é", "z", "~~", "31ÿ", "31Ā",
    "31힣", "31\U0001f600", "31\U0001f600x",
]  # fmt: skip
_rng = random.Random(15)
UNIVERSE = sorted(
    set(TRICKY)
    | {f"31{_rng.randrange(10**8):08d}" for _ in range(40)}
    | {f"3{_rng.choice('0123456789:-_%')}{_rng.randrange(10**4):04d}" for _ in range(20)}
)
ALPHABET = "0139:-._%\\/aAé中\U0001f600\U0010ffff"


@pytest.fixture
def zh_pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database whose default collation is ICU's Chinese (zh), as a
    utility's database created with ``--locale=zh_CN.UTF-8`` compares text linguistically."""
    name = f"paygate_zh_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
            "LOCALE_PROVIDER icu ICU_LOCALE 'zh' LOCALE 'C.UTF-8'"
        )
    try:
        url = _pg_url(name)
        migrate.upgrade(url)
        yield url
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql-zh", marks=pytest.mark.postgres),
    ]
)
def universe(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway whose accounts are :data:`UNIVERSE`, on each kind of database."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url", "postgresql-zh": "zh_pg_url"}
    url = str(request.getfixturevalue(fixture[request.param]))
    with Gateway.open(settings=settings_for(url)) as gateway:
        for account_no in UNIVERSE:
            gateway.open_account(account_no)
        yield gateway


def numbers(gateway: Gateway, query: str) -> list[str]:
    hits = search_accounts(gateway, query)
    assert all(hit.matched == "account_no" for hit in hits)  # no meters, no payments
    return [hit.account_no for hit in hits]


def expected(query: str) -> list[str]:
    return sorted(a for a in UNIVERSE if a.startswith(query))[:SEARCH_LIMIT]


typed = st.one_of(
    st.sampled_from(UNIVERSE).flatmap(lambda a: st.integers(1, len(a)).map(lambda k: a[:k])),
    st.text(ALPHABET, min_size=1, max_size=5),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=typed)
def test_a_prefix_finds_exactly_the_numbers_that_start_with_it(
    universe: Gateway, query: str
) -> None:
    assert numbers(universe, query) == expected(query)


def test_the_prefixes_at_the_boundaries(universe: Gateway) -> None:
    for query in ("319", "31:", "31%", "31_", "31\\", "3_", "3%", "31\U0001f600", "中", "32", "3"):
        assert numbers(universe, query) == expected(query), query
    assert {"319", "3190000001", "3190000002"} <= set(numbers(universe, "319"))
    assert numbers(universe, "31%") == ["31%", "31%x"]  # literal: not "31" and anything
    assert numbers(universe, "31_") == ["31_", "31_x"]
    assert numbers(universe, "31\\") == ["31\\", "31\\x"]
    assert numbers(universe, "31\U0010ffff") == []
    assert len(numbers(universe, "3")) == SEARCH_LIMIT


def test_prefix_end_by_example() -> None:
    assert prefix_end("319") == "31:"
    assert prefix_end("31\\") == "31]"
    assert prefix_end("3\U0010ffff\U0010ffff") == "4"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("\ud7ff") == "\ue000"  # the next character: surrogates are none


@given(prefix=st.text(min_size=1, max_size=4), rest=st.text(max_size=4), other=st.text())
def test_a_string_starts_with_a_prefix_exactly_when_it_is_in_its_range(
    prefix: str, rest: str, other: str
) -> None:
    end = prefix_end(prefix)
    for candidate in (prefix + rest, other, prefix[:-1] + other):
        inside = prefix <= candidate and (end is None or candidate < end)
        assert inside == candidate.startswith(prefix), (prefix, candidate, end)


def _plans(url: str, queries: list[tuple[str, str | None]]) -> list[str]:
    """The plan PostgreSQL makes for the search's statement, for each (prefix, end), kept
    generic (as a prepared statement's plan is after five runs) and made with the values."""
    sql = prefix_sql("postgresql", bounded=True)
    prepared = re.sub(r":(q|end|n)\b", lambda m: {"q": "$1", "end": "$2", "n": "$3"}[m[1]], sql)
    found = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"PREPARE search(text, text, int) AS {prepared}")
        for mode in ("force_generic_plan", "force_custom_plan"):
            conn.execute(f"SET plan_cache_mode = {mode}")
            for prefix, end in queries:
                values = [Literal(prefix), Literal(end), Literal(SEARCH_LIMIT)]
                statement = SQL("EXPLAIN EXECUTE search({}, {}, {})").format(*values)
                rows = conn.execute(statement).fetchall()
                found.append("\n".join(str(r[0]) for r in rows))
    return found


@pytest.mark.postgres
def test_on_postgresql_the_search_reads_an_ordered_range_of_its_index(pg_url: str) -> None:
    """20,000 accounts, analyzed: a narrow prefix and the broadest (every account) are both an
    index range of ix_accounts_account_no_c read in order up to the page's rows; no table
    scan, no sort, with the plan made for the values and with the generic one."""
    with Gateway.open(settings=settings_for(pg_url)) as gateway:
        gateway.open_account("3100000000")
        gateway.store.run(
            lambda tx: tx.execute(
                "INSERT INTO accounts (id, account_no, name, category, prepaid, protected, "
                "currency, supply_state, receivable_account_id, created_at) "
                "SELECT 900000000000 + n, '31' || lpad(n::text, 8, '0'), NULL, category, "
                "prepaid, protected, currency, supply_state, receivable_account_id, created_at "
                "FROM accounts, generate_series(1, 20000) AS n WHERE account_no = '3100000000'"
            )
        )
        gateway.store.run(lambda tx: tx.execute("ANALYZE accounts"))
        assert len(numbers(gateway, "310001234")) == 10
    queries = [("310001234", "310001235"), ("3", "4"), ("31000", "31001")]
    for plan in _plans(pg_url, queries):
        assert "Index Scan using ix_accounts_account_no_c" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
