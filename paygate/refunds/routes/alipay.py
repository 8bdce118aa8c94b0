"""The ``alipay`` refund route: ``alipay.trade.refund`` through Alipay's OpenAPI gateway, and
``alipay.trade.fastpay.refund.query`` to learn where a refund stands.

Requests are form POSTs of the common parameters (``app_id``, ``method``, ``format``,
``charset``, ``sign_type`` RSA2, ``timestamp``, ``version`` 1.0) and ``biz_content``, signed
with the app's private key over the sorted ``k=v&…`` string (the same string
:func:`~paygate.channels.mobile.alipay.alipay_signing_string` verifies on notifications).
Alipay signs each answer over the exact text of its ``…_response`` object; an answer whose
signature is missing or does not verify with Alipay's public key is never believed.

Alipay de-duplicates on ``out_request_no`` (the refund id): a repeated request refunds once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from paygate.channels.errors import SignatureError
from paygate.channels.mobile.alipay import alipay_signing_string
from paygate.channels.signing import (
    VerifyingKey,
    decode_signature,
    sign_sha256_rsa,
    verify_sha256_rsa,
)
from paygate.clock import Clock, SystemClock
from paygate.errors import InvalidInputError
from paygate.refunds.route import (
    RefundOutcome,
    RefundRequest,
    RefundRouteUnavailable,
    RefundState,
)
from paygate.refunds.routes.common import HttpRoute, beijing_time

__all__ = [
    "ALIPAY_REFUND_FAILURES",
    "AlipayRefundRoute",
    "alipay_response_text",
]

_log = logging.getLogger("paygate.refunds.routes")

REFUND_METHOD: Final = "alipay.trade.refund"
QUERY_METHOD: Final = "alipay.trade.fastpay.refund.query"

ALIPAY_REFUND_FAILURES: Final = frozenset(
    {
        "ACQ.INVALID_PARAMETER",
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
        "ACQ.REASON_TRADE_BEEN_FREEZEN",
        "ACQ.TRADE_NOT_EXIST",
        "ACQ.TRADE_HAS_FINISHED",
        "ACQ.TRADE_STATUS_ERROR",
        "ACQ.DISCORDANT_REPEAT_REQUEST",
        "ACQ.REASON_TRADE_REFUND_FEE_ERR",
        "ACQ.TRADE_NOT_ALLOW_REFUND",
        "ACQ.REFUND_FEE_ERROR",
        "ACQ.REFUND_CHARGE_ERROR",
        "ACQ.ONLINE_TRADE_VOUCHER_NOT_ALLOW_REFUND",
    }
)
"""``alipay.trade.refund``'s documented business failures (code 40004): the refund is
refused and will not happen. Any other 40004 sub-code is a failure too, except
``ACQ.SYSTEM_ERROR``, which Alipay says to retry with the same ``out_request_no``."""

_RETRY_SUB_CODES: Final = frozenset({"ACQ.SYSTEM_ERROR"})
# Any code but 10000 and 40004 is unavailable: 20000 service unavailable; 20001, 40001, 40002,
# 40006 a request refused for its credentials, parameters or permissions, i.e. this side's
# configuration: nothing was refunded, and the same refund goes through once it is put right.


def alipay_response_text(body: str, response_key: str) -> tuple[str, str | None]:
    """The exact text of ``response_key``'s value in an OpenAPI answer, and its ``sign``.

    Alipay signs the value's characters as it sent them, so the text is cut out of the body,
    never re-serialised. An error answer carries ``error_response`` instead, signed the same
    way. Raises ``ValueError`` for a body that is not a JSON object holding either.
    """
    decoder = json.JSONDecoder()
    pos = _skip(body, 0)
    if not body.startswith("{", pos):
        raise ValueError("not a JSON object")
    pos = _skip(body, pos + 1)
    found: dict[str, str] = {}
    sign: str | None = None
    while not body.startswith("}", pos):
        key, pos = decoder.raw_decode(body, pos)
        if not isinstance(key, str):
            raise ValueError("an object key is not a string")
        pos = _skip(body, pos)
        if not body.startswith(":", pos):
            raise ValueError("':' expected")
        start = _skip(body, pos + 1)
        value, pos = decoder.raw_decode(body, start)
        if key in found or (key == "sign" and sign is not None):
            raise ValueError(f"{key} given twice")
        if key == "sign":
            if not isinstance(value, str):
                raise ValueError("sign is not a string")
            sign = value
        elif key in (response_key, "error_response"):
            found[key] = body[start:pos]
        pos = _skip(body, pos)
        if body.startswith(",", pos):
            pos = _skip(body, pos + 1)
        elif not body.startswith("}", pos):
            raise ValueError("',' or '}' expected")
    if _skip(body, pos + 1) != len(body):
        raise ValueError("data after the object")
    text = found.get(response_key, found.get("error_response"))
    if text is None:
        raise ValueError(f"neither {response_key} nor error_response")
    return text, sign


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


@dataclass(frozen=True, slots=True)
class _Answer:
    code: str
    fields: dict[str, Any]

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return value if isinstance(value, str) else ""


class AlipayRefundRoute(HttpRoute):
    """Refunds through ``alipay.trade.refund``, against payments of the ``alipay`` channel.

    The payment is named by its ``channel_txn_id``, which for the alipay channel is Alipay's
    ``trade_no``.
    """

    def __init__(
        self,
        *,
        app_id: str,
        private_key: RSAPrivateKey,
        alipay_key: VerifyingKey,
        base_url: str,
        timeout: float = 10.0,
        name: str = "alipay",
        channel: str | None = "alipay",
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, transport=transport)
        self.name = name
        self.channel = channel
        self._app_id = app_id
        # The gateway is one URL (…/gateway.do), posted to as it is: httpx would add a "/".
        self._url = base_url
        self._private_key = private_key
        self._alipay_key = alipay_key
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"AlipayRefundRoute(name={self.name!r}, app_id={self._app_id!r})"

    def submit(self, request: RefundRequest) -> RefundOutcome:
        """Ask Alipay to refund; 10000 with ``fund_change`` Y is done, N is confirmed by query."""
        if request.amount.currency != "CNY":
            raise InvalidInputError("Alipay refunds are in CNY", field="amount")
        biz = {
            "trade_no": _payment(request),
            "refund_amount": request.amount.format(),
            "out_request_no": request.refund_id,
            "refund_reason": request.reason,
        }
        answer = self._call(REFUND_METHOD, biz, request.refund_id)
        if answer.code == "10000":
            if answer.text("fund_change") == "Y":
                _log.info("%s: refund %s succeeded", self.name, request.refund_id)
                return RefundOutcome(
                    RefundState.SUCCEEDED, provider_reference=answer.text("trade_no") or None
                )
            # N: this request moved no money now: a repeat of a refund already made, or one
            # still in progress. Alipay says to ask.
            return self.query(request)
        return self._failure(answer, request.refund_id)

    def query(self, request: RefundRequest) -> RefundOutcome:
        """Ask ``alipay.trade.fastpay.refund.query`` where the refund stands."""
        biz = {"trade_no": _payment(request), "out_request_no": request.refund_id}
        answer = self._call(QUERY_METHOD, biz, request.refund_id)
        if answer.code == "10000":
            if answer.text("refund_status") == "REFUND_SUCCESS":
                return RefundOutcome(
                    RefundState.SUCCEEDED, provider_reference=answer.text("trade_no") or None
                )
            return RefundOutcome(
                RefundState.PENDING, provider_reference=answer.text("trade_no") or None
            )
        if answer.code == "40004" and answer.text("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return self._failure(answer, request.refund_id)
        # Any other refusal of a query says nothing about the refund itself.
        raise self._not_asked(answer, request.refund_id)

    def _failure(self, answer: _Answer, refund_id: str) -> RefundOutcome:
        sub_code = answer.text("sub_code")
        if answer.code == "40004" and sub_code not in _RETRY_SUB_CODES:
            _log.info("%s: refund %s refused: %s", self.name, refund_id, sub_code)
            return RefundOutcome(
                RefundState.FAILED,
                failure_code=sub_code or answer.code,
                failure_message=answer.text("sub_msg") or answer.text("msg") or None,
            )
        raise self._not_asked(answer, refund_id)

    def _not_asked(self, answer: _Answer, refund_id: str) -> RefundRouteUnavailable:
        code, sub_code = answer.code, answer.text("sub_code")
        # Busy is expected now and then; anything else needs a person (credentials, rights).
        busy = code == "20000" or sub_code in _RETRY_SUB_CODES
        _log.log(
            logging.WARNING if busy else logging.ERROR,
            "%s: refund %s: Alipay answered %s %s",
            self.name,
            refund_id,
            code,
            sub_code,
        )
        return RefundRouteUnavailable(f"{self.name}: Alipay answered {code} {sub_code}".rstrip())

    def _call(self, method: str, biz: dict[str, str], refund_id: str) -> _Answer:
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_time(self._clock.now(), "%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = sign_sha256_rsa(
            self._private_key, alipay_signing_string(params).encode("utf-8")
        )
        response = self._send(
            "POST",
            self._url,
            content=urlencode(params).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            refund_id=refund_id,
        )
        return self._verified(response, method.replace(".", "_") + "_response", refund_id)

    def _verified(self, response: httpx.Response, key: str, refund_id: str) -> _Answer:
        try:
            body = response.content.decode("utf-8")
            text, sign = alipay_response_text(body, key)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self._unbelieved(
                refund_id, f"HTTP {response.status_code}, unreadable: {exc}"
            ) from None
        try:
            signature = decode_signature(sign, field="sign")
            verify_sha256_rsa(self._alipay_key, text.encode("utf-8"), signature, field="sign")
        except SignatureError as exc:
            raise self._unbelieved(refund_id, str(exc)) from None
        fields = json.loads(text)
        if not isinstance(fields, dict) or not isinstance(fields.get("code"), str):
            raise self._unbelieved(refund_id, f"{key} has no code")
        return _Answer(code=fields["code"], fields=fields)


def _payment(request: RefundRequest) -> str:
    if not request.original_channel_txn_id:
        raise InvalidInputError(
            "an Alipay refund names the payment (its trade_no)", field="original_channel_txn_id"
        )
    return request.original_channel_txn_id
