"""Local fake providers that speak the real refund wire formats, over a real uvicorn server.

Each fake checks a request's signature the way its provider does (written here from the
providers' specifications, not with paygate's code), keeps refunds by their request number
(so a repeated request is the same refund), and answers signed with the provider's own key.
``mode`` makes it misbehave: ``"5xx"``, ``"slow"``, ``"forged"`` (signed with a key nobody
configured), ``"tampered"`` (a field changed after signing), ``"unsigned"``, ``"stale"``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, Request, Response

# ── keys ──────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class KeyPair:
    private: rsa.RSAPrivateKey

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def encrypted_pem(self, passphrase: bytes) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def sign(self, message: bytes) -> str:
        raw = self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def verifies(self, message: bytes, signature: str) -> bool:
        try:
            self.private.public_key().verify(
                base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return False
        return True


@functools.cache
def key(name: str) -> KeyPair:
    """A 2048-bit test key per role, made once per test run."""
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


# ── the shared state of a fake ────────────────────────────────────────────────────────────


@dataclass
class Refund:
    payment: str
    amount: int  # minor units
    provider_id: str
    done: bool


@dataclass
class Fake:
    """What a fake holds: payments (id → total, minor units), refunds by request number."""

    payments: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    mode: str = ""
    pending: bool = False
    """New refunds start in progress and complete when asked about the second time."""
    queries: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rejected_signatures: int = 0

    def refunded(self, payment: str) -> int:
        return sum(r.amount for r in self.refunds.values() if r.payment == payment)

    def create(self, number: str, payment: str, amount: int) -> tuple[Refund, bool]:
        """The refund under ``number``, made now when new (True)."""
        existing = self.refunds.get(number)
        if existing is not None:
            return existing, False
        refund = Refund(payment, amount, "P" + secrets.token_hex(8), not self.pending)
        self.refunds[number] = refund
        return refund, True

    def asked(self, number: str) -> Refund | None:
        refund = self.refunds.get(number)
        if refund is not None:
            self.queries[number] = self.queries.get(number, 0) + 1
            if self.queries[number] >= 2:
                refund.done = True
        return refund

    async def misbehave(self) -> Response | None:
        self.requests += 1
        if self.mode == "5xx":
            return Response("upstream unavailable", status_code=502)
        if self.mode == "slow":
            await asyncio.sleep(3)
        return None


# ── Alipay OpenAPI ────────────────────────────────────────────────────────────────────────


def alipay_app(fake: Fake, *, app_key: KeyPair, alipay_key: KeyPair, app_id: str) -> FastAPI:
    app = FastAPI()

    @app.post("/gateway.do")
    async def gateway(request: Request) -> Response:
        if (early := await fake.misbehave()) is not None:
            return early
        params = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        method = params.get("method", "")
        key_name = method.replace(".", "_") + "_response"
        signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
        if params.get("sign_type") != "RSA2" or not app_key.verifies(
            signed.encode("utf-8"), params.get("sign", "")
        ):
            fake.rejected_signatures += 1
            answer = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
            }
            return _alipay_answer(fake, alipay_key, key_name, answer)
        if params.get("app_id") != app_id:
            answer = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"}
            return _alipay_answer(fake, alipay_key, key_name, answer)
        biz = json.loads(params["biz_content"])
        if method == "alipay.trade.refund":
            answer = _alipay_refund(fake, biz)
        elif method == "alipay.trade.fastpay.refund.query":
            answer = _alipay_query(fake, biz)
        else:
            answer = {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}
        return _alipay_answer(fake, alipay_key, key_name, answer)

    return app


def _alipay_refund(fake: Fake, biz: dict[str, str]) -> dict[str, Any]:
    trade_no = biz.get("trade_no", "")
    if fake.mode == "system_error":
        return _alipay_fail("ACQ.SYSTEM_ERROR", "系统错误")
    if trade_no not in fake.payments:
        return _alipay_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
    yuan = biz["refund_amount"]
    whole, _, frac = yuan.partition(".")
    amount = int(whole) * 100 + int((frac + "00")[:2])
    existing = fake.refunds.get(biz["out_request_no"])
    if existing is not None and existing.amount != amount:
        return _alipay_fail("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
    if existing is None and fake.refunded(trade_no) + amount > fake.payments[trade_no]:
        return _alipay_fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
    refund, new = fake.create(biz["out_request_no"], trade_no, amount)
    return {
        "code": "10000",
        "msg": "Success",
        "trade_no": trade_no,
        "out_trade_no": "ORDER-" + trade_no,
        "buyer_logon_id": "159****5620",
        "fund_change": "Y" if new and refund.done else "N",
        "refund_fee": f"{fake.refunded(trade_no) / 100:.2f}",
    }


def _alipay_query(fake: Fake, biz: dict[str, str]) -> dict[str, Any]:
    if biz.get("trade_no", "") not in fake.payments:
        return _alipay_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
    refund = fake.asked(biz["out_request_no"])
    answer: dict[str, Any] = {"code": "10000", "msg": "Success", "trade_no": biz["trade_no"]}
    if refund is not None:
        answer |= {
            "out_request_no": biz["out_request_no"],
            "refund_amount": f"{refund.amount / 100:.2f}",
        }
        if refund.done:
            answer["refund_status"] = "REFUND_SUCCESS"
    return answer


def _alipay_fail(sub_code: str, sub_msg: str) -> dict[str, str]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def _alipay_answer(
    fake: Fake, alipay_key: KeyPair, key_name: str, answer: dict[str, Any]
) -> Response:
    text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    signer = key("forger") if fake.mode == "forged" else alipay_key
    sign = signer.sign(text.encode("utf-8"))
    if fake.mode == "tampered":
        text = (
            text.replace('"code":"40004"', '"code":"10000"')
            .replace('"fund_change":"N"', '"fund_change":"Y"')
            .replace('"msg":"Success"', '"msg":"Success "')
        )
    body = f'{{"{key_name}":{text}' + ("" if fake.mode == "unsigned" else f',"sign":"{sign}"') + "}"
    return Response(body.encode("utf-8"), media_type="application/json;charset=utf-8")


# ── WeChat Pay API v3 ─────────────────────────────────────────────────────────────────────

WECHAT_PLATFORM_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD********".replace("*", "0")


def wechat_app(fake: Fake, *, merchant_key: KeyPair, platform_key: KeyPair, mchid: str) -> FastAPI:
    app = FastAPI()

    def answer(status: int, payload: dict[str, Any]) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        stamp = int(time.time()) - (3600 if fake.mode == "stale" else 0)
        nonce = secrets.token_hex(16)
        signer = key("forger") if fake.mode == "forged" else platform_key
        signature = signer.sign(f"{stamp}\n{nonce}\n".encode() + body + b"\n")
        if fake.mode == "tampered":
            changed = body.replace(b'"PROCESSING"', b'"SUCCESS"')
            changed = changed.replace(b"NOT_ENOUGH", b"SYSTEM_ERROR")
            body = changed if changed != body else body[:-1] + b',"funds_account":"BASIC"}'

        headers = {
            "Wechatpay-Timestamp": str(stamp),
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": WECHAT_PLATFORM_SERIAL,
            "Request-ID": secrets.token_hex(8),
        }
        if fake.mode != "unsigned":
            headers["Wechatpay-Signature"] = signature
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    def authorized(request: Request, body: bytes) -> bool:
        header = request.headers.get("authorization", "")
        schema, _, rest = header.partition(" ")
        fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        message = (
            (
                f"{request.method}\n{url}\n{fields.get('timestamp', '')}\n"
                f"{fields.get('nonce_str', '')}\n"
            ).encode()
            + body
            + b"\n"
        )
        fresh = abs(time.time() - int(fields.get("timestamp", "0") or 0)) <= 300
        return (
            schema == "WECHATPAY2-SHA256-RSA2048"
            and fields.get("mchid") == mchid
            and fields.get("serial_no") == MERCHANT_SERIAL
            and fresh
            and merchant_key.verifies(message, fields.get("signature", ""))
        )

    def refund_body(number: str, refund: Refund, total: int) -> dict[str, Any]:
        amount = refund.amount + (1 if fake.mode == "other_amount" else 0)
        return {
            "refund_id": refund.provider_id,
            "out_refund_no": number,
            "transaction_id": refund.payment,
            "out_trade_no": "ORDER-" + refund.payment,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": datetime.now(UTC).isoformat(timespec="seconds"),
            "status": "SUCCESS" if refund.done else "PROCESSING",
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total,
                "refund": amount,
                "payer_total": total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }

    @app.post("/v3/refund/domestic/refunds")
    async def create(request: Request) -> Response:
        if (early := await fake.misbehave()) is not None:
            return early
        body = await request.body()
        if not authorized(request, body):
            fake.rejected_signatures += 1
            return answer(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        if fake.mode == "frequency":
            return answer(429, {"code": "FREQUENCY_LIMITED", "message": "频率超限"})
        if fake.mode == "system_error":
            return answer(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})
        data = json.loads(body)
        payment = data.get("transaction_id", "")
        if payment not in fake.payments:
            return answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})
        amount = data["amount"]
        if amount["total"] != fake.payments[payment] or amount["currency"] != "CNY":
            return answer(400, {"code": "INVALID_REQUEST", "message": "订单金额不一致"})
        number = data["out_refund_no"]
        existing = fake.refunds.get(number)
        if existing is None and fake.refunded(payment) + amount["refund"] > fake.payments[payment]:
            return answer(403, {"code": "NOT_ENOUGH", "message": "余额不足"})
        refund, _ = fake.create(number, payment, amount["refund"])
        return answer(200, refund_body(number, refund, fake.payments[payment]))

    @app.get("/v3/refund/domestic/refunds/{number}")
    async def query(number: str, request: Request) -> Response:
        if (early := await fake.misbehave()) is not None:
            return early
        if not authorized(request, b""):
            fake.rejected_signatures += 1
            return answer(401, {"code": "SIGN_ERROR", "message": "签名错误"})
        refund = fake.asked(number)
        if refund is None:
            return answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
        return answer(200, refund_body(number, refund, fake.payments[refund.payment]))

    return app


# ── the online gateway (UnionPay 5.1.0) ───────────────────────────────────────────────────

ONLINE_CERT_ID = "69629715588"


def online_app(fake: Fake, *, merchant_key: KeyPair, gateway_key: KeyPair, mer_id: str) -> FastAPI:
    app = FastAPI()

    def digest(fields: dict[str, str]) -> bytes:
        text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "signature")
        return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")

    def answer(fields: dict[str, str]) -> Response:
        fields = {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", **fields}
        signer = key("forger") if fake.mode == "forged" else gateway_key
        fields["signature"] = signer.sign(digest(fields))
        if fake.mode == "tampered":
            fields["origRespCode"] = "00"
            fields["respCode"] = "00"
            fields["respMsg"] = fields.get("respMsg", "") + "!"
        if fake.mode == "unsigned":
            del fields["signature"]
        return Response(urlencode(fields), media_type="application/x-www-form-urlencoded")

    async def verified(request: Request) -> dict[str, str] | None:
        fields = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        ok = (
            fields.get("version") == "5.1.0"
            and fields.get("signMethod") == "01"
            and fields.get("certId") == ONLINE_CERT_ID
            and merchant_key.verifies(digest(fields), fields.get("signature", ""))
        )
        if not ok:
            fake.rejected_signatures += 1
        return fields if ok else None

    @app.post("/gateway/api/backTransReq.do")
    async def back(request: Request) -> Response:
        if (early := await fake.misbehave()) is not None:
            return early
        fields = await verified(request)
        if fields is None:
            return answer({"respCode": "11", "respMsg": "验证签名失败"})
        common = {
            k: fields[k]
            for k in (
                "merId",
                "orderId",
                "txnTime",
                "txnType",
                "txnSubType",
                "bizType",
                "accessType",
            )
        }
        if fields["merId"] != mer_id:
            return answer(common | {"respCode": "31", "respMsg": "商户状态不正确"})
        payment = fields["origQryId"]
        if payment not in fake.payments:
            return answer(common | {"respCode": "35", "respMsg": "原交易不存在或状态不正确"})
        amount = int(fields["txnAmt"])
        number = fields["orderId"] + fields["txnTime"]
        existing = fake.refunds.get(number)
        if existing is None and fake.refunded(payment) + amount > fake.payments[payment]:
            return answer(common | {"respCode": "33", "respMsg": "交易金额超限"})
        refund, new = fake.create(number, payment, amount)
        code = "00" if new else "12"
        return answer(
            common
            | {
                "respCode": code,
                "respMsg": "成功[0000000]",
                "queryId": refund.provider_id,
                "txnAmt": fields["txnAmt"],
                "origQryId": payment,
            }
        )

    @app.post("/gateway/api/queryTrans.do")
    async def query(request: Request) -> Response:
        if (early := await fake.misbehave()) is not None:
            return early
        fields = await verified(request)
        if fields is None:
            return answer({"respCode": "11", "respMsg": "验证签名失败"})
        common = {k: fields[k] for k in ("merId", "orderId", "txnTime")}
        refund = fake.asked(fields["orderId"] + fields["txnTime"])
        if refund is None:
            return answer(common | {"respCode": "34", "respMsg": "查无此交易"})
        original = "00" if refund.done else "05"
        return answer(
            common
            | {
                "respCode": "00",
                "respMsg": "成功[0000000]",
                "queryId": refund.provider_id,
                "origRespCode": original,
                "origRespMsg": "成功[0000000]" if refund.done else "交易已受理",
                "txnAmt": str(refund.amount),
            }
        )

    return app
