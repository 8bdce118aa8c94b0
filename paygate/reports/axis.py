"""Chart scales that cover their data: an axis runs from zero to a round value at or above the
largest figure drawn on it, so that no mark is ever clipped or drawn past its axis.

Ticks are "nice": multiples of 1, 2, 2.5 or 5 times a power of ten for counts and amounts, and
whole minutes or hours for durations (a day's budget reads 6:00, 12:00, 18:00, 24:00, never
4:48). At most ``most`` intervals are drawn, so the labels stay legible at the width of a page.
"""

from __future__ import annotations

import math

__all__ = ["DURATION_STEPS", "Axis", "duration_axis", "number_axis"]

DURATION_STEPS = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
    48 * 3600,
    7 * 24 * 3600,
    14 * 24 * 3600,
    28 * 24 * 3600,
)
"""Tick intervals of a duration axis, in seconds: minutes, hours, days, weeks."""

_MANTISSAS = (1.0, 2.0, 2.5, 5.0, 10.0)


class Axis:
    """A linear axis from 0 to :attr:`top`, with ticks every :attr:`step`.

    :meth:`position` maps a value to a fraction of the axis' length; a value above ``top``
    cannot occur for the data the axis was made from (``top`` is at least their maximum).
    """

    __slots__ = ("step", "top")

    def __init__(self, step: float, intervals: int) -> None:
        self.step = step
        self.top = step * intervals

    @property
    def ticks(self) -> tuple[float, ...]:
        """0, step, 2 step, … top."""
        count = round(self.top / self.step)
        return tuple(self.step * index for index in range(count + 1))

    def position(self, value: float) -> float:
        """Where ``value`` lies along the axis, 0.0 at zero and 1.0 at the top."""
        return max(0.0, value) / self.top


def number_axis(maximum: float, *, most: int = 5) -> Axis:
    """An axis for counts or amounts in minor units up to ``maximum`` (at least 1 unit tall).

    The step is the smallest nice whole number that covers ``maximum`` in at most ``most``
    intervals.
    """
    # Counts and minor units are whole: an axis is at least one unit tall, its ticks whole.
    maximum = max(maximum, 1.0)
    magnitude = max(1.0, 10.0 ** math.floor(math.log10(maximum / most)))
    for mantissa in _MANTISSAS[:-1]:
        step = mantissa * magnitude
        if step != math.floor(step):
            continue  # 2.5 of a unit: no tick between whole units
        intervals = math.ceil(maximum / step - 1e-9)
        if intervals <= most:
            return Axis(step, max(intervals, 1))
    # maximum / most < 10 × magnitude (or magnitude is 1 and maximum ≤ 10 most): it fits
    step = _MANTISSAS[-1] * magnitude
    return Axis(step, max(math.ceil(maximum / step - 1e-9), 1))


def duration_axis(maximum_seconds: float, *, most: int = 6) -> Axis:
    """An axis for durations up to ``maximum_seconds``, ticks at whole minutes, hours or days."""
    maximum = max(maximum_seconds, 60.0)
    for step in DURATION_STEPS:
        intervals = math.ceil(maximum / step - 1e-9)
        if intervals <= most:
            return Axis(float(step), max(intervals, 1))
    weeks = float(DURATION_STEPS[-1])
    return Axis(weeks, math.ceil(maximum / weeks - 1e-9))
