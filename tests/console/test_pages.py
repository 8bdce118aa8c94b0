"""The console's pages and actions over real HTTP: the account's story, each role's actions
with their audit rows, finance and the service-promise dashboard, in both languages."""

from __future__ import annotations

import html
import io
import re
from datetime import date, datetime, timedelta

from pydantic import SecretBytes

from paygate.headend.base import HeadEndOutcome
from paygate.models import PaymentIntent, StatementLineKind
from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.console.conftest import Clients, ConsoleWorld
from tests.console.support import DISCONNECTED, FAILED, HOSPITAL, METER, ZONE
from tests.reconcile.support import line, run_lines


def audit_rows(world: ConsoleWorld, action: str) -> list[tuple[object, ...]]:
    return world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT username, role, subject, outcome, reason FROM console_audit "
            "WHERE action = :a ORDER BY at, id",
            {"a": action},
        ),
        write=False,
    )


def test_search_finds_by_account_number_meter_address_and_payment_reference(
    world: ConsoleWorld, clients: Clients
) -> None:
    clerk = clients.signed_in("li.clerk").http
    by_number = clerk.get("/console/search", params={"q": "31000000"})
    assert DISCONNECTED in by_number.text and FAILED in by_number.text and "张三" in by_number.text
    by_meter = clerk.get("/console/search", params={"q": METER})
    assert (
        DISCONNECTED in by_meter.text and FAILED not in by_meter.text and "表地址" in by_meter.text
    )
    by_reference = clerk.get("/console/search", params={"q": "K0001:cash-2001"})
    assert FAILED in by_reference.text and DISCONNECTED not in by_reference.text
    one = clerk.get("/console/search", params={"q": METER, "go": "1"})
    assert one.status_code == 303 and one.headers["location"] == f"/console/accounts/{DISCONNECTED}"
    partial = clerk.get("/console/search", params={"q": METER}, headers={"HX-Request": "true"})
    assert DISCONNECTED in partial.text and "<html" not in partial.text
    # The language link comes back to the same search, its words kept.
    link = re.search(r'class="lang" href="([^"]+)"', by_meter.text)
    assert link is not None
    switched = clerk.get(html.unescape(link.group(1)))
    assert switched.headers["location"] == f"/console/search?q={METER}"
    assert "meter address" in clerk.get(switched.headers["location"]).text
    clerk.get("/console/language/zh-CN")
    nothing = clerk.get("/console/search", params={"q": "no-such-thing"})
    assert "没有找到匹配的用户" in nothing.text
    wildcard = clerk.get("/console/search", params={"q": "%"})
    assert DISCONNECTED not in wildcard.text  # LIKE's wildcards are searched for as text
    for odd in ("3100000001\x00", "\U0010ffff", "_"):
        answer = clerk.get("/console/search", params={"q": odd})
        assert answer.status_code == 200 and "张三" not in answer.text


