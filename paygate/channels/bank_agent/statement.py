"""The bank agent's settlement statement reader and settlement rules."""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from datetime import time
from typing import Final

from paygate.channels.bank_agent.batch import _ID_RE, _decode, _lines, _opened
from paygate.channels.bank_agent.realtime import BEIJING, bank_txn_id
from paygate.channels.base import FeeSchedule, SettlementRules, StatementSource
from paygate.channels.wire import (
    make_statement_line,
    parse_local_time,
    parse_money,
    shown,
    source_label,
    split_csv_line,
)
from paygate.errors import ParseError
from paygate.models import StatementLine, StatementLineKind

# ── statement reader ─────────────────────────────────────────────────────────────────────

BANK_STATEMENT_COLUMNS: Final = (
    "serial_no",
    "account_no",
    "txn_type",
    "amount",
    "fee",
    "net",
    "txn_time",
    "orig_serial_no",
)
"""The header of the bank's settlement statement CSV."""

_BANK_KINDS: Final[Mapping[str, StatementLineKind]] = {
    "payment": StatementLineKind.PAYMENT,
    "reversal": StatementLineKind.REVERSAL,
}


def read_bank_statement(
    source: StatementSource, *, currency: str, bank_code: str, encoding: str = "gbk"
) -> Iterator[StatementLine]:
    """Read the bank's settlement statement CSV line by line.

    Layout: the header :data:`BANK_STATEMENT_COLUMNS`, then one row per collection
    (``payment``: a counter payment or a successful debit) or reversal (``reversal``, naming
    ``orig_serial_no``). Amounts are yuan, positive, in the direction of ``txn_type``;
    ``fee`` is the bank's per-item fee (given back on a reversal) and ``net`` must equal
    ``amount - fee``; ``txn_time`` is ``YYYY-MM-DD hh:mm:ss`` Beijing time. Serials become
    channel transaction ids as :func:`bank_txn_id` makes them.
    """
    label = source_label(source)
    header_seen = False
    last_line = 0
    utf8 = codecs.lookup(encoding).name == "utf-8"
    with _opened(source) as stream:
        for line_no, raw in _lines(stream, limit=64 * 1024, source=label):
            last_line = line_no
            if line_no == 1 and utf8 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            text = _decode(raw, encoding, source=label, line=line_no, field=None)
            if not text.strip():
                continue
            fields = [f.strip() for f in split_csv_line(text, source=label, line=line_no)]
            if not header_seen:
                if tuple(fields) != BANK_STATEMENT_COLUMNS:
                    raise ParseError(
                        "not a bank agent statement header", source=label, line=line_no
                    )
                header_seen = True
                continue
            if len(fields) != len(BANK_STATEMENT_COLUMNS):
                raise ParseError(
                    f"expected {len(BANK_STATEMENT_COLUMNS)} fields, found {len(fields)}",
                    source=label,
                    line=line_no,
                )
            row = dict(zip(BANK_STATEMENT_COLUMNS, fields, strict=True))
            yield _bank_statement_line(row, currency, bank_code, label, line_no)
    if not header_seen:
        raise ParseError("empty file: no statement header", source=label, line=last_line or 1)


def _bank_statement_line(
    row: Mapping[str, str], currency: str, bank_code: str, label: str, line_no: int
) -> StatementLine:
    def fail(message: str, field: str) -> ParseError:
        return ParseError(message, source=label, line=line_no, field=field)

    kind = _BANK_KINDS.get(row["txn_type"])
    if kind is None:
        raise fail(f"unknown txn_type {shown(row['txn_type'])}", "txn_type")
    if not _ID_RE.match(row["serial_no"]):
        raise fail(f"not a bank serial: {shown(row['serial_no'])}", "serial_no")
    original = None
    if kind is StatementLineKind.REVERSAL:
        if not _ID_RE.match(row["orig_serial_no"]):
            raise fail("a reversal names the serial it reverses", "orig_serial_no")
        original = bank_txn_id(bank_code, row["orig_serial_no"])
    gross, fee, net = (
        parse_money(row[name], currency, source=label, line=line_no, field=name)
        for name in ("amount", "fee", "net")
    )
    if net != gross - fee:
        raise fail(f"net {net.format()} is not amount less fee", "net")
    return make_statement_line(
        line_no=line_no,
        kind=kind,
        gross=gross,
        fee=fee,
        occurred_at=parse_local_time(
            row["txn_time"],
            "%Y-%m-%d %H:%M:%S",
            BEIJING,
            source=label,
            line=line_no,
            field="txn_time",
        ),
        channel_txn_id=bank_txn_id(bank_code, row["serial_no"]),
        account_no=row["account_no"],
        original_txn_id=original,
        source=label,
    )


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def bank_agent_settlement() -> SettlementRules:
    """The bank's day ends at midnight Beijing time; T+1; a fixed fee per item (0.50 yuan).

    The agreement's fee goes in ``[reconcile.channels.bank_agent.settlement]``; reconciliation
    books the fee each statement line carries. Banks settle on banking days while
    these rules count calendar days, so reconciliation waits three days (a weekend) for a
    late line instead of two.
    """
    return SettlementRules(cutoff=time(0, 0), lag_days=1, grace_days=3, fee=FeeSchedule(fixed=50))
