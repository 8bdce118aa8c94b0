"""The simulated world: its clock, its random sources, its customers and their bills.

Time is a :class:`~paygate.clock.FixedClock` that the runner moves a step at a time; nothing
in the simulation reads the machine's clock. Every subsystem draws from its own random
source, derived from the seed and the subsystem's name (:class:`Randoms`), so that turning
one kind of fault up or down does not reshuffle what the others do.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from paygate.models import Category, NewAccount, NewBill
from paygate.money import Money

__all__ = [
    "CURRENCY",
    "START",
    "ZONE",
    "Customer",
    "Randoms",
    "customers",
    "local_day",
    "monthly_bills",
]

ZONE: Final = ZoneInfo("Asia/Shanghai")
CURRENCY: Final = "CNY"
START: Final = datetime(2026, 11, 1, 0, 0, tzinfo=ZONE).astimezone(UTC)
"""Midnight of the first simulated day, in the utility's zone."""


class Randoms:
    """One random source per subsystem, each seeded from ``(seed, name)``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def __call__(self, name: str) -> random.Random:
        """The source of subsystem ``name`` (the same object on every call)."""
        stream = self._streams.get(name)
        if stream is None:
            digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
            stream = random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - a replayable world
            self._streams[name] = stream
        return stream


@dataclass
class Customer:
    """One account and how its holder behaves."""

    account_no: str
    category: Category
    prepaid: bool
    protected: bool
    punctual: float
    """Chance that the holder pays a bill before its due date."""
    in_arrears: bool = False
    """The holder owed an old bill when the simulation began."""
    bills: list[str] = field(default_factory=list)


def customers(count: int, rng: random.Random, *, arrears_share: float = 0.06) -> list[Customer]:
    """``count`` customers of every kind: one in ten non-residential, one in eight prepaid,
    one in fifty protected (a hospital, a care home), ``arrears_share`` behind on an old bill
    (of the protected ones, five times as many: a public body's budget runs late)."""
    made: list[Customer] = []
    for n in range(count):
        made.append(
            Customer(
                account_no=f"41{n + 1:08d}",
                category=Category.NON_RESIDENTIAL if n % 10 == 0 else Category.RESIDENTIAL,
                prepaid=n % 8 == 3,
                protected=n % 50 == 7,
                punctual=rng.uniform(0.85, 0.99),
                in_arrears=rng.random() < arrears_share * (5 if n % 50 == 7 else 1),
            )
        )
    return made


def new_accounts(people: list[Customer]) -> list[NewAccount]:
    """The accounts to open, as the billing system's file lists them."""
    return [
        NewAccount(
            account_no=person.account_no,
            category=person.category,
            prepaid=person.prepaid,
            protected=person.protected,
            name=f"Customer {person.account_no[2:].lstrip('0')}",
        )
        for person in people
    ]


def monthly_bills(
    people: list[Customer], period: str, due: date, rng: random.Random
) -> list[NewBill]:
    """One bill per customer for ``period`` (non-residential ones ten times larger)."""
    bills: list[NewBill] = []
    for person in people:
        scale = 10 if person.category is Category.NON_RESIDENTIAL else 1
        bill_no = f"{person.account_no}-{period}"
        person.bills.append(bill_no)
        bills.append(
            NewBill(
                account_no=person.account_no,
                bill_no=bill_no,
                amount=Money(rng.randrange(3_000, 40_000) * scale, CURRENCY),
                period=period,
                due_date=due,
            )
        )
    return bills


def local_day(instant: datetime) -> date:
    """The calendar day of ``instant`` in the utility's zone."""
    return instant.astimezone(ZONE).date()
