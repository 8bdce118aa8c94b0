"""``/metrics`` of ``paygate serve --workers 2``: every worker's figures in every scrape.

A real ``paygate serve`` with two uvicorn workers on PostgreSQL; requests go out on new
connections until both workers have answered some; each scrape, whichever worker answers it,
must carry both workers' series, their sum the number of requests sent, the families named as
they always were, in a text prometheus_client's own parser reads.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.processes import serving
from tests.api.support import ACCOUNT

FAMILIES = {
    # read from the database at each scrape
    "paygate_database_up": "gauge",
    "paygate_payments": "gauge",
    "paygate_outbox_depth": "gauge",
    "paygate_outbox_dead": "gauge",
    "paygate_open_breaches": "gauge",
    # counted in each worker, labelled worker
    "paygate_worker_start_time_seconds": "gauge",
    "paygate_payment_requests": "counter",
    "paygate_http_requests": "counter",
    "paygate_problems": "counter",
    "paygate_http_request_duration_seconds": "histogram",
    "paygate_process_cpu_seconds": "counter",
    "paygate_process_resident_memory_bytes": "gauge",
    "paygate_process_open_fds": "gauge",
    "paygate_db_pool_size": "gauge",
    "paygate_db_pool_checked_out": "gauge",
    "paygate_db_pool_overflow": "gauge",
}
"""Every family of a scrape and its type (prometheus_client's parser names a counter without
its ``_total``; the samples keep it)."""

ROUTE = "/v1/accounts/{account_no:path}"


def scrape(url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        assert FAMILIES.get(family.name) == family.type, family.name
        families[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    assert set(families) == set(FAMILIES)
    return families


def unsigned_requests(
    families: dict[str, list[tuple[str, dict[str, str], float]]],
) -> dict[str, float]:
    """Refused (401) account reads by worker."""
    found: dict[str, float] = defaultdict(float)
    for name, labels, value in families["paygate_http_requests"]:
        if name == "paygate_http_requests_total" and labels["route"] == ROUTE:
            assert labels["status"] == "401" and labels["method"] == "GET"
            found[labels["worker"]] += value
    return dict(found)


def gauge(
    families: dict[str, list[tuple[str, dict[str, str], float]]], name: str
) -> dict[str, float]:
    return {labels["worker"]: value for _, labels, value in families[name]}


@pytest.mark.postgres
def test_every_scrape_sums_both_workers_and_a_killed_worker_keeps_only_its_counters(
    pg_url: str, tmp_path: Path
) -> None:
    args = ["--workers", "2", "--database-url", pg_url, "--log-level", "warning"]
    with serving(args, stderr=tmp_path / "serve.log") as (url, process):
        sent = 0
        by_worker: dict[str, float] = {}
        while len(by_worker) < 2:
            assert sent < 400, f"one worker answered all {sent} requests"
            for _ in range(10):
                # a new connection each time: either worker may accept it
                assert httpx.get(f"{url}/v1/accounts/{ACCOUNT}", timeout=10).status_code == 401
                sent += 1
            by_worker = unsigned_requests(scrape(url))
        assert sum(by_worker.values()) == sent
        workers = set(by_worker)
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            families = scrape(url)
            assert unsigned_requests(families) == by_worker
            assert set(gauge(families, "paygate_worker_start_time_seconds")) == workers
            assert set(gauge(families, "paygate_db_pool_size")) >= workers
            assert all(
                v > 0 for v in gauge(families, "paygate_process_resident_memory_bytes").values()
            )
            problems = [
                (labels["worker"], value)
                for _, labels, value in families["paygate_problems"]
                if labels["route"] == ROUTE and labels["code"] == "malformed_request"
            ]
            assert {worker for worker, _ in problems} == workers
            assert sum(value for _, value in problems) == sent  # no signature headers at all
            [(_, _, up)] = families["paygate_database_up"]
            assert up == 1
        shared = Path(
            dict(
                entry.split("=", 1)
                for entry in Path(f"/proc/{next(iter(workers))}/environ").read_text().split("\0")
                if "=" in entry
            )["PROMETHEUS_MULTIPROC_DIR"]
        )
        assert shared.is_dir()

        # A worker killed outright: uvicorn starts another; the dead one's counters stay (the
        # requests happened), its gauges leave the scrape.
        killed = next(iter(workers))
        os.kill(int(killed), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "no new worker took the killed one's place"
            try:
                families = scrape(url)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            started = set(gauge(families, "paygate_worker_start_time_seconds"))
            if len(started) == 2 and killed not in started:
                break
            time.sleep(0.2)
        assert unsigned_requests(families) == by_worker
        assert killed not in gauge(families, "paygate_db_pool_size")
        assert process.poll() is None
    assert process.returncode is not None
    assert not shared.exists()  # the private directory goes with the server


def test_one_process_names_the_same_families_and_a_database_down_drops_its_own() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import QueuePool

    from paygate.api.metrics import Metrics
    from paygate.reports import DatabaseFigures

    metrics = Metrics()
    assert metrics.directory is None  # no PROMETHEUS_MULTIPROC_DIR in the test process
    engine = create_engine("sqlite://", poolclass=QueuePool, pool_size=3, max_overflow=3)
    with engine.connect():
        metrics.sample(engine.pool)
    metrics.count_payment("kiosk", "posted")
    figures = DatabaseFigures((("kiosk", "posted", 4),), 2, 1, (("major", 1),))
    up = {f.name: f for f in text_string_to_metric_families(metrics.render(figures).decode())}
    assert {name: f.type for name, f in up.items()} == FAMILIES
    worker = {"worker": str(os.getpid())}
    assert [(s.labels, s.value) for s in up["paygate_db_pool_size"].samples] == [(worker, 3)]
    assert [s.value for s in up["paygate_db_pool_checked_out"].samples] == [1]
    assert [s.value for s in up["paygate_outbox_dead"].samples] == [1]
    down = {f.name for f in text_string_to_metric_families(metrics.render(None).decode())}
    assert down == set(FAMILIES) - {
        "paygate_payments",
        "paygate_outbox_depth",
        "paygate_outbox_dead",
        "paygate_open_breaches",
    }
    engine.dispose()
