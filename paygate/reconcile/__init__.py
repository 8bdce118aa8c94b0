"""Reconciliation for finance: every channel's statement and the bank, against the ledger.

Start here::

    from datetime import date
    from paygate import Gateway
    from paygate.reconcile import reconcile_file, statement_reader

    with Gateway.open("postgresql://…/paygate") as gateway:
        run = reconcile_file(gateway, "alipay", date(2026, 11, 24), "alipay-20261124.csv",
                             reader=statement_reader("alipay"))
        print(run.totals, run.open_findings)

A run classifies every statement line and every ledger payment of the channel's business day
(matched, only in the ledger, only in the statement, amount mismatch, duplicate in the
statement, refund or reversal matched to its original), keeps the findings as values with the
run, resolves what the policy allows (late payments, suspense) with an audit record, and leaves
the rest to people. The same file again is the same run; a new file supersedes the old run.
The bank leg (:func:`reconcile_bank_file`) closes each channel day's clearing account when its
net settlement reaches the utility's bank. See docs/finance.md.
"""

from paygate.reconcile.bank_leg import reconcile_bank, reconcile_bank_file, settle_bank_credits
from paygate.reconcile.config import (
    BankSetup,
    ChannelSetup,
    ReconcileConfig,
    channel_rules,
    load_config,
    statement_reader,
)
from paygate.reconcile.engine import reconcile, reconcile_file, sha256_of
from paygate.reconcile.errors import (
    FindingNotOpenError,
    SuspenseAlreadyAssignedError,
    UnknownFindingError,
    UnknownRunError,
    UnknownSuspenseItemError,
)
from paygate.reconcile.model import (
    ClassTotal,
    Finding,
    FindingClass,
    FindingStatus,
    ReconcilePolicy,
    ReconciliationRun,
    Resolution,
    ResolutionAction,
    RunKind,
    RunStatus,
    Settlement,
    SuspenseItem,
)
from paygate.reconcile.resolution import (
    assign_suspense,
    release_suspense,
    resolve_finding,
    suspense_items,
)
from paygate.reconcile.runs import findings, list_runs, load_run

__all__ = [
    "BankSetup",
    "ChannelSetup",
    "ClassTotal",
    "Finding",
    "FindingClass",
    "FindingNotOpenError",
    "FindingStatus",
    "ReconcileConfig",
    "ReconcilePolicy",
    "ReconciliationRun",
    "Resolution",
    "ResolutionAction",
    "RunKind",
    "RunStatus",
    "Settlement",
    "SuspenseAlreadyAssignedError",
    "SuspenseItem",
    "UnknownFindingError",
    "UnknownRunError",
    "UnknownSuspenseItemError",
    "assign_suspense",
    "channel_rules",
    "findings",
    "list_runs",
    "load_config",
    "load_run",
    "reconcile",
    "reconcile_bank",
    "reconcile_bank_file",
    "reconcile_file",
    "release_suspense",
    "resolve_finding",
    "settle_bank_credits",
    "sha256_of",
    "statement_reader",
    "suspense_items",
]
