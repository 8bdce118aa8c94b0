"""Group commit: concurrent payments share one transaction and one commit.

A database commit costs a disk flush and a round trip whatever it carries, so payments that
arrive together are posted together, the way databases group their commits: the first caller
to arrive **leads** a group, waits a short window (``Settings.group_commit_window_ms``) or
until the group is full (``group_commit_max``), and posts every member with
:meth:`~paygate.payments.Payments.pay_within` in one transaction; the others (**followers**)
wait on a future for their own outcome. A caller who finds no other payment in flight does not
wait at all, and while a group is being committed the next one fills, so groups grow with the
load and a lone caller is as fast as without grouping.

Invariants:

* **Each caller its own outcome.** A receipt (possibly a replay) or the error a lone
  :meth:`~paygate.payments.Payments.pay` would have raised; never another caller's.
* **Exactly once, nothing half-posted.** The group's transaction commits whole or not at all.
  A member that fails inside it (an unexpected error while its intent is prepared, say) rolls
  the transaction back, gets its error, and the group is posted again without it; a failure
  that names no member (raised while posting or committing) splits the group in halves, each
  posted on its own, down to the member that fails, which alone gets the error. A concurrent
  duplicate committed first (``UniqueViolation``) re-runs the group, which then answers it as
  a replay. Nothing rolled back was posted, so nothing is posted twice; a caller that got an
  error can retry, and the retry is answered once (posted, or replayed if it had committed).
* **Arrival order.** Members are posted in the order they joined; two payments of one account
  in one group are allocated one after the other, as if paid one by one, and a second
  payment with the same (channel, channel transaction id) is answered as a replay of the first
  (or refused as a conflict, when it differs).
* **Sealing counts stay right**: the group posts through ``pay_within``, whose entries count
  toward the next seal once the transaction commits, and only then.

With the window at 0 grouping is off and every payment is its own transaction, exactly as
:meth:`Payments.pay` posts it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from paygate.errors import IdempotencyConflictError, PaygateError
from paygate.models import PaymentIntent, Receipt
from paygate.payments import Payments
from paygate.records import Core
from paygate.store.engine import Tx, UniqueViolation

__all__ = ["After", "Batcher", "PaymentGroup", "Prepare"]

T = TypeVar("T")

Prepare = Callable[[Tx], PaymentIntent | PaygateError]
"""What a caller does inside the group's transaction before its payment is posted: the writes
that must commit with it (a terminal's nonce), then the intent to post, or the refusal to
answer (its writes still commit, as a refused request's nonce must)."""

After = Callable[[Tx, Receipt], None]
"""What a caller reads or writes inside the group's transaction once its payment is decided
(a kiosk's close of the payment's business date), given its receipt."""

# A concurrent duplicate that committed first makes the group collide; this many attempts
# before the group is split (and a lone payment given up, as Payments.pay gives up).
_ATTEMPTS = 3


@dataclass(eq=False)
class _Batch(Generic[T]):
    """One group: its members in arrival order, each with the future of its outcome."""

    opened: float
    alone: bool
    members: list[tuple[T, Future[Receipt]]] = field(default_factory=list)
    sealed: bool = False


class Batcher(Generic[T]):
    """Leader/follower batching of items into groups, thread-safe; knows nothing of payments.

    :meth:`join` puts an item in the open group (opening one if there is none) and returns the
    future of its outcome, and the group itself when the caller opened it and must
    :meth:`lead` it. The leader waits until ``window()`` seconds have passed since the group
    opened or it holds ``max_size()`` items, unless the group opened while no other item was
    in flight; then it waits for one of ``parallel`` slots (the group still taking members
    meanwhile), seals the group and hands its items to ``run``, which resolves every future.
    """

    def __init__(
        self,
        window: Callable[[], float],
        max_size: Callable[[], int],
        *,
        parallel: int = 1,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self._window = window
        self._max_size = max_size
        self._cond = threading.Condition()
        self._open: _Batch[T] | None = None
        self._in_flight = 0
        self._slots = threading.Semaphore(parallel)

    @property
    def in_flight(self) -> int:
        """Items joined whose group has not finished."""
        with self._cond:
            return self._in_flight

    def join(self, item: T) -> tuple[Future[Receipt], _Batch[T] | None]:
        """Add ``item`` to the open group; its future, and the group if the caller leads it."""
        future: Future[Receipt] = Future()
        with self._cond:
            self._in_flight += 1
            batch = self._open
            lead = batch is None
            if batch is None:
                batch = _Batch(opened=time.monotonic(), alone=self._in_flight == 1)
                self._open = batch
            batch.members.append((item, future))
            if len(batch.members) >= max(1, self._max_size()):
                self._seal(batch)
        return future, batch if lead else None

    def lead(
        self, batch: _Batch[T], run: Callable[[list[tuple[T, Future[Receipt]]]], None]
    ) -> None:
        """Wait out the group's window, then run it; every member's future is resolved."""
        with self._cond:
            if not batch.alone:
                deadline = batch.opened + self._window()
                while not batch.sealed and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
        self._slots.acquire()
        try:
            with self._cond:
                self._seal(batch)
            members = list(batch.members)
            try:
                run(members)
            except BaseException as exc:
                _fail(members, exc)
                raise
            finally:
                _fail(members, RuntimeError("the group ended without an outcome"))
        finally:
            self._slots.release()
            with self._cond:
                self._in_flight -= len(batch.members)

    def _seal(self, batch: _Batch[T]) -> None:
        # Called with the condition held: nothing joins a sealed group.
        batch.sealed = True
        if self._open is batch:
            self._open = None
        self._cond.notify_all()


def _fail(members: Sequence[tuple[object, Future[Receipt]]], exc: BaseException) -> None:
    for _, future in members:
        _resolve(future, exc)


def _resolve(future: Future[Receipt], outcome: Receipt | BaseException) -> None:
    """Set a member's outcome, unless it is already set or its caller cancelled the wait (a
    coroutine cancelled): its payment stands, and the other members still get theirs."""
    if future.done():
        return
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass  # cancelled in between


@dataclass(eq=False)
class _Member:
    """One caller's part of a group: how its intent is made, and which one it is."""

    prepare: Prepare
    intent: PaymentIntent | None = None
    after: After | None = None


class PaymentGroup:
    """Group commit of payments (see the module's docstring); one per Gateway.

    Thread-safe: call :meth:`pay` from any number of threads, :meth:`pay_async` from
    coroutines. The settings are read on every call, so a changed window applies at once.
    """

    def __init__(self, core: Core, payments: Payments) -> None:
        self._core = core
        self._payments = payments
        # SQLite has one writer: a second group would only queue behind the first, so it had
        # better keep filling; PostgreSQL commits a few groups at once.
        parallel = 1 if core.store.dialect == "sqlite" else 2
        self._batcher: Batcher[_Member] = Batcher(
            lambda: self._core.settings.group_commit_window_ms / 1000,
            lambda: self._core.settings.group_commit_max,
            parallel=parallel,
        )

    @property
    def enabled(self) -> bool:
        """Whether payments are grouped (a window above 0)."""
        return self._core.settings.group_commit_window_ms > 0

    @property
    def in_flight(self) -> int:
        """Payments joined to a group and not yet answered."""
        return self._batcher.in_flight

    def pay(self, intent: PaymentIntent) -> Receipt:
        """:meth:`Payments.pay`, in a group with the payments arriving at the same time.

        The same receipt, replay or error as :meth:`Payments.pay`; an intent no account could
        take is refused at once, before it joins a group.
        """
        if not self.enabled:
            return self._payments.pay(intent)
        if not isinstance(intent, PaymentIntent):
            raise TypeError("pay() takes a PaymentIntent")
        self._payments.validate(intent)
        return self._wait(self._join(_Member(_constant(intent), intent)))

    async def pay_async(self, intent: PaymentIntent) -> Receipt:
        """:meth:`pay` for a coroutine: waits without a thread; a group it leads runs on the
        event loop's default executor."""
        if not isinstance(intent, PaymentIntent):
            raise TypeError("pay() takes a PaymentIntent")
        self._payments.validate(intent)
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(None, self._payments.pay, intent)
        future, batch = self._batcher.join(_Member(_constant(intent), intent))
        if batch is not None:
            loop.run_in_executor(None, self._batcher.lead, batch, self._run)
        return await asyncio.wrap_future(future)

    def pay_prepared(self, prepare: Prepare, after: After | None = None) -> Receipt:
        """Post the payment ``prepare`` makes inside the group's transaction.

        ``prepare`` runs in the transaction that posts the payment (again, in a new one, if
        the group is re-run): what it writes commits with the payment, or with its refusal.
        It returns the intent, or the refusal (a PaygateError) raised here once committed;
        an exception it raises rolls its writes back and is raised here. ``after``, if given,
        runs in the same transaction once the payment is decided, with its receipt (not for
        a refusal); an exception it raises is this caller's, as one ``prepare`` raises. With
        grouping off they run in a transaction of their own, as with one caller.
        """
        member = _Member(prepare, after=after)
        if not self.enabled:
            future: Future[Receipt] = Future()
            self._run([(member, future)])
            return future.result()
        return self._wait(self._join(member))

    # -- internals ------------------------------------------------------------------------

    def _join(self, member: _Member) -> Future[Receipt]:
        future, batch = self._batcher.join(member)
        if batch is not None:
            self._batcher.lead(batch, self._run)
        return future

    @staticmethod
    def _wait(future: Future[Receipt]) -> Receipt:
        return future.result()

    def _run(self, members: list[tuple[_Member, Future[Receipt]]]) -> None:
        """Post ``members`` in one transaction, isolating what fails; resolve every future."""
        pending = list(members)
        attempts = 0
        state = _Attempt()  # reset by each run of the transaction
        while pending:
            try:
                outcomes = self._core.store.run(lambda tx: self._post(tx, pending, state))
            except UniqueViolation as exc:
                if state.committed:
                    raise AssertionError("a unique violation after commit") from exc
                attempts += 1
                if attempts < _ATTEMPTS:
                    continue  # a concurrent duplicate committed first: answered from it now
                if len(pending) == 1:
                    _resolve(pending[0][1], _colliding(pending[0][0]))
                    return
                self._split(pending)
                return
            except Exception as exc:
                if state.committed:
                    # Committed; what failed after (a seal) goes to the first member, as
                    # Payments.pay raises it to its one caller; the others have their outcomes.
                    _deliver(pending[1:], state.outcomes[1:])
                    _resolve(pending[0][1], exc)
                    return
                if state.failed is not None:
                    # That member's own step failed: it alone gets the error, the rest go again.
                    _resolve(pending.pop(state.failed)[1], exc)
                    continue
                if not state.started or len(pending) == 1:
                    # Nothing ran (no connection, say), or the one member failed: its error.
                    _fail(pending, exc)
                    return
                self._split(pending)
                return
            _deliver(pending, outcomes)
            return

    def _split(self, pending: list[tuple[_Member, Future[Receipt]]]) -> None:
        # The failure names no member: post each half on its own, the earlier half first so
        # that arrival order holds, down to the member that fails.
        middle = len(pending) // 2
        self._run(pending[:middle])
        self._run(pending[middle:])

    def _post(
        self, tx: Tx, pending: Sequence[tuple[_Member, Future[Receipt]]], state: _Attempt
    ) -> list[Receipt | PaygateError]:
        state.reset()
        tx.after_commit(state.mark_committed)  # first, before the seal count's callback
        state.started = True
        outcomes: list[Receipt | PaygateError | None] = [None] * len(pending)
        intents: list[PaymentIntent] = []
        slots: list[int] = []
        for index, (member, _) in enumerate(pending):
            state.failed = index
            made = member.prepare(tx)
            if isinstance(made, PaygateError):
                outcomes[index] = made
            else:
                if not isinstance(made, PaymentIntent):
                    raise TypeError("prepare must return a PaymentIntent or a PaygateError")
                self._payments.validate(made)
                member.intent = made
                intents.append(made)
                slots.append(index)
            state.failed = None
        if intents:
            for index, result in zip(slots, self._payments.pay_within(tx, intents), strict=True):
                outcomes[index] = result
                after = pending[index][0].after
                if after is not None and isinstance(result, Receipt):
                    state.failed = index
                    after(tx, result)
                    state.failed = None
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(pending)
        state.outcomes = done
        return done


@dataclass
class _Attempt:
    """What one run of a group's transaction got to: started, which member failed, committed."""

    started: bool = False
    failed: int | None = None
    committed: bool = False
    outcomes: list[Receipt | PaygateError] = field(default_factory=list)

    def reset(self) -> None:
        # The store re-runs the work on a serialization failure: start over.
        self.started, self.failed, self.committed, self.outcomes = False, None, False, []

    def mark_committed(self) -> None:
        self.committed = True


def _constant(intent: PaymentIntent) -> Prepare:
    return lambda _tx: intent


def _deliver(
    members: Sequence[tuple[_Member, Future[Receipt]]],
    outcomes: Sequence[Receipt | PaygateError],
) -> None:
    for (_, future), outcome in zip(members, outcomes, strict=True):
        _resolve(future, outcome)


def _colliding(member: _Member) -> IdempotencyConflictError:
    intent = member.intent
    what = f" {intent.channel}/{intent.channel_txn_id}" if intent is not None else ""
    return IdempotencyConflictError(
        f"payment{what} keeps colliding with concurrent writers; retry", field="channel_txn_id"
    )
