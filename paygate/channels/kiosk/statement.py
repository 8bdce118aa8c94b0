"""The kiosk statement reader and its settlement rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time
from typing import Final
from zoneinfo import ZoneInfo

from paygate.channels.base import FeeSchedule, SettlementRules, StatementSource
from paygate.channels.kiosk.messages import channel_txn_id, is_terminal_id, method_of
from paygate.channels.wire import (
    csv_statement_rows,
    make_statement_line,
    parse_local_time,
    parse_money,
    shown,
    source_label,
)
from paygate.clock import DEFAULT_TIMEZONE
from paygate.errors import ParseError
from paygate.models import StatementLine, StatementLineKind
from paygate.money import Money

KIOSK_STATEMENT_COLUMNS: Final = (
    "terminal_id",
    "txn_id",
    "account_no",
    "amount",
    "method",
    "paid_at",
)
"""The header of the kiosk operator's daily CSV."""


def read_kiosk_statement(
    source: StatementSource, *, currency: str, timezone: str = DEFAULT_TIMEZONE
) -> Iterator[StatementLine]:
    """Read the kiosk operator's daily CSV (UTF-8, optional BOM) line by line.

    Layout: the header :data:`KIOSK_STATEMENT_COLUMNS`, then one row per payment:
    ``amount`` in major units (``120.50``), ``method`` ``cash`` or ``card`` (agreeing with
    the transaction id's prefix), ``paid_at`` ``YYYY-MM-DD hh:mm:ss`` local time in
    ``timezone``. The line's channel transaction id is ``<terminal>:<txn_id>``, as the
    ledger has it; its reference is the terminal; a kiosk charges no fee.
    """
    label = source_label(source)
    zone = ZoneInfo(timezone)
    zero = Money.zero(currency)
    for line_no, row in csv_statement_rows(
        source, KIOSK_STATEMENT_COLUMNS, what="a kiosk statement"
    ):
        if not is_terminal_id(row["terminal_id"]):
            raise ParseError(
                f"not a terminal id: {shown(row['terminal_id'])}",
                source=label,
                line=line_no,
                field="terminal_id",
            )
        method = method_of(row["txn_id"])
        if method is None:
            raise ParseError(
                f"not a kiosk transaction id: {shown(row['txn_id'])}",
                source=label,
                line=line_no,
                field="txn_id",
            )
        if row["method"] != method.value:
            raise ParseError(
                f"method {shown(row['method'])} contradicts transaction id {row['txn_id']!r}",
                source=label,
                line=line_no,
                field="method",
            )
        yield make_statement_line(
            line_no=line_no,
            kind=StatementLineKind.PAYMENT,
            gross=parse_money(row["amount"], currency, source=label, line=line_no, field="amount"),
            fee=zero,
            occurred_at=parse_local_time(
                row["paid_at"],
                "%Y-%m-%d %H:%M:%S",
                zone,
                source=label,
                line=line_no,
                field="paid_at",
            ),
            channel_txn_id=channel_txn_id(row["terminal_id"], row["txn_id"]),
            account_no=row["account_no"],
            reference=row["terminal_id"],
            source=label,
        )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def kiosk_settlement() -> SettlementRules:
    """The kiosk day closes at midnight; cash-in-transit deposits it T+1; no fee."""
    return SettlementRules(cutoff=time(0, 0), lag_days=1, grace_days=2, fee=FeeSchedule())
