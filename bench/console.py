"""The console's account view on PostgreSQL with many accounts: latency percentiles.

Run from the repository root::

    .venv/bin/python bench/console.py                    # 1 M accounts, about 10 M postings
    .venv/bin/python bench/console.py --quick            # 20 k accounts: does the script work?
    .venv/bin/python bench/console.py --accounts 200000 --postings 2000000
    .venv/bin/python bench/console.py --keep                 # keep the grown database, then
    .venv/bin/python bench/console.py --grown-url postgresql://…/paygate_console_<pid>_grown

Two databases beside ``--pg-url``: a grown one (``--accounts`` customers whose history of
monthly bills and payments, through every channel, reaches ``--postings`` postings, loaded
set-based with COPY by bench/growth.py's loader, sealed and analyzed) and a small one (1,000
customers, one month). Each is served by a real uvicorn server with the console; a clerk signs
in and opens ``--n`` account pages (``GET /console/accounts/<no>``) of customers drawn at
random, then searches by payment reference and by account number prefix. Each request is
timed at the client, whole: the session check, the account's status with late fees to today,
its payments, orders and notices, and the page's rendering. The figures are the grown ledger's
p50/p95/max beside the small one's, measured alternately in the same minutes; compare the
ratio, which a shared machine disturbs less than the absolute figures.

The databases are ``paygate_console_<pid>_*`` and are dropped at the end (``--keep`` keeps
the grown one, and ``--grown-url`` measures one kept before, upgraded to the code's schema,
without building it again). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

# The repository root, not bench/ (whose http.py would stand in for the standard library's).
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(BENCH.parent))

from bench import growth  # noqa: E402
from paygate import Settings  # noqa: E402
from paygate.console.staff import StaffExistsError  # noqa: E402
from paygate.store import migrate  # noqa: E402
from tests.api.support import live_server  # noqa: E402
from tests.console.support import PASSWORD, StaffClient, add_staff  # noqa: E402

PER_CUSTOMER_MONTH = 2 + (1 - growth.LATE_SHARE) * 2 + growth.LATE_SHARE * 4


def build(
    dbs: growth.Databases, suffix: str, customers: int, postings: int
) -> tuple[str, list[str]]:
    """A migrated, seeded database with ``customers`` and about ``postings`` postings of
    history; its URL and the customers' account numbers."""
    url = dbs.create(suffix)
    migrate.upgrade(url)
    zone = ZoneInfo(Settings().timezone)
    today = datetime.now(UTC).astimezone(zone).date()
    history = growth.History(growth.seed(url), zone)
    months = max(1, round(postings / (customers * PER_CUSTOMER_MONTH)))
    back: list[date] = [growth.month_start(today, m) for m in range(months, 0, -1)]
    started = time.perf_counter()
    growth.load_history(url, history, back, customers)
    with growth.Gateway.open(settings=Settings(database_url=url)) as gateway:
        add_staff(gateway)
    growth._admin(url, "VACUUM (ANALYZE)")
    count = int(growth._scalar(url, "SELECT count(*) FROM postings"))
    print(
        f"{suffix}: {customers:,} accounts, {count:,} postings, loaded in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return url, [c.account_no for c in history.customers]


def reuse(url: str) -> tuple[str, list[str]]:
    """A grown database kept by an earlier run: upgraded, its staff there, its customers."""
    migrate.upgrade(url)
    with growth.Gateway.open(settings=Settings(database_url=url)) as gateway:
        with contextlib.suppress(StaffExistsError):  # staff from an earlier run
            add_staff(gateway)
        rows = gateway.store.run(
            lambda tx: tx.all("SELECT account_no FROM accounts WHERE account_no LIKE '31%'"),
            write=False,
        )
    growth._admin(url, "ANALYZE")
    print(f"grown: {len(rows):,} customers of {url.rsplit('/', 1)[-1]}", flush=True)
    return url, [str(r[0]) for r in rows]


def timed(client: StaffClient, paths: Sequence[str]) -> list[float]:
    """Milliseconds of each GET, at the client, whole."""
    spent = []
    for path in paths:
        started = time.perf_counter()
        answer = client.http.get(path)
        spent.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return spent


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def line(name: str, grown: Sequence[float], small: Sequence[float]) -> str:
    g95, s95 = percentile(grown, 0.95), percentile(small, 0.95)
    return (
        f"{name:<22} grown p50 {statistics.median(grown):7.1f} ms  p95 {g95:7.1f} ms  "
        f"max {max(grown):7.1f} ms | small p50 {statistics.median(small):7.1f} ms  "
        f"p95 {s95:7.1f} ms | p95 ratio {g95 / s95:5.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=growth.DEFAULT_PG_URL)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--postings", type=int, default=10_000_000)
    parser.add_argument("--n", type=int, default=300, help="account pages per database")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--grown-url", help="measure this kept grown database (no build)")
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.postings, args.n = 20_000, 100_000, 60
    dbs = growth.Databases(args.pg_url, args.keep)
    dbs.prefix = dbs.prefix.replace("growth", "console")
    try:
        if args.grown_url:
            grown_url, grown_accounts = reuse(args.grown_url)
        else:
            grown_url, grown_accounts = build(dbs, "grown", args.accounts, args.postings)
        small_url, small_accounts = build(dbs, "small", 1_000, 1_000 * PER_CUSTOMER_MONTH)
        rng = random.Random(7)
        figures: dict[str, dict[str, list[float]]] = {}
        with live_server(grown_url) as grown, live_server(small_url) as small:
            clients = {"grown": StaffClient(grown.url), "small": StaffClient(small.url)}
            pools = {"grown": grown_accounts, "small": small_accounts}
            for client in clients.values():
                assert client.sign_in("li.clerk", PASSWORD).status_code == 303
            for side in ("grown", "small"):  # warm-up: connections, templates, caches
                timed(clients[side], [f"/console/accounts/{a}" for a in pools[side][:20]])
            for round_no in range(4):
                order = ("grown", "small") if round_no % 2 == 0 else ("small", "grown")
                for side in order:
                    picks = rng.sample(pools[side], args.n // 4)
                    views = figures.setdefault("account page", {}).setdefault(side, [])
                    views.extend(timed(clients[side], [f"/console/accounts/{a}" for a in picks]))
                    prefix = figures.setdefault("search by prefix", {}).setdefault(side, [])
                    prefix.extend(
                        timed(clients[side], [f"/console/search?q={a[:7]}" for a in picks[:10]])
                    )
            for client in clients.values():
                client.close()
        for name, sides in figures.items():
            print(line(name, sides["grown"], sides["small"]))
    finally:
        dbs.close("grown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
