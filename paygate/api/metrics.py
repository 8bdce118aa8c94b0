"""``GET /metrics``: Prometheus text exposition (format 0.0.4) by ``prometheus_client``.

Invariants:

* **A figure that must agree whichever worker answers is read from the database at scrape
  time** — payments by channel and status, the outbox depth, open breaches of the service
  promise — so two workers (or two machines) never report two truths.
* **What only a process can know is counted in that process, labelled ``worker``** (its process
  id) — requests, the latency histogram, payment requests by outcome, problems, the process's
  CPU, memory and open files, its database pool — so that series of different workers are never
  mixed into one counter that would seem to jump backwards.
* **Every worker's series are in every scrape.** ``paygate serve --workers N`` (N > 1) gives its
  workers a private ``PROMETHEUS_MULTIPROC_DIR``: each worker writes its figures there
  (``prometheus_client``'s multiprocess mode) and a scrape, whichever worker answers it, reads
  them all. A worker that is gone keeps its counters (they happened) but its gauges go: a
  worker marks itself dead when it stops, and a scrape marks dead any worker whose process no
  longer exists. With one worker (or an app made by :func:`~paygate.api.create_app` in a
  program) the figures live in the process.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool, QueuePool

from paygate.reports import DatabaseFigures

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "MULTIPROC_ENV", "Metrics", "multiprocess_dir"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The variable naming the directory the workers of one ``paygate serve`` share figures in."""

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the request latency histogram; +Inf is implied."""

_LIVE_FILE: Final = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The directory of prometheus_client's multiprocess mode, when this process is in it:
    ``PROMETHEUS_MULTIPROC_DIR`` was set before prometheus_client was imported."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory and values.ValueClass is not values.MutexValue:
        return Path(directory)
    return None


def _alive(pid: int) -> bool:
    if os.name != "posix":  # elsewhere signal 0 is no question: count every worker alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a platform that cannot say: alive
        return True
    return True


class _Scrape(Collector):
    """One scrape: the database's families, then the processes' (without ``_created``), then
    the ``declared`` families no process has a sample of yet (every family is always named)."""

    def __init__(
        self,
        database: DatabaseFigures | None,
        sources: Iterable[Collector],
        declared: Iterable[Metric] = (),
    ) -> None:
        self._database = database
        self._sources = sources
        self._declared = declared

    def collect(self) -> Iterator[Metric]:
        database = self._database
        up = GaugeMetricFamily(
            "paygate_database_up", "1 when this scrape could read the database, else 0."
        )
        up.add_metric([], 1 if database is not None else 0)
        yield up
        if database is not None:
            payments = GaugeMetricFamily(
                "paygate_payments",
                "Payments in the ledger by channel and status (all workers; from the database).",
                labels=["channel", "status"],
            )
            for channel, status, count in database.payments:
                payments.add_metric([channel, status], count)
            yield payments
            depth = GaugeMetricFamily(
                "paygate_outbox_depth", "Events waiting for delivery (from the database)."
            )
            depth.add_metric([], database.outbox_pending)
            yield depth
            dead = GaugeMetricFamily(
                "paygate_outbox_dead", "Events given up after every retry (from the database)."
            )
            dead.add_metric([], database.outbox_dead)
            yield dead
            breaches = GaugeMetricFamily(
                "paygate_open_breaches",
                "Breaches of the service promise on orders still open, by severity "
                "(from the database).",
                labels=["severity"],
            )
            for severity, count in database.open_breaches:
                breaches.add_metric([severity], count)
            yield breaches
        named: set[str] = set()
        for source in self._sources:
            for family in source.collect():
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                named.add(family.name)
                yield family
        for family in self._declared:
            if family.name not in named:
                yield family


class Metrics:
    """The counters, gauges and histogram of one worker; safe across threads.

    In a worker of ``paygate serve --workers N`` (:func:`multiprocess_dir` set) they are
    written where every worker's scrape reads them; otherwise they live in this object.
    """

    def __init__(self) -> None:
        self.worker = str(os.getpid())
        self.directory = multiprocess_dir()
        self._registry = CollectorRegistry(auto_describe=False)
        registry = self._registry if self.directory is None else None
        self._start = Gauge(
            "paygate_worker_start_time_seconds",
            "Unix time this worker started.",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._payments = Counter(
            "paygate_payment_requests_total",
            "Payment requests answered by this worker, by channel and outcome.",
            ["worker", "channel", "outcome"],
            registry=registry,
        )
        self._requests = Counter(
            "paygate_http_requests_total",
            "HTTP requests answered by this worker, by route, method and status.",
            ["worker", "route", "method", "status"],
            registry=registry,
        )
        self._problems = Counter(
            "paygate_problems_total",
            "Problem answers of this worker, by route and code.",
            ["worker", "route", "code"],
            registry=registry,
        )
        self._latency = Histogram(
            "paygate_http_request_duration_seconds",
            "Time from request to answer in this worker, by route and method.",
            ["worker", "route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._cpu = Counter(
            "paygate_process_cpu_seconds_total",
            "CPU time (user and system) this worker has used.",
            ["worker"],
            registry=registry,
        )
        self._memory = Gauge(
            "paygate_process_resident_memory_bytes",
            "Resident memory of this worker.",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._fds = Gauge(
            "paygate_process_open_fds",
            "Open file descriptors of this worker.",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._pool_size = Gauge(
            "paygate_db_pool_size",
            "Connections the worker's database pool keeps (its configured size).",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._pool_checked_out = Gauge(
            "paygate_db_pool_checked_out",
            "Connections of the worker's database pool in use now.",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._pool_overflow = Gauge(
            "paygate_db_pool_overflow",
            "Connections open beyond the pool's size now (negative: fewer than the size open).",
            ["worker"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._declared = (
            self._start,
            self._payments,
            self._requests,
            self._problems,
            self._latency,
            self._cpu,
            self._memory,
            self._fds,
            self._pool_size,
            self._pool_checked_out,
            self._pool_overflow,
        )
        self._start.labels(self.worker).set(time.time())
        self._process = ProcessCollector(registry=None)
        self._cpu_seen = 0.0
        self._sample_lock = threading.Lock()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (first byte of the request to the last
        of the answer, as the application sees it)."""
        self._requests.labels(self.worker, route, method, str(status)).inc()
        self._latency.labels(self.worker, route, method).observe(seconds)

    def count_payment(self, channel: str, outcome: str) -> None:
        """Count one payment request by outcome: ``posted``, ``replayed`` or ``refused``."""
        self._payments.labels(self.worker, channel, outcome).inc()

    def count_refusal(self, route: str, code: str) -> None:
        """Count one problem answer by its code."""
        self._problems.labels(self.worker, route, code).inc()

    def sample(self, pool: Pool | None) -> None:
        """Record this process's CPU time, memory and open files (where the platform tells:
        ``/proc``) and ``pool``'s connections now."""
        with self._sample_lock:
            for family in self._process.collect():
                for found in family.samples:
                    if found.name == "process_cpu_seconds_total":
                        if found.value > self._cpu_seen:
                            self._cpu.labels(self.worker).inc(found.value - self._cpu_seen)
                            self._cpu_seen = found.value
                    elif found.name == "process_resident_memory_bytes":
                        self._memory.labels(self.worker).set(found.value)
                    elif found.name == "process_open_fds":
                        self._fds.labels(self.worker).set(found.value)
            if isinstance(pool, QueuePool):
                self._pool_size.labels(self.worker).set(pool.size())
                self._pool_checked_out.labels(self.worker).set(pool.checkedout())
                self._pool_overflow.labels(self.worker).set(pool.overflow())

    def render(self, database: DatabaseFigures | None) -> bytes:
        """The exposition text; ``database`` None means it could not be read this time."""
        if self.directory is None:
            return generate_latest(_Scrape(database, [self._registry]))
        self._bury(self.directory)
        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged, path=str(self.directory))  # type: ignore[no-untyped-call]
        declared = [family for metric in self._declared for family in metric.describe()]
        return generate_latest(_Scrape(database, [merged], declared))

    def stop(self) -> None:
        """This worker stops: its gauges leave the scrapes of the workers that remain."""
        if self.directory is not None:
            mark_process_dead(os.getpid(), str(self.directory))  # type: ignore[no-untyped-call]

    @staticmethod
    def _bury(directory: Path) -> None:
        """Mark dead every worker whose live gauges are still there but whose process is not
        (a worker killed before it could say so)."""
        for name in glob.glob(os.path.join(directory, "gauge_live*.db")):
            found = _LIVE_FILE.search(name)
            if found is not None and not _alive(int(found.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    mark_process_dead(  # type: ignore[no-untyped-call]
                        int(found.group(1)), str(directory)
                    )
