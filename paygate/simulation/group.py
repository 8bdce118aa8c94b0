"""Notifications that reach the gateway in the same step, group-committed.

In production the wallets', the online gateway's and the agent bank's notifications are HTTP
requests to ``paygate serve``, and the ones that arrive together share one transaction and one
commit (group commit, :mod:`paygate.group_commit`). A step of the simulation is ten minutes,
so its notifications arrive together: :func:`post_together` hands each message to its adapter
as the HTTP layer would, each in a thread of its own, and the adapters' payments are posted in
one transaction with :meth:`~paygate.payments.Payments.pay_within`, the call a group makes.

It is group commit played deterministically: the messages run one after the other up to the
adapter's ``pay`` (verification, the adapter's own reads), wait there, are posted together in
the order they arrived, and then run one after the other again from their receipt to their
answer. Nothing depends on how the threads are scheduled, so a seed replays exactly.

The gateway may die with the group in flight (:class:`GatewayDied`), before the group's
transaction commits or after it, before any member is answered: every message waiting in
``pay`` then gets no answer, as with a real process's death, and its channel sends it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from paygate.channels.base import NotifyResult, PaymentSink
from paygate.errors import PaygateError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt
from paygate.store.engine import UniqueViolation

__all__ = ["Crash", "GatewayDied", "post_together"]

Job = Callable[[PaymentSink], NotifyResult]
"""One message handed to its adapter, with the sink the adapter posts to."""

# A collision can only come from another writer committing the same payment first (the
# HTTP gateway of a run with an HTTP share); the group is then answered from it.
_ATTEMPTS = 3


class Crash(StrEnum):
    """Where the gateway dies with a group in flight."""

    BEFORE_COMMIT = "gateway, before posting"
    AFTER_COMMIT = "gateway, after posting, before answering"


class GatewayDied(BaseException):
    """Raised in a member waiting for its payment when the gateway dies: no answer. A
    ``BaseException``, so that no adapter's ``except`` answers the channel anyway."""


@dataclass(eq=False)
class _Member:
    """One message's thread and where it has got to."""

    job: Job
    gateway: Gateway
    intent: PaymentIntent | None = None
    outcome: Receipt | PaygateError | None = None
    died: bool = False
    result: NotifyResult | None = None
    error: BaseException | None = None
    go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    back: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    # -- the sink the adapter sees -----------------------------------------------------------

    def pay(self, intent: PaymentIntent) -> Receipt:
        """Wait for the group's transaction; the receipt or refusal of this payment."""
        # An intent no account could take is refused at once, as PaymentGroup.pay does.
        assert self.intent is None, "one payment per message"
        self.gateway.payments.validate(intent)
        self.intent = intent
        self.back.release()
        self.go.acquire()
        if self.died:
            raise GatewayDied
        outcome = self.outcome
        if isinstance(outcome, PaygateError):
            raise outcome
        assert isinstance(outcome, Receipt), "the group posted every waiting member"
        return outcome

    def reverse_by_channel_txn(self, channel: str, channel_txn_id: str, reason: str) -> object:
        """A reversal is not grouped: straight to the gateway."""
        return self.gateway.reverse_by_channel_txn(channel, channel_txn_id, reason)

    # -- the thread ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.result = self.job(self)
        except GatewayDied:
            self.result = None
        except BaseException as exc:  # handed to the simulation's thread
            self.error = exc
        finally:
            self.back.release()

    def resume(self) -> None:
        """Let the member run on from ``pay`` (or die there) and wait until it has answered."""
        self.go.release()
        self.back.acquire()


def post_together(
    gateway: Gateway, jobs: Sequence[Job], crash: Crash | None = None
) -> list[NotifyResult | None]:
    """Handle ``jobs`` (messages arriving together) with their payments in one transaction.

    Returns each message's answer, in order; ``None`` for a message the gateway died with
    (``crash``). A message answered before it reached ``pay`` (refused, or with nothing to
    post) has its answer even when the gateway dies afterwards.
    """
    members = [_Member(job, gateway) for job in jobs]
    waiting: list[_Member] = []
    try:
        for member in members:
            threading.Thread(target=member.run, name="simulated notify", daemon=True).start()
            member.back.acquire()  # parked in pay(), or done
            _raise_from(member)
            if member.result is None:
                waiting.append(member)
        if crash is not Crash.BEFORE_COMMIT and waiting:
            outcomes = _post(gateway, [m.intent for m in waiting if m.intent is not None])
            for member, outcome in zip(waiting, outcomes, strict=True):
                member.outcome = outcome
    except BaseException:
        crash = Crash.BEFORE_COMMIT  # no member waits for ever on a group that failed
        raise
    finally:
        for member in waiting:  # one after the other, from the receipt to the answer
            member.died = crash is not None
            member.resume()
        for member in waiting:
            _raise_from(member)
    return [member.result for member in members]


def _post(gateway: Gateway, intents: list[PaymentIntent]) -> list[Receipt | PaygateError]:
    payments = gateway.payments
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return gateway.store.run(lambda tx: payments.pay_within(tx, intents))
        except UniqueViolation:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _raise_from(member: _Member) -> None:
    if member.error is not None:
        raise member.error