def test_an_accounts_story_from_arrears_to_restored_supply(
    world: ConsoleWorld, clients: Clients
) -> None:
    clerk = clients.signed_in("li.clerk").http
    page = clerk.get(f"/console/accounts/{DISCONNECTED}").text
    assert "已停电" in page and "违约金" in page and "B-3100000001" in page
    assert "结清欠费" in page  # what to tell a disconnected customer who owes
    status = world.gateway.account_status(DISCONNECTED)
    assert status.late_fee.minor > 0 and "¥" + f"{status.arrears.to_decimal():,.2f}" in page
    receipt = world.gateway.pay(
        PaymentIntent(
            channel="alipay",
            channel_txn_id="2026112522001",
            account_no=DISCONNECTED,
            amount=status.arrears,
            paid_at=world.clock.now(),
        )
    )
    order = receipt.reconnection_order_id
    assert receipt.arrears_cleared and order is not None
    page = clerk.get(f"/console/accounts/{DISCONNECTED}").text
    due = world.gateway.supply_order(order).due_at
    local_due = (due + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f"复电预计 {local_due} 前完成" in page
    assert "支付宝" in page and "2026112522001" in page and f"#{receipt.payment_id}" in page
    assert "待复电" in page
    assert "欠费已结清" in page and "arrears cleared" not in page  # why the order was raised
    for outcome in (HeadEndOutcome.DISPATCHED, HeadEndOutcome.ACKNOWLEDGED):
        world.clock.advance(timedelta(minutes=5))
        world.gateway.record_order_progress(order, outcome)
    world.clock.advance(timedelta(minutes=5))
    world.gateway.record_order_progress(order, HeadEndOutcome.COMPLETED)
    page = clerk.get(f"/console/accounts/{DISCONNECTED}").text
    assert "已复电" in page and "正常供电" in page and "复电预计" not in page
    english = clerk.get(
        "/console/language/en", params={"next": f"/console/accounts/{DISCONNECTED}"}
    )
    assert english.status_code == 303
    page = clerk.get(f"/console/accounts/{DISCONNECTED}").text
    assert "Supply was restored at" in page and "restored" in page and "Late fee" in page
    assert '<html lang="en">' in page


def test_a_breached_order_shows_its_severity_and_the_sentence_says_so(
    world: ConsoleWorld, clients: Clients
) -> None:
    status = world.gateway.account_status(DISCONNECTED)
    receipt = world.gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0002:cash-7",
            account_no=DISCONNECTED,
            amount=status.arrears,
            paid_at=world.clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    world.clock.advance(timedelta(hours=25))  # the 24 h promise missed
    world.gateway.check_deadlines()
    clerk = clients.signed_in("li.clerk").http
    page = clerk.get(f"/console/accounts/{DISCONNECTED}").text
    assert "复电已超出服务承诺时限" in page and "障碍" in page
    board = clients.signed_in("zhao.supervisor").http.get("/console/promise").text
    assert "障碍" in board and DISCONNECTED in board


def test_a_clerk_serves_a_notice_with_a_reason_and_it_is_audited(
    world: ConsoleWorld, clients: Clients
) -> None:
    clerk = clients.signed_in("li.clerk")
    path = f"/console/accounts/{HOSPITAL}/notice"
    refused = clerk.post(path, {"kind": "notice", "reason": "  "})
    assert refused.status_code == 422 and "reason" in refused.text
    done = clerk.post(path, {"kind": "notice", "reason": "两个月未缴电费"})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=1")
    assert world.gateway.account_status(HOSPITAL).supply_state.value == "disconnection_pending"
    again = clerk.post(path, {"kind": "bogus", "reason": "typo"})
    assert again.status_code == 422
    rows = audit_rows(world, "serve_notice")
    assert rows == [
        ("li.clerk", "clerk", f"{HOSPITAL}:notice", "requested", "两个月未缴电费"),
        ("li.clerk", "clerk", f"{HOSPITAL}:notice", "done", "两个月未缴电费"),
        ("li.clerk", "clerk", f"{HOSPITAL}:bogus", "requested", "typo"),
        ("li.clerk", "clerk", f"{HOSPITAL}:bogus", "refused", "typo"),
    ]


def test_a_supervisor_records_the_negotiation_and_approves_the_disconnection(
    world: ConsoleWorld, clients: Clients
) -> None:
    supervisor = clients.signed_in("zhao.supervisor")
    path = f"/console/accounts/{HOSPITAL}/negotiations"
    form = {
        "counterpart": "医院后勤处 王主任",
        "agreed_on": "2026-11-28",
        "terms": "备用电源就绪后于 11 月 28 日 22:00 停电",
        "reason": "大客户停电协商",
    }
    assert supervisor.post(path, form).status_code == 303
    not_protected = supervisor.post(f"/console/accounts/{DISCONNECTED}/negotiations", form)
    assert not_protected.status_code == 409 and "not protected" in not_protected.text
    negotiation = world.gateway.store.run(
        lambda tx: int(tx.scalar("SELECT id FROM console_negotiations")), write=False
    )
    page = supervisor.http.get(f"/console/accounts/{HOSPITAL}").text
    assert "医院后勤处 王主任" in page and "待批准" in page
    approve = f"/console/negotiations/{negotiation}/approve"
    assert supervisor.post(approve, {"reason": ""}).status_code == 422
    assert supervisor.post(approve, {"reason": "协商一致，批准停电"}).status_code == 303
    orders = world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT o.id, o.kind, o.approved_by, o.reason FROM supply_orders o "
            "JOIN accounts a ON a.id = o.account_id WHERE a.account_no = :a",
            {"a": HOSPITAL},
        ),
        write=False,
    )
    assert [(k, by) for _, k, by, _ in orders] == [("disconnect", "zhao.supervisor")]
    twice = supervisor.post(approve, {"reason": "again"})
    assert twice.status_code == 409
    page = supervisor.http.get(f"/console/accounts/{HOSPITAL}").text
    assert f"已批准，工单 {orders[0][0]}" in page
    assert [r[3] for r in audit_rows(world, "approve_disconnection")] == [
        "requested",
        "done",
        "requested",
        "refused",
    ]


