"""Posting a verified batch file through the core, in chunks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from paygate.channels.bank_agent.adapter import BankAgentAdapter
from paygate.channels.bank_agent.batch import (
    BatchDetail,
    BatchResult,
    FailedDebit,
    RefusedPayment,
    _failed,
)
from paygate.channels.base import StatementSource
from paygate.errors import InvalidInputError, StoreError
from paygate.models import PaymentIntent, PayOutcome

_log = logging.getLogger("paygate.channels.bank_agent")


class BatchSink(Protocol):
    """The part of the core that posts a batch; ``paygate.gateway.Gateway`` implements it."""

    def pay_many(self, intents: Iterable[PaymentIntent]) -> list[PayOutcome]:
        """Post each intent (chunked transactions); one outcome per intent, by index."""
        ...


def post_batch_file(
    adapter: BankAgentAdapter,
    source: StatementSource,
    sink: BatchSink,
    *,
    chunk_size: int | None = None,
) -> BatchResult:
    """Verify a batch file completely, then post its paid details through ``pay_many``.

    A bad file raises :class:`~paygate.errors.ParseError` (with the line) and posts nothing.
    A re-sent file posts nothing again: every serial replays in the core, and the result
    says ``already_posted``. Each chunk commits on its own; if the core fails part-way, what
    was posted stays posted and running the same file again posts only the rest.
    """
    size = chunk_size if chunk_size is not None else adapter.config.batch_chunk
    if size < 1:
        raise InvalidInputError("the chunk size must be at least 1", field="chunk_size")
    posted = replayed = 0
    refused_items: list[RefusedPayment] = []
    failed: list[FailedDebit] = []
    with adapter.verify_batch_file(source) as verified:
        chunk: list[BatchDetail] = []

        def flush() -> None:
            nonlocal posted, replayed
            outcomes = {
                outcome.index: outcome
                for outcome in sink.pay_many([d.intent for d in chunk if d.intent is not None])
            }
            if sorted(outcomes) != list(range(len(chunk))):
                raise StoreError(
                    f"the core answered {len(outcomes)} outcomes for {len(chunk)} payments",
                    field="pay_many",
                )
            for index, detail in enumerate(chunk):
                outcome = outcomes[index]
                if outcome.status == "posted":
                    posted += 1
                elif outcome.status == "replayed":
                    replayed += 1
                else:
                    refused_items.append(
                        RefusedPayment(
                            line_no=detail.line_no,
                            serial_no=detail.serial_no,
                            account_no=detail.account_no,
                            amount=detail.amount,
                            error_code=outcome.error_code or "refused",
                            error=outcome.error or "",
                        )
                    )
            chunk.clear()

        for detail in verified.details():
            if detail.intent is None:
                failed.append(_failed(detail))
                continue
            chunk.append(detail)
            if len(chunk) >= size:
                flush()
        if chunk:
            flush()
        summary = verified.summary
    result = BatchResult(
        file=summary,
        posted=posted,
        replayed=replayed,
        refused=tuple(refused_items),
        failed_debits=tuple(failed),
    )
    _log.info(
        "%s: batch %s (%s, sha256 %s): %d posted, %d replayed, %d refused, %d failed debits",
        adapter.name,
        summary.batch_no,
        summary.source,
        summary.sha256,
        posted,
        replayed,
        len(refused_items),
        len(failed),
    )
    return result
