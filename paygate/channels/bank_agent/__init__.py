"""Bank agent collection (金融机构代收/代扣): real-time counter payments and daily batch files.

Invariant: a bank's real-time message reaches the core only after its signature verified
with the method and key configured for that bank (RSA or HMAC, never chosen by the message);
a batch file posts nothing until every one of its lines has been read and its record counts
and totals agree with what its header and trailer state; and every payment's channel
transaction id is the bank's own serial (behind the bank's code), so a re-sent message or a
re-sent file posts nothing twice.

Two paths carry the same money:

* **Counter payments, in real time.** The bank's counter (or its e-banking) takes the money
  and sends a signed ``pay`` message; if it gets no answer it sends a ``reversal`` (冲正)
  naming the original serial. :meth:`BankAgentAdapter.handle_notify` takes both;
  :meth:`BankAgentAdapter.handle_reversal` takes only reversals.
* **The daily batch file.** Direct-debit results and the day's counter collections: a header
  (batch number, date, count, total), one detail per debit (account, amount, serial, result
  code), a trailer. Each bank agrees its own layout, so the layout is configuration
  (:class:`DelimitedLayout`, :class:`FixedWidthLayout`). :meth:`BankAgentAdapter.verify_batch_file`
  reads the file once, checking everything and keeping an exact private copy;
  :func:`post_batch_file` then posts the verified copy in chunks through ``pay_many``.

The package keeps one concept per module, each importing only the ones before it:
:mod:`~paygate.channels.bank_agent.realtime` (wire model, signature check, mapping to
:class:`~paygate.models.PaymentIntent`), :mod:`~paygate.channels.bank_agent.batch` (batch file
layouts and the reader), :mod:`~paygate.channels.bank_agent.statement` (statement reader,
settlement rules), :mod:`~paygate.channels.bank_agent.adapter` (configuration, the adapter) and
:mod:`~paygate.channels.bank_agent.posting` (posting a verified batch file). Every public name
is imported from here.
"""

from __future__ import annotations

from paygate.channels.bank_agent.adapter import BankAgentAdapter, BankAgentConfig
from paygate.channels.bank_agent.batch import (
    DETAIL_FIELDS,
    HEADER_FIELDS,
    TRAILER_FIELDS,
    BatchDetail,
    BatchFileLayout,
    BatchFileSummary,
    BatchResult,
    DelimitedLayout,
    FailedDebit,
    FixedWidthLayout,
    RefusedPayment,
    VerifiedBatchFile,
)
from paygate.channels.bank_agent.posting import BatchSink, post_batch_file
from paygate.channels.bank_agent.realtime import (
    MIN_HMAC_KEY_BYTES,
    SIGN_TYPES,
    BankMessageType,
    BankNotification,
    SignMethod,
    bank_signing_string,
    bank_txn_id,
    counter_intent,
    verify_bank_notify,
)
from paygate.channels.bank_agent.statement import (
    BANK_STATEMENT_COLUMNS,
    bank_agent_settlement,
    read_bank_statement,
)

__all__ = [
    "BANK_STATEMENT_COLUMNS",
    "DETAIL_FIELDS",
    "HEADER_FIELDS",
    "MIN_HMAC_KEY_BYTES",
    "SIGN_TYPES",
    "TRAILER_FIELDS",
    "BankAgentAdapter",
    "BankAgentConfig",
    "BankMessageType",
    "BankNotification",
    "BatchDetail",
    "BatchFileLayout",
    "BatchFileSummary",
    "BatchResult",
    "BatchSink",
    "DelimitedLayout",
    "FailedDebit",
    "FixedWidthLayout",
    "RefusedPayment",
    "SignMethod",
    "VerifiedBatchFile",
    "bank_agent_settlement",
    "bank_signing_string",
    "bank_txn_id",
    "counter_intent",
    "post_batch_file",
    "read_bank_statement",
    "verify_bank_notify",
]
