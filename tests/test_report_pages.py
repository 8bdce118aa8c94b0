"""The HTML reports as a person sees them: rendered by headless Chromium, in both languages, on
a 1366 px laptop screen and on a narrow phone screen.

Each page is checked through the browser's own layout (the DOM, not the HTML text): Chinese on
a Chinese page, with the utility's terms; nothing wider than the page (a table scrolls inside
its own box, and fits whole at 1366 px); every chart mark inside its axes, its length its value
on the axis' scale; amounts and counts grouped. A screenshot of every page is kept in the test's
temporary folder, and a failing check names it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from paygate.gateway import Gateway
from paygate.reconcile import ReconciliationRun
from paygate.reconcile.report import render_html as render_reconciliation
from paygate.reports import (
    ALL_CHANNELS,
    NO_CHANNEL,
    BreachCounts,
    ChannelReport,
    ReportStep,
    ServiceReport,
    StepStats,
    render_html,
)
from tests.browser import NARROW, WIDE, chromium, open_page, screenshot
from tests.reconcile.support import line, pay, run_lines
from tests.reconcile.test_engine import REFUND

__all__ = ["chromium"]  # the fixture, imported to be found

M = timedelta(minutes=1)
H = timedelta(hours=1)
SIZES = {"wide": WIDE, "narrow": NARROW}
LANGS = ("zh-CN", "en")
CJK = re.compile(r"[\u4e00-\u9fff]")
SERVICE_TERMS = ("服务承诺", "渠道", "差错", "障碍", "事故", "复电")
RECONCILE_TERMS = ("对账", "挂账", "差异", "渠道")
LONG_CHANNEL = "bank_agent_of_the_provincial_rural_credit_cooperative_union_branch"

# --- what the browser is asked -----------------------------------------------------------------

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width)
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  for (const el of document.body.querySelectorAll('*')) {
    // inside a scrolling box or a chart, an element is the box's or the chart's to hold
    if (el.parentElement.closest('.scroll') || el.parentElement.closest('svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > width + 0.5 || r.left < -0.5)
      problems.push(`<${el.tagName.toLowerCase()} class="${el.getAttribute('class') || ''}"> `
        + `spans ${r.left.toFixed(1)}..${r.right.toFixed(1)} of ${width}`);
  }
  for (const t of document.querySelectorAll('table'))
    if (!t.parentElement.classList.contains('scroll')) problems.push('a table outside its box');
  for (const box of document.querySelectorAll('.scroll'))
    if (getComputedStyle(box).overflowX !== 'auto') problems.push('a table box that cannot scroll');
  return problems;
}"""

TABLES_CUT = """() => [...document.querySelectorAll('.scroll')]
  .filter(box => box.scrollWidth > box.clientWidth)
  .map(box => `${box.querySelector('th').textContent}…: ${box.scrollWidth} > ${box.clientWidth}`)"""

CHARTS = """() => {
  const problems = [];
  let marks = 0;
  document.querySelectorAll('svg').forEach((svg, i) => {
    const plot = svg.querySelector('rect.plot');
    if (!plot) { problems.push(`chart ${i}: no plot area`); return; }
    const p = plot.getBBox();
    const top = Number(plot.dataset.top);
    const box = svg.viewBox.baseVal;
    if (p.x < box.x || p.y < box.y || p.x + p.width > box.x + box.width
        || p.y + p.height > box.y + box.height)
      problems.push(`chart ${i}: the plot area lies outside the chart`);
    for (const mark of svg.querySelectorAll('.mark')) {
      marks += 1;
      const b = mark.getBBox();
      const value = Number(mark.dataset.value);
      const what = `chart ${i} ${mark.tagName} ${value}`;
      if (b.x < p.x - 0.05 || b.y < p.y - 0.05 || b.x + b.width > p.x + p.width + 0.05
          || b.y + b.height > p.y + p.height + 0.05)
        problems.push(`${what}: at ${b.x},${b.y} ${b.width}x${b.height}, outside its axes `
          + `${p.x},${p.y} ${p.width}x${p.height}`);
      if (!(value <= top)) problems.push(`${what}: beyond the axis' end ${top}`);
      const drawn = mark.tagName === 'line' ? b.x - p.x : b.width;
      if (Math.abs(drawn - p.width * value / top) > 0.11)
        problems.push(`${what}: drawn ${drawn.toFixed(2)} long, its value is `
          + `${(p.width * value / top).toFixed(2)} on the scale`);
    }
  });
  return {problems, marks};
}"""


