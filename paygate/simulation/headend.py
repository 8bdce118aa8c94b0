"""The simulated AMI head-end and the faults it and the dispatcher suffer.

The head-end takes supply commands and confirms them at the meter some minutes later (hours
for a slow meter); it is unreachable during outages drawn ahead of time from its own random
source, refuses some commands for good, and calls back some completions twice. A dispatcher
crash is :class:`SimulatedCrash` raised from inside ``send`` after the meter already took the
command, the worst moment: the dispatcher dies holding the order's lease, and the runner
starts a fresh one on the same database.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from paygate.clock import FixedClock
from paygate.headend.base import (
    HeadEnd,
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.simulation.faults import FaultProfile

__all__ = ["FaultyHeadEnd", "SimulatedCrash"]


class SimulatedCrash(BaseException):
    """A process dying at a hook point. A ``BaseException``, so that no ``except Exception``
    in paygate survives it: the process's state is lost, as in a real crash."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


@dataclass
class _Command:
    sent_at: datetime
    acknowledge_after: timedelta
    complete_after: timedelta
    duplicate_callback: bool = False
    completed_seen: bool = False


class FaultyHeadEnd(HeadEnd):
    """A head-end with outages, slow meters, refusals, duplicate callbacks and dispatcher
    crashes, as ``faults`` says. ``faults_of`` records, per order, every fault that touched it
    (what a breach of that order is attributed to)."""

    name = "sim-ami"

    def __init__(
        self,
        clock: FixedClock,
        faults: FaultProfile,
        seed: int,
        outages: list[tuple[datetime, datetime]],
    ) -> None:
        self.clock = clock
        self.faults = faults
        self._seed = seed
        self.outages = outages
        self._commands: dict[int, _Command] = {}
        self._rejected: set[int] = set()
        self._crashed: set[tuple[int, int]] = set()
        self.faults_of: defaultdict[int, set[str]] = defaultdict(set)
        self.callbacks: list[tuple[int, str, datetime]] = []
        """Completions to call back (again): (order id, when)."""
        self.refused = 0
        self.crashes = 0

    def _draws(self, command: SupplyCommand, what: str) -> random.Random:
        """The random source of one command's fate: keyed by the command itself (account,
        kind, when it was issued), never by the order in which the dispatcher happens to
        reach it, which the backoff's jitter decides."""
        key = f"{self._seed}:{what}:{command.account_no}:{command.kind}:{command.issued_at}"
        digest = hashlib.sha256(key.encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - replayable

    def in_outage(self, at: datetime) -> bool:
        """Whether the head-end is unreachable at ``at``."""
        return any(start <= at < end for start, end in self.outages)

    def _reachable(self, order_id: int) -> None:
        if self.in_outage(self.clock.now()):
            self.refused += 1
            self.faults_of[order_id].add("headend_outage")
            raise HeadEndUnavailable("connection refused (head-end outage)")

    def send(self, command: SupplyCommand) -> HeadEndResult:
        """Take a command; the meter acts on it a few minutes later."""
        order_id = command.order_id
        self._reachable(order_id)
        now = self.clock.now()
        if order_id not in self._commands and order_id not in self._rejected:
            rng = self._draws(command, "fate")
            if rng.random() < self.faults.headend_reject:
                self._rejected.add(order_id)
                self.faults_of[order_id].add("headend_reject")
                raise HeadEndRejected("meter not found in the head-end's archive")
            slow = rng.random() < self.faults.headend_slow
            if slow:
                self.faults_of[order_id].add("headend_slow")
            self._commands[order_id] = _Command(
                sent_at=now,
                acknowledge_after=timedelta(minutes=rng.randrange(1, 9)),
                complete_after=(
                    timedelta(minutes=rng.randrange(180, 900))
                    if slow
                    else timedelta(minutes=rng.randrange(10, 41))
                ),
                duplicate_callback=rng.random() < self.faults.duplicate_callback,
            )
        elif order_id not in self._commands:
            # An operator put a refused order back after fixing the meter's record.
            self._commands[order_id] = _Command(
                sent_at=now,
                acknowledge_after=timedelta(minutes=2),
                complete_after=timedelta(minutes=20),
            )
        crash = self._draws(command, f"crash:{command.attempt}")
        # One crash per attempt: the restarted dispatcher's retry of the same attempt goes on.
        if (order_id, command.attempt) not in self._crashed and (
            crash.random() < self.faults.dispatcher_crash
        ):
            self._crashed.add((order_id, command.attempt))
            self.crashes += 1
            self.faults_of[order_id].add("dispatcher_crash")
            raise SimulatedCrash("dispatcher, after the head-end took the command")
        return HeadEndResult(outcome=HeadEndOutcome.DISPATCHED, at=now, reference=f"H{order_id}")

    def poll(self, command: SupplyCommand) -> HeadEndResult | None:
        """How far the meter got."""
        order_id = command.order_id
        self._reachable(order_id)
        sent = self._commands.get(order_id)
        if sent is None:
            return None
        now = self.clock.now()
        age = now - sent.sent_at
        if age >= sent.complete_after:
            if not sent.completed_seen:
                sent.completed_seen = True
                if sent.duplicate_callback:
                    self.callbacks.append(
                        (order_id, command.account_no, sent.sent_at + sent.complete_after)
                    )
            return HeadEndResult(
                outcome=HeadEndOutcome.COMPLETED, at=sent.sent_at + sent.complete_after
            )
        if age >= sent.acknowledge_after:
            return HeadEndResult(outcome=HeadEndOutcome.ACKNOWLEDGED, at=now)
        return None


def draw_outages(
    faults: FaultProfile, rng: random.Random, start: datetime, days: int
) -> list[tuple[datetime, datetime]]:
    """The head-end's outages over ``days`` from ``start``: a Poisson number a day, each
    between a third of the profile's longest outage and all of it."""
    outages: list[tuple[datetime, datetime]] = []
    if faults.headend_outage_per_day <= 0:
        return outages
    at = start
    end = start + timedelta(days=days)
    rate_per_minute = faults.headend_outage_per_day / (24 * 60)
    while True:
        at += timedelta(minutes=max(1, round(rng.expovariate(rate_per_minute))))
        if at >= end:
            return outages
        longest = faults.headend_outage_minutes
        length = timedelta(minutes=rng.randrange(max(1, longest // 3), longest + 1))
        outages.append((at, at + length))
        at += length
