"""What reconciliation refuses, under paygate's one exception tree.

Findings are never exceptions: a run that finds a thousand discrepancies returns them as values.
These errors are for requests that cannot be carried out as asked::

    PaygateError
    ├── NotFoundError
    │   ├── UnknownRunError               no reconciliation run with that id
    │   ├── UnknownFindingError           no finding with that run and number
    │   └── UnknownSuspenseItemError      no suspense item with that number
    └── ConflictError
        └── InvalidStateError
            ├── FindingNotOpenError       the finding is not waiting for a person
            └── SuspenseAlreadyAssignedError  the suspense item was assigned before
"""

from __future__ import annotations

from paygate.errors import InvalidStateError, NotFoundError

__all__ = [
    "FindingNotOpenError",
    "SuspenseAlreadyAssignedError",
    "UnknownFindingError",
    "UnknownRunError",
    "UnknownSuspenseItemError",
]


class UnknownRunError(NotFoundError):
    """No reconciliation run with that id."""

    code = "unknown_run"


class UnknownFindingError(NotFoundError):
    """No finding with that run and number."""

    code = "unknown_finding"


class UnknownSuspenseItemError(NotFoundError):
    """No suspense item with that number."""

    code = "unknown_suspense_item"


class FindingNotOpenError(InvalidStateError):
    """The finding is not waiting for a person (matched, resolved, superseded, or the action
    does not apply to it)."""

    code = "finding_not_open"


class SuspenseAlreadyAssignedError(InvalidStateError):
    """The suspense item was already moved to an account; it is never posted twice."""

    code = "suspense_already_assigned"
