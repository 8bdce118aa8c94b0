"""CSV bank exports read through layouts, as Chinese and European banks write them."""

from __future__ import annotations

import io
from datetime import date

from paygate.money import Money
from paygate.reconcile.bank import BankFormat, CsvLayout, read_bank_csv, read_bank_statement

# An online-banking export of a utility's collection account: two title rows, a header, debit
# and credit columns, a running balance, and a totals row at the end. GBK, as such exports are.
CHINESE_EXPORT = "\n".join(
    [
        "账户明细查询",
        "账号：755912345610001,币种：人民币",
        "交易日期,交易时间,借方发生额,贷方发生额,余额,对方户名,对方账号,摘要,客户流水号,银行流水号",
        '2024年03月11日,09:15:02,,"12,050.00","1,012,050.00",张三,6222020200112233445,'
        "电费 户号0100234567,KIOSK-20240311-0001,B001",
        '2024年03月11日,10:01:44,15.00,,"1,012,035.00",,,账户管理费,,B002',
        '2024年03月11日,16:30:00,,350.50,"1,012,385.50",财付通支付科技有限公司,,微信缴费结算,'
        "WXPAY-SETTLE-20240310,B003",
        '合计,,15.00,"12,400.50",,,,,,',
        "",
    ]
)

CHINESE_LAYOUT = CsvLayout(
    currency="CNY",
    account_id="755912345610001",
    encoding="gbk",
    skip_rows=2,
    footer_rows=1,
    date_column="交易日期",
    date_format="%Y年%m月%d日",
    debit_column="借方发生额",
    credit_column="贷方发生额",
    debits_negative=False,
    thousands_separator=",",
    balance_column="余额",
    counterparty_name_column="对方户名",
    counterparty_account_column="对方账号",
    details_column="摘要",
    reference_column="客户流水号",
    bank_reference_column="银行流水号",
)


def cny(text: str) -> Money:
    return Money.parse(text, "CNY")


def eur(text: str) -> Money:
    return Money.parse(text, "EUR")


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def test_chinese_bank_export_in_gbk() -> None:
    data = CHINESE_EXPORT.encode("gbk")
    (statement,) = read_bank_csv(io.BytesIO(data), CHINESE_LAYOUT)
    assert statement.format is BankFormat.CSV
    assert statement.line_no == 3  # the header row
    assert statement.account_id == "755912345610001"
    assert statement.currency == "CNY"
    assert [entry.line_no for entry in statement.entries] == [4, 5, 6]
    assert [entry.amount for entry in statement.entries] == [
        cny("12050.00"),
        cny("-15.00"),
        cny("350.50"),
    ]
    payment = statement.entries[0]
    assert payment.booking_date == date(2024, 3, 11)
    assert payment.customer_reference == "KIOSK-20240311-0001"
    assert payment.bank_reference == "B001"
    assert payment.counterparty_name == "张三"
    assert payment.counterparty_account == "6222020200112233445"
    assert payment.details == "电费 户号0100234567"
    assert statement.entries[1].counterparty_name is None
    # Opening = first balance before its row; closing = the last running balance.
    assert statement.opening_balance == cny("1000000.00")
    assert statement.closing_balance == cny("1012385.50")
    assert statement.opening_date == statement.closing_date == date(2024, 3, 11)
    assert statement.balanced is True


def test_a_missing_row_shows_as_unbalanced() -> None:
    lines = CHINESE_EXPORT.splitlines(keepends=True)
    del lines[4]  # the fee row
    (statement,) = read_bank_csv(io.BytesIO("".join(lines).encode("gbk")), CHINESE_LAYOUT)
    assert statement.balance_difference == cny("15.00")
    assert statement.balanced is False


def test_newest_first_export_with_text_stream() -> None:
    text = "\n".join(
        [
            "Date;Amount;Balance;Reference",
            "12.03.2024;-1.234,50;8.765,50;R3",
            "11.03.2024;10.000,00;10.000,00;R2",
        ]
    )
    layout = CsvLayout(
        currency="EUR",
        delimiter=";",
        date_column="Date",
        date_format="%d.%m.%Y",
        amount_column="Amount",
        decimal_separator=",",
        thousands_separator=".",
        balance_column="Balance",
        reference_column="Reference",
        newest_first=True,
    )
    (statement,) = read_bank_csv(io.StringIO(text), layout)
    assert [entry.amount for entry in statement.entries] == [eur("-1234.50"), eur("10000")]
    assert statement.opening_balance == eur("0")
    assert statement.opening_date == date(2024, 3, 11)
    assert statement.closing_balance == eur("8765.50")
    assert statement.closing_date == date(2024, 3, 12)
    assert statement.balanced is True


def test_positional_columns_direction_markers_and_negative_forms() -> None:
    data = (
        "20240311,100.00,贷,A\n20240311,20.00,借,B\n20240312,(5.00),,C\n20240312,7.00-,,D\n"
    ).encode()
    directed = CsvLayout(
        currency="CNY",
        has_header=False,
        date_column=0,
        date_format="%Y%m%d",
        amount_column=1,
        direction_column=2,
        reference_column=3,
    )
    (statement,) = read_bank_csv(io.BytesIO(b"".join(data.splitlines(True)[:2])), directed)
    assert [entry.amount for entry in statement.entries] == [cny("100"), cny("-20")]
    assert statement.line_no == 1
    assert statement.opening_balance is None
    assert statement.balanced is None
    signed = directed.model_copy(update={"direction_column": None})
    (statement,) = read_bank_csv(io.BytesIO(b"".join(data.splitlines(True)[2:])), signed)
    assert [entry.amount for entry in statement.entries] == [cny("-5"), cny("-7")]
    assert [entry.customer_reference for entry in statement.entries] == ["C", "D"]


def test_bank_that_writes_money_out_as_positive() -> None:
    layout = CsvLayout(
        currency="USD", date_column="date", amount_column="amount", debits_negative=False
    )
    data = b"date,amount\n2024-03-11,25.00\n2024-03-11,-100.00\n"
    (statement,) = read_bank_csv(io.BytesIO(data), layout)
    assert [entry.amount for entry in statement.entries] == [usd("-25"), usd("100")]


def test_header_only_export_is_an_empty_statement_and_bom_is_ignored() -> None:
    layout = CsvLayout(currency="CNY", date_column="日期", amount_column="金额")
    (statement,) = read_bank_csv(io.BytesIO("\ufeff日期,金额\n".encode()), layout)
    assert statement.entries == ()
    assert statement.line_no == 1
    assert statement.balanced is None


def test_read_bank_statement_falls_back_to_the_csv_layout() -> None:
    data = CHINESE_EXPORT.encode("gbk")
    statements = list(read_bank_statement(io.BytesIO(data), csv_layout=CHINESE_LAYOUT))
    assert statements == list(read_bank_csv(io.BytesIO(data), CHINESE_LAYOUT))
    assert list(read_bank_statement(io.BytesIO(data), "csv", CHINESE_LAYOUT)) == statements
