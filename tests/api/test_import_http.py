"""The bulk imports over a real server, on both databases: ``POST /v1/accounts/import`` and
``POST /v1/bills/import`` for service clients holding ``accounts:write`` / ``bills:write``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretBytes

from paygate.api import create_app
from paygate.api.config import ApiConfig, api_config
from paygate.api.routes.imports import MAX_LINE_BYTES, MAX_LISTED
from paygate.config import PaygateConfig
from paygate.config.sections import DEFAULT_IMPORT_MAX_BYTES
from paygate.errors import ConfigurationError, UnknownAccountError
from paygate.money import Money
from paygate.service_clients import ServiceClientRegistry
from paygate.tokens import TokenSettings
from tests.api.support import LiveServer, World, open_world, settings_for

KEY = Ed25519PrivateKey.generate()
TOKENS = TokenSettings(
    signing_key=SecretBytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
)
CSV = {"Content-Type": "text/csv"}
LIMIT = 256 * 1024


@pytest.fixture
def import_world(db_url: str) -> Iterator[World]:
    world = open_world(db_url)
    try:
        yield world
    finally:
        world.gateway.close()


@pytest.fixture
def server(db_url: str, import_world: World) -> Iterator[LiveServer]:
    settings = settings_for(db_url)
    config = ApiConfig(import_max_bytes=LIMIT)
    with LiveServer(lambda: create_app(settings, config=config, tokens=TOKENS)) as running:
        yield running


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def token_for(http: httpx.Client, world: World, client_id: str, scopes: list[str]) -> str:
    _, secret = ServiceClientRegistry(world.gateway.store, world.gateway.clock).add(
        client_id, scopes
    )
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    answer = http.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {**CSV, "Authorization": f"Bearer {token}"}


@pytest.fixture
def writer(http: httpx.Client, import_world: World) -> dict[str, str]:
    return bearer(token_for(http, import_world, "billing", ["accounts:write", "bills:write"]))


ACCOUNTS = (
    "account_no,category,prepaid,protected,name,currency\n"
    "ACC-1,residential,false,false,Li Lei,CNY\n"
    "ACC-2,non_residential,no,yes,,\n"
    "\n"
    "ACC-3,,,,Han Meimei,\n"
)


def test_accounts_created_then_replayed(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    first = http.post("/v1/accounts/import", content=ACCOUNTS, headers=writer)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "read": 3,
        "created": 3,
        "replayed": 0,
        "conflicts": 0,
        "refused": 0,
        "issues": [],
    }
    status = import_world.gateway.account_status("ACC-2")
    assert status.account_no == "ACC-2"
    again = http.post("/v1/accounts/import", content=ACCOUNTS, headers=writer)
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["replayed"]) == (0, 3)


def test_a_conflict_is_named_by_its_line(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    import_world.gateway.open_account("ACC-9", category="non_residential")
    body = "account_no,category\nACC-8,residential\nACC-9,residential\n"
    answer = http.post("/v1/accounts/import", content=body, headers=writer)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["created"], found["conflicts"]) == (1, 1)
    [issue] = found["issues"]
    assert (issue["line"], issue["status"], issue["key"]) == (3, "conflict", "ACC-9")
    assert issue["code"] == "duplicate_account"


def test_bills_issued_replayed_and_refused_by_line(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    import_world.gateway.open_account("B-1")
    body = (
        "account_no,bill_no,amount,period,due_date\n"
        "B-1,2026-11-B-1,120.50,2026-11,2026-12-15\n"
        "NOBODY,2026-11-NOBODY,10.00,2026-11,2026-12-15\n"
    )
    answer = http.post("/v1/bills/import", content=body, headers=writer)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["read"], found["created"], found["refused"]) == (2, 1, 1)
    [issue] = found["issues"]
    assert (issue["line"], issue["status"], issue["key"]) == (3, "refused", "2026-11-NOBODY")
    assert issue["code"] == UnknownAccountError.code
    owed = import_world.gateway.account_status("B-1").outstanding
    assert owed == Money(12050, "CNY")
    again = http.post("/v1/bills/import", content=body, headers=writer).json()
    assert (again["created"], again["replayed"], again["refused"]) == (0, 1, 1)
    assert import_world.gateway.account_status("B-1").outstanding == owed


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("account_no,category\nA-1,residential\nA-2,business\n", 3, "category"),
        ("account_no,category\nA-1,residential\nA-2\n", 3, None),
        ("account_no,colour\nA-1,red\n", 1, "header"),
        ("account_no,prepaid\nA-1,perhaps\n", 2, "prepaid"),
    ],
)
def test_a_malformed_line_is_named_and_nothing_written(
    http: httpx.Client,
    writer: dict[str, str],
    import_world: World,
    body: str,
    line: int,
    field: str | None,
) -> None:
    answer = http.post("/v1/accounts/import", content=body, headers=writer)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "malformed_file"
    assert (problem["line"], problem.get("field")) == (line, field)
    assert problem["errors"][0]["line"] == line
    with pytest.raises(UnknownAccountError):
        import_world.gateway.account_status("A-1")


def test_a_malformed_bill_amount_names_line_and_column(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    import_world.gateway.open_account("B-1")
    body = (
        "account_no,bill_no,amount,period,due_date\n"
        "B-1,X-1,10.00,2026-11,2026-12-15\n"
        "B-1,X-2,ten,2026-11,2026-12-15\n"
        "B-1,X-3,1.00,2026-11,15/12/2026\n"
    )
    problem = http.post("/v1/bills/import", content=body, headers=writer).json()
    assert (problem["code"], problem["line"], problem["field"]) == ("malformed_file", 3, "amount")
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(3, "amount"), (4, "due_date")]
    assert import_world.gateway.account_status("B-1").outstanding == Money(0, "CNY")


def test_many_malformed_lines_are_listed_up_to_the_limit(
    http: httpx.Client, writer: dict[str, str]
) -> None:
    body = "account_no,prepaid\n" + "".join(f"A-{n},maybe\n" for n in range(MAX_LISTED + 20))
    problem = http.post("/v1/accounts/import", content=body, headers=writer).json()
    assert len(problem["errors"]) == MAX_LISTED
    assert str(MAX_LISTED + 20) in problem["detail"]


def test_bytes_not_utf8_are_named_by_line(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    body = b"account_no,name\nA-1,ok\nA-2," + "李".encode("gb18030") + b"\n"
    problem = http.post("/v1/accounts/import", content=body, headers=writer).json()
    assert (problem["code"], problem["line"]) == ("malformed_file", 3)
    assert "UTF-8" in problem["detail"]
    with pytest.raises(UnknownAccountError):
        import_world.gateway.account_status("A-1")


def test_a_line_too_long_is_named_without_being_held(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    body = "account_no,name\nA-1,ok\nA-2," + "x" * (MAX_LINE_BYTES + 10) + "\nA-3,ok\n"
    problem = http.post("/v1/accounts/import", content=body, headers=writer).json()
    assert (problem["code"], problem["line"]) == ("malformed_file", 3)
    assert str(MAX_LINE_BYTES) in problem["detail"]
    with pytest.raises(UnknownAccountError):
        import_world.gateway.account_status("A-1")


def test_no_token_is_401_and_wrong_scope_is_403(http: httpx.Client, import_world: World) -> None:
    none = http.post("/v1/accounts/import", content=ACCOUNTS, headers=CSV)
    assert none.status_code == 401
    assert none.json()["code"] == "token_required"
    assert none.headers["www-authenticate"].startswith("Bearer")
    reader = bearer(token_for(http, import_world, "reader", ["payments:read"]))
    refused = http.post("/v1/accounts/import", content=ACCOUNTS, headers=reader)
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    accounts_only = bearer(token_for(http, import_world, "accounts", ["accounts:write"]))
    bills = "account_no,bill_no,amount,period,due_date\nACC-1,X,1.00,2026-11,2026-12-15\n"
    assert http.post("/v1/bills/import", content=bills, headers=accounts_only).status_code == 403
    with pytest.raises(UnknownAccountError):
        import_world.gateway.account_status("ACC-1")


def test_not_csv_is_415(http: httpx.Client, writer: dict[str, str]) -> None:
    headers = {**writer, "Content-Type": "application/json"}
    answer = http.post("/v1/accounts/import", content=ACCOUNTS, headers=headers)
    assert answer.status_code == 415
    assert answer.json()["code"] == "unsupported_media_type"
    latin = {**writer, "Content-Type": "text/csv; charset=latin-1"}
    assert http.post("/v1/accounts/import", content=ACCOUNTS, headers=latin).status_code == 415


def test_over_the_limit_is_413_declared_or_streamed(
    http: httpx.Client, writer: dict[str, str], import_world: World
) -> None:
    big = "account_no\n" + "".join(f"BIG-{n:08d}\n" for n in range(LIMIT // 10))
    assert len(big) > LIMIT
    declared = http.post("/v1/accounts/import", content=big, headers=writer)
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        data = big.encode()
        for at in range(0, len(data), 4096):
            yield data[at : at + 4096]

    streamed = http.post("/v1/accounts/import", content=chunks(), headers=writer)
    assert streamed.status_code == 413
    with pytest.raises(UnknownAccountError):
        import_world.gateway.account_status("BIG-00000000")


def test_twenty_thousand_accounts_stream_in_and_replay(db_url: str, import_world: World) -> None:
    """A file of 20,000 accounts sent chunked (no Content-Length), then sent again."""
    count = 20_000
    settings = settings_for(db_url)
    config = ApiConfig(import_max_bytes=8 * 1024 * 1024)
    with (
        LiveServer(lambda: create_app(settings, config=config, tokens=TOKENS)) as running,
        httpx.Client(base_url=running.url, timeout=600) as http,
    ):
        headers = bearer(token_for(http, import_world, "bulk", ["accounts:write"]))

        def lines() -> Iterator[bytes]:
            yield b"account_no,category,name\n"
            for n in range(count):
                yield f"S-{n:06d},residential,Customer {n}\n".encode()

        first = http.post("/v1/accounts/import", content=lines(), headers=headers)
        assert first.status_code == 200, first.text
        assert (first.json()["read"], first.json()["created"]) == (count, count)
        again = http.post("/v1/accounts/import", content=lines(), headers=headers)
        assert (again.json()["created"], again.json()["replayed"]) == (0, count)
    assert import_world.gateway.account_status(f"S-{count - 1:06d}").account_no == (
        f"S-{count - 1:06d}"
    )


def test_the_import_limit_is_read_from_the_api_section(tmp_path: Path) -> None:
    path = tmp_path / "paygate.toml"
    path.write_text("[api]\nimport_max_bytes = 1048576\n")
    assert api_config(PaygateConfig.load(path, environ={}), environ={}).import_max_bytes == 1048576
    default = api_config(PaygateConfig.load(environ={}), environ={})
    assert default.import_max_bytes == DEFAULT_IMPORT_MAX_BYTES


@pytest.mark.parametrize("value", ["0", "-1", "true", '"big"'])
def test_an_import_limit_that_is_not_a_positive_count_is_refused(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "paygate.toml"
    path.write_text(f"[api]\nimport_max_bytes = {value}\n")
    with pytest.raises(ConfigurationError, match=r"api\.import_max_bytes"):
        PaygateConfig.load(path, environ={})


# One row of an accounts file: a good one, or one of the ways a line is not a record.
ROWS = st.one_of(
    st.builds(
        lambda n, category: ("ok", f"P-{n:04d},{category},no"),
        st.integers(0, 9999),
        st.sampled_from(["residential", "non_residential", ""]),
    ),
    st.sampled_from(
        [
            ("bad", "P-0001,business,no"),  # no such category
            ("bad", "P-0002,residential,perhaps"),  # not a flag
            ("bad", "P-0003,residential"),  # a field short
            ("bad", "P-0004,residential,no,extra"),  # a field over
            ("bad", ",residential,no"),  # no account number
        ]
    ),
)


@given(rows=st.lists(ROWS, min_size=1, max_size=30))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_file_is_written_whole_or_not_at_all(
    http: httpx.Client, writer: dict[str, str], import_world: World, rows: list[tuple[str, str]]
) -> None:
    """Any file with a malformed line writes nothing and names its first malformed line; any
    file without one is decided line by line, and a second sending replays every account."""
    body = "account_no,category,prepaid\n" + "".join(f"{text}\n" for _, text in rows)
    before = import_world.gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts"), write=False
    )
    answer = http.post("/v1/accounts/import", content=body, headers=writer)
    bad = [line for line, (kind, _) in enumerate(rows, 2) if kind == "bad"]
    after = import_world.gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts"), write=False
    )
    if bad:
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert problem["line"] == bad[0]
        assert [e["line"] for e in problem["errors"]] == bad
        assert after == before
        return
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["read"] == len(rows)
    assert found["created"] + found["replayed"] + found["conflicts"] == len(rows)
    assert after - before == found["created"]
    again = http.post("/v1/accounts/import", content=body, headers=writer).json()
    assert again["created"] == 0
    assert again["replayed"] + again["conflicts"] == len(rows)


def test_the_same_file_sent_twice_at_once_is_written_once(db_url: str, import_world: World) -> None:
    """Two clients send the same file at the same time (a retry racing the original): every
    account is created by exactly one of them and replayed by the other."""
    count = 3000
    settings = settings_for(db_url).model_copy(update={"billing_run_chunk": 250})
    body = "account_no,name\n" + "".join(f"R-{n:05d},Customer {n}\n" for n in range(count))
    with (
        LiveServer(lambda: create_app(settings, tokens=TOKENS)) as running,
        httpx.Client(base_url=running.url, timeout=300) as http,
    ):
        headers = bearer(token_for(http, import_world, "racer", ["accounts:write"]))
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(
                    lambda _: http.post("/v1/accounts/import", content=body, headers=headers),
                    range(2),
                )
            )
    results = [a.json() for a in answers]
    assert [a.status_code for a in answers] == [200, 200], results
    assert sum(r["created"] for r in results) == count
    assert sum(r["replayed"] for r in results) == count
    assert all(r["conflicts"] == r["refused"] == 0 for r in results)
    stored = import_world.gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM accounts WHERE account_no LIKE 'R-%'"),
        write=False,
    )
    assert stored == count
