"""The reconciliation page's figures agree with each other: the statement's classes add up to
its gross (a refund counted negative, as the gross counts it), and a colour follows the figure
it colours (no open finding is never red)."""

from __future__ import annotations

import io
import json
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from paygate.clock import FixedClock
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.models import StatementLine, StatementLineKind
from paygate.money import Money
from paygate.reconcile import (
    FindingClass,
    ReconciliationRun,
    findings,
    load_run,
    reconcile_bank_file,
)
from paygate.reconcile.bank import read_bank_statement
from paygate.reconcile.model import class_amount
from paygate.reconcile.report import (
    apart_totals,
    render_html,
    render_json,
    statement_totals,
    summary_table,
)
from paygate.reports.i18n import format_money
from paygate.store import migrate
from tests.conftest import PG_ADMIN_URL, SHARED_DATA
from tests.databases import empty_postgres, fresh_sqlite_url
from tests.reconcile.support import AT, line, numbered, pay, run_lines, scalar
from tests.reconcile.test_bank_leg import SAMPLES

REFUND = StatementLineKind.REFUND
ACCOUNTS = ("A1", "A2", "A3")


@pytest.fixture
def accounts(gateway: Gateway) -> Gateway:
    for account in ACCOUNTS:
        gateway.open_account(account)
    return gateway


def _adds_up(gateway: Gateway, run: ReconciliationRun) -> None:
    own = statement_totals(run)
    assert sum((t.amount for t in own.values()), Money(0, run.currency)) == run.gross
    assert sum((t.amount for t in own.values()), Money(0, run.currency)) - run.fees == run.net
    assert sum(t.count for t in own.values()) == run.line_count
    # what only the ledger has is no line of the statement, and is shown apart
    apart = apart_totals(run)
    assert set(apart) <= {FindingClass.ONLY_IN_LEDGER}
    assert set(own) | set(apart) == set(run.totals) and not set(own) & set(apart)
    # The stored totals, as read back, and the JSON report carry the same signed figures.
    again = load_run(gateway, run.id, as_of=run.as_of)
    assert again.totals == run.totals
    out = io.StringIO()
    render_json(gateway, [run], out)
    [data] = json.loads(out.getvalue())["runs"]
    stored = {k: (v["count"], v["amount"]["minor"]) for k, v in data["totals"].items()}
    assert stored == {k.value: (t.count, t.amount.minor) for k, t in run.totals.items()}
    in_gross = sum(m for k, (_, m) in stored.items() if k != FindingClass.ONLY_IN_LEDGER.value)
    assert in_gross == run.gross.minor
    # The one sign rule, finding by finding: each class's findings make its stored total (the
    # plain matches, which have no finding, aside), and the lines' signed statement amounts
    # with the plain matches make the gross.
    found = list(findings(gateway, run.id, as_of=run.as_of))
    by_rule: Counter[FindingClass] = Counter()
    for f in found:
        by_rule[f.finding_class] += class_amount(
            f.finding_class, f.kind, f.line_key, f.amount.minor
        )
    for klass, total in run.totals.items():
        if klass is not FindingClass.MATCHED:
            assert by_rule[klass] == total.amount.minor
    plain = scalar(
        gateway,
        "SELECT COALESCE(SUM(l.gross), 0) FROM reconciliation_lines l WHERE l.run_id = :r "
        "AND NOT EXISTS (SELECT 1 FROM reconciliation_findings f "
        "WHERE f.run_id = l.run_id AND f.line_seq = l.seq)",
        {"r": run.id},
    )
    statement = [f.signed.statement for f in found if f.line_no is not None]
    assert sum(s.minor for s in statement if s is not None) + plain == run.gross.minor


