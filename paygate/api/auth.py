"""Device authentication of the terminal routes, and a kiosk payment with its nonce in one commit.

Invariants:

* A terminal's request is accepted only as :func:`paygate.devices.verify_request` accepts it —
  a registered, active device (read from the database on every request, so a revocation
  refuses the very next one), an Ed25519 signature over the canonical request, a timestamp
  inside the window, a nonce never seen — and a payment only as the kiosk adapter's own
  verification and mapping accept it (the adapter calls ``verify_request``). There is one
  verification path; this module only decides which transaction it runs in.
* The device row is read and the nonce recorded in one transaction, which commits only when
  every check passed: a forged or replayed request leaves nothing behind. The nonce table is
  shared by every worker, so a replay sent to another worker is refused there too.
* A kiosk payment's nonce commits together with the payment (through
  :meth:`~paygate.group_commit.PaymentGroup.pay_prepared`: in one transaction with the
  payments of the requests arriving at the same moment, whose ``pay_within`` counts it toward
  sealing), and with the refusal of a payment the core refuses (an unknown account, say): a
  signed request, once answered, is never accepted again in its window, even if what made it
  fail has changed since. A request whose own checks raise rolls back alone.
* **Who, before what.** A request's signature is verified before anything it says is judged:
  its media type, its Idempotency-Key, its path parameters and its body are checked only once
  the caller is known, so an unauthenticated caller learns nothing but 401 (413, for a body
  over the limit, is the one refusal that comes first: the signed bytes must be read, within
  bounds, before they can be verified).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from paygate.api.problems import IdempotencyKeyError, UnsupportedMediaTypeError
from paygate.channels.kiosk import (
    KioskAdapter,
    KioskContext,
    KioskPayRequest,
    parse_pay_request,
    pay_intent,
)
from paygate.channels.stores import SqlKioskLedger, SqlNonceStore
from paygate.channels.wire import parse_json_object, shown
from paygate.devices import Device, DeviceRegistry, verify_request
from paygate.errors import ConfigurationError, PaygateError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, Receipt
from paygate.store.engine import Store, Tx

__all__ = [
    "KioskPayment",
    "authenticate",
    "idempotency_key",
    "post_kiosk_payment",
    "require_json",
]

_JSON_MEDIA_TYPE: Final = "application/json"
_IDEMPOTENCY_KEY: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")

KioskPayment = tuple[Receipt, PaymentIntent, KioskPayRequest, bool]
"""A posted (or replayed) kiosk payment: the core's receipt, the intent, the request, and
whether the terminal had already closed the payment's business date (read in the payment's
transaction)."""


def require_json(headers: Mapping[str, str]) -> None:
    """Refuse (415) a body not declared ``application/json``, or declared in another charset.

    A JSON route reads UTF-8 JSON and nothing else: a form or a text body that happened to
    parse would be a message its sender did not mean to send in this form.
    """
    declared = headers.get("content-type", "")
    media_type, _, parameters = declared.partition(";")
    charsets = [
        value.strip().strip('"').lower()
        for name, _, value in (part.partition("=") for part in parameters.split(";"))
        if name.strip().lower() == "charset"
    ]
    if media_type.strip().lower() != _JSON_MEDIA_TYPE or any(
        charset not in ("utf-8", "utf8") for charset in charsets
    ):
        got = shown(declared) if declared else "none"
        raise UnsupportedMediaTypeError(
            f"the body must be {_JSON_MEDIA_TYPE} (UTF-8); Content-Type is {got}",
            field="Content-Type",
        )


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The Idempotency-Key header, checked for its form, or None when there is none."""
    key = headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise IdempotencyKeyError(
            "an Idempotency-Key is 1-64 of A-Z a-z 0-9 . _ : -", field="Idempotency-Key"
        )
    return key


class _Devices:
    """The device directory, read inside the request's transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def get(self, device_id: str) -> Device | None:
        return DeviceRegistry.read(self._tx, device_id)


class _Nonces:
    """The shared nonce store, written inside the request's transaction."""

    def __init__(self, tx: Tx, nonces: SqlNonceStore) -> None:
        self._tx = tx
        self._nonces = nonces

    def add(self, key: str, *, expires_at: datetime, now: datetime) -> bool:
        return self._nonces.add_within(self._tx, key, expires_at=expires_at, now=now)


