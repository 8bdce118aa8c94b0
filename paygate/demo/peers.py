"""Simulated channel peers for the demo: the other end of each of paygate's channels.

What Alipay's and WeChat Pay's servers, the online payment gateway, a self-service kiosk, a
service-hall POS terminal, an agent bank, and customers with recharge vouchers from a retailer's
shelf send to paygate: each channel's native message, signed as its page in ``docs/channels``
describes, with keys generated for this run. paygate's channel adapters verify these messages
exactly as they would the real channel's; nothing here touches the ledger.

Where paygate has a public helper for a channel's canonical string (``alipay_signing_string``,
``wechat_signed_message``, ``unionpay_signed_digest``, ``pos_mac``, ``bank_signing_string``,
``sign_request``), the peer signs with it, so that the demo exercises the same rule the
adapter verifies; the tests in ``tests/channels`` keep independent signers to catch a wrong
rule.

Invariant: private keys, shared keys and card PINs exist only inside these objects for the
life of the process. They are generated here (PINs are read from the printer file held in
memory), never written anywhere, and appear in no repr: paygate is handed only the public half
of a key pair, and a shared secret only as ``SecretStr``/``SecretBytes``. A peer built without
a key generates its own, so a second peer with the same identity but its own key is an
impostor whose messages paygate must refuse.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import secrets
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretBytes, SecretStr

from paygate.channels.bank_agent import DelimitedLayout, bank_signing_string
from paygate.channels.base import NotifyResult
from paygate.channels.kiosk import KioskMethod, KioskTotals, MethodTotal
from paygate.channels.mobile import alipay_signing_string, wechat_signed_message
from paygate.channels.online import NUMERIC_CURRENCIES, unionpay_signed_digest
from paygate.channels.orders import Order
from paygate.channels.pos import pos_mac
from paygate.clock import Clock
from paygate.devices import ed25519_pem, sign_request
from paygate.money import Money
from paygate.vouchers import PRINTER_COLUMNS

__all__ = [
    "AGENT_BANK_LAYOUT",
    "AgentBank",
    "AlipayServer",
    "BatchLine",
    "CardRetailer",
    "Kiosk",
    "Message",
    "OnlineGateway",
    "PosTerminal",
    "RechargeCard",
    "WechatPayServer",
    "guessed_pin",
    "new_rsa_key",
    "redeem_request",
]

BEIJING: Final = ZoneInfo("Asia/Shanghai")
_FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"
_JSON: Final = "application/json"


@dataclass(frozen=True)
class Message:
    """One request as a channel sends it: the body, byte for byte, and its headers.

    The body stays out of the repr: a redemption request carries a card's PIN.
    """

    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key, the size the Chinese payment channels use."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _sha256_rsa(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: Alipay's RSA2, WeChat Pay's and UnionPay's."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def _form(fields: Mapping[str, str]) -> bytes:
    # Percent-encode everything outside the unreserved set (a space as %20, never '+'), so
    # that the body decodes to exactly the values that were signed.
    return urlencode(fields, quote_via=quote, safe="").encode("ascii")


def _beijing(instant: datetime, fmt: str) -> str:
    return instant.astimezone(BEIJING).strftime(fmt)


# ── mobile wallets ───────────────────────────────────────────────────────────────────────


class AlipayServer:
    """Alipay's notification sender for one app: trade notifications signed with RSA2."""

    def __init__(self, app_id: str, *, key: rsa.RSAPrivateKey | None = None) -> None:
        self.app_id = app_id
        self._key = key if key is not None else new_rsa_key()
        self._trades = 0

    def __repr__(self) -> str:
        return f"<AlipayServer app_id={self.app_id}>"

    @property
    def public_key_pem(self) -> str:
        """The key paygate verifies notifications with (Alipay's public key for the app)."""
        return _public_pem(self._key)

    def trade_paid(
        self, *, out_trade_no: str, account_no: str, amount: Money, paid_at: datetime
    ) -> Message:
        """The ``TRADE_SUCCESS`` notification of a new trade, under Alipay's next ``trade_no``.

        The account number comes back in ``passback_params``, URL-encoded as Alipay requires.
        """
        self._trades += 1
        trade_no = f"{_beijing(paid_at, '%Y%m%d')}22001{self._trades:011d}"
        fields = {
            "notify_type": "trade_status_sync",
            "notify_id": f"{_beijing(paid_at, '%Y%m%d%H%M%S')}{self._trades:08d}",
            "notify_time": _beijing(paid_at, "%Y-%m-%d %H:%M:%S"),
            "charset": "utf-8",
            "version": "1.0",
            "app_id": self.app_id,
            "trade_status": "TRADE_SUCCESS",
            "trade_no": trade_no,
            "out_trade_no": out_trade_no,
            "subject": "电费缴纳",
            "total_amount": amount.format(),
            "receipt_amount": amount.format(),
            "gmt_create": _beijing(paid_at, "%Y-%m-%d %H:%M:%S"),
            "gmt_payment": _beijing(paid_at, "%Y-%m-%d %H:%M:%S"),
            "passback_params": quote(account_no, safe=""),
            "sign_type": "RSA2",
        }
        signed = alipay_signing_string(fields).encode("utf-8")
        fields["sign"] = _sha256_rsa(self._key, signed)
        return Message(_form(fields), {"Content-Type": _FORM})


