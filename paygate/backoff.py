"""When a failed delivery is tried again: capped exponential backoff with jitter.

The dispatcher's three kinds of work use it: supply orders a head-end could not take, outbox
events a sink refused, refund orders a provider could not be asked about. The jitter spreads
the retries of many failures over the wait, so that a head-end back from an outage is not met
by every order at once; its random source is the system's unless one is given (a simulation
gives a seeded one, so that a seed replays its retries in the same order).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

__all__ = ["Jitter", "backoff"]

Jitter = Callable[[float, float], float]
"""A number drawn between its two arguments, as ``random.Random.uniform`` draws it."""


def backoff(
    attempt: int, *, base: timedelta, cap: timedelta, jitter: Jitter | None = None
) -> timedelta:
    """Capped exponential backoff for the ``attempt``-th retry (1-based): between half the
    ceiling and all of it, drawn from ``jitter`` (default: the system's random source)."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 30)))
    draw = secrets.SystemRandom().uniform if jitter is None else jitter
    return timedelta(seconds=draw(0.5, 1.0) * ceiling.total_seconds())
