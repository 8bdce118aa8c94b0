"""Attempts at the token endpoint: each one recorded, guessing bounded for every worker.

Invariants:

* **Counted in the database.** ``paygate serve`` runs several workers (processes), so the
  failures that bound guessing are rows of ``token_attempts``, which every worker reads, never
  a process's memory. This module is the table's one writer.
* **Bounded under concurrency.** An attempt is recorded ``pending`` *before* its secret is
  checked, and a pending attempt counts as a failure until it is finished. Deciding whether
  an attempt may go on and recording it happen in one transaction, serialized per client id
  and per source (transaction-scoped advisory locks on PostgreSQL; SQLite has one writer), so
  however many workers try at once, no more than the limit of secrets are checked in a
  window.
* **A sliding window.** Failures (``refused``, and ``pending`` ones) of a client id in the
  last ``window`` are counted, and so are a source address's; at the limit the attempt is
  refused (:class:`TokenThrottledError`, 429) and recorded ``throttled``, which is not a
  failure itself. It may be made again once enough failures have left the window
  (``retry_at``).
* **No secret is stored or logged.** A row holds the client id as given (at most 200
  characters), the source address, the outcome and the time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from paygate.clock import Clock
from paygate.errors import PaygateError
from paygate.store.engine import Store, Tx

__all__ = ["AttemptOutcome", "TokenAttempts", "TokenThrottledError"]

_log = logging.getLogger("paygate.tokens")

_LOCK_CLIENT: Final = 7303315
_LOCK_SOURCE: Final = 7303316
_LONGEST_ID: Final = 200
_LONGEST_SOURCE: Final = 64


class AttemptOutcome(StrEnum):
    """What an attempt at the token endpoint came to, as ``token_attempts.outcome`` holds it."""

    PENDING = "pending"
    """Its secret is being checked (counts as a failure until it is finished)."""
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"
    """The client id and secret did not authenticate: a failure."""
    THROTTLED = "throttled"
    """Refused unchecked: too many failures in the window (not a failure itself)."""
    ERROR = "error"
    """Something else went wrong while checking (not counted)."""


_FAILURES: Final = (AttemptOutcome.REFUSED.value, AttemptOutcome.PENDING.value)


class TokenThrottledError(PaygateError):
    """Too many failed authentications for the client id or the source; retry at
    ``retry_at`` (429, with ``Retry-After``)."""

    code = "token_throttled"

    def __init__(self, message: str, *, scope: str, retry_at: datetime) -> None:
        super().__init__(message, field=scope)
        self.scope = scope
        self.retry_at = retry_at


class TokenAttempts:
    """The ``token_attempts`` table: begin an attempt (or refuse it), finish it."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        client_failures: int,
        source_failures: int,
        window: timedelta,
    ) -> None:
        if client_failures < 1 or source_failures < 1 or window <= timedelta(0):
            raise ValueError("the limits and the window must be positive")
        self._store = store
        self._clock = clock
        self._client_failures = client_failures
        self._source_failures = source_failures
        self._window = window

    def begin(self, client_id: str, source: str | None) -> int:
        """Record a pending attempt and return its id; TokenThrottledError (recorded as
        ``throttled``) when the client id or the source used up its failures."""
        client = client_id[:_LONGEST_ID]
        where = None if source is None else source[:_LONGEST_SOURCE]
        now = self._clock.now()

        def work(tx: Tx) -> tuple[int, TokenThrottledError | None]:
            if tx.dialect == "postgresql":
                # Client first, then source: one order for every attempt, so no deadlock.
                keys = [(_LOCK_CLIENT, client)]
                if where is not None:
                    keys.append((_LOCK_SOURCE, where))
                for lock_class, key in keys:
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(:v))",
                        {"k": lock_class, "v": key},
                    )
            refusal = self._throttled(tx, client, where, now)
            outcome = AttemptOutcome.PENDING if refusal is None else AttemptOutcome.THROTTLED
            attempt = tx.ids.one()
            tx.execute(
                "INSERT INTO token_attempts (id, client_id, source, outcome, at) "
                "VALUES (:id, :c, :s, :o, :at)",
                {"id": attempt, "c": client, "s": where, "o": outcome.value, "at": tx.ts(now)},
            )
            return attempt, refusal

        attempt, refusal = self._store.run(work)
        if refusal is not None:
            _log.warning(
                "token: client %r from %s: throttled (%s) until %s",
                client[:64],
                where or "?",
                refusal.scope,
                refusal.retry_at.isoformat(),
            )
            raise refusal
        return attempt

    def finish(self, attempt: int, outcome: AttemptOutcome) -> None:
        """Record what the pending ``attempt`` came to."""
        if outcome in (AttemptOutcome.PENDING, AttemptOutcome.THROTTLED):
            raise ValueError("an attempt finishes authenticated, refused or in error")

        def work(tx: Tx) -> tuple[str, str | None] | None:
            tx.execute(
                "UPDATE token_attempts SET outcome = :o WHERE id = :id AND outcome = 'pending'",
                {"o": outcome.value, "id": attempt},
            )
            row = tx.one(
                "SELECT client_id, source FROM token_attempts WHERE id = :id", {"id": attempt}
            )
            return None if row is None else (str(row[0]), row[1])

        found = self._store.run(work)
        client, source = found if found is not None else ("?", None)
        level = logging.INFO if outcome is AttemptOutcome.AUTHENTICATED else logging.WARNING
        _log.log(level, "token: client %r from %s: %s", client[:64], source or "?", outcome.value)

    def _throttled(
        self, tx: Tx, client: str, source: str | None, now: datetime
    ) -> TokenThrottledError | None:
        since = now - self._window
        limits = [("client_id", client, self._client_failures)]
        if source is not None:
            limits.append(("source", source, self._source_failures))
        for column, value, limit in limits:
            failures = _count(tx, column, value, since)
            if failures < limit:
                continue
            # The window slides: an attempt may go on once enough failures have left it.
            oldest_needed = tx.scalar(
                f"SELECT at FROM token_attempts WHERE {column} = :v AND at > :since "  # noqa: S608 - column is ours
                "AND outcome IN (:f0, :f1) ORDER BY at, id LIMIT 1 OFFSET :skip",
                {
                    "v": value,
                    "since": tx.ts(since),
                    "f0": _FAILURES[0],
                    "f1": _FAILURES[1],
                    "skip": failures - limit,
                },
            )
            retry_at = tx.read_ts(oldest_needed) + self._window
            label = "client id" if column == "client_id" else "source address"
            return TokenThrottledError(
                f"too many failed authentications for this {label}: {failures} within "
                f"{int(self._window.total_seconds())} s; retry after {retry_at.isoformat()}",
                scope=column,
                retry_at=retry_at,
            )
        return None


def _count(tx: Tx, column: str, value: str, since: datetime) -> int:
    return int(
        tx.scalar(
            f"SELECT COUNT(*) FROM token_attempts WHERE {column} = :v AND at > :since "  # noqa: S608 - column is ours
            "AND outcome IN (:f0, :f1)",
            {"v": value, "since": tx.ts(since), "f0": _FAILURES[0], "f1": _FAILURES[1]},
        )
    )
