"""The contract every channel adapter keeps, run over every registered adapter and a fake one."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from paygate.channels.base import (
    OPERATION_METHODS,
    ChannelAdapter,
    ChannelRegistry,
    NotifyResult,
    Operation,
)
from paygate.errors import (
    AuthenticationError,
    ParseError,
    PaygateError,
    UnsupportedOperationError,
)
from paygate.models import StatementLine, StatementLineKind
from tests.channels.contract import CASES, ContractCase, call_operation
from tests.channels.support import RecordingSink

REGISTERED = ChannelRegistry.discover()
NAMES = sorted({*REGISTERED.names(), "fake"})


def _all_subclasses(root: type[PaygateError]) -> set[type[PaygateError]]:
    found: set[type[PaygateError]] = set()
    for sub in root.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


PARSE_CODES = {cls.code for cls in _all_subclasses(ParseError) | {ParseError}}
AUTH_CODES = {cls.code for cls in _all_subclasses(AuthenticationError) | {AuthenticationError}}


@pytest.fixture(params=NAMES)
def case(request: pytest.FixtureRequest) -> ContractCase:
    return CASES[request.param]


@pytest.fixture
def adapter(case: ContractCase) -> ChannelAdapter[Any]:
    return case.build()


def test_every_registered_channel_has_a_contract_case() -> None:
    missing = set(REGISTERED.names()) - set(CASES)
    assert not missing, f"registered channels without a contract case: {sorted(missing)}"


def test_name_and_operations_are_declared(case: ContractCase, adapter: ChannelAdapter[Any]) -> None:
    assert adapter.name == case.name
    assert isinstance(adapter.operations, frozenset)
    assert adapter.operations
    assert all(isinstance(op, Operation) for op in adapter.operations)
    assert Operation.STATEMENT in adapter.operations
    # Declared exactly where implemented: the registry admits the class.
    ChannelRegistry().register(type(adapter))
    for operation, method in OPERATION_METHODS.items():
        overridden = getattr(type(adapter), method) is not getattr(ChannelAdapter, method)
        assert overridden == (operation in adapter.operations), method


def test_unsupported_operations_raise(adapter: ChannelAdapter[Any]) -> None:
    sink = RecordingSink()
    for operation in set(Operation) - adapter.operations:
        with pytest.raises(UnsupportedOperationError, match=adapter.name):
            call_operation(adapter, operation, sink)
    assert sink.calls == 0


def test_forged_notify_is_refused_without_calling_the_sink(
    case: ContractCase, adapter: ChannelAdapter[Any]
) -> None:
    sink = RecordingSink()
    body, headers = case.forged(adapter)
    result = case.send(adapter, body, headers, sink)
    assert isinstance(result, NotifyResult)
    assert not result.ok
    assert result.status_code == 401
    assert result.error_code in AUTH_CODES
    assert result.receipt is None
    assert sink.calls == 0


def test_oversized_body_is_refused_before_parsing(
    case: ContractCase, adapter: ChannelAdapter[Any]
) -> None:
    sink = RecordingSink()
    body = b"x" * (adapter.config.max_body_bytes + 1)
    result = case.send(adapter, body, {}, sink)
    assert result.status_code == 413
    assert result.error_code == "payload_too_large"
    assert sink.calls == 0


def test_malformed_body_is_refused_with_a_parse_error(
    case: ContractCase, adapter: ChannelAdapter[Any]
) -> None:
    sink = RecordingSink()
    body, headers = case.malformed(adapter)
    result = case.send(adapter, body, headers, sink)
    assert result.status_code == 400
    assert result.error_code in PARSE_CODES
    assert sink.calls == 0


def test_statement_lines_balance(case: ContractCase, adapter: ChannelAdapter[Any]) -> None:
    lines = list(adapter.read_statement(io.BytesIO(case.statement())))
    assert lines
    for line in lines:
        assert isinstance(line, StatementLine)
        assert line.net == line.gross - line.fee
        assert line.gross.minor > 0
        assert line.occurred_at.tzinfo is not None
        assert isinstance(line.kind, StatementLineKind)
    assert [line.line_no for line in lines] == sorted(line.line_no for line in lines)


def test_statement_errors_name_source_and_line(adapter: ChannelAdapter[Any]) -> None:
    stream = io.BytesIO(b"\xff\xfe not a statement \x00\n")
    stream.name = "broken.csv"
    with pytest.raises(ParseError) as caught:
        list(adapter.read_statement(stream))
    assert caught.value.source == "broken.csv"
    assert caught.value.line == 1


def test_business_date_respects_the_cutoff(adapter: ChannelAdapter[Any]) -> None:
    rules = adapter.settlement
    zone = ZoneInfo(rules.timezone)
    day = date(2024, 5, 1)
    cutoff = datetime.combine(day, rules.cutoff, zone)
    just_before = cutoff - timedelta(seconds=1)
    if rules.cutoff == time(0, 0):
        assert rules.business_date(just_before) == day - timedelta(days=1)
        assert rules.business_date(cutoff) == day
    else:
        assert rules.business_date(just_before) == day
        assert rules.business_date(cutoff) == day + timedelta(days=1)
    business_day = rules.business_date(cutoff)
    assert rules.settlement_date(business_day) == business_day + timedelta(days=rules.lag_days)


def test_secrets_are_absent_from_repr(case: ContractCase, adapter: ChannelAdapter[Any]) -> None:
    shown = repr(adapter) + str(adapter) + repr(adapter.config) + adapter.config.model_dump_json()
    for secret in case.secrets:
        assert secret not in shown
    assert adapter.name in repr(adapter)
