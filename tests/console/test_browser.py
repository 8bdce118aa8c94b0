"""The console in a real headless Chromium against ``paygate serve``: sign-in and lockout, an
account's story to restored supply, a supervisor's approval and a finance resolution, CSRF and
role refusals, both languages, 1366×768 pages with nothing overflowing, and a sign-in through
the identity provider.

A walk in a browser costs tens of seconds and shows what the browser shows, which is the same
whatever the database behind the server: each walk runs on one of them, two on each, and the
console's reads and writes are tested on both, without a browser, in the other console tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page

from paygate.clock import SystemClock
from paygate.console.audit import AuditTrail
from paygate.console.i18n import LANGUAGES
from paygate.gateway import Gateway
from paygate.headend.base import HeadEndOutcome
from paygate.models import PaymentIntent
from tests.api.processes import free_port, serving
from tests.api.support import settings_for
from tests.console.browser import chromium, overflow, sign_in
from tests.console.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider, serve
from tests.console.screenshots import take
from tests.console.support import (
    DISCONNECTED,
    FAILED,
    HOSPITAL,
    METER,
    PASSWORD,
    Story,
    add_staff,
    build_story,
)

ON_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ON_POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@dataclass
class Served:
    """``paygate serve`` over the story's database, and the database's side."""

    url: str
    gateway: Gateway
    story: Story


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[Served]:
    with Gateway.open(settings=settings_for(db_url)) as gateway:
        add_staff(gateway)
        story = build_story(gateway, tmp_path)
        args = ["--database-url", db_url, "--log-level", "warning"]
        env = {"PAYGATE_CONSOLE__MAX_FAILURES": "3"}
        with serving(args, stderr=tmp_path / "serve.log", env=env) as (url, _):
            yield Served(url, gateway, story)


def fits(page: Page) -> None:
    """Nothing on the page is wider than the 1366-pixel window."""
    assert page.viewport_size == {"width": 1366, "height": 768}
    assert overflow(page) <= 0, page.url


@ON_SQLITE
def test_sign_in_lockout_and_sign_out(served: Served) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{served.url}/console/accounts/{DISCONNECTED}")
        assert "/console/sign-in" in page.url and "张三" not in page.content()
        fits(page)
        for _ in range(3):
            sign_in(page, served.url, "li.clerk", "not my password at all")
            assert "锁定" in page.inner_text("p.error")
        sign_in(page, served.url, "li.clerk", PASSWORD)  # right, but locked out now
        assert "/console/sign-in" in page.url and "锁定" in page.inner_text("p.error")
        sign_in(page, served.url, "zhao.supervisor", PASSWORD)
        assert page.url.endswith("/console/search")
        assert "班长" in page.inner_text("header")
        page.click("header button:has-text('退出')")
        assert "您已退出" in page.content()
        page.goto(f"{served.url}/console/accounts/{DISCONNECTED}")
        assert "/console/sign-in" in page.url and "张三" not in page.content()


@ON_SQLITE
def test_an_accounts_story_from_search_to_restored_supply(served: Served, tmp_path: Path) -> None:
    gateway = served.gateway
    with chromium() as browser:
        page = browser.new_page()
        sign_in(page, served.url, "li.clerk", PASSWORD)
        page.fill("input[name=q]", METER)  # htmx fetches the results as the clerk types
        page.wait_for_selector(f"#results a:has-text('{DISCONNECTED}')")
        page.click(f"#results a:has-text('{DISCONNECTED}')")
        page.wait_for_selector("#supply-state")
        assert page.inner_text("#supply-state") == "已停电"
        assert "结清欠费" in page.inner_text("#say")
        fits(page)
        status = gateway.account_status(DISCONNECTED)
        receipt = gateway.pay(
            PaymentIntent(
                channel="wechat",
                channel_txn_id="4200002026120500001",
                account_no=DISCONNECTED,
                amount=status.arrears,
                paid_at=gateway.clock.now(),
            )
        )
        order = receipt.reconnection_order_id
        assert order is not None
        page.reload()
        assert page.inner_text("#supply-state") == "待复电"
        assert "复电预计" in page.inner_text("#say") and "前完成" in page.inner_text("#say")
        assert "4200002026120500001" in page.inner_text("#payments")
        assert "微信支付" in page.inner_text("#payments")
        fits(page)
        for outcome in HeadEndOutcome:
            gateway.record_order_progress(order, outcome)
        page.reload()
        assert page.inner_text("#supply-state") == "正常供电"
        assert page.inner_text(f"#order-{order} .order-status") == "已复电"
        assert "已于" in page.inner_text("#say")
        fits(page)
        page.click("header a.lang")
        page.wait_for_selector("html[lang=en]")
        assert page.inner_text(f"#order-{order} .order-status") == "restored"
        assert "Supply was restored at" in page.inner_text("#say")
        fits(page)
        page.click("header a.lang")
        page.wait_for_selector("html[lang='zh-CN']")
    # Every page of the docs' screenshots, taken and checked for overflow.
    shots = take(served.url, tmp_path / "shots")
    assert len(shots) == 8 and all(p.stat().st_size > 10_000 for p in shots)


# Every page each role reads, with its forms: what must fit 1366×768 in both languages.
PAGES_BY_ROLE = {
    "zhao.supervisor": [
        "/console/search?q=3100",
        f"/console/accounts/{DISCONNECTED}",
        f"/console/accounts/{FAILED}",
        f"/console/accounts/{HOSPITAL}",
        "/console/promise",
        "/console/audit",
    ],
    "li.clerk": [f"/console/accounts/{DISCONNECTED}", "/console/promise"],
    "wang.finance": ["/console/finance"],
    "chen.admin": ["/console/finance", "/console/audit"],
}


@ON_SQLITE
def test_every_page_fits_the_window_in_both_languages(served: Served) -> None:
    """Every page of every role, and the sign-in, in zh-CN and in English: nothing reaches past
    the 1366-pixel window, and no table past its box, with a long row on the trail."""
    AuditTrail(served.gateway.store, served.gateway.clock).record(
        "zhao.supervisor", "supervisor", "retry_order", "refused", subject="order:99999",
        reason="客户来电：" + "备用电源切换后仍未送电，" * 8,
        detail="head-end refused: " + "4200002026120500001" * 4,
    )  # fmt: skip
    for language in LANGUAGES:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"{served.url}/console/language/{language}?next=/console/sign-in")
            assert page.get_attribute("html", "lang") == language
            fits(page)
        for username, paths in PAGES_BY_ROLE.items():
            with chromium() as browser:
                page = browser.new_page()
                sign_in(page, served.url, username, PASSWORD)
                page.goto(f"{served.url}/console/language/{language}?next=/console/search")
                for path in paths:
                    page.goto(f"{served.url}{path}")
                    assert page.get_attribute("html", "lang") == language, path
                    assert "/console/sign-in" not in page.url, path
                    fits(page)


@ON_POSTGRESQL
def test_a_supervisor_approves_finance_resolves_and_a_clerk_is_refused(served: Served) -> None:
    gateway = served.gateway
    with chromium() as browser:
        page = browser.new_page()
        sign_in(page, served.url, "zhao.supervisor", PASSWORD)
        page.goto(f"{served.url}/console/accounts/{HOSPITAL}")
        page.fill("#negotiate-form input[name=counterpart]", "医院后勤处 王主任")
        page.fill("#negotiate-form input[name=agreed_on]", "2026-12-20")
        page.fill("#negotiate-form input[name=terms]", "备用电源就绪后停电")
        page.fill("#negotiate-form input[name=reason]", "大客户停电协商")
        page.click("#negotiate-form button")
        assert "已完成" in page.inner_text("p.ok") and "待批准" in page.content()
        page.fill(".negotiation form input[name=reason]", "协商一致")
        page.click(".negotiation form button")
        assert "已批准" in page.inner_text(".negotiation")
        fits(page)
    orders = gateway.store.run(
        lambda tx: tx.all(
            "SELECT kind, approved_by FROM supply_orders WHERE reason LIKE '大客户%'"
        ),
        write=False,
    )
    assert orders == [("disconnect", "zhao.supervisor")]
    run = served.story.kiosk_run
    with chromium() as browser:
        page = browser.new_page()
        sign_in(page, served.url, "wang.finance", PASSWORD)
        page.goto(f"{served.url}/console/finance")
        first = page.locator("article.finding").first
        finding_id = first.get_attribute("id")
        first.locator("input[name=reason]").fill("终端日结漏传，已核实")
        first.locator("button").click()
        assert "已完成" in page.inner_text("p.ok")
        assert page.locator(f"#{finding_id}").count() == 0
        fits(page)
    with chromium() as browser:
        page = browser.new_page()
        sign_in(page, served.url, "li.clerk", PASSWORD)
        page.goto(f"{served.url}/console/finance")
        assert "您的岗位无权执行此操作" in page.content()
        page.goto(f"{served.url}/console/accounts/{DISCONNECTED}")
        token = page.get_attribute("#notice-form input[name=csrf_token]", "value")
        assert token
        # The clerk's own session and token: the role refuses the resolution.
        seq = gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT MIN(seq) FROM reconciliation_findings WHERE run_id = :r "
                "AND status = 'open'",
                {"r": run},
            ),
            write=False,
        )
        status = page.evaluate(
            """async ([url, token]) => (await fetch(url, {method: 'POST',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                 body: new URLSearchParams({csrf_token: token, action: 'confirmed',
                                            reason: 'not mine to do'})})).status""",
            [f"/console/findings/{run}/{seq}/resolve", token],
        )
        assert status == 403
        # A form without the session's token is refused, whoever sends it.
        status = page.evaluate(
            """async (url) => (await fetch(url, {method: 'POST',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                 body: new URLSearchParams({kind: 'notice', reason: 'forged'})})).status""",
            f"/console/accounts/{DISCONNECTED}/notice",
        )
        assert status == 403
    notices = gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM dunning_notices"), write=False
    )
    open_findings = gateway.store.run(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM reconciliation_findings WHERE run_id = :r AND status = 'open'",
            {"r": run},
        ),
        write=False,
    )
    assert notices == 0 and open_findings == 2


@ON_POSTGRESQL
def test_sign_in_through_the_identity_provider(db_url: str, tmp_path: Path) -> None:
    """``paygate serve`` configured with ``[console.oidc]`` (its secret from a variable): a
    clerk clicks the provider's button in Chromium, comes back signed in with the local role on
    the page they asked for; an identity no staff member has gets the refusal page."""
    port = free_port()
    with Gateway.open(settings=settings_for(db_url)) as gateway:
        add_staff(gateway).link("li.clerk", "li.clerk@grid.example")
        with serve(FakeProvider(SystemClock())) as provider:
            config = tmp_path / "paygate.toml"
            config.write_text(
                "[console.oidc]\n"
                'provider_name = "统一身份认证"\n'
                f'issuer = "{provider.issuer}"\n'
                f'client_id = "{CLIENT_ID}"\n'
                'client_secret_env = "PAYGATE_TEST_OIDC_SECRET"\n'
                f'redirect_url = "http://127.0.0.1:{port}/console/oidc/callback"\n',
                encoding="utf-8",
            )
            env = {"PAYGATE_CONFIG": str(config), "PAYGATE_TEST_OIDC_SECRET": CLIENT_SECRET}
            args = ["--database-url", db_url, "--log-level", "warning"]
            with (
                serving(args, stderr=tmp_path / "serve.log", env=env, port=port) as (url, _),
                chromium() as browser,
            ):
                page = browser.new_page()
                provider.signs_in("li.clerk@grid.example")
                page.goto(f"{url}/console/promise")  # signed out: to the sign-in, then back
                page.click("text=使用统一身份认证登录")
                page.wait_for_url(f"{url}/console/promise")
                assert "营业员" in page.inner_text("header")
                fits(page)
                page.click("button:has-text('退出')")
                page.wait_for_load_state()
                provider.signs_in("stranger@grid.example")
                page.goto(f"{url}/console/sign-in")
                page.click("text=使用统一身份认证登录")
                page.wait_for_load_state()
                assert "未登记为营业厅员工" in page.inner_text("main")
                page.goto(f"{url}/console/search")
                assert page.url.startswith(f"{url}/console/sign-in")
            assert "s3cret" not in (tmp_path / "serve.log").read_text()