def look(page: Page, shot: Path, *, wide: bool) -> None:
    """The checks every report page passes, in its browser layout."""
    problems = page.evaluate(OVERFLOW)
    assert problems == [], f"{problems} (screenshot: {shot})"
    if wide:
        cut = page.evaluate(TABLES_CUT)
        assert cut == [], f"tables cut off at {WIDE[0]} px: {cut} (screenshot: {shot})"
    charts = page.evaluate(CHARTS)
    assert charts["problems"] == [], f"{charts['problems']} (screenshot: {shot})"
    assert charts["marks"] > 0, f"no chart drew anything (screenshot: {shot})"


def language(page: Page, shot: Path, lang: str, terms: tuple[str, ...]) -> str:
    text: str = page.evaluate("() => document.body.innerText")
    assert page.evaluate("() => document.documentElement.lang") == lang
    if lang == "zh-CN":
        assert len(CJK.findall(text)) > 200, f"little Chinese on the page (screenshot: {shot})"
        missing = [term for term in terms if term not in text]
        assert missing == [], f"terms missing: {missing} (screenshot: {shot})"
    else:
        assert not CJK.search(text), f"Chinese on the English page (screenshot: {shot})"
    return text


# --- the service report -------------------------------------------------------------------------


def _stats(
    step: ReportStep, reached: int, p95: timedelta, *, on_time: int | None = None
) -> StepStats:
    return StepStats(
        step,
        reached,
        reached if on_time is None else on_time,
        0,
        p95 / 4,
        p95,
        p95 * 2,
    )


def _channel(
    name: str, orders: int, dispatch_p95: timedelta, breaches: BreachCounts
) -> ChannelReport:
    steps = (
        _stats(ReportStep.DISPATCH, orders, dispatch_p95, on_time=orders - breaches.minor),
        _stats(ReportStep.ACKNOWLEDGE, orders, 40 * M),
        _stats(ReportStep.CONFIRM, orders, 5 * H),
        _stats(ReportStep.END_TO_END, orders, 7 * H),
    )
    return ChannelReport(name, orders, orders, 0, 0, steps, breaches)