def test_refunds_count_negative_so_the_classes_add_up_to_the_gross(accounts: Gateway) -> None:
    refunded = pay(accounts, "P1", "A1", 4000)
    accounts.reverse(refunded.payment_id, "refunded")
    pay(accounts, "P2", "A2", 3000)
    pay(accounts, "P3", "A3", 2000)
    pay(accounts, "P4", "A3", 700)  # only in the ledger
    run = run_lines(
        accounts,
        [
            line(2, "P1", "A1", 4000),
            line(3, "R1", "A1", 4000, kind=REFUND, original="P1"),  # matched
            line(4, "P2", "A2", 3000),
            line(5, "R2", "A2", 3000, kind=REFUND, original="P2"),  # not reversed in the ledger
            line(6, "P3", "A3", 2000),
            line(7, "R3", "A3", 500, kind=REFUND, original="P3"),  # a partial refund
            line(8, "U1", "NOBODY", 900),  # into suspense
        ],
    )
    assert run.gross.minor == 4000 - 4000 + 3000 - 3000 + 2000 - 500 + 900
    own = statement_totals(run)
    assert own[FindingClass.REVERSAL_MATCHED].amount.minor == -4000
    assert own[FindingClass.MATCHED].amount.minor == 4000 + 3000 + 2000
    assert own[FindingClass.ONLY_IN_STATEMENT].amount.minor == -3000 + 900
    assert own[FindingClass.AMOUNT_MISMATCH].amount.minor == -500
    _adds_up(accounts, run)
    # The run's own totals are the same signed figures: the terminal summary shows them so.
    assert run.total(FindingClass.REVERSAL_MATCHED).amount.minor == -4000
    assert run.total(FindingClass.AMOUNT_MISMATCH).amount.minor == -500
    terminal = Console(width=80, record=True)
    terminal.print(summary_table([run]))
    text = terminal.export_text()
    assert "-40.00" in text and "-5.00" in text and "-21.00" in text
    # The page's sum column shows the gross, beside the classes that make it.
    out = io.StringIO()
    render_html(accounts, [run], out, lang="en")
    root = ET.fromstring(out.getvalue())
    [totals] = [
        t
        for t in root.iter("table")
        if "sum of the classes (= gross)" in ET.tostring(t, encoding="unicode")
    ]
    heads = [th.text for th in totals.iter("th")]
    cells = [td.text for td in totals.iter("td")]
    assert cells[heads.index("sum of the classes (= gross)")] == format_money(run.gross, "en")
    assert cells[heads.index("Refund or reversal matched")] == "1 · -CN¥40.00"
    assert heads[-1] == "Only in the ledger (not in the gross)" and cells[-1] == "1 · CN¥7.00"


@st.composite
def statements(draw: st.DrawFn) -> list[tuple[str, int, str]]:
    """(account, amount, fate) per ledger payment; fates that put refunds on the statement."""
    fates = ["present", "missing", "changed", "refunded", "refund_unreversed", "partial", "twice"]
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from([*ACCOUNTS, "NOBODY"]),
                st.integers(100, 5_000_000),
                st.sampled_from(fates),
            ),
            max_size=8,
        )
    )


def _reconcile(gateway: Gateway, day: list[tuple[str, int, str]]) -> ReconciliationRun:
    for account in ACCOUNTS:
        gateway.open_account(account)
    lines: list[StatementLine] = []
    for n, (account, amount, fate) in enumerate(day):
        txn, at = f"T{n}", AT + timedelta(minutes=n)
        if account == "NOBODY":  # the ledger never heard of it: suspense
            lines.append(line(0, txn, account, amount, at=at))
            continue
        receipt = pay(gateway, txn, account, amount, at=at)
        if fate == "refunded":
            gateway.reverse(receipt.payment_id, "refunded")
        if fate == "missing":
            continue
        lines.append(line(0, txn, account, amount + (fate == "changed"), at=at))
        if fate == "twice":
            lines.append(line(0, txn, account, amount, at=at))
        if fate in ("refunded", "refund_unreversed", "partial"):
            back = amount // 3 if fate == "partial" else amount
            lines.append(line(0, f"R{n}", account, back, at=at, kind=REFUND, original=txn))
    run = run_lines(gateway, numbered(lines))
    # what the statement says, counted here by hand: payments in, refunds back
    paid_in = sum(ln.gross.minor for ln in lines if ln.kind is StatementLineKind.PAYMENT)
    assert run.gross.minor == paid_in - sum(ln.gross.minor for ln in lines if ln.kind is REFUND)
    return run


def _gateway(url: str) -> Gateway:
    return Gateway.open(
        settings=Settings(database_url=url, seal_every=0, sqlite_synchronous="OFF"),
        clock=FixedClock(AT + timedelta(days=1)),
    )


