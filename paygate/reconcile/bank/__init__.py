"""Bank statement readers: the bank leg of reconciliation.

Every reader turns one file format into the same immutable records, :class:`BankStatement`
holding :class:`BankEntry` lines with signed :class:`~paygate.money.Money` amounts (positive is
money into the utility's account). The readers keep two promises:

* input that cannot be read raises :class:`~paygate.errors.ParseError` with the source, the
  1-based line and the field — never any other exception, whatever the bytes;
* a statement whose balances do not agree with its entries is read, not refused;
  :attr:`BankStatement.balanced` reports it.

Readers stream: they yield statement by statement and hold one line (one XML element for
camt.053) of the file at a time besides the statement being built. A reader that raises part
way has already yielded the statements before the error, so callers that act on statements read
the whole file first (``list(read_bank_statement(path))``).
"""

from paygate.reconcile.bank._input import BankSource
from paygate.reconcile.bank.bai2 import read_bai2
from paygate.reconcile.bank.camt053 import read_camt053
from paygate.reconcile.bank.csvfile import Column, CsvLayout, read_bank_csv
from paygate.reconcile.bank.detect import detect_bank_format, read_bank_statement
from paygate.reconcile.bank.model import (
    BankBalance,
    BankEntry,
    BankFormat,
    BankStatement,
    BankTransaction,
)
from paygate.reconcile.bank.mt940 import read_mt940

__all__ = [
    "BankBalance",
    "BankEntry",
    "BankFormat",
    "BankSource",
    "BankStatement",
    "BankTransaction",
    "Column",
    "CsvLayout",
    "detect_bank_format",
    "read_bai2",
    "read_bank_csv",
    "read_bank_statement",
    "read_camt053",
    "read_mt940",
]
