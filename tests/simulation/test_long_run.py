"""A run longer than a month: those who fall behind on the first month's bills are served the
written notice and the final reminder, and are cut off once the dunning policy allows it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from paygate.simulation import PROFILES, SimulationConfig, run_simulation
from paygate.simulation.world import START
from tests.databases import fresh_sqlite_url


def test_arrears_of_the_first_month_are_noticed_and_cut_in_the_second(tmp_path: Path) -> None:
    result = run_simulation(
        SimulationConfig(
            database_url=fresh_sqlite_url(tmp_path, "long.db"),
            seed=3,
            accounts=300,
            days=48,
            faults=PROFILES["default"],
        )
    )
    assert result.finance["notices_served"] > 0
    # The month's bills fall due on day 15 and may be cut for 30 days after: from day 45.
    with sqlite3.connect(tmp_path / "long.db") as db:
        kinds = db.execute(
            "SELECT kind, COUNT(*) FROM dunning_notices WHERE served_at >= ? GROUP BY kind",
            ((START + timedelta(days=30)).strftime("%Y-%m-%d"),),
        ).fetchall()
        cut = db.execute(
            "SELECT COUNT(*) FROM supply_orders WHERE kind = 'disconnect' AND created_at >= ?",
            ((START + timedelta(days=45)).strftime("%Y-%m-%d"),),
        ).fetchone()[0]
    assert dict(kinds).keys() == {"notice", "final_reminder"}
    assert cut > 0
    assert result.unattributed == []
