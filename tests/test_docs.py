"""The worked examples in docs/ run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_the_billing_systems_worked_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "FixedClock" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    receipt = namespace["receipt"]
    assert receipt.reconnection_order_id is not None  # type: ignore[attr-defined]
    assert receipt.late_fee.format() == "10.00"  # type: ignore[attr-defined]
    status = namespace["status"]
    assert status.arrears.minor == 101000  # type: ignore[attr-defined]


def test_the_billing_run_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    [example] = [b for b in python_blocks("billing-systems.md") if "issue_bills" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/billing-systems.md", "exec"), namespace)
    assert namespace["again"].replayed_count == 1  # type: ignore[attr-defined]
