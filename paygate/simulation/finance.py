"""Finance's morning: each statement channel's file for yesterday, carrying injected
differences, reconciled with the ledger; then a clerk works through suspense.

A statement lists what the channel really took (:attr:`Channels.settled`), which is not
always what paygate heard: a notification that never arrived, or that paygate refused (too
late for its order), is a line only in the statement, which reconciliation posts. On top of
those, the profile's ``statement_difference`` share of lines carries a difference the
simulation injects and remembers — a wrong amount, a line listed twice, money for an account
number that does not exist — and every one must come back as a finding.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from paygate.gateway import Gateway
from paygate.models import StatementLine
from paygate.money import Money
from paygate.reconcile import FindingClass, assign_suspense, findings, suspense_items
from paygate.simulation.faults import FaultProfile
from paygate.simulation.traffic import Settled

__all__ = ["Finance", "Injected"]

UNKNOWN_ACCOUNT = "4199999999"
"""The account number a customer mistyped: no such account."""


@dataclass(frozen=True)
class Injected:
    """A difference the simulation put into a statement, and the finding it must produce."""

    channel: str
    business_date: date
    finding_class: FindingClass
    txn_id: str


class Finance:
    """Reconciles each statement channel's yesterday every morning; a clerk assigns suspense."""

    def __init__(self, faults: FaultProfile, rng: random.Random) -> None:
        self.faults = faults
        self._rng = rng
        self._cursor = 0
        self._waiting: defaultdict[tuple[str, date], list[Settled]] = defaultdict(list)
        self._statements: defaultdict[tuple[str, date], list[StatementLine]] = defaultdict(list)
        self._unchecked: defaultdict[tuple[str, date], list[Injected]] = defaultdict(list)
        """Differences not yet through a run. Each is checked against the first run of its
        line: a day reconciled again (a late notification added a line) has its earlier
        differences resolved by then (a late payment posted, suspense assigned)."""
        self.injected: list[Injected] = []
        self.missed: list[Injected] = []
        self.runs = 0
        self.findings_by_class: defaultdict[str, int] = defaultdict(int)
        self.assigned = 0
        self._intended: dict[str, str] = {}
        """Statement transaction id → the account the customer meant (for the clerk)."""

    def morning(self, gateway: Gateway, settled: list[Settled], today: date) -> list[Injected]:
        """Reconcile every channel day before ``today`` with lines not yet reconciled (a day
        that gained lines since, from a notification that came late, is reconciled again from
        its whole, corrected statement); return the injected differences no finding reported."""
        grown: set[tuple[str, date]] = set()
        for item in settled[self._cursor :]:
            self._waiting[(item.channel, item.business_date)].append(item)
        self._cursor = len(settled)
        for key, items in list(self._waiting.items()):
            if key[1] < today:
                self._lines_of(key, items)
                del self._waiting[key]
                grown.add(key)
        missed: list[Injected] = []
        for key in sorted(grown):
            missed += self._reconcile(gateway, *key)
        self._clerk(gateway)
        self.missed += missed
        return missed

    def _lines_of(self, key: tuple[str, date], items: list[Settled]) -> None:
        """Append the statement lines of ``items`` to the day's statement, differences and all."""
        lines = self._statements[key]
        for item in items:
            line = _line(len(lines) + 1, item.txn_id, item.account_no, item.amount, item)
            only_in_statement = item.txn_id.startswith(("LOST", "REFUSED"))
            if only_in_statement:
                self._expect(key, FindingClass.ONLY_IN_STATEMENT, item.txn_id)
            if self._rng.random() >= self.faults.statement_difference:
                lines.append(line)
                continue
            kind = self._rng.randrange(3)
            if kind == 0 and not only_in_statement:
                wrong = item.amount + Money(self._rng.randrange(1, 500), item.amount.currency)
                lines.append(_line(len(lines) + 1, item.txn_id, item.account_no, wrong, item))
                self._expect(key, FindingClass.AMOUNT_MISMATCH, item.txn_id)
            elif kind == 1:
                lines.append(line)
                lines.append(line.model_copy(update={"line_no": len(lines) + 1}))
                self._expect(key, FindingClass.DUPLICATE_IN_STATEMENT, item.txn_id)
            else:
                lines.append(line)
                txn = f"MISTYPED{len(self._intended) + 1:08d}"
                self._intended[txn] = item.account_no
                lines.append(_line(len(lines) + 1, txn, UNKNOWN_ACCOUNT, item.amount, item))
                self._expect(key, FindingClass.ONLY_IN_STATEMENT, txn)

    def _expect(self, key: tuple[str, date], finding_class: FindingClass, txn: str) -> None:
        injected = Injected(key[0], key[1], finding_class, txn)
        self._unchecked[key].append(injected)
        self.injected.append(injected)

    def _reconcile(self, gateway: Gateway, channel: str, day: date) -> list[Injected]:
        lines = self._statements[(channel, day)]
        digest = hashlib.sha256(
            "\n".join(
                f"{line.channel_txn_id}|{line.account_no}|{line.gross.minor}" for line in lines
            ).encode()
            + f"{channel}{day}".encode()
        ).hexdigest()
        run = gateway.reconcile(channel, day, lines, file_sha256=digest, source="simulation")
        self.runs += 1
        found = {(f.finding_class, f.channel_txn_id) for f in findings(gateway, run.id)}
        for finding_class, _ in found:
            self.findings_by_class[finding_class.value] += 1
        expected = self._unchecked.pop((channel, day), [])
        return [i for i in expected if (i.finding_class, i.txn_id) not in found]

    def _clerk(self, gateway: Gateway) -> None:
        """Assign every suspense item whose customer the clerk can find (the one they meant)."""
        for item in suspense_items(gateway):
            account = self._intended.get(item.channel_txn_id or "")
            if account is not None:
                assign_suspense(gateway, item.id, account, actor="simulated clerk")
                self.assigned += 1


def _line(
    line_no: int, txn_id: str, account_no: str, amount: Money, item: Settled
) -> StatementLine:
    return StatementLine(
        line_no=line_no,
        channel_txn_id=txn_id,
        account_no=account_no,
        gross=amount,
        fee=Money.zero(amount.currency),
        net=amount,
        occurred_at=item.paid_at,
    )
