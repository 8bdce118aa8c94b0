"""One exception hierarchy for everything paygate refuses.

Every refusal names what was wrong (a field, a file line, a signature, a replay) so that a
program can act on it (``code``) and a person can read it. A refusal never leaves a partial
change behind: the transaction that raised it is rolled back.

::

    PaygateError
    ├── InvalidInputError             input that can never succeed as sent (field named)
    │   ├── InvalidAmountError        not a positive, exact amount
    │   ├── CurrencyMismatchError     two currencies where one is required
    │   ├── NaiveDatetimeError        a datetime without a time zone
    │   └── ParseError                a file or message that cannot be read (line named)
    ├── NotFoundError                 something named does not exist
    │   ├── UnknownAccountError
    │   ├── UnknownBillError
    │   ├── UnknownPaymentError
    │   └── UnknownOrderError
    ├── ConflictError                 the request contradicts what is already recorded
    │   ├── IdempotencyConflictError  same channel transaction id, different content
    │   ├── BillConflictError         same bill number, different data
    │   ├── DuplicateAccountError     account number already open, different data
    │   └── InvalidStateError         the operation does not apply in the current state
    ├── AuthenticationError           a signature, key, MAC or PIN that does not verify
    │   └── ReplayError               a nonce or timestamp already seen or out of window
    ├── UnsupportedOperationError     a channel or head-end does not offer this operation
    ├── LedgerError                   the ledger refused an entry (it would not balance)
    ├── IntegrityError                the stored ledger fails verification
    ├── StoreError                    the database is unreachable, un-migrated or misconfigured
    │   └── SchemaNotReadyError       the schema is missing or behind the code
    └── ConfigurationError            settings that cannot work
"""

from __future__ import annotations

__all__ = [
    "AccountClosedError",
    "AuthenticationError",
    "BillConflictError",
    "ConfigurationError",
    "ConflictError",
    "CurrencyMismatchError",
    "DuplicateAccountError",
    "IdempotencyConflictError",
    "IntegrityError",
    "InvalidAmountError",
    "InvalidInputError",
    "InvalidStateError",
    "LedgerError",
    "NaiveDatetimeError",
    "NotFoundError",
    "ParseError",
    "PaygateError",
    "ReplayError",
    "SchemaNotReadyError",
    "StoreError",
    "UnknownAccountError",
    "UnknownBillError",
    "UnknownOrderError",
    "UnknownPaymentError",
    "UnsupportedOperationError",
]


class PaygateError(Exception):
    """Root of every error paygate raises on purpose."""

    code: str = "paygate_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message


class InvalidInputError(PaygateError):
    """Input that can never succeed as sent; ``field`` names the offending part."""

    code = "invalid_input"


class InvalidAmountError(InvalidInputError):
    """An amount that is not a positive, exact number of minor units of a known currency."""

    code = "invalid_amount"


class CurrencyMismatchError(InvalidInputError):
    """Two currencies where one is required (an account's currency, a sum)."""

    code = "currency_mismatch"


class NaiveDatetimeError(InvalidInputError):
    """A datetime without a time zone; paygate stores UTC and needs to know the offset."""

    code = "naive_datetime"


class ParseError(InvalidInputError):
    """A file or message that cannot be read; names the source and line where known."""

    code = "parse_error"

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        text = super().__str__()
        return f"{where}: {text}" if where else text


class AccountClosedError(InvalidInputError):
    """The account is closed (销户): it takes no new bill, and never will again."""

    code = "account_closed"


class NotFoundError(PaygateError):
    """Something named in the request does not exist."""

    code = "not_found"


class UnknownAccountError(NotFoundError):
    """No customer account with that account number."""

    code = "unknown_account"


class UnknownBillError(NotFoundError):
    """No bill with that bill number."""

    code = "unknown_bill"


class UnknownPaymentError(NotFoundError):
    """No payment with that id."""

    code = "unknown_payment"


class UnknownOrderError(NotFoundError):
    """No supply order with that id."""

    code = "unknown_order"


class ConflictError(PaygateError):
    """The request contradicts what is already recorded."""

    code = "conflict"


class IdempotencyConflictError(ConflictError):
    """The same (channel, channel transaction id) was used before with different content."""

    code = "idempotency_conflict"


class BillConflictError(ConflictError):
    """The bill number is already issued with different data."""

    code = "bill_conflict"


class DuplicateAccountError(ConflictError):
    """The account number is already open with different attributes."""

    code = "duplicate_account"


class InvalidStateError(ConflictError):
    """The operation does not apply to the current state (a reversed payment, say)."""

    code = "invalid_state"


class AuthenticationError(PaygateError):
    """A signature, key, MAC or PIN that does not verify."""

    code = "authentication_failed"


class ReplayError(AuthenticationError):
    """A request whose nonce was already used or whose timestamp is out of the window."""

    code = "replayed_request"


class UnsupportedOperationError(PaygateError):
    """The channel or head-end does not offer this operation."""

    code = "unsupported_operation"


class LedgerError(PaygateError):
    """The ledger refused an entry, for example because its postings do not balance."""

    code = "ledger_error"


class IntegrityError(PaygateError):
    """The stored ledger fails verification: a balance, an entry or a seal does not agree."""

    code = "integrity_error"


class StoreError(PaygateError):
    """The database cannot be used as configured."""

    code = "store_error"


class SchemaNotReadyError(StoreError):
    """The database schema is missing or older than this code; run ``paygate db upgrade``."""

    code = "schema_not_ready"


class ConfigurationError(PaygateError):
    """Settings that cannot work, named."""

    code = "configuration_error"
