"""``GET /metrics``: Prometheus text exposition (format 0.0.4), without a client library.

Invariant: a figure that must agree whichever worker answers the scrape is read from the
database at scrape time — payments by channel and status, the outbox depth, open breaches of
the service promise — so two workers (or two machines) never report two truths. What only a
process can know — request counts, the latency histogram, payment requests by outcome — is
counted in that process and labelled with ``worker`` (its process id), so that series from
different workers are never mixed into one counter that would seem to jump backwards.

Behind one port several uvicorn workers share the listening socket, and a scrape reaches one
of them; its per-worker series are a sample. Where per-worker figures matter, run one
``paygate serve`` process per port and scrape each (docs/http-api.md).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from paygate.reports import DatabaseFigures

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

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

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1
                break
        self.total += seconds
        self.count += 1


class Metrics:
    """The in-process counters and histogram of one worker; safe across threads."""

    def __init__(self) -> None:
        self._worker = str(os.getpid())
        self._started = time.time()
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self._payments: dict[tuple[str, str], int] = defaultdict(int)
        self._refusals: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (first byte of the request to the last
        of the answer, as the application sees it)."""
        with self._lock:
            self._requests[(route, method, str(status))] += 1
            self._latency[(route, method)].observe(seconds)

    def count_payment(self, channel: str, outcome: str) -> None:
        """Count one payment request by outcome: ``posted``, ``replayed`` or ``refused``."""
        with self._lock:
            self._payments[(channel, outcome)] += 1

    def count_refusal(self, route: str, code: str) -> None:
        """Count one problem answer by its code."""
        with self._lock:
            self._refusals[(route, code)] += 1

    def render(self, database: DatabaseFigures | None) -> str:
        """The exposition text; ``database`` None means it could not be read this time."""
        worker = (("worker", self._worker),)
        out: list[str] = []

        def family(name: str, kind: str, text: str, samples: Iterable[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{sample} {_number(value)}" for sample, value in samples)

        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(
                (key, (list(h.counts), h.total, h.count)) for key, h in self._latency.items()
            )
            payments = sorted(self._payments.items())
            refusals = sorted(self._refusals.items())

        family(
            "paygate_database_up",
            "gauge",
            "1 when this scrape could read the database, else 0.",
            [("paygate_database_up", 1 if database is not None else 0)],
        )
        if database is not None:
            family(
                "paygate_payments",
                "gauge",
                "Payments in the ledger by channel and status (all workers; from the database).",
                [
                    (f"paygate_payments{_labels((('channel', c), ('status', s)))}", n)
                    for c, s, n in database.payments
                ],
            )
            family(
                "paygate_outbox_depth",
                "gauge",
                "Events waiting for delivery (from the database).",
                [("paygate_outbox_depth", database.outbox_pending)],
            )
            family(
                "paygate_outbox_dead",
                "gauge",
                "Events given up after every retry (from the database).",
                [("paygate_outbox_dead", database.outbox_dead)],
            )
            family(
                "paygate_open_breaches",
                "gauge",
                "Breaches of the service promise on orders still open, by severity "
                "(from the database).",
                [
                    (f"paygate_open_breaches{_labels((('severity', s),))}", n)
                    for s, n in database.open_breaches
                ],
            )
        family(
            "paygate_worker_start_time_seconds",
            "gauge",
            "Unix time this worker started.",
            [(f"paygate_worker_start_time_seconds{_labels(worker)}", self._started)],
        )
        family(
            "paygate_payment_requests_total",
            "counter",
            "Payment requests answered by this worker, by channel and outcome.",
            [
                (
                    "paygate_payment_requests_total"
                    f"{_labels((*worker, ('channel', c), ('outcome', o)))}",
                    n,
                )
                for (c, o), n in payments
            ],
        )
        family(
            "paygate_http_requests_total",
            "counter",
            "HTTP requests answered by this worker, by route, method and status.",
            [
                (
                    "paygate_http_requests_total"
                    f"{_labels((*worker, ('route', r), ('method', m), ('status', s)))}",
                    n,
                )
                for (r, m, s), n in requests
            ],
        )
        family(
            "paygate_problems_total",
            "counter",
            "Problem answers of this worker, by route and code.",
            [
                (f"paygate_problems_total{_labels((*worker, ('route', r), ('code', c)))}", n)
                for (r, c), n in refusals
            ],
        )
        samples: list[tuple[str, float]] = []
        for (route, method), (counts, total, count) in latency:
            labels = (*worker, ("route", route), ("method", method))
            running = 0
            for bound, bucket in zip(LATENCY_BUCKETS, counts, strict=True):
                running += bucket
                samples.append(
                    (
                        "paygate_http_request_duration_seconds_bucket"
                        f"{_labels((*labels, ('le', _number(bound))))}",
                        running,
                    )
                )
            infinity = _labels((*labels, ("le", "+Inf")))
            samples.append((f"paygate_http_request_duration_seconds_bucket{infinity}", count))
            samples.append((f"paygate_http_request_duration_seconds_sum{_labels(labels)}", total))
            samples.append((f"paygate_http_request_duration_seconds_count{_labels(labels)}", count))
        family(
            "paygate_http_request_duration_seconds",
            "histogram",
            "Time from request to answer in this worker, by route and method.",
            samples,
        )
        return "\n".join(out) + "\n"
