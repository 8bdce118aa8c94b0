"""What observing a request costs a worker: the metrics and the access line, per request.

Run from the repository root::

    .venv/bin/python bench/observe.py            # 200 000 requests per line
    .venv/bin/python bench/observe.py --quick    # 20 000: does it still work?

Each line runs in a fresh subprocess (prometheus_client chooses its storage when it is
imported) and times, per request, what ``paygate.api.app``'s middleware adds to an answer:

* **metrics, one process**: ``Metrics.observe_request`` (a counter and a histogram) — the
  figures kept in the process, as with ``paygate serve --workers 1``;
* **metrics, multiprocess**: the same written to prometheus_client's files in a
  ``PROMETHEUS_MULTIPROC_DIR``, as each worker of ``paygate serve --workers N`` does;
* **access line, json / text**: one ``paygate.access`` record with its fields, through the
  request-id filter, the secret mask and the formatter, written to ``/dev/null``;
* **scrape**: rendering ``/metrics`` from the files of 2 workers' worth of series.

It prints microseconds per request and each line's ratio to the one-process metrics line,
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, logging, logging.config, os, sys, time
from paygate.api.metrics import Metrics
from paygate.logs import logging_config
kind, n = sys.argv[1], int(sys.argv[2])
metrics = Metrics()
routes = [("/v1/payments", "POST", 201), ("/v1/accounts/{account_no:path}", "GET", 200)]
if kind.startswith("access"):
    logging.config.dictConfig(logging_config("info", kind.split("-")[1]))
    sys.stderr = open(os.devnull, "w")  # where the handler writes at each record
    log = logging.getLogger("paygate.access")
    started = time.perf_counter()
    for i in range(n):
        log.info("%s %s %d", "POST", "/v1/payments", 201, extra={
            "request_id": "8754db18bbd3476ab4c49d370ede1dc0", "method": "POST",
            "path": "/v1/payments", "route": "/v1/payments", "status": 201,
            "duration_ms": 4.2, "client": "10.0.3.7"})
elif kind == "scrape":
    for i in range(2000):
        route, method, status = routes[i % 2]
        metrics.observe_request(route, method, status, 0.004)
    n = max(n // 1000, 20)
    started = time.perf_counter()
    for _ in range(n):
        metrics.render(None)
else:
    started = time.perf_counter()
    for i in range(n):
        route, method, status = routes[i % 2]
        metrics.observe_request(route, method, status, 0.004)
print(json.dumps((time.perf_counter() - started) / n * 1e6))
"""


def run(kind: str, n: int, multiprocess: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PROMETHEUS_")}
    with tempfile.TemporaryDirectory(prefix="paygate-bench-") as directory:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 000 requests per line")
    n = 20_000 if parser.parse_args().quick else 200_000
    lines = [
        ("metrics, one process", "metrics", False),
        ("metrics, multiprocess", "metrics", True),
        ("access line, json", "access-json", False),
        ("access line, text", "access-text", False),
        ("scrape, multiprocess (per scrape)", "scrape", True),
    ]
    base = None
    for label, kind, multiprocess in lines:
        micros = run(kind, n, multiprocess)
        base = base or micros
        print(f"{label:36} {micros:9.1f} µs   {micros / base:6.2f}× one-process metrics")


if __name__ == "__main__":
    main()
