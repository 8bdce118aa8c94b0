"""24-hour self-service kiosks: signed payments, printable receipts and the daily close.

Invariant: a kiosk payment reaches the core only from a request signed by a registered,
active kiosk (:func:`paygate.devices.verify_request`); the terminal is the authenticated
device, never a field of the body, and the body is read only after its signature verified.
A kiosk's business day is closed once: the same figures again replay the close, other
figures are a :class:`~paygate.channels.errors.KioskCloseConflictError` and change nothing.

Payments do not record how they were paid, so the method travels in the kiosk's own
transaction id: ``cash-…`` or ``card-…``. The id is what the ledger keeps (the channel
transaction id is ``<terminal>:<transaction id>``), so the daily close can split the
ledger's takings by method, and a retry that changed the method would be another
transaction id rather than a silent change of the original. The body's ``method`` must
agree with the prefix.

Account status is not an adapter operation: the HTTP layer serves it. The cash-in-transit
deposit that settles the kiosk clearing account is matched by reconciliation (see
docs/channels/kiosk.md).
The package keeps one concept per module, each importing only the ones before it:
:mod:`~paygate.channels.kiosk.messages` (transaction ids, wire models, the signature check,
mapping to :class:`~paygate.models.PaymentIntent`), :mod:`~paygate.channels.kiosk.receipt`
(the printable receipt), :mod:`~paygate.channels.kiosk.close` (the daily close),
:mod:`~paygate.channels.kiosk.statement` (statement reader, settlement rules) and
:mod:`~paygate.channels.kiosk.adapter` (configuration, context, the adapter). Every public
name is imported from here.
"""

from __future__ import annotations

from paygate.channels.kiosk.adapter import KioskAdapter, KioskConfig, KioskContext
from paygate.channels.kiosk.close import (
    CloseOutcome,
    KioskCloseRecord,
    KioskCloseResult,
    KioskLedger,
    KioskTotals,
    MethodTotal,
    close_result,
)
from paygate.channels.kiosk.messages import (
    KioskCloseRequest,
    KioskMethod,
    KioskPayRequest,
    authenticate_kiosk,
    channel_txn_id,
    is_terminal_id,
    method_of,
    parse_close_request,
    parse_pay_request,
    pay_intent,
    split_channel_txn_id,
)
from paygate.channels.kiosk.receipt import KioskReceipt, kiosk_receipt, receipt_lines
from paygate.channels.kiosk.statement import (
    KIOSK_STATEMENT_COLUMNS,
    kiosk_settlement,
    read_kiosk_statement,
)

__all__ = [
    "KIOSK_STATEMENT_COLUMNS",
    "CloseOutcome",
    "KioskAdapter",
    "KioskCloseRecord",
    "KioskCloseRequest",
    "KioskCloseResult",
    "KioskConfig",
    "KioskContext",
    "KioskLedger",
    "KioskMethod",
    "KioskPayRequest",
    "KioskReceipt",
    "KioskTotals",
    "MethodTotal",
    "authenticate_kiosk",
    "channel_txn_id",
    "close_result",
    "is_terminal_id",
    "kiosk_receipt",
    "kiosk_settlement",
    "method_of",
    "parse_close_request",
    "parse_pay_request",
    "pay_intent",
    "read_kiosk_statement",
    "receipt_lines",
    "split_channel_txn_id",
]
