"""``paygate simulate``: JSON for scripts, the seed and step of a broken invariant with the
command that replays it, the replay itself, and the HTML service report of the run."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from paygate.cli import app

runner = CliRunner()


def _simulate(url: str, *more: str) -> tuple[int, str, str]:
    result = runner.invoke(
        app, ["simulate", "--accounts", "200", "--days", "3", "--database-url", url, *more]
    )
    return result.exit_code, result.stdout, result.stderr


def test_json_has_the_promise_channels_and_digest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    html = tmp_path / "service.html"
    code, stdout, stderr = _simulate(url, "--seed", "4", "--json", "--html", str(html))
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["seed"] == 4 and document["faults"] == "default"
    assert len(document["digest"]) == 64
    assert 0.0 <= document["promise"]["share_within_24h"] <= 1.0
    assert document["unattributed"] == []
    assert {"alipay", "kiosk", "voucher"} <= set(document["channels"])
    assert html.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    # A second run on the same database is refused: a simulation needs a fresh one.
    code, _, stderr = _simulate(url)
    assert code == 2 and "fresh database" in stderr


def test_a_broken_invariant_names_seed_and_step_and_replays(tmp_path: Path) -> None:
    planted = ("--seed", "9", "--bug", "ack_without_post", "--bug-step", "100")
    code, stdout, stderr = _simulate(f"sqlite:///{tmp_path / 'a.db'}", *planted)
    assert code == 1, stdout
    assert "invariant acknowledged_posted_once broken at step 102" in stderr
    assert "seed 9" in stderr and "--bug ack_without_post --bug-step 100 --replay 102" in stderr
    code, stdout, stderr = _simulate(
        f"sqlite:///{tmp_path / 'b.db'}", *planted, "--replay", "99", "--json"
    )
    assert code == 0, stderr
    replay = json.loads(stdout)
    assert replay["stopped_at"] == 99 and replay["seed"] == 9
    code, stdout, _ = _simulate(f"sqlite:///{tmp_path / 'c.db'}", *planted, "--json")
    assert code == 1 and json.loads(stdout)["step"] == 102


def test_an_unknown_profile_is_one_line(tmp_path: Path) -> None:
    code, _, stderr = _simulate(f"sqlite:///{tmp_path / 'x.db'}", "--faults", "gentle")
    assert code != 0 and "no fault profile 'gentle'" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_an_unknown_bug_is_one_line(tmp_path: Path) -> None:
    code, _, stderr = _simulate(f"sqlite:///{tmp_path / 'y.db'}", "--bug", "typo")
    assert code == 2 and "--bug: no bug 'typo'" in stderr
    assert not (tmp_path / "y.db").exists()
