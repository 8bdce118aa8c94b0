"""The records every bank statement reader yields, whatever the file format.

Invariant: a :class:`BankStatement` is in one currency. Its opening and closing balances, its
informational balances and every entry amount are :class:`~paygate.money.Money` of that currency,
and entry amounts are signed from the utility's side: positive is money into its account,
negative is money out. A statement whose balances do not agree with its entries is still a valid
record; :attr:`BankStatement.balanced` says so, it is not an error.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paygate.money import Money

__all__ = [
    "BankBalance",
    "BankEntry",
    "BankFormat",
    "BankStatement",
    "BankTransaction",
]


class BankFormat(StrEnum):
    """A bank statement file format paygate reads."""

    MT940 = "mt940"
    CAMT053 = "camt053"
    BAI2 = "bai2"
    CSV = "csv"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BankBalance(_Frozen):
    """A balance or summary figure the statement states besides opening and closing.

    ``code`` is the format's own name for it: ``"64"`` / ``"65"`` (MT940 available and forward
    available), ``"CLAV"`` / ``"FWAV"`` / ``"ITBD"`` … (camt.053), ``"040"`` / ``"100"`` …
    (BAI2 status and summary type codes).
    """

    code: str
    amount: Money
    as_of: date | None = None
    item_count: int | None = None


class BankTransaction(_Frozen):
    """One transaction inside a batch entry (a camt.053 ``TxDtls``).

    ``amount`` is signed like an entry's and is absent when the bank does not break the batch
    total down.
    """

    amount: Money | None = None
    customer_reference: str | None = None
    bank_reference: str | None = None
    details: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None


class BankEntry(_Frozen):
    """One booking on the bank statement.

    ``customer_reference`` is what reconciliation matches on: the MT940 reference for the account
    owner, the camt.053 end-to-end id (or a batch's payment information id), the BAI2 customer
    reference. The placeholders ``NONREF`` and ``NOTPROVIDED`` are read as no reference.
    ``reversal`` marks a booking that undoes an earlier one; its sign is already in ``amount``
    (an MT940 ``RC``, reversal of a credit, is money out). ``booked`` is false for camt.053
    entries the bank reports as pending or informational; those do not move the balance.
    """

    line_no: int = Field(ge=1)
    booking_date: date | None = None
    value_date: date | None = None
    amount: Money
    reversal: bool = False
    booked: bool = True
    type_code: str | None = None
    customer_reference: str | None = None
    bank_reference: str | None = None
    details: str | None = None
    supplementary_details: str | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    transactions: tuple[BankTransaction, ...] = ()


class BankStatement(_Frozen):
    """One statement of one account, as a bank statement file states it.

    ``line_no`` is where the statement starts in the file (MT940 ``:20:``, camt.053 ``<Stmt>``,
    BAI2 ``03`` record, the first CSV row). ``opening_balance`` and ``closing_balance`` are absent
    only where the format lets a bank leave them out (BAI2 without type codes 010/015, a CSV
    layout without a balance column).
    """

    format: BankFormat
    line_no: int = Field(ge=1)
    account_id: str | None
    statement_id: str | None = None
    sequence: str | None = None
    currency: str
    opening_balance: Money | None = None
    opening_date: date | None = None
    closing_balance: Money | None = None
    closing_date: date | None = None
    entries: tuple[BankEntry, ...] = ()
    balances: tuple[BankBalance, ...] = ()
    information: str | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> BankStatement:
        amounts: list[tuple[str, Money]] = [
            (f"entry at line {entry.line_no}", entry.amount) for entry in self.entries
        ]
        amounts += [(f"balance {balance.code}", balance.amount) for balance in self.balances]
        if self.opening_balance is not None:
            amounts.append(("opening balance", self.opening_balance))
        if self.closing_balance is not None:
            amounts.append(("closing balance", self.closing_balance))
        for what, money in amounts:
            if money.currency != self.currency:
                raise ValueError(
                    f"{what} is in {money.currency}, the statement is in {self.currency}"
                )
        return self

    @property
    def total(self) -> Money:
        """The sum of the booked entries: the statement's net movement."""
        minor = sum(entry.amount.minor for entry in self.entries if entry.booked)
        return Money(minor, self.currency)

    @property
    def balance_difference(self) -> Money | None:
        """Opening balance + booked entries − closing balance; zero when the statement balances.

        ``None`` when the file states no opening or no closing balance, so nothing can be checked.
        """
        if self.opening_balance is None or self.closing_balance is None:
            return None
        return self.opening_balance + self.total - self.closing_balance

    @property
    def balanced(self) -> bool | None:
        """Whether the balances agree with the entries; ``None`` when there is nothing to check."""
        difference = self.balance_difference
        if difference is None:
            return None
        return not difference
