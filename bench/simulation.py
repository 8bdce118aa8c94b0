"""Simulation speed: how long a simulated month takes, day by day, wall time and CPU time.

Runs ``paygate simulate``'s engine on a fresh SQLite file and prints, after each simulated
day, that day's wall time and CPU time (the process's, all threads), the load average, then
the whole run's figures: simulated days per minute, and the share of the wall time the
process had the CPU (well under 1 on a busy machine: compare CPU seconds between runs made
at different times, wall time only within a quiet run).

    .venv/bin/python bench/simulation.py [--accounts A] [--days D] [--seed N] [--faults P]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# bench/http.py would shadow the standard library's http package.
sys.path[:] = [p for p in sys.path if not p.endswith("bench")]

from paygate.simulation import SimulationConfig, load_profile, run_simulation  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default="default")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(dir=args.workdir, prefix="paygate-sim-"))
    print(f"load before: {os.getloadavg()[0]:.2f}")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    last = [wall0, cpu0]

    def progress(done: int, total: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        label = "setup and day 1" if done == 1 else f"day {done}"
        print(
            f"{label:>16} of {total}: {wall - last[0]:7.1f} s wall {cpu - last[1]:7.1f} s CPU"
            f"  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        last[:] = [wall, cpu]

    result = run_simulation(
        SimulationConfig(
            database_url=f"sqlite:///{workdir / 'sim.db'}",
            seed=args.seed,
            accounts=args.accounts,
            days=args.days,
            faults=load_profile(args.faults),
            progress=progress,
        )
    )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    promise = result.promise
    print(
        f"{args.accounts} accounts x {args.days} days: {wall:.0f} s wall, {cpu:.0f} s CPU "
        f"(CPU/wall {cpu / wall:.2f}); {result.days_per_minute:.2f} simulated days a minute"
    )
    print(
        f"orders {promise.orders}, within 24 h {promise.share(promise.within_24h):.2%}, "
        f"within dispatch {promise.share(promise.within_dispatch):.2%}; "
        f"invariant checks {result.invariant_checks}; digest {result.digest}"
    )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
