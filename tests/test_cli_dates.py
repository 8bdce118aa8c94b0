"""A date option that is not a date is one line naming the flag, exit 2: never a traceback."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app

BAD_DATES = [
    (["accounts", "status", "3100000001", "--as-of", "2026-13-01"], "--as-of", "2026-13-01"),
    (["report", "service", "--from", "2026-13-01", "--to", "2026-11-30"], "--from", "2026-13-01"),
    (["report", "service", "--from", "2026-11-01", "--to", "11/30/2026"], "--to", "11/30/2026"),
    (["vouchers", "report", "--as-of", "tomorrow"], "--as-of", "tomorrow"),
    (
        [
            *("vouchers", "issue", "VB1", "--count", "1", "--face-value", "50.00"),
            *("--expires-on", "2027-02-30", "--out", "{dir}/cards.csv"),
        ],
        "--expires-on",
        "2027-02-30",
    ),
    (
        ["reconcile", "alipay", "--date", "2026-02-30", "--statement", "{dir}/s.csv"],
        "--date",
        "2026-02-30",
    ),
]


@pytest.mark.parametrize(("args", "flag", "typed"), BAD_DATES, ids=[b[1] for b in BAD_DATES])
def test_a_bad_date_is_one_line_naming_its_flag(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    flag: str,
    typed: str,
) -> None:
    monkeypatch.setenv("PAYGATE_VOUCHER_PIN_KEY", base64.b64encode(bytes(range(32))).decode())
    (tmp_path / "s.csv").write_text("")
    argv = [a.replace("{dir}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, [*argv, "--database-url", sqlite_url])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and flag in line and typed in line
    assert not (tmp_path / "cards.csv").exists()
