"""``paygate serve`` as a real subprocess: the command line, the workers, the logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def paygate_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without its ``PAYGATE_*`` and ``PROMETHEUS_*`` variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAYGATE_", "PROMETHEUS_")) and k.lower() != "prometheus_multiproc_dir"
    }
    env.update(extra or {})
    return env


@contextmanager
def serving(
    args: list[str],
    *,
    stderr: Path,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``paygate serve ARGS --port P`` (``port``, else a free one); its base URL and process
    once it answers, stopped (SIGINT) and waited for on the way out."""
    port = port or free_port()
    out = (stdout or stderr.with_suffix(".out")).open("wb")
    err = stderr.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "paygate.cli", "serve", "--port", str(port), *args],
        cwd=REPO,
        env=paygate_env(env),
        stdout=out,
        stderr=err,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, stderr.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "paygate serve did not come up"
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            out.close()
            err.close()
