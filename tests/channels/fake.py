"""A test-only channel adapter: HMAC-signed JSON notifications and a tiny CSV statement.

It shows the least a third-party channel must write, and lets the contract suite prove that
it checks an adapter it has never seen. It is also what the entry-point tests load.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import ClassVar

from pydantic import SecretStr

from paygate.channels.base import (
    ChannelAdapter,
    ChannelConfig,
    NotifyResult,
    Operation,
    PaymentSink,
    StatementSource,
    acknowledged,
    refused,
)
from paygate.channels.errors import SignatureError
from paygate.channels.wire import (
    Headers,
    iter_source_lines,
    make_intent,
    make_statement_line,
    parse_money,
    source_label,
    split_csv_line,
)
from paygate.errors import ParseError, PaygateError
from paygate.models import StatementLine, StatementLineKind


class FakeConfig(ChannelConfig):
    secret: SecretStr


def fake_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeAdapter(ChannelAdapter[FakeConfig]):
    name: ClassVar[str] = "fake"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.NOTIFY, Operation.STATEMENT})
    config_model: ClassVar[type[ChannelConfig]] = FakeConfig

    def handle_notify(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        try:
            self.check_body(body)
            given = Headers(headers, source=self.name).get("X-Fake-Signature") or ""
            expected = fake_signature(self.config.secret.get_secret_value(), body)
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise SignatureError("signature does not verify", field="X-Fake-Signature")
            try:
                message = json.loads(body)
                intent = make_intent(
                    channel=self.name,
                    channel_txn_id=str(message["txn"]),
                    account_no=str(message["account"]),
                    amount=parse_money(
                        str(message["amount"]),
                        self.config.currency,
                        source=self.name,
                        field="amount",
                    ),
                    paid_at=datetime.fromisoformat(str(message["paid_at"])),
                    names={},
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ParseError(
                    f"malformed message: {type(exc).__name__}", source=self.name
                ) from None
            receipt = sink.pay(intent)
        except PaygateError as exc:
            return refused(self.name, exc, body=b"ERR", content_type="text/plain")
        return acknowledged(receipt, body=b"OK", content_type="text/plain")

    def read_statement(self, source: StatementSource) -> Iterator[StatementLine]:
        label = source_label(source)
        for line_no, raw in iter_source_lines(source):
            try:
                fields = split_csv_line(raw.decode("utf-8"), source=label, line=line_no)
                txn, account, amount, fee, at = fields
                occurred_at = datetime.fromisoformat(at)
            except (UnicodeDecodeError, ValueError):
                raise ParseError("malformed line", source=label, line=line_no) from None
            currency = self.config.currency
            yield make_statement_line(
                line_no=line_no,
                kind=StatementLineKind.PAYMENT,
                gross=parse_money(amount, currency, source=label, line=line_no, field="amount"),
                fee=parse_money(fee, currency, source=label, line=line_no, field="fee"),
                occurred_at=occurred_at,
                channel_txn_id=txn,
                account_no=account,
                source=label,
            )


class NotAnAdapter:
    """Has the right names, but is not a ChannelAdapter: registration refuses it."""

    name = "impostor"
    operations = frozenset({Operation.STATEMENT})


class SilentRefundAdapter(FakeAdapter):
    """Implements handle_refund without declaring REFUND: registration refuses it."""

    name: ClassVar[str] = "silent"

    def handle_refund(
        self, body: bytes, headers: Mapping[str, str], sink: PaymentSink
    ) -> NotifyResult:
        return acknowledged(None, body=b"", content_type=None)


class UndeclaredNotifyAdapter(FakeAdapter):
    """Declares ORDER without implementing create_order: registration refuses it."""

    name: ClassVar[str] = "undeclared"
    operations: ClassVar[frozenset[Operation]] = frozenset(
        {Operation.NOTIFY, Operation.STATEMENT, Operation.ORDER}
    )


class NoStatementAdapter(ChannelAdapter[FakeConfig]):
    """Forgets read_statement: registration refuses it."""

    name: ClassVar[str] = "nostatement"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.STATEMENT})
    config_model: ClassVar[type[ChannelConfig]] = FakeConfig


class NamelessAdapter(FakeAdapter):
    """A name that is not a channel name: registration refuses it."""

    name: ClassVar[str] = "Not A Name"
