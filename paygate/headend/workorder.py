"""The work-order head-end: supply orders carried out by a field crew, for meters out of reach.

Invariant 5 ("reconnection is never forgotten") as this adapter keeps it: the adapter holds
nothing that could be lost. :meth:`WorkOrderHeadEnd.send` reports the order ``dispatched`` with
a work order reference derived from the order id alone (the same on every attempt, in every
process), and the core records that. The crew's list is a function of the orders the core
holds, :func:`export_work_orders`, so a restart forgets nothing; completion is confirmed by an
operator through the core, never guessed here, so :meth:`WorkOrderHeadEnd.poll` returns None.

Exports list each order once, earliest deadline first, deadlines in the utility's time zone
with their UTC offset. CSV text cells that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are written with a leading ``'``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, Literal, Self, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paygate.clock import DEFAULT_TIMEZONE, Clock, SystemClock, require_aware
from paygate.errors import ConfigurationError, InvalidInputError
from paygate.headend.base import (
    CloseMode,
    HeadEnd,
    HeadEndOutcome,
    HeadEndResult,
    SupplyAction,
    SupplyCommand,
    close_mode_of,
)

__all__ = [
    "WORK_ORDER_COLUMNS",
    "WorkOrderConfig",
    "WorkOrderHeadEnd",
    "export_work_orders",
    "work_order_reference",
]

_log = logging.getLogger(__name__)

WORK_ORDER_COLUMNS: Final = (
    "order_id",
    "account_no",
    "meter_address",
    "action",
    "deadline",
    "address_note",
)
"""The columns of an export, in order (the keys of each JSON object)."""

DEFAULT_REFERENCE_PREFIX: Final = "WO-"

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


class WorkOrderConfig(BaseModel):
    """How work order references look."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    reference_prefix: str = Field(
        default=DEFAULT_REFERENCE_PREFIX,
        max_length=20,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="put before the order id to make the work order reference",
    )
    close_mode: CloseMode = Field(
        default=SupplyAction.DIRECT_CLOSE,
        description="how the crews reconnect: direct_close, or close_permit (the customer "
        "presses the meter's button); the action of each reconnection work order",
    )


def work_order_reference(command: SupplyCommand, prefix: str = DEFAULT_REFERENCE_PREFIX) -> str:
    """The work order reference of ``command``: ``prefix`` and the order id, nothing stored."""
    return f"{prefix}{command.order_id}"


class WorkOrderHeadEnd(HeadEnd):
    """Hands supply orders to field crews; see the module docstring.

    Construct it with a :class:`WorkOrderConfig` (or none, for the defaults) or, from a plain
    mapping, with :meth:`from_config`.
    """

    name: ClassVar[str] = "workorder"

    def __init__(
        self, config: WorkOrderConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self._config = config or WorkOrderConfig()
        self._clock: Clock = clock or SystemClock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, clock: Clock | None = None) -> Self:
        """Build from a mapping with the fields of :class:`WorkOrderConfig`; refuse it by field."""
        if not isinstance(config, Mapping):
            raise ConfigurationError("head-end workorder: the configuration must be a mapping")
        try:
            validated = WorkOrderConfig.model_validate(dict(config))
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            raise ConfigurationError(f"head-end workorder: {first['msg']}", field=field) from None
        return cls(validated, clock=clock)

    @property
    def config(self) -> WorkOrderConfig:
        """The configuration."""
        return self._config

    def __repr__(self) -> str:
        return f"WorkOrderHeadEnd(reference_prefix={self._config.reference_prefix!r})"

    def send(self, command: SupplyCommand) -> HeadEndResult:
        """Report ``command`` dispatched to the field crews, under its work order reference."""
        command = command.reconnecting_by(self._config.close_mode)
        reference = work_order_reference(command, self._config.reference_prefix)
        meter = command.meter_address or "(no meter address)"
        _log.info(
            "work order %s: %s %s of account %s, meter %s, by %s",
            reference,
            command.kind,
            command.action,
            command.account_no,
            meter,
            command.deadline.isoformat(),
        )
        return HeadEndResult(
            outcome=HeadEndOutcome.DISPATCHED,
            detail=f"field work order {reference}: {command.action} meter {meter} of account "
            f"{command.account_no}",
            reference=reference,
            at=self._clock.now(),
        )

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        """None: only an operator's confirmation, recorded by the core, completes a work order."""
        return None


def _cell(text: str) -> str:
    # A spreadsheet runs a cell starting with these as a formula; the crew's list is opened in
    # one, and an address note is free text.
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def export_work_orders(
    commands: Iterable[SupplyCommand],
    out: TextIO,
    format: Literal["csv", "json"] = "csv",
    *,
    address_notes: Mapping[str, str] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    close_mode: SupplyAction = SupplyAction.DIRECT_CLOSE,
) -> int:
    """Write the work orders for ``commands`` to ``out``; return how many were written.

    One row per order id (the highest attempt given wins), earliest deadline first, then by
    order id; columns :data:`WORK_ORDER_COLUMNS`. ``address_notes`` maps an account number to
    a note for the crew (where the meter is, who has the key); ``close_mode`` is how the
    crews reconnect (the head-end's ``config.close_mode``). Open a CSV file with
    ``newline=""`` (and ``encoding="utf-8-sig"`` if it will be opened in Excel).
    """
    try:
        close_mode = close_mode_of(close_mode)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="close_mode") from None
    if format not in ("csv", "json"):
        raise InvalidInputError(
            f"export format {format!r} is neither 'csv' nor 'json'", field="format"
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(f"unknown time zone {timezone!r}", field="timezone") from None
    notes = address_notes or {}
    latest: dict[int, SupplyCommand] = {}
    for given in commands:
        command = given.reconnecting_by(close_mode)
        require_aware(command.deadline, "deadline")
        held = latest.get(command.order_id)
        if held is None or command.attempt >= held.attempt:
            latest[command.order_id] = command
    ordered = sorted(latest.values(), key=lambda c: (c.deadline, c.order_id))
    rows: list[dict[str, Any]] = [
        {
            "order_id": command.order_id,
            "account_no": command.account_no,
            "meter_address": command.meter_address,
            "action": command.action.value,
            "deadline": command.deadline.astimezone(zone).isoformat(),
            "address_note": notes.get(command.account_no, ""),
        }
        for command in ordered
    ]
    if format == "json":
        json.dump(rows, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        writer = csv.writer(out)
        writer.writerow(WORK_ORDER_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["order_id"],
                    _cell(row["account_no"]),
                    _cell(row["meter_address"] or ""),
                    row["action"],
                    row["deadline"],
                    _cell(row["address_note"]),
                ]
            )
    return len(rows)
