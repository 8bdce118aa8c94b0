"""The simulation: a seed replays exactly, the default profile keeps the promise, every
invariant holds under faults, and a bug planted on purpose is caught and replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from paygate.errors import ConfigurationError
from paygate.gateway import Gateway
from paygate.simulation import (
    PROFILES,
    InvariantBroken,
    SimulationConfig,
    SimulationResult,
    load_profile,
    run_simulation,
)
from tests.databases import fresh_sqlite_url


def _run(
    url: str, seed: int, *, accounts: int = 500, days: int = 10, **options: object
) -> SimulationResult:
    faults = options.pop("faults", PROFILES["default"])
    return run_simulation(
        SimulationConfig(
            database_url=url, seed=seed, accounts=accounts, days=days, faults=faults, **options
        )  # type: ignore[arg-type]
    )


def _keeps_the_promise(result: SimulationResult) -> None:
    promise = result.promise
    assert promise.orders > 0 and promise.completed == promise.orders
    # The target: at least 99.9 % restored within 24 hours, and every miss attributed to a
    # fault the run injected.
    assert promise.share(promise.within_24h) >= 0.999
    assert result.unattributed == []
    assert all("unattributed" not in causes for causes in result.breaches.values())
    assert promise.share(promise.within_3d) == 1.0
    # Every channel took payments through its adapter; impostors and guesses posted nothing.
    assert set(result.channels) == {
        "alipay", "wechatpay", "online", "kiosk", "pos", "bank_agent", "voucher"
    }  # fmt: skip
    finance = result.finance
    assert finance["found"] == finance["injected_differences"]
    assert finance["pos_batches_mismatched"] == 0  # every POS batch settled as a match
    assert finance["forged_refused"] == result.faults_injected["forged"] > 0
    assert finance["pin_guesses_refused"] == result.faults_injected["brute_force"] > 0


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_default_month_keeps_the_promise_with_every_invariant_holding(
    sqlite_url: str, seed: int
) -> None:
    _keeps_the_promise(_run(sqlite_url, seed))


def test_a_default_month_on_postgresql_keeps_the_promise(pg_url: str) -> None:
    _keeps_the_promise(_run(pg_url, 14))


def test_the_harsh_profile_breaks_promises_and_attributes_every_breach(sqlite_url: str) -> None:
    result = _run(sqlite_url, 7, faults=PROFILES["harsh"])
    assert sum(sum(c.values()) for c in result.breaches.values()) > 0
    assert result.unattributed == []
    assert "unattributed" not in {cause for c in result.breaches.values() for cause in c}
    assert result.restarts.get("dispatcher", 0) > 0
    assert result.faults_injected["headend_outages"] > 0
    # Cashiers voided POS sales in their open batch, supervisors had protected accounts cut
    # by negotiated orders, and every invariant still held.
    assert result.finance["pos_voided"] == result.faults_injected["pos_void"] > 0
    assert result.finance["negotiated_disconnections"] > 0


def test_the_same_seed_gives_the_same_digest_and_another_seed_another(tmp_path: Path) -> None:
    harsh = PROFILES["harsh"]
    first = _run(fresh_sqlite_url(tmp_path, "a.db"), 5, accounts=300, days=5, faults=harsh)
    again = _run(fresh_sqlite_url(tmp_path, "b.db"), 5, accounts=300, days=5, faults=harsh)
    other = _run(fresh_sqlite_url(tmp_path, "c.db"), 6, accounts=300, days=5, faults=harsh)
    assert first.events > 200
    assert first.digest == again.digest
    assert first.as_dict()["promise"] == again.as_dict()["promise"]
    assert other.digest != first.digest


def test_orders_retried_in_one_pass_replay_in_the_same_order(tmp_path: Path) -> None:
    """Frequent short head-end outages: many orders come due for a retry in the same pass,
    claimed in the order of their retry times, and each completion is called back twice. The
    retry backoff's jitter is the seed's, not the system's, so the callbacks (and the digest)
    come in the same order on every run."""
    faults = PROFILES["harsh"].model_copy(
        update={"duplicate_callback": 1.0, "headend_outage_per_day": 6.0,
                "headend_outage_minutes": 120}
    )  # fmt: skip
    runs = [
        _run(fresh_sqlite_url(tmp_path, f"{name}.db"), 5, accounts=300, days=5, faults=faults)
        for name in ("a", "b", "c")
    ]
    assert runs[0].promise.orders > 5
    assert len({run.digest for run in runs}) == 1


def test_a_pos_sale_left_unanswered_is_voided_and_every_batch_settles(tmp_path: Path) -> None:
    """The gateway dies on POS sales (before and after committing them); the terminal, which
    heard nothing, voids each one and keys the card again, as docs/channels/pos.md has it, so
    every batch's totals match the ledger's when the terminal settles it."""
    faults = PROFILES["default"].model_copy(update={"gateway_crash": 0.2})
    result = _run(fresh_sqlite_url(tmp_path, "pos.db"), 3, accounts=400, days=6, faults=faults)
    assert result.finance["pos_batches_mismatched"] == 0
    assert result.finance["pos_unanswered_voided"] > 0


def _skew_a_balance(gateway: Gateway) -> None:
    """A cached balance moved without a journal entry."""
    gateway.store.run(
        lambda tx: tx.execute(
            "UPDATE ledger_balances SET balance = balance + 1 WHERE (account_id, shard) = "
            "(SELECT account_id, shard FROM ledger_balances ORDER BY account_id, shard LIMIT 1)"
        )
    )


def _cut_a_protected_account(gateway: Gateway) -> None:
    """A protected account's supply state set to disconnected behind the dunning rules."""
    gateway.store.run(
        lambda tx: tx.execute(
            "UPDATE accounts SET supply_state = 'disconnected' WHERE id = "
            "(SELECT MIN(id) FROM accounts WHERE protected = :t)",
            {"t": True},
        )
    )


