"""Voucher batches after issue: activation (the sale, with its ledger entry), freezing,
reports. Needs no PIN key."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from paygate.errors import InvalidInputError, InvalidStateError
from paygate.ledger import AccountKind, EntryDraft, PostingDraft
from paygate.money import Money
from paygate.store.engine import Tx
from paygate.vouchers.errors import (
    UnknownBatchError,
    UnknownVoucherError,
    VoucherExpiredError,
    VoucherFrozenError,
)
from paygate.vouchers.records import (
    ActivatedBatch,
    BatchReport,
    FreezeResult,
    RedemptionPolicy,
    VoucherReport,
    VoucherStatus,
    _check_identifier,
    _check_text,
    mark_batch_activated,
    mark_batch_frozen,
    move_cards,
)
from paygate.vouchers.serials import check_serial

if TYPE_CHECKING:
    from paygate.gateway import Gateway


_log = logging.getLogger("paygate.vouchers")


# ── batches: activation, freezing, reports (no PIN key needed) ──────────────────────────


@dataclass(frozen=True, slots=True)
class _Batch:
    id: int
    batch_no: str
    face_value: int
    currency: str
    card_count: int
    expires_on: date
    status: str
    retailer: str | None
    activated_at: datetime | None


_BATCH_COLUMNS: Final = (
    "id, batch_no, face_value, currency, card_count, expires_on, status, retailer, activated_at"
)


class VoucherBatches:
    """The life of voucher batches that needs no PIN: activation, freezing and reports.

    Finance and operations use this; only :class:`VoucherService` holds the PIN key.
    """

    def __init__(self, gateway: Gateway, *, policy: RedemptionPolicy | None = None) -> None:
        self.gateway = gateway
        self.policy = policy if policy is not None else RedemptionPolicy()
        self._zone = ZoneInfo(gateway.settings.timezone)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def _today(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    @staticmethod
    def _batch(tx: Tx, row: tuple[Any, ...]) -> _Batch:
        return _Batch(
            id=int(row[0]),
            batch_no=str(row[1]),
            face_value=int(row[2]),
            currency=str(row[3]),
            card_count=int(row[4]),
            expires_on=tx.read_day(row[5]),
            status=str(row[6]),
            retailer=None if row[7] is None else str(row[7]),
            activated_at=None if row[8] is None else tx.read_ts(row[8]),
        )

    def _lock_batch(self, tx: Tx, batch_no: str) -> _Batch:
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        row = tx.one(
            f"SELECT {_BATCH_COLUMNS} FROM voucher_batches WHERE batch_no = :no{lock}",  # noqa: S608
            {"no": batch_no},
        )
        if row is None:
            raise UnknownBatchError(f"no voucher batch {batch_no}", field="batch_no")
        return self._batch(tx, row)

    # -- activation ---------------------------------------------------------------------

    def activate(self, batch_no: str, *, retailer: str) -> ActivatedBatch:
        """Sell batch ``batch_no`` to ``retailer``: its unfrozen cards become redeemable.

        Posts one entry in the same transaction: debit ``clearing:voucher_sales:<CUR>``,
        credit ``voucher_liability:<CUR>``, for the face value of the cards activated.
        Activating again for the same retailer returns the activation (``created=False``).
        """
        _check_identifier(batch_no, "batch_no")
        _check_text(retailer, "retailer")
        now = self.gateway.clock.now()

        def work(tx: Tx) -> ActivatedBatch:
            batch = self._lock_batch(tx, batch_no)
            face = Money(batch.face_value, batch.currency)
            if batch.activated_at is not None:
                if batch.retailer != retailer:
                    raise InvalidStateError(
                        f"batch {batch_no} was activated for another retailer", field="retailer"
                    )
                sold = int(
                    tx.scalar(
                        "SELECT COUNT(*) FROM vouchers WHERE batch_id = :b AND status <> :unsold",
                        {"b": batch.id, "unsold": VoucherStatus.FROZEN_UNSOLD.value},
                    )
                )
                return ActivatedBatch(
                    batch_no=batch_no,
                    retailer=retailer,
                    cards=sold,
                    amount=face * sold,
                    activated_at=batch.activated_at,
                    created=False,
                )
            if batch.status == "frozen":
                raise VoucherFrozenError(f"batch {batch_no} is frozen", field="batch_no")
            if self._today(now) > batch.expires_on:
                raise VoucherExpiredError(
                    f"batch {batch_no} expired on {batch.expires_on}", field="batch_no"
                )
            cards = move_cards(tx, batch.id, VoucherStatus.ISSUED, VoucherStatus.ACTIVATED)
            if cards <= 0:
                raise InvalidStateError(
                    f"batch {batch_no} has no card left to sell: all are frozen", field="batch_no"
                )
            amount = face * cards
            payments = self.gateway.payments
            cur = batch.currency
            clearing = payments.ledger_account(
                tx, f"clearing:voucher_sales:{cur}", AccountKind.CHANNEL_CLEARING, cur
            )
            liability = payments.ledger_account(
                tx, f"voucher_liability:{cur}", AccountKind.VOUCHER_LIABILITY, cur
            )
            payments.post(
                tx,
                [
                    EntryDraft(
                        kind="voucher_sale",
                        reference=f"voucher_sale:{batch_no}",
                        memo=f"voucher batch {batch_no}: {cards} cards sold to {retailer}",
                        business_date=self._today(now),
                        posted_at=now,
                        postings=(
                            PostingDraft(clearing, amount.minor, cur),
                            PostingDraft(liability, -amount.minor, cur),
                        ),
                        shard_key=batch.id,
                    )
                ],
            )
            mark_batch_activated(tx, batch.id, retailer, now)
            return ActivatedBatch(
                batch_no=batch_no,
                retailer=retailer,
                cards=cards,
                amount=amount,
                activated_at=now,
                created=True,
            )

        activated = self.gateway.store.run(work)
        if activated.created:
            _log.info(
                "voucher batch %s activated: %d cards, %s, retailer %r",
                batch_no,
                activated.cards,
                activated.amount,
                retailer,
            )
        return activated

    # -- freezing -----------------------------------------------------------------------

    def freeze_batch(self, batch_no: str, *, reason: str) -> FreezeResult:
        """Freeze every unredeemed card of batch ``batch_no`` (a lost batch)."""
        _check_identifier(batch_no, "batch_no")
        _check_text(reason, "reason")
        now = self.gateway.clock.now()

        def work(tx: Tx) -> FreezeResult:
            batch = self._lock_batch(tx, batch_no)
            result = self._freeze(tx, batch)
            mark_batch_frozen(tx, batch.id, now)
            return result

        result = self.gateway.store.run(work)
        _log.warning(
            "voucher batch %s frozen (%d sold, %d unsold cards): %r",
            batch_no,
            result.frozen,
            result.frozen_unsold,
            reason,
        )
        return result

    def freeze_serials(self, first: str, last: str, *, reason: str) -> FreezeResult:
        """Freeze the unredeemed cards from serial ``first`` to ``last`` (one batch)."""
        first = check_serial(first, field="first")
        last = check_serial(last, field="last")
        _check_text(reason, "reason")
        if first > last:
            raise InvalidInputError("the range's first serial is after its last", field="first")

        def work(tx: Tx) -> FreezeResult:
            ends = tx.all(
                "SELECT v.serial, b.batch_no FROM vouchers v "
                "JOIN voucher_batches b ON b.id = v.batch_id WHERE v.serial IN (:f, :l)",
                {"f": first, "l": last},
            )
            found = {str(serial): str(batch_no) for serial, batch_no in ends}
            for serial, field in ((first, "first"), (last, "last")):
                if serial not in found:
                    raise UnknownVoucherError(f"no card {serial}", field=field)
            if found[first] != found[last]:
                raise InvalidInputError(
                    f"serials {first} and {last} are in different batches; freeze each batch's "
                    "range on its own",
                    field="last",
                )
            # The batch first, as activation and batch freezes do: one lock order, no deadlock.
            batch = self._lock_batch(tx, found[first])
            return self._freeze(tx, batch, (first, last))

        result = self.gateway.store.run(work)
        _log.warning(
            "vouchers %s-%s of batch %s frozen (%d sold, %d unsold cards): %r",
            first,
            last,
            result.batch_no,
            result.frozen,
            result.frozen_unsold,
            reason,
        )
        return result

    @staticmethod
    def _freeze(tx: Tx, batch: _Batch, serials: tuple[str, str] | None = None) -> FreezeResult:
        # Redeemed cards are left alone: their money is already the customer's. A redemption
        # in flight holds the card's row; this UPDATE waits for it and then skips the card.
        counts = []
        for before, after in (
            (VoucherStatus.ACTIVATED, VoucherStatus.FROZEN),
            (VoucherStatus.ISSUED, VoucherStatus.FROZEN_UNSOLD),
        ):
            counts.append(move_cards(tx, batch.id, before, after, serials=serials))
        sold, unsold = (max(0, int(c)) for c in counts)
        return FreezeResult(
            batch_no=batch.batch_no,
            frozen=sold,
            frozen_unsold=unsold,
            frozen_value=Money(batch.face_value * sold, batch.currency),
        )

    # -- report -------------------------------------------------------------------------

    def report(self, as_of: date | None = None) -> VoucherReport:
        """Per batch: cards by state, the outstanding liability (activated, not redeemed,
        not expired), the expired-but-unredeemed value and the frozen liability.

        Card states are as they stand now; expiry is judged on ``as_of`` (default: today in
        the utility's time zone). The three amounts add up to the voucher liability.
        """
        day = as_of if as_of is not None else self._today(self.gateway.clock.now())
        if not isinstance(day, date) or isinstance(day, datetime):
            raise InvalidInputError("a date", field="as_of")
        max_wrong = self.policy.max_wrong_pins

        def work(tx: Tx) -> list[tuple[_Batch, dict[str, int], int]]:
            batches = {
                int(row[0]): self._batch(tx, row)
                for row in tx.all(
                    f"SELECT {_BATCH_COLUMNS} FROM voucher_batches ORDER BY batch_no"  # noqa: S608
                )
            }
            counts: dict[int, dict[str, int]] = {b: {} for b in batches}
            locked: dict[int, int] = dict.fromkeys(batches, 0)
            for batch_id, status, count, lock_count in tx.all(
                "SELECT batch_id, status, COUNT(*), "
                "SUM(CASE WHEN failed_attempts >= :max THEN 1 ELSE 0 END) "
                "FROM vouchers GROUP BY batch_id, status",
                {"max": max_wrong},
            ):
                counts[int(batch_id)][str(status)] = int(count)
                if status == VoucherStatus.ACTIVATED.value:
                    locked[int(batch_id)] = int(lock_count or 0)
            return [(b, counts[b.id], locked[b.id]) for b in batches.values()]

        rows = self.gateway.store.run(work, write=False)
        return VoucherReport(
            as_of=day,
            batches=tuple(self._batch_report(b, c, lk, day) for b, c, lk in rows),
        )

    @staticmethod
    def _batch_report(batch: _Batch, counts: dict[str, int], locked: int, day: date) -> BatchReport:
        face = Money(batch.face_value, batch.currency)
        issued = counts.get(VoucherStatus.ISSUED.value, 0)
        activated = counts.get(VoucherStatus.ACTIVATED.value, 0)
        redeemed = counts.get(VoucherStatus.REDEEMED.value, 0)
        frozen_sold = counts.get(VoucherStatus.FROZEN.value, 0)
        frozen_unsold = counts.get(VoucherStatus.FROZEN_UNSOLD.value, 0)
        expired_sold = expired_unsold = 0
        if day > batch.expires_on:
            expired_sold, expired_unsold = activated, issued
            activated = issued = locked = 0
        return BatchReport(
            batch_no=batch.batch_no,
            status=batch.status,
            retailer=batch.retailer,
            face_value=face,
            expires_on=batch.expires_on,
            cards=batch.card_count,
            issued=issued,
            activated=activated,
            redeemed=redeemed,
            expired=expired_sold + expired_unsold,
            frozen=frozen_sold + frozen_unsold,
            locked=locked,
            outstanding=face * activated,
            expired_unredeemed=face * expired_sold,
            frozen_liability=face * frozen_sold,
        )
