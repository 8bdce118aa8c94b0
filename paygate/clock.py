"""Time: an injectable clock, and business dates in the utility's time zone.

Invariant: every stored time is UTC. Business dates (late-fee days, settlement days) are
computed in the utility's zone, default Asia/Shanghai, with each channel's own cut-off.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from paygate.errors import NaiveDatetimeError

__all__ = [
    "DEFAULT_TIMEZONE",
    "Clock",
    "FixedClock",
    "SystemClock",
    "business_date",
    "require_aware",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "start").astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current instant."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new instant."""
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (which may not be earlier than now)."""
        instant = require_aware(instant, "instant").astimezone(UTC)
        with self._lock:
            if instant < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = instant


def require_aware(value: datetime, field: str) -> datetime:
    """Return ``value`` if it carries a UTC offset; refuse a naive datetime by name."""
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError("a datetime with a time zone is required", field=field)
    return value


def business_date(instant: datetime, timezone: str, cutoff: time = time(0, 0)) -> date:
    """The business date of ``instant`` in ``timezone``: after ``cutoff`` it is the next day.

    A channel that closes its day at 23:00 puts a 23:30 payment on tomorrow's date.
    """
    local = require_aware(instant, "instant").astimezone(ZoneInfo(timezone))
    day = local.date()
    if cutoff != time(0, 0) and local.time() >= cutoff:
        day += timedelta(days=1)
    return day