@pytest.mark.parametrize(
    ("bug", "invariant"),
    [
        ("ack_without_post", "acknowledged_posted_once"),
        (_skew_a_balance, "ledger_balances"),
        (_cut_a_protected_account, "no_protected_cut"),
    ],
)
def test_a_planted_bug_is_caught_and_replays_from_its_seed(
    tmp_path: Path, bug: object, invariant: str
) -> None:
    options = {"accounts": 300, "days": 4, "bug": bug, "bug_step": 150}
    with pytest.raises(InvariantBroken) as caught:
        _run(fresh_sqlite_url(tmp_path, "run.db"), 21, **options)
    broken = caught.value
    assert broken.name == invariant and broken.seed == 21
    assert 150 <= broken.step <= 156  # the next hourly check
    # Replaying the seed stops at the same step with the same finding …
    with pytest.raises(InvariantBroken) as replayed:
        _run(fresh_sqlite_url(tmp_path, "replay.db"), 21, stop_at=broken.step, **options)
    assert (replayed.value.step, replayed.value.problems) == (broken.step, broken.problems)
    # … and stopped before the bug was planted, every invariant holds, the step's events shown.
    before = _run(fresh_sqlite_url(tmp_path, "before.db"), 21, stop_at=149, **options)
    assert before.stopped_at == 149 and before.step_events


def test_a_fault_profile_file_starts_from_a_named_profile(tmp_path: Path) -> None:
    path = tmp_path / "outages.toml"
    path.write_text('base = "default"\nheadend_outage_per_day = 2.5\n', encoding="utf-8")
    profile = load_profile(str(path))
    assert profile.name == "outages" and profile.headend_outage_per_day == 2.5
    assert profile.duplicate_notify == PROFILES["default"].duplicate_notify
    path.write_text("headend_outage_per_dya = 1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="headend_outage_per_dya"):
        load_profile(str(path))
    path.write_text("gateway_crash = 2\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="gateway_crash"):
        load_profile(str(path))
    with pytest.raises(ConfigurationError, match="no fault profile"):
        load_profile("gentle")


def test_a_share_of_notifications_over_real_http_posts_and_reconciles(db_url: str) -> None:
    result = _run(db_url, 3, accounts=300, days=4, faults=PROFILES["harsh"], http_share=0.5)
    over_http = result.finance["payments_over_http"]
    notifying = sum(result.channels[c]["payments"] for c in ("alipay", "wechatpay", "online"))
    # About half the notifications went over HTTP, and every one of them is in the ledger
    # exactly once (the run's invariants) and matched on its channel's statement.
    assert 0 < over_http < notifying + result.channels["bank_agent"]["payments"]
    # The kiosk's share went through paygate's own kiosk client, each payment posted once.
    assert 0 < result.channels["kiosk"]["over_http"] < result.channels["kiosk"]["payments"]
    assert result.finance["found"] == result.finance["injected_differences"]
    assert result.unattributed == []
