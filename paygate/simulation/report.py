"""What a simulation run measured: the service promise, breaches by the fault behind them,
channel and finance figures, and the digest of the event log.

The digest is the SHA-256 of every event line in order; the same seed, fault profile, size
and paygate version give the same digest, so a run can be compared with another exactly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from paygate import __version__
from paygate.gateway import Gateway
from paygate.promise import Severity
from paygate.simulation.faults import FaultProfile
from paygate.simulation.finance import Finance
from paygate.simulation.headend import FaultyHeadEnd
from paygate.simulation.traffic import Channels
from paygate.store.engine import Tx
from paygate.supply import OrderStatus, list_orders

__all__ = ["Promise", "SimulationResult", "summarise"]


@dataclass
class Promise:
    """Reconnection orders against the service promise."""

    orders: int = 0
    completed: int = 0
    within_dispatch: int = 0
    within_acknowledge: int = 0
    within_24h: int = 0
    within_3d: int = 0

    def share(self, count: int) -> float:
        """``count`` as a share of the orders (1.0 with no orders)."""
        return count / self.orders if self.orders else 1.0


@dataclass
class SimulationResult:
    """Everything a run measured (``as_dict`` for ``--json``)."""

    seed: int
    accounts: int
    days: int
    faults: str
    version: str
    digest: str
    events: int
    steps: int
    invariant_checks: int
    elapsed_seconds: float
    promise: Promise
    breaches: dict[str, dict[str, int]]
    """Severity → the injected fault it is attributed to → count."""
    unattributed: list[int]
    """Reconnection orders breached with no injected fault behind them (must be empty)."""
    channels: dict[str, dict[str, int]]
    faults_injected: dict[str, int]
    finance: dict[str, Any]
    restarts: dict[str, int]
    stopped_at: int | None = None
    step_events: list[str] = field(default_factory=list)
    """After ``--replay``: the events of the hour up to the step it stopped at."""

    @property
    def days_per_minute(self) -> float:
        """Simulated days per minute of wall time."""
        return self.days / (self.elapsed_seconds / 60) if self.elapsed_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data, for ``--json``."""
        data = asdict(self)
        promise = self.promise
        data["promise"]["share_within_dispatch"] = promise.share(promise.within_dispatch)
        data["promise"]["share_within_acknowledge"] = promise.share(promise.within_acknowledge)
        data["promise"]["share_within_24h"] = promise.share(promise.within_24h)
        data["promise"]["share_within_3d"] = promise.share(promise.within_3d)
        data["days_per_minute"] = round(self.days_per_minute, 2)
        return data


def summarise(
    *,
    gateway: Gateway,
    config_seed: int,
    accounts: int,
    days: int,
    faults: FaultProfile,
    headend: FaultyHeadEnd,
    channels: Channels,
    finance: Finance,
    negotiated: int,
    notices: int,
    restarts: dict[str, int],
    retried: set[int],
    digest: str,
    events: int,
    steps: int,
    checks: int,
    elapsed: float,
    stopped_at: int | None,
    step_events: list[str],
) -> SimulationResult:
    """Read the run's figures from the database and the simulation's own records."""
    promise_rules = gateway.settings.service_promise

    def read(tx: Tx) -> tuple[list[Any], list[tuple[Any, ...]]]:
        orders = list_orders(tx, kind="reconnect")
        # A reconnection raised when a cut completed after the arrears were paid (it has no
        # payment of its own) is dated the cut's completion: whatever delayed the cut (its
        # order, the account's latest disconnection before it) delayed this order too.
        breaches = tx.all(
            "SELECT b.order_id, b.severity, CASE WHEN o.payment_id IS NULL THEN "
            "(SELECT MAX(d.id) FROM supply_orders d WHERE d.account_id = o.account_id "
            "AND d.kind = 'disconnect' AND d.created_at <= o.created_at) END FROM breaches b "
            "JOIN supply_orders o ON o.id = b.order_id WHERE o.kind = 'reconnect' "
            "AND b.withdrawn_at IS NULL "
            "ORDER BY b.order_id, b.step"
        )
        return orders, [tuple(row) for row in breaches]

    orders, breach_rows = gateway.store.run(read, write=False)
    promise = Promise(orders=len(orders))
    for order in orders:
        deadlines = promise_rules.deadlines(order.created_at)
        promise.completed += order.status is OrderStatus.COMPLETED
        if order.dispatched_at is not None and order.dispatched_at <= deadlines.dispatch:
            promise.within_dispatch += 1
        if order.acknowledged_at is not None and order.acknowledged_at <= deadlines.acknowledge:
            promise.within_acknowledge += 1
        if order.completed_at is not None:
            promise.within_24h += order.completed_at <= deadlines.confirm
            promise.within_3d += order.completed_at <= deadlines.legal
    breaches: dict[str, dict[str, int]] = {severity.value: {} for severity in Severity}
    unattributed: list[int] = []
    for order_id, severity, cut in breach_rows:
        touched = set(headend.faults_of.get(int(order_id), set()))
        if cut is not None:
            touched |= {f"{fault} (cut)" for fault in headend.faults_of.get(int(cut), set())}
        causes = sorted(touched)
        if int(order_id) in retried and not causes:
            causes = ["headend_reject"]
        if not causes:
            unattributed.append(int(order_id))
            causes = ["unattributed"]
        cause = "+".join(causes)
        breaches[str(severity)][cause] = breaches[str(severity)].get(cause, 0) + 1
    tally = channels.tally
    per_channel: dict[str, dict[str, int]] = defaultdict(dict)
    for channel in sorted(set(tally.payments) | set(tally.refused_genuine)):
        per_channel[channel] = {
            "payments": tally.payments[channel],
            "amount": tally.amounts[channel],
            "refused_genuine": tally.refused_genuine[channel],
            "over_http": tally.over_http[channel],
        }
    return SimulationResult(
        seed=config_seed,
        accounts=accounts,
        days=days,
        faults=faults.name,
        version=__version__,
        digest=digest,
        events=events,
        steps=steps,
        invariant_checks=checks,
        elapsed_seconds=round(elapsed, 3),
        promise=promise,
        breaches=breaches,
        unattributed=sorted(set(unattributed)),
        channels=dict(per_channel),
        faults_injected={
            **dict(sorted(tally.faults.items())),
            "headend_outages": len(headend.outages),
            "headend_refusals": headend.refused,
            "dispatcher_crashes": headend.crashes,
        },
        finance={
            "runs": finance.runs,
            "injected_differences": len(finance.injected),
            "found": len(finance.injected) - len(finance.missed),
            "findings": dict(sorted(finance.findings_by_class.items())),
            "suspense_assigned": finance.assigned,
            "replays_answered": tally.replays,
            "payments_over_http": sum(tally.over_http.values()),
            "kiosk_stored_and_forwarded": tally.kiosk_stored,
            "kiosk_confirmed_by_replay": tally.kiosk_replayed,
            "voucher_redemptions_over_http": tally.redemptions,
            "voucher_redemptions_unanswered": tally.redemptions_unanswered,
            "forged_refused": tally.forged - tally.forged_posted,
            "pin_guesses_refused": tally.guesses - tally.guesses_posted,
            "bank_files": tally.bank_files,
            "bank_files_refused": tally.bank_files_refused,
            "reversals": tally.reversals,
            "pos_voided": tally.pos_voided,
            "pos_unanswered_voided": tally.pos_unanswered_voided,
            "pos_batches_mismatched": tally.pos_mismatched,
            "negotiated_disconnections": negotiated,
            "notices_served": notices,
        },
        restarts=restarts,
        stopped_at=stopped_at,
        step_events=step_events,
    )
