"""The bank agent adapter: configuration and the channel's door to the core."""

from __future__ import annotations

import codecs
import hashlib
import logging
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, ClassVar, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import Field, SecretBytes, SecretStr, ValidationInfo, field_validator, model_validator

from paygate.channels.bank_agent.batch import (
    BatchFileLayout,
    BatchFileSummary,
    DelimitedLayout,
    FixedWidthLayout,
    VerifiedBatchFile,
    _BatchReader,
    _lines,
    _opened,
)
from paygate.channels.bank_agent.realtime import (
    _FORM,
    MIN_HMAC_KEY_BYTES,
    BankMessageType,
    BankNotification,
    SignMethod,
    bank_txn_id,
    counter_intent,
    verify_bank_notify,
)
from paygate.channels.bank_agent.statement import bank_agent_settlement, read_bank_statement
from paygate.channels.base import (
    HELD_ERRORS,
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    NotifyResult,
    Operation,
    PaymentSink,
    SettlementRules,
    StatementSource,
    acknowledged,
    held_for_suspense,
    refused,
)
from paygate.channels.errors import MerchantMismatchError
from paygate.channels.signing import KeyEncoding, decode_secret, load_verifying_key
from paygate.channels.wire import FORM_CHARSETS, source_label
from paygate.errors import (
    ConfigurationError,
    InvalidStateError,
    ParseError,
    PaygateError,
    UnknownPaymentError,
)
from paygate.models import PaymentIntent, Receipt, StatementLine

_log = logging.getLogger("paygate.channels.bank_agent")

_SPOOL_BYTES: Final = 4 * 1024 * 1024


# ── the adapter ──────────────────────────────────────────────────────────────────────────


