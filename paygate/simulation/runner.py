"""The simulation's main loop: a utility's month in ten-minute steps on a real database.

Setup (before day 0): accounts opened and an old bill issued through the bulk API, notices
served to those behind. Then every step: held channel messages delivered, customers' payments
sent through their channels, the dispatcher's pass to the head-end, the head-end's duplicate
callbacks; at fixed local times finance's morning (06:00), dunning (08:00), the agent bank's
file (09:00), the POS and kiosk day close (23:00); every hour an operator puts refused orders
back and the cheap invariants are checked, every morning all of them. After the last day the
dispatcher and head-end run on for ``drain_days`` with no new payments, so that every
reconnection order raised can finish, and the end checks run.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import time as wallclock
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Final

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.console.negotiations import Negotiations
from paygate.errors import InvalidStateError
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.models import Category, SupplyState
from paygate.outbox import Dispatcher
from paygate.simulation import attacks, invariants
from paygate.simulation.faults import FaultProfile
from paygate.simulation.finance import Finance
from paygate.simulation.headend import FaultyHeadEnd, SimulatedCrash, draw_outages
from paygate.simulation.report import SimulationResult, summarise
from paygate.simulation.traffic import CHANNELS, Channels, close_of_day, kiosk_day
from paygate.simulation.world import (
    START,
    ZONE,
    Customer,
    Randoms,
    customers,
    local_day,
    monthly_bills,
    new_accounts,
)
from paygate.supply import list_orders

__all__ = ["BUGS", "InvariantBroken", "SimulationConfig", "run_simulation"]

BUGS: Final = ("ack_without_post",)
"""Bugs the CLI can plant on purpose (``--bug``), to show that the invariants catch them:
``ack_without_post`` answers a channel with success for a payment that was never posted.
A program (a test) can plant any bug: ``SimulationConfig.bug`` also takes a callable, given
the Gateway at ``bug_step``."""

STEP: Final = timedelta(minutes=10)
LEASE: Final = timedelta(seconds=5)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate."""

    database_url: str
    seed: int = 1
    accounts: int = 500
    days: int = 30
    faults: FaultProfile = field(default_factory=FaultProfile)
    drain_days: int = 3
    bug: str | Callable[[Gateway], None] | None = None
    """One of :data:`BUGS`, or a callable given the Gateway, planted at ``bug_step``."""
    bug_step: int = 200
    stop_at: int | None = None
    """Replay: stop after this step, with every invariant checked and the step's events."""
    http_share: float = 0.0
    """Share of the notifying channels' messages (wallets, online, agent bank), of the kiosk
    payments, the POS sales and the recharge-voucher redemptions sent over real HTTP through the
    gateway app rather than to the adapters in process (the kiosk payments and redemptions
    through paygate's own kiosk client)."""
    progress: Callable[[int, int], None] | None = None
    """Called after each simulated day with (days done, days in all)."""


class InvariantBroken(Exception):
    """An invariant failed: the seed and step to replay, and what was found."""

    def __init__(self, seed: int, step: int, at: datetime, name: str, problems: list[str]) -> None:
        super().__init__(f"invariant {name} broken at step {step} (seed {seed}): {problems[0]}")
        self.seed = seed
        self.step = step
        self.at = at
        self.name = name
        self.problems = problems


class _Log:
    """The event log: every line hashed into the digest; the last hour's lines kept (what a
    replay shows)."""

    def __init__(self, clock: FixedClock) -> None:
        self._clock = clock
        self._hash = hashlib.sha256()
        self.lines = 0
        self.step = 0
        self.recent: deque[tuple[int, str]] = deque(maxlen=10_000)

    def __call__(self, line: str) -> None:
        text = f"{self._clock.now():%Y-%m-%dT%H:%M} {line}"
        self._hash.update(text.encode() + b"\n")
        self.lines += 1
        self.recent.append((self.step, text))

    def last_hour(self) -> list[str]:
        """The lines of the last six steps."""
        return [text for step, text in self.recent if step > self.step - 6]

    def digest(self) -> str:
        return self._hash.hexdigest()


