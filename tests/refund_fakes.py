"""A scripted refund route for tests: the provider's side of a refund, answers on a script.

It keeps what a real provider keeps — one refund per refund id, however often it is submitted
— so that a test can count what was paid out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from paygate.refunds.route import RefundOutcome, RefundRequest, RefundRouteUnavailable, RefundState

Step = RefundOutcome | Exception

PENDING = RefundOutcome(RefundState.PENDING)
UNAVAILABLE = RefundRouteUnavailable("connection refused")


def succeeded(reference: str = "PR-1") -> RefundOutcome:
    return RefundOutcome(RefundState.SUCCEEDED, provider_reference=reference)


def failed(code: str = "ACCOUNT_CLOSED", message: str = "payer account closed") -> RefundOutcome:
    return RefundOutcome(RefundState.FAILED, failure_code=code, failure_message=message)


@dataclass
class ScriptedRoute:
    """A RefundRoute answering submit and query from scripts; once a script runs out, the
    provider answers from what it holds (a refund it accepted: ``settle_as``)."""

    name: str
    channel: str | None
    submits: list[Step] = field(default_factory=list)
    queries: list[Step] = field(default_factory=list)
    settle_as: RefundOutcome = field(default_factory=succeeded)
    calls: list[tuple[str, str]] = field(default_factory=list)
    accepted: dict[str, RefundRequest] = field(default_factory=dict)

    def script(self, *, submits: Iterable[Step] = (), queries: Iterable[Step] = ()) -> None:
        self.submits.extend(submits)
        self.queries.extend(queries)

    def submit(self, request: RefundRequest) -> RefundOutcome:
        self.calls.append(("submit", request.refund_id))
        step = self.submits.pop(0) if self.submits else self.settle_as
        if isinstance(step, Exception):
            raise step
        self.accepted.setdefault(request.refund_id, request)  # de-duplicated by refund id
        return step

    def query(self, request: RefundRequest) -> RefundOutcome:
        self.calls.append(("query", request.refund_id))
        if self.queries:
            step = self.queries.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        if request.refund_id not in self.accepted:
            return PENDING  # never received: the provider has nothing yet
        return self.settle_as
