"""The bank transfer route: lines in the outbound batch file (header, lines, trailer with
count and total), the bank's return file, and one line per refund whatever happens."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.errors import IdempotencyConflictError, InvalidInputError, ParseError
from paygate.money import Money
from paygate.refunds.route import Payee, RefundRouteUnavailable, RefundState
from paygate.refunds.routes import BankTransferRoute, read_return_file, read_transfer_file
from paygate.refunds.routes.bank_transfer import amount_text, parse_amount
from tests.refunds_routes.conftest import request

PAYEE = Payee(name="张三", account_number="6217000010001234567", bank_code="105100000017")
OTHER = Payee(name="李四", account_number="6228480010987654321", bank_code="103100000026")
MAY_1 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


def route(tmp: Path, *, now: datetime = MAY_1, unit: str = "fen") -> BankTransferRoute:
    return BankTransferRoute(
        outbound_dir=tmp / "to_bank",
        return_dir=tmp / "from_bank",
        payer_account="6222020200112233445",
        amount_unit=unit,  # type: ignore[arg-type]
        clock=FixedClock(now),
    )


def open_file(tmp: Path) -> Path:
    (found,) = (tmp / "to_bank").glob("*.txt.part")
    return found


def write_return(
    tmp: Path, name: str, lines: list[str], *, count: int | None = None, total: int | None = None
) -> Path:
    count = len(lines) if count is None else count
    if total is None:
        total = sum(int(line.split("|")[2]) for line in lines)
    text = "\r\n".join([f"H|RF20240501001|20240502|{count}|{total}", *lines, f"T|{count}|{total}"])
    path = tmp / "from_bank" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text + "\r\n").encode("gbk"))
    return path


def test_submitted_refunds_are_lines_of_the_open_batch_with_agreeing_totals(tmp_path: Path) -> None:
    bank = route(tmp_path)
    first = bank.submit(request("R-1", Money(10050, "CNY"), payment=None, payee=PAYEE))
    second = bank.submit(request("R-2", Money(2000, "CNY"), payment=None, payee=OTHER))
    assert first.state is second.state is RefundState.PENDING
    assert first.provider_reference == "RF20240501001"
    path = open_file(tmp_path)
    raw = path.read_bytes().decode("gbk").split("\r\n")
    assert raw[0] == "H|RF20240501001|20240501|2|12050|6222020200112233445"
    assert raw[1] == "D|1|R-1|6217000010001234567|张三|105100000017|10050|0101234567|overpaid bill"
    assert raw[2].startswith("D|2|R-2|6228480010987654321|李四|")
    assert raw[3] == "T|2|12050"
    batch_no, batch_date, lines = read_transfer_file(path)
    assert (batch_no, str(batch_date), [line.refund_id for line in lines]) == (
        "RF20240501001",
        "2024-05-01",
        ["R-1", "R-2"],
    )


def test_a_repeated_submit_adds_no_line_even_after_a_restart_and_a_closed_batch(
    tmp_path: Path,
) -> None:
    bank = route(tmp_path)
    refund = request("R-1", payment=None, payee=PAYEE)
    bank.submit(refund)
    route(tmp_path).submit(refund)  # a restarted process
    assert len(read_transfer_file(open_file(tmp_path))[2]) == 1
    closed = bank.close_batch()
    assert closed is not None and closed.name == "RF20240501001.txt"
    # The sender takes the closed file away; the refund is still known.
    closed.rename(tmp_path / "sent.txt")
    again = route(tmp_path).submit(refund)
    assert again.provider_reference == "RF20240501001"
    assert list((tmp_path / "to_bank").glob("*.part")) == []
    with pytest.raises(IdempotencyConflictError):
        bank.submit(request("R-1", Money(1, "CNY"), payment=None, payee=PAYEE))


def test_a_new_day_closes_yesterdays_batch_and_numbers_the_next(tmp_path: Path) -> None:
    route(tmp_path).submit(request("R-1", payment=None, payee=PAYEE))
    next_day = datetime(2024, 5, 1, 16, 30, tzinfo=UTC)  # 00:30 on 2 May in Beijing
    outcome = route(tmp_path, now=next_day).submit(request("R-2", payment=None, payee=PAYEE))
    assert outcome.provider_reference == "RF20240502001"
    names = sorted(p.name for p in (tmp_path / "to_bank").glob("RF*"))
    assert names == ["RF20240501001.txt", "RF20240502001.txt.part"]
    bank = route(tmp_path, now=next_day)
    bank.close_batch()
    third = bank.submit(request("R-3", payment=None, payee=PAYEE))
    assert third.provider_reference == "RF20240502002"


def test_a_line_written_before_a_crash_is_still_one_line(tmp_path: Path) -> None:
    bank = route(tmp_path)
    bank.submit(request("R-1", payment=None, payee=PAYEE))
    # The crash came after the batch file was renamed into place, before the index was written.
    (tmp_path / "to_bank" / "refunds.index").write_bytes(b"")
    bank.submit(request("R-1", payment=None, payee=PAYEE))
    assert [line.refund_id for line in read_transfer_file(open_file(tmp_path))[2]] == ["R-1"]


def _submit_many(directory: str, start: int) -> None:
    bank = route(Path(directory))
    for n in range(start, start + 15):
        bank.submit(request(f"R-{n % 20}", payment=None, payee=PAYEE))


def test_two_processes_submitting_the_same_refunds_write_each_line_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_submit_many, args=(str(tmp_path), s)) for s in (0, 5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    lines = read_transfer_file(open_file(tmp_path))[2]
    ids = [line.refund_id for line in lines]
    assert sorted(ids) == sorted(f"R-{n}" for n in range(20))
    assert [line.seq for line in lines] == list(range(1, 21))


def test_a_transfer_needs_a_payee_that_the_file_can_hold(tmp_path: Path) -> None:
    bank = route(tmp_path)
    with pytest.raises(InvalidInputError) as missing:
        bank.submit(request("R-1", payment=None))
    assert missing.value.field == "payee"
    bad = Payee(name="A|B", account_number="1", bank_code="2")
    with pytest.raises(InvalidInputError) as piped:
        bank.submit(request("R-1", payment=None, payee=bad))
    assert piped.value.field == "payee.name"
    assert not list((tmp_path / "to_bank").glob("*.part"))


# ── the return file ──────────────────────────────────────────────────────────────────────


def test_query_is_pending_until_the_return_file_says_paid_or_failed(tmp_path: Path) -> None:
    bank = route(tmp_path)
    paid, refused = (
        request("R-1", payment=None, payee=PAYEE),
        request("R-2", payment=None, payee=OTHER),
    )
    bank.submit(paid)
    bank.submit(refused)
    assert bank.query(paid).state is RefundState.PENDING
    write_return(
        tmp_path,
        "RF20240501001.ret",
        ["D|R-1|5000|0000|BK240502000017|success", "D|R-2|5000|3012|BK240502000018|account closed"],
    )
    assert bank.query(paid) == bank.query(paid)
    outcome = bank.query(paid)
    assert (outcome.state, outcome.provider_reference) == (RefundState.SUCCEEDED, "BK240502000017")
    failed = bank.query(refused)
    assert (failed.state, failed.failure_code, failed.failure_message) == (
        RefundState.FAILED,
        "3012",
        "account closed",
    )
    never = bank.query(request("R-9", payment=None, payee=PAYEE))
    assert (never.state, never.failure_code) == (RefundState.FAILED, "not_submitted")


def test_a_return_line_for_another_amount_is_not_believed(tmp_path: Path) -> None:
    bank = route(tmp_path)
    bank.submit(request("R-1", payment=None, payee=PAYEE))
    write_return(tmp_path, "a.ret", ["D|R-1|4999|0000|BK1|success"])
    with pytest.raises(RefundRouteUnavailable, match="another amount"):
        bank.query(request("R-1", payment=None, payee=PAYEE))


MALFORMED = {
    "count": (["D|R-1|5000|0000|BK1|ok"], {"count": 2}, 3, "count"),
    "total": (["D|R-1|5000|0000|BK1|ok"], {"total": 4000}, 3, "total"),
    "amount": (["D|R-1|50.00|0000|BK1|ok"], {"total": 0}, 2, "amount"),
    "code": (["D|R-1|5000||BK1|ok"], {}, 2, "result_code"),
    "twice": (["D|R-1|5000|0000|BK1|ok", "D|R-1|5000|0000|BK2|ok"], {}, 3, "refund_id"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_return_file_is_refused_naming_file_and_line(tmp_path: Path, case: str) -> None:
    lines, figures, line, field = MALFORMED[case]
    path = write_return(tmp_path, "bad.ret", lines, **figures)  # type: ignore[arg-type]
    with pytest.raises(ParseError) as refused:
        read_return_file(path)
    assert (refused.value.source, refused.value.line, refused.value.field) == (
        "bad.ret",
        line,
        field,
    )
    bank = route(tmp_path)
    bank.submit(request("R-1", payment=None, payee=PAYEE))
    with pytest.raises(RefundRouteUnavailable, match=f"bad.ret.*{line}"):
        bank.query(request("R-1", payment=None, payee=PAYEE))


def test_a_truncated_return_file_is_refused_at_its_last_line(tmp_path: Path) -> None:
    path = write_return(tmp_path, "cut.ret", ["D|R-1|5000|0000|BK1|ok"])
    path.write_bytes(b"\r\n".join(path.read_bytes().split(b"\r\n")[:2]))
    with pytest.raises(ParseError, match="truncated") as refused:
        read_return_file(path)
    assert (refused.value.source, refused.value.line) == ("cut.ret", 2)


# ── amounts ──────────────────────────────────────────────────────────────────────────────


@given(minor=st.integers(1, 10**13), unit=st.sampled_from(["fen", "yuan"]))
def test_amounts_round_trip_exactly_in_either_unit(minor: int, unit: str) -> None:
    money = Money(minor, "CNY")
    text = amount_text(money, unit)  # type: ignore[arg-type]
    assert parse_amount(text, unit, "CNY", source="f", line=1, field="amount") == money  # type: ignore[arg-type]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amounts=st.lists(st.integers(1, 10**11), min_size=1, max_size=8),
    unit=st.sampled_from(["fen", "yuan"]),
)
def test_the_trailer_states_the_count_and_sum_of_any_lines(
    tmp_path_factory: pytest.TempPathFactory, amounts: list[int], unit: str
) -> None:
    tmp = tmp_path_factory.mktemp("batch")
    bank = route(tmp, unit=unit)
    for n, minor in enumerate(amounts):
        bank.submit(request(f"R-{n}", Money(minor, "CNY"), payment=None, payee=PAYEE))
    raw = open_file(tmp).read_bytes().decode("gbk").split("\r\n")
    total = amount_text(Money(sum(amounts), "CNY"), unit)  # type: ignore[arg-type]
    assert raw[-2] == f"T|{len(amounts)}|{total}"
    assert raw[0].split("|")[3:5] == [str(len(amounts)), total]
    lines = read_transfer_file(open_file(tmp), amount_unit=unit)[2]  # type: ignore[arg-type]
    assert [line.amount.minor for line in lines] == amounts


def test_a_header_that_disagrees_with_its_lines_is_refused_at_the_header(tmp_path: Path) -> None:
    path = write_return(tmp_path, "head.ret", ["D|R-1|5000|0000|BK1|ok"])
    text = path.read_bytes().replace(
        b"H|RF20240501001|20240502|1|5000", b"H|RF20240501001|20240502|1|5001"
    )
    path.write_bytes(text)
    with pytest.raises(ParseError) as refused:
        read_return_file(path)
    assert (refused.value.line, refused.value.field) == (1, "total")


def test_a_reason_the_encoding_cannot_write_is_written_with_question_marks(tmp_path: Path) -> None:
    from dataclasses import replace

    bank = route(tmp_path)
    bank.submit(replace(request("R-1", payment=None, payee=PAYEE), reason="refund 🙂 | done"))
    [line] = read_transfer_file(open_file(tmp_path))[2]
    assert line.reason == "refund ?   done"


def test_an_encoding_that_is_not_ascii_compatible_is_refused_in_the_configuration() -> None:
    from pydantic import ValidationError

    from paygate.refunds.routes import BankTransferRouteSection

    base = {"outbound_dir": "o", "return_dir": "r", "payer_account": "1"}
    with pytest.raises(ValidationError, match="ASCII"):
        BankTransferRouteSection.model_validate(base | {"encoding": "utf-16"})
    with pytest.raises(ValidationError, match="unknown encoding"):
        BankTransferRouteSection.model_validate(base | {"encoding": "no-such"})
