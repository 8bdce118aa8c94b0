"""The demo: a small utility's month told end to end through every channel (``paygate demo``).

:mod:`paygate.demo.story` tells the story and sums it up; :mod:`paygate.demo.peers` are the
simulated other ends of the channels (wallet servers, a kiosk, a POS terminal, an agent
bank, card retailers), which sign their messages as the real ones do. Neither reads the
database itself: figures come through the Gateway and the read functions of the modules that
own the tables.
"""

from __future__ import annotations

from paygate.demo.story import CHANNELS, DemoSummary, ForgedMessage, run_demo

__all__ = ["CHANNELS", "DemoSummary", "ForgedMessage", "run_demo"]
