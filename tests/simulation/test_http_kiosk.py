"""The kiosk that reaches paygate over HTTP, through paygate's own kiosk client: what it
stores through an offline spell is forwarded and posted once, across gateway crashes before
and after the commit, the cards redeemed at it are posted once, and the run replays from its
seed to the same digest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from paygate.simulation import PROFILES, SimulationConfig, SimulationResult, run_simulation
from paygate.simulation.http_kiosk import DEVICE_ID
from tests.databases import fresh_sqlite_url

# A harsh month whose kiosks lose their link every day for up to ten hours, and whose
# gateway dies with one request in five.
FAULTS = PROFILES["harsh"].model_copy(
    update={
        "name": "kiosk-faults",
        "kiosk_offline_per_day": 1.0,
        "kiosk_offline_minutes": 600,
        "gateway_crash": 0.2,
    }
)


def _run(url: str) -> SimulationResult:
    return run_simulation(
        SimulationConfig(
            database_url=url, seed=10, accounts=200, days=3, faults=FAULTS, http_share=1.0
        )
    )


def _payments(path: Path, channel: str, txn_prefix: str = "") -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT channel_txn_id, amount FROM payments WHERE channel = ? "
            "AND channel_txn_id LIKE ?",
            (channel, f"{txn_prefix}%"),
        ).fetchall()
    return [(str(txn), int(amount)) for txn, amount in rows]


def test_the_http_kiosk_posts_each_payment_once_across_offline_spells_and_crashes(
    tmp_path: Path,
) -> None:
    first = _run(fresh_sqlite_url(tmp_path, "a.db"))
    kiosk = first.channels["kiosk"]
    finance = first.finance
    # The ledger holds each of the kiosk's payments exactly once, and nothing more: a retry
    # that posted again, or a payment posted and never confirmed, would differ here.
    posted = _payments(tmp_path / "a.db", "kiosk", DEVICE_ID)
    assert len(posted) == len({txn for txn, _ in posted}) == kiosk["over_http"]
    assert sum(amount for _, amount in posted) == kiosk["amount"]
    # Every card sold was redeemed at the kiosk over HTTP, some only at a second attempt
    # (the gateway died with the first), each posted once.
    voucher = first.channels["voucher"]
    redeemed = _payments(tmp_path / "a.db", "voucher")
    assert len(redeemed) == voucher["over_http"] == voucher["payments"] > 0
    assert voucher["payments"] == finance["voucher_redemptions_over_http"]
    assert finance["voucher_redemptions_unanswered"] > 0
    # Every kiosk payment went through the HTTP kiosk; some were stored while its link was
    # down or the gateway gone, and some of those were confirmed by a replay: the gateway
    # had posted them and died before answering.
    assert kiosk["over_http"] == kiosk["payments"] > 0
    assert finance["kiosk_stored_and_forwarded"] > 0
    assert finance["kiosk_confirmed_by_replay"] > 0
    assert first.restarts["http gateway"] > 0
    assert first.faults_injected["kiosk_offline"] > 0
    # The POS terminal's sales went over HTTP too, read from its answers.
    assert first.channels["pos"]["over_http"] == first.channels["pos"]["payments"] > 0
    # Every notification went over HTTP too, and the statements still reconciled.
    assert finance["found"] == finance["injected_differences"]
    assert first.unattributed == []
    # The same seed replays to the same digest with the HTTP share.
    again = _run(fresh_sqlite_url(tmp_path, "b.db"))
    assert again.digest == first.digest
    assert again.as_dict()["channels"] == first.as_dict()["channels"]