@settings(max_examples=25, deadline=None)
@given(day=statements())
def test_sqlite_classes_always_add_up_to_the_gross(day: list[tuple[str, int, str]]) -> None:
    with tempfile.TemporaryDirectory() as where, _gateway(fresh_sqlite_url(Path(where))) as gw:
        _adds_up(gw, _reconcile(gw, day))


@pytest.mark.postgres
@settings(max_examples=8, deadline=None)
@given(day=statements())
def test_postgresql_classes_always_add_up_to_the_gross(
    pg_template: str, day: list[tuple[str, int, str]]
) -> None:
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{pg_template}"
    empty_postgres(url)
    with _gateway(url) as gateway:
        _adds_up(gateway, _reconcile(gateway, day))


# The real samples of one bank account (one in several currencies is refused, test_bank_leg.py).
ONE_ACCOUNT = {
    sample: currencies.pop()
    for sample in SAMPLES
    if len(currencies := {s.currency for s in read_bank_statement(SHARED_DATA / sample)}) == 1
}


@pytest.mark.parametrize("sample", sorted(ONE_ACCOUNT))
def test_a_bank_statements_credits_add_up_to_its_gross(gateway: Gateway, sample: str) -> None:
    bank = reconcile_bank_file(gateway, SHARED_DATA / sample, currency=ONE_ACCOUNT[sample])
    own, apart = statement_totals(bank), apart_totals(bank)
    assert sum((t.amount for t in own.values()), Money(0, bank.currency)) == bank.gross
    assert set(own) | set(apart) == set(bank.totals) and not set(own) & set(apart)
    assert set(apart) <= {FindingClass.BANK_DEBIT, FindingClass.BANK_UNBALANCED}
    # money out is negative; a statement that does not balance counts by the size of its gap
    assert all(t.amount.minor < 0 for c, t in apart.items() if c is FindingClass.BANK_DEBIT)
    assert all(t.amount.minor > 0 for c, t in apart.items() if c is FindingClass.BANK_UNBALANCED)
    assert load_run(gateway, bank.id).totals == bank.totals
    out = io.StringIO()
    render_html(gateway, [bank], out, lang="zh-CN")
    assert format_money(bank.gross, "zh-CN") in out.getvalue()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_no_open_finding_is_never_shown_in_red(accounts: Gateway, lang: str) -> None:
    pay(accounts, "P1", "A1", 1000)
    run = run_lines(accounts, [line(2, "P1", "A1", 1000), line(3, "U1", "NOBODY", 700)])
    assert (run.open_findings, run.in_suspense) == (0, 1)
    out = io.StringIO()
    render_html(accounts, [run], out, lang=lang)
    page = out.getvalue()
    cards = re.findall(r'<div class="big ([a-z]*)">([\d,]+)</div>', page)
    assert cards[0] == ("good", "0")  # open findings: none, in green
    assert cards[1] == ("warn", "1")  # suspense: some, amber, not an error
    root = ET.fromstring(page)
    [runs] = [t for t in root.iter("tbody")][:1]
    cells = list(runs.iter("td"))
    assert any(td.text == "0" and td.get("class") == "good" for td in cells)
    assert not any(td.text == "0" and "bad" in (td.get("class") or "") for td in cells)


def test_migration_0018_signs_the_totals_stored_before_it(accounts: Gateway) -> None:
    refunded = pay(accounts, "P1", "A1", 4000)
    accounts.reverse(refunded.payment_id, "refunded")
    run = run_lines(
        accounts,
        [
            line(2, "P1", "A1", 4000),
            line(3, "R1", "A1", 4000, kind=REFUND, original="P1"),
            line(4, "U1", "NOBODY", 900),
        ],
    )
    signed = run.totals
    assert signed[FindingClass.REVERSAL_MATCHED].amount.minor == -4000
    # Before 0018 the stored totals counted the refund's size ...
    migrate.downgrade(accounts.store.url, "0017")
    before = load_run(accounts, run.id, as_of=run.as_of).totals
    assert before[FindingClass.REVERSAL_MATCHED].amount.minor == 4000
    # ... and 0018 computes them again, signed, as a run made now stores them.
    migrate.upgrade(accounts.store.url)
    assert load_run(accounts, run.id, as_of=run.as_of).totals == signed