def authenticate(
    store: Store,
    nonces: SqlNonceStore,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    window: timedelta,
) -> Device:
    """The device that signed this request, or the refusal (an AuthenticationError)."""

    def work(tx: Tx) -> Device:
        if tx.dialect == "postgresql":
            # The transaction writes only a nonce, so its commit need not wait for the disk:
            # the WAL is one sequence, and whatever this request commits next (and waits for)
            # makes the nonce durable with it. Only a request that writes nothing durable
            # after it (a look-up) could, were PostgreSQL to crash in that instant, have its
            # nonce forgotten and be replayed once: it would repeat a read.
            tx.execute("SET LOCAL synchronous_commit TO OFF")
        return verify_request(
            _Devices(tx),
            _Nonces(tx, nonces),
            method,
            target,
            headers,
            body,
            now=now,
            window=window,
        )

    device = store.run(work)
    nonces.purge_if_due(now)
    return device


def post_kiosk_payment(
    gateway: Gateway,
    nonces: SqlNonceStore,
    kiosk: KioskAdapter,
    body: bytes,
    headers: Mapping[str, str],
) -> KioskPayment:
    """Verify, check, map and post a kiosk's signed payment: one transaction, nonce and payment.

    The kiosk adapter (the configured one, given for this request a context whose device
    directory and nonce store work inside the transaction) verifies the signature; then the
    media type, the Idempotency-Key (required, and the payment's ``txn_id``) and the body are
    checked, in that order, and the adapter's mapping makes the intent; the core posts it
    with :meth:`~paygate.group_commit.PaymentGroup.pay_prepared`, in one transaction with the
    payments other requests make at the same moment (group commit), as :meth:`Gateway.pay`
    does. A refusal raises its PaygateError.
    """
    context = kiosk.context
    ledger = context.ledger if isinstance(context, KioskContext) else None
    if ledger is None:
        raise ConfigurationError("the kiosk adapter has no KioskContext ledger", field="context")
    clock = context.clock

    made: list[tuple[PaymentIntent, KioskPayRequest]] = []

    def prepare(tx: Tx) -> PaymentIntent | PaygateError:
        made.clear()  # a group re-run prepares again, in its new transaction
        bound = KioskAdapter(
            kiosk.config,
            KioskContext(
                clock=clock, nonces=_Nonces(tx, nonces), devices=_Devices(tx), ledger=ledger
            ),
        )
        try:
            device = bound.authenticate(kiosk.config.pay_path, body, headers)
            require_json(headers)
            key = idempotency_key(headers)
            if key is None:
                raise IdempotencyKeyError(
                    "the Idempotency-Key header is required", field="Idempotency-Key"
                )
            # The strict reader first: a key given twice (which a lenient reader would settle
            # by taking the last) or nesting without end is refused, never posted.
            parse_json_object(body, source=kiosk.name)
            sent = parse_pay_request(body, source=kiosk.name)
            if key != sent.txn_id:
                # The key is what a client retries with; the transaction id is what the ledger
                # keeps. One and the same, or a retry under one key could post a second payment.
                raise IdempotencyKeyError(
                    "the Idempotency-Key must be the payment's txn_id", field="Idempotency-Key"
                )
            intent = pay_intent(
                sent,
                device.device_id,
                channel=kiosk.name,
                currency=kiosk.config.currency,
                now=clock.now(),
                skew=kiosk.config.timestamp_window,
            )
        except PaygateError as refusal:
            # Returned, not raised, so that the transaction commits the nonce of a request
            # whose signature verified: refused for what it says, it is never accepted later,
            # whatever has changed since (a paid_at no longer ahead of the clock, say).
            return refusal
        made.append((intent, sent))
        return intent

    closed: list[bool] = []

    def after(tx: Tx, receipt: Receipt) -> None:
        # Read in the payment's own transaction rather than in one more of its own.
        closed.clear()
        terminal = made[0][0].terminal_id
        assert terminal is not None
        found = SqlKioskLedger.close_of_within(tx, terminal, receipt.business_date)
        closed.append(found is not None)

    # Posted with the payments other requests make at the same moment (group commit); a
    # refusal by the core wrote nothing but the nonce, which commits with it.
    try:
        receipt = gateway.payment_group.pay_prepared(prepare, after)
    except PaygateError:
        nonces.purge_if_due(clock.now())
        raise
    nonces.purge_if_due(clock.now())
    [(intent, sent)] = made
    return receipt, intent, sent, closed == [True]