def test_a_supervisor_retries_a_failed_reconnection_order(
    world: ConsoleWorld, clients: Clients
) -> None:
    order = world.story.failed_order
    clerk = clients.signed_in("li.clerk").http
    page = clerk.get(f"/console/accounts/{FAILED}").text
    retry_form = f'action="/console/orders/{order}/retry"'
    assert "下发失败" in page and retry_form not in page  # the clerk sees it, cannot retry
    supervisor = clients.signed_in("zhao.supervisor")
    page = supervisor.http.get(f"/console/accounts/{FAILED}").text
    assert retry_form in page and "meter offline" in page
    board = supervisor.http.get("/console/promise").text
    assert FAILED in board
    done = supervisor.post(
        f"/console/orders/{order}/retry",
        {"reason": "表计已恢复在线", "back": f"/console/accounts/{FAILED}"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/accounts/{FAILED}?done=1"
    assert world.gateway.supply_order(order).status == "open"
    again = supervisor.post(f"/console/orders/{order}/retry", {"reason": "twice"})
    assert again.status_code == 409
    assert [r[3] for r in audit_rows(world, "retry_order")] == [
        "requested",
        "done",
        "requested",
        "refused",
    ]


def test_finance_resolves_a_finding_assigns_and_releases_suspense(
    world: ConsoleWorld, clients: Clients
) -> None:
    finance = clients.signed_in("wang.finance")
    page = finance.http.get("/console/finance").text
    assert "系统有、对账单无" in page and "cash-9001" in page and "挂账账龄" in page
    run = world.story.kiosk_run
    open_seqs = world.gateway.store.run(
        lambda tx: [
            int(r[0])
            for r in tx.all(
                "SELECT seq FROM reconciliation_findings WHERE run_id = :r AND status = 'open' "
                "AND finding_class = 'only_in_ledger' AND line_key LIKE 'payment:%' ORDER BY seq",
                {"r": run},
            )
        ],
        write=False,
    )
    assert len(open_seqs) == 3
    resolve = f"/console/findings/{run}/{open_seqs[0]}/resolve"
    assert finance.post(resolve, {"action": "confirmed", "reason": ""}).status_code == 422
    done = finance.post(resolve, {"action": "confirmed", "reason": "终端日结漏传，已核实"})
    assert done.status_code == 303
    assert finance.post(resolve, {"action": "confirmed", "reason": "again"}).status_code == 409
    resolutions = world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT action, actor, note FROM reconciliation_resolutions "
            "WHERE run_id = :r AND finding_seq = :s",
            {"r": run, "s": open_seqs[0]},
        ),
        write=False,
    )
    assert resolutions == [("confirmed", "wang.finance", "终端日结漏传，已核实")]
    assert [r[2:4] for r in audit_rows(world, "resolve_finding")] == [
        (f"finding:{run}:{open_seqs[0]}:confirmed", "requested"),
        (f"finding:{run}:{open_seqs[0]}:confirmed", "done"),
        (f"finding:{run}:{open_seqs[0]}:confirmed", "requested"),
        (f"finding:{run}:{open_seqs[0]}:confirmed", "refused"),
    ]
    item = world.story.suspense_item
    before = world.gateway.account_status(DISCONNECTED).balance.minor
    assigned = finance.post(
        f"/console/suspense/{item}/assign",
        {"account_no": DISCONNECTED, "reason": "客户来电提供缴费凭证"},
    )
    assert assigned.status_code == 303
    paid = world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT p.channel, p.amount FROM payments p JOIN accounts a ON a.id = p.account_id "
            "WHERE a.account_no = :a",
            {"a": DISCONNECTED},
        ),
        write=False,
    )
    assert paid == [("kiosk", 5_000)]
    # The payment first charged the late fee accrued to today, then paid principal.
    after = world.gateway.account_status(DISCONNECTED)
    assert after.balance.minor < before and after.arrears.minor > 0
    released = finance.post(f"/console/suspense/{item}/release", {"reason": "already assigned"})
    assert released.status_code == 409
    assert [r[3] for r in audit_rows(world, "assign_suspense")] == ["requested", "done"]
    assert [r[3] for r in audit_rows(world, "release_suspense")] == ["requested", "refused"]
    trail = clients.signed_in("chen.admin").http.get("/console/audit").text
    assert "客户来电提供缴费凭证" in trail and "wang.finance" in trail
    # The trail in the service centre's words: the action and its outcome, not their codes.
    assert "挂账转入户号" in trail and "已完成" in trail and "未完成" in trail
    assert "assign_suspense" not in trail and ">done" not in trail


