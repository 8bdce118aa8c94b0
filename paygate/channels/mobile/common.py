"""What the two wallets share: their time zone, the base of their wire models, their
settlement rules."""

from __future__ import annotations

from datetime import time
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from paygate.channels.base import FeeSchedule, SettlementRules

# Both wallets write times as Beijing wall-clock time without an offset.
BEIJING: Final = ZoneInfo("Asia/Shanghai")


# ── wire models ──────────────────────────────────────────────────────────────────────────


class _Wire(BaseModel):
    # Wallets add fields over time; unknown ones are ignored, known ones are checked.
    model_config = ConfigDict(frozen=True, extra="ignore")


# ── settlement rules ─────────────────────────────────────────────────────────────────────


def wallet_settlement() -> SettlementRules:
    """Wallets close the day at midnight Beijing time, settle T+1 and charge 0.6 %.

    The rate is the common default merchant rate; configure the contracted one.
    """
    return SettlementRules(
        cutoff=time(0, 0), lag_days=1, grace_days=2, fee=FeeSchedule(rate_ppm=6000)
    )
