"""The ``online`` refund route: the gateway's back-end refund (退货, ``txnType`` 04) and the
transaction query (``txnType`` 00), in the UnionPay 5.1.0 scheme that its notifications use.

Requests are form POSTs signed like the gateway's own messages
(:func:`~paygate.channels.online.unionpay_signed_digest`): SHA256withRSA, with the merchant's
signing key, over the lower-case SHA-256 hex digest of every field but ``signature`` sorted
as ``k=v&…``; ``certId`` names the merchant's certificate. Answers are verified against the
configured gateway keys, exactly as notifications are; anything else is not believed.

A refund is asynchronous at the gateway: ``respCode`` 00 means accepted, and the query tells
when it is done (``origRespCode``). The gateway de-duplicates on ``orderId`` with
``txnTime``: both are fixed by the refund (its id and its request time), so a repeated request
is the same refund.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from paygate.channels.online import NUMERIC_CURRENCIES, unionpay_signed_digest
from paygate.channels.signing import (
    VerifyingKey,
    decode_signature,
    sign_sha256_rsa,
    verify_sha256_rsa,
)
from paygate.channels.wire import parse_form
from paygate.errors import InvalidInputError, PaygateError
from paygate.refunds.route import (
    RefundOutcome,
    RefundRequest,
    RefundRouteUnavailable,
    RefundState,
)
from paygate.refunds.routes.common import HttpRoute, beijing_time

__all__ = ["BACK_PATH", "QUERY_PATH", "OnlineRefundRoute", "gateway_order_id"]

_log = logging.getLogger("paygate.refunds.routes")

BACK_PATH: Final = "/gateway/api/backTransReq.do"
QUERY_PATH: Final = "/gateway/api/queryTrans.do"

_DONE: Final = frozenset({"00", "A6"})
_UNDECIDED: Final = frozenset({"03", "04", "05"})
"""Timed out, state unknown, accepted: the gateway says to ask again."""
_NOT_ASKED: Final = frozenset({"02", "06", "10", "11", "13", "31", "32", "37"})
"""Not open, busy, a malformed or unverified request, the merchant's state or rights, too
frequent: nothing was decided about the refund."""
_ORDER_ID = re.compile(r"^[0-9A-Za-z]{8,40}$")


def gateway_order_id(refund_id: str) -> str:
    """The ``orderId`` a refund goes by: the refund id when it is 8–40 letters and digits (the
    gateway's rule), else ``R`` and 31 hex digits of its SHA-256 — fixed, so still idempotent."""
    if _ORDER_ID.match(refund_id):
        return refund_id
    return "R" + hashlib.sha256(refund_id.encode("utf-8")).hexdigest()[:31]


class OnlineRefundRoute(HttpRoute):
    """Refunds through the online gateway, against payments of the ``online`` channel (whose
    ``channel_txn_id`` is the gateway's ``queryId``, sent as ``origQryId``)."""

    def __init__(
        self,
        *,
        merchant_id: str,
        cert_id: str,
        private_key: RSAPrivateKey,
        gateway_keys: Sequence[VerifyingKey],
        back_url: str,
        base_url: str,
        timeout: float = 10.0,
        name: str = "online",
        channel: str | None = "online",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, transport=transport)
        if not gateway_keys:
            raise ValueError("the online route needs the gateway's key")
        self.name = name
        self.channel = channel
        self._merchant_id = merchant_id
        self._cert_id = cert_id
        self._private_key = private_key
        self._gateway_keys = tuple(gateway_keys)
        self._back_url = back_url

    def __repr__(self) -> str:
        return f"OnlineRefundRoute(name={self.name!r}, merchant_id={self._merchant_id!r})"

    def submit(self, request: RefundRequest) -> RefundOutcome:
        """Send the refund (``txnType`` 04); accepted is pending until the query says done."""
        if not request.original_channel_txn_id:
            raise InvalidInputError(
                "an online refund names the payment (its queryId)", field="original_channel_txn_id"
            )
        currency = NUMERIC_CURRENCIES.get(request.amount.currency)
        if currency is None:
            raise InvalidInputError(
                f"the gateway has no code for {request.amount.currency}", field="amount"
            )
        fields = self._common(request, txn_type="04", txn_sub_type="00", biz_type="000201")
        fields |= {
            "channelType": "07",
            "origQryId": request.original_channel_txn_id,
            "txnAmt": str(request.amount.minor),
            "currencyCode": currency,
            "backUrl": self._back_url,
        }
        answer = self._post(BACK_PATH, fields, request.refund_id)
        code = answer.get("respCode", "")
        if code in _DONE or code in _UNDECIDED or code == "12":
            # 12, a repeated transaction: this refund was sent before; the query says how it went.
            _log.info("%s: refund %s accepted (%s)", self.name, request.refund_id, code)
            return RefundOutcome(
                RefundState.PENDING, provider_reference=answer.get("queryId") or None
            )
        return self._refused(code, answer.get("respMsg"), request.refund_id)

    def query(self, request: RefundRequest) -> RefundOutcome:
        """Query the refund (``txnType`` 00); ``origRespCode`` is its state."""
        fields = self._common(request, txn_type="00", txn_sub_type="00", biz_type="000000")
        answer = self._post(QUERY_PATH, fields, request.refund_id)
        code = answer.get("respCode", "")
        if code == "34":  # no such transaction: the gateway never took this refund
            return RefundOutcome(
                RefundState.FAILED, failure_code="34", failure_message=answer.get("respMsg")
            )
        if code not in _DONE:
            raise self._not_asked(code, request.refund_id)
        reference = answer.get("queryId") or None
        original = answer.get("origRespCode", "")
        if original in _DONE:
            _log.info("%s: refund %s succeeded", self.name, request.refund_id)
            return RefundOutcome(RefundState.SUCCEEDED, provider_reference=reference)
        if original in _UNDECIDED or not original:
            return RefundOutcome(RefundState.PENDING, provider_reference=reference)
        _log.info("%s: refund %s failed: %s", self.name, request.refund_id, original)
        return RefundOutcome(
            RefundState.FAILED,
            provider_reference=reference,
            failure_code=original,
            failure_message=answer.get("origRespMsg") or None,
        )

    def _refused(self, code: str, message: str | None, refund_id: str) -> RefundOutcome:
        if code in _NOT_ASKED or not code:
            raise self._not_asked(code, refund_id)
        _log.info("%s: refund %s refused: %s", self.name, refund_id, code)
        return RefundOutcome(RefundState.FAILED, failure_code=code, failure_message=message or None)

    def _not_asked(self, code: str, refund_id: str) -> RefundRouteUnavailable:
        _log.warning("%s: refund %s: the gateway answered respCode %s", self.name, refund_id, code)
        return RefundRouteUnavailable(f"{self.name}: the gateway answered respCode {code}")

    def _common(
        self, request: RefundRequest, *, txn_type: str, txn_sub_type: str, biz_type: str
    ) -> dict[str, str]:
        return {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "certId": self._cert_id,
            "txnType": txn_type,
            "txnSubType": txn_sub_type,
            "bizType": biz_type,
            "accessType": "0",
            "merId": self._merchant_id,
            "orderId": gateway_order_id(request.refund_id),
            "txnTime": beijing_time(request.requested_at, "%Y%m%d%H%M%S"),
        }

    def _post(self, path: str, fields: dict[str, str], refund_id: str) -> dict[str, str]:
        fields["signature"] = sign_sha256_rsa(
            self._private_key, unionpay_signed_digest(fields, "utf-8")
        )
        response = self._send(
            "POST",
            path,
            content=urlencode(fields).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
            refund_id=refund_id,
        )
        try:
            answer, charset = parse_form(
                response.content, source=self.name, charset_field="encoding"
            )
            signature = decode_signature(answer.get("signature"), field="signature")
            verify_sha256_rsa(
                self._gateway_keys,
                unionpay_signed_digest(answer, charset),
                signature,
                field="signature",
            )
        except PaygateError as exc:
            raise self._unbelieved(refund_id, f"HTTP {response.status_code}: {exc}") from None
        if answer.get("merId") != self._merchant_id or answer.get("orderId") != fields["orderId"]:
            raise self._unbelieved(refund_id, "the answer is for another merchant or order")
        return answer
