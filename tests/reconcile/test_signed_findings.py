"""A finding's money carries its direction, by one rule, in every output that shows it.

A refund line is money going back to the customer: negative. Its ledger side is the original
payment's reversal while the original is reversed, and nothing (0.00) while it is still
posted, so a refund the ledger has not given back shows the money that left as its difference
(it read 0.00 when both sides were shown positive). `paygate findings list` (table and
--json), the JSON, CSV and HTML reports and the console's finance page show the same figures,
on both databases.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import typer
from typer.testing import CliRunner

from paygate.cli.reconcile import findings_app
from paygate.gateway import Gateway
from paygate.models import StatementLineKind
from paygate.money import Money
from paygate.reconcile import Finding, FindingClass, ReconciliationRun, reconcile_bank_file
from paygate.reconcile.model import class_amount, direction, signed_amounts
from paygate.reconcile.report import render_csv, render_html, render_json
from paygate.reports.i18n import format_money
from tests.conftest import SHARED_DATA
from tests.reconcile.support import all_findings, line, pay, run_lines
from tests.reconcile.test_report_figures import ONE_ACCOUNT

REFUND = StatementLineKind.REFUND
ONLY_IN_LEDGER = FindingClass.ONLY_IN_LEDGER

app = typer.Typer()
app.add_typer(findings_app, name="findings")


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


# (class, kind, key, amount, ledger amount, payment status) -> (statement, ledger, difference)
MATCHED, MISMATCH, IN_STATEMENT = (
    FindingClass.MATCHED,
    FindingClass.AMOUNT_MISMATCH,
    FindingClass.ONLY_IN_STATEMENT,
)
RULE = [
    # a payment line and its payment
    (MATCHED, "payment", "line:x", 1000, 1000, "posted", (1000, 1000, 0)),
    (MISMATCH, "payment", "txn:P", 1200, 1000, "posted", (1200, 1000, 200)),
    (IN_STATEMENT, "payment", "txn:P", 900, None, None, (900, None, 900)),
    # a refund whose original is still posted: the whole refund left, the ledger gave nothing
    (IN_STATEMENT, "refund", "rev:P#1", 3000, 3000, "posted", (-3000, 0, -3000)),
    # a payment held in suspense for a closed account has not been given back either
    (IN_STATEMENT, "refund", "rev:P#1", 3000, 3000, "suspense", (-3000, 0, -3000)),
    # ... and once the original is reversed, the two agree
    (IN_STATEMENT, "refund", "rev:P#1", 3000, 3000, "reversed", (-3000, -3000, 0)),
    (FindingClass.REVERSAL_MATCHED, "void", "rev:P#1", 4000, 4000, "reversed", (-4000, -4000, 0)),
    # a partial refund of a reversed payment: the ledger gave back more than the statement shows
    (MISMATCH, "reversal", "rev:P#1", 500, 2000, "reversed", (-500, -2000, 1500)),
    (MISMATCH, "refund", "rev:P#1", 500, 2000, "posted", (-500, 0, -500)),
    # a refund naming no payment the ledger has
    (IN_STATEMENT, "refund", "rev:Q#1", 700, None, None, (-700, None, -700)),
    # only in the ledger: a payment, money in suspense, a reversal
    (ONLY_IN_LEDGER, None, "payment:7", 800, None, "posted", (None, 800, -800)),
    (ONLY_IN_LEDGER, None, "suspense:9", 500, None, None, (None, 500, -500)),
    (ONLY_IN_LEDGER, None, "reversal:7", 800, None, "reversed", (None, -800, 800)),
    # a bank entry, as the bank states it
    (FindingClass.BANK_DEBIT, None, "st:4", -250, None, None, (-250, None, -250)),
    (FindingClass.BANK_UNMATCHED, None, "st:5", 9000, None, None, (9000, None, 9000)),
]


@pytest.mark.parametrize(("klass", "kind", "key", "amount", "ledger", "status", "want"), RULE)
def test_one_rule_signs_every_kind_of_finding(
    klass: FindingClass,
    kind: str | None,
    key: str,
    amount: int,
    ledger: int | None,
    status: str | None,
    want: tuple[int | None, int | None, int],
) -> None:
    line_kind = None if kind is None else StatementLineKind(kind)
    got = signed_amounts(
        klass,
        line_kind,
        key,
        cny(amount),
        None if ledger is None else cny(ledger),
        status,  # type: ignore[arg-type]
    )
    statement, in_ledger, difference = want
    assert got.statement == (None if statement is None else cny(statement))
    assert got.ledger == (None if in_ledger is None else cny(in_ledger))
    assert got.difference == cny(difference)
    # the class total counts the side the finding is about, by the same direction
    side = got.statement if got.statement is not None else got.ledger
    assert side is not None
    assert class_amount(klass, line_kind, key, amount) == side.minor
    assert direction(line_kind, key) == (1 if side.minor * amount >= 0 else -1)


def test_a_bank_statement_that_does_not_balance_counts_by_its_size() -> None:
    assert class_amount(FindingClass.BANK_UNBALANCED, None, "bank:x", -300) == 300
    assert signed_amounts(FindingClass.BANK_UNBALANCED, None, "bank:x", cny(-300), None, None) == (
        signed_amounts(FindingClass.BANK_DEBIT, None, "bank:x", cny(-300), None, None)
    )


@pytest.fixture
def day(gateway: Gateway) -> tuple[Gateway, ReconciliationRun]:
    """A kiosk day with a refund against a posted original (R2), a partial refund against a
    reversed one (R3), and a refund the ledger matched with its reversal (R1)."""
    for account in ("A1", "A2", "A3"):
        gateway.open_account(account)
    reversed_one = pay(gateway, "P1", "A1", 4000)
    gateway.reverse(reversed_one.payment_id, "refunded")
    pay(gateway, "P2", "A2", 3000)
    partial = pay(gateway, "P3", "A3", 2000)
    gateway.reverse(partial.payment_id, "refunded in full")
    run = run_lines(
        gateway,
        [
            line(2, "P1", "A1", 4000),
            line(3, "R1", "A1", 4000, kind=REFUND, original="P1"),
            line(4, "P2", "A2", 3000),
            line(5, "R2", "A2", 3000, kind=REFUND, original="P2"),
            line(6, "P3", "A3", 2000),
            line(7, "R3", "A3", 500, kind=REFUND, original="P3"),
        ],
    )
    return gateway, run


def _by_txn(found: list[Finding]) -> dict[str, Finding]:
    return {f.channel_txn_id: f for f in found if f.channel_txn_id}


def test_the_findings_carry_their_signed_amounts(day: tuple[Gateway, ReconciliationRun]) -> None:
    gateway, run = day
    found = _by_txn(all_findings(gateway, run))
    r1, r2, r3 = found["R1"], found["R2"], found["R3"]
    assert (r1.finding_class, r1.payment_status) == (FindingClass.REVERSAL_MATCHED, "reversed")
    assert (r2.finding_class, r2.payment_status) == (FindingClass.ONLY_IN_STATEMENT, "posted")
    assert (r3.finding_class, r3.payment_status) == (FindingClass.AMOUNT_MISMATCH, "reversed")
    assert (r1.signed.statement, r1.signed.ledger, r1.signed.difference) == (
        cny(-4000),
        cny(-4000),
        cny(0),
    )
    assert (r2.signed.statement, r2.signed.ledger, r2.signed.difference) == (
        cny(-3000),
        cny(0),
        cny(-3000),
    )
    assert (r3.signed.statement, r3.signed.ledger, r3.signed.difference) == (
        cny(-500),
        cny(-2000),
        cny(1500),
    )


def test_the_payments_status_is_read_as_it_is_now(day: tuple[Gateway, ReconciliationRun]) -> None:
    gateway, run = day
    [r2] = [f for f in all_findings(gateway, run) if f.channel_txn_id == "R2"]
    assert r2.payment_id is not None and r2.signed.difference == cny(-3000)
    gateway.reverse(r2.payment_id, "the refund the statement shows")
    [again] = [f for f in all_findings(gateway, run) if f.channel_txn_id == "R2"]
    assert again.payment_status == "reversed"
    assert (again.signed.ledger, again.signed.difference) == (cny(-3000), cny(0))


def test_findings_list_shows_a_refund_negative_with_its_difference(
    day: tuple[Gateway, ReconciliationRun],
) -> None:
    gateway, _run = day
    url = gateway.store.url
    result = CliRunner().invoke(app, ["findings", "list", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    rows = {row["subject"]: row for row in json.loads(result.output)["items"]}
    # R1 agrees: no open finding. P3's reversal is only in the ledger (R3 is not all of it),
    # past its grace days by the machine's clock: money back, negative.
    assert set(rows) == {"R2", "R3", "P3"}
    r2, r3, p3 = rows["R2"], rows["R3"], rows["P3"]
    assert p3["class"] == "only_in_ledger" and p3["statement"] is None
    assert p3["ledger"]["minor"] == -2000 and p3["difference"]["minor"] == 2000
    assert r2["statement"]["minor"] == -3000 and r2["ledger"]["minor"] == 0
    assert r2["difference"]["minor"] == -3000
    assert r3["statement"]["minor"] == -500 and r3["ledger"]["minor"] == -2000
    assert r3["difference"]["minor"] == 1500
    table = CliRunner().invoke(app, ["findings", "list", "--database-url", url])
    assert table.exit_code == 0
    [shown] = [ln for ln in table.output.splitlines() if "R2" in ln]
    assert shown.count("-30.00") == 2 and "0.00" in shown.replace("-30.00", "")


def test_the_json_and_csv_reports_carry_the_signed_amounts(
    day: tuple[Gateway, ReconciliationRun],
) -> None:
    gateway, run = day
    out = io.StringIO()
    render_json(gateway, [run], out)
    [data] = json.loads(out.getvalue())["runs"]
    signed = {f["channel_txn_id"]: f["signed"] for f in data["findings"] if f["channel_txn_id"]}
    assert signed["R2"]["statement"]["minor"] == -3000
    assert signed["R2"]["ledger"]["minor"] == 0
    assert signed["R2"]["difference"]["minor"] == -3000
    assert signed["R1"]["difference"]["minor"] == 0
    assert signed["R1"]["ledger"]["minor"] == -4000
    out = io.StringIO()
    render_csv(gateway, [run], out)
    rows = {r["channel_txn_id"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["R2"]["amount"] == "30.00"  # as the statement gives it; kind says refund
    assert (rows["R2"]["signed_statement"], rows["R2"]["signed_ledger"]) == ("-30.00", "0.00")
    assert rows["R2"]["difference"] == "-30.00"
    assert rows["R3"]["difference"] == "15.00"


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_html_report_shows_the_refunds_difference(
    day: tuple[Gateway, ReconciliationRun], lang: str
) -> None:
    gateway, run = day
    out = io.StringIO()
    render_html(gateway, [run], out, lang=lang)
    root = ET.fromstring(out.getvalue())
    [table] = [t for t in root.iter("table") if "R2" in ET.tostring(t, encoding="unicode")]
    heads = [th.text for th in table.iter("th")]
    subject = "R2 (line 5)" if lang == "en" else "R2（第 5 行）"
    [row] = [tr for tr in table.iter("tr") if any(td.text == subject for td in tr.iter("td"))]
    cells = [td.text for td in row.iter("td")]
    statement, ledger, difference = (cells[i] for i in range(5, 8))
    assert heads[5:8] == (
        ["statement", "ledger", "difference"]
        if lang == "en"
        else ["对账单金额", "账务金额", "差额"]
    )
    assert statement == difference == format_money(cny(-3000), lang)
    assert ledger == format_money(cny(0), lang)


@pytest.mark.parametrize("sample", sorted(ONE_ACCOUNT))
def test_a_real_bank_statements_findings_add_up_to_its_totals_by_the_rule(
    gateway: Gateway, sample: str
) -> None:
    bank = reconcile_bank_file(gateway, SHARED_DATA / sample, currency=ONE_ACCOUNT[sample])
    found = all_findings(gateway, bank)
    assert found
    totals: Counter[FindingClass] = Counter()
    for f in found:
        # a bank entry is shown as the bank states it: money out negative
        assert f.signed.statement == f.amount and f.signed.difference == f.amount
        totals[f.finding_class] += class_amount(f.finding_class, f.kind, f.line_key, f.amount.minor)
    assert {k: t.amount.minor for k, t in bank.totals.items()} == dict(totals)
    debits = [f for f in found if f.finding_class is FindingClass.BANK_DEBIT]
    assert all(f.signed.difference.minor < 0 for f in debits)
