"""The service report's Python example runs as written, on an empty database too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_service_report_example_runs_on_an_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    page = (DOCS / "service-report.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    [example] = [b for b in blocks if "render_html" in b]
    [one_channel] = [b for b in blocks if 'report.channel("kiosk")' in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "docs/service-report.md", "exec"), namespace)
    assert capsys.readouterr().out == "None\n"
    assert "<html" in str(namespace["html_page"]).lower()
    # Asking for one channel of an empty database is answered with zeros, as the page says.
    exec(compile(one_channel, "docs/service-report.md", "exec"), namespace)
    assert capsys.readouterr().out == "0\n"