def test_the_finance_page_shows_what_the_cards_sold_are_owed(
    world: ConsoleWorld, clients: Clients
) -> None:
    """Voucher liability as the amount owed for cards activated and not redeemed, in the
    page's words, not the ledger's code and credit sign."""
    service = VoucherService(world.gateway, SecretBytes(bytes(range(7, 39))))
    service.issue_batch("B-2026-11", 5, Money(20_000, "CNY"), date(2027, 6, 30), io.BytesIO())
    service.activate("B-2026-11", retailer="Hualian Store 12")
    finance = clients.signed_in("wang.finance").http
    page = finance.get("/console/finance").text
    assert "已售出、未充值的充值卡（CNY）" in page and "¥1,000.00" in page
    assert "voucher_liability" not in page and "-1,000.00" not in page
    english = finance.get("/console/language/en", params={"next": "/console/finance"})
    assert english.status_code == 303
    assert "Cards sold and not yet redeemed (CNY)" in finance.get("/console/finance").text


def test_finance_sees_a_refund_the_ledger_has_not_given_back_as_money_out(
    world: ConsoleWorld, clients: Clients
) -> None:
    gateway = world.gateway
    day = world.story.today - timedelta(days=6)
    paid = datetime.combine(day, datetime.min.time(), ZONE) + timedelta(hours=10)
    receipt = gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0002:card-2001",
            account_no="3100000101",
            amount=Money(3_000, "CNY"),
            paid_at=paid,
        )
    )
    run = run_lines(
        gateway,
        [
            line(2, "K0002:card-2001", "3100000101", 3_000, at=paid),
            line(
                3,
                "K0002:refund-2001",
                "3100000101",
                3_000,
                at=paid,
                kind=StatementLineKind.REFUND,
                original="K0002:card-2001",
            ),
        ],
        day=day,
    )
    finance = clients.signed_in("wang.finance")
    for lang, statement, ledger, difference in (
        ("zh-CN", "对账单", "账务", "差额"),
        ("en", "Statement", "Ledger", "Difference"),
    ):
        finance.http.get(f"/console/language/{lang}", params={"next": "/console/finance"})
        page = finance.http.get("/console/finance").text
        article = rf'<article class="finding" id="finding-{run.id}-\d+">(.*?)</article>'
        found = re.search(article, page, re.S)
        assert found is not None and "K0002:refund-2001" in found.group(1)
        text = " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
        assert f"{statement} -¥30.00" in text and f"{ledger} ¥0.00" in text
        assert f"{difference} -¥30.00" in text
    # Once the original is reversed the two sides agree, whatever the finding's class says.
    gateway.reverse(receipt.payment_id, "refunded by the kiosk operator")
    page = finance.http.get("/console/finance").text
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Ledger -¥30.00 · Difference ¥0.00" in text


def test_finance_releases_money_from_suspense(world: ConsoleWorld, clients: Clients) -> None:
    finance = clients.signed_in("wang.finance")
    item = world.story.suspense_item
    clearing_before = world.gateway.ledger_balances()
    done = finance.post(f"/console/suspense/{item}/release", {"reason": "对账单更正后不再列示"})
    assert done.status_code == 303
    after = world.gateway.ledger_balances()
    assert after["suspense:CNY"].minor == clearing_before["suspense:CNY"].minor + 5_000
    page = finance.http.get("/console/finance").text
    assert f'id="suspense-{item}"' not in page


def test_the_promise_dashboard_counts_today_and_the_month(
    world: ConsoleWorld, clients: Clients
) -> None:
    status = world.gateway.account_status(DISCONNECTED)
    receipt = world.gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0002:cash-9",
            account_no=DISCONNECTED,
            amount=status.arrears + Money(0, "CNY"),
            paid_at=world.clock.now(),
        )
    )
    assert receipt.reconnection_order_id is not None
    world.clock.advance(timedelta(hours=20, minutes=30))  # dispatch overdue, due within the hour
    world.gateway.check_deadlines()
    board = clients.signed_in("zhao.supervisor").http
    page = board.get("/console/promise").text
    assert "一小时内到期的工单" in page and DISCONNECTED in page and "差错" in page
    fragment = board.get("/console/promise", headers={"HX-Request": "true"}).text
    assert "<html" not in fragment and DISCONNECTED in fragment
    world.gateway.record_order_progress(receipt.reconnection_order_id, HeadEndOutcome.COMPLETED)
    page = board.get("/console/language/en", params={"next": "/console/promise"})
    page = board.get("/console/promise").text
    assert "Orders due within the hour" in page and "Restored" in page