class BankAgentConfig(ChannelConfig):
    """Configuration of the ``bank_agent`` channel: one bank's agreement."""

    merchant_id: str = Field(
        min_length=1, max_length=32, description="the utility's collection agreement number"
    )
    bank_code: str = Field(
        pattern=r"^[A-Za-z0-9]{2,12}$", description="prefix of this bank's serials"
    )
    sign_method: SignMethod
    bank_public_keys: tuple[str, ...] = Field(
        default=(), max_length=4, description="RSA: the bank's key(s), PEM; several in rotation"
    )
    shared_key_encoding: KeyEncoding = Field(
        default=KeyEncoding.UTF8,
        description="HMAC: how the shared_key text becomes the key's bytes (utf-8, hex, base64)",
    )
    shared_key: SecretBytes | None = Field(
        default=None,
        description="HMAC: the shared key, as text in shared_key_encoding (bytes are taken as "
        "they are)",
    )
    notify_charset: str = Field(
        default="utf-8", description="charset of a message that declares none"
    )
    batch_layout: BatchFileLayout | None = None
    batch_chunk: int = Field(default=500, ge=1, le=100_000)
    statement_encoding: str = "gbk"
    settlement: SettlementRules = Field(default_factory=bank_agent_settlement)

    @field_validator("shared_key", mode="before")
    @classmethod
    def _shared_key_text(cls, value: object, info: ValidationInfo) -> object:
        # Text (TOML, the environment) is decoded as configured; bytes are already the key.
        encoding = info.data.get("shared_key_encoding")
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and isinstance(encoding, KeyEncoding):
            return decode_secret(value, encoding)
        return value

    @field_validator("bank_public_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            load_verifying_key(text)
        return value

    @field_validator("notify_charset")
    @classmethod
    def _charset(cls, value: str) -> str:
        if value.lower() not in FORM_CHARSETS:
            raise ValueError(f"charset must be one of {sorted(FORM_CHARSETS)}")
        return value

    @field_validator("statement_encoding")
    @classmethod
    def _statement_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _method(self) -> BankAgentConfig:
        if self.sign_method is SignMethod.RSA:
            if not self.bank_public_keys or self.shared_key is not None:
                raise ValueError("an RSA bank needs bank_public_keys and no shared_key")
        else:
            if self.shared_key is None or self.bank_public_keys:
                raise ValueError("an HMAC bank needs shared_key and no bank_public_keys")
            if len(self.shared_key.get_secret_value()) < MIN_HMAC_KEY_BYTES:
                raise ValueError(f"the shared key must be at least {MIN_HMAC_KEY_BYTES} bytes")
        return self


def _form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode("ascii")


class BankAgentAdapter(ChannelAdapter[BankAgentConfig]):
    """One agent bank: signed counter payments and reversals, daily batch files, statement.

    Answers are form-encoded: ``result=paid`` (with ``payment_id``), ``reversed``,
    ``original_not_found``; ``result=refused`` with ``error_code`` otherwise. A replayed
    message gets the same bytes it got the first time.
    """

    name: ClassVar[str] = "bank_agent"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.NOTIFY, Operation.REVERSAL, Operation.BATCH_FILE, Operation.STATEMENT}
    )
    config_model: ClassVar[type[ChannelConfig]] = BankAgentConfig

    def __init__(self, config: BankAgentConfig, context: AdapterContext | None = None) -> None:
        super().__init__(config, context)
        self._rsa_keys = tuple(load_verifying_key(text) for text in config.bank_public_keys)
        self._hmac_key = (
            config.shared_key.get_secret_value() if config.shared_key is not None else None
        )

    # real-time messages

    def verify_notify(self, body: bytes, headers: Mapping[str, str]) -> BankNotification:
        """Check size, signature and agreement number of a message; nothing is posted."""
        self.check_body(body)
        notification = verify_bank_notify(
            body,
            method=self.config.sign_method,
            rsa_keys=self._rsa_keys,
            hmac_key=self._hmac_key,
            default_charset=self.config.notify_charset,
            source=self.name,
        )
        if notification.merchant_id != self.config.merchant_id:
            raise MerchantMismatchError("message for another agreement", field="merchant_id")
        return notification

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A counter payment or a reversal, dispatched on ``msg_type``."""
        return self._answer(body, headers, sink, None)

    def handle_reversal(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        """A reversal (冲正) only."""
        return self._answer(body, headers, sink, BankMessageType.REVERSAL)

    def _answer(
        self,
        body: bytes,
        headers: Mapping[str, str],
        sink: PaymentSink,
        expected: BankMessageType | None,
    ) -> NotifyResult:
        receipt: Receipt | None = None
        n = None
        try:
            n = self.verify_notify(body, headers)
            if expected is not None and n.msg_type is not expected:
                raise ParseError(
                    f"a {n.msg_type.value} message sent to the {expected.value} operation",
                    source=self.name,
                    field="msg_type",
                )
            if n.msg_type is BankMessageType.PAY:
                intent = counter_intent(
                    n,
                    channel=self.name,
                    bank_code=self.config.bank_code,
                    currency=self.config.currency,
                )
                receipt = sink.pay(self.admit(intent, time_field="txn_time"))
                # Nothing here depends on whether the core replayed: a bank retrying gets
                # the bytes of its first answer.
                fields = {
                    "result": "paid",
                    "serial_no": n.serial_no,
                    "payment_id": str(receipt.payment_id),
                    "account_no": receipt.account_no,
                    "amount": str(receipt.amount.minor),
                }
            else:
                fields = self.reverse(n, sink)
        except HELD_ERRORS as exc:
            # Raised only for a verified payment: the counter took the money, and the bank
            # would repeat the message for hours without an answer that stops it.
            assert n is not None
            held = {
                "result": "held",
                "serial_no": n.serial_no,
                "account_no": n.account_no or "",
                "error_code": exc.code,
            }
            return held_for_suspense(
                self.name,
                exc,
                channel_txn_id=bank_txn_id(self.config.bank_code, n.serial_no),
                body=_form(held),
                content_type=_FORM,
            )
        except PaygateError as exc:
            answer = {"result": "refused", "error_code": exc.code}
            return refused(self.name, exc, body=_form(answer), content_type=_FORM)
        return acknowledged(receipt, body=_form(fields), content_type=_FORM)

    def reverse(self, notification: BankNotification, sink: PaymentSink) -> dict[str, str]:
        """Reverse the payment a verified reversal names; the answer's fields.

        A payment already reversed answers ``reversed`` again (the bank repeats a reversal
        until it hears back). A serial the core does not know answers
        ``original_not_found``: the bank's payment never reached the ledger, so there is
        nothing to undo, and the bank needs to hear that rather than retry.
        """
        n = notification
        if not n.orig_serial_no:
            raise ParseError(
                "a reversal needs orig_serial_no", source=self.name, field="orig_serial_no"
            )
        original = bank_txn_id(self.config.bank_code, n.orig_serial_no)
        fields = {"serial_no": n.serial_no, "orig_serial_no": n.orig_serial_no}
        try:
            sink.reverse_by_channel_txn(self.name, original, f"bank reversal {n.serial_no}")
        except InvalidStateError as exc:
            _log.info("%s: %s not reversed again: %r", self.name, original, str(exc))
        except UnknownPaymentError:
            _log.warning(
                "%s: reversal %s names %s, which the ledger does not hold",
                self.name,
                n.serial_no,
                original,
            )
            return {"result": "original_not_found", **fields}
        return {"result": "reversed", **fields}

    # batch files

    def _layout(self) -> DelimitedLayout | FixedWidthLayout:
        layout = self.config.batch_layout
        if layout is None:
            raise ConfigurationError(
                "channel 'bank_agent' has no batch_layout configured", field="batch_layout"
            )
        return layout

    def _batch_reader(self, label: str) -> _BatchReader:
        return _BatchReader(
            self._layout(),
            channel=self.name,
            bank_code=self.config.bank_code,
            currency=self.config.currency,
            zone=ZoneInfo(self.config.settlement.timezone),
            source=label,
            max_payment=self.config.max_payment,
        )

    def verify_batch_file(self, source: StatementSource) -> VerifiedBatchFile:
        """Read a batch file once, checking every line, count and total; keep a copy.

        Raises :class:`~paygate.errors.ParseError` naming the 1-based line of the first
        defect. Nothing is posted here.
        """
        label = source_label(source)
        layout = self._layout()
        limit = layout.max_line_bytes
        # Not a with-block: the copy outlives this call, owned and closed by VerifiedBatchFile.
        copy: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        try:
            digest = hashlib.sha256()
            reader = self._batch_reader(label)
            with _opened(source) as stream:
                for _ in reader.read(
                    _lines(stream, limit=limit, source=label, digest=digest, copy=copy)
                ):
                    pass
            summary = BatchFileSummary(
                source=label,
                sha256=digest.hexdigest(),
                size=copy.tell(),
                lines=reader.lines,
                batch_no=reader.batch_no,
                batch_date=reader.batch_date,
                count=reader.count,
                total=reader.total,
                success_count=reader.success_count,
                success_total=reader.success_total,
            )
        except BaseException:
            copy.close()
            raise
        return VerifiedBatchFile(summary, copy, lambda: self._batch_reader(label), limit)

    def read_batch_file(self, source: StatementSource) -> Iterator[PaymentIntent]:
        """The paid details' payments, yielded only after the whole file verified.

        The first ``next()`` reads and checks the entire file; a bad file raises there,
        before any payment is yielded. :func:`post_batch_file` also reports failed debits
        and what the core did with each payment.
        """
        with self.verify_batch_file(source) as verified:
            yield from verified.intents()

    # statement

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        """Read the bank's settlement statement CSV."""
        return read_bank_statement(
            source,
            currency=self.config.currency,
            bank_code=self.config.bank_code,
            encoding=self.config.statement_encoding,
        )
