"""The bank statement package's public names are the ones documented."""

from __future__ import annotations

import paygate.reconcile.bank as bank


def test_public_names() -> None:
    assert sorted(bank.__all__) == [
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
    for name in bank.__all__:
        assert getattr(bank, name) is not None
