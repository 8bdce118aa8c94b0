"""The ``wechatpay`` refund route: WeChat Pay API v3 ``POST /v3/refund/domestic/refunds`` and
``GET /v3/refund/domestic/refunds/{out_refund_no}``.

Each request carries ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,
signature=…,timestamp=…,serial_no=…``, the signature being the merchant key's SHA256withRSA over
``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``. Each answer is believed only when its
``Wechatpay-*`` headers verify with a configured platform key
(:func:`~paygate.channels.mobile.wechatpay.verify_wechat_signature`) and its timestamp is
fresh; 5xx and 429 answers are not read at all.

WeChat Pay de-duplicates on ``out_refund_no`` (the refund id): a repeated request refunds once.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from paygate.channels.mobile.wechatpay import verify_wechat_signature
from paygate.channels.signing import VerifyingKey, sign_sha256_rsa
from paygate.clock import Clock, SystemClock
from paygate.errors import InvalidInputError, PaygateError
from paygate.refunds.route import (
    RefundOutcome,
    RefundRequest,
    RefundRouteUnavailable,
    RefundState,
)
from paygate.refunds.routes.common import HttpRoute

__all__ = ["REFUNDS_PATH", "WECHAT_REFUND_FAILURES", "WechatPayRefundRoute", "authorization"]

_log = logging.getLogger("paygate.refunds.routes")

REFUNDS_PATH: Final = "/v3/refund/domestic/refunds"
SCHEMA: Final = "WECHATPAY2-SHA256-RSA2048"

_STATES: Final = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PENDING,
    "ABNORMAL": RefundState.FAILED,
    "CLOSED": RefundState.FAILED,
}

WECHAT_REFUND_FAILURES: Final = frozenset(
    {
        "PARAM_ERROR",
        "INVALID_REQUEST",
        "NOT_ENOUGH",
        "USER_ACCOUNT_ABNORMAL",
        "RESOURCE_NOT_EXISTS",
        "ORDER_NOT_EXIST",
    }
)
"""Error codes of the refund API that refuse the refund for good (4xx): the request breaks a
business rule, the balance is short, the payer's account is abnormal, the payment does not
exist. ``SYSTEM_ERROR`` and ``FREQUENCY_LIMITED`` are retried; so are ``SIGN_ERROR``,
``NO_AUTH`` and ``MCH_NOT_EXISTS``, which say that this side's configuration is wrong and
nothing was refunded."""


def authorization(
    *,
    method: str,
    url: str,
    body: bytes,
    mchid: str,
    serial_no: str,
    key: RSAPrivateKey,
    timestamp: int,
    nonce: str,
) -> str:
    """The ``Authorization`` header of one API v3 request (``url``: path and query)."""
    message = f"{method}\n{url}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = sign_sha256_rsa(key, message)
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


class WechatPayRefundRoute(HttpRoute):
    """Refunds through WeChat Pay API v3, against payments of the ``wechatpay`` channel.

    The payment is named by its ``channel_txn_id``, which for the wechatpay channel is WeChat
    Pay's ``transaction_id``; the API also wants the payment's total (``original_amount``).
    """

    def __init__(
        self,
        *,
        mchid: str,
        merchant_serial_no: str,
        private_key: RSAPrivateKey,
        platform_keys: Mapping[str, VerifyingKey],
        base_url: str,
        timeout: float = 10.0,
        timestamp_window: timedelta = timedelta(minutes=5),
        notify_url: str | None = None,
        name: str = "wechatpay",
        channel: str | None = "wechatpay",
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, transport=transport)
        self.name = name
        self.channel = channel
        self._mchid = mchid
        self._serial_no = merchant_serial_no
        self._private_key = private_key
        self._platform_keys = {serial.strip().upper(): k for serial, k in platform_keys.items()}
        self._window = timestamp_window
        self._notify_url = notify_url
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"WechatPayRefundRoute(name={self.name!r}, mchid={self._mchid!r})"

    def submit(self, request: RefundRequest) -> RefundOutcome:
        """Ask WeChat Pay to refund; the answer's ``status`` is the outcome."""
        if not request.original_channel_txn_id:
            raise InvalidInputError(
                "a WeChat Pay refund names the payment (its transaction_id)",
                field="original_channel_txn_id",
            )
        if request.original_amount is None:
            raise InvalidInputError(
                "a WeChat Pay refund states the payment's total", field="original_amount"
            )
        if request.original_amount.currency != request.amount.currency:
            raise InvalidInputError(
                "the refund and the payment are in different currencies", field="original_amount"
            )
        payload: dict[str, Any] = {
            "transaction_id": request.original_channel_txn_id,
            "out_refund_no": request.refund_id,
            "reason": request.reason[:80],
            "amount": {
                "refund": request.amount.minor,
                "total": request.original_amount.minor,
                "currency": request.amount.currency,
            },
        }
        if self._notify_url:
            payload["notify_url"] = self._notify_url
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self._outcome(self._request("POST", REFUNDS_PATH, body, request.refund_id), request)

    def query(self, request: RefundRequest) -> RefundOutcome:
        """Ask WeChat Pay where the refund stands (by ``out_refund_no``)."""
        path = f"{REFUNDS_PATH}/{quote(request.refund_id, safe='')}"
        return self._outcome(self._request("GET", path, b"", request.refund_id), request)

    def _request(self, method: str, path: str, body: bytes, refund_id: str) -> httpx.Response:
        header = authorization(
            method=method,
            url=path,
            body=body,
            mchid=self._mchid,
            serial_no=self._serial_no,
            key=self._private_key,
            timestamp=int(self._clock.now().timestamp()),
            nonce=secrets.token_hex(16).upper(),
        )
        headers = {"Authorization": header, "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        response = self._send(
            method, path, content=body or None, headers=headers, refund_id=refund_id
        )
        if response.status_code == 429:
            _log.warning("%s: refund %s: HTTP 429", self.name, refund_id)
            raise RefundRouteUnavailable(f"{self.name}: HTTP 429 (frequency limited)")
        try:
            verify_wechat_signature(
                response.content,
                dict(response.headers),
                self._platform_keys,
                now=self._clock.now(),
                window=self._window,
                source=self.name,
            )
        except PaygateError as exc:
            raise self._unbelieved(refund_id, f"HTTP {response.status_code}: {exc}") from None
        return response

    def _outcome(self, response: httpx.Response, request: RefundRequest) -> RefundOutcome:
        try:
            answer = json.loads(response.content) if response.content else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._unbelieved(request.refund_id, f"HTTP {response.status_code}: not JSON")
        if response.status_code != 200:
            code = answer.get("code") if isinstance(answer.get("code"), str) else ""
            message = answer.get("message") if isinstance(answer.get("message"), str) else None
            if code in WECHAT_REFUND_FAILURES:
                _log.info("%s: refund %s refused: %s", self.name, request.refund_id, code)
                return RefundOutcome(RefundState.FAILED, failure_code=code, failure_message=message)
            _log.log(
                logging.WARNING if code in ("SYSTEM_ERROR", "FREQUENCY_LIMITED") else logging.ERROR,
                "%s: refund %s: HTTP %d %s",
                self.name,
                request.refund_id,
                response.status_code,
                code,
            )
            raise RefundRouteUnavailable(
                f"{self.name}: HTTP {response.status_code} {code}".rstrip()
            )
        status = answer.get("status")
        state = _STATES.get(status) if isinstance(status, str) else None
        if state is None or answer.get("out_refund_no") != request.refund_id:
            raise self._unbelieved(
                request.refund_id, f"status {status!r} for {answer.get('out_refund_no')!r}"
            )
        amount = answer.get("amount")
        refunded = amount.get("refund") if isinstance(amount, dict) else None
        if refunded != request.amount.minor:
            raise self._unbelieved(
                request.refund_id, f"the answer refunds {refunded!r}, not {request.amount.minor}"
            )
        reference = answer.get("refund_id") if isinstance(answer.get("refund_id"), str) else None
        if state is RefundState.FAILED:
            _log.info("%s: refund %s ended %s", self.name, request.refund_id, status)
            return RefundOutcome(state, provider_reference=reference, failure_code=status)
        return RefundOutcome(state, provider_reference=reference)
