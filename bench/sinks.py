"""Events per second through the RabbitMQ and NATS JetStream sinks, beside plain publish loops.

Run from the repository root, with the brokers running (RabbitMQ 127.0.0.1:5672 guest/guest,
NATS with JetStream 127.0.0.1:4222)::

    .venv/bin/python bench/sinks.py            # 3000 events a run, three rounds
    .venv/bin/python bench/sinks.py --quick    # 300 events, one round: does it still work?

In the same run, on the same brokers, the script measures, one event at a time as the
dispatcher offers them:

* **RabbitMQSink.deliver** against a plain pika loop: ``BlockingConnection`` with publisher
  confirms, ``basic_publish`` (persistent, mandatory) to the same durable topic exchange,
  each publish waiting for its confirm;
* **JetStreamSink.deliver** against a plain nats-py loop: ``await js.publish(...)`` with a
  ``Nats-Msg-Id`` header, each waiting for its JetStream ack, on the script's own event loop.

The envelopes are built before the timer on both sides; the sinks encode them inside it (as
they must). Each figure is the best of ``--rounds`` (the order of sink and loop alternates).
Target: each sink at ≥ 0.5 × its plain loop. The exchange, queue and stream are the run's own
and deleted at the end; the script counts what arrived and says CHECK FAILED on a shortfall.
"""

# ruff: noqa: E402 - the imports wait for sys.path to be fixed, just below.
from __future__ import annotations

import sys
from pathlib import Path

# This file's directory comes first on sys.path, where bench/http.py would shadow the standard
# library's http (which httpx imports): put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import nats
import pika

from paygate.events import CONTENT_TYPE, cloudevent, encode
from paygate.sinks import JetStreamSink, RabbitMQSink

WARM_UP = 100  # events each side publishes before the timed runs
RABBIT = "amqp://guest:guest@127.0.0.1:5672/%2F"
NATS = "nats://127.0.0.1:4222"


def envelopes(n: int, run: str) -> list[dict[str, Any]]:
    return [
        cloudevent(
            {
                "event_id": f"{run}-{i}",
                "type": "payment.posted",
                "account_no": f"0100{i % 97:03d}",
                "occurred_at": "2026-11-25T02:00:00+00:00",
                "data": {
                    "payment_id": i,
                    "channel": "pos",
                    "channel_txn_id": f"P{i}",
                    "amount": 12050,
                    "currency": "CNY",
                    "paid_at": "2026-11-25T02:00:00+00:00",
                    "late_fee": 0,
                    "balance_after": 0,
                    "arrears_after": 0,
                },
            }
        )
        for i in range(n)
    ]


def timed(work: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    work()
    return n / (time.perf_counter() - start)


def rabbit_runs(n: int, rounds: int, tag: str) -> tuple[float, float, int]:
    exchange, queue = f"paygate-bench-{tag}", f"paygate-bench-{tag}"
    admin = pika.BlockingConnection(pika.URLParameters(RABBIT))
    channel = admin.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, "#")
    sink = RabbitMQSink(RABBIT, exchange=exchange)
    raw_connection = pika.BlockingConnection(pika.URLParameters(RABBIT))
    raw = raw_connection.channel()
    raw.confirm_delivery()
    raw.exchange_declare(exchange, exchange_type="topic", durable=True)
    best_sink = best_raw = 0.0
    sent = 0
    try:

        def plain(events: list[dict[str, Any]]) -> None:
            for event in events:
                raw.basic_publish(
                    exchange,
                    event["type"],
                    encode(event),
                    pika.BasicProperties(
                        content_type=CONTENT_TYPE,
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=event["id"],
                    ),
                    mandatory=True,
                )

        def through_sink(events: list[dict[str, Any]]) -> None:
            for event in events:
                sink.deliver(event)

        through_sink(envelopes(WARM_UP, "warm-sink"))
        plain(envelopes(WARM_UP, "warm-raw"))
        sent += 2 * WARM_UP
        for r in range(rounds):
            a, b = envelopes(n, f"s{r}"), envelopes(n, f"r{r}")
            pair: list[tuple[str, Callable[[], None]]] = [
                ("sink", lambda a=a: through_sink(a)),  # type: ignore[misc]
                ("raw", lambda b=b: plain(b)),  # type: ignore[misc]
            ]
            for name, work in pair if r % 2 == 0 else pair[::-1]:
                rate = timed(work, n)
                if name == "sink":
                    best_sink = max(best_sink, rate)
                else:
                    best_raw = max(best_raw, rate)
            sent += 2 * n
        arrived = channel.queue_declare(queue, durable=True, passive=True).method.message_count
    finally:
        sink.close()
        raw_connection.close()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        admin.close()
    return best_sink, best_raw, sent - arrived


def nats_runs(n: int, rounds: int, tag: str) -> tuple[float, float, int]:
    stream = f"PAYGATE_BENCH_{tag}"
    sink = JetStreamSink(NATS, stream=stream, subject_prefix=f"bench{tag}")
    loop = asyncio.new_event_loop()
    nc = loop.run_until_complete(nats.connect(NATS))
    js = nc.jetstream()

    async def plain(events: list[dict[str, Any]]) -> None:
        for event in events:
            await js.publish(
                f"bench{tag}.{event['type']}",
                encode(event),
                stream=stream,
                headers={"Nats-Msg-Id": event["id"], "Content-Type": CONTENT_TYPE},
            )

    def through_sink(events: list[dict[str, Any]]) -> None:
        for event in events:
            sink.deliver(event)

    best_sink = best_raw = 0.0
    sent = 2 * WARM_UP
    try:
        through_sink(envelopes(WARM_UP, "warm-sink"))
        loop.run_until_complete(plain(envelopes(WARM_UP, "warm-raw")))
        for r in range(rounds):
            a, b = envelopes(n, f"s{r}"), envelopes(n, f"r{r}")
            pair: list[tuple[str, Callable[[], None]]] = [
                ("sink", lambda a=a: through_sink(a)),  # type: ignore[misc]
                ("raw", lambda b=b: loop.run_until_complete(plain(b))),  # type: ignore[misc]
            ]
            for name, work in pair if r % 2 == 0 else pair[::-1]:
                rate = timed(work, n)
                if name == "sink":
                    best_sink = max(best_sink, rate)
                else:
                    best_raw = max(best_raw, rate)
            sent += 2 * n
        info = loop.run_until_complete(js.stream_info(stream))
        arrived = info.state.messages
    finally:
        sink.close()
        loop.run_until_complete(js.delete_stream(stream))
        loop.run_until_complete(nc.close())
        loop.close()
    return best_sink, best_raw, sent - arrived


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="events per run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = args.n or (300 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 3)
    tag = uuid.uuid4().hex[:8]
    print(f"{n} events a run, best of {rounds} round(s)")
    print(f"{'broker':<16}{'sink ev/s':>12}{'raw ev/s':>12}{'ratio':>8}  target >= 0.50")
    failed = False
    for name, runs in (("RabbitMQ", rabbit_runs), ("NATS JetStream", nats_runs)):
        sink_rate, raw_rate, missing = runs(n, rounds, tag)
        ratio = sink_rate / raw_rate
        mark = "ok" if ratio >= 0.5 else "BELOW TARGET"
        print(f"{name:<16}{sink_rate:>12.0f}{raw_rate:>12.0f}{ratio:>8.2f}  {mark}")
        if missing:
            print(f"CHECK FAILED: {name}: {missing} events did not arrive")
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
