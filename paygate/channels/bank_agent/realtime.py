"""The bank agent's real-time counter payments: the wire model, the signature check, the
mapping to :class:`~paygate.models.PaymentIntent`.

Invariant: a message is believed only after its signature verified with the method and key
configured for that bank (RSA or HMAC, never chosen by the message).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paygate.channels.errors import MissingAccountError, SignatureError
from paygate.channels.signing import (
    VerifyingKey,
    canonical_string,
    decode_signature,
    verify_sha256_rsa,
)
from paygate.channels.wire import (
    first_validation_error,
    make_intent,
    parse_form,
    parse_local_time,
    shown,
)
from paygate.errors import ConfigurationError, ParseError
from paygate.models import PaymentIntent
from paygate.money import Money

BEIJING: Final = ZoneInfo("Asia/Shanghai")
_FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"

MIN_HMAC_KEY_BYTES: Final = 32
"""A shared key shorter than SHA-256's output would be the weakest part of the check."""

_PRINTABLE: Final = r"^[\x21-\x7e]+$"
_FEN: Final = r"^[0-9]{1,12}$"


# ── wire model ───────────────────────────────────────────────────────────────────────────


class BankMessageType(StrEnum):
    """What a bank's real-time message reports."""

    PAY = "pay"
    """Money taken at the counter for an account."""
    REVERSAL = "reversal"
    """冲正: the bank undoes a payment it could not complete (no answer, or cancelled)."""


class BankNotification(BaseModel):
    """A bank's real-time message (the fields paygate reads), after its signature verified.

    ``amount`` is integer fen; ``txn_time`` is ``YYYYMMDDhhmmss`` Beijing time. A payment
    needs ``account_no`` and ``amount``; a reversal needs ``orig_serial_no``.
    """

    # Banks add fields (teller, branch, channel code); unknown ones are ignored, known checked.
    model_config = ConfigDict(frozen=True, extra="ignore")

    msg_type: BankMessageType
    merchant_id: str = Field(min_length=1, max_length=32)
    serial_no: str = Field(pattern=_PRINTABLE, max_length=48)
    orig_serial_no: str | None = Field(default=None, pattern=_PRINTABLE, max_length=48)
    account_no: str | None = None
    amount: str | None = Field(default=None, pattern=_FEN)
    txn_time: str = Field(pattern=r"^[0-9]{14}$")


# ── signature check ──────────────────────────────────────────────────────────────────────


class SignMethod(StrEnum):
    """How a bank signs its real-time messages; agreed per bank, configured, never negotiated."""

    RSA = "rsa"
    """SHA256withRSA (PKCS#1 v1.5) with the bank's key, base64; ``sign_type=RSA2``."""
    HMAC = "hmac"
    """HMAC-SHA256 with a shared key, lower-case hex; ``sign_type=HMAC-SHA256``."""


SIGN_TYPES: Final[Mapping[SignMethod, str]] = {
    SignMethod.RSA: "RSA2",
    SignMethod.HMAC: "HMAC-SHA256",
}
"""The ``sign_type`` a message must carry under each method."""


def bank_signing_string(params: Mapping[str, str]) -> str:
    """What the bank signs: every field except ``sign`` (``sign_type`` and empty fields
    included), sorted by name, as ``k=v`` joined by ``&``, values as received."""
    return canonical_string(params, exclude=frozenset({"sign"}), drop_empty=False)


def verify_bank_notify(
    body: bytes,
    *,
    method: SignMethod,
    rsa_keys: tuple[VerifyingKey, ...] = (),
    hmac_key: bytes | None = None,
    default_charset: str = "utf-8",
    source: str,
) -> BankNotification:
    """Read a form-encoded bank message and verify it by the configured ``method``.

    The message's ``sign_type`` must name that method; a message cannot downgrade an RSA
    bank to HMAC (or the reverse) by saying so.
    """
    params, charset = parse_form(
        body, source=source, charset_field="charset", default_charset=default_charset
    )
    expected_type = SIGN_TYPES[method]
    if params.get("sign_type") != expected_type:
        raise SignatureError(
            f"sign_type {shown(params.get('sign_type', ''))} is not accepted; "
            f"{expected_type} is required",
            field="sign_type",
        )
    message = bank_signing_string(params).encode(charset)
    if method is SignMethod.RSA:
        signature = decode_signature(params.get("sign"), field="sign")
        verify_sha256_rsa(rsa_keys, message, signature, field="sign")
    else:
        if hmac_key is None:
            raise ConfigurationError("no shared key for an HMAC bank", field="shared_key")
        given = params.get("sign")
        if not given:
            raise SignatureError("signature missing", field="sign")
        expected = hmac.new(hmac_key, message, hashlib.sha256).hexdigest()
        # Bytes on both sides: the given value is attacker-controlled and may be non-ASCII.
        if not hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8")):
            raise SignatureError("signature does not verify", field="sign")
    present = {name: value for name, value in params.items() if value != ""}
    try:
        return BankNotification.model_validate(present)
    except ValidationError as exc:
        raise first_validation_error(exc, source=source) from None


# ── mapping to PaymentIntent ─────────────────────────────────────────────────────────────


def bank_txn_id(bank_code: str, serial_no: str) -> str:
    """The channel transaction id of a bank's serial: ``bank_code:serial``.

    A utility collects through several banks, each numbering its own serials; the code keeps
    two banks' serials apart, and the same serial from the same bank is the same payment
    whether it arrives in real time or in the daily file.
    """
    return f"{bank_code}:{serial_no}"


def counter_intent(
    notification: BankNotification, *, channel: str, bank_code: str, currency: str
) -> PaymentIntent:
    """The payment a verified ``pay`` message reports."""
    n = notification
    if not n.account_no:
        # Verified: the counter took the money, so it is held for suspense, not refused.
        raise MissingAccountError("the payment names no account", field="account_no")
    if n.amount is None:
        raise ParseError("a payment needs amount", source=channel, field="amount")
    return make_intent(
        channel=channel,
        channel_txn_id=bank_txn_id(bank_code, n.serial_no),
        account_no=n.account_no,
        amount=Money(int(n.amount), currency),
        paid_at=parse_local_time(
            n.txn_time, "%Y%m%d%H%M%S", BEIJING, source=channel, field="txn_time"
        ),
        names={"channel_txn_id": "serial_no", "amount": "amount", "paid_at": "txn_time"},
    )
