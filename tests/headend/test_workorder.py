"""The work-order head-end: references without state, and the crews' list as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from paygate.clock import FixedClock
from paygate.errors import ConfigurationError, InvalidInputError, NaiveDatetimeError
from paygate.headend.base import HeadEndOutcome, HeadEndResult, SupplyAction, SupplyCommand
from paygate.headend.workorder import (
    WORK_ORDER_COLUMNS,
    WorkOrderConfig,
    WorkOrderHeadEnd,
    export_work_orders,
)


@pytest.fixture
def orders(command: SupplyCommand) -> list[SupplyCommand]:
    """Three orders, given out of deadline order; order 7 has no meter address."""
    return [
        command,  # order 42, deadline in 24 h
        command.model_copy(
            update={
                "order_id": 7,
                "account_no": "0100111111",
                "meter_address": None,
                "action": SupplyAction.CLOSE_PERMIT,
                "deadline": command.deadline - timedelta(hours=20),
            }
        ),
        command.model_copy(
            update={
                "order_id": 9,
                "kind": "disconnect",
                "account_no": "0100222222",
                "meter_address": "201905241009",
                "action": SupplyAction.TRIP,
                "deadline": command.deadline - timedelta(hours=10),
            }
        ),
    ]


def test_sending_dispatches_a_work_order_whose_reference_comes_from_the_order_alone(
    clock: FixedClock, command: SupplyCommand
) -> None:
    first = WorkOrderHeadEnd(clock=clock).send(command)
    # Another process, another attempt: nothing remembered, the same reference.
    again = WorkOrderHeadEnd(clock=clock).send(command.model_copy(update={"attempt": 2}))

    assert (
        first
        == again
        == HeadEndResult(
            outcome=HeadEndOutcome.DISPATCHED,
            detail="field work order WO-42: direct_close meter 201905241006 of account 0100234567",
            reference="WO-42",
            at=clock.now(),
        )
    )


def test_only_an_operator_completes_a_work_order_so_polling_knows_nothing(
    command: SupplyCommand,
) -> None:
    assert WorkOrderHeadEnd().poll(command) is None


def test_the_reference_prefix_is_configurable_and_checked(command: SupplyCommand) -> None:
    headend = WorkOrderHeadEnd.from_config({"reference_prefix": "GD-"})

    assert headend.send(command).reference == "GD-42"
    assert WorkOrderHeadEnd(WorkOrderConfig(reference_prefix="")).send(command).reference == "42"
    for bad in ({"reference_prefix": "a b"}, {"reference_prefix": "x" * 21}, {"crew": "north"}):
        with pytest.raises(ConfigurationError) as caught:
            WorkOrderHeadEnd.from_config(bad)
        assert caught.value.field == next(iter(bad))


def test_csv_export_lists_each_order_once_earliest_deadline_first_in_local_time(
    orders: list[SupplyCommand],
) -> None:
    out = io.StringIO()
    retried = orders[0].model_copy(update={"attempt": 3})

    written = export_work_orders(
        [*orders, retried], out, address_notes={"0100111111": "2F, key next door"}
    )

    assert written == 3
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        list(WORK_ORDER_COLUMNS),
        ["7", "0100111111", "", "close_permit", "2026-11-25T14:00:00+08:00", "2F, key next door"],
        ["9", "0100222222", "201905241009", "trip", "2026-11-26T00:00:00+08:00", ""],
        ["42", "0100234567", "201905241006", "direct_close", "2026-11-26T10:00:00+08:00", ""],
    ]  # fmt: skip


def test_json_export_has_the_same_rows_as_objects(orders: list[SupplyCommand]) -> None:
    out = io.StringIO()

    written = export_work_orders(orders, out, format="json", timezone="UTC")

    assert written == 3
    assert out.getvalue().endswith("\n")
    data = json.loads(out.getvalue())
    assert [tuple(row) for row in data] == [WORK_ORDER_COLUMNS] * 3
    assert data[0] == {
        "order_id": 7,
        "account_no": "0100111111",
        "meter_address": None,
        "action": "close_permit",
        "deadline": "2026-11-25T06:00:00+00:00",
        "address_note": "",
    }
    assert [row["order_id"] for row in data] == [7, 9, 42]


def test_an_empty_list_exports_a_header_or_an_empty_array() -> None:
    csv_out, json_out = io.StringIO(), io.StringIO()

    assert export_work_orders([], csv_out) == 0
    assert export_work_orders([], json_out, format="json") == 0
    assert csv_out.getvalue().splitlines() == [",".join(WORK_ORDER_COLUMNS)]
    assert json.loads(json_out.getvalue()) == []


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused_in_csv(
    command: SupplyCommand,
) -> None:
    out = io.StringIO()
    note = '=HYPERLINK("http://evil.example","click")'

    export_work_orders([command], out, address_notes={command.account_no: note})

    [_, row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row[-1] == "'" + note


def test_chinese_address_notes_survive_both_formats(command: SupplyCommand) -> None:
    note = "3号楼2单元，电表箱在楼道"
    for format in ("csv", "json"):
        out = io.StringIO()
        export_work_orders([command], out, format, address_notes={command.account_no: note})  # type: ignore[arg-type]
        assert note in out.getvalue()


def test_an_export_that_cannot_be_written_is_refused_by_name(command: SupplyCommand) -> None:
    with pytest.raises(InvalidInputError) as caught:
        export_work_orders([command], io.StringIO(), "xlsx")  # type: ignore[arg-type]
    assert caught.value.field == "format"

    with pytest.raises(InvalidInputError) as caught:
        export_work_orders([command], io.StringIO(), timezone="Mars/Olympus")
    assert caught.value.field == "timezone"

    naive = command.model_copy(update={"deadline": command.deadline.replace(tzinfo=None)})
    with pytest.raises(NaiveDatetimeError):
        export_work_orders([naive], io.StringIO())
