"""``paygate serve`` refuses what it cannot do before it listens: one line, exit code 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_with_exit_code_2_naming_it(sqlite_url: str, workers: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        served = subprocess.run(
            [
                sys.executable,
                "-m",
                "paygate.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                workers,
                "--database-url",
                sqlite_url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    assert served.returncode == 2, (served.stdout, served.stderr)
    [line] = served.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "in use" in line
    assert "paygate serving" not in served.stdout  # refused before it said it listens


def test_an_address_not_on_this_machine_is_refused_with_exit_code_2(sqlite_url: str) -> None:
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "paygate.cli",
            "serve",
            "--host",
            "192.0.2.1",  # TEST-NET-1: never an address of this machine
            "--port",
            "0",
            "--database-url",
            sqlite_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert served.returncode == 2, (served.stdout, served.stderr)
    [line] = served.stderr.strip().splitlines()
    assert "192.0.2.1" in line