class WechatPayServer:
    """WeChat Pay API v3 for one merchant: notifications with an AES-GCM resource, signed
    over ``timestamp\\nnonce\\nbody\\n`` with the platform key named by its serial."""

    def __init__(
        self,
        mchid: str,
        appid: str,
        *,
        serial: str = "PUB_KEY_ID_0116500000012026100100000000000001",
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.serial = serial
        self._key = key if key is not None else new_rsa_key()
        # The API v3 key: 32 characters the merchant sets in WeChat Pay's console; both sides
        # hold it, WeChat Pay to encrypt resources and the merchant to decrypt them.
        self._api_v3_key = secrets.token_urlsafe(24)
        self._transactions = 0

    def __repr__(self) -> str:
        return f"<WechatPayServer mchid={self.mchid} serial={self.serial}>"

    @property
    def platform_keys(self) -> dict[str, str]:
        """Serial → WeChat Pay public key (PEM), as paygate's configuration takes it."""
        return {self.serial: _public_pem(self._key)}

    @property
    def api_v3_key(self) -> SecretStr:
        """The shared API v3 key."""
        return SecretStr(self._api_v3_key)

    def transaction_success(
        self, *, out_trade_no: str, account_no: str, amount: Money, paid_at: datetime
    ) -> Message:
        """The ``TRANSACTION.SUCCESS`` notification of a new payment.

        The account number comes back in ``attach``; the amount is integer fen.
        """
        self._transactions += 1
        transaction_id = f"42000{self._transactions:023d}"
        transaction = {
            "mchid": self.mchid,
            "appid": self.appid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
            "trade_type": "JSAPI",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "attach": account_no,
            "success_time": paid_at.astimezone(BEIJING).isoformat(),
            "amount": {
                "total": amount.minor,
                "payer_total": amount.minor,
                "currency": amount.currency,
                "payer_currency": amount.currency,
            },
        }
        plaintext = json.dumps(transaction, ensure_ascii=False).encode("utf-8")
        nonce = secrets.token_urlsafe(9)  # 12 characters, as WeChat Pay sends
        sealed = AESGCM(self._api_v3_key.encode("utf-8")).encrypt(
            nonce.encode("ascii"), plaintext, b"transaction"
        )
        envelope = {
            "id": f"EV-{transaction_id}",
            "create_time": paid_at.astimezone(BEIJING).isoformat(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode("ascii"),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        return self.signed(body, now=paid_at)

    def signed(self, body: bytes, *, now: datetime) -> Message:
        """``body`` with fresh signature headers: a first delivery, or WeChat Pay's retry."""
        timestamp = str(int(now.timestamp()))
        nonce = secrets.token_hex(16)
        signature = _sha256_rsa(self._key, wechat_signed_message(timestamp, nonce, body))
        return Message(
            body,
            {
                "Content-Type": _JSON,
                "Wechatpay-Serial": self.serial,
                "Wechatpay-Timestamp": timestamp,
                "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": signature,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            },
        )


# ── online gateway ───────────────────────────────────────────────────────────────────────


class OnlineGateway:
    """A UnionPay-style gateway: back notifications of completed consumption, signed with
    SHA256withRSA over the SHA-256 hex of the sorted ``k=v&…`` string."""

    def __init__(self, merchant_id: str, *, key: rsa.RSAPrivateKey | None = None) -> None:
        self.merchant_id = merchant_id
        self._key = key if key is not None else new_rsa_key()
        self._queries = 0

    def __repr__(self) -> str:
        return f"<OnlineGateway merId={self.merchant_id}>"

    @property
    def public_key_pem(self) -> str:
        """The gateway's signing key, as paygate configures it."""
        return _public_pem(self._key)

    def consumption_completed(self, order: Order, *, paid_at: datetime) -> Message:
        """The notification that the customer paid ``order``, under the next ``queryId``."""
        self._queries += 1
        query_id = f"{_beijing(paid_at, '%Y%m%d%H%M%S')}{self._queries:07d}"
        amount = str(order.amount.minor)
        fields = {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": "01",
            "txnSubType": "01",
            "bizType": "000201",
            "accessType": "0",
            "merId": self.merchant_id,
            "orderId": order.order_id,
            # txnTime is the order's creation time, as the front request carried it.
            "txnTime": _beijing(order.created_at, "%Y%m%d%H%M%S"),
            "txnAmt": amount,
            "currencyCode": NUMERIC_CURRENCIES[order.amount.currency],
            "queryId": query_id,
            "respCode": "00",
            "respMsg": "成功[0000000]",
            "settleAmt": amount,
            "settleCurrencyCode": NUMERIC_CURRENCIES[order.amount.currency],
            "settleDate": _beijing(paid_at, "%m%d"),
            "traceNo": f"{self._queries % 1_000_000:06d}",
            "traceTime": _beijing(paid_at, "%m%d%H%M%S"),
        }
        digest = unionpay_signed_digest(fields, "utf-8")
        fields["signature"] = _sha256_rsa(self._key, digest)
        return Message(_form(fields), {"Content-Type": _FORM})


# ── kiosk ────────────────────────────────────────────────────────────────────────────────


class Kiosk:
    """A 24-hour self-service kiosk: Ed25519-signed payments and the end-of-day close.

    The kiosk keeps its own takings by business day (midnight cut-off, Beijing time) from the
    payments paygate approved, and reports them at the daily close beside the cash counted.
    """

    def __init__(
        self,
        device_id: str,
        clock: Clock,
        *,
        key: Ed25519PrivateKey | None = None,
        pay_path: str = "/v1/kiosk/pay",
        close_path: str = "/v1/kiosk/daily-close",
    ) -> None:
        self.device_id = device_id
        self.clock = clock
        self.pay_path = pay_path
        self.close_path = close_path
        self._key = key if key is not None else Ed25519PrivateKey.generate()
        self._counter = 0
        # business day → kiosk transaction id → (method, amount): keyed by transaction, so
        # that the answer to a retry books nothing twice.
        self._takings: defaultdict[date, dict[str, tuple[KioskMethod, int]]] = defaultdict(dict)

    def __repr__(self) -> str:
        return f"<Kiosk {self.device_id}>"

    @property
    def public_key_pem(self) -> str:
        """The key to register for this kiosk in paygate's device registry."""
        return ed25519_pem(self._key.public_key())

    def pay(self, *, account_no: str, amount: Money, method: KioskMethod) -> Message:
        """The signed request of a new payment, numbered by the kiosk's own counter."""
        self._counter += 1
        txn_id = f"{method.value}-{self._counter:06d}"
        request = {
            "txn_id": txn_id,
            "account_no": account_no,
            "amount": amount.minor,
            "currency": amount.currency,
            "method": method.value,
            "paid_at": self.clock.now().astimezone(BEIJING).isoformat(),
        }
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        return self._signed(self.pay_path, body)

    def resend(self, message: Message) -> Message:
        """The same request again, signed afresh (new timestamp and nonce): a retry."""
        return self._signed(self.pay_path, message.body)

    def answered(self, message: Message, result: NotifyResult) -> None:
        """Book a payment into its day's takings once paygate approved it."""
        if not result.ok:
            return
        request = json.loads(message.body)
        day = datetime.fromisoformat(request["paid_at"]).astimezone(BEIJING).date()
        method = KioskMethod(request["method"])
        self._takings[day][request["txn_id"]] = (method, int(request["amount"]))

    def takings(self, day: date, currency: str) -> KioskTotals:
        """What the kiosk took on business day ``day``, by method."""
        totals = {KioskMethod.CASH: [0, 0], KioskMethod.CARD: [0, 0]}
        for method, amount in self._takings.get(day, {}).values():
            totals[method][0] += 1
            totals[method][1] += amount
        cash, card = totals[KioskMethod.CASH], totals[KioskMethod.CARD]
        return KioskTotals(
            cash=MethodTotal(count=cash[0], amount=Money(cash[1], currency)),
            card=MethodTotal(count=card[0], amount=Money(card[1], currency)),
        )

    def close(self, day: date, *, counted_cash: Money) -> Message:
        """The signed daily close of ``day``: the cash counted and the kiosk's own totals."""
        takings = self.takings(day, counted_cash.currency)
        request = {
            "business_date": day.isoformat(),
            "currency": counted_cash.currency,
            "counted_cash": counted_cash.minor,
            "count": takings.count,
            "amount": takings.amount.minor,
            "by_method": {
                "cash": {"count": takings.cash.count, "amount": takings.cash.amount.minor},
                "card": {"count": takings.card.count, "amount": takings.card.amount.minor},
            },
        }
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        return self._signed(self.close_path, body)

    def _signed(self, path: str, body: bytes) -> Message:
        headers = sign_request(self._key, self.device_id, "POST", path, body, now=self.clock.now())
        return Message(body, {"Content-Type": _JSON, **headers})


# ── POS terminal ─────────────────────────────────────────────────────────────────────────


class PosTerminal:
    """A service-hall POS terminal: sales and batch settlement, each message MACed with the
    terminal's own key (HMAC-SHA256), each with a new trace number."""

    def __init__(
        self, terminal_id: str, merchant_id: str, clock: Clock, *, mac_key: bytes | None = None
    ) -> None:
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.clock = clock
        self._mac_key = mac_key if mac_key is not None else secrets.token_bytes(32)
        self._batch = 1
        self._trace = 0
        self._sales = 0
        self._sale_amount = 0
        self._voids = 0
        self._void_amount = 0

    def __repr__(self) -> str:
        return f"<PosTerminal {self.terminal_id} batch={self.batch_no}>"

    @property
    def mac_key(self) -> SecretBytes:
        """The terminal's MAC key, for paygate's device registry (which stores it encrypted)."""
        return SecretBytes(self._mac_key)

    @property
    def batch_no(self) -> str:
        """The open batch (批次号)."""
        return f"{self._batch:06d}"

    def sale(self, *, account_no: str, amount: Money) -> Message:
        """A new sale in the open batch, under the next trace number."""
        fields = self._fields("sale", self._next_trace())
        fields.update({"account_no": account_no, "amount": str(amount.minor), "card": "debit"})
        return self._maced(fields)

    def answered(self, message: Message, result: NotifyResult) -> None:
        """Count an approved sale into the open batch's totals."""
        if result.ok and result.receipt is not None and not result.receipt.replayed:
            self.approved(result.receipt.amount)

    def approved(self, amount: Money) -> None:
        """Count a sale of ``amount`` approved (and not a replay) into the open batch's totals."""
        self._sales += 1
        self._sale_amount += amount.minor

    def void(self, sale: Message) -> Message:
        """The void (撤销) of ``sale``, a sale of the open batch, under the next trace number."""
        sold = dict(parse_qsl(sale.body.decode("utf-8")))
        fields = self._fields("void", self._next_trace())
        fields.update({"orig_trace_no": sold["trace_no"], "amount": sold["amount"]})
        return self._maced(fields)

    def voided(self, void: Message, result: NotifyResult) -> bool:
        """Count a void paygate carried out into the open batch's totals; whether it did."""
        answer = dict(parse_qsl(result.body.decode("utf-8"))) if result.ok else {}
        if answer.get("result") != "voided":
            return False
        self._voids += 1
        self._void_amount += int(dict(parse_qsl(void.body.decode("utf-8")))["amount"])
        return True

    def settle(self) -> Message:
        """The batch settlement (批结算) of the open batch: the terminal's own totals."""
        fields = self._fields("settle", self._next_trace())
        fields.update(
            {
                "sale_count": str(self._sales),
                "sale_amount": str(self._sale_amount),
                "void_count": str(self._voids),
                "void_amount": str(self._void_amount),
            }
        )
        return self._maced(fields)

    def settled(self, result: NotifyResult) -> None:
        """Open the next batch once paygate answered the settlement."""
        if result.ok:
            self._batch = self._batch % 999_999 + 1
            self._sales = self._sale_amount = self._voids = self._void_amount = 0

    def _next_trace(self) -> str:
        # Trace numbers (凭证号) run 000001-999999 and wrap.
        self._trace = self._trace % 999_999 + 1
        return f"{self._trace:06d}"

    def _fields(self, msg_type: str, trace: str) -> dict[str, str]:
        return {
            "msg_type": msg_type,
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "batch_no": self.batch_no,
            "trace_no": trace,
            "timestamp": str(int(self.clock.now().timestamp())),
            "charset": "utf-8",
        }

    def _maced(self, fields: dict[str, str]) -> Message:
        fields["mac"] = pos_mac(self._mac_key, fields)
        return Message(_form(fields), {"Content-Type": _FORM})


# ── agent bank ───────────────────────────────────────────────────────────────────────────

AGENT_BANK_LAYOUT: Final = DelimitedLayout(
    encoding="gbk",
    amount_unit="yuan",
    delimiter="|",
    header={"batch_no": 2, "batch_date": 3, "count": 4, "total": 5},
    detail={
        "account_no": 2,
        "amount": 3,
        "serial_no": 4,
        "result_code": 5,
        "result_msg": 6,
        "txn_time": 7,
    },
    trailer={"count": 2, "total": 3},
)
"""The batch file layout the demo's agent bank and the utility agreed: ``|``-delimited GBK,
yuan, records tagged H/D/T, each debit with its time."""


@dataclass(frozen=True)
class BatchLine:
    """One debit of the bank's daily batch file."""

    account_no: str
    amount: Money
    paid_at: datetime
    result_code: str = "0000"
    result_msg: str = "交易成功"


class AgentBank:
    """An agent bank (代收): HMAC-signed counter payments, and the daily batch file in the
    agreed layout. Serial numbers are the bank's own, one sequence for both paths."""

    def __init__(
        self,
        bank_code: str,
        merchant_id: str,
        *,
        currency: str = "CNY",
        shared_key: bytes | None = None,
    ) -> None:
        self.bank_code = bank_code
        self.merchant_id = merchant_id
        self.currency = currency
        self._shared_key = shared_key if shared_key is not None else secrets.token_bytes(32)
        self._serials = 0

    def __repr__(self) -> str:
        return f"<AgentBank {self.bank_code}>"

    @property
    def shared_key(self) -> SecretBytes:
        """The HMAC key agreed with the utility."""
        return SecretBytes(self._shared_key)

    def counter_payment(self, *, account_no: str, amount: Money, paid_at: datetime) -> Message:
        """The signed ``pay`` message for money taken at the bank's counter."""
        serial = self._next_serial(paid_at)
        fields = {
            "msg_type": "pay",
            "merchant_id": self.merchant_id,
            "serial_no": serial,
            "account_no": account_no,
            "amount": str(amount.minor),
            "txn_time": _beijing(paid_at, "%Y%m%d%H%M%S"),
            "teller": f"{self.bank_code}-07",
            "charset": "utf-8",
            "sign_type": "HMAC-SHA256",
        }
        fields["sign"] = self._sign(fields)
        return Message(_form(fields), {"Content-Type": _FORM})

    def batch_file(self, batch_date: date, lines: Sequence[BatchLine]) -> bytes:
        """The day's batch file: header, one detail per debit (paid or not), trailer."""
        layout = AGENT_BANK_LAYOUT
        total = sum((line.amount for line in lines), Money.zero(self.currency))
        stated = {"count": str(len(lines)), "total": total.format()}
        records = [
            self._record(
                layout.header_tag,
                layout.header,
                {
                    "batch_no": f"{self.bank_code}{batch_date:%Y%m%d}",
                    "batch_date": f"{batch_date:%Y%m%d}",
                    **stated,
                },
            )
        ]
        for line in lines:
            records.append(
                self._record(
                    layout.detail_tag,
                    layout.detail,
                    {
                        "account_no": line.account_no,
                        "amount": line.amount.format(),
                        "serial_no": self._next_serial(line.paid_at),
                        "result_code": line.result_code,
                        "result_msg": line.result_msg,
                        "txn_time": _beijing(line.paid_at, "%Y%m%d%H%M%S"),
                    },
                )
            )
        records.append(self._record(layout.trailer_tag, layout.trailer, stated))
        return "".join(record + "\r\n" for record in records).encode(layout.encoding)

    @staticmethod
    def _record(tag: str, columns: Mapping[str, int], values: Mapping[str, str]) -> str:
        layout = AGENT_BANK_LAYOUT
        cells = [""] * max(layout.record_type_column, *columns.values())
        cells[layout.record_type_column - 1] = tag
        for name, column in columns.items():
            cells[column - 1] = values[name]
        return layout.delimiter.join(cells)

    def _next_serial(self, at: datetime) -> str:
        self._serials += 1
        return f"{_beijing(at, '%Y%m%d')}{self._serials:08d}"

    def _sign(self, fields: Mapping[str, str]) -> str:
        message = bank_signing_string(fields).encode("utf-8")
        return hmac.new(self._shared_key, message, hashlib.sha256).hexdigest()


# ── recharge vouchers ───────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class RechargeCard:
    """One card as printed: serial, PIN (secret: never in a repr) and face value."""

    serial: str
    pin: SecretStr
    face_value: Money


class CardRetailer:
    """A shop selling the utility's recharge vouchers, stocked from the printer file."""

    def __init__(self, name: str) -> None:
        self.name = name
        # face value (minor units) → cards on the shelf, lowest serial first
        self._shelf: defaultdict[int, deque[RechargeCard]] = defaultdict(deque)

    def __repr__(self) -> str:
        return f"<CardRetailer {self.name!r} cards={self.in_stock}>"

    @property
    def in_stock(self) -> int:
        """Cards on the shelf."""
        return sum(len(cards) for cards in self._shelf.values())

    def stock(self, printer_file: bytes) -> int:
        """Put every card of a printer file (CSV, as ``VoucherService.issue_batch`` writes it)
        on the shelf; how many."""
        rows = csv.reader(io.StringIO(printer_file.decode("utf-8")))
        if tuple(next(rows, ())) != PRINTER_COLUMNS:
            raise ValueError("not a voucher printer file")
        added = 0
        for _batch, serial, pin, face_value, currency, _expires in rows:
            face = Money.parse(face_value, currency)
            self._shelf[face.minor].append(RechargeCard(serial, SecretStr(pin), face))
            added += 1
        return added

    def sell(self, wanted: Money) -> RechargeCard | None:
        """The card a customer who wants to pay ``wanted`` buys: the smallest face value that
        covers it, else the largest there is; None when the shelf is empty."""
        values = sorted(value for value, cards in self._shelf.items() if cards)
        if not values:
            return None
        covering = [value for value in values if value >= wanted.minor]
        return self._shelf[covering[0] if covering else values[-1]].popleft()


def redeem_request(card: RechargeCard, account_no: str, *, source: str) -> Message:
    """A customer's redemption of ``card`` for ``account_no``, as the app sends it (JSON)."""
    body = {
        "account_no": account_no,
        "serial": card.serial,
        "pin": card.pin.get_secret_value(),
        "source": source,
    }
    return Message(json.dumps(body).encode("utf-8"), {"Content-Type": _JSON})


def guessed_pin(length: int = 16) -> SecretStr:
    """A PIN someone guessed: random digits."""
    return SecretStr("".join(secrets.choice("0123456789") for _ in range(length)))