class _Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.randoms = Randoms(config.seed)
        self.clock = FixedClock(START - timedelta(days=60))
        self.log = _Log(self.clock)
        synchronous = None if "PAYGATE_SQLITE_SYNCHRONOUS" in os.environ else "NORMAL"
        self.settings = Settings.from_env(
            database_url=config.database_url,
            seal_every=2_000,
            sqlite_synchronous=synchronous,
            group_commit_window_ms=0,
        )
        faults = config.faults
        total_days = config.days + config.drain_days
        self.headend = FaultyHeadEnd(
            self.clock,
            faults,
            config.seed,
            draw_outages(faults, self.randoms("headend-outages"), START, config.days),
        )
        self.total_days = total_days
        self.channels = Channels(self.clock, self.randoms, faults, self.log, self._gateway_crashed)
        self.finance = Finance(faults, self.randoms("statements"))
        self.people: list[Customer] = []
        self.schedule: defaultdict[int, list[tuple[int, str]]] = defaultdict(list)
        self.gateway = Gateway.open(settings=self.settings, clock=self.clock)
        self.dispatcher = self._dispatcher()
        self.restarts: defaultdict[str, int] = defaultdict(int)
        self.retried_orders: set[int] = set()
        self.checks = 0
        self.step = 0
        self._checked_ack = 0
        self.workdir: Path | None = None
        self.negotiated = 0
        self.dues: list[date] = []
        """The due dates of the bills the run issued, month by month."""
        self.notices = 0

    # -- processes -------------------------------------------------------------------------

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(
            self.gateway,
            headends={self.headend.name: self.headend},
            default_headend=self.headend.name,
            poll_interval=timedelta(minutes=5),
            retry_base=timedelta(minutes=2),
            # No longer than a step, and its jitter drawn from the seed's own source: a seed
            # retries the same orders in the same passes, in the same order (claimed by their
            # next attempt's time), and replays exactly.
            retry_cap=STEP,
            jitter=self.randoms("dispatcher-backoff").uniform,
            # A crashed dispatcher's claims lapse after the lease; the runner lets that much
            # time pass before the fresh one starts (see _dispatch).
            lease=LEASE,
            max_attempts=10_000,
            alert_after=1_000,
            batch=500,
        )

    def _gateway_crashed(self, where: str) -> None:
        """The gateway process died: a fresh Gateway on the same database, adapters rebuilt."""
        self.restarts["gateway"] += 1
        self.gateway.close()
        self.gateway = Gateway.open(settings=self.settings, clock=self.clock)
        self.channels.attach(self.gateway, first=False)
        self.dispatcher = self._dispatcher()

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        config = self.config
        gateway = self.gateway
        self.channels.attach(gateway, first=True)
        if config.http_share > 0:
            self.workdir = Path(tempfile.mkdtemp(prefix="paygate-simulation-"))
            self.channels.use_http(self.settings, config.http_share, self.workdir)
        self.people = customers(config.accounts, self.randoms("customers"))
        gateway.open_accounts(new_accounts(self.people), keep_keys=False)
        prepaid = sum(person.prepaid for person in self.people)
        self.channels.issue_cards(per_face_value=prepaid // 2 + 20, batch_tag="A")
        behind = [person for person in self.people if person.in_arrears]
        old_due = local_day(START - timedelta(days=45))
        gateway.issue_bills(
            monthly_bills(behind, "2026-08", old_due, self.randoms("bills")), keep_keys=False
        )
        self.log(f"setup {len(self.people)} accounts, {len(behind)} behind")
        self.clock.set(START - timedelta(days=9))
        for person in behind:
            gateway.serve_notice(person.account_no)
        self.clock.set(START - timedelta(days=2))
        for person in behind:
            gateway.serve_notice(person.account_no, "final_reminder")
        self.clock.set(START)
        rng = self.randoms("customers")
        for index, person in enumerate(self.people):
            if person.in_arrears and rng.random() < 0.9:
                # They pay once cut off: some within hours, most within days.
                self._plan(index, rng.randrange(6, 6 * 144))

    def _plan(self, index: int, step: int) -> None:
        """Customer ``index`` pays at ``step``, through the channel they choose."""
        person = self.people[index]
        channel = _channel_of(person, self.randoms("channel-choice"))
        self.schedule[step].append((index, channel))

    def bill_month(self, day: int) -> None:
        """Day ``day`` opens a billing month: a bill for everyone, paid mostly on time."""
        local = local_day(START + timedelta(days=day))
        period = f"{local:%Y-%m}"
        due = local + timedelta(days=15)
        self.dues.append(due)
        self.gateway.issue_bills(
            monthly_bills(self.people, period, due, self.randoms("bills")), keep_keys=False
        )
        self.log(f"bills {period} issued to {len(self.people)}")
        rng = self.randoms("customers")
        first = day * 144
        for index, person in enumerate(self.people):
            if rng.random() < person.punctual:
                self._plan(index, first + rng.randrange(6, 15 * 144))

    # -- the steps -------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        started = wallclock.perf_counter()
        self.setup()
        steps_per_day = int(timedelta(days=1) / STEP)
        last = self.total_days * steps_per_day
        stop = self.config.stop_at
        for step in range(last):
            self.step = step
            self.log.step = step
            day, within = divmod(step, steps_per_day)
            if within == 0 and day < self.config.days and day % 30 == 0:
                self.bill_month(day)
            self.tick(day, step, paying=day < self.config.days)
            if stop is not None and step >= stop:
                self.check(everything=True)
                return self.finish(started, stopped=True)
            # Steps stay on the ten-minute grid: a restart's few seconds inside a step do not
            # carry over (the local-time duties below compare hours and minutes).
            self.clock.set(START + (step + 1) * STEP)
            if within == steps_per_day - 1 and self.config.progress is not None:
                self.config.progress(day + 1, self.total_days)
        self._last_passes()
        self.check(everything=True, end=True)
        return self.finish(started, stopped=False)

    def tick(self, day: int, step: int, *, paying: bool) -> None:
        channels = self.channels
        local = self.clock.now().astimezone(ZONE).time().replace(second=0, microsecond=0)
        if channels.over_http is not None:
            channels.over_http.forward()
        # Held messages (late, stored by an offline kiosk, resent after a crash) still arrive
        # in the days without new payments.
        channels.deliver_due()
        if paying:
            channels.reverse_due()
            due = self.schedule.pop(step, [])
            # What each payer owes, read at once: the customers look at their bills together.
            owed = self.gateway.account_statuses([self.people[i].account_no for i, _ in due])
            for index, channel in due:
                person = self.people[index]
                status = owed[person.account_no]
                channels.pay(person.account_no, channel, prepaid=person.prepaid, status=status)
        channels.deliver_arrived()
        if paying:
            self._attacks(local)
        self._dispatch()
        self._callbacks()
        if local == time(6, 0):
            self._finance()
        if local == time(8, 0) and paying:
            self._notices(local_day(self.clock.now()))
            self._dunning()
            self._negotiate()
        if local == time(9, 0):
            channels.bank_file(local_day(self.clock.now()) - timedelta(days=1))
        if local == time(23, 0):
            close_of_day(channels, local_day(self.clock.now()))
        if local == time(0, 0) and paying:
            kiosk_day(channels)
        if local.minute == 0:
            self._operator()
            self.check(everything=False, per_currency=local.hour % 6 == 0)
        if self.config.bug is not None and step == self.config.bug_step:
            self._plant(self.config.bug)

    def _attacks(self, local: time) -> None:
        faults = self.config.faults
        rng = self.randoms("attacks")
        if faults.forged_per_day and rng.random() < faults.forged_per_day / 144:
            target = rng.choice(self.people).account_no
            attacks.forge(self.channels, target)
        if faults.brute_force_per_day and local == time(3, 0):
            attacks.brute_force(
                self.channels, rng.choice(self.people).account_no, faults.brute_force_per_day
            )

    def _dispatch(self) -> None:
        """The dispatcher runs continuously: passes until one attempts nothing (an order a
        pass raised, a reconnection after a completed cut, goes out in the same step). A
        crashed dispatcher is replaced once its claims have lapsed (the lease), so that every
        order due is still attempted in this step, whichever order the crash interrupted."""
        passes = 0
        while passes < 50:
            passes += 1
            try:
                report = self.dispatcher.dispatch_once()
            except SimulatedCrash as crash:
                self.restarts["dispatcher"] += 1
                self.log(f"crash {crash.where}")
                self.clock.advance(LEASE + timedelta(seconds=1))
                self.dispatcher = self._dispatcher()
                continue
            if not report.orders_attempted:
                return

    def _last_passes(self) -> None:
        """The HTTP kiosk's forwarder passes until it has sent everything, and its customers
        redeem their cards (the gateway may have died on the last step's pass, or die again
        on these)."""
        over_http = self.channels.over_http
        for _ in range(10):
            if over_http is None or not over_http.unsent:
                return
            over_http.forward()

    def _callbacks(self) -> None:
        """The head-end calls back a completion a second time: nothing may change."""
        due, self.headend.callbacks = self.headend.callbacks, []
        for order_id, account_no, at in due:
            status = self.gateway.record_order_progress(
                order_id, HeadEndOutcome.COMPLETED, at=at, actor="headend callback"
            )
            self.log(f"callback {account_no} {status.value}")

    def _operator(self) -> None:
        """An operator puts every order the head-end refused back in the queue."""
        failed = self.gateway.store.run(lambda tx: list_orders(tx, status="failed"), write=False)
        for order in failed:
            self.gateway.retry_order(order.id)
            self.retried_orders.add(order.id)
            self.log(f"retry {order.kind} {order.account_no}")

    def _finance(self) -> None:
        missed = self.finance.morning(
            self.gateway, self.channels.settled, local_day(self.clock.now())
        )
        if missed:
            self._broken("statement_differences_found", [f"not found: {m}" for m in missed])

    def _dunning(self) -> None:
        """Every morning: the dunning policy's candidates are disconnected."""
        for candidate in self.gateway.disconnection_candidates():
            try:
                self.gateway.order_disconnection(
                    candidate.account_no, approved_by="simulated billing clerk"
                )
            except InvalidStateError:
                continue
            self.log(f"disconnect {candidate.account_no}")

    def _notices(self, today: date) -> None:
        """Billing serves the written notice, then the final reminder, to every account still
        behind on a month's bills, timed so that the dunning policy allows its disconnection
        on the day the bills are ``overdue_days`` past due (the accounts behind when the run
        began were served theirs before day 0)."""
        policy = self.gateway.settings.dunning
        for due in self.dues:
            for kind, before in (
                ("notice", policy.notice_days),
                ("final_reminder", policy.final_reminder_days),
            ):
                if kind == "final_reminder" and not policy.final_reminder:
                    continue
                # The categories whose bills reach the policy's days past due ``before`` days
                # from today (each category may have its own).
                due_now = {
                    c for c in Category
                    if (today - due).days == policy.overdue_threshold(c.value) - before
                }  # fmt: skip
                people = [p for p in self.people if p.category in due_now] if due_now else []
                if not people:
                    continue
                statuses = self.gateway.account_statuses([p.account_no for p in people])
                for person in people:
                    status = statuses[person.account_no]
                    if status.arrears.minor <= 0 or status.supply_state is SupplyState.DISCONNECTED:
                        continue
                    self.gateway.serve_notice(person.account_no, kind)
                    self.notices += 1
                    self.log(f"{kind} {person.account_no}")

    def _negotiate(self) -> None:
        """Now and then, a supervisor negotiates with a protected account in arrears and
        approves its disconnection (the console's 大客户停电协商), which orders it."""
        rng = self.randoms("negotiations")
        if rng.random() >= self.config.faults.negotiated_cut:
            return
        behind = [p.account_no for p in self.people if p.protected and p.in_arrears]
        statuses = self.gateway.account_statuses(behind)
        cuttable = (SupplyState.CONNECTED, SupplyState.DISCONNECTION_PENDING)
        owing = [
            no for no in behind if statuses[no].arrears.minor > 0
            and statuses[no].supply_state in cuttable
        ]  # fmt: skip
        if not owing:
            return
        account_no = rng.choice(owing)
        negotiations = Negotiations(self.gateway)
        negotiation = negotiations.record(
            account_no,
            counterpart="the customer's facilities manager",
            agreed_on=local_day(self.clock.now()),
            terms="supply cut at the meter; the customer's own generator carries the wards",
            recorded_by="simulated supervisor",
        )
        try:
            negotiations.approve(negotiation, approved_by="simulated supervisor")
        except InvalidStateError as exc:
            self.log(f"negotiated disconnect {account_no} refused: {exc.code}")
            return
        self.negotiated += 1
        self.log(f"negotiated disconnect {account_no}")

    def _plant(self, bug: str | Callable[[Gateway], None]) -> None:
        if callable(bug):
            self.log("bug planted")
            bug(self.gateway)
        elif bug == "ack_without_post":
            self.log(f"bug {bug}")
            self.channels.new_acknowledged.append(("alipay", "BUG-NEVER-POSTED", -1))
        else:
            raise ValueError(f"no bug {bug!r}; the bugs are {', '.join(BUGS)}")

    # -- invariants ------------------------------------------------------------------------

    def check(self, *, everything: bool, per_currency: bool = True, end: bool = False) -> None:
        """The hourly checks; ``per_currency``: the ledger's sum per currency rather than of all
        currencies together (every six hours: it reads every ledger account); ``everything``:
        audit verify too (a replay's stop, the end)."""
        gateway = self.gateway
        self.checks += 1
        self._broken(
            "ledger_balances", invariants.ledger_balances(gateway, per_currency=per_currency)
        )
        self._broken("no_protected_cut", invariants.no_protected_cut(gateway))
        acknowledged = self.channels.new_acknowledged
        self._broken(
            "acknowledged_posted_once", invariants.acknowledged_posted_once(gateway, acknowledged)
        )
        self.channels.new_acknowledged = []
        if end:
            # Sealed first: the one verify then covers every entry the month wrote, seals too
            # (it recomputes the whole journal, the costliest check of a large run).
            gateway.seal()
        if everything:
            self._broken("ledger_verifies", invariants.ledger_verifies(gateway))
        if end:
            self._broken(
                "cleared_arrears_restored",
                invariants.cleared_arrears_restored(gateway, local_day(self.clock.now())),
            )
            forged = self.channels.tally.forged_posted + self.channels.tally.guesses_posted
            self._broken(
                "forgeries_refused", [f"{forged} forged messages posted"] if forged else []
            )
            over_http = self.channels.over_http
            if over_http is not None:
                self._broken(
                    "kiosk_payments_forwarded",
                    invariants.kiosk_forwarded(over_http.kiosk, len(over_http.redemptions)),
                )

    def _broken(self, name: str, problems: list[str]) -> None:
        if problems:
            raise InvariantBroken(self.config.seed, self.step, self.clock.now(), name, problems)

    def finish(self, started: float, *, stopped: bool) -> SimulationResult:
        elapsed = wallclock.perf_counter() - started
        return summarise(
            gateway=self.gateway,
            config_seed=self.config.seed,
            accounts=self.config.accounts,
            days=self.config.days,
            faults=self.config.faults,
            headend=self.headend,
            channels=self.channels,
            finance=self.finance,
            negotiated=self.negotiated,
            notices=self.notices,
            restarts={
                **self.restarts,
                **(
                    {"http gateway": http.gateway.restarts}
                    if (http := self.channels.over_http)
                    else {}
                ),
            },
            retried=self.retried_orders,
            digest=self.log.digest(),
            events=self.log.lines,
            steps=self.step + 1,
            checks=self.checks,
            elapsed=elapsed,
            stopped_at=self.step if stopped else None,
            step_events=self.log.last_hour() if stopped else [],
        )


def _channel_of(person: Customer, rng: random.Random) -> str:
    """A prepaid customer mostly redeems a recharge voucher; everyone else picks a channel."""
    if person.prepaid and rng.random() < 0.6:
        return "voucher"
    return rng.choice([c for c in CHANNELS if c != "voucher"])


def run_simulation(config: SimulationConfig) -> SimulationResult:
    """Run the simulation ``config`` describes on its (fresh) database and return what
    happened; raise :class:`InvariantBroken` at the first broken invariant."""
    simulation = _Simulation(config)
    try:
        return simulation.run()
    finally:
        if simulation.channels.over_http is not None:
            simulation.channels.over_http.stop()
        if simulation.workdir is not None:
            shutil.rmtree(simulation.workdir, ignore_errors=True)
        simulation.gateway.close()