def month_of_orders() -> ServiceReport:
    """A month like the one the complaint was about: every order confirmed within the promise
    (100.0 %), 17 breaches of single steps, and dispatch p95s from 1:40 to 22:40."""
    p95s = (100 * M, 3 * H + 20 * M, 6 * H, 9 * H + 45 * M, 15 * H + 10 * M, 22 * H + 40 * M)
    names = ("alipay", "kiosk", "mobile", "pos", "wechatpay", LONG_CHANNEL)
    orders = (200_000, 48_211, 1_200, 77_777, 152_003, 9)
    breaches = [BreachCounts(minor=3), BreachCounts(minor=2, major=1), BreachCounts(minor=4)]
    breaches += [BreachCounts(minor=1), BreachCounts(minor=5, critical=1), BreachCounts()]
    channels = (
        *(
            _channel(name, count, p95, b)
            for name, count, p95, b in zip(names, orders, p95s, breaches, strict=True)
        ),
        _channel(NO_CHANNEL, 1_024, 2 * M, BreachCounts()),
    )
    total = sum(c.orders for c in channels)
    overall = _channel(
        ALL_CHANNELS,
        total,
        22 * H + 40 * M,
        BreachCounts(minor=15, major=1, critical=1),
    )
    return ServiceReport(
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        timezone="Asia/Shanghai",
        as_of=datetime(2026, 12, 1, 1, 0, tzinfo=UTC),
        budgets=(
            (ReportStep.DISPATCH, 15 * M),
            (ReportStep.ACKNOWLEDGE, 3 * H + 45 * M),
            (ReportStep.CONFIRM, 20 * H),
            (ReportStep.END_TO_END, 24 * H),
        ),
        channels=channels,
        overall=overall,
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lang", LANGS)
def test_the_service_report_reads_whole_in_a_browser(
    chromium: BrowserContext, tmp_path: Path, lang: str, size: str
) -> None:
    report = month_of_orders()
    path = tmp_path / f"service-{lang}.html"
    path.write_text(render_html(report, lang=lang), encoding="utf-8")
    page = open_page(chromium, path, SIZES[size])
    shot = screenshot(page, tmp_path, f"service-{lang}-{size}")
    look(page, shot, wide=size == "wide")
    text = language(page, shot, lang, SERVICE_TERMS)
    total = sum(c.orders for c in report.channels)  # 480,224
    for grouped in ("200,000", "152,003", f"{total:,}"):
        assert grouped in text, f"{grouped} not shown grouped (screenshot: {shot})"
    assert "200000" not in text and str(total) not in text
    # "100.0 %" says what it is of, beside it; the 17 breaches say what they count
    assert "100.0 %" in text and "17" in text
    of = "参与判定" if lang == "zh-CN" else f"of {total:,} orders judged"
    assert of in text, f"the headline rate does not say what it is of (screenshot: {shot})"
    # the dispatch chart draws each p95 at its own length (1:40 to 22:40: six lengths, the
    # longest one the total's too), longer for longer
    bars = page.evaluate(
        """() => [...document.querySelectorAll('#chart-dispatch ~ rect.mark[height="18"]')]
             .map(r => [Number(r.dataset.value), r.getBBox().width])"""
    )
    assert len(bars) == len(report.channels) + 1
    ordered = sorted(bars)
    assert all((a[0] < b[0]) == (a[1] < b[1]) for a, b in pairwise(ordered)), bars
    assert len({width for _, width in bars}) == len({value for value, _ in bars}) == 7
    page.close()


# --- the reconciliation report --------------------------------------------------------------


@pytest.fixture
def reconciled(gateway: Gateway) -> tuple[Gateway, list[ReconciliationRun]]:
    """A kiosk day with large payments, a matched refund, a refund the ledger has not reversed,
    money for an unknown account (in suspense) and a payment the statement does not show."""
    for account in ("A1", "A2", "A3"):
        gateway.open_account(account)
    refunded = pay(gateway, "P1", "A1", 9_996_165_611)
    gateway.reverse(refunded.payment_id, "refunded")
    pay(gateway, "P2", "A2", 123_456_789)
    pay(gateway, "P3", "A3", 20_000_000)
    pay(gateway, "P4", "A3", 5_000)  # only in the ledger
    run = run_lines(
        gateway,
        [
            line(2, "P1", "A1", 9_996_165_611),
            line(3, "R1", "A1", 9_996_165_611, kind=REFUND, original="P1"),
            line(4, "P2", "A2", 123_456_789),
            line(5, "P3", "A3", 20_000_000),
            line(6, "R3", "A3", 1_000_000, kind=REFUND, original="P3"),
            line(7, "U1", "NO-SUCH-ACCOUNT", 250_000_00),
        ],
    )
    return gateway, [run]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lang", LANGS)
def test_the_reconciliation_report_reads_whole_in_a_browser(
    chromium: BrowserContext,
    reconciled: tuple[Gateway, list[ReconciliationRun]],
    tmp_path: Path,
    lang: str,
    size: str,
) -> None:
    gateway, runs = reconciled
    path = tmp_path / f"reconciliation-{lang}.html"
    with path.open("w", encoding="utf-8") as out:
        render_reconciliation(gateway, runs, out, lang=lang)
    page = open_page(chromium, path, SIZES[size])
    shot = screenshot(page, tmp_path, f"reconciliation-{lang}-{size}")
    look(page, shot, wide=size == "wide")
    text = language(page, shot, lang, RECONCILE_TERMS)
    amounts = re.findall(r"-?(?:CN)?¥[\d,.]+", text)
    assert amounts, f"no amount with its currency (screenshot: {shot})"
    ungrouped = [a for a in amounts if not re.fullmatch(r"-?(?:CN)?¥\d{1,3}(,\d{3})*(\.\d\d)?", a)]
    assert ungrouped == [], f"amounts not grouped: {ungrouped} (screenshot: {shot})"
    assert "¥99,961,656.11" in text and "99961656.11" not in text
    page.close()
